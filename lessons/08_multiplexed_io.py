"""Lesson 08, multiplexed I/O: one thread waits on many descriptors with select, poll or epoll.

What it shows, on this machine:

1. select()'s wall: its fd_set is a bitmap of FD_SETSIZE (1024) bits, so a descriptor numbered 1024
   or more cannot be waited on at all. With RLIMIT_NOFILE raised, the lesson puts a socket at fd
   1023 and at fd 1024 and asks select() and poll() about each: select() refuses 1024 (Python says
   so with a ValueError before the kernel is asked), poll() takes any number.
2. The cost of one wait call as idle descriptors pile up (10 ... 10,000 idle sockets plus one with
   bytes waiting): select() and poll() hand the kernel the whole list on every call and the kernel
   checks every entry, O(n); epoll keeps the interest list in the kernel and epoll_wait() only
   reads the ready list, O(ready).
3. Level- vs edge-triggered epoll on a live socket pair: how many waits report the same unread
   bytes (level: every one; edge: the first only), and that an edge-triggered descriptor stays
   silent after a partial read until new bytes arrive.
4. Regular files are always "ready": select() and poll() say a file is readable and writable at
   once (a disk read can still block; readiness does not apply to files), and epoll refuses a
   regular file outright with EPERM.

The OS mechanism: select(2), poll(2), epoll(7), epoll_ctl(2); TLPI ch. 63; UNP ch. 6.
Linux-only parts: epoll (sections 2-4).
"""

from __future__ import annotations

import errno
import os
import select
import socket
import statistics
import sys
import tempfile
import time

from lessons.common import Claim, Lesson, linux_only, parse_args

FD_SETSIZE = 1024  # glibc's, fixed when libc was built; Python does not export it
IDLE_COUNTS = (10, 100, 1_000, 10_000)
WAITS = 5  # wait calls per level/edge experiment
POLL_NAMES = {select.POLLIN: "POLLIN", select.POLLOUT: "POLLOUT", select.POLLPRI: "POLLPRI",
              select.POLLERR: "POLLERR", select.POLLHUP: "POLLHUP", select.POLLNVAL: "POLLNVAL"}


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit), with
    the lab's one helper for it; returns the soft limit now."""
    from servers.common import raise_fd_limit as raise_to
    return raise_to(wanted)


# -- 1. select()'s FD_SETSIZE ----------------------------------------------------------------------


def ask_at_fd(fd_number: int, source: socket.socket) -> dict[str, str]:
    """Put a readable socket at descriptor ``fd_number`` (dup2) and ask select() and poll()."""
    os.dup2(source.fileno(), fd_number)
    answers = {}
    try:
        try:
            readable, _, _ = select.select([fd_number], [], [], 0)
            answers["select"] = "accepted, says readable" if readable else "accepted"
        except ValueError as exc:
            answers["select"] = f"ValueError: {exc}"
        poller = select.poll()
        poller.register(fd_number, select.POLLIN)
        ready = poller.poll(0)
        answers["poll"] = "accepted, says readable" if ready else "accepted"
    finally:
        os.close(fd_number)
    return answers


# -- 2. the cost of one wait call -------------------------------------------------------------------


def per_call_us(call, budget_s: float) -> float:
    """Median time of one ``call()``, over batches run for about ``budget_s`` seconds."""
    batch = 1
    while True:  # size a batch to about 2 ms, so the clock's own cost does not count
        t0 = time.perf_counter()
        for _ in range(batch):
            call()
        if time.perf_counter() - t0 > 0.002 or batch >= 1 << 16:
            break
        batch *= 2
    samples = []
    deadline = time.perf_counter() + budget_s
    while time.perf_counter() < deadline or len(samples) < 3:
        t0 = time.perf_counter()
        for _ in range(batch):
            call()
        samples.append((time.perf_counter() - t0) / batch)
    return statistics.median(samples) * 1e6


def wait_costs(idle: int, budget_s: float) -> dict[str, float | str]:
    """One socket pair with a byte waiting, plus ``idle`` idle UDP sockets (one fd each, never
    readable). Time one non-blocking wait call over all of them, for each mechanism."""
    ready_end, peer = socket.socketpair()
    peer.send(b"x")
    idle_socks = []
    costs: dict[str, float | str] = {}
    try:
        for _ in range(idle):
            idle_socks.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        fds = [ready_end.fileno()] + [s.fileno() for s in idle_socks]

        if max(fds) >= FD_SETSIZE:
            costs["select"] = f"needs fd {max(fds)}, past FD_SETSIZE ({FD_SETSIZE})"
        else:
            assert select.select(fds, [], [], 0)[0] == [ready_end.fileno()]
            costs["select"] = per_call_us(lambda: select.select(fds, [], [], 0), budget_s)

        poller = select.poll()  # Python keeps the pollfd array between calls, like a C program
        for fd in fds:
            poller.register(fd, select.POLLIN)
        assert len(poller.poll(0)) == 1
        costs["poll"] = per_call_us(lambda: poller.poll(0), budget_s)

        if hasattr(select, "epoll"):
            with select.epoll() as epoll:
                for fd in fds:
                    epoll.register(fd, select.EPOLLIN)  # once: the kernel keeps the interest list
                assert len(epoll.poll(0)) == 1
                costs["epoll"] = per_call_us(lambda: epoll.poll(0), budget_s)
        else:
            costs["epoll"] = linux_only("epoll") or "no epoll here"
    finally:
        for s in idle_socks:
            s.close()
        ready_end.close()
        peer.close()
    return costs


# -- 3. level- vs edge-triggered --------------------------------------------------------------------


def count_reports(epoll, waits: int = WAITS) -> int:
    """How many of ``waits`` zero-timeout epoll_wait() calls report something."""
    return sum(1 for _ in range(waits) if epoll.poll(0))


def trigger_semantics(edge: bool) -> dict[str, int]:
    a, b = socket.socketpair()
    counts = {}
    try:
        with select.epoll() as epoll:
            epoll.register(a.fileno(), select.EPOLLIN | (select.EPOLLET if edge else 0))
            b.send(b"x" * 100)
            counts["unread"] = count_reports(epoll)  # nobody reads: 100 bytes stay unread
            a.recv(10)  # a partial read: 90 bytes are still in the buffer
            counts["partial"] = count_reports(epoll)
            b.send(b"y")  # new bytes arrive: a new edge
            counts["new bytes"] = count_reports(epoll)
    finally:
        a.close()
        b.close()
    return counts


# -- 4. regular files -------------------------------------------------------------------------------


def regular_file_readiness() -> dict[str, str]:
    answers = {}
    with tempfile.TemporaryFile() as f:
        f.write(b"data on disk\n")
        f.flush()
        readable, writable, _ = select.select([f], [f], [], 0)
        answers["select"] = ("readable" if readable else "not readable") + ", " + \
            ("writable" if writable else "not writable")
        poller = select.poll()
        poller.register(f, select.POLLIN | select.POLLOUT)
        revents = poller.poll(0)[0][1] if poller.poll(0) else 0
        answers["poll"] = "|".join(name for bit, name in POLL_NAMES.items() if revents & bit) or "none"
        if hasattr(select, "epoll"):
            with select.epoll() as epoll:
                try:
                    epoll.register(f, select.EPOLLIN)
                    answers["epoll"] = "accepted"
                except OSError as exc:
                    answers["epoll"] = f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return answers


# -- Pictures, from the recorded run (lessons/figures.py) ---------------------------------------------

MECHANISMS = ("select", "poll", "epoll")


def wait_cost(m, mech: str, idle: int):
    """The recorded µs of one wait call, or None where it was not measured."""
    entry = m.get(f"{mech} wait, {idle:,} idle fds")
    return entry["value"] if entry else None


def draw_wait_cost(record: dict, fig) -> None:
    """One wait call's cost against the number of idle descriptors, log-log."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})
    curves = {mech: [(n, wait_cost(m, mech, n)) for n in IDLE_COUNTS if wait_cost(m, mech, n) is not None]
              for mech in MECHANISMS}
    if not any(curves.values()):
        return not_measured(fig, "this run recorded no wait costs")
    ax = fig.subplots()
    for colour, (mech, points) in zip(COLOURS, curves.items(), strict=False):
        if points:
            ax.plot([n for n, _ in points], [us for _, us in points], marker="o", color=colour,
                    label=f"{mech}()" if mech != "epoll" else "epoll_wait()")
    if curves["poll"]:
        n0, us0 = curves["poll"][0]
        ns = [n0, IDLE_COUNTS[-1]]
        ax.plot(ns, [us0 * n / n0 for n in ns], color=COLOURS[7], linestyle=":", linewidth=1,
                label="proportional to n (slope 1)")
    ax.axvline(FD_SETSIZE, color=COLOURS[1], linestyle="--", linewidth=1)
    top_us = max(us for points in curves.values() for _, us in points)
    ax.text(FD_SETSIZE, top_us, f" FD_SETSIZE = {FD_SETSIZE}:\n select() cannot go past", color=COLOURS[0],
            fontsize=9, va="top")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("idle descriptors watched, plus one ready (log scale)")
    ax.set_ylabel("µs per wait call (log scale)")
    ax.set_title("One wait call: select and poll check every descriptor, epoll_wait reads the ready list")
    ax.legend(loc="upper left")


PICTURES = {"wait-cost": draw_wait_cost}


def _ratio(m, mech: str, hi: int, lo: int) -> float:
    return m[f"{mech} wait, {hi:,} idle fds"] / m[f"{mech} wait, {lo:,} idle fds"]


# The page's comparative sentences, checked against the recorded run (tests/test_claims.py).
CLAIMS = [
    Claim("select takes descriptor 1023 and refuses 1024",
          lambda m: m["select() on fd 1023"].startswith("accepted")
          and not m["select() on fd 1024"].startswith("accepted") and m["poll() on fd 1024"].startswith("accepted"),
          "select() accepted fd 1023 and refused 1024; poll() took 1024"),
    Claim("select and poll grow\n  roughly in proportion to the number of idle descriptors",
          lambda m: _ratio(m, "poll", 10_000, 100) > 20 and _ratio(m, "select", 1_000, 100) > 4
          and _ratio(m, "poll", 1_000, 100) > 4,
          "100 -> 1,000 fds: select and poll over 4x; 100 -> 10,000: poll over 20x"),
    Claim("epoll stays flat",
          lambda m: _ratio(m, "epoll", 10_000, 10) < 2,
          "epoll_wait at 10,000 idle fds costs under 2x what it does at 10"),
    Claim("Level-triggered reported the unread bytes on every one of the waits, and\n  still after a partial read",
          lambda m: m["level-triggered reports, 100 bytes unread"] == WAITS
          and m["level-triggered reports, after reading 10 of them"] == WAITS,
          "level-triggered: every wait reported, before and after the partial read"),
    Claim("Edge-triggered reported them once, then said nothing after a partial\n  read",
          lambda m: m["edge-triggered reports, 100 bytes unread"] == 1
          and m["edge-triggered reports, after reading 10 of them"] == 0
          and m["edge-triggered reports, after 1 new byte arrives"] == 1,
          "edge-triggered: 1 report, then 0 after the partial read, then 1 for the new byte"),
    Claim("select and poll said the regular file was readable and writable;\n  epoll refused it with `EPERM`",
          lambda m: m["select() on a regular file"] == "readable, writable"
          and "POLLIN" in m["poll() revents on a regular file"] and "POLLOUT" in m["poll() revents on a regular file"]
          and m["epoll_ctl(ADD) of a regular file"].startswith("EPERM"),
          "select/poll: readable and writable; epoll_ctl: EPERM"),
]


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("08", "Multiplexed I/O", args)
    budget_s = 0.08 if lesson.quick else 0.4
    fd_limit = raise_fd_limit(max(IDLE_COUNTS) + 64)

    lesson.section(f"select() and poll() on descriptor {FD_SETSIZE - 1} and {FD_SETSIZE}")
    labels = {(mech, fd): f"{mech}() on fd {fd}" for fd in (FD_SETSIZE - 1, FD_SETSIZE)
              for mech in ("select", "poll")}
    if fd_limit <= FD_SETSIZE:
        for label in labels.values():
            lesson.skip(label, f"RLIMIT_NOFILE is {fd_limit} here: no fd {FD_SETSIZE} possible")
    else:
        a, b = socket.socketpair()
        b.send(b"x")
        try:
            for fd in (FD_SETSIZE - 1, FD_SETSIZE):
                answers = ask_at_fd(fd, a)
                for mech in ("select", "poll"):
                    lesson.measure(labels[mech, fd], answers[mech])
        finally:
            a.close()
            b.close()

    lesson.section("one wait call, one descriptor ready, n idle ones (µs per call)")
    results: dict[tuple[str, int], float] = {}
    for idle in IDLE_COUNTS:
        label = {mech: f"{mech} wait, {idle:,} idle fds" for mech in ("select", "poll", "epoll")}
        if idle + 16 > fd_limit:
            for mech in label:
                lesson.skip(label[mech], f"RLIMIT_NOFILE is {fd_limit} here")
            continue
        for mech, cost in wait_costs(idle, budget_s).items():
            if isinstance(cost, str):
                lesson.skip(label[mech], cost)
            else:
                results[mech, idle] = lesson.measure(label[mech], cost, "µs")

    lesson.section(f"epoll, {WAITS} zero-timeout waits after each step, nobody reads unless said")
    why_not = linux_only("epoll")
    steps = (("unread", "100 bytes unread"), ("partial", "after reading 10 of them"),
             ("new bytes", "after 1 new byte arrives"))
    semantics = {}
    for edge, name in ((False, "level-triggered"), (True, "edge-triggered")):
        if not why_not:
            semantics[name] = trigger_semantics(edge)
        for key, text in steps:
            label = f"{name} reports, {text}"
            if why_not:
                lesson.skip(label, why_not)
            else:
                lesson.measure(label, semantics[name][key], f"of {WAITS}")

    lesson.section("a regular file")
    files = regular_file_readiness()
    lesson.measure("select() on a regular file", files["select"])
    lesson.measure("poll() revents on a regular file", files["poll"])
    if "epoll" in files:
        lesson.measure("epoll_ctl(ADD) of a regular file", files["epoll"])
    else:
        lesson.skip("epoll_ctl(ADD) of a regular file", why_not or "no epoll here")

    # -- what to notice, computed from the numbers above
    got = {label: m["value"] for label, m in lesson.measurements.items()}
    if "select() on fd 1024" in got:
        refused = not got["select() on fd 1024"].startswith("accepted")
        lesson.notice(f"select() took fd {FD_SETSIZE - 1} but "
                      + (f"refused fd {FD_SETSIZE} ({got['select() on fd 1024']})" if refused
                         else f"also took fd {FD_SETSIZE} (this libc has a larger FD_SETSIZE?)")
                      + "; poll() took both")
    lo, hi = IDLE_COUNTS[0], max(n for (_, n) in results) if results else None
    if hi and ("poll", lo) in results and ("poll", hi) in results:
        growth = {m: results[m, hi] / results[m, lo] for m in ("poll", "epoll") if (m, hi) in results}
        text = f"from {lo} to {hi:,} idle fds, one poll() grew {growth['poll']:,.0f}x " \
               f"({results['poll', lo]:.1f} -> {results['poll', hi]:,.0f} µs)"
        if "epoll" in growth:
            text += f", one epoll_wait() {growth['epoll']:.1f}x ({results['epoll', lo]:.1f} -> " \
                    f"{results['epoll', hi]:.1f} µs): poll scans every fd, epoll reads only the ready list"
        lesson.notice(text)
    selects = [n for (m, n) in results if m == "select"]
    if selects:
        top = max(selects)
        lesson.notice(f"select() stops at {top:,} idle fds here: the next size needs descriptors past "
                      f"FD_SETSIZE; up to there it costs {results['select', top]:,.0f} µs a call, "
                      f"poll() {results['poll', top]:,.0f} µs")
    if semantics:
        lt, et = semantics["level-triggered"], semantics["edge-triggered"]
        lesson.notice(f"the same unread bytes woke a level-triggered waiter {lt['unread']} times in "
                      f"{WAITS} waits, an edge-triggered one {et['unread']} time(s); after a partial "
                      f"read edge-triggered said {et['partial']} (bytes still unread!), until new bytes "
                      f"arrived ({et['new bytes']})")
    lesson.notice(f"a regular file: select() says {files['select']}, poll() says {files['poll']}"
                  + (f", epoll says {files['epoll']}" if "epoll" in files else "")
                  + ": readiness means nothing for files")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
