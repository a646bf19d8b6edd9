"""select: one thread waits on every connection at once with select() (lesson 08, multiplexed I/O).

The model: every socket is non-blocking, and the one thread sleeps in select(), handing the kernel
the list of descriptors it wants to read from and the list it wants to write to; the kernel wakes
it when at least one of them is ready and says which. The thread then does exactly the recv(),
send() or accept() that cannot block, and goes back to select(). A connection that waits costs no
thread and no stack: it is an entry in the `connections` dict and a bit in the next call's fd sets.

Each connection keeps its own output buffer: the echo the kernel's send buffer had no room for.
The server asks for writability only while that buffer holds something (a socket is almost always
writable: asking all the time would wake the loop for nothing), and stops reading from a client
whose buffer passed MAX_PENDING_BYTES until it drains (backpressure).

Syscalls: select (pselect6), accept4, recvfrom, sendto, close. No other thread, no epoll fd.
Limits: select() takes fd_set bitmaps of FD_SETSIZE = 1024 bits, fixed when libc was built: a
descriptor numbered 1024 or more cannot be waited on at all (Python raises ValueError). So the
server closes such a connection at once, with a log line, and goes on serving the others; past
about 1020 clients, use poll or epoll. Each call also copies the whole interest set into the
kernel and scans it, so a turn of the loop costs O(connections), busy or not. One thread: the GIL
is never contended, but --work-us on one connection delays every other one (lesson 11).

Run it:  make serve SERVER=select     then several nc 127.0.0.1 PORT at once
Watch it wait:  strace -f -e trace=pselect6,recvfrom,sendto -p PID   (one pselect6 per loop turn)
"""

from __future__ import annotations

import select
import socket
import time

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED, MAX_PENDING_BYTES,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

FD_SETSIZE = 1024  # bits in select()'s fd_set: descriptors 0..1023, no more (glibc, Linux)


class Connection:
    """What the loop remembers about one client between two wake-ups."""

    __slots__ = ("sock", "output", "peer_done")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.output = bytearray()  # echo the kernel has not taken yet (its send buffer was full)
        self.peer_done = False  # the client sent FIN: echo what is pending, then close

    def wants_read(self) -> bool:
        # backpressure: a client that does not read its echo is not read from either
        return not self.peer_done and len(self.output) < MAX_PENDING_BYTES


def accept_ready(listener: socket.socket, connections: dict[int, Connection]) -> bool:
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
        if sock.fileno() >= FD_SETSIZE:
            # select() could never wait on this descriptor: refuse this client, keep the others
            log(f"a client got fd >= {FD_SETSIZE}, past select()'s FD_SETSIZE: closing it "
                "(use poll or epoll for more connections)", every_s=5)
            sock.close()
            continue
        sock.setblocking(False)
        set_nodelay(sock)
        connections[sock.fileno()] = Connection(sock)


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


def connection_ready(connections, conn, work_us, *, readable=False, writable=False) -> None:
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
        del connections[conn.sock.fileno()]
        conn.sock.close()


def serve(args) -> None:
    listener = listen(args)
    listener.setblocking(False)
    listener_fd = listener.fileno()
    connections: dict[int, Connection] = {}  # fd -> state, for every open client
    accept_paused_until = 0.0  # out of fds: the listener stays unwatched until then
    announce(listener, f"FD_SETSIZE {FD_SETSIZE}")
    try:
        while True:
            # -- what to wait for: select() is stateless, so the whole set goes in on every call
            timeout_s = None  # nothing to do until a socket is ready: sleep, use no CPU
            readers, writers = [], []
            if accept_paused_until:
                timeout_s = accept_paused_until - time.monotonic()
                if timeout_s <= 0:
                    timeout_s, accept_paused_until = None, 0.0
            if not accept_paused_until:
                readers.append(listener_fd)
            for fd, conn in connections.items():
                if conn.wants_read():
                    readers.append(fd)
                if conn.output:
                    writers.append(fd)

            # -- sleep in the kernel until something is ready
            readable, writable, _ = select.select(readers, writers, [], timeout_s)

            # -- do the I/O that cannot block now
            for fd in readable:
                if fd == listener_fd:
                    if not accept_ready(listener, connections):
                        # the listener stays readable while the queue holds clients: retrying
                        # at once would spin, so stop watching it for a while
                        accept_paused_until = time.monotonic() + ACCEPT_BACKOFF_S
                elif fd in connections:
                    connection_ready(connections, connections[fd], args.work_us, readable=True)
            for fd in writable:
                if fd in connections:  # not closed while reading above
                    connection_ready(connections, connections[fd], args.work_us, writable=True)
    finally:
        for conn in connections.values():
            conn.sock.close()
        listener.close()


if __name__ == "__main__":
    run(serve, parse_args("select", __doc__))
