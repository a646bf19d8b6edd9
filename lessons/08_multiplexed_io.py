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
   EPOLLONESHOT: one report, then nothing, whatever arrives, until epoll_ctl(MOD) re-arms it.
4. Regular files are always "ready": select() and poll() say a file is readable and writable at
   once (a disk read can still block; readiness does not apply to files), and epoll refuses a
   regular file outright with EPERM.
5. The thundering herd: four processes, each with its own epoll instance on one listening socket
   (the pre-fork shape of nginx and others). Without EPOLLEXCLUSIVE (Linux 4.5) every connection
   wakes every one of them (counted as their voluntary context switches) and all but one find
   nothing to accept; with it, the kernel wakes one.
6. epoll registers the open file description, not the descriptor number: close() the registered
   fd while a dup() or a forked child still holds the socket, and epoll goes on reporting it, under
   the closed number, and epoll_ctl(DEL) can remove it by neither number.

The OS mechanism: select(2), poll(2), epoll(7), epoll_ctl(2); TLPI ch. 63; UNP ch. 6.
Linux-only parts: epoll (sections 2-6).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import socket
import statistics
import sys
import tempfile
import time

from lessons import procfs
from lessons.common import Claim, Lesson, linux_only, parse_args

FD_SETSIZE = 1024  # glibc's, fixed when libc was built; Python does not export it
IDLE_COUNTS = (10, 100, 1_000, 10_000)
WAITS = 5  # wait calls per level/edge experiment
HERD_WORKERS = 4  # acceptor processes on one listening socket
HERD_SETTLE_S = 0.005  # after each connection: the workers woken for nothing go back to sleep
HERD_TIMEOUT_S = 5.0  # every wait of the herd experiment is bounded by this
HERD_LABELS = ("wake-ups per connection", "epoll_waits that returned, per connection",
               "accepts that found nothing (EAGAIN), per connection")
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


# -- 5. several acceptors on one listening socket: the thundering herd -------------------------------


def acceptor(listener: socket.socket, exclusive: bool, ready_w: int, stop_r: int, report_w: int) -> None:
    """A forked worker: its own epoll instance watches the listening socket it inherited (with
    EPOLLEXCLUSIVE if ``exclusive``) and accepts what it can, until ``stop_r`` is readable. Reports
    its wake-ups (voluntary context switches: each time it slept in epoll_wait and was woken), the
    epoll_waits that returned, its accepts, and the accepts that found nothing (EAGAIN)."""
    epoll = select.epoll()
    epoll.register(listener.fileno(), select.EPOLLIN | (select.EPOLLEXCLUSIVE if exclusive else 0))
    epoll.register(stop_r, select.EPOLLIN)
    counts = {"returned": 0, "accepted": 0, "eagain": 0}
    before = int(procfs.status()["voluntary_ctxt_switches"])
    os.write(ready_w, b"r")
    while True:
        events = epoll.poll(HERD_TIMEOUT_S)
        if not events or any(fd == stop_r for fd, _ in events):
            break
        counts["returned"] += 1
        try:
            conn, _ = listener.accept()
            conn.close()  # the client sees the close: its connection was taken
            counts["accepted"] += 1
        except BlockingIOError:  # woken for a connection another worker took first
            counts["eagain"] += 1
    # Sleeps since `before`: one per wake-up by a connection, plus the last one, ended by the stop.
    counts["wakeups"] = int(procfs.status()["voluntary_ctxt_switches"]) - before - 1
    os.write(report_w, (json.dumps(counts) + "\n").encode())


def _read_within(fd: int, size: int, timeout_s: float) -> bytes:
    if not select.select([fd], [], [], timeout_s)[0]:
        raise RuntimeError(f"an acceptor said nothing within {timeout_s:g} s")
    return os.read(fd, size)


def herd(exclusive: bool, workers: int, connections: int) -> dict[str, float]:
    """``workers`` forked acceptors on one listening socket; ``connections`` clients connect one at
    a time, each waiting until a worker has taken it (closed it) and the others are asleep again.
    Returns the workers' totals per connection."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    listener.setblocking(False)
    ready, stop, report = os.pipe(), os.pipe(), os.pipe()
    pids = []
    try:
        for _ in range(workers):
            pid = os.fork()
            if pid == 0:
                try:
                    acceptor(listener, exclusive, ready[1], stop[0], report[1])
                except BaseException as exc:  # say so: the parent is waiting for this worker's line
                    os.write(report[1], (json.dumps({"error": repr(exc)}) + "\n").encode())
                finally:
                    os._exit(0)
            pids.append(pid)
        for _ in range(workers):
            _read_within(ready[0], 1, HERD_TIMEOUT_S)
        time.sleep(HERD_SETTLE_S)  # every worker is asleep in epoll_wait now
        for _ in range(connections):
            with socket.create_connection(listener.getsockname(), timeout=HERD_TIMEOUT_S) as client:
                if client.recv(1):  # b"": a worker accepted and closed it
                    raise RuntimeError("an acceptor sent bytes")
            time.sleep(HERD_SETTLE_S)  # the workers woken for nothing go back to sleep
        os.write(stop[1], b"s")  # readable for every worker: each leaves its loop and reports
        got = b""
        while got.count(b"\n") < workers:
            got += _read_within(report[0], 65536, HERD_TIMEOUT_S)
    finally:
        os.write(stop[1], b"s")
        deadline = time.monotonic() + HERD_TIMEOUT_S
        for pid in pids:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)  # by its pid: a worker that did not stop
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.001)
        for fd in (*ready, *stop, *report):
            os.close(fd)
        listener.close()
    totals = {"returned": 0, "accepted": 0, "eagain": 0, "wakeups": 0}
    for line in got.decode().splitlines():
        counts = json.loads(line)
        if "error" in counts:
            raise RuntimeError(f"an acceptor failed: {counts['error']}")
        for key, value in counts.items():
            totals[key] += value
    return {key: value / connections for key, value in totals.items()}


# -- 6. EPOLLONESHOT: one report, then silence until re-armed ---------------------------------------------


def oneshot_semantics() -> dict[str, int]:
    """Like trigger_semantics, with EPOLLONESHOT: after one report the descriptor is disabled in
    this epoll instance, whatever arrives, until epoll_ctl(MOD) arms it again."""
    a, b = socket.socketpair()
    counts = {}
    try:
        with select.epoll() as epoll:
            epoll.register(a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
            b.send(b"x" * 100)
            counts["unread"] = count_reports(epoll)
            b.send(b"y")  # new bytes: edge-triggered would report them, a one-shot does not
            counts["new bytes"] = count_reports(epoll)
            epoll.modify(a.fileno(), select.EPOLLIN | select.EPOLLONESHOT)  # re-arm
            counts["re-armed"] = count_reports(epoll)
    finally:
        a.close()
        b.close()
    return counts


# -- 7. epoll watches the open file, not the descriptor number ----------------------------------------


def registered_description() -> dict[str, str | int]:
    """Register a socket's fd, dup it, close the registered fd: the socket stays open through the
    dup, and epoll keeps reporting it, under the closed number, and cannot be told to stop by
    either number. Then the same with fork: a child's inherited copy keeps it open."""
    out: dict[str, str | int] = {}

    def errno_name(call) -> str:
        try:
            call()
            return "accepted"
        except OSError as exc:
            return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"

    a, peer = socket.socketpair()
    with select.epoll() as epoll:
        registered = a.fileno()
        epoll.register(registered, select.EPOLLIN)
        copy = os.dup(registered)
        a.close()  # the descriptor we registered is gone; the socket is not (the dup holds it)
        peer.send(b"x")
        events = epoll.poll(0)
        out["events"] = len(events)
        out["under the closed fd"] = "yes" if [fd for fd, _ in events] == [registered] else f"no: {events}"
        out["del closed"] = errno_name(lambda: epoll.unregister(registered))
        out["del dup"] = errno_name(lambda: epoll.unregister(copy))
        os.close(copy)  # the last descriptor of the socket: now the kernel removes it from epoll
        out["after last close"] = len(epoll.poll(0))
    peer.close()

    a, peer = socket.socketpair()
    release = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child holds its inherited copy of `a` until released
        try:
            os.read(release[0], 1)
        finally:
            os._exit(0)
    try:
        with select.epoll() as epoll:
            epoll.register(a.fileno(), select.EPOLLIN)
            a.close()  # the parent's descriptor is gone; the child's copy keeps the socket open
            peer.send(b"x")
            out["fork events"] = len(epoll.poll(0))
            os.write(release[1], b"x")
            os.waitpid(pid, 0)  # the child exits: the socket's last descriptor closes
            out["fork after exit"] = len(epoll.poll(0))
    finally:
        for fd in release:
            os.close(fd)
        peer.close()
    return out

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


def draw_herd(record: dict, fig) -> None:
    """Per connection, with and without EPOLLEXCLUSIVE: how many acceptors woke, how many returned
    from epoll_wait, how many accept()s found nothing."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})
    modes = [mode for mode in ("EPOLLIN", "EPOLLIN|EPOLLEXCLUSIVE") if f"{mode}: {HERD_LABELS[0]}" in m]
    if not modes:
        return not_measured(fig, "this run recorded no acceptors (not on Linux, or an older run)")
    ax = fig.subplots()
    width = 0.8 / len(HERD_LABELS)
    for i, (what, colour) in enumerate(zip(HERD_LABELS, COLOURS, strict=False)):
        values = [m[f"{mode}: {what}"]["value"] for mode in modes]
        bars = ax.bar([x + (i - 1) * width for x in range(len(modes))], values, width, color=colour, label=what)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=2, fontsize=9)
    ax.set_xticks(range(len(modes)), [f"{mode}\n({HERD_WORKERS} acceptors, each its own epoll)" for mode in modes])
    ax.set_ylim(0, HERD_WORKERS * 1.25)
    ax.set_ylabel("per connection")
    ax.set_title("One connection, several acceptors: the herd, and EPOLLEXCLUSIVE")
    ax.legend(loc="upper right")
    ax.grid(axis="x", visible=False)


PICTURES = {"wait-cost": draw_wait_cost, "herd": draw_herd}


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
    Claim("a line of slope 1 grows in proportion to the",
          lambda m: _ratio(m, "poll", 10_000, 100) > 20 and _ratio(m, "poll", 1_000, 100) > 4,
          "the poll curve climbs with the descriptors: 100 -> 1,000 over 4x, 100 -> 10,000 over 20x"),
    Claim("Where select costs more than poll for the same descriptors",
          lambda m: all(m[f"select wait, {n:,} idle fds"] > m[f"poll wait, {n:,} idle fds"] for n in (10, 100, 1_000)),
          "select() costs more than poll() at 10, 100 and 1,000 idle descriptors"),
    Claim("finds the socket no longer ready and goes back to sleep inside the call",
          lambda m: m[f"EPOLLIN: {HERD_LABELS[1]}"] < m[f"EPOLLIN: {HERD_LABELS[0]}"],
          "without EPOLLEXCLUSIVE, fewer epoll_waits return than acceptors wake"),
    Claim("With plain `EPOLLIN` every connection woke every acceptor; with\n  `EPOLLEXCLUSIVE`, one",
          lambda m: m[f"EPOLLIN: {HERD_LABELS[0]}"] >= 0.75 * HERD_WORKERS
          and m[f"EPOLLIN|EPOLLEXCLUSIVE: {HERD_LABELS[0]}"] <= 1.5
          and m[f"EPOLLIN: {HERD_LABELS[2]}"] > 0 and m[f"EPOLLIN|EPOLLEXCLUSIVE: {HERD_LABELS[2]}"] == 0,
          "plain EPOLLIN: 3 or more of the 4 acceptors woke per connection and some accept()s found nothing; "
          "EPOLLEXCLUSIVE: at most 1.5 woke and no accept() found nothing"),
    Claim("reported the unread bytes once, then stayed silent when a new byte\n  arrived",
          lambda m: m["EPOLLONESHOT reports, 100 bytes unread"] == 1
          and m["EPOLLONESHOT reports, after 1 new byte arrives"] == 0
          and m["EPOLLONESHOT reports, after epoll_ctl(MOD) re-arms it"] == 1
          and m["edge-triggered reports, after 1 new byte arrives"] == 1,
          "one-shot: 1 report, none for a new byte (edge-triggered: 1), 1 after the re-arm"),
    Claim("still reported the socket while a `dup()` of it was open",
          lambda m: m["events for a registered fd after close(), a dup() still open"] == 1
          and m["reported under the closed descriptor's number"] == "yes"
          and m["epoll_ctl(DEL) of the closed descriptor"].startswith("EBADF")
          and m["epoll_ctl(DEL) of the dup"].startswith("ENOENT")
          and m["events once the dup is closed too"] == 0
          and m["events for a registered fd after close(), a forked child holding it"] == 1
          and m["events once that child has exited"] == 0,
          "events after close() while a dup or a child holds the socket, under the closed number; DEL fails "
          "with EBADF and ENOENT; none once the last descriptor is closed"),
    Claim.unmeasured("there epoll's cost per wait stays flat",
                     "the committed c100k bench run (docs/results/c100k), linked here"),
    Claim("select and poll said the regular file was readable and writable;\n  epoll refused it with `EPERM`",
          lambda m: m["select() on a regular file"] == "readable, writable"
          and "POLLIN" in m["poll() revents on a regular file"] and "POLLOUT" in m["poll() revents on a regular file"]
          and m["epoll_ctl(ADD) of a regular file"].startswith("EPERM"),
          "select/poll: readable and writable; epoll_ctl: EPERM"),
]


# -- The lesson's sections, each printing what it measured and what to notice ----------------------


def fd_setsize_wall(lesson: Lesson, fd_limit: int) -> None:
    lesson.section(f"select() and poll() on descriptor {FD_SETSIZE - 1} and {FD_SETSIZE}")
    labels = {(mech, fd): f"{mech}() on fd {fd}" for fd in (FD_SETSIZE - 1, FD_SETSIZE)
              for mech in ("select", "poll")}
    if fd_limit <= FD_SETSIZE:
        lesson.skip_all(labels.values(), f"RLIMIT_NOFILE is {fd_limit} here: no fd {FD_SETSIZE} possible")
        return
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
    refused = not answers["select"].startswith("accepted")
    lesson.notice(f"select() took fd {FD_SETSIZE - 1} but "
                  + (f"refused fd {FD_SETSIZE} ({answers['select']})" if refused
                     else f"also took fd {FD_SETSIZE} (this libc has a larger FD_SETSIZE?)")
                  + "; poll() took both")


def wait_call_costs(lesson: Lesson, fd_limit: int) -> None:
    budget_s = 0.08 if lesson.quick else 0.4
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


def trigger_modes(lesson: Lesson, why_not: str | None) -> None:
    lesson.section(f"epoll, {WAITS} zero-timeout waits after each step, nobody reads unless said")
    steps = (("unread", "100 bytes unread"), ("partial", "after reading 10 of them"),
             ("new bytes", "after 1 new byte arrives"))
    oneshot_steps = (("unread", "100 bytes unread"), ("new bytes", "after 1 new byte arrives"),
                     ("re-armed", "after epoll_ctl(MOD) re-arms it"))
    semantics = {}
    for mode, run, mode_steps in (("level-triggered", lambda: trigger_semantics(False), steps),
                                  ("edge-triggered", lambda: trigger_semantics(True), steps),
                                  ("EPOLLONESHOT", oneshot_semantics, oneshot_steps)):
        if not why_not:
            semantics[mode] = run()
        for key, text in mode_steps:
            label = f"{mode} reports, {text}"
            if why_not:
                lesson.skip(label, why_not)
            else:
                lesson.measure(label, semantics[mode][key], f"of {WAITS}")
    if semantics:
        lt, et, one = semantics["level-triggered"], semantics["edge-triggered"], semantics["EPOLLONESHOT"]
        lesson.notice(f"the same unread bytes woke a level-triggered waiter {lt['unread']} times in "
                      f"{WAITS} waits, an edge-triggered one {et['unread']} time(s); after a partial "
                      f"read edge-triggered said {et['partial']} (bytes still unread!), until new bytes "
                      f"arrived ({et['new bytes']})")
        lesson.notice(f"EPOLLONESHOT reported {one['unread']} time(s), then {one['new bytes']} for new bytes "
                      f"(edge-triggered said {et['new bytes']}): disarmed until epoll_ctl(MOD), after which it "
                      f"reported {one['re-armed']} time(s) again")


def regular_files(lesson: Lesson, why_not: str | None) -> None:
    lesson.section("a regular file")
    files = regular_file_readiness()
    lesson.measure("select() on a regular file", files["select"])
    lesson.measure("poll() revents on a regular file", files["poll"])
    if "epoll" in files:
        lesson.measure("epoll_ctl(ADD) of a regular file", files["epoll"])
    else:
        lesson.skip("epoll_ctl(ADD) of a regular file", why_not or "no epoll here")
    lesson.notice(f"a regular file: select() says {files['select']}, poll() says {files['poll']}"
                  + (f", epoll says {files['epoll']}" if "epoll" in files else "")
                  + ": readiness means nothing for files")


def thundering_herd(lesson: Lesson, why_not: str | None) -> None:
    connections = 10 if lesson.quick else 40
    lesson.section(f"{HERD_WORKERS} processes, each with its own epoll on one listening socket; "
                   f"{connections} clients connect one at a time")
    herds = {}
    for mode, exclusive in (("EPOLLIN", False), ("EPOLLIN|EPOLLEXCLUSIVE", True)):
        labels = [f"{mode}: {what}" for what in HERD_LABELS]
        try:
            if why_not:
                raise RuntimeError(why_not)
            r = herds[mode] = herd(exclusive, HERD_WORKERS, connections)
        except (RuntimeError, OSError) as exc:
            lesson.skip_all(labels, str(exc))
            continue
        for label, key in zip(labels, ("wakeups", "returned", "eagain"), strict=True):
            lesson.measure(label, r[key], fmt=".2f")
    if len(herds) == 2:
        plain, exclusive = herds["EPOLLIN"], herds["EPOLLIN|EPOLLEXCLUSIVE"]
        lesson.notice(f"each connection woke {plain['wakeups']:.1f} of the {HERD_WORKERS} acceptors "
                      f"({plain['eagain']:.1f} of them reached accept() to find nothing), and "
                      f"{exclusive['wakeups']:.1f} with EPOLLEXCLUSIVE: the kernel wakes the exclusive "
                      "waiters one at a time")


def registrations(lesson: Lesson, why_not: str | None) -> None:
    lesson.section("epoll registers the open file, not the descriptor: dup() and fork()")
    labels = {"events": "events for a registered fd after close(), a dup() still open",
              "under the closed fd": "reported under the closed descriptor's number",
              "del closed": "epoll_ctl(DEL) of the closed descriptor",
              "del dup": "epoll_ctl(DEL) of the dup",
              "after last close": "events once the dup is closed too",
              "fork events": "events for a registered fd after close(), a forked child holding it",
              "fork after exit": "events once that child has exited"}
    if why_not:
        lesson.skip_all(labels.values(), why_not)
        return
    r = registered_description()
    for key, label in labels.items():
        lesson.measure(label, r[key])
    lesson.notice(f"after close() of the registered descriptor epoll reported {r['events']} event(s) for it "
                  f"while a dup() kept the socket open, and {r['fork events']} while a forked child did; "
                  f"epoll_ctl(DEL) answered {r['del closed'].split(':')[0]} for the closed number and "
                  f"{r['del dup'].split(':')[0]} for the dup: only the last close() removes the registration")


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("08", "Multiplexed I/O", args)
    fd_limit = raise_fd_limit(max(IDLE_COUNTS) + 64)
    why_not = linux_only("epoll")
    fd_setsize_wall(lesson, fd_limit)
    wait_call_costs(lesson, fd_limit)
    trigger_modes(lesson, why_not)
    regular_files(lesson, why_not)
    thundering_herd(lesson, why_not)
    registrations(lesson, why_not)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
