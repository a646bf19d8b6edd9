"""asyncio-protocol: an event loop calls back a Protocol object per connection (lesson 10, fibers).

The model: asyncio's lowest public layer, the one its streams are built on. One thread runs the
event loop: it sleeps in epoll_wait(), and when a connection's socket is ready it does the
non-blocking recv() or send() itself and calls a method of that connection's Protocol object:
connection_made, data_received(bytes), eof_received, connection_lost. Our Protocol writes the
echo to its Transport, which sends what the kernel takes at once and buffers the rest, asking
epoll for EPOLLOUT until that buffer drains. No coroutine, no task per connection: a callback is
the whole fiber, and a waiting connection is two small objects and an epoll registration (lesson
08's epoll server, with the loop written for us).

Backpressure is a pair of callbacks: once a transport's output buffer passes its high-water mark
(MAX_PENDING_BYTES) it calls pause_writing(), and we answer by pausing reading on that transport
(its fd leaves the epoll read set); when the buffer drains below the low-water mark (a quarter of
it) resume_writing() resumes reading. A client that never reads thus costs at most ~1 MiB.

Accepting is one coroutine, accept_loop: `await loop.sock_accept(listener)` suspends it until a
client is queued, and loop.connect_accepted_socket() wraps the new socket in a transport with its
own EchoProtocol. loop.create_server() would run an accept loop of its own instead; we do not use
it because of what it does when out of file descriptors. On EMFILE, CPython 3.11's
(BaseSelectorEventLoop._accept_connection) stops watching the listener for a second, as it
should, but first retries accept() up to backlog times (4096 here) and schedules as many retries
(python/cpython#151615): a fifth of a core burnt while out of fds. uvloop's leaves it to libuv,
which closes a spare descriptor kept for this, accepts and at once closes every queued connection,
and reopens the spare: those clients see their connection closed. Ours does what every server in
the lab does, on either loop: log, wait ACCEPT_BACKOFF_S, accept again.

--loop uvloop swaps the loop for uvloop, the same API implemented in Cython on libuv (the event
loop of Node.js): the same code runs unchanged, with less Python per event. The registry lists
both: `asyncio-protocol` and `uvloop-protocol`.

Syscalls: epoll_create1, epoll_ctl, epoll_wait, accept4, recvfrom, sendto, close (uvloop: the
same through libuv, which reads with read() and writes with write()/writev()).
Limits: one thread and one core. The GIL plays no part, but cooperation does: a callback that
burns CPU (--work-us) delays every other connection (lesson 11). TCP_NODELAY: we set it on each
accepted socket; both loops also set it on every TCP transport they create. The loop reads up to
256 KiB per recv() (its own buffer size, not CHUNK_BYTES); --work-us is burned per data_received.

Run it:  make serve SERVER=asyncio-protocol   (or uvloop-protocol)   then nc 127.0.0.1 PORT
Watch it:  strace -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,read,write -p PID
"""

from __future__ import annotations

import asyncio
import signal
import sys

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, FD_EXHAUSTED, MAX_PENDING_BYTES,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)


class EchoProtocol(asyncio.Protocol):
    """One per connection. The loop calls these methods; each returns at once, never blocks."""

    def __init__(self, work_us: int, connections: set[asyncio.Transport]):
        self.work_us = work_us
        self.connections = connections  # every open transport, so shutdown can close them
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        # pause_writing() is called once this much output waits in the transport's buffer
        transport.set_write_buffer_limits(high=MAX_PENDING_BYTES)
        self.connections.add(transport)

    def data_received(self, data: bytes) -> None:
        burn_cpu(self.work_us)
        self.transport.write(data)  # sends now if the kernel takes it, buffers the rest

    def eof_received(self) -> bool:
        # The client half-closed. Returning False asks the transport to close itself, and a
        # closing transport first sends everything still buffered: the echo arrives whole.
        return False

    def pause_writing(self) -> None:
        self.transport.pause_reading()  # backpressure: stop reading a client that does not read

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:  # reset or broken pipe: this connection only
            log(f"connection dropped: {getattr(exc, 'strerror', None) or exc}", every_s=5)
        self.connections.discard(self.transport)


async def accept_loop(listener, work_us: int, connections: set[asyncio.Transport]) -> None:
    """Accept forever; the loop then drives each connection through its own EchoProtocol."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)  # suspended until a client is queued
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                await asyncio.sleep(ACCEPT_BACKOFF_S)  # the listener stays readable: do not spin
            elif exc.errno not in ACCEPT_TRANSIENT:
                raise
            continue
        set_nodelay(conn)  # the loops set it on their transports too; here it is visible
        # a transport for this socket, registered with epoll; it calls connection_made()
        await loop.connect_accepted_socket(lambda: EchoProtocol(work_us, connections), conn)


async def serve_forever(listener, args, detail: str) -> None:
    """Serve on the loop that runs this coroutine until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    connections: set[asyncio.Transport] = set()
    listener.setblocking(False)  # with no client queued, accept() must fail (EAGAIN), not block
    accepting = asyncio.create_task(accept_loop(listener, args.work_us, connections))

    def stop(signame: str) -> None:
        log(f"{signame}: shut down")
        accepting.cancel()  # CancelledError is raised in accept_loop, where it waits

    for sig in (signal.SIGINT, signal.SIGTERM):
        # The loop's own signal support: the C handler writes to a pipe the loop watches, and
        # the loop calls stop() between two events, never in the middle of one.
        loop.add_signal_handler(sig, stop, sig.name)
    announce(listener, detail)
    try:
        await accepting  # until a signal cancels it (an error in it ends the server, loudly)
    except asyncio.CancelledError:
        pass
    for transport in list(connections):
        transport.abort()  # close now, dropping unsent output: we are leaving


def add_loop_option(parser) -> None:
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop: asyncio's own (selectors + epoll) or uvloop (libuv) "
                             "(default: %(default)s)")


def loop_factory(args):
    """The function that creates the event loop named by --loop."""
    if args.loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            sys.stderr.write(f"{args.name}: --loop uvloop needs the uvloop package "
                             "(pip install uvloop)\n")
            sys.exit(2)
        return uvloop.new_event_loop
    return asyncio.new_event_loop


def serve(args) -> None:
    new_loop = loop_factory(args)
    listener = listen(args)
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(serve_forever(listener, args, f"{args.loop} loop"))


if __name__ == "__main__":
    # one file, two registry entries: asyncio-protocol and uvloop-protocol (--loop uvloop)
    run(serve, parse_args(lambda args: f"{args.loop}-protocol", __doc__, extra=add_loop_option))
