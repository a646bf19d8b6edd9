"""subinterpreters: one process, --workers interpreters, each with its own GIL (lesson 05, threads).

The model: one process holds several Python interpreters. Since Python 3.12 each may have its own
GIL (PEP 684), so their threads run Python on several cores at once, as `prefork`'s processes do,
without a second process: no fork, no second address space. What they do not share is every
Python object: each interpreter has its own modules, its own sys, its own heap and GIL, so a
socket object, a dict or a lock of one is not visible from another (PEP 734: they talk by copying
plain data). What they do share is the process: its memory map, its threads, and its one table of
file descriptors.

This server uses exactly that split. The main interpreter blocks in accept() on the one listening
socket; for each connection it detaches the descriptor from its socket object and writes the
number, 4 bytes, into the pipe of the next worker (round robin). Each worker is an interpreter
running, in a thread of its own, the `epoll` server's loop: it sleeps in epoll_wait() on its pipe
and on its connections, wraps each number that arrives in a socket object of its own (the same
kernel socket: one process, one fd table), and serves it as `epoll` does, calling that server's
own connection_ready(). A process would need SCM_RIGHTS to receive a descriptor (prefork shares
its listener by forking); an interpreter needs only the number.

Why the main interpreter accepts and hands sockets out, and not one SO_REUSEPORT listener per
interpreter (what `reuseport` does with processes): it shows what crosses between interpreters
(an int, as bytes), it puts the choice of worker in our code instead of the kernel's hash, and
the one listener keeps --port 0, "in use" and the backlog as in every other server. The hand-off
is a pipe, not a PEP 734 Queue, because a worker that sleeps in epoll_wait() can wait only on
descriptors: the pipe is one, a Queue is not.

Shutdown: SIGINT/SIGTERM reach the main interpreter only (only it runs signal handlers); it closes
the listener and every pipe's write end, each worker sees end-of-file on its pipe, closes its
connections and returns, and the main interpreter joins the threads and destroys the interpreters.

Python: 3.12 or newer (each interpreter's own GIL), through `concurrent.interpreters` on 3.14+ or
PyPI's backports.interpreters on 3.12 and 3.13 (installed by make install there). On 3.11 every
subinterpreter shares the one GIL: the registry lists this server as unavailable, with the
command that runs it under a newer interpreter (make serve SERVER=subinterpreters
INTERPRETER=3.13 builds .venv-3.13 at first use).

Syscalls: main: accept4, write (the pipes), futex; workers: epoll_wait, epoll_ctl, read (the
pipe), recvfrom, sendto, close. Limits: Linux (epoll). Round robin is blind to load, like
SO_REUSEPORT's hash. Each interpreter costs its own copy of every module it imports (a few MiB),
less than a process; extension modules that do not support subinterpreters cannot be imported in
one (socket, select and the lab's servers all can).

Run it:  make serve SERVER=subinterpreters INTERPRETER=3.13 [ARGS="--workers 2"]
Watch it:  ls /proc/PID/task (one thread per worker, plus the main one);  top -H -p PID shows the
workers' threads each on a core under load, where `threads` stays near one core (one GIL).
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from servers.common import (
    accept_blocking, announce, default_workers, listen, log, parse_args, run,
)
from servers.epoll_server import HANGUP, READ, WRITE, Connection, connection_ready

try:  # PEP 734: in the standard library from 3.14, on PyPI (backports.interpreters) before
    from concurrent import interpreters
except ImportError:
    try:
        from backports import interpreters
    except ImportError:
        interpreters = None

MIN_PYTHON = (3, 12)  # PEP 684: the first Python whose subinterpreters each have their own GIL
HANDOFF = struct.Struct("i")  # one accepted connection's descriptor, as it crosses the pipe
ROOT = str(Path(__file__).resolve().parent.parent)  # the checkout, on each worker's sys.path


def why_not() -> str | None:
    """None if this interpreter can run the server, else why not and the command that fixes it."""
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < MIN_PYTHON:
        return (f"Python {version} runs every subinterpreter under one shared GIL (a GIL per "
                "interpreter is PEP 684, Python 3.12+): run it under a newer interpreter, e.g. "
                "make serve SERVER=subinterpreters INTERPRETER=3.13 (builds .venv-3.13 at first "
                "use; pyenv install 3.13 if you have no 3.12+)")
    if interpreters is None:
        return (f"Python {version} has no concurrent.interpreters (3.14+) and the backport is "
                "not installed: make install (or pip install backports.interpreters)")
    return None


probe = why_not  # the registry's probe, run in a child of the interpreter being judged


# ---- a worker: runs inside its own interpreter, in a thread of its own -------------------------


def serve_worker(handoff_fd: int, work_us: int) -> None:
    """The `epoll` server's loop, with connections arriving over the pipe instead of accept()."""
    poller = select.epoll()
    poller.register(handoff_fd, READ)
    connections: dict[int, Connection] = {}  # fd -> state, for every client of this worker
    unread = b""  # a part of a descriptor number (never, in practice: 4-byte writes are atomic)
    try:
        while True:
            for fd, events in poller.poll():  # sleep in the kernel until something is ready
                if fd == handoff_fd:
                    data = os.read(handoff_fd, 4096)
                    if not data:
                        return  # the main interpreter closed the pipe: shut down
                    unread += data
                    whole = len(unread) - len(unread) % HANDOFF.size
                    for (conn_fd,) in HANDOFF.iter_unpack(unread[:whole]):
                        sock = socket.socket(fileno=conn_fd)  # this interpreter's own object
                        sock.setblocking(False)
                        connections[conn_fd] = Connection(sock)
                        poller.register(conn_fd, READ)
                    unread = unread[whole:]
                elif fd in connections:
                    connection_ready(connections, poller, connections[fd], work_us, 0,
                                     readable=events & (READ | HANGUP),
                                     writable=events & (WRITE | HANGUP))
    finally:
        for conn in connections.values():
            conn.sock.close()
        poller.close()
        os.close(handoff_fd)


# What each worker interpreter runs: first SETUP, in the main thread (so a failure stops the
# server before its readiness line), then LOOP, in the worker's own thread. handoff_fd, argv and
# root are set in the worker's __main__ by prepare_main(); nothing else crosses.
SETUP = """
import sys
sys.path.insert(0, root)
from servers import subinterpreters
args = subinterpreters.parse_worker_args(argv)
"""
LOOP = "subinterpreters.serve_worker(handoff_fd, args.work_us)"


def parse_worker_args(argv: str):
    """In a worker: the server's own command line, parsed as the main interpreter parsed it."""
    return parse_args("subinterpreters", __doc__, workers=1, argv=argv.split("\0") if argv else [])


# ---- the main interpreter: accept, hand out, supervise -----------------------------------------


@dataclass
class Worker:
    interp: object  # the interpreter (concurrent.interpreters.Interpreter)
    thread: threading.Thread  # the thread that runs its loop
    handoff_w: int  # the write end of its pipe: connections go in here


def start_worker(number: int) -> Worker:
    interp = interpreters.create()  # a new interpreter: its own GIL, modules, sys, heap
    handoff_r, handoff_w = os.pipe()
    try:
        interp.prepare_main(handoff_fd=handoff_r, argv="\0".join(sys.argv[1:]), root=ROOT)
        interp.exec(SETUP)  # imports this module again, in there: a copy of its own
    except BaseException as exc:  # it failed, or a signal came: leave no interpreter behind
        os.close(handoff_r)
        os.close(handoff_w)
        interp.close()
        if isinstance(exc, interpreters.ExecutionFailed):
            raise SystemExit(f"subinterpreters: worker {number} could not start: {exc}") from None
        raise

    def run_loop() -> None:
        try:
            interp.exec(LOOP)  # returns when the main interpreter closes the pipe
        except interpreters.ExecutionFailed as exc:
            log(f"worker {number} failed: {exc}")

    thread = threading.Thread(target=run_loop, name=f"interpreter-{number}")
    thread.start()
    return Worker(interp, thread, handoff_w)


def hand_off(fd: int, worker: Worker) -> bool:
    """Give the connection ``fd`` to ``worker``: its number, into the worker's pipe.
    False if that worker is gone (its thread ended, so its pipe has no reader)."""
    try:
        os.write(worker.handoff_w, HANDOFF.pack(fd))  # blocks only if the worker is 16,384 behind
        return True
    except BrokenPipeError:
        return False


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        os.close(worker.handoff_w)  # end of file: the worker closes its connections and returns
    for worker in workers:
        worker.thread.join()
        worker.interp.close()


def serve(args) -> None:
    listener = listen(args)
    workers: list[Worker] = []
    try:
        for number in range(args.workers):
            workers.append(start_worker(number))
        announce(listener, f"{args.workers} interpreters")
        turn = 0
        while True:
            conn = accept_blocking(listener)  # sleeps until a client connects
            fd = conn.detach()  # our socket object lets go of the descriptor: a worker takes it
            while not hand_off(fd, worker := workers[turn % len(workers)]):
                log(f"{worker.thread.name} is gone; serving with the others")
                workers.remove(worker)
                stop_workers([worker])
                if not workers:
                    os.close(fd)
                    raise SystemExit("subinterpreters: every worker failed (see above)")
            turn += 1  # round robin
    finally:
        listener.close()
        stop_workers(workers)


if __name__ == "__main__":
    if (why := why_not()) is not None:
        sys.stderr.write(f"subinterpreters: {why}\n")
        sys.exit(2)
    run(serve, parse_args("subinterpreters", __doc__, workers=default_workers(),
                          workers_help="interpreters, each with its own GIL and its own thread"))
