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
- the process state model, each state seen on a real child: R (running), S (sleeping), D (an
  uninterruptible wait), T (stopped), Z (zombie); and the address space of a running process, the
  `fork` server, from /proc/PID/maps: its program, heap, libraries, anonymous mappings and stack;
- fork copies the parent's page tables, so its cost grows with the parent's populated memory: one
  entry per 4 KiB page, or one per 2 MiB transparent huge page (THP) where the memory is in huge
  pages. Both are measured: the sweep in 4 KiB pages, then 1 GiB in huge pages, whatever THP mode
  the machine is in (madvise(2) MADV_NOHUGEPAGE and MADV_HUGEPAGE choose).

The OS mechanism: fork(2), execve(2), wait(2)/waitpid(2), _exit(2); proc(5) for /proc/PID/stat,
/proc/PID/status, /proc/PID/maps and /proc/PID/smaps_rollup (Linux 4.14+); madvise(2).

Linux-only: /proc (states, maps, USS/PSS) and huge pages; those parts are skipped elsewhere. fork, exec and wait
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
from lessons import procfs, states
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spawn import ballast, fork_exec_wait, fork_exit_wait, median_us, thp_mode

MiB = 1024 * 1024
FORK_SERVER_CLIENTS = 10
SWEEP_MIB = (0, 128, 256, 512, 1024)


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


# -- the process state model -------------------------------------------------------------------------------

HELD_IN = {  # label -> how a child is held in that state (lessons/states.py)
    "state of a child spinning on a CPU": states.running,
    "state of a child blocked in read() on an empty pipe": states.sleeping,
    "state of a vfork parent waiting for its child to exec": None,  # states.disk_sleep(true)
    "state of a child stopped by SIGSTOP": states.stopped,
}


def states_seen(true: str) -> dict[str, str | None]:
    """Each state of HELD_IN as /proc/PID/stat shows it on a child held there."""
    seen = {}
    for label, hold in HELD_IN.items():
        with (hold() if hold else states.disk_sleep(true)) as pid:
            seen[label] = procfs.state(pid)
    return seen


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


# -- the address space of a running process ---------------------------------------------------------------

KINDS = ("program", "heap", "libraries", "other files", "anonymous", "vdso and vvar", "stack", "vsyscall")


def kind_of(path: str, program: str) -> str:
    """What a mapping of /proc/PID/maps holds, from its path column."""
    if path == program:
        return "program"
    if path in ("[heap]", "[stack]", "[vsyscall]"):
        return path.strip("[]")
    if path.startswith(("[vdso", "[vvar")):
        return "vdso and vvar"
    if path.startswith("/"):
        return "libraries" if ".so" in path else "other files"
    return "anonymous"  # "" (or a named anonymous mapping)


def layout(regions: list, program: str) -> list[dict]:
    """The mappings grouped by kind, each kind's lowest start, highest end and mapped bytes, in
    address order of their lowest start."""
    kinds: dict[str, dict] = {}
    for start, end, _perms, path in regions:
        k = kinds.setdefault(kind_of(path, program), {"start": start, "end": end, "bytes": 0, "mappings": 0})
        k["start"], k["end"] = min(k["start"], start), max(k["end"], end)
        k["bytes"] += end - start
        k["mappings"] += 1
    return sorted(({"kind": kind, **k} for kind, k in kinds.items()), key=lambda k: k["start"])


# -- the fork server: a process per client -------------------------------------------------------------


def fork_server_processes() -> dict:
    server = servers.launch.start(servers.get("fork"))
    clients = []
    try:
        seen = {"idle": len(server.group_pids()), "maps": procfs.maps(server.pid)}
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


def fit(points: list[dict]) -> tuple[float, float, float]:
    """(µs per MiB, µs at 0 MiB, the largest distance of a point from the line as a share of the
    line's value there) of the least-squares line through the 4 KiB sweep."""
    xs, ys = [p["mib"] for p in points], [p["fork_us"] for p in points]
    per_mib = slope(xs, ys)
    base = statistics.fmean(ys) - per_mib * statistics.fmean(xs)
    off = max(abs(y - (base + per_mib * x)) / (base + per_mib * x) for x, y in zip(xs, ys, strict=True) if x)
    return per_mib, base, off


def draw_fork_by_size(record: dict, fig) -> None:
    """fork()'s cost against the parent's populated memory, in 4 KiB pages with the least-squares
    line, and 1 GiB in 2 MiB huge pages beside it."""
    from lessons.figures import COLOURS, not_measured
    points = record.get("series", {}).get("fork_by_size")
    if not points:
        return not_measured(fig, "this run recorded no fork() sweep over the parent's size")
    ax = fig.subplots()
    xs, ys = [p["mib"] for p in points], [p["fork_us"] for p in points]
    ax.plot(xs, ys, "o", color=COLOURS[0], markersize=7, label="4 KiB pages: fork() call, median")
    per_mib, base, _ = fit(points)
    ax.plot([0, max(xs)], [base, base + per_mib * max(xs)], "--", color=COLOURS[1],
            label=f"least squares: {per_mib * 1024:,.0f} µs per GiB")
    huge = record.get("measurements", {}).get("fork() call, parent +1024 MiB in 2 MiB huge pages")
    if huge:
        ax.plot([1024], [huge["value"]], "D", color=COLOURS[2], markersize=8,
                label=f"2 MiB huge pages: 1 GiB forks in {huge['shown']}")
    ax.set_xlabel("memory the parent has populated beyond its start (MiB)")
    ax.set_ylabel("time for fork() to return in the parent (µs)")
    ax.set_ylim(bottom=0)
    ax.set_title("fork() copies the page tables: one entry per 4 KiB page, or one per 2 MiB huge page")
    ax.legend(loc="upper left")


PICTURES = {"fork-by-size": draw_fork_by_size}


def _layout_order(m) -> bool:
    first = {k["kind"]: k["start"] for k in m.series["layout"]}
    return first["program"] < first["heap"] < first["libraries"] < first["stack"]


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
    Claim("the time grows in proportion to the parent's populated memory",
          lambda m: fit(m.series["fork_by_size"])[2] < 0.25
          and m["fork() call, parent +1024 MiB"] > 5 * m["fork() call, parent +0 MiB"],
          "every point of the 4 KiB sweep within 25 % of the least-squares line; +1 GiB over 5x the "
          "small parent"),
    Claim("rising along a straight line",
          lambda m: fit(m.series["fork_by_size"])[2] < 0.25,
          "every point of the 4 KiB sweep within 25 % of the least-squares line"),
    Claim("in 2 MiB huge pages the same gigabyte forks many times faster",
          lambda m: m["fork() call, parent +1024 MiB in 2 MiB huge pages"]
          < m["fork() call, parent +1024 MiB"] / 5
          and m["of those 1024 MiB, in huge pages (AnonHugePages)"] > 900,
          "1 GiB in huge pages forks in under a fifth of the time of 1 GiB in 4 KiB pages, and over "
          "900 MiB of it was in huge pages"),
    Claim("a running task shows `R`, one asleep in `read()` `S`, the parent of a vfork `D`, a stopped one `T`",
          lambda m: m["state of a child spinning on a CPU"].startswith("R")
          and m["state of a child blocked in read() on an empty pipe"].startswith("S")
          and m["state of a vfork parent waiting for its child to exec"].startswith("D")
          and m["state of a child stopped by SIGSTOP"].startswith("T"),
          "each held child showed the state it was held in"),
    Claim("the program lowest, its heap just above it, the libraries far above, the stack at the top",
          _layout_order, "program < heap < libraries < stack, by their lowest addresses"),
    Claim("lists what is mapped where, one line per mapping, lowest address first", _layout_order,
          "program < heap < libraries < stack, by their lowest addresses"),
    Claim("Its own program is a few pages",
          lambda m: m["fork server program, mapped"] < 1 and m["fork server libraries, mapped"]
          > 10 * m["fork server program, mapped"],
          "the program's mappings under 1 MiB, the libraries' over 10x that"),
    Claim("grows with the number of pages the parent has *populated*",
          lambda m: fit(m.series["fork_by_size"])[2] < 0.25,
          "every point of the 4 KiB sweep within 25 % of the least-squares line"),
    Claim.unmeasured("512 times fewer", "arithmetic: 2 MiB / 4 KiB = 512 entries; what it buys is "
                     "checked on 'many times faster'"),
    Claim("add up to about twice what is really used",
          lambda m: 0.4 < m["child pss right after fork"] / m["child rss right after fork"] < 0.6,
          "the child's PSS is 40-60 % of its RSS: the RSS counts the shared pages twice"),
    Claim.unmeasured("Two better measures", "a judgement of what USS and PSS count (proc(5)), not a figure"),
    Claim.unmeasured("each page divided by the number of processes sharing it",
                     "the definition of PSS (Documentation/filesystems/proc.rst), not a figure"),
    Claim.unmeasured("found a child left behind more often than not",
                     "the history of a CI failure (21 of 30 rounds, commit cb83a62), not measured by this lesson"),
]


# How far a reader's figure may be from the recorded one before it is named (lessons.common): where
# the mappings lie is chosen at random at each start (ASLR), and how many there are follows the
# Python build and its libraries.
TOLERANCE = {"fork server program mapped at": None, "fork server stack at": None,
             "fork server mappings (/proc/PID/maps)": None, "transparent huge pages (THP) mode": None}


# -- The lesson ----------------------------------------------------------------------------------------


def process_states(lesson: Lesson, no_proc: str | None, true: str) -> dict | None:
    """The zombie, then every other state a child can be held in; returns the zombie seen."""
    lesson.section("a zombie: a child that exited and was not waited for")
    zombie_labels = ("child state before wait", "zombie still holds memory", "child state 0.2 s later",
                     "child state after wait")
    if no_proc:
        lesson.skip_all((*zombie_labels, *HELD_IN), no_proc)
        return None
    z = watch_a_zombie()
    lesson.measure("child state before wait", z["state"])
    lesson.measure("zombie still holds memory", "yes" if z["memory"] else "no")
    lesson.measure("child state 0.2 s later", z["state_later"])
    lesson.measure("child state after wait", z["state_after_wait"] or "gone from /proc")
    lesson.section("the other states, each on a child held there (/proc/PID/stat field 3)")
    for label, state in states_seen(true).items():
        lesson.measure(label, state or "gone")
    return z


def fork_server(lesson: Lesson, no_proc: str | None) -> dict | None:
    """A process per client, and the address space of the server itself."""
    lesson.section(f"the fork server with {FORK_SERVER_CLIENTS} clients, and its address space")
    fork_labels = ("fork server processes, no client", f"fork server processes, {FORK_SERVER_CLIENTS} clients",
                   "fork server processes, after they left", "zombies left")
    map_labels = ("fork server mappings (/proc/PID/maps)", "fork server layout, lowest address first",
                  "fork server program mapped at", "fork server stack at")
    why_not = no_proc or (None if servers.get("fork").available else servers.get("fork").availability()[1])
    if why_not:
        lesson.skip_all((*fork_labels, *map_labels), why_not)
        return None
    fs = fork_server_processes()
    for label, key in zip(fork_labels, ("idle", "busy", "after", "zombies"), strict=True):
        lesson.measure(label, fs[key])
    kinds = layout(fs["maps"], os.path.realpath(sys.executable))
    where = {k["kind"]: k for k in kinds}
    lesson.measure(map_labels[0], len(fs["maps"]))
    lesson.measure(map_labels[1], ", ".join(k["kind"] for k in kinds))
    lesson.measure(map_labels[2], f"{where['program']['start']:#x}" if "program" in where else "?")
    lesson.measure(map_labels[3], f"{where['stack']['start']:#x}" if "stack" in where else "?")
    for kind in ("program", "heap", "libraries", "anonymous", "stack"):  # in every Python process
        lesson.measure(f"fork server {kind}, mapped", where[kind]["bytes"] / MiB if kind in where else 0.0, "MiB")
    lesson.series("layout", [{**k, "start": k["start"], "end": k["end"]} for k in kinds])
    return fs


def fork_by_size(lesson: Lesson, quick: bool, no_proc: str | None) -> tuple[dict, float | None]:
    """fork() as the parent grows, in 4 KiB pages; then 1 GiB in 2 MiB huge pages."""
    fork_repeats = 10 if quick else 30
    lesson.section(f"fork() as the parent grows, in 4 KiB pages, then in 2 MiB huge pages (median of {fork_repeats})")
    fork_call = {}
    for size in SWEEP_MIB:
        memory = ballast(size)  # populated: every page of it was written
        try:
            fork_call[size] = lesson.measure(f"fork() call, parent +{size} MiB", statistics.median(
                fork_call_us() for _ in range(fork_repeats)), "µs")
        finally:
            if memory:
                memory.close()
    lesson.measure("fork() cost per GiB the parent holds (least squares)",
                   slope(SWEEP_MIB, [fork_call[s] for s in SWEEP_MIB]) * 1024, "µs/GiB")
    lesson.series("fork_by_size", [{"mib": s, "fork_us": fork_call[s]} for s in SWEEP_MIB])

    mode = thp_mode()
    huge_labels = ("fork() call, parent +1024 MiB in 2 MiB huge pages", "of those 1024 MiB, in huge pages (AnonHugePages)")
    lesson.measure("transparent huge pages (THP) mode", mode or "none (no THP in this kernel)")
    why_not = no_proc or (
        "this kernel has no transparent huge pages (no /sys/kernel/mm/transparent_hugepage)" if mode is None else
        "transparent huge pages are off (/sys/kernel/mm/transparent_hugepage/enabled is never): "
        "`echo madvise | sudo tee /sys/kernel/mm/transparent_hugepage/enabled` lets a program ask"
        if mode == "never" else None)
    if why_not:
        lesson.skip_all(huge_labels, why_not)
        return fork_call, None
    before = procfs.smaps_rollup()["anon_huge"]
    memory = ballast(1024, huge=True)
    try:
        huge_mib = (procfs.smaps_rollup()["anon_huge"] - before) / 1024
        huge_us = lesson.measure(huge_labels[0], statistics.median(fork_call_us() for _ in range(fork_repeats)), "µs")
        lesson.measure(huge_labels[1], huge_mib, "MiB")
    finally:
        memory.close()
    return fork_call, huge_us


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("03", "Processes", args)
    quick = lesson.quick
    repeats = 50 if quick else 300
    no_proc = linux_only("/proc/PID/stat and /proc/PID/smaps_rollup")
    true = shutil.which("true") or "/bin/true"

    lesson.section(f"fork, exec, wait (median of {repeats})")
    lesson.measure("exit status the parent collected (child exited with 7)", fork_exit_wait(7))
    fork_us = lesson.measure("fork + exit + wait", median_us(fork_exit_wait, repeats), "µs")
    exec_us = lesson.measure("fork + exec true + wait", median_us(lambda: fork_exec_wait(true), repeats), "µs")

    z = process_states(lesson, no_proc, true)
    fs = fork_server(lesson, no_proc)

    n_items = 1_000_000 if quick else 3_000_000
    lesson.section(f"copy-on-write: a parent with a list of {n_items:,} ints forks")
    cow_labels = ("memory of the list in the parent", "child rss right after fork",
                  "child pss right after fork", "child uss right after fork", "parent pss after fork",
                  "child uss after reading bytes of the same size", "child uss after iterating the list",
                  "copied by iterating, share of the list")
    if no_proc or not os.path.exists("/proc/self/smaps_rollup"):
        lesson.skip_all(cow_labels, no_proc or "no /proc/PID/smaps_rollup (Linux < 4.14)")
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

    fork_call, huge_us = fork_by_size(lesson, quick, no_proc)
    per_mib, _, _ = fit([{"mib": s, "fork_us": fork_call[s]} for s in SWEEP_MIB])

    # -- what to notice, computed
    lesson.notice(f"fork + exit + wait took {fork_us:,.0f} µs; adding exec of `true` made it "
                  f"{exec_us:,.0f} µs: exec throws the copied program away and loads another")
    if z:
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
    big = SWEEP_MIB[-1]
    lesson.notice(f"fork() took {fork_call[0]:,.0f} µs in a small parent and {fork_call[big]:,.0f} µs "
                  f"with {big} MiB more populated in 4 KiB pages, about {per_mib * 1024:,.0f} µs more per "
                  "GiB: the kernel copies the page tables (one 8-byte entry per 4 KiB page, 2 MiB of "
                  "them per GiB) and, page by page, write-protects the entry and counts the second "
                  "sharer; it copies no page")
    if huge_us is not None:
        lesson.notice(f"the same {big} MiB in 2 MiB huge pages forked in {huge_us:,.0f} µs, "
                      f"{fork_call[big] / huge_us:,.0f}x faster: a huge page is one entry one level up "
                      "(a PMD entry, copy_huge_pmd), 512 times fewer to copy and write-protect; with "
                      "THP set to always, a program's large heap may be in huge pages without asking")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
