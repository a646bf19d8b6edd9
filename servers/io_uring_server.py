"""io_uring: completion-based I/O, one thread and one ring (lesson 09, asynchronous I/O).

Readiness vs completion. epoll (lesson 08) tells the server which sockets it *may* read now; the
server then makes each recv() itself, one syscall per socket, and copies the bytes out. io_uring
turns this around: the server says up front "receive on this socket", and later the kernel says
"done: n bytes are in buffer 17". The server no longer does the I/O; it collects results.

The ring (servers/uring/, the lab's own, over the raw syscalls). io_uring_setup() creates two
ring buffers that the process and the kernel share (mmap: nothing is copied to hand them over).
The server writes requests into the submission queue (SQ): each 64-byte entry (SQE) holds an
opcode (accept, recv, send, timeout...), an fd, a buffer address and length, and 64 bits of
user_data of the server's choosing. The kernel writes results into the completion queue (CQ):
each 16-byte entry (CQE) holds that user_data, res (what the syscall would have returned: bytes
moved, a new fd, or -errno) and flags. One io_uring_enter() per loop turn hands the kernel every
SQE queued during the turn and sleeps until at least one CQE is ready; the CQEs are then read
straight from memory. Many operations per syscall, where an epoll server makes epoll_wait plus
one accept/recv/send per event.

What this server asks of the kernel, and what it falls back on when the kernel is older (the
readiness line says which it uses; `python -m servers.uring` shows what this kernel has):

- accept: one multishot accept SQE on the listener (5.19+): one CQE per new connection, armed
  until an error stops it. Fallback: one single-shot accept at a time, submitted again after
  each completion.
- receive: a provided buffer ring (IORING_REGISTER_PBUF_RING, 5.19+): a pool of POOL_BYTES
  (16 MiB) shared by every connection. A recv names the pool, not a buffer; the kernel takes
  buffer space only when bytes arrive, and the CQE names the buffer (flags >> 16). So an idle
  connection pins no buffer at all: it is a request parked in the kernel and a small Connection
  object here. With multishot recv (6.0+) one recv SQE stays armed and yields one CQE per chunk.
  With incremental consumption (IOU_PBUF_RING_INC, 6.12+) the pool is 128 buffers of 128 KiB
  that the kernel fills a message after another, so a 1 KiB message takes 1 KiB of it and a
  64 KiB message lands in one piece; where the kernel has min_left, it retires a buffer once less
  than MIN_LEFT_BYTES (64 KiB) is left, so that no message up to that size is cut at a buffer's
  end. Without INC: 256 whole buffers of 64 KiB, one per completion. Fallback without the buffer
  ring: each connection owns a CHUNK_BYTES buffer that a pending recv pins, even idle (64 KiB per
  connection; 10,000 idle clients: 640 MiB). --buffer-kib N sets the buffers' size (the pool
  keeps its 16 MiB).
- send: straight from the buffer the bytes arrived in (no copy into Python at all): one send per
  run of bytes, pieces that lie back to back in the pool going out together. A buffer goes back
  to the ring once the kernel is done filling it and every piece of it was sent (buffers.py
  counts the holds). MSG_WAITALL makes the kernel finish a short send itself, so one send SQE
  covers one run.

Large messages, measured: with the earlier pool of 1,024 buffers of 16 KiB a 64 KiB echo took 4
receive completions and 4 sends, each through Python (4 SQEs and 8 CQEs per message, lesson 09
counts them), and the server ran at about half c-epoll's rate at 16 x 64 KiB; Python's epoll
server, one recv and one send per message, was near c-epoll. Buffers that hold a whole message
make it one receive and one send, and bring io_uring level with c-epoll there; incremental
consumption keeps 1 KiB messages from using up a 128 KiB buffer each. Receive bundles
(IORING_RECVSEND_BUNDLE, 6.10: one completion over several buffers) are not used: with buffers
this large a message already lands in one, and sending a bundle back would need a sendmsg with
an iovec array per message. The figures, old and new side by side against c-epoll in one run:
docs/results/io_uring/ (see its report.md).

Backpressure: one send in flight per connection; pieces received meanwhile wait in its queue,
in their provided buffers. Once MAX_QUEUED_CHUNKS wait, the server stops receiving from that
client: a single-shot recv is not submitted again; a multishot recv is cancelled (ASYNC_CANCEL;
its last CQE, -ECANCELED, has no F_MORE). Receiving resumes when the queue drains. So a client
that never reads holds MAX_QUEUED_CHUNKS pieces, plus those the kernel had already received for
it before the cancel took effect (a multishot recv posts a bounded burst per turn); what it
keeps sending piles up in the kernel's socket buffers, then TCP flow control stops it. The pool's
size is fixed, so whatever clients do, the server's buffer memory does not grow. If the whole pool
is in use, a recv completes with -ENOBUFS; that connection waits until buffers come back, then is
armed again. The price of a shared pool: each piece a client holds keeps its whole buffer from
going back, so some 25 clients that send without ever reading (128 buffers, about 5 pieces
each) can hold every buffer, and the others then wait for one (a C server would grow the pool,
or give such clients a buffer of their own; this one keeps its bound).

Running out of fds makes the accept complete with -EMFILE: the accept is cancelled (multishot)
or not resubmitted, and a TIMEOUT SQE brings it back ACCEPT_BACKOFF_S later, so nothing spins.
A connection is closed (close(2), once) only when no request of its own is left in the kernel,
so its fd number, which tags its requests' user_data, is never reused while a CQE may still come.

What a connection does while it waits: nothing runs for it, no thread, no stack, no buffer. The
kernel itself waits for the socket's readiness (an internal poll) and does the recv.

Syscalls: io_uring_setup and io_uring_register once, then one io_uring_enter per loop turn; per
connection only a close. No accept4, recvfrom, sendto, epoll_wait or setsockopt: strace shows it
(TCP_NODELAY is set on the listener, and Linux copies it into every accepted socket).
Limits: one thread on one core: --work-us stalls every connection (lesson 11); the GIL plays no
part. fds: RLIMIT_NOFILE as usual, plus one for the ring. Memory: the buffer pool (POOL_BYTES,
resident from the start) plus about 0.2 KiB of Python objects per connection.
What Python costs, measured at 16 x 1 KiB on the recording machine (server alone on one core,
the C load engine on the other; /proc/PID/stat's user and system time over the requests served):

    per request             kernel (system)   Python (user)   total
    c-epoll                 3.5-3.6 us        0.05 us         3.6 us
    c-uring                 3.55 us           0.05-0.15 us    3.6-3.7 us
    this server, before     3.7 us            1.55-1.8 us     5.2-5.5 us
    this server, now        3.55-3.7 us       1.3-1.4 us      4.8-5.1 us

The kernel's part is the same as C's; what keeps this server behind c-epoll (0.6-0.7 of its
rate at 16 x 1 KiB, 0.7 at 50, where c-epoll is that fast) is the interpreter's 1.3 us. Where it
goes, by the loop's own user-space time with the kernel taken out (io_uring_enter faked, the
CQEs written into the CQ by a script; at 16 connections the real loop reaps about 17 CQEs a
turn, 8 or 9 echoes): per turn about
2 us (submit's bookkeeping, reading the CQ tail, starting the struct iterator, handing the slots
back), plus 0.5 us for ctypes to convert io_uring_enter's 7 arguments, so 0.3 us per echo; per
echo about 1 us: two CQEs decoded (0.07 us each) and dispatched, the buffer's bookkeeping, one
SQE packed (0.15 us), the rest bytecode. The echo's common case is therefore handled in the loop
itself (see event_loop: 1.55 -> 1.25 us per echo by that script, from the method call per
CQE and the send's state kept in one tuple), and Ring.prep_send packs its SQE without the generic
sqe() in between (0.07 us less): 1.2 us per echo in all. Reaching 0.95 of C's rate would need
that 1.3 us near 0.2, less than the two CQEs and one SQE per message cost through CPython alone.
With --sqpoll (x86-64 only, see servers/uring/ring.py) a kernel thread polls the SQ and the server enters the kernel only to wait.
Where it runs: Linux 5.6 or newer (IORING_OP_RECV/SEND), and only where io_uring is allowed; the
default seccomp profile of Docker and kernel.io_uring_disabled (Linux 6.6+) refuse io_uring_setup.
`probe()` then tells the registry why, and the server is listed as unavailable.

Run it:  make serve SERVER=io_uring      then: nc 127.0.0.1 PORT
Watch:   strace -f -e trace=io_uring_enter,io_uring_setup -p PID   (one io_uring_enter per turn)
         ls -l /proc/PID/fd shows anon_inode:[io_uring]; cat /proc/PID/fdinfo/RINGFD shows the
         SQ and CQ heads and tails, and under PollList one parked request per idle connection
         (op=27 is a recv, op=13 the accept).
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from servers import uring
from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED,
    announce, burn_cpu, listen, log, parse_args, run,
)

# Slots in the submission queue. A turn needing more SQEs than this is submitted in parts. The
# CQ is made 8 times longer, since multishot requests can post many CQEs per turn; beyond that
# they wait in the kernel's overflow list (IORING_FEAT_NODROP), none is lost.
QUEUE_ENTRIES = 1024
CQ_ENTRIES = 8 * QUEUE_ENTRIES

# The provided-buffer pool: shared by all connections, a fixed cost whatever their number. With
# incremental consumption (6.12+) its buffers are large and filled a message after another; the
# kernel retires one once less than MIN_LEFT_BYTES is left in it (where it can), so that a
# message of up to that size lands in one piece. Without it, each completion takes a whole
# buffer, which must hold a 64 KiB message at once.
POOL_BYTES = 16 * 1024 * 1024
BUFFER_BYTES = {"incremental": 128 * 1024, "whole": 64 * 1024}
MIN_LEFT_BYTES = 64 * 1024
BUFFER_GROUP = 0
MAX_QUEUED_CHUNKS = 4  # received, waiting for the send before them: then stop receiving

# What a request was: the low 3 bits of its user_data; the fd is the rest.
ACCEPT, RECV, SEND, BACKOFF, CANCEL = range(5)
KIND_BITS = 3
KIND_MASK = (1 << KIND_BITS) - 1

F_MORE, F_BUFFER = uring.IORING_CQE_F_MORE, uring.IORING_CQE_F_BUFFER
BUFFER_SHIFT = uring.IORING_CQE_BUFFER_SHIFT
OPTIONAL = ("multishot-accept", "pbuf-ring", "pbuf-inc", "multishot-recv", "defer-taskrun",
            "registered-ring")


class Connection:
    """One client: its fd, the one send in flight, the pieces waiting behind it."""

    __slots__ = ("fd", "queue", "sending", "recv_armed", "cancelling", "peer_done", "broken",
                 "starved", "buffer", "buffer_addr")

    def __init__(self, fd: int, own_buffer: bool):
        self.fd = fd
        self.queue: list[tuple[int, int, int]] = []  # (buffer id, address, length) to send
        # The send SQE in flight, None if none: (the buffer it sends from, -1 for the
        # connection's own; address; length; the further buffers of a run of several pieces)
        self.sending: tuple[int, int, int, tuple[int, ...]] | None = None
        self.recv_armed = False  # a recv is in the kernel (a multishot one until no F_MORE)
        self.cancelling = False  # an ASYNC_CANCEL of that recv is on its way
        self.peer_done = False  # the client sent FIN: echo what is queued, then close
        self.broken = False  # reset or broken pipe: close once the kernel holds nothing of ours
        self.starved = False  # the pool was empty: armed again when buffers come back
        # Without a buffer ring: the connection's own buffer, pinned while its recv is pending.
        self.buffer = bytearray(CHUNK_BYTES) if own_buffer else None
        self.buffer_addr = uring.address_of(self.buffer) if own_buffer else 0


class Server:
    """The loop's state, named up front (one comment each)."""

    def __init__(self, listener: socket.socket, work_us: int, ring: uring.Ring,
                 features: dict[str, bool], buffer_bytes: int | None = None):
        self.listener = listener
        self.listen_fd = listener.fileno()
        self.work_us = work_us
        self.ring = ring  # the io_uring: its SQ and CQ, shared with the kernel
        self.multishot_accept = features["multishot_accept"]
        self.multishot_recv = features["multishot_recv"]
        self.pool = make_pool(ring, features, buffer_bytes)  # None: a buffer per connection
        # Hoisted for speed: called once per echoed message
        self.prep_send = ring.prep_send
        self.taken = self.pool.taken if self.pool else None
        self.released = self.pool.released if self.pool else None
        self.connections: dict[int, Connection] = {}  # fd -> state, every open client
        self.starved: list[Connection] = []  # waiting for the pool to have a buffer again
        self.accept_backoff = False  # out of fds: accept again only after a timer
        self.backoff_ts = uring.make_timespec(ACCEPT_BACKOFF_S)  # the kernel reads it
        self.backoff_ts_addr = uring.address_of(self.backoff_ts)
        self.recycled = 0  # buffers given back to the pool this turn

    # ------------------------------------------------------------------------------------------
    # Submitting: fill SQEs in the shared ring. Nothing reaches the kernel until io_uring_enter.

    def arm_accept(self) -> None:
        self.ring.prep_accept(self.listen_fd, self.listen_fd << KIND_BITS | ACCEPT,
                              multishot=self.multishot_accept)

    def arm_recv(self, conn: Connection) -> None:
        """Ask the kernel to receive on conn: into a pool buffer it picks when bytes arrive,
        or, without a pool, into the connection's own buffer (pinned until the CQE)."""
        user_data = conn.fd << KIND_BITS | RECV
        if self.pool is not None:
            self.ring.prep_recv_select(conn.fd, BUFFER_GROUP, user_data,
                                       multishot=self.multishot_recv)
        else:
            self.ring.prep_recv(conn.fd, conn.buffer_addr, CHUNK_BYTES, user_data)
        conn.recv_armed = True

    def send(self, conn: Connection, bid: int, addr: int, length: int, more=()) -> None:
        """Echo ``length`` bytes at ``addr`` straight from the buffer they arrived in (``bid``,
        and the further buffers ``more`` of a run that spans several pieces)."""
        conn.sending = (bid, addr, length, more)
        self.prep_send(conn.fd, addr, length, conn.fd << KIND_BITS | SEND)

    def send_queued(self, conn: Connection) -> None:
        """Echo the first waiting piece, and with it every piece right behind it in memory (an
        incremental buffer fills a message after another): one send per run of bytes."""
        bid, addr, length = conn.queue.pop(0)
        more = []
        while conn.queue and conn.queue[0][1] == addr + length:
            more.append(conn.queue[0][0])
            length += conn.queue.pop(0)[2]
        self.send(conn, bid, addr, length, tuple(more))

    def stop_receiving(self, conn: Connection) -> None:
        """Backpressure on a multishot recv: cancel it (its last CQE comes without F_MORE)."""
        if conn.recv_armed and not conn.cancelling:
            conn.cancelling = True
            self.ring.prep_cancel(conn.fd << KIND_BITS | RECV, conn.fd << KIND_BITS | CANCEL)

    def release(self, bid: int) -> None:
        """A piece of buffer ``bid`` is done with: the pool takes the buffer back once the
        kernel and every piece are done with it."""
        if bid >= 0 and self.pool.released(bid):
            self.recycled += 1

    # ------------------------------------------------------------------------------------------
    # Completing: what to do when the kernel reports an operation done.

    def accepted(self, res: int, flags: int) -> None:
        """An accept finished: res is the new connection's fd, or -errno."""
        if res >= 0:
            conn = self.connections[res] = Connection(res, own_buffer=self.pool is None)
            self.arm_recv(conn)
        elif -res in FD_EXHAUSTED:
            # The connection stays in the listen queue; accepting again at once would fail at
            # once, forever, and spin. Stop the accept and come back after a timer instead.
            log(f"accept: {os.strerror(-res)}; backing off", every_s=5)
            self.accept_backoff = True
            if flags & F_MORE:  # still armed: cancel it; its last CQE comes without F_MORE
                self.ring.prep_cancel(self.listen_fd << KIND_BITS | ACCEPT,
                                      self.listen_fd << KIND_BITS | CANCEL)
        elif -res not in ACCEPT_TRANSIENT and res != -errno.ECANCELED:
            raise OSError(-res, f"accept: {os.strerror(-res)}")
        if not flags & F_MORE:  # the accept is no longer armed: arm it, now or after a timer
            if self.accept_backoff:
                self.ring.prep_timeout(self.backoff_ts_addr, self.listen_fd << KIND_BITS | BACKOFF)
            else:
                self.arm_accept()

    def backoff_over(self) -> None:
        self.accept_backoff = False
        self.arm_accept()

    def received(self, conn: Connection, res: int, flags: int) -> None:
        """A recv CQE: res bytes are already in a buffer (0: the client sent FIN)."""
        if not flags & F_MORE:
            conn.recv_armed = conn.cancelling = False  # that recv is over
        if res <= 0:
            return self.nothing_received(conn, res, flags)
        if self.work_us:
            burn_cpu(self.work_us)
        if flags & F_BUFFER:  # a pool buffer: where in it (a part of it, if incremental)
            bid = flags >> BUFFER_SHIFT
            addr = self.taken(bid, res, flags)
        else:
            bid, addr = -1, conn.buffer_addr
        if not (conn.sending or conn.broken or conn.peer_done):
            self.send(conn, bid, addr, res)  # the common case: straight back out
            if conn.recv_armed:
                return  # nothing else changed
        elif conn.broken or conn.peer_done:
            self.release(bid)  # nobody to echo to any more
        else:
            conn.queue.append((bid, addr, res))  # behind the send in flight
            if len(conn.queue) >= MAX_QUEUED_CHUNKS:
                self.stop_receiving(conn)
        self.settle(conn)

    def nothing_received(self, conn: Connection, res: int, flags: int) -> None:
        """A recv CQE without data: end of stream, an empty pool, a cancel, or an error."""
        if flags & F_BUFFER and self.pool.kernel_done(flags >> BUFFER_SHIFT, flags):
            self.recycled += 1  # the kernel had taken a buffer: it is back
        if res == 0:
            conn.peer_done = True  # end of stream
        elif res == -errno.ENOBUFS:
            conn.starved = True  # the pool is empty: wait for buffers to come back
            self.starved.append(conn)
            log("provided buffer pool empty: a connection waits for a buffer", every_s=5)
        elif res != -errno.ECANCELED:
            self.dropped(conn, -res)
        self.settle(conn)

    def sent(self, conn: Connection, res: int) -> None:
        """A send CQE: res bytes went into the socket's send buffer (all, or an error)."""
        bid, addr, length, more = conn.sending
        conn.sending = None
        if res == length:
            if bid >= 0 and self.released(bid):
                self.recycled += 1
            for bid in more:  # a run of several pieces: release the others too
                self.release(bid)
            if not conn.broken:
                if conn.queue:
                    return self.send_queued(conn)
                if conn.recv_armed:
                    return  # the common case: all sent, the recv still armed: nothing to do
        elif res < 0:
            self.dropped(conn, -res)
        else:  # short (a signal, or a kernel without the retry): send the rest
            return self.send(conn, bid, addr + res, length - res, more)
        self.settle(conn)

    def dropped(self, conn: Connection, err: int) -> None:
        """Reset or broken pipe: that client's problem, not the server's."""
        if not conn.broken:
            log(f"connection dropped: {os.strerror(err)}", every_s=5)
        conn.broken = True
        for bid, _, _ in conn.queue:
            self.release(bid)
        conn.queue.clear()

    def settle(self, conn: Connection) -> None:
        """After any completion on conn: close it, receive again, or leave it as it is."""
        if conn.sending:
            return  # the next step comes with the send's CQE
        if conn.broken or (conn.peer_done and not conn.queue):
            if conn.recv_armed:
                self.stop_receiving(conn)  # its last CQE comes back here
            elif self.connections.get(conn.fd) is conn:
                # Nothing of conn is in the kernel now: its fd (its user_data) may be reused.
                del self.connections[conn.fd]
                os.close(conn.fd)
            return
        if conn.recv_armed or conn.starved or conn.peer_done:
            return
        # Receive again: with a pool, as long as few pieces wait (backpressure); with the
        # connection's own buffer, only once that buffer is free (no send in flight).
        if len(conn.queue) < MAX_QUEUED_CHUNKS:
            self.arm_recv(conn)

    def feed_starved(self) -> None:
        """Buffers came back to the pool: arm the connections that found it empty, as many as
        buffers came back (each may take one); the others wait for the next turn's buffers."""
        n = min(self.recycled, len(self.starved))
        woken, self.starved = self.starved[:n], self.starved[n:]
        for conn in woken:
            conn.starved = False
            if self.connections.get(conn.fd) is conn:  # not closed (and the fd not reused)
                self.settle(conn)

    # ------------------------------------------------------------------------------------------
    # The loop

    def event_loop(self) -> None:
        # Hoisted for speed: the loop body runs once per completion.
        ring, connections, pool = self.ring, self.connections, self.pool
        submit, cq_tail, cqes_until, cq_advance = (ring.submit, ring.cq_tail, ring.cqes_until,
                                                   ring.cq_advance)
        received, sent, prep_send = self.received, self.sent, self.prep_send
        # The echo's common case is handled here in the loop, not in received() and sent():
        # bytes arrived in a pool buffer, the multishot recv stays armed and nothing is in flight
        # on the connection: send them straight back; that send completed whole and nothing
        # waits behind it: give its piece back. Everything else goes through the methods.
        fast = pool is not None and not self.work_us
        taken, released = (pool.taken, pool.released) if pool else (None, None)
        self.arm_accept()
        while True:
            # One syscall: submit every SQE queued since the last one, sleep until a CQE is
            # ready. SIGINT/SIGTERM interrupt the sleep (EINTR); Python then runs the handler,
            # whose Shutdown exception ends the loop.
            submit(wait_for=1)
            # Reap every completion that is ready, straight from the shared CQ.
            self.recycled = 0
            tail = cq_tail()
            for user_data, res, flags in cqes_until(tail):
                kind = user_data & KIND_MASK
                if kind == RECV:
                    conn = connections[user_data >> KIND_BITS]
                    if (fast and res > 0 and flags & F_MORE and flags & F_BUFFER
                            and not (conn.sending or conn.broken or conn.peer_done)):
                        bid = flags >> BUFFER_SHIFT
                        addr = taken(bid, res, flags)
                        conn.sending = (bid, addr, res, ())
                        prep_send(conn.fd, addr, res, conn.fd << KIND_BITS | SEND)
                    else:
                        received(conn, res, flags)
                elif kind == SEND:
                    conn = connections[user_data >> KIND_BITS]
                    bid, _, length, more = conn.sending
                    if (res == length and bid >= 0 and conn.recv_armed
                            and not (more or conn.queue or conn.broken)):
                        conn.sending = None
                        if released(bid):
                            self.recycled += 1
                    else:
                        sent(conn, res)
                elif kind == ACCEPT:
                    self.accepted(res, flags)
                elif kind == BACKOFF:
                    self.backoff_over()
                # CANCEL: the cancelled request's own CQE carries what matters
            cq_advance(tail)  # give the CQ slots back to the kernel
            if self.recycled:
                pool.publish()  # the kernel may use the buffers given back this turn
                if self.starved:
                    self.feed_starved()


def make_pool(ring: uring.Ring, features: dict[str, bool],
              buffer_bytes: int | None = None) -> uring.BufferRing | None:
    """The provided-buffer ring this kernel allows: incremental (6.12+), else whole buffers
    (5.19+), else None (a buffer per connection)."""
    if not features["pbuf_ring"]:
        return None
    incremental = features["pbuf_inc"]
    size = buffer_bytes or BUFFER_BYTES["incremental" if incremental else "whole"]
    return uring.BufferRing(ring, BUFFER_GROUP, POOL_BYTES // size, size,
                            incremental=incremental,
                            min_left=MIN_LEFT_BYTES if features["pbuf_min_left"]
                            and size > MIN_LEFT_BYTES else 0)


def setup_ring(without: set[str], sqpoll: bool) -> tuple[uring.Ring, dict[str, bool]]:
    """The ring, and the optional features this kernel has, minus those turned off."""
    flags = None
    if "defer-taskrun" in without:
        flags = uring.IORING_SETUP_SUBMIT_ALL | uring.IORING_SETUP_COOP_TASKRUN
    # Probe on a throwaway ring, so that no late CQE of the probe's own requests can reach the
    # server's loop (their user_data would decode as one of ours).
    with uring.Ring(8) as probe_ring:
        features = uring.probe_features(probe_ring)
    for name in without:
        features[name.replace("-", "_")] = False
    if not features["pbuf_ring"]:  # a multishot recv, and incremental buffers, need a ring
        features["multishot_recv"] = features["pbuf_inc"] = False
    features["pbuf_min_left"] &= features["pbuf_inc"]
    ring = uring.Ring(QUEUE_ENTRIES, cq_entries=CQ_ENTRIES, sqpoll=sqpoll, flags=flags)
    if features["registered_ring"]:
        features["registered_ring"] = ring.register_ring_fd()
    return ring, features


def facts(ring: uring.Ring, pool: uring.BufferRing | None, features: dict[str, bool]) -> str:
    """What the readiness line says about the ring: which features this run uses."""
    if pool is None:
        buffers = f"a {CHUNK_BYTES // 1024}KiB buffer per connection"
    else:
        buffers = (f"provided buffers {pool.count}x{pool.size // 1024}KiB"
                   + (" incremental" if pool.incremental else "")
                   + (f" min-left {pool.min_left // 1024}KiB" if pool.min_left else ""))
    used = [
        "multishot accept" if features["multishot_accept"] else "single-shot accept",
        buffers,
        "multishot recv" if features["multishot_recv"] else "single-shot recv",
    ]
    if ring.setup_flags & uring.IORING_SETUP_DEFER_TASKRUN:
        used.append("defer-taskrun")
    if features["registered_ring"]:
        used.append("registered ring")
    if ring.sqpoll:
        used.append("sqpoll")
    return ", ".join(used)


def buffer_kib(text: str) -> int:
    """--buffer-kib: the pool's buffer count must be a power of two, so must the size."""
    import argparse
    try:
        kib = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if kib < 1 or kib > POOL_BYTES // 1024 or kib & (kib - 1):
        raise argparse.ArgumentTypeError(
            f"{kib} is not a power of two from 1 to {POOL_BYTES // 1024}: e.g. 16, 64, 128")
    return kib


def add_options(parser) -> None:
    parser.add_argument("--without", action="append", default=[], choices=OPTIONAL,
                        metavar="FEATURE",
                        help="do not use this io_uring feature even if the kernel has it (repeat "
                             f"for several): {', '.join(OPTIONAL)}; to see the fallbacks run")
    parser.add_argument("--buffer-kib", type=buffer_kib, metavar="N",
                        help="size of each provided buffer in KiB, a power of two from 1 to "
                             f"{POOL_BYTES // 1024} (default: {BUFFER_BYTES['incremental'] // 1024} "
                             f"with incremental buffers, else {BUFFER_BYTES['whole'] // 1024}); "
                             f"the pool stays {POOL_BYTES // 1024 // 1024} MiB")
    parser.add_argument("--sqpoll", action="store_true",
                        help="IORING_SETUP_SQPOLL: a kernel thread polls the SQ (x86-64 only; "
                             "it spins a core while busy)")


def serve(args) -> None:
    listener = listen(args)
    # Linux copies TCP_NODELAY from the listener into each socket accept() makes, so one
    # setsockopt here spares one per connection.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        ring, features = setup_ring(set(args.without), args.sqpoll)
    except uring.UringError as exc:
        sys.stderr.write(f"io_uring: {uring.setup_failure(exc.errno)}\n")
        sys.exit(1)
    except ValueError as exc:  # --sqpoll where it cannot be made safe
        sys.stderr.write(f"io_uring: {exc}; run without --sqpoll\n")
        sys.exit(2)
    server = None
    try:
        server = Server(listener, args.work_us, ring, features,
                        args.buffer_kib * 1024 if args.buffer_kib else None)
        announce(listener, facts(ring, server.pool, features))
        server.event_loop()
    finally:
        # Closing the ring cancels what is still in flight, so the kernel lets go of our buffers
        # and sockets; then the sockets are closed.
        ring.close()
        if server is not None:
            for fd in server.connections:
                os.close(fd)
        listener.close()


# ----------------------------------------------------------------------------------------------
# Can io_uring run here? (the registry's probe)


def probe() -> str | None:
    """None if this server can run here, else why not. Creates and tears down a small ring and
    checks the kernel knows the operations the server needs; leaves no fd open. Runs only the
    ring's own system calls (no native package), and the registry runs it in a subprocess."""
    if not sys.platform.startswith("linux"):
        return f"Linux-only (this is {sys.platform})"
    try:
        ring = uring.Ring(8)
    except uring.UringError as exc:
        return uring.setup_failure(exc.errno)
    with ring:
        try:
            ops = uring.supported_opcodes(ring)
        except uring.UringError:
            return "this kernel's io_uring is too old to list its operations (Linux 5.6+ needed)"
    needed = (uring.IORING_OP_ACCEPT, uring.IORING_OP_RECV, uring.IORING_OP_SEND,
              uring.IORING_OP_TIMEOUT, uring.IORING_OP_ASYNC_CANCEL)
    missing = [uring.OPCODE_NAMES[op] for op in needed if op not in ops]
    if missing:
        return f"this kernel's io_uring lacks {', '.join(missing)} (Linux 5.6+ needed)"
    return None


if __name__ == "__main__":
    run(serve, parse_args("io_uring", __doc__, extra=add_options))
