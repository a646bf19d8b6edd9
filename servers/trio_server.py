"""trio: a task per connection in a nursery, structured concurrency (lesson 10, fibers).

The model: like asyncio-streams, each connection is a coroutine that suspends at every `await`
while one thread runs trio's scheduler, which sleeps in epoll_wait() when no task can run. What
trio adds is structure: every task lives in a nursery, a block that does not end until all the
tasks started in it have ended, and cancelling the nursery's scope cancels every one of them at
its next await. Here the accept loop starts one task per connection in one nursery; shutdown is
cancelling that nursery: no task is forgotten, no connection left open.

trio.serve_tcp(handle, port) does all of this in one call: it opens its own listening sockets
(open_tcp_listeners) and runs serve_listeners(), whose heart is the accept loop below: accept,
start_soon(handler) in a nursery, repeat. We write the loop out, on the listening socket from
common.listen() (the one place for socket options, the fd limit and the "in use" error), so that
it reads like its siblings and backs off on EMFILE with one log line every few seconds (trio's
own loop also sleeps 0.1 s on EMFILE, but logs a traceback each time), and so that it accepts
every client already queued, not one per turn of a busy scheduler (see accept_loop).

Backpressure: `await stream.send_all(data)` returns only once the kernel has taken every byte, so
a task whose client does not read waits there and reads nothing more; its pending output is one
chunk (CHUNK_BYTES). trio also sets TCP_NOTSENT_LOWAT (16 KiB), so the kernel reports the socket
writable only when little unsent data remains.

Syscalls: epoll_create1, epoll_ctl (trio registers a socket when a task waits on it), epoll_wait,
accept4, recvfrom, sendto, close.
Limits: one thread, one core; a task that burns CPU (--work-us) delays every other (lesson 11).
TCP_NODELAY: trio's SocketStream sets it on every socket it wraps, accepted ones included.
Idle, trio sleeps in epoll_wait() with no periodic timer: an idle server uses no CPU.

Run it:  make serve SERVER=trio     then nc 127.0.0.1 PORT
Watch it:  strace -e trace=epoll_wait,epoll_ctl,recvfrom,sendto -p PID
"""

from __future__ import annotations

import signal
import socket

import trio

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED,
    announce, burn_cpu, listen, log, parse_args, run,
)

ACCEPT_BURST = 100  # connections accepted per turn of the scheduler at most, as asyncio does


async def handle_connection(stream: trio.SocketStream, work_us: int) -> None:
    """Echo until the client closes its side, then close ours. One task per connection."""
    async with stream:  # closes the socket however the task ends (cancellation included)
        try:
            while True:
                data = await stream.receive_some(CHUNK_BYTES)  # this task sleeps here
                if not data:
                    return  # the client half-closed: everything it sent has been echoed
                burn_cpu(work_us)
                await stream.send_all(data)  # backpressure: waits while the client is not reading
        except trio.BrokenResourceError as exc:  # reset or broken pipe: this connection only
            cause = exc.__cause__
            log(f"connection dropped: {getattr(cause, 'strerror', None) or cause or exc}", every_s=5)


async def accept_loop(listener: trio.SocketListener, queue: socket.socket, nursery: trio.Nursery,
                      work_us: int) -> None:
    """Accept forever, one new task per connection, each in ``nursery``. ``queue`` is the
    listening socket beneath ``listener``, for accepts that must not wait (below)."""
    while True:
        try:
            stream = await listener.accept()  # skips ECONNABORTED and the like by itself
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                await trio.sleep(ACCEPT_BACKOFF_S)  # the listener stays readable: do not spin
            elif exc.errno not in ACCEPT_TRANSIENT:
                raise
            continue
        nursery.start_soon(handle_connection, stream, work_us)
        # listener.accept() yields to the scheduler after every connection, and a busy scheduler
        # runs every ready task once before it comes back: with 10,000 busy connections that is
        # one accept per second, and clients wait in the listen queue, connected but unserved.
        # So take what else is queued now, as asyncio's and gevent's loops do.
        for stream in accept_queued(queue, ACCEPT_BURST - 1):
            nursery.start_soon(handle_connection, stream, work_us)


def accept_queued(queue: socket.socket, limit: int) -> list[trio.SocketStream]:
    """Up to ``limit`` connections already in the listen queue, accepted without waiting.

    Any error (EMFILE, a client that reset while queued) ends the burst: the next
    listener.accept() meets it again and handles it as above.
    """
    streams = []
    while len(streams) < limit:
        try:
            sock, _ = queue.accept()  # non-blocking: BlockingIOError once the queue is empty
        except OSError:
            break
        streams.append(trio.SocketStream(trio.socket.from_stdlib_socket(sock)))
    return streams


async def cancel_on_signal(cancel_scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED):
    """Wait for SIGINT or SIGTERM, then cancel the nursery: every task ends at its next await."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()  # the handlers are in place: now we may announce
        async for signum in signals:
            log(f"{signal.Signals(signum).name}: shut down")
            cancel_scope.cancel()
            return


async def serve_forever(sock: socket.socket, work_us: int) -> None:
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))  # sock, non-blocking
    async with listener, trio.open_nursery() as nursery:
        await nursery.start(cancel_on_signal, nursery.cancel_scope)
        announce(listener.socket)
        await accept_loop(listener, sock, nursery, work_us)


def serve(args) -> None:
    listener = listen(args)
    trio.run(serve_forever, listener, args.work_us)


if __name__ == "__main__":
    run(serve, parse_args("trio", __doc__))
