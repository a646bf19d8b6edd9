"""Lesson 07, blocking I/O: a recv() that waits puts its thread to sleep; one silent client stalls all.

What it shows, on this machine:

1. A thread blocked in recv() on a TCP socket is asleep in the kernel: its state in
   /proc/self/task/TID/stat is S (sleeping), its wait channel (/proc/.../wchan) names the kernel
   function it sleeps in, it uses no CPU while it waits, and the wait costs one *voluntary* context
   switch (the thread gave up the CPU itself; counted in /proc/self/task/TID/status). A recv() whose
   bytes are already in the socket's receive buffer returns at once, with no switch at all.
2. Head-of-line blocking. The `iterative` server serves one client at a time: while client A keeps
   its connection open without sending, client B's connect() succeeds (the kernel completes the
   handshake and parks the connection in the listen queue) but B's echo waits until A leaves. The
   `threads` server gives each connection its own thread, so B is echoed at once.

The OS mechanism: a blocking socket call that cannot complete puts the calling task on the socket's
wait queue and calls the scheduler (schedule()), which runs something else; the arrival of data
wakes the task up again. See recv(2), socket(7), and TLPI ch. 63 (alternative I/O models).

Linux-only parts: the task state, wait channel and switch counters come from /proc.
"""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time

import servers
from lessons.common import Lesson, linux_only, parse_args
from servers import launch

WAIT_S = 0.2  # how long the receiving thread is kept waiting for its bytes
HOLD_S = 1.0  # how long client A keeps the connection while client B waits
MESSAGE = b"hello, blocking world\n"


# -- 1. a recv() that waits ------------------------------------------------------------------------


def task_status(tid: int) -> dict[str, str]:
    """The lines of /proc/self/task/TID/status as a dict (the kernel's view of one thread)."""
    with open(f"/proc/self/task/{tid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def voluntary_switches(tid: int) -> int:
    return int(task_status(tid)["voluntary_ctxt_switches"])


def task_state(tid: int) -> tuple[str, str]:
    """(state letter and name, wait channel) of a thread, e.g. ("S (sleeping)", "wait_woken")."""
    state = task_status(tid)["State"].strip()
    try:
        with open(f"/proc/self/task/{tid}/wchan") as f:
            wchan = f.read().strip()
    except OSError:
        wchan = "0"
    return state, wchan


def connected_pair() -> tuple[socket.socket, socket.socket]:
    """Two ends of one loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server_end, _ = listener.accept()
    return client, server_end


def blocking_recv_trial(wait_s: float) -> dict:
    """A thread calls recv() on a socket with nothing to read; the main thread looks at it while it
    sleeps, then sends. The thread counts its own voluntary switches and CPU time around recv()."""
    receiver, sender = connected_pair()
    seen: dict = {}
    started = threading.Event()

    def receive():
        tid = threading.get_native_id()
        seen["tid"] = tid
        before, cpu0, t0 = voluntary_switches(tid), time.thread_time_ns(), time.perf_counter_ns()
        started.set()
        seen["data"] = receiver.recv(1024)  # nothing there yet: the thread sleeps here
        seen["wall_ns"] = time.perf_counter_ns() - t0
        seen["cpu_ns"] = time.thread_time_ns() - cpu0
        seen["switches"] = voluntary_switches(seen["tid"]) - before

    thread = threading.Thread(target=receive)
    try:
        thread.start()
        started.wait()
        time.sleep(wait_s / 2)
        seen["state"], seen["wchan"] = task_state(seen["tid"])  # while it is blocked
        time.sleep(wait_s / 2)
        sender.sendall(b"x")
        thread.join(5)
    finally:
        receiver.close()
        sender.close()
    return seen


def ready_recv_trial() -> dict:
    """recv() when the byte is already in the receive buffer: it returns without sleeping."""
    receiver, sender = connected_pair()
    try:
        sender.sendall(b"x")
        time.sleep(0.05)  # let the byte cross loopback into the receive buffer
        tid = threading.get_native_id()
        before, t0 = voluntary_switches(tid), time.perf_counter_ns()
        receiver.recv(1024)
        wall_ns = time.perf_counter_ns() - t0
        return {"switches": voluntary_switches(tid) - before, "wall_ns": wall_ns}
    finally:
        receiver.close()
        sender.close()


# -- 2. head-of-line blocking -----------------------------------------------------------------------


def round_trip(sock: socket.socket, message: bytes) -> None:
    """Send ``message`` and read until all of it is echoed back."""
    sock.sendall(message)
    got = 0
    while got < len(message):
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        got += len(chunk)


def second_client_latency(name: str, hold_s: float) -> dict:
    """Client A connects and stays silent for ``hold_s``; meanwhile client B connects and asks for
    one echo. Returns B's connect time and B's echo latency, both in seconds."""
    server = launch.start(servers.get(name))
    a = b = None
    closer = None
    try:
        a = socket.create_connection(server.address, timeout=10)
        round_trip(a, MESSAGE)  # the server is now serving A, blocked in recv() on A's socket
        closer = threading.Timer(hold_s, a.close)  # A leaves after hold_s
        closer.start()
        t0 = time.perf_counter()
        b = socket.create_connection(server.address, timeout=hold_s + 10)
        connect_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        round_trip(b, MESSAGE)
        echo_s = time.perf_counter() - t1
        return {"connect_s": connect_s, "echo_s": echo_s}
    finally:
        if closer:
            closer.cancel()
        for sock in (a, b):
            if sock:
                sock.close()
        server.stop()


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("07", "Blocking I/O", args)
    trials = 3 if lesson.quick else 9

    lesson.section(f"a thread blocked in recv() for {WAIT_S * 1000:.0f} ms (median of {trials} tries)")
    why_not = linux_only("/proc/self/task/TID/status and wchan")
    labels = ("task state while blocked", "kernel wait channel", "voluntary switches per blocking recv",
              "cpu used while blocked", "wall time blocked", "voluntary switches per ready recv",
              "ready recv duration")
    blocked = ready = None
    if why_not:
        for label in labels:
            lesson.skip(label, why_not)
    else:
        runs = [blocking_recv_trial(WAIT_S) for _ in range(trials)]
        blocked = {
            "switches": statistics.median(r["switches"] for r in runs),
            "cpu_us": statistics.median(r["cpu_ns"] for r in runs) / 1000,
            "wall_ms": statistics.median(r["wall_ns"] for r in runs) / 1e6,
        }
        lesson.measure(labels[0], runs[-1]["state"])
        if runs[-1]["wchan"] in ("", "0"):
            lesson.skip(labels[1], "this kernel does not show wait channels (/proc/PID/wchan is 0)")
        else:
            lesson.measure(labels[1], runs[-1]["wchan"])
        lesson.measure(labels[2], blocked["switches"])
        lesson.measure(labels[3], blocked["cpu_us"], "µs")
        lesson.measure(labels[4], blocked["wall_ms"], "ms")
        readies = [ready_recv_trial() for _ in range(trials)]
        ready = {
            "switches": statistics.median(r["switches"] for r in readies),
            "us": statistics.median(r["wall_ns"] for r in readies) / 1000,
        }
        lesson.measure(labels[5], ready["switches"])
        lesson.measure(labels[6], ready["us"], "µs")

    lesson.section(f"client B asks for an echo while client A holds the connection for {HOLD_S:.0f} s")
    results = {}
    for name in ("iterative", "threads"):
        label_connect, label_echo = f"client B connect time on {name}", f"client B echo latency on {name}"
        try:
            available, reason = servers.get(name).availability()
        except KeyError as exc:
            available, reason = False, str(exc)
        if not available:
            lesson.skip(label_connect, reason)
            lesson.skip(label_echo, reason)
            continue
        r = results[name] = second_client_latency(name, HOLD_S)
        lesson.measure(label_connect, r["connect_s"] * 1000, "ms")
        lesson.measure(label_echo, r["echo_s"] * 1000, "ms")

    if blocked:
        share = blocked["cpu_us"] / (blocked["wall_ms"] * 1000) * 100
        lesson.notice(f"the blocked thread waited {blocked['wall_ms']:.0f} ms and used "
                      f"{blocked['cpu_us']:.0f} µs of CPU in that time ({share:.2f} %): it slept in "
                      f"the kernel, with {blocked['switches']:g} voluntary context switch"
                      + ("" if blocked["switches"] == 1 else "es") + " per wait")
        lesson.notice(f"a recv() with the byte already there made {ready['switches']:g} switches and "
                      f"took {ready['us']:.0f} µs: a blocking call only sleeps when there is nothing to read")
    if "iterative" in results:
        it = results["iterative"]
        lesson.notice(f"on iterative, B's connect() took {it['connect_s'] * 1000:.2f} ms (the kernel "
                      f"queued it) but its echo took {it['echo_s'] * 1000:.0f} ms, about the "
                      f"{HOLD_S * 1000:.0f} ms A held the server: head-of-line blocking")
    if "iterative" in results and "threads" in results:
        th = results["threads"]
        lesson.notice(f"on threads, B's echo took {th['echo_s'] * 1000:.2f} ms, "
                      f"{results['iterative']['echo_s'] / th['echo_s']:,.0f}x less: "
                      "A's silence stalls only A's own thread")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
