"""epoll: one thread waits on every connection at once with epoll (lesson 08, multiplexed I/O).

The model: the one of `poll`, with the multiplexer swapped. Every socket is non-blocking; the one
thread sleeps in epoll_wait(), the kernel wakes it with the list of ready descriptors, the thread
does the recv(), send() or accept() that cannot block, and goes back. A waiting connection costs
no thread: an entry in `connections` and one in the kernel's epoll instance.

epoll keeps the interest set inside the kernel (epoll_ctl ADD/MOD/DEL change it), and the kernel
itself queues a descriptor on the ready list when its socket wakes up. So epoll_wait() costs
O(ready descriptors), not O(connections): 10,000 idle clients cost nothing per loop turn.

Level-triggered (the default): epoll_wait() reports a descriptor as long as it is ready, exactly
like poll(). Edge-triggered (--edge, EPOLLET): it reports a descriptor only when it BECOMES ready
(new bytes arrive, room frees up in the send buffer). A server that leaves bytes unread after an
edge will never hear about them again, so with --edge every read_ready() reads until EAGAIN (or
until backpressure stops it, see read_ready) and write_ready() writes until EAGAIN.

Each connection keeps its own output buffer: the echo the kernel's send buffer had no room for.
The server asks for EPOLLOUT only while that buffer holds something, and drops EPOLLIN for a client
whose buffer passed MAX_PENDING_BYTES until it drains (backpressure).

Syscalls: epoll_create1, epoll_ctl, epoll_wait, accept4, recvfrom, sendto, close.
Limits: Linux only. One thread: --work-us on one connection delays every other one (lesson 11).
Each epoll_ctl is a syscall, so interest changes are made only when the interest really changes.

Run it:  make serve SERVER=epoll  [ARGS=--edge]     then several nc 127.0.0.1 PORT at once
Watch it:  strace -e trace=epoll_wait,epoll_ctl,recvfrom,sendto -p PID;  the interest set is in
/proc/PID/fdinfo/EPFD (one "tfd:" line per watched socket, with its event mask).
"""

from __future__ import annotations

import select
import socket
import time

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED, MAX_PENDING_BYTES,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

READ, WRITE = select.EPOLLIN, select.EPOLLOUT
HANGUP = select.EPOLLHUP | select.EPOLLERR  # always reported: the next recv/send raises the error


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


def accept_ready(listener: socket.socket, connections: dict[int, Connection], poller,
                 trigger: int) -> bool:
    """The listener is readable: accept every queued client. False when out of descriptors.
    (Accepting until EAGAIN is what an edge-triggered listener needs: one edge, many clients.)"""
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
        # ADD checks readiness at once: bytes that arrived before this call are reported too
        poller.register(sock.fileno(), conn.events | trigger)


def read_ready(conn: Connection, work_us: int, trigger: int) -> None:
    """The client's bytes are here: read and echo them, one chunk (level) or all (edge)."""
    while conn.wants_read():
        try:
            data = conn.sock.recv(CHUNK_BYTES)  # cannot block: the socket is non-blocking
        except BlockingIOError:
            return  # drained: with EPOLLET, the next EPOLLIN comes only with new bytes
        if not data:
            conn.peer_done = True  # end of stream; close once the pending output is sent
            return
        burn_cpu(work_us)
        conn.output += data
        write_ready(conn)  # try at once: the send buffer usually has room, which saves a loop turn
        if not trigger:
            return  # level-triggered: one chunk per turn is fair, epoll reports us again
    # Edge-triggered and stopped by backpressure, bytes maybe still unread: no new edge will
    # announce them. The EPOLL_CTL_MOD that turns EPOLLIN back on once the output drains makes
    # the kernel check readiness again and report them (see connection_ready).


def write_ready(conn: Connection) -> None:
    """The send buffer has room: hand the kernel as much pending output as it takes.
    (Writing until EAGAIN is what EPOLLET demands: the next EPOLLOUT edge comes only once a full
    send buffer frees up; stop earlier and the rest would wait for an edge that never comes.)"""
    while conn.output:
        try:
            sent = conn.sock.send(conn.output)
        except BlockingIOError:
            return  # the send buffer is full: wait for writability
        del conn.output[:sent]


def connection_ready(connections, poller, conn, work_us, trigger, *,
                     readable=False, writable=False) -> None:
    """Do what readiness allows on one connection; close it once finished or broken."""
    try:
        if readable:
            read_ready(conn, work_us, trigger)
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
        poller.modify(conn.sock.fileno(), events | trigger)  # MOD also re-checks readiness
        conn.events = events


def add_edge_option(parser) -> None:
    parser.add_argument("--edge", action="store_true",
                        help="edge-triggered (EPOLLET) instead of level-triggered")


def serve(args) -> None:
    trigger = select.EPOLLET if args.edge else 0  # added to every interest mask
    listener = listen(args)
    listener.setblocking(False)
    listener_fd = listener.fileno()
    poller = select.epoll()
    poller.register(listener_fd, READ | trigger)
    connections: dict[int, Connection] = {}  # fd -> state, for every open client
    accept_paused_until = 0.0  # out of fds: the listener stays unwatched until then
    announce(listener, "edge-triggered" if args.edge else "level-triggered")
    try:
        while True:
            # -- how long to wait: forever, unless accepting is paused
            timeout_s = -1  # nothing to do until a socket is ready: sleep, use no CPU
            if accept_paused_until:
                timeout_s = accept_paused_until - time.monotonic()
                if timeout_s <= 0:
                    timeout_s, accept_paused_until = -1, 0.0
                    poller.register(listener_fd, READ | trigger)

            # -- sleep in the kernel until something is ready
            ready = poller.poll(timeout_s)

            # -- do the I/O that cannot block now
            for fd, events in ready:
                if fd == listener_fd:
                    if not accept_ready(listener, connections, poller, trigger):
                        # the listener stays readable while the queue holds clients: retrying
                        # at once would spin, so stop watching it for a while
                        poller.unregister(listener_fd)
                        accept_paused_until = time.monotonic() + ACCEPT_BACKOFF_S
                elif fd in connections:
                    connection_ready(connections, poller, connections[fd], args.work_us, trigger,
                                     readable=events & (READ | HANGUP),
                                     writable=events & (WRITE | HANGUP))
    finally:
        for conn in connections.values():
            conn.sock.close()
        listener.close()
        poller.close()


if __name__ == "__main__":
    # one file, two registry entries: epoll and epoll-edge (its --edge variant)
    run(serve, parse_args(lambda args: "epoll-edge" if args.edge else "epoll", __doc__,
                          extra=add_edge_option))
