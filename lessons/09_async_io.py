"""Lesson 09, asynchronous I/O: readiness (epoll, asyncio) vs completion (io_uring), measured.

What it shows, on this machine:

1. Syscalls per echoed message. A readiness server (`epoll`) asks the kernel which sockets are
   ready (epoll_wait), then makes every recv() and send() itself: about two syscalls per message
   plus the waits. A completion server (`io_uring`, on the lab's own ring, servers/uring/)
   queues "receive on this socket" and "send these bytes" in a ring shared with the kernel and
   collects the results from another ring: one io_uring_enter() per batch of operations. asyncio's
   own loop and uvloop are measured the same way: both are readiness loops. Counted with
   `strace -c -f` attached to the server (or, without strace, `perf stat -e raw_syscalls:sys_enter`,
   totals only) while a client drives a fixed number of echoes over 16 connections in lock-step;
   tracing slows the server, which makes its batches bigger than untraced, so compare the servers
   with each other, not with a production figure.
2. The ring itself: the sizes of an SQE and a CQE, the features this kernel reports, and what the
   io_uring server's optional features buy, measured rather than named: SQEs and CQEs per echoed
   message with and without multishot recv (read from the ring's own counters in
   /proc/PID/fdinfo), memory per idle connection with a provided buffer ring and with a buffer per
   connection, and io_uring_enter calls per operation with and without SQPOLL.
3. asyncio is readiness-based: the default loop's selector class (epoll on Linux) and the
   descriptors each event loop opens when it is created. uvloop's libuv (1.50+) opens an io_uring
   at once: the syscalls it makes while clients connect show what for (it batches its epoll_ctl
   calls through it; its file operations stay on its thread pool unless a loop opts in).
4. Completion for files. A regular file is always "ready" (lesson 08), so a readiness loop cannot
   wait for a disk read; asyncio runs it on a thread (asyncio.to_thread), glibc's POSIX AIO runs it
   on helper threads of its own; io_uring reads a cached file inline (a read that must wait for
   the disk is retried from a page-lock callback on ext4/XFS/btrfs, 5.9+), and its kernel workers
   (io-wq) are the fallback, forced here with IOSQE_ASYNC. The lesson times 64 reads each way and
   counts the kernel tasks (/proc/self/task) each one needed.
5. Requests beyond send and receive (lessons/_09_ops.py): a linked chain and a failed one
   (IOSQE_IO_LINK, -ECANCELED), a LINK_TIMEOUT on a recv that never completes, ASYNC_CANCEL of a
   pending recv, SEND_ZC against SEND at 1 MiB (two CQEs, the notification), READ_FIXED from a
   registered buffer against READ.
6. Readiness against completion under load (lessons/_09_side.py): c-epoll, c-uring, epoll and
   io_uring on one server CPU, bench.load on the other(s), interleaved rounds; req/s as a ratio
   to c-epoll ("tie" unless clearly apart, never a win), server and generator CPU per request.

The OS mechanism: io_uring(7), io_uring_enter(2), io_uring_register(2), epoll(7), aio(7); Jens
Axboe, "Efficient IO with io_uring" (kernel.dk/io_uring.pdf); the asyncio docs (Event Loop,
"Running in Threads").
Linux-only parts: epoll, io_uring, POSIX AIO via glibc, /proc; strace or perf for counting.
"""

from __future__ import annotations

import asyncio
import collections
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time

import servers
from lessons._09_aio import posix_aio_reads
from lessons._09_ops import fixed_reads, ops_section
from lessons._09_pictures import draw_ring, draw_syscalls
from lessons._09_side import SIDE_WHAT, side_section
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.trace import Counter, counting_method
from servers import launch, uring

CONNECTIONS = 16
MESSAGE = b"m" * 64
SYSCALL_SERVERS = ("epoll", "io_uring", "asyncio-protocol", "uvloop-protocol")
FILE_READS = 32
IO_SYSCALLS = {"recvfrom", "sendto", "recvmsg", "sendmsg", "read", "write", "readv", "writev",
               "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "io_uring_enter",
               "poll", "ppoll", "select", "pselect6", "accept4", "accept", "close"}


# -- 1. syscalls per request ----------------------------------------------------------------------


def lockstep(conns: list[socket.socket], rounds: int) -> None:
    """Each round: one message on every connection, then every echo read back in full."""
    for _ in range(rounds):
        for c in conns:
            c.sendall(MESSAGE)
        for c in conns:
            got = 0
            while got < len(MESSAGE):
                chunk = c.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed a connection")
                got += len(chunk)


def syscalls_per_request(name: str, method: str, rounds: int) -> dict[str, float]:
    server = launch.start(servers.get(name))
    conns: list[socket.socket] = []
    counter = None
    try:
        conns = [socket.create_connection(server.address, timeout=10) for _ in range(CONNECTIONS)]
        for c in conns:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        lockstep(conns, 3)  # every connection accepted and served once before counting starts
        counter = Counter(method, server.pid)
        lockstep(conns, rounds)
        calls = counter.stop()
    finally:
        if counter:
            counter.kill()
        for c in conns:
            c.close()
        server.stop()
    requests = rounds * len(conns)
    return {syscall: n / requests for syscall, n in calls.items()}


# -- 2. what an asyncio loop waits with ------------------------------------------------------------


def open_fds() -> dict[int, str]:
    fds = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except OSError:
            pass  # the fd listdir itself used, closed by now
    return fds


def fds_opened_by(make_loop) -> tuple[object, str]:
    """(the loop, a summary of the descriptors its creation opened, e.g. '[eventpoll], 2 socket')."""
    before = open_fds()
    loop = make_loop()
    new = [target for fd, target in open_fds().items() if fd not in before]
    kinds = collections.Counter(re.sub(r"^anon_inode:|:\[\d+\]$", "", t) for t in new)
    summary = ", ".join(f"{n} {kind}" if n > 1 else kind for kind, n in sorted(kinds.items()))
    return loop, summary or "none"


# -- 3. the ring and its features, measured ---------------------------------------------------------

IO_URING_VARIANTS = (  # (label, the server's options)
    ("multishot recv, provided buffers", []),
    ("single-shot recv, provided buffers", ["--without", "multishot-recv"]),
    ("single-shot recv, own buffers", ["--without", "pbuf-ring"]),
)


def ring_fd(pid: int) -> str:
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[io_uring]":
                return fd
        except OSError:
            pass
    raise RuntimeError(f"process {pid} holds no io_uring")


def ring_counters(pid: int, fd: str) -> tuple[int, int]:
    """(SqTail, CqTail) of a process's ring, from /proc/PID/fdinfo: how many SQEs it has
    submitted and CQEs the kernel has posted, ever (32-bit counters)."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["SqTail"]), int(fields["CqTail"])


def cpu_ns(pid: int) -> int:
    """Time the process has run on a CPU, in ns (/proc/PID/schedstat: finer than utime/stime)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0])


def ring_traffic(extra: list[str], rounds: int) -> tuple[float, float, float]:
    """(SQEs, CQEs, server CPU µs) per echoed message of the io_uring server with ``extra``."""
    with launch.start(servers.get("io_uring"), extra) as server:
        conns = [socket.create_connection(server.address, timeout=10) for _ in range(CONNECTIONS)]
        try:
            for c in conns:
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            lockstep(conns, 3)
            fd = ring_fd(server.pid)
            (sq0, cq0), t0 = ring_counters(server.pid, fd), cpu_ns(server.pid)
            lockstep(conns, rounds)
            (sq1, cq1), t1 = ring_counters(server.pid, fd), cpu_ns(server.pid)
        finally:
            for c in conns:
                c.close()
    messages = rounds * CONNECTIONS
    return (((sq1 - sq0) % 2**32) / messages, ((cq1 - cq0) % 2**32) / messages,
            (t1 - t0) / 1e3 / messages)


def anon_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Pss_Anon" if "Pss_Anon" in fields else "Anonymous"].split()[0]) * 1024


def idle_bytes_per_connection(extra: list[str], count: int) -> float:
    """The io_uring server's anonymous memory per idle connection (each served once, then idle)."""
    with launch.start(servers.get("io_uring"), extra) as server:
        conns = []
        try:
            warm = socket.create_connection(server.address, timeout=10)
            conns.append(warm)
            lockstep([warm], 3)
            before = anon_bytes(server.pid)
            for _ in range(count):
                c = socket.create_connection(server.address, timeout=10)
                conns.append(c)
                lockstep([c], 1)
            time.sleep(0.2)
            return (anon_bytes(server.pid) - before) / count
        finally:
            for c in conns:
                c.close()


def nops(sqpoll: bool, count: int) -> tuple[float, float]:
    """(io_uring_enter calls per NOP, µs per NOP round trip), one NOP in flight at a time.
    Without SQPOLL each NOP needs an io_uring_enter to submit it and wait for its CQE; with
    SQPOLL a kernel thread picks the SQE up from memory and the CQE is polled from memory. We
    run on one CPU and pin the poller to another (IORING_SETUP_SQ_AFF) where there is one: two
    spinners on one CPU would take turns at the scheduler's pace."""
    cpus = sorted(os.sched_getaffinity(0))
    here = cpus[0]
    poller_cpu = cpus[1] if len(cpus) > 1 else None  # the poller spins: not on our own CPU
    os.sched_setaffinity(0, {here})
    try:
        ring = uring.Ring(64, sqpoll=sqpoll, sq_thread_cpu=poller_cpu if sqpoll else None)
    finally:
        os.sched_setaffinity(0, cpus)
    os.sched_setaffinity(0, {here})
    with ring:
        t0 = time.perf_counter()
        budget_end = time.monotonic() + NOP_BUDGET_S  # a busy machine may starve the poller
        done = 0
        for i in range(count):
            ring.prep_nop(i)
            if sqpoll:
                ring.submit()  # publishes the tail; enters only if the poller went to sleep
                deadline = time.monotonic() + 5
                while not ring.cq_ready():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the SQPOLL thread never completed the NOP")
            else:
                ring.submit(wait_for=1)
            ring.cq_advance(ring.cq_tail())
            done += 1
            if time.monotonic() > budget_end:
                break
        elapsed = time.perf_counter() - t0
        os.sched_setaffinity(0, cpus)
        return ring.enters / done, elapsed / done * 1e6


def connect_syscalls(name: str, method: str) -> dict[str, int]:
    """The syscalls a server makes while CONNECTIONS clients connect and are served once."""
    server = launch.start(servers.get(name))
    conns: list[socket.socket] = []
    counter = None
    try:
        counter = Counter(method, server.pid)
        conns = [socket.create_connection(server.address, timeout=10) for _ in range(CONNECTIONS)]
        lockstep(conns, 1)
        for c in conns:
            c.close()
        time.sleep(0.2)  # the server sees the FINs and closes its side
        return counter.stop()
    finally:
        if counter:
            counter.kill()
        for c in conns:
            c.close()
        server.stop()


# -- 4. completion for files: io_uring, a thread pool, POSIX AIO ---------------------------------------

NOP_BUDGET_S = 3.0  # at most this long per NOP measurement, however many NOPs that is

FILE_COUNT, CHUNK_BYTES, CHUNKS_PER_FILE = 8, 64 * 1024, 8  # 64 reads of 64 KiB, 4 MiB in all


def kernel_tasks() -> int:
    return len(os.listdir("/proc/self/task"))


def iou_workers() -> int:
    """io_uring's io-wq worker threads belong to the process (5.12+): named iou-wrk-PID."""
    n = 0
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                n += f.read().startswith("iou-wrk")
        except OSError:
            pass
    return n


def read_chunks(paths: list[str]) -> list[tuple[str, int]]:
    return [(p, off) for p in paths for off in range(0, CHUNKS_PER_FILE * CHUNK_BYTES, CHUNK_BYTES)]


def io_uring_reads(paths: list[str], force_async: bool) -> tuple[int, int]:
    """One io_uring_enter submits every read; (bytes read, extra kernel tasks seen)."""
    fds = {p: os.open(p, os.O_RDONLY) for p in paths}
    chunks = read_chunks(paths)
    buffers = [bytearray(CHUNK_BYTES) for _ in chunks]
    before, peak, got = kernel_tasks(), 0, 0
    try:
        with uring.Ring(128) as ring:
            for i, ((path, off), buf) in enumerate(zip(chunks, buffers, strict=True)):
                ring.prep_read(fds[path], uring.address_of(buf), CHUNK_BYTES, off, i,
                               force_async=force_async)
            ring.submit()
            done = 0
            while done < len(chunks):
                peak = max(peak, kernel_tasks())
                ring.submit(wait_for=1)
                for _, res, _ in ring.completions():
                    if res < 0:
                        raise OSError(-res, os.strerror(-res))
                    got += res
                    done += 1
    finally:
        for fd in fds.values():
            os.close(fd)
    return got, max(peak, kernel_tasks()) - before


async def thread_pool_reads(paths: list[str]) -> tuple[int, int]:
    """asyncio.to_thread(os.pread) for every read; (bytes read, extra kernel tasks seen)."""
    fds = {p: os.open(p, os.O_RDONLY) for p in paths}
    before, seen = kernel_tasks(), []

    def read(path: str, off: int) -> int:
        seen.append(kernel_tasks())
        return len(os.pread(fds[path], CHUNK_BYTES, off))

    try:
        sizes = await asyncio.gather(*(asyncio.to_thread(read, p, off)
                                       for p, off in read_chunks(paths)))
    finally:
        for fd in fds.values():
            os.close(fd)
    return sum(sizes), max(seen) - before


def timed(fn, repeats: int) -> tuple[float, int, int]:
    """(median ms, bytes, extra kernel tasks of the first run) over ``repeats`` runs."""
    times, first = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t0) * 1e3)
        first = first or result
    return statistics.median(times), first[0], first[1]


# -- pictures and claims ----------------------------------------------------------------------------


PICTURES = {"syscalls": draw_syscalls, "ring": draw_ring}


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("09", "Asynchronous I/O", args)
    rounds = 100 if lesson.quick else 500
    idle_count = 100 if lesson.quick else 500
    nop_count = 1000 if lesson.quick else 5000
    repeats = 3 if lesson.quick else 7
    uring_ok, uring_why = servers.get("io_uring").availability()

    lesson.section(f"syscalls per echoed message, {CONNECTIONS} connections in lock-step")
    method, how = counting_method()
    if method:
        lesson.measure("counting method", how)
    else:
        lesson.skip("counting method", how)
    per_request: dict[str, dict[str, float]] = {}
    for name in SYSCALL_SERVERS:
        total_label, main_label = f"syscalls per message on {name}", f"main syscalls on {name}"
        try:
            available, reason = servers.get(name).availability()
        except KeyError as exc:
            available, reason = False, str(exc)
        if available and not method:
            available, reason = False, how
        if not available:
            lesson.skip(total_label, reason)
            lesson.skip(main_label, reason)
            continue
        try:
            calls = per_request[name] = syscalls_per_request(name, method, rounds)
        except (RuntimeError, launch.StartError, OSError) as exc:
            lesson.skip(total_label, str(exc).splitlines()[0])
            lesson.skip(main_label, str(exc).splitlines()[0])
            continue
        lesson.measure(total_label, sum(calls.values()))
        top = sorted((kv for kv in calls.items() if kv[1] >= 0.01), key=lambda kv: (-kv[1], kv[0]))
        lesson.measure(main_label, ", ".join(f"{sc} {n:.2f}" for sc, n in top[:6]))
    lesson.series("syscalls_per_message", {n: {k: round(v, 4) for k, v in c.items() if v >= 0.005}
                                           for n, c in per_request.items()})

    lesson.section("the ring: what the kernel and the process share")
    lesson.measure("SQE size", uring.SQE.size, "bytes")
    lesson.measure("CQE size", uring.CQE.size, "bytes")
    ring_labels = ("io_uring features on this kernel", "ring mappings",
                   "multishot accept, provided buffer rings, multishot recv")
    features = {}
    if not uring_ok:
        lesson.skip_all(ring_labels, uring_why)
    else:
        with uring.Ring(8) as ring:
            features = uring.probe_features(ring)
            lesson.measure(ring_labels[0], " ".join(ring.feature_names()))
            lesson.measure(ring_labels[1], ring.mmaps)
        lesson.measure(ring_labels[2], ", ".join("yes" if features[k] else "no" for k in
                                                 ("multishot_accept", "pbuf_ring", "multishot_recv")))

    lesson.section("the io_uring server's features, measured")
    for label, extra in IO_URING_VARIANTS:
        labels = (f"SQEs per message, {label}", f"CQEs per message, {label}",
                  f"server CPU per message, {label}")
        why = uring_why if not uring_ok else linux_only("/proc/PID/fdinfo")
        if not why and "own" not in label and not features.get("pbuf_ring"):
            why = "this kernel has no provided buffer rings (5.19+)"
        if not why and "multishot" in label and not features.get("multishot_recv"):
            why = "this kernel has no multishot recv (6.0+)"
        if why:
            lesson.skip_all(labels, why)
            continue
        sqes, cqes, cpu_us = ring_traffic(extra, rounds)
        lesson.measure(labels[0], sqes, fmt=".2f")
        lesson.measure(labels[1], cqes, fmt=".2f")
        lesson.measure(labels[2], cpu_us, "µs", fmt=".1f")
    for label, extra in (("provided buffers", []), ("own buffers", ["--without", "pbuf-ring"])):
        mem_label = f"memory per idle connection, {label}"
        if not uring_ok or (label == "provided buffers" and not features.get("pbuf_ring")):
            lesson.skip(mem_label, uring_why or "this kernel has no provided buffer rings (5.19+)")
            continue
        lesson.measure(mem_label, idle_bytes_per_connection(extra, idle_count), "bytes", fmt=".0f")
    for sqpoll in (False, True):
        word = "with" if sqpoll else "without"
        labels = (f"io_uring_enter calls per NOP, {word} SQPOLL",
                  f"time per NOP, {word} SQPOLL")
        why = uring_why if not uring_ok else None
        if not why and sqpoll and platform.machine() != "x86_64":
            why = "SQPOLL is used on x86-64 only here (see servers/uring/)"
        if why:
            lesson.skip_all(labels, why)
            continue
        try:
            enters, us = nops(sqpoll, nop_count)
        except (uring.UringError, RuntimeError) as exc:
            lesson.skip_all(labels, str(exc))
            continue
        lesson.measure(labels[0], enters, fmt=".3f")
        lesson.measure(labels[1], us, "µs", fmt=".1f")

    lesson.section("what an asyncio event loop waits with")
    why_not = linux_only("/proc/self/fd")
    loop = asyncio.new_event_loop()
    try:
        selector = getattr(loop, "_selector", None)
        lesson.measure("asyncio loop class", type(loop).__name__)
        lesson.measure("asyncio loop's selector", type(selector).__name__ if selector else "none")
    finally:
        loop.close()
    loop_labels = {"asyncio": "descriptors a new asyncio loop opens",
                   "uvloop": "descriptors a new uvloop loop opens"}
    for name, label in loop_labels.items():
        if why_not:
            lesson.skip(label, why_not)
            continue
        if name == "uvloop":
            try:
                import uvloop
            except ImportError:
                lesson.skip(label, "uvloop is not installed (pip install uvloop)")
                continue
            make = uvloop.new_event_loop
        else:
            make = asyncio.new_event_loop
        loop, summary = fds_opened_by(make)
        loop.close()
        lesson.measure(label, summary)
    connect_labels = (f"epoll_ctl calls while {CONNECTIONS} clients connect to uvloop-protocol",
                      f"io_uring_enter calls while {CONNECTIONS} clients connect to uvloop-protocol")
    uv_ok, uv_why = servers.get("uvloop-protocol").availability()
    if method != "strace" or not uv_ok:
        lesson.skip_all(connect_labels, how if method != "strace" else uv_why)
    else:
        calls = connect_syscalls("uvloop-protocol", method)
        lesson.measure(connect_labels[0], calls.get("epoll_ctl", 0))
        lesson.measure(connect_labels[1], calls.get("io_uring_enter", 0))

    lesson.section(f"{FILE_COUNT * CHUNKS_PER_FILE} file reads of {CHUNK_BYTES // 1024} KiB, "
                   "all at once")
    file_methods = ("io_uring", "io_uring (IOSQE_ASYNC)", "asyncio.to_thread", "POSIX AIO (glibc)")
    file_results = {}
    with tempfile.TemporaryDirectory(prefix="lesson09-") as tmp:
        paths = []
        for i in range(FILE_COUNT):
            path = os.path.join(tmp, f"file{i}")
            with open(path, "wb") as f:
                f.write(os.urandom(CHUNKS_PER_FILE * CHUNK_BYTES))
            paths.append(path)
        runs = {
            "io_uring": lambda: io_uring_reads(paths, False),
            "io_uring (IOSQE_ASYNC)": lambda: io_uring_reads(paths, True),
            "asyncio.to_thread": lambda: asyncio.run(thread_pool_reads(paths)),
            "POSIX AIO (glibc)": lambda: posix_aio_reads(read_chunks(paths), CHUNK_BYTES, kernel_tasks),
        }
        for name in file_methods:
            labels = (f"time for the reads, {name}", f"extra kernel tasks, {name}")
            why = why_not or (uring_why if name.startswith("io_uring") and not uring_ok else None)
            if why:
                lesson.skip_all(labels, why)
                continue
            try:
                ms, got, tasks = timed(runs[name], repeats)
            except (OSError, AttributeError) as exc:  # AttributeError: a libc without aio_read
                lesson.skip_all(labels, f"{type(exc).__name__}: {exc}")
                continue
            assert got == FILE_COUNT * CHUNKS_PER_FILE * CHUNK_BYTES, (name, got)
            file_results[name] = (ms, tasks)
            lesson.measure(labels[0], ms, "ms", fmt=".2f")
            lesson.measure(labels[1], tasks)
            if name == "io_uring (IOSQE_ASYNC)":
                lesson.measure("io-wq workers (iou-wrk) left in the process", iou_workers())
    lesson.measure("default executor max_workers", min(32, (os.cpu_count() or 1) + 4))

    ops_section(lesson, uring_ok, uring_why)
    fixed_reads(lesson, uring_ok, uring_why)
    side_section(lesson)

    # -- what to notice, computed from the numbers above
    if "epoll" in per_request and "io_uring" in per_request:
        e, u = (sum(per_request[n].values()) for n in ("epoll", "io_uring"))
        lesson.notice(f"epoll made {e:.2f} syscalls per echoed message, io_uring {u:.2f}: "
                      f"{e / u:.0f}x fewer, because one io_uring_enter() carried the sends of "
                      f"{1 / u:.1f} messages on average (of the {CONNECTIONS} in a round), and "
                      "their receives came back through shared memory")
    readiness = [n for n in ("asyncio-protocol", "uvloop-protocol") if n in per_request]
    for name in readiness:
        calls = per_request[name]
        waits = [sc for sc in calls if "epoll" in sc]
        extra = [f"{sc} {n:.2f}" for sc, n in sorted(calls.items())
                 if sc not in IO_SYSCALLS and n >= 0.5]
        lesson.notice(f"{name} waits with {', '.join(waits) or 'no epoll call'} and then reads and "
                      "writes each socket itself: a readiness loop, like the epoll server"
                      + (f"; besides I/O it made {', '.join(extra)} per message" if extra else ""))
    if file_results:
        lesson.notice("extra kernel tasks for the file reads: " + ", ".join(
            f"{n} {t}" for n, (_, t) in file_results.items())
            + ": a cached read completes inline in io_uring; the thread pool and glibc's AIO "
              "wait on threads of their own")
    return lesson.finish()


# The page's comparative sentences, checked against the recorded run (tests/test_claims.py).
CLAIMS = [
    Claim("Two system calls per echo is the floor for a readiness server",
          lambda m: m["syscalls per message on epoll"] >= 1.9,
          "epoll: at least ~2 syscalls per echoed message"),
    Claim("a fraction of one per message",
          lambda m: m["syscalls per message on io_uring"] < 0.5,
          "io_uring: under half a syscall per echoed message"),
    Claim("each carried the sends of more than two messages on average",
          lambda m: m["syscalls per message on io_uring"] < 0.5,
          "io_uring: fewer than one io_uring_enter per two echoed messages"),
    Claim("one SQE per echoed message, the send",
          lambda m: 0.9 <= m["SQEs per message, multishot recv, provided buffers"] <= 1.1,
          "multishot recv: about one SQE per message"),
    Claim("two SQEs per message, a receive and a send",
          lambda m: 1.9 <= m["SQEs per message, single-shot recv, provided buffers"] <= 2.1
          and 1.9 <= m["SQEs per message, single-shot recv, own buffers"] <= 2.1,
          "single-shot recv: about two SQEs per message"),
    Claim("an idle connection costs a few hundred bytes",
          lambda m: m["memory per idle connection, provided buffers"] < 1024,
          "provided buffers: under 1 KiB per idle connection"),
    Claim("the 64 KiB buffer that each pending receive pins",
          lambda m: m["memory per idle connection, own buffers"] > 48 * 1024,
          "own buffers: over 48 KiB per idle connection"),
    Claim("one `io_uring_enter()` per NOP without SQPOLL, and almost none with it",
          lambda m: m["io_uring_enter calls per NOP, without SQPOLL"] >= 0.99
          and m["io_uring_enter calls per NOP, with SQPOLL"] < 0.05,
          "SQPOLL: the enter calls per NOP go from one to almost none"),
    Claim("libuv sent part of its epoll edits through the ring",
          lambda m: m[f"io_uring_enter calls while {CONNECTIONS} clients connect to uvloop-protocol"] > 0,
          "uvloop made io_uring_enter calls while clients connected"),
    Claim("io_uring read the cached files without a single extra thread",
          lambda m: m["extra kernel tasks, io_uring"] == 0,
          "io_uring cached reads: no extra kernel task"),
    Claim("The thread pool and glibc's POSIX AIO each needed threads",
          lambda m: m["extra kernel tasks, asyncio.to_thread"] >= 1
          and m["extra kernel tasks, POSIX AIO (glibc)"] >= 1,
          "to_thread and POSIX AIO used extra kernel tasks"),
    Claim("io_uring used kernel threads too",
          lambda m: m["extra kernel tasks, io_uring (IOSQE_ASYNC)"] >= 1,
          "IOSQE_ASYNC: io-wq worker threads appear in the process"),
]

CLAIMS += [
    Claim.unmeasured("makes its batches larger than they would be untraced",
                     "strace stops the server at each system call; the lesson counts only traced "
                     "runs (perf, untraced, gives totals only), so this rests on how a ring batches: "
                     "a slower loop finds more completions ready at each io_uring_enter"),
    Claim.unmeasured("the most each held with an echo on every one",
                     "measured by the c100k bench run (make bench-c100k), not by this lesson"),
    Claim.unmeasured("on a 2-core machine costs half of it",
                     "a thread that spins takes its whole CPU, one of two; the lesson times the "
                     "NOPs, not the poller's CPU"),
]

CLAIMS += [
    Claim("Python's two servers needed more CPU per request than the two C servers",
          lambda m: min(m["server CPU per request, epoll"], m["server CPU per request, io_uring"])
          > max(m["server CPU per request, c-epoll"], m["server CPU per request, c-uring"]),
          "epoll and io_uring (Python): more server CPU per request than c-epoll and c-uring"),
    Claim("its CPU per request was within a third of the C servers' own",
          lambda m: all(abs(m[f"generator CPU per request, {n}"] / m[f"server CPU per request, {n}"]
                            - 1) < 1 / 3 for n in ("c-epoll", "c-uring")),
          "generator CPU per request within 33 % of c-epoll's and c-uring's server CPU"),
]

CLAIMS += [
    Claim("the kernel did not run the rest but completed it with `-ECANCELED`",
          lambda m: m["linked chain whose first request fails"].endswith("recv -ECANCELED")
          and m["linked send then recv"] == "send 64, then recv 64",
          "a failed link cancels the rest of its chain; a good one runs it"),
    Claim("about 50 ms after the submit",
          lambda m: 45 <= m["time until both CQEs, LINK_TIMEOUT 50 ms"] <= 150
          and m["recv with a 50 ms LINK_TIMEOUT"] == "recv -ECANCELED, timeout -ETIME",
          "the link timeout cancels the recv at its deadline"),
    Claim("two CQEs per send where `SEND` posted one",
          lambda m: m["CQEs per send, SEND_ZC"] == 2.0 and m["CQEs per send, SEND"] == 1.0,
          "SEND_ZC: the send's CQE and the notification"),
    Claim("over loopback the kernel copied every one of them after all",
          lambda m: m["SEND_ZC notifications"].split(" of ")[0]
          == m["SEND_ZC notifications"].split(" of ")[1].split()[0],
          "every SEND_ZC notification over loopback said ZC_COPIED"),
]

# Machine-dependent absolutes: shown beside the recording, not judged.
TOLERANCE = {label: None for label in (
    *(f"server CPU per message, {lab}" for lab, _ in IO_URING_VARIANTS),
    "time per NOP, without SQPOLL", "time per NOP, with SQPOLL",
    "time for the reads, io_uring", "time for the reads, io_uring (IOSQE_ASYNC)",
    "time for the reads, asyncio.to_thread", "time for the reads, POSIX AIO (glibc)",
    "io_uring features on this kernel", "ring mappings",
    "multishot accept, provided buffer rings, multishot recv",
    "io-wq workers (iou-wrk) left in the process", "default executor max_workers",
    "side-by-side CPUs", "generator CPUs", "time until both CQEs, LINK_TIMEOUT 50 ms",
    "time per 1 MiB send, SEND", "time per 1 MiB send, SEND_ZC",
    "time per 256 KiB read, READ", "time per 256 KiB read, READ_FIXED",
    *(f"{what}, {name}" for name in ("c-epoll", "c-uring", "epoll", "io_uring")
      for what in SIDE_WHAT),
)}
# With SQPOLL the count is "almost none": 0 or one wake-up in a few million NOPs. Judge it by
# an absolute gap, a relative one cannot compare 0 with 5e-7.
TOLERANCE["io_uring_enter calls per NOP, with SQPOLL"] = (0.0, 0.01)


if __name__ == "__main__":
    sys.exit(main())
