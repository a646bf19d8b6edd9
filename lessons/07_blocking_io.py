"""Lesson 07, blocking I/O: a recv() that waits puts its thread to sleep; one silent client stalls all.

What it shows, on this machine:

1. A thread blocked in recv() on a TCP socket is asleep in the kernel: its state in
   /proc/self/task/TID/stat is S (sleeping), its wait channel (/proc/.../wchan) names the kernel
   function it sleeps in, it uses no CPU while it waits, and the wait costs one *voluntary* context
   switch (the thread gave up the CPU itself; counted in /proc/self/task/TID/status). A recv() whose
   bytes are already in the socket's receive buffer returns at once, with no switch at all.
2. A signal during a blocking recv(). The kernel interrupts the call to run the handler; without
   SA_RESTART the call then fails with EINTR. C sees that (libc recv() through ctypes returns -1,
   errno EINTR); Python retries for you since 3.5 (PEP 475): socket.recv() runs the handler and
   calls recv() again, and returns the bytes when they come. With SA_RESTART
   (signal.siginterrupt(sig, False)) the kernel restarts the call itself.
3. send() under backpressure: a client that never reads. send() returns at once while the kernel
   can queue the bytes (the sender's send queue, the receiver's receive queue: FIONREAD and
   SIOCOUTQ count them), then blocks; a blocked sender sleeps like a blocked receiver, until the
   reader drains.
4. Signal-driven I/O (Stevens' fourth I/O model): a UDP socket with O_ASYNC and F_SETOWN raises
   SIGIO when a datagram arrives and the handler reads it; with F_SETSIG a queued real-time signal
   carries what happened (si_code POLL_IN, si_band POLLIN|POLLRDNORM).
5. Where the copy lands. recv() copies the bytes from the socket's buffers into yours, and the
   speed of that copy can depend on where your buffer starts. The same 64 KiB recv() into one
   buffer at several offsets from a page boundary, interleaved: on some CPUs (an AMD EPYC the lab
   once ran on) a buffer 1 to 31 bytes past a page boundary took several times longer than one on
   it, and glibc's malloc puts a large buffer exactly there (its own mmap, the pointer 16 bytes
   past the page); on others no offset matters. The lab's C load engine page-aligns its buffer
   for that reason (bench/load/engine.c).
6. Head-of-line blocking. The `iterative` server serves one client at a time: while client A keeps
   its connection open without sending, client B's connect() succeeds (the kernel completes the
   handshake and parks the connection in the listen queue) but B's echo waits until A leaves. The
   `threads` server gives each connection its own thread, so B is echoed at once.
7. Blocking on disk (lessons/_07_disk.py): a file's pages dropped from the page cache, read twice.
   The first read waits for the disk, the thread seen in D ("disk sleep") and /proc/self/io
   counting the bytes fetched from storage; the second comes from the page cache, all CPU.

The OS mechanism: a blocking socket call that cannot complete puts the calling task on the socket's
wait queue and calls the scheduler (schedule()), which runs something else; the arrival of data
(or of room in the send buffer) wakes the task up again. A signal wakes it too: the call returns
-ERESTARTSYS inside the kernel, the handler runs, and the call is restarted (SA_RESTART) or fails
with EINTR. See recv(2), send(2), signal(7) ("Interruption of system calls"), fcntl(2) (O_ASYNC,
F_SETOWN, F_SETSIG), socket(7), PEP 475, TLPI ch. 21.5 and 63, UNP ch. 6 and 25.

Linux-only parts: the task state, wait channel and switch counters come from /proc; FIONREAD and
SIOCOUTQ on sockets and F_SETSIG are Linux's; so are /proc/self/io and posix_fadvise's effect.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import socket
import statistics
import struct
import sys
import threading
import time

import servers
from lessons import procfs
from lessons._07_disk import CLAIMS as DISK_CLAIMS
from lessons._07_disk import MACHINE_LABELS as DISK_MACHINE_LABELS
from lessons._07_disk import disk_section
from lessons._07_pictures import draw_copy_destination, draw_eintr, draw_head_of_line
from lessons.common import Claim, Lesson, linux_only, parse_args
from servers import launch

WAIT_S = 0.2  # how long the receiving thread is kept waiting for its bytes
HOLD_S = 1.0  # how long client A keeps the connection while client B waits
MESSAGE = b"hello, blocking world\n"
SIGNAL_AT_S = 0.05  # when the signal interrupts the blocked recv()
DATA_AT_S = 0.15  # when the byte it waits for arrives
BLOCKED_LOOK_S = 0.2  # how long a blocked send() is watched before the reader drains
SEND_CHUNK_BYTES = 64 * 1024
SIGNAL_TIMEOUT_S = 1.0
POLL_BAND_NAMES = {select.POLLIN: "POLLIN", select.POLLRDNORM: "POLLRDNORM", select.POLLOUT: "POLLOUT",
                   select.POLLERR: "POLLERR", select.POLLHUP: "POLLHUP", select.POLLPRI: "POLLPRI"}
SI_CODES = {1: "POLL_IN", 2: "POLL_OUT", 3: "POLL_MSG", 4: "POLL_ERR", 5: "POLL_PRI", 6: "POLL_HUP"}
COPY_BYTES = 64 * 1024  # one recv() of this much, already waiting in the socket
COPY_OFFSETS = (0, 16, 64, 2048)  # where the buffer starts: bytes past a page boundary
PAGE = 4096


# -- 1. a recv() that waits ------------------------------------------------------------------------


def voluntary_switches(tid: int) -> int:
    return int(procfs.status("self", tid)["voluntary_ctxt_switches"])


def task_state(tid: int) -> tuple[str, str]:
    """(state letter and name, wait channel) of a thread, e.g. ("S (sleeping)", "wait_woken")."""
    return procfs.status("self", tid)["State"], procfs.read(f"/proc/self/task/{tid}/wchan") or "0"


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


# -- 2. a signal during a blocking recv(): EINTR, PEP 475 and SA_RESTART --------------------------


def libc_recv():
    """libc's recv(2) through ctypes, keeping errno: a C program's view of the call."""
    libc = ctypes.CDLL(None, use_errno=True)
    recv = libc.recv
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    recv.restype = ctypes.c_ssize_t
    return recv


def interrupted_recv_trial(caller: str, restart: bool) -> dict:
    """The main thread blocks in recv() (``caller``: "python" for socket.recv, "c" for libc's recv);
    a helper thread sends it SIGUSR1 at SIGNAL_AT_S and the byte it waits for at DATA_AT_S.
    ``restart``: install the handler with SA_RESTART (signal.siginterrupt(sig, False)).
    Python runs signal handlers in the main thread only, so the lesson calls this from there."""
    receiver, sender = connected_pair()
    seen: dict = {}
    t0 = time.perf_counter()

    def handler(signum, frame):
        seen.setdefault("handler_ms", (time.perf_counter() - t0) * 1e3)

    previous = signal.signal(signal.SIGUSR1, handler)
    signal.siginterrupt(signal.SIGUSR1, not restart)  # False: SA_RESTART, the kernel restarts recv
    main = threading.main_thread().ident

    def poke():
        time.sleep(SIGNAL_AT_S)
        signal.pthread_kill(main, signal.SIGUSR1)  # to the main thread, which is blocked in recv
        time.sleep(DATA_AT_S - SIGNAL_AT_S)
        sender.sendall(b"x")

    helper = threading.Thread(target=poke)
    try:
        t0 = time.perf_counter()
        helper.start()
        if caller == "python":
            try:
                result = f"{len(receiver.recv(16))} byte, no exception"
            except InterruptedError as exc:  # what Python before 3.5 did
                result = f"InterruptedError: {exc}"
        else:
            buffer = ctypes.create_string_buffer(16)
            n = libc_recv()(receiver.fileno(), buffer, 16, 0)  # ctypes releases the GIL meanwhile
            result = (f"{n} byte" if n >= 0 else
                      f"-1, errno {errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())}")
        seen["returned_ms"] = (time.perf_counter() - t0) * 1e3
        helper.join(5)
        deadline = time.monotonic() + SIGNAL_TIMEOUT_S
        while "handler_ms" not in seen and time.monotonic() < deadline:
            time.sleep(0.001)  # the Python handler runs at the next bytecode boundary of this thread
        seen["result"] = result
    finally:
        signal.signal(signal.SIGUSR1, previous)
        receiver.close()
        sender.close()
    return seen


# -- 3. send() under backpressure ----------------------------------------------------------------------


def queued_bytes(sock: socket.socket, request: int) -> int:
    """ioctl FIONREAD (bytes in the receive queue) or TIOCOUTQ/SIOCOUTQ (bytes in the send queue)."""
    return struct.unpack("i", fcntl.ioctl(sock, request, b"\0\0\0\0"))[0]


def send_backpressure() -> dict:
    """A receiver that never reads. Send without blocking until no byte more fits for 100 ms, then
    look at where the bytes are; then call a blocking send() in a thread, see it sleep, and drain."""
    import termios  # Linux's FIONREAD and TIOCOUTQ (SIOCOUTQ on sockets) numbers
    sender, receiver = connected_pair()
    chunk = bytes(SEND_CHUNK_BYTES)
    out: dict = {}
    try:
        sender.setblocking(False)
        sent, last_progress = 0, time.monotonic()
        while time.monotonic() - last_progress < 0.1:  # TCP may grow its buffers as data flows
            try:
                sent += sender.send(chunk)
                last_progress = time.monotonic()
            except BlockingIOError:  # EAGAIN: a blocking send() would sleep here
                time.sleep(0.005)
        out.update(sent=sent, in_receive_queue=queued_bytes(receiver, termios.FIONREAD),
                   in_send_queue=queued_bytes(sender, termios.TIOCOUTQ),
                   sndbuf=sender.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                   rcvbuf=receiver.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

        sender.setblocking(True)
        done = threading.Event()

        def blocking_send():
            out["tid"] = threading.get_native_id()
            sender.send(chunk)  # the buffers are full: the thread sleeps here
            done.set()

        thread = threading.Thread(target=blocking_send, daemon=True)
        thread.start()
        time.sleep(BLOCKED_LOOK_S)
        out["still_blocked"] = not done.is_set()
        out["state"], out["wchan"] = task_state(out["tid"])
        receiver.setblocking(False)
        drained = 0
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            try:
                drained += len(receiver.recv(1 << 20))
            except BlockingIOError:
                time.sleep(0.001)
        out["drained"] = drained
        out["returned"] = done.wait(5)
    finally:
        sender.close()
        receiver.close()
    return out


# -- 4. signal-driven I/O -------------------------------------------------------------------------------


def signal_driven_udp() -> dict:
    """A UDP socket with O_ASYNC: the kernel sends this process SIGIO when a datagram arrives, and
    the handler reads it. Then F_SETSIG: a queued real-time signal whose siginfo says what happened.
    Python hands a handler no siginfo, so the second part blocks the signal and takes it with
    sigtimedwait(), as a C program with sigwaitinfo() would."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    got: list[bytes] = []
    signals_ms: list[float] = []
    t0 = time.perf_counter()

    def on_sigio(signum, frame):
        signals_ms.append((time.perf_counter() - t0) * 1e3)
        while True:  # read everything there is: several datagrams can share one SIGIO
            try:
                got.append(rx.recv(2048))
            except BlockingIOError:
                return

    previous = signal.signal(signal.SIGIO, on_sigio)
    rt_signal = signal.SIGRTMIN + 2  # any real-time signal this program does not use otherwise
    out: dict = {}
    try:
        rx.bind(("127.0.0.1", 0))
        fcntl.fcntl(rx, fcntl.F_SETOWN, os.getpid())  # who gets the signal
        fcntl.fcntl(rx, fcntl.F_SETFL, fcntl.fcntl(rx, fcntl.F_GETFL) | os.O_ASYNC | os.O_NONBLOCK)
        t0 = time.perf_counter()
        tx.sendto(b"one datagram", rx.getsockname())
        deadline = time.monotonic() + SIGNAL_TIMEOUT_S
        while not got and time.monotonic() < deadline:
            time.sleep(0.001)  # the main thread does other things; the signal interrupts them
        time.sleep(0.02)  # any second SIGIO for the same datagram would come now
        out.update(signals=len(signals_ms), read_in_handler=got == [b"one datagram"],
                   first_signal_us=signals_ms[0] * 1e3 if signals_ms else None)

        signal.pthread_sigmask(signal.SIG_BLOCK, {rt_signal})
        try:
            fcntl.fcntl(rx, fcntl.F_SETSIG, rt_signal)  # queue this signal, with siginfo, not SIGIO
            tx.sendto(b"two", rx.getsockname())
            info = signal.sigtimedwait({rt_signal}, SIGNAL_TIMEOUT_S)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {rt_signal})
        if info is not None:
            out["si_code"] = SI_CODES.get(info.si_code, str(info.si_code))
            out["si_band"] = "|".join(name for bit, name in POLL_BAND_NAMES.items() if info.si_band & bit)
            out["read_after"] = rx.recv(2048) == b"two"
    finally:
        signal.signal(signal.SIGIO, previous)
        rx.close()
        tx.close()
    return out


# -- 5. where the copy lands -------------------------------------------------------------------------


def copy_destination_trial(rounds: int, recvs: int) -> dict[int, float]:
    """µs per recv_into() of COPY_BYTES over loopback TCP, by how far past a page boundary the
    buffer starts (COPY_OFFSETS): the median over `rounds` rounds, each timing `recvs` recvs per
    offset, the offsets' order rotating from round to round. The sender writes a whole message
    before each recv, so the bytes are waiting and recv only copies them."""
    raw = ctypes.create_string_buffer(COPY_BYTES + max(COPY_OFFSETS) + 2 * PAGE)
    first_page = -ctypes.addressof(raw) % PAGE  # the first page boundary inside the buffer
    memory = memoryview(raw).cast("B")
    a, b = connected_pair()
    message = os.urandom(COPY_BYTES)
    per_offset: dict[int, list[float]] = {off: [] for off in COPY_OFFSETS}
    try:
        for r in range(rounds):
            k = r % len(COPY_OFFSETS)
            for off in COPY_OFFSETS[k:] + COPY_OFFSETS[:k]:
                view = memory[first_page + off:first_page + off + COPY_BYTES]
                spent = 0
                for _ in range(recvs):
                    a.sendall(message)
                    t0 = time.perf_counter_ns()
                    got = b.recv_into(view, COPY_BYTES, socket.MSG_WAITALL)
                    spent += time.perf_counter_ns() - t0
                    if got != COPY_BYTES:
                        raise RuntimeError(f"recv_into returned {got} of {COPY_BYTES} bytes")
                if bytes(view) != message:
                    raise RuntimeError("the bytes received are not the bytes sent")
                per_offset[off].append(spent / recvs / 1000)
    finally:
        view = None
        memory.release()
        a.close()
        b.close()
    return {off: statistics.median(v) for off, v in per_offset.items()}


# -- 6. head-of-line blocking -----------------------------------------------------------------------


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


def copy_label(offset: int) -> str:
    where = "on a page boundary" if offset == 0 else f"{offset} bytes past a page boundary"
    return f"recv() of {COPY_BYTES // 1024} KiB, buffer {where}"


# How far a reader's figure may be from the recorded one before it is named (lessons.common): the
# buffer sizes are the kernel's TCP autotuning on that machine; the wait channel's name is the
# kernel version's; the copy's speed is the CPU's.
TOLERANCE = {label: None for label in (
    *(copy_label(off) for off in COPY_OFFSETS), "16 bytes past a page, against on the boundary",
    "bytes accepted before send() would block", "of them in the receiver's receive queue (FIONREAD)",
    "of them in the sender's send queue (SIOCOUTQ)", "sender's SO_SNDBUF", "receiver's SO_RCVBUF",
    "bytes the reader drained before send() returned", "kernel wait channel", "blocked sender's wait channel",
    "SIGIO after the sendto()", "cpu used while blocked", "ready recv duration",
    "client B connect time on iterative", "client B connect time on threads", "client B echo latency on threads",
    *DISK_MACHINE_LABELS)}


# -- Pictures, from the recorded run (lessons/_07_pictures.py, lessons/figures.py) -----------------------

PICTURES = {"head-of-line": draw_head_of_line, "eintr": draw_eintr,
            "copy-destination": draw_copy_destination}


# The page's comparative sentences, checked against the recorded run (tests/test_claims.py).
CLAIMS = DISK_CLAIMS + [
    Claim.unmeasured("so a program can\n  lose most of a big `recv()`'s speed",
                     "the lab's C load engine on the AMD EPYC it first ran on, which lost half its req/s at 64 KiB "
                     "to a malloc'd buffer 16 bytes past a page (docs/bench.md; the commit that page-aligned it)"),
    Claim("B's echo took about as long as A held the server",
          lambda m: 0.9 * HOLD_S * 1e3 < m["client B echo latency on iterative"] < 1.5 * HOLD_S * 1e3,
          "iterative: B's echo latency is within -10 %/+50 % of A's hold time"),
    Claim("B's echo came back in under a millisecond, over a thousand times sooner than on `iterative`",
          lambda m: m["client B echo latency on threads"] < 1
          and m["client B echo latency on iterative"] > 1000 * m["client B echo latency on threads"],
          "threads: B's echo under 1 ms and over 1,000x sooner than on iterative"),
    Claim("B's `connect()` took well under a millisecond",
          lambda m: m["client B connect time on iterative"] < 1,
          "iterative: B's connect() under 1 ms"),
    Claim("Compare its CPU time with the time it waited: a tiny fraction",
          lambda m: m["cpu used while blocked"] / 1e3 < 0.01 * m["wall time blocked"],
          "CPU time while blocked under 1 % of the wait"),
    Claim("The blocking `recv()` cost about one voluntary context switch",
          lambda m: 1 <= m["voluntary switches per blocking recv"] <= 2,
          "one or two voluntary switches per blocking recv"),
    Claim("returned within microseconds",
          lambda m: m["ready recv duration"] < 1000,
          "a ready recv() took under 1 ms"),
    Claim("the `recv()` whose byte was already there cost none",
          lambda m: m["voluntary switches per ready recv"] == 0 and m["voluntary switches per blocking recv"] >= 1,
          "no voluntary switch for a ready recv, at least one for a blocking one"),
    Claim("libc's `recv()` returned -1 with `EINTR` as soon as the signal came",
          lambda m: m["libc recv(), no SA_RESTART: result"].endswith("EINTR")
          and m["libc recv(), no SA_RESTART: returned at"] < (SIGNAL_AT_S + DATA_AT_S) / 2 * 1e3,
          "C without SA_RESTART: -1/EINTR, returned before halfway between the signal and the data"),
    Claim("`socket.recv()` ran the handler when the signal came and went on waiting",
          lambda m: m["socket.recv(): result"].endswith("no exception")
          and m["socket.recv(): Python handler ran at"] < (SIGNAL_AT_S + DATA_AT_S) / 2 * 1e3
          and m["socket.recv(): returned at"] >= DATA_AT_S * 1e3,
          "Python: handler before halfway, the call returned the byte after the data was sent"),
    Claim("the kernel restarted the call, and the Python handler only ran after it returned",
          lambda m: m["libc recv(), SA_RESTART: result"] == "1 byte"
          and m["libc recv(), SA_RESTART: Python handler ran at"] >= m["libc recv(), SA_RESTART: returned at"] - 1,
          "C with SA_RESTART: the byte came back; the Python handler ran no earlier than the return"),
    Claim("the bytes accepted add up to what the two queues hold",
          lambda m: abs(m["of them in the receiver's receive queue (FIONREAD)"]
                        + m["of them in the sender's send queue (SIOCOUTQ)"]
                        - m["bytes accepted before send() would block"])
          <= 0.05 * m["bytes accepted before send() would block"],
          "FIONREAD + SIOCOUTQ within 5 % of the bytes send() accepted"),
    Claim("the blocking `send()` was still asleep",
          lambda m: m["blocking send() still waiting after 200 ms"] == "yes"
          and m["blocked sender's task state"].startswith("S"),
          "the blocking send() had not returned after 200 ms and its thread was in S state"),
    Claim("a little in the receiver's receive queue (its window closed) and most in the sender's send queue",
          lambda m: m["of them in the receiver's receive queue (FIONREAD)"]
          < m["of them in the sender's send queue (SIOCOUTQ)"],
          "fewer bytes in the receiver's queue than in the sender's"),
    Claim("a fraction of a\n  millisecond after the `sendto()`",
          lambda m: m["SIGIO after the sendto()"] < 1000,
          "the SIGIO handler ran under 1 ms after the sendto()"),
    Claim("one datagram, one `SIGIO`, read by the handler",
          lambda m: m["SIGIO signals for one datagram"] == 1 and m["datagram read in the SIGIO handler"] == "yes",
          "exactly one SIGIO for one datagram, and the handler read it"),
]


# -- The lesson's sections, each printing what it measured and what to notice ----------------------

# (key, caller, SA_RESTART?, label prefix) of the interrupted-recv trials
EINTR_TRIALS = (("python", "python", False, "socket.recv()"),
                ("c", "c", False, "libc recv(), no SA_RESTART"),
                ("c_restart", "c", True, "libc recv(), SA_RESTART"))
NO_WCHAN = "this kernel does not show wait channels (/proc/PID/wchan is 0)"


def blocking_recv_section(lesson: Lesson) -> None:
    trials = 3 if lesson.quick else 9
    lesson.section(f"a thread blocked in recv() for {WAIT_S * 1000:.0f} ms (median of {trials} tries)")
    why_not = linux_only("/proc/self/task/TID/status and wchan")
    labels = ("task state while blocked", "kernel wait channel", "voluntary switches per blocking recv",
              "cpu used while blocked", "wall time blocked", "voluntary switches per ready recv",
              "ready recv duration")
    if why_not:
        lesson.skip_all(labels, why_not)
        return
    runs = [blocking_recv_trial(WAIT_S) for _ in range(trials)]
    blocked = {"switches": statistics.median(r["switches"] for r in runs),
               "cpu_us": statistics.median(r["cpu_ns"] for r in runs) / 1000,
               "wall_ms": statistics.median(r["wall_ns"] for r in runs) / 1e6}
    lesson.measure(labels[0], runs[-1]["state"])
    if runs[-1]["wchan"] in ("", "0"):
        lesson.skip(labels[1], NO_WCHAN)
    else:
        lesson.measure(labels[1], runs[-1]["wchan"])
    lesson.measure(labels[2], blocked["switches"])
    lesson.measure(labels[3], blocked["cpu_us"], "µs")
    lesson.measure(labels[4], blocked["wall_ms"], "ms")
    readies = [ready_recv_trial() for _ in range(trials)]
    ready = {"switches": statistics.median(r["switches"] for r in readies),
             "us": statistics.median(r["wall_ns"] for r in readies) / 1000}
    lesson.measure(labels[5], ready["switches"])
    lesson.measure(labels[6], ready["us"], "µs")
    share = blocked["cpu_us"] / (blocked["wall_ms"] * 1000) * 100
    lesson.notice(f"the blocked thread waited {blocked['wall_ms']:.0f} ms and used "
                  f"{blocked['cpu_us']:.0f} µs of CPU in that time ({share:.2f} %): it slept in "
                  f"the kernel, with {blocked['switches']:g} voluntary context switch"
                  + ("" if blocked["switches"] == 1 else "es") + " per wait")
    lesson.notice(f"a recv() with the byte already there made {ready['switches']:g} switches and "
                  f"took {ready['us']:.0f} µs: a blocking call only sleeps when there is nothing to read")


def eintr_section(lesson: Lesson) -> None:
    lesson.section(f"a signal {SIGNAL_AT_S * 1e3:.0f} ms into a blocking recv(), the byte at "
                   f"{DATA_AT_S * 1e3:.0f} ms (SIGUSR1 to the main thread)")
    eintr = {}
    for key, caller, restart, name in EINTR_TRIALS:
        r = eintr[key] = interrupted_recv_trial(caller, restart)
        lesson.measure(f"{name}: result", r["result"])
        lesson.measure(f"{name}: returned at", r["returned_ms"], "ms")
        if "handler_ms" in r:
            lesson.measure(f"{name}: Python handler ran at", r["handler_ms"], "ms")
        else:
            lesson.skip(f"{name}: Python handler ran at", f"the handler did not run within {SIGNAL_TIMEOUT_S:g} s")
    lesson.series("eintr", {"signal_ms": SIGNAL_AT_S * 1e3, "data_ms": DATA_AT_S * 1e3, "trials": [
        {"name": name, "returned_ms": eintr[key]["returned_ms"], "handler_ms": eintr[key].get("handler_ms"),
         "result": eintr[key]["result"]} for key, _, _, name in EINTR_TRIALS]})
    py, c, c_restart = (eintr[key] for key, *_ in EINTR_TRIALS)
    lesson.notice(f"the signal came at {SIGNAL_AT_S * 1e3:.0f} ms: libc recv() returned at {c['returned_ms']:.0f} ms "
                  f"with {c['result']}, as C sees it; Python's socket.recv() ran the handler at "
                  f"{py.get('handler_ms', float('nan')):.0f} ms, called recv() again and returned {py['result']} at "
                  f"{py['returned_ms']:.0f} ms (PEP 475); with SA_RESTART the kernel restarted the C call itself "
                  f"({c_restart['result']} at {c_restart['returned_ms']:.0f} ms), and the Python handler waited until "
                  f"it returned ({c_restart.get('handler_ms', float('nan')):.0f} ms)")


def backpressure_section(lesson: Lesson) -> None:
    lesson.section("send() to a client that never reads")
    why_not = linux_only("FIONREAD/SIOCOUTQ on sockets and /proc/self/task")
    labels = ("bytes accepted before send() would block", "of them in the receiver's receive queue (FIONREAD)",
              "of them in the sender's send queue (SIOCOUTQ)", "sender's SO_SNDBUF", "receiver's SO_RCVBUF",
              f"blocking send() still waiting after {BLOCKED_LOOK_S * 1e3:.0f} ms", "blocked sender's task state",
              "blocked sender's wait channel", "bytes the reader drained before send() returned")
    if why_not:
        lesson.skip_all(labels, why_not)
        return
    bp = send_backpressure()
    for label, key in zip(labels[:5], ("sent", "in_receive_queue", "in_send_queue", "sndbuf", "rcvbuf"), strict=True):
        lesson.measure(label, bp[key] / 1024, "KiB")
    lesson.measure(labels[5], "yes" if bp["still_blocked"] else "no")
    lesson.measure(labels[6], bp["state"])
    if bp["wchan"] in ("", "0"):
        lesson.skip(labels[7], NO_WCHAN)
    else:
        lesson.measure(labels[7], bp["wchan"])
    lesson.measure(labels[8], bp["drained"] / 1024, "KiB")
    lesson.notice(f"send() took {bp['sent'] / 1024:,.0f} KiB from a client that never reads before it would "
                  f"block: {bp['in_receive_queue'] / 1024:,.0f} KiB wait in the receiver's queue, "
                  f"{bp['in_send_queue'] / 1024:,.0f} KiB in the sender's; then a blocking send() "
                  + ("slept" if bp["still_blocked"] else "did not sleep")
                  + f" ({bp['state']}) until the reader drained {bp['drained'] / 1024:,.0f} KiB")


def sigio_section(lesson: Lesson) -> None:
    lesson.section("signal-driven I/O: a UDP socket with O_ASYNC, F_SETOWN, then F_SETSIG")
    why_not = linux_only("F_SETSIG")
    labels = ("SIGIO signals for one datagram", "datagram read in the SIGIO handler", "SIGIO after the sendto()",
              "F_SETSIG signal's si_code", "F_SETSIG signal's si_band")
    if why_not:
        lesson.skip_all(labels, why_not)
        return
    sigio = signal_driven_udp()
    lesson.measure(labels[0], sigio["signals"])
    lesson.measure(labels[1], "yes" if sigio["read_in_handler"] else "no")
    if sigio["first_signal_us"] is None:
        lesson.skip(labels[2], f"no SIGIO within {SIGNAL_TIMEOUT_S:g} s")
    else:
        lesson.measure(labels[2], sigio["first_signal_us"], "µs")
    for label, key in ((labels[3], "si_code"), (labels[4], "si_band")):
        if key in sigio:
            lesson.measure(label, sigio[key])
        else:
            lesson.skip(label, f"no queued signal within {SIGNAL_TIMEOUT_S:g} s")
    lesson.notice(f"one datagram raised {sigio['signals']} SIGIO and the handler read it; with F_SETSIG the "
                  f"queued signal said {sigio.get('si_code', '?')} with band {sigio.get('si_band', '?')}: the "
                  "kernel tells the process that it can read, the process still makes the read")


def copy_section(lesson: Lesson) -> None:
    rounds, recvs = (5, 100) if lesson.quick else (15, 200)
    lesson.section(f"where the copy lands: recv() of {COPY_BYTES // 1024} KiB into a buffer that starts "
                   f"0 to {COPY_OFFSETS[-1]} bytes past a page boundary ({rounds} interleaved rounds)")
    copy = copy_destination_trial(rounds, recvs)
    for off in COPY_OFFSETS:
        lesson.measure(copy_label(off), copy[off], "µs")
    slow = lesson.measure("16 bytes past a page, against on the boundary", copy[16] / copy[0], "x", fmt=".2f")
    lesson.series("copy_destination", {"bytes": COPY_BYTES, "us_by_offset": {str(k): v for k, v in copy.items()}})
    lesson.notice(f"the same recv() of {COPY_BYTES // 1024} KiB took {copy[0]:.1f} µs into a buffer on a page "
                  f"boundary and {copy[16]:.1f} µs into one 16 bytes past it ({slow:.2f}x), "
                  + ("where a large malloc puts its buffer: the copy, not the wait, can be what a big recv() costs"
                     if slow >= 1.3 else "no difference worth the name on this CPU")
                  + f"; 64 bytes past: {copy[64]:.1f} µs")


def head_of_line_section(lesson: Lesson) -> None:
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
    lesson.series("head_of_line", {"hold_ms": HOLD_S * 1e3, "servers": {
        name: {"connect_ms": r["connect_s"] * 1e3, "echo_ms": r["echo_s"] * 1e3} for name, r in results.items()}})
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


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("07", "Blocking I/O", args)
    blocking_recv_section(lesson)
    eintr_section(lesson)
    backpressure_section(lesson)
    sigio_section(lesson)
    copy_section(lesson)
    head_of_line_section(lesson)
    disk_section(lesson)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
