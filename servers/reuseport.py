"""reuseport: --workers processes, each with its own SO_REUSEPORT listener and event loop (lesson 02).

The model: one event loop per core. The parent forks --workers children (default: the CPUs this
process may run on); each child opens its OWN listening socket on the same port, with SO_REUSEPORT
set, and runs an asyncio event loop (uvloop when it is installed, asyncio's own loop otherwise; the
readiness line says which) running the `asyncio-protocol` server's accept_loop. The kernel
keeps the listeners of one port in a reuseport group and hashes each new connection (its source
and destination address and port) to one of them: the kernel spreads the clients, no process
accepts for another, and no two processes ever wait on the same socket (compare `prefork`, whose
workers share one listener and queue). One GIL per process: the children run Python on all cores
at once, which one event loop (lesson 10) or threads (lesson 05) cannot.

The parent serves nobody. It binds the port first WITHOUT SO_REUSEPORT and never listens on it:
- with --port 0 this is how it learns the port the children then bind;
- a port in use fails here, with the one-line "in use" error. SO_REUSEPORT alone would not: a
  second copy of this server (same user) would join the first one's group silently and take half
  of its connections. Our plain bind conflicts with any socket that listens on the port, with or
  without SO_REUSEPORT, so a second copy stops here instead;
- the children's SO_REUSEPORT binds still succeed: a socket with SO_REUSEADDR that does not listen
  (ours) does not conflict with others that set SO_REUSEADDR, and, never listening, it is in no
  reuseport group and receives no connection. The parent holds it for as long as it runs.
Then the parent waits until every child says, over a pipe, that it listens, announces, and
supervises: it sleeps in wait() and replaces a child that dies. SIGINT/SIGTERM: it stops them all.

Syscalls: parent: bind, clone (fork), pipe, read, wait4, kill. Children: setsockopt(SO_REUSEPORT),
bind, listen, write (to the pipe), then as `asyncio-protocol` (epoll_wait, accept4, recvfrom,
sendto).
Limits: Linux (SO_REUSEPORT load-balancing since 3.9). The hash ignores load: a busy child keeps
getting its share of new clients while an idle one waits, and a child that dies drops the
connections still waiting in its accept queue. Memory: --workers interpreters.

Run it:  make serve SERVER=reuseport ARGS="--workers 4"    then several nc 127.0.0.1 PORT
Watch it:  ss -ltnp 'sport = :PORT'  (one listening socket per child, each its own queue);
ps --forest -g PGID;  cat /proc/net/tcp  (the connections, and which process has each: ss -tnp)
"""

from __future__ import annotations

import asyncio
import os
import time

from servers.asyncio_protocol import accept_loop
from servers.common import (
    announce, bind_only, default_workers, fork_tracked, listen, log, parse_args, run,
    terminate_children,
)

try:  # each child runs uvloop if it is installed, asyncio's own loop otherwise
    import uvloop
    new_event_loop, LOOP_NAME = uvloop.new_event_loop, "uvloop"
except ImportError:
    new_event_loop, LOOP_NAME = asyncio.new_event_loop, "asyncio"

workers: set[int] = set()  # PIDs of running workers
RESPAWN_PAUSE_S = 0.5  # a worker that dies at once must not turn the parent into a fork loop


async def serve_worker(listener, args, ready_fd: int | None) -> None:
    """One child's event loop: serve on its own listener until the parent's SIGTERM ends it."""
    connections: set[asyncio.Transport] = set()
    listener.setblocking(False)  # with no client queued, accept() must fail (EAGAIN), not block
    if ready_fd is not None:
        os.write(ready_fd, b".")  # tell the parent: this child listens
        os.close(ready_fd)
    await accept_loop(listener, args.work_us, connections)  # asyncio-protocol's, as it is


def start_worker(args, reserved, ready_fd: int | None = None) -> int:
    pid = fork_tracked(workers)  # recorded before a SIGTERM can stop the parent
    if pid == 0:  # ---- the worker: its own listener on the same port, its own event loop
        status = 0
        try:
            reserved.close()  # the parent's socket: not ours to keep
            listener = listen(args, reuseport=True)
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                runner.run(serve_worker(listener, args, ready_fd))
        except SystemExit as exc:  # listen() failed and said why
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException as exc:
            log(f"worker failed: {exc!r}")
            status = 1
        finally:
            os._exit(status)
    return pid


def serve(args) -> None:
    reserved = bind_only(args)  # "in use" fails here; with --port 0, picks the port
    args.port = reserved.getsockname()[1]  # the port every child binds
    try:
        ready_r, ready_w = os.pipe()
        for _ in range(args.workers):
            start_worker(args, reserved, ready_w)
        os.close(ready_w)  # now only the children hold the write end: EOF once each is done
        ready = 0
        while chunk := os.read(ready_r, 64):  # one byte per child listening
            ready += len(chunk)
        os.close(ready_r)
        if ready < args.workers:
            log(f"{args.workers - ready} of {args.workers} workers could not start; stopping")
            raise SystemExit(1)
        announce(reserved, f"{args.workers} workers, {LOOP_NAME} loop each")
        while True:  # supervise: sleep in wait() until a worker dies, then replace it
            pid, status = os.wait()
            workers.discard(pid)
            log(f"worker {pid} exited ({os.waitstatus_to_exitcode(status)}); starting another")
            time.sleep(RESPAWN_PAUSE_S)
            start_worker(args, reserved)
    finally:
        reserved.close()
        terminate_children(workers)  # SIGTERM, reap; SIGKILL what lingers


if __name__ == "__main__":
    run(serve, parse_args("reuseport", __doc__, workers=default_workers(),
                          workers_help="worker processes, one event loop each"))
