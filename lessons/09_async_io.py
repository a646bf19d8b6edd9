"""Lesson 09, asynchronous I/O: readiness (epoll, asyncio) vs completion (io_uring), counted in syscalls.

What it shows, on this machine:

1. Syscalls per echoed message. A readiness server (`epoll`) asks the kernel which sockets are
   ready (epoll_wait), then makes every recv() and send() itself: about two syscalls per message
   plus the waits. A completion server (`io_uring`) queues "receive into this buffer" and "send
   these bytes" in a ring shared with the kernel and collects the results from another ring: one
   io_uring_enter() per batch of operations. asyncio's own loop and uvloop are measured the same
   way: both are readiness loops. Counted with `strace -c -f` attached to the server (or, without
   strace, `perf stat -e raw_syscalls:sys_enter`, totals only) while a client drives a fixed number
   of echoes over 16 connections in lock-step; tracing slows the server, which makes its batches
   bigger than untraced, so compare the servers with each other, not with a production figure.
2. asyncio is readiness-based: the default loop's selector class (epoll on Linux), and the
   descriptors each event loop opens when it is created (uvloop's libuv opens an epoll instance for
   sockets, and on recent versions an io_uring that it uses only for file operations).
3. File I/O in asyncio goes to threads: a regular file is always "ready" (lesson 08), so
   asyncio.to_thread() / loop.run_in_executor() run the blocking read in the loop's default
   ThreadPoolExecutor. The lesson counts the process's kernel tasks (/proc/self/task) before and
   during 32 concurrent file reads.

The OS mechanism: io_uring(7), io_uring_enter(2), epoll(7); Jens Axboe, "Efficient IO with
io_uring" (kernel.dk/io_uring.pdf); the asyncio docs (Event Loop, "Running in Threads").
Linux-only parts: epoll, io_uring, /proc; strace or perf for counting.
"""

from __future__ import annotations

import asyncio
import collections
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import servers
from lessons.common import Lesson, linux_only, parse_args
from servers import launch

CONNECTIONS = 16
MESSAGE = b"m" * 64
SYSCALL_SERVERS = ("epoll", "io_uring", "asyncio-protocol", "uvloop-protocol")
FILE_READS = 32
ATTACH_TIMEOUT_S = 10.0
IO_SYSCALLS = {"recvfrom", "sendto", "recvmsg", "sendmsg", "read", "write", "readv", "writev",
               "epoll_wait", "epoll_pwait", "epoll_pwait2", "epoll_ctl", "io_uring_enter",
               "poll", "ppoll", "select", "pselect6", "accept4", "accept", "close"}


# -- 1. syscalls per request ----------------------------------------------------------------------


def counting_method() -> tuple[str | None, str]:
    """("strace" | "perf" | None, how it is described, or why nothing can count here)."""
    why_not = linux_only("counting a server's syscalls (strace, perf)")
    if why_not:
        return None, why_not
    if shutil.which("strace"):
        return "strace", "strace -c -f -p PID (attached to the server)"
    if shutil.which("perf"):
        return "perf", "perf stat -e raw_syscalls:sys_enter -p PID (totals only)"
    return None, "neither strace nor perf is installed (apt install strace)"


class Counter:
    """strace or perf attached to ``pid`` until ``stop()``; then ``calls`` maps syscall -> count."""

    def __init__(self, method: str, pid: int):
        self.method = method
        self.out = tempfile.NamedTemporaryFile(prefix="lesson09-", suffix=".txt", delete=False)
        self.out.close()
        if method == "strace":
            argv = ["strace", "-c", "-f", "-o", self.out.name, "-p", str(pid)]
        else:
            argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", self.out.name,
                    "-p", str(pid)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        if method == "strace":  # it says "Process N attached" once it traces
            ready, _, _ = select.select([self.proc.stderr], [], [], ATTACH_TIMEOUT_S)
            line = self.proc.stderr.readline().decode(errors="replace") if ready else ""
            if "attached" not in line:
                self.kill()
                raise RuntimeError(f"strace could not attach: {line.strip() or 'no answer'} "
                                   "(ptrace not allowed here? see /proc/sys/kernel/yama/ptrace_scope)")
        else:
            time.sleep(0.5)  # perf says nothing when it starts counting; give it time
        self.calls: dict[str, int] = {}

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)  # both write their summary on SIGINT
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with open(self.out.name) as f:
            text = f.read()
        self.kill()
        if self.method == "strace":
            for line in text.splitlines():
                fields = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
                    self.calls[fields[-1]] = int(fields[3])
        else:
            for line in text.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and "raw_syscalls:sys_enter" in line and fields[0].isdigit():
                    self.calls["all syscalls"] = int(fields[0])
        return self.calls

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        try:
            os.unlink(self.out.name)
        except OSError:
            pass


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


# -- 3. files go to threads -------------------------------------------------------------------------


def kernel_tasks() -> int:
    return len(os.listdir("/proc/self/task"))


async def concurrent_file_reads(path: str, count: int) -> tuple[int, int, int]:
    """(tasks before, tasks while ``count`` reads run, the executor's max_workers)."""
    before = kernel_tasks()
    seen = []

    def read_file() -> int:
        seen.append(kernel_tasks())
        with open(path, "rb") as f:
            data = f.read()
        time.sleep(0.02)  # stand-in for a slow disk: the executor thread blocks here, not the loop
        return len(data)

    sizes = await asyncio.gather(*(asyncio.to_thread(read_file) for _ in range(count)))
    assert all(s == sizes[0] for s in sizes)
    loop = asyncio.get_running_loop()
    max_workers = loop._default_executor._max_workers if loop._default_executor else 0
    return before, max(seen), max_workers


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("09", "Asynchronous I/O", args)
    rounds = 100 if lesson.quick else 500

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

    lesson.section(f"{FILE_READS} concurrent file reads with asyncio.to_thread()")
    thread_labels = ("kernel tasks before the reads", "kernel tasks during the reads",
                     "default executor max_workers")
    if why_not:
        for label in thread_labels:
            lesson.skip(label, why_not)
        tasks = None
    else:
        with tempfile.NamedTemporaryFile(prefix="lesson09-") as f:
            f.write(os.urandom(1 << 20))
            f.flush()
            tasks = asyncio.run(concurrent_file_reads(f.name, FILE_READS))
        for label, value in zip(thread_labels, tasks, strict=True):
            lesson.measure(label, value)

    # -- what to notice, computed from the numbers above
    if "epoll" in per_request and "io_uring" in per_request:
        e, u = (sum(per_request[n].values()) for n in ("epoll", "io_uring"))
        lesson.notice(f"epoll made {e:.2f} syscalls per echoed message, io_uring {u:.2f}: "
                      f"{e / u:.0f}x fewer, because one io_uring_enter() carries a whole batch of "
                      "receives and sends, and their results come back through shared memory")
    readiness = [n for n in ("asyncio-protocol", "uvloop-protocol") if n in per_request]
    for name in readiness:
        calls = per_request[name]
        waits = [sc for sc in calls if "epoll" in sc]
        extra = [f"{sc} {n:.2f}" for sc, n in sorted(calls.items())
                 if sc not in IO_SYSCALLS and n >= 0.5]
        lesson.notice(f"{name} waits with {', '.join(waits) or 'no epoll call'} and then reads and "
                      "writes each socket itself: a readiness loop, like the epoll server"
                      + (f"; besides I/O it made {', '.join(extra)} per message" if extra else ""))
    if tasks:
        lesson.notice(f"to read files without blocking the loop, asyncio ran them in threads: the "
                      f"process went from {tasks[0]} to {tasks[1]} kernel tasks "
                      f"(the default executor allows {tasks[2]})")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
