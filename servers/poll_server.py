"""poll: one thread waits on every connection at once with poll() (lesson 08, multiplexed I/O).

The model: the one of `select`, with the multiplexer swapped. Every socket is non-blocking; the
one thread sleeps in poll(), the kernel wakes it when a registered descriptor is ready and says
which (revents), the thread does the recv(), send() or accept() that cannot block, and goes back.
A waiting connection costs no thread: an entry in `connections` and one in the poll set.

poll() takes an array of (fd, events) pairs instead of select()'s fixed bitmaps, so there is no
FD_SETSIZE: any descriptor number works. The interest of each fd is registered once and changed
with modify() only when it changes (Python's poll object keeps the array between calls;
the kernel is still handed all of it on every call).

Each connection keeps its own output buffer: the echo the kernel's send buffer had no room for.
The server asks for POLLOUT only while that buffer holds something (a socket is almost always
writable: asking all the time would wake the loop for nothing), and drops POLLIN for a client
whose buffer passed MAX_PENDING_BYTES until it drains (backpressure). POLLHUP and POLLERR come
whatever we ask for: the next recv() or send() reports what happened.

Syscalls: poll, accept4, recvfrom, sendto, close.
Limits: the array is still copied into the kernel and scanned on every call, so a loop turn costs
O(connections), busy or not: fine for hundreds, slow for tens of thousands (that is what epoll
fixes). One thread: --work-us on one connection delays every other one (lesson 11).

Run it:  make serve SERVER=poll     then several nc 127.0.0.1 PORT at once
Watch it wait:  strace -e trace=poll,recvfrom,sendto -p PID   (the fd array on every poll call)
"""

from __future__ import annotations

import select
import socket
import time

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED, MAX_PENDING_BYTES,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

READ, WRITE = select.POLLIN, select.POLLOUT
HANGUP = select.POLLHUP | select.POLLERR  # always reported: the next recv/send raises the error


class Connection:
    """What the loop remembers about one client between two wake-ups."""

    __slots__ = ("sock", "output", "peer_done", "events")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.output = bytearray()  # echo the kernel has not taken yet (its send buffer was full)
        self.peer_done = False  # the client sent FIN: echo what is pending, then close
        self.events = READ  # the interest registered with the kernel for this fd

    def wants_read(self) -> bool:
        # backpressure: a client that does not read its echo is not read from either
        return not self.peer_done and len(self.output) < MAX_PENDING_BYTES


def accept_ready(listener: socket.socket, connections: dict[int, Connection], poller) -> bool:
    """The listener is readable: accept every queued client. False when out of descriptors."""
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return True  # the listen queue is empty
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; not accepting for {ACCEPT_BACKOFF_S} s", every_s=5)
                return False
            if exc.errno in ACCEPT_TRANSIENT:
                continue
            raise
        sock.setblocking(False)
        set_nodelay(sock)
        conn = connections[sock.fileno()] = Connection(sock)
        poller.register(sock.fileno(), conn.events)


def read_ready(conn: Connection, work_us: int) -> None:
    """The client's bytes are here: read one chunk and echo it."""
    try:
        data = conn.sock.recv(CHUNK_BYTES)  # cannot block: the kernel said readable
    except BlockingIOError:
        return  # a spurious wake-up: nothing to read after all
    if not data:
        conn.peer_done = True  # end of stream; close once the pending output is sent
        return
    burn_cpu(work_us)
    conn.output += data
    write_ready(conn)  # try at once: the send buffer usually has room, which saves a loop turn


def write_ready(conn: Connection) -> None:
    """The send buffer has room: hand the kernel as much pending output as it takes."""
    while conn.output:
        try:
            sent = conn.sock.send(conn.output)
        except BlockingIOError:
            return  # the send buffer is full: wait for writability
        del conn.output[:sent]


def connection_ready(connections, poller, conn, work_us, *, readable=False, writable=False) -> None:
    """Do what readiness allows on one connection; close it once finished or broken."""
    try:
        if readable:
            read_ready(conn, work_us)
        if writable:
            write_ready(conn)
    except OSError as exc:  # reset or broken pipe: this client only
        log(f"connection dropped: {exc.strerror}", every_s=5)
        finished = True
    else:
        finished = conn.peer_done and not conn.output  # FIN received, everything echoed
    if finished:
        poller.unregister(conn.sock.fileno())
        del connections[conn.sock.fileno()]
        conn.sock.close()
        return
    # readable while not paused; writable only while output is pending
    events = (READ if conn.wants_read() else 0) | (WRITE if conn.output else 0)
    if events != conn.events:
        poller.modify(conn.sock.fileno(), events)
        conn.events = events


def serve(args) -> None:
    listener = listen(args)
    listener.setblocking(False)
    listener_fd = listener.fileno()
    poller = select.poll()
    poller.register(listener_fd, READ)
    connections: dict[int, Connection] = {}  # fd -> state, for every open client
    accept_paused_until = 0.0  # out of fds: the listener stays unwatched until then
    announce(listener)
    try:
        while True:
            # -- how long to wait: forever, unless accepting is paused
            timeout_ms = None  # nothing to do until a socket is ready: sleep, use no CPU
            if accept_paused_until:
                timeout_ms = (accept_paused_until - time.monotonic()) * 1000
                if timeout_ms <= 0:
                    timeout_ms, accept_paused_until = None, 0.0
                    poller.register(listener_fd, READ)

            # -- sleep in the kernel until something is ready
            ready = poller.poll(timeout_ms)

            # -- do the I/O that cannot block now
            for fd, events in ready:
                if fd == listener_fd:
                    if not accept_ready(listener, connections, poller):
                        # the listener stays readable while the queue holds clients: retrying
                        # at once would spin, so stop watching it for a while
                        poller.unregister(listener_fd)
                        accept_paused_until = time.monotonic() + ACCEPT_BACKOFF_S
                elif fd in connections:
                    connection_ready(connections, poller, connections[fd], args.work_us,
                                     readable=events & (READ | HANGUP),
                                     writable=events & (WRITE | HANGUP))
    finally:
        for conn in connections.values():
            conn.sock.close()
        listener.close()


if __name__ == "__main__":
    run(serve, parse_args("poll", __doc__))
