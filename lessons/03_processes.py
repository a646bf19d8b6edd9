"""Lesson 03, processes: fork, exec, wait, zombies, and copy-on-write memory.

What it shows:
- fork(2) makes a copy of the calling process; the child gets 0 back, the parent the child's PID.
  execve(2) replaces the child's program; wait(2) collects its exit status. Their cost, measured;
- a child that has exited but was not waited for is a zombie: state Z in /proc/PID/stat, no memory
  left, only its PID and exit status, until the parent reaps it; then /proc/PID is gone;
- the `fork` server of this lab: one process per client, reaped when the client leaves;
- copy-on-write: after fork, parent and child share every page until one of them writes to it. USS
  (memory only this process has) and PSS (shared pages split among their sharers) from
  /proc/PID/smaps_rollup show it. In CPython even READING a list writes to memory: iterating it
  increments and decrements the reference count stored in every element, so the child ends up
  copying every page the elements live on. Reading a bytes object of the same size copies nothing;
- fork copies the parent's page tables, so its cost grows with the parent's resident memory.

The OS mechanism: fork(2), execve(2), wait(2)/waitpid(2), _exit(2); proc(5) for /proc/PID/stat,
/proc/PID/status and /proc/PID/smaps_rollup (Linux 4.14+).

Linux-only: /proc (zombie state, USS/PSS); those parts are skipped elsewhere. fork, exec and wait
are POSIX and run on any Unix.

    python -m lessons.03_processes [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import sys
import time

import servers
import servers.launch
from lessons import procfs
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spawn import fork_exec_wait, fork_exit_wait, median_us

MiB = 1024 * 1024
FORK_SERVER_CLIENTS = 10


# -- fork, exec, wait ---------------------------------------------------------------------------------


def fork_call_us() -> float:
    """How long fork() takes to return in the parent: mostly copying the page tables."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    elapsed = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return elapsed * 1e6


# -- zombies ----------------------------------------------------------------------------------------------


def has_memory(pid: int) -> bool:
    """A zombie has released its memory: its /proc/PID/status has no VmRSS line any more."""
    return "VmRSS" in procfs.status(pid)


def watch_a_zombie() -> dict:
    pid = os.fork()
    if pid == 0:
        os._exit(3)  # exit at once; the parent deliberately does not wait yet
    try:
        deadline = time.monotonic() + 2.0
        while procfs.state(pid) != "Z (zombie)" and time.monotonic() < deadline:
            time.sleep(0.001)  # the child has not finished exiting yet
        seen = {"state": procfs.state(pid), "memory": has_memory(pid)}
        time.sleep(0.2)
        seen["state_later"] = procfs.state(pid)  # still a zombie: nobody collected it
    finally:
        _, status = os.waitpid(pid, 0)  # reap: the kernel can now forget the child
    seen["exit_code"] = os.waitstatus_to_exitcode(status)
    seen["state_after_wait"] = procfs.state(pid)
    return seen


# -- copy-on-write -----------------------------------------------------------------------------------------


def rss_kib() -> int:
    return procfs.smaps_rollup(os.getpid())["rss"]


def child_that_waits(jobs: dict):
    """Fork a child that runs jobs[command] for each command the parent sends, replying b"k".
    Returns (pid, command pipe, reply pipe)."""
    cmd_r, cmd_w = os.pipe()
    reply_r, reply_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(cmd_w)
            os.close(reply_r)
            while command := os.read(cmd_r, 1):
                jobs[command]()
                os.write(reply_w, b"k")
        finally:
            os._exit(0)
    os.close(cmd_r)
    os.close(reply_w)
    return pid, cmd_w, reply_r


def ask(pid_pipes, command: bytes) -> None:
    _, cmd_w, reply_r = pid_pipes
    os.write(cmd_w, command)
    if os.read(reply_r, 1) != b"k":
        raise RuntimeError("the child died")


def copy_on_write(n_items: int) -> dict:
    """A parent with a list of `n_items` ints and a bytes object of the same size forks; the child
    first reads the bytes, then iterates the list; RSS/PSS/USS right after fork and after each step."""
    before_kib = rss_kib()
    numbers = list(range(1_000, 1_000 + n_items))  # ints above 256 are separate objects
    list_kib = rss_kib() - before_kib
    blob = b"\x01" * (list_kib * 1024)  # a bytes object of the same size, every page written
    seen = {"list_kib": list_kib}

    def iterate_list():
        for _ in numbers:  # only reads... but each step increments and decrements a refcount
            pass

    def read_bytes():
        blob.count(b"\x02")  # reads every byte, writes none

    child = child_that_waits({b"l": iterate_list, b"b": read_bytes, b"n": lambda: None})
    try:
        ask(child, b"n")  # the child is up and idle
        seen["child_after_fork"] = procfs.smaps_rollup(child[0])
        seen["parent_after_fork"] = procfs.smaps_rollup(os.getpid())
        ask(child, b"b")
        seen["child_after_bytes"] = procfs.smaps_rollup(child[0])
        ask(child, b"l")
        seen["child_after_list"] = procfs.smaps_rollup(child[0])
    finally:
        os.close(child[1])  # EOF on its command pipe: the child exits
        os.close(child[2])
        os.waitpid(child[0], 0)
    return seen  # and with it, the list and the bytes are freed


def slope(xs, ys) -> float:
    """Least-squares slope of ys against xs."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


# -- the fork server: a process per client -------------------------------------------------------------


def fork_server_processes() -> dict:
    server = servers.launch.start(servers.get("fork"))
    clients = []
    try:
        seen = {"idle": len(server.group_pids())}
        for _ in range(FORK_SERVER_CLIENTS):
            sock = socket.create_connection(server.address, timeout=5)
            sock.sendall(b"ping")
            sock.recv(4)  # echoed: the child serving this client exists
            clients.append(sock)
        seen["busy"] = len(server.group_pids())
        for sock in clients:
            sock.close()
        deadline = time.monotonic() + 3.0
        while len(server.group_pids(zombies=True)) > 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # children exit when their client leaves; SIGCHLD makes the parent reap
        seen["after"] = len(server.group_pids())
        seen["zombies"] = len(server.group_pids(zombies=True)) - seen["after"]
    finally:
        for sock in clients:
            sock.close()
        server.stop()
    return seen


# -- Pictures and claims, from the recorded run (lessons/figures.py, tests/test_claims.py) ------------


def draw_fork_by_size(record: dict, fig) -> None:
    """fork()'s cost against the parent's resident memory, with the least-squares line."""
    from lessons.figures import COLOURS, not_measured
    points = record.get("series", {}).get("fork_by_size")
    if not points:
        return not_measured(fig, "this run recorded no fork() sweep over the parent's size")
    ax = fig.subplots()
    xs, ys = [p["mib"] for p in points], [p["fork_us"] for p in points]
    ax.plot(xs, ys, "o", color=COLOURS[0], markersize=7, label="fork() call, median")
    per_mib = slope(xs, ys)
    base = statistics.fmean(ys) - per_mib * statistics.fmean(xs)
    ax.plot([0, max(xs)], [base, base + per_mib * max(xs)], "--", color=COLOURS[1],
            label=f"least squares: {per_mib * 1024:,.0f} µs per GiB")
    ax.set_xlabel("memory the parent has resident beyond its start (MiB)")
    ax.set_ylabel("time for fork() to return in the parent (µs)")
    ax.set_ylim(bottom=0)
    ax.set_title("fork() copies the page tables: its cost grows with the parent's resident memory")
    ax.legend(loc="upper left")


PICTURES = {"fork-by-size": draw_fork_by_size}

CLAIMS = [
    Claim("the difference is what loading a new, small program costs",
          lambda m: m["fork + exec true + wait"] > m["fork + exit + wait"],
          "fork + exec + wait takes longer than fork + exit + wait"),
    Claim("The exited child was in state `Z` and held no memory",
          lambda m: m["child state before wait"].startswith("Z")
          and m["zombie still holds memory"] == "no" and m["child state 0.2 s later"].startswith("Z")
          and m["child state after wait"] == "gone from /proc",
          "zombie before wait, without memory, still a zombie later, gone after wait"),
    Claim("had one process per connected client plus its own, and went back to one, with no zombie left",
          lambda m: m[f"fork server processes, {FORK_SERVER_CLIENTS} clients"] == FORK_SERVER_CLIENTS + 1
          and m["fork server processes, after they left"] == 1 and m["zombies left"] == 0,
          "clients + 1 processes while busy, 1 after, no zombie"),
    Claim("nearly all of the child's memory is shared with its parent, and the child's PSS is about "
          "half of its RSS",
          lambda m: m["child uss right after fork"] < 0.1 * m["child rss right after fork"]
          and 0.4 < m["child pss right after fork"] / m["child rss right after fork"] < 0.6,
          "USS under 10 % of RSS right after fork; PSS 40-60 % of RSS"),
    Claim("Reading the bytes object leaves the USS where it was",
          lambda m: m["child uss after reading bytes of the same size"] - m["child uss right after fork"]
          < 0.05 * m["memory of the list in the parent"],
          "reading the bytes grows the USS by under 5 % of the list's size"),
    Claim("Iterating over the list raises it by most of the list's size",
          lambda m: 50 < m["copied by iterating, share of the list"] < 100,
          "iterating copies 50-100 % of the list's memory"),
    Claim("the time grows roughly in proportion to the parent's resident memory",
          lambda m: 1.3 < m["fork() call, parent +1024 MiB"] / m["fork() call, parent +512 MiB"] < 3
          and m["fork() call, parent +512 MiB"] > m["fork() call, parent +128 MiB"]
          and m["fork() call, parent +1024 MiB"] > 5 * m["fork() call, parent +0 MiB"],
          "doubling 512 MiB to 1 GiB multiplies fork()'s time by 1.3-3; +512 MiB costs more than "
          "+128 MiB; +1 GiB more than 5x the small parent"),
]


# -- The lesson ----------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("03", "Processes", args)
    quick = lesson.quick
    repeats = 50 if quick else 300
    no_proc = linux_only("/proc/PID/stat and /proc/PID/smaps_rollup")

    lesson.section(f"fork, exec, wait (median of {repeats})")
    lesson.measure("exit status the parent collected (child exited with 7)", fork_exit_wait(7))
    fork_us = lesson.measure("fork + exit + wait", median_us(fork_exit_wait, repeats), "µs")
    true = shutil.which("true") or "/bin/true"
    exec_us = lesson.measure("fork + exec true + wait", median_us(lambda: fork_exec_wait(true), repeats), "µs")

    lesson.section("a zombie: a child that exited and was not waited for")
    zombie_labels = ("child state before wait", "zombie still holds memory", "child state 0.2 s later",
                     "child state after wait")
    if no_proc:
        for label in zombie_labels:
            lesson.skip(label, no_proc)
    else:
        z = watch_a_zombie()
        lesson.measure("child state before wait", z["state"])
        lesson.measure("zombie still holds memory", "yes" if z["memory"] else "no")
        lesson.measure("child state 0.2 s later", z["state_later"])
        lesson.measure("child state after wait", z["state_after_wait"] or "gone from /proc")

    lesson.section(f"the fork server with {FORK_SERVER_CLIENTS} clients")
    fork_labels = ("fork server processes, no client", f"fork server processes, {FORK_SERVER_CLIENTS} clients",
                   "fork server processes, after they left", "zombies left")
    why_not = no_proc or (None if servers.get("fork").available else servers.get("fork").availability()[1])
    if why_not:
        for label in fork_labels:
            lesson.skip(label, why_not)
        fs = None
    else:
        fs = fork_server_processes()
        for label, key in zip(fork_labels, ("idle", "busy", "after", "zombies"), strict=True):
            lesson.measure(label, fs[key])

    n_items = 1_000_000 if quick else 3_000_000
    lesson.section(f"copy-on-write: a parent with a list of {n_items:,} ints forks")
    cow_labels = ("memory of the list in the parent", "child rss right after fork",
                  "child pss right after fork", "child uss right after fork", "parent pss after fork",
                  "child uss after reading bytes of the same size", "child uss after iterating the list",
                  "copied by iterating, share of the list")
    if no_proc or not os.path.exists("/proc/self/smaps_rollup"):
        for label in cow_labels:
            lesson.skip(label, no_proc or "no /proc/PID/smaps_rollup (Linux < 4.14)")
        cow = None
    else:
        cow = copy_on_write(n_items)
        lesson.measure("memory of the list in the parent", cow["list_kib"] / 1024, "MiB")
        lesson.measure("child rss right after fork", cow["child_after_fork"]["rss"] / 1024, "MiB")
        lesson.measure("child pss right after fork", cow["child_after_fork"]["pss"] / 1024, "MiB")
        lesson.measure("child uss right after fork", cow["child_after_fork"]["uss"] / 1024, "MiB")
        lesson.measure("parent pss after fork", cow["parent_after_fork"]["pss"] / 1024, "MiB")
        lesson.measure("child uss after reading bytes of the same size",
                       cow["child_after_bytes"]["uss"] / 1024, "MiB")
        lesson.measure("child uss after iterating the list", cow["child_after_list"]["uss"] / 1024, "MiB")
        copied_kib = cow["child_after_list"]["uss"] - cow["child_after_bytes"]["uss"]
        lesson.measure("copied by iterating, share of the list", 100 * copied_kib / cow["list_kib"], "%")

    sizes_mib = (0, 128, 256, 512, 1024)
    fork_repeats = 10 if quick else 30
    lesson.section(f"fork() as the parent grows (median of {fork_repeats})")
    fork_call = {}
    for size in sizes_mib:
        ballast = b"\x01" * (size * MiB)  # resident: every page of it was written
        fork_call[size] = lesson.measure(f"fork() call, parent +{size} MiB", statistics.median(
            fork_call_us() for _ in range(fork_repeats)), "µs")
        del ballast
    big = sizes_mib[-1]
    per_gib_us = lesson.measure("fork() cost per GiB the parent holds (least squares)",
                                slope(sizes_mib, [fork_call[s] for s in sizes_mib]) * 1024, "µs/GiB")
    lesson.series("fork_by_size", [{"mib": s, "fork_us": fork_call[s]} for s in sizes_mib])

    # -- what to notice, computed
    lesson.notice(f"fork + exit + wait took {fork_us:,.0f} µs; adding exec of `true` made it "
                  f"{exec_us:,.0f} µs: exec throws the copied program away and loads another")
    if not no_proc:
        lesson.notice(f"the exited child stayed in state {z['state']} until waited for; after wait it was "
                      f"{z['state_after_wait'] or 'gone from /proc'}")
    if fs:
        lesson.notice(f"the fork server ran {fs['busy']} processes for {FORK_SERVER_CLIENTS} clients "
                      f"(one per client plus the parent), and {fs['after']} once they left")
    if cow:
        after, shared = cow["child_after_fork"], cow["child_after_list"]
        lesson.notice(f"right after fork the child's RSS was {after['rss'] / 1024:,.0f} MiB but only "
                      f"{after['uss'] / 1024:,.1f} MiB of it its own: the rest is shared with the parent")
        lesson.notice(f"merely iterating the list made the child copy {copied_kib / 1024:,.0f} MiB "
                      f"({100 * copied_kib / cow['list_kib']:.0f}% of the list's memory): the reference "
                      "count lives in each int object, so every page of ints was written (the list's "
                      f"array of pointers was only read); its USS went to {shared['uss'] / 1024:,.0f} "
                      "MiB, while reading the bytes object copied almost nothing")
    lesson.notice(f"fork() took {fork_call[0]:,.0f} µs in a small parent and {fork_call[big]:,.0f} µs "
                  f"with {big} MiB more resident, about {per_gib_us:,.0f} µs more per GiB: the kernel "
                  "copies the page tables (one 8-byte entry per 4 KiB page, 2 MiB of them per GiB) "
                  "and, page by page, write-protects the entry and counts the second sharer; it "
                  "copies no page")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
