"""generators: a scheduler written from scratch, each connection a generator (lesson 10, fibers).

The model: a connection's code reads like the blocking server's (recv, burn, send, repeat), but
it is a generator: where a blocking server would block, it YIELDS a trap, a tuple that tells the
scheduler what it waits for: ("recv", sock) "wake me when sock is readable", ("send", sock)
"... writable", ("sleep", seconds), ("spawn", generator) "start this task". Yielding suspends
the generator and returns to the scheduler; its locals live on in the suspended frame, a few
hundred bytes on the heap: no thread, no stack of its own (stackless, unlike greenlets).

The scheduler (run_tasks) is one loop in plain sight, the shape of curio's kernel, smaller: run
every ready task until its next trap; park it on the selector (or the clock) according to the
trap; sleep in the selector until a socket is ready; move the woken tasks back to the ready queue.
No asyncio inside: `async`/`await` are this same mechanism with the traps hidden in a library.

Backpressure comes for free: a task stuck in sendall() does not recv() again, so a client that
never reads stops being read from once the kernel's buffers fill. Output per connection is at
most one chunk (CHUNK_BYTES), well under MAX_PENDING_BYTES.

Syscalls: epoll_create1, epoll_ctl (ADD when a task parks, DEL when it wakes), epoll_wait,
accept4, recvfrom, sendto, close (selectors.DefaultSelector is epoll on Linux, kqueue on BSD).
Limits: one thread, cooperative: a task that does not yield (--work-us, lesson 11) stalls every
other one; registering and unregistering on every wait costs two syscalls that asyncio avoids by
keeping registrations.

Run it:  make serve SERVER=generators     then several nc 127.0.0.1 PORT at once
Watch it:  strace -e trace=epoll_ctl,epoll_wait,recvfrom,sendto -p PID  (ADD, wait, DEL per wait)
"""

from __future__ import annotations

import heapq
import itertools
import selectors
import socket
import time
from collections import deque

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

# ----------------------------------------------------------------------------------------------
# What tasks call: the blocking calls, rewritten to yield a trap instead of blocking


def recv(sock: socket.socket, max_bytes: int):
    """sock.recv() for a task: park until readable, then read (one chunk per turn: fair)."""
    while True:
        yield ("recv", sock)
        try:
            return sock.recv(max_bytes)
        except BlockingIOError:
            pass  # woken with nothing to read after all: park again


def sendall(sock: socket.socket, data: bytes):
    """sock.sendall() for a task: send what the kernel takes, park while its buffer is full."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            yield ("send", sock)  # the send buffer is full: park until it drains
            continue
        view = view[sent:]


# ----------------------------------------------------------------------------------------------
# The tasks: the accept loop and one per connection


def handle_connection(conn: socket.socket, work_us: int):
    """Echo until the client closes its side, then close ours. One task per connection."""
    with conn:
        try:
            while True:
                data = yield from recv(conn, CHUNK_BYTES)
                if not data:
                    return  # the client half-closed: everything it sent has been echoed
                burn_cpu(work_us)
                yield from sendall(conn, data)
        except OSError as exc:  # reset, broken pipe: that client's problem, not the server's
            log(f"connection dropped: {exc.strerror}", every_s=5)


def accept_loop(listener: socket.socket, work_us: int):
    """Accept forever, one new task per connection. Itself a task."""
    while True:
        yield ("recv", listener)  # park until a client is in the listen queue
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                yield ("sleep", ACCEPT_BACKOFF_S)  # the listener stays readable: do not spin
            elif exc.errno not in ACCEPT_TRANSIENT:
                raise
            continue
        conn.setblocking(False)
        set_nodelay(conn)
        yield ("spawn", handle_connection(conn, work_us))


# ----------------------------------------------------------------------------------------------
# The scheduler


def run_tasks(first_task) -> None:
    """Run ``first_task`` and every task it spawns, until a signal raises Shutdown."""
    ready = deque([first_task])  # tasks that can run now, in the order they became ready
    selector = selectors.DefaultSelector()  # tasks parked until their socket is ready
    sleeping = []  # heap of (wake-up time, tie-breaker, task): tasks parked on the clock
    tie_breaker = itertools.count()  # orders sleepers due at the same time, never compares tasks
    tasks = {first_task}  # every live task, so that shutdown can close them all
    try:
        while True:
            # -- run ready tasks, each until its next trap (the ones woken meanwhile wait a turn)
            for _ in range(len(ready)):
                task = ready.popleft()
                try:
                    trap, arg = task.send(None)  # run it until its next yield
                except StopIteration:
                    tasks.discard(task)  # the task returned: its connection is closed
                    continue
                # -- park it where its trap says
                if trap == "recv":
                    selector.register(arg, selectors.EVENT_READ, task)
                elif trap == "send":
                    selector.register(arg, selectors.EVENT_WRITE, task)
                elif trap == "sleep":
                    heapq.heappush(sleeping, (time.monotonic() + arg, next(tie_breaker), task))
                elif trap == "spawn":
                    tasks.add(arg)
                    ready.append(arg)
                    ready.append(task)  # spawning does not block the spawner
                else:
                    raise RuntimeError(f"unknown trap {trap!r} yielded by {task!r}")

            # -- wait on the selector: not at all if tasks are ready, until the next sleeper
            #    is due if one sleeps, else for as long as it takes (an idle server uses no CPU)
            if ready:
                timeout_s = 0
            elif sleeping:
                timeout_s = max(0.0, sleeping[0][0] - time.monotonic())
            else:
                timeout_s = None
            for key, _ in selector.select(timeout_s):
                selector.unregister(key.fileobj)
                ready.append(key.data)

            # -- wake the sleepers whose time has come
            now = time.monotonic()
            while sleeping and sleeping[0][0] <= now:
                ready.append(heapq.heappop(sleeping)[2])
    finally:
        for task in tasks:
            task.close()  # GeneratorExit at its yield: its `with conn` closes the socket
        selector.close()


def serve(args) -> None:
    listener = listen(args)
    listener.setblocking(False)
    announce(listener)
    with listener:
        run_tasks(accept_loop(listener, args.work_us))


if __name__ == "__main__":
    run(serve, parse_args("generators", __doc__))
