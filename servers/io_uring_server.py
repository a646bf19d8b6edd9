"""io_uring: completion-based I/O, one thread and one ring (lesson 09, asynchronous I/O).

Readiness vs completion. epoll (lesson 08) tells the server which sockets it *may* read now; the
server then makes each recv() itself, one syscall per socket, and copies the bytes out. io_uring
turns this around: the server says up front "receive into this buffer", and later the kernel
says "done: n bytes are in your buffer". The server no longer does the I/O; it collects results.

The ring. io_uring_setup() creates two ring buffers in memory that the process and the kernel
share (mmap: nothing is copied to hand them over). The server writes requests into the submission
queue (SQ): each entry (SQE) holds an opcode (accept, recv, send, timeout...), an fd, a buffer
address and length, and 64 bits of user_data of the server's choosing. The kernel writes results
into the completion queue (CQ): each entry (CQE) holds that user_data and res, what the syscall
would have returned (bytes moved, a new fd, or -errno). One io_uring_enter() hands the kernel
every SQE queued since the last call and sleeps until at least one CQE is ready; the CQEs are then
read straight from memory, without a syscall each. Many operations per syscall, where an epoll
server makes epoll_wait plus one accept/recv/send per event.

This server keeps one accept SQE on the listener (submitted again after each completion; Linux
5.19+ also has a multishot accept, one SQE for many CQEs) and exactly one operation per
connection: a recv into that connection's buffer; when it completes with n bytes, a send of those
n bytes; when the send completes, the next recv. user_data is a key into `in_flight`, which says
what the operation was and holds its connection, and so its buffer: the kernel writes into that
memory until the CQE arrives, so it must stay alive (and unmoved) until then. Running out of fds
makes the accept complete with -EMFILE; a timeout SQE then brings the accept back a little later.

What a connection does while it waits: nothing runs for it, no thread, no stack. It is a request
held by the kernel (for a socket the kernel itself waits for readiness, with an internal poll,
then does the recv) and an entry in `in_flight`. Backpressure: the next recv is submitted only
once the send of the previous chunk has completed, so a client that never reads costs at most one
chunk (CHUNK_BYTES) of pending output; what it keeps sending piles up in the kernel's socket
buffers, then TCP flow control stops it.

Syscalls: io_uring_setup once, then one io_uring_enter per batch of operations; per connection
also setsockopt (TCP_NODELAY), getsockname (Python checking the fd it wraps) and close. No accept4,
recvfrom, sendto or epoll_wait: strace shows the difference.
Limits: one thread on one core: --work-us stalls every connection (lesson 11); the GIL plays no
part. Memory: a pending recv pins its connection's 64 KiB buffer even while the client is silent
(10,000 idle clients: 640 MiB); C servers avoid this with provided buffer rings, from which the
kernel picks a buffer only when data arrives. fds: RLIMIT_NOFILE as usual, plus one for the ring.
What Python costs: every SQE prepared and every CQE read is a call through the liburing binding
(Python to Zig to C) that creates Python objects, and the binding takes only whole bytes or
bytearray objects, so each echo copies the received bytes once. A C server does neither, and with
IORING_SETUP_SQPOLL (a kernel thread polling the SQ) need not enter the kernel at all.
Where it runs: Linux 5.6 or newer (IORING_OP_RECV/SEND), and only where io_uring is allowed; the
default seccomp profile of Docker and kernel.io_uring_disabled (Linux 6.6+) refuse io_uring_setup.
`probe()` then tells the registry why, and the server is listed as unavailable.

Run it:  make serve SERVER=io_uring      then: nc 127.0.0.1 PORT
Watch:   strace -f -e trace=io_uring_enter,io_uring_setup -p PID   (one io_uring_enter per batch)
         ls -l /proc/PID/fd shows anon_inode:[io_uring]; cat /proc/PID/fdinfo/RINGFD shows the
         SQ and CQ heads and tails, and under PollList one parked request per idle connection
         (op=27 is a recv, op=13 the accept).
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import sys

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

try:
    import liburing as uring
except ImportError:  # the registry lists the server as unavailable; probe() says why
    uring = None

# Slots in the submission queue (the kernel makes the completion queue twice as long). A batch
# needing more SQEs than this is submitted in parts; completions beyond the CQ's length wait in
# the kernel's overflow list (IORING_FEAT_NODROP), none is lost.
QUEUE_ENTRIES = 256

# What an operation in flight is: in_flight[user_data] = (kind, owner).
ACCEPT, RECV, SEND, BACKOFF = "accept", "recv", "send", "backoff"


class Connection:
    """One client: its socket, and the one buffer the kernel receives into and we echo from."""

    __slots__ = ("sock", "fd", "buffer", "output")

    def __init__(self, sock: socket.socket):
        self.sock = sock  # the one Python object that owns (and will close) the fd
        self.fd = sock.fileno()
        self.buffer = bytearray(CHUNK_BYTES)  # the kernel writes here while a recv is in flight
        self.output = bytearray()  # received, not yet sent: at most one chunk (the backpressure)
        # The binding hands the kernel these buffers' raw addresses and keeps no hold on them:
        # resizing or freeing one while its operation is in flight would let the kernel write
        # into freed memory. So each is changed only once its CQE has arrived.


ring = None  # the io_uring: its SQ and CQ, shared with the kernel
in_flight: dict[int, tuple[str, object]] = {}  # user_data -> (kind, Connection or listener)
connections: set[Connection] = set()  # open connections, so shutdown can close them all
new_key = itertools.count(1).__next__  # user_data for the next SQE
BACKOFF_TS = None  # the timeout before retrying accept at EMFILE (made once liburing is loaded)


# ----------------------------------------------------------------------------------------------
# Submitting: fill an SQE in the shared ring. Nothing reaches the kernel until io_uring_enter.


def get_sqe():
    """A free slot in the submission queue; if none is left, hand the kernel the full batch now."""
    sqe = uring.io_uring_get_sqe(ring)
    if sqe is None:
        uring.io_uring_submit(ring)
        sqe = uring.io_uring_get_sqe(ring)
    return sqe


def track(sqe, kind: str, owner) -> None:
    """Tag the SQE with a key; the CQE brings the key back. Holding the owner here keeps its
    buffer alive for as long as the kernel may write into it."""
    key = new_key()
    in_flight[key] = (kind, owner)
    sqe.user_data = key


def submit_accept(listener: socket.socket) -> None:
    sqe = get_sqe()
    uring.io_uring_prep_accept(sqe, listener.fileno(), None, socket.SOCK_CLOEXEC)
    track(sqe, ACCEPT, listener)


def submit_recv(conn: Connection) -> None:
    sqe = get_sqe()
    uring.io_uring_prep_recv(sqe, conn.fd, conn.buffer)  # the kernel fills conn.buffer
    track(sqe, RECV, conn)


def submit_send(conn: Connection) -> None:
    sqe = get_sqe()
    uring.io_uring_prep_send(sqe, conn.fd, conn.output)  # the kernel reads conn.output
    track(sqe, SEND, conn)


def submit_backoff(listener: socket.socket) -> None:
    """A timer in the ring: its CQE (res -ETIME) arrives after ACCEPT_BACKOFF_S."""
    sqe = get_sqe()
    uring.io_uring_prep_timeout(sqe, BACKOFF_TS, 0)
    track(sqe, BACKOFF, listener)


# ----------------------------------------------------------------------------------------------
# Completing: what to do when the kernel reports an operation done.


def accepted(listener: socket.socket, res: int) -> None:
    """The accept finished: res is the new connection's fd, or -errno."""
    if res >= 0:
        # The kernel made the socket; give its fd to one Python socket object, which owns it and
        # closes it. (Naming family, type and proto spares two getsockopt calls to find them out;
        # Python still checks the fd with one getsockname.)
        sock = socket.socket(listener.family, listener.type, listener.proto, fileno=res)
        set_nodelay(sock)
        conn = Connection(sock)
        connections.add(conn)
        submit_recv(conn)
    elif -res in FD_EXHAUSTED:
        # The connection stays in the listen queue; re-submitting the accept at once would fail
        # at once, forever, and spin. Come back after a timer instead.
        log(f"accept: {os.strerror(-res)}; backing off", every_s=5)
        submit_backoff(listener)
        return
    elif -res not in ACCEPT_TRANSIENT:
        raise OSError(-res, f"accept: {os.strerror(-res)}")
    submit_accept(listener)  # one accept is always in flight


def received(conn: Connection, res: int, work_us: int) -> None:
    """The recv finished: res bytes are already in conn.buffer (0: the client sent FIN)."""
    if res > 0:
        burn_cpu(work_us)
        conn.output = conn.buffer[:res]  # a copy: the binding cannot send a slice in place
        submit_send(conn)
    elif res == 0:
        close(conn)  # end of stream; we recv only when idle, so everything has been echoed
    else:
        dropped(conn, -res)


def sent(conn: Connection, res: int) -> None:
    """The send finished: res bytes went into the socket's send buffer."""
    if res < 0:
        dropped(conn, -res)
        return
    del conn.output[:res]
    if conn.output:
        submit_send(conn)  # a short send: the rest, before anything new is read
    else:
        submit_recv(conn)  # caught up: now, and only now, read the next chunk


def dropped(conn: Connection, err: int) -> None:
    """Reset or broken pipe: that client's problem, not the server's."""
    log(f"connection dropped: {os.strerror(err)}", every_s=5)
    close(conn)


def close(conn: Connection) -> None:
    # Only called from this connection's own completion, so the kernel holds nothing of it now.
    connections.discard(conn)
    conn.sock.close()


def result(cqe) -> int:
    """cqe.res as the kernel wrote it: >= 0 a count or an fd, < 0 -errno. (The binding raises
    OSError for a negative res; the loop wants the number, as a C program sees it.)"""
    try:
        return cqe.res
    except OSError as exc:
        return -exc.errno


# ----------------------------------------------------------------------------------------------
# The loop


def event_loop(listener: socket.socket, work_us: int) -> None:
    cqe = uring.Cqe()
    submit_accept(listener)
    while True:
        # One syscall: submit every SQE queued since the last one, sleep until a CQE is ready.
        # SIGINT/SIGTERM interrupt the sleep (EINTR); the binding then runs the Python handler,
        # whose Shutdown exception ends the loop.
        try:
            uring.io_uring_submit_and_wait(ring, 1)
        except InterruptedError:  # EINTR with nothing to raise: retry, as PEP 475 would
            continue
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # EBUSY: the CQ overflowed; reap it, then wait again
                raise
        # Reap every completion that is ready, straight from the shared CQ: no syscall each.
        reaped = 0
        for _ in uring.CqeIter(ring, cqe):
            reaped += 1
            entry = cqe[0]
            kind, owner = in_flight.pop(entry.user_data)
            res = result(entry)
            if kind == RECV:
                received(owner, res, work_us)
            elif kind == SEND:
                sent(owner, res)
            elif kind == ACCEPT:
                accepted(owner, res)
            else:  # BACKOFF: the timer ran out, try accepting again
                submit_accept(owner)
        uring.io_uring_cq_advance(ring, reaped)  # give the CQ slots back to the kernel


def serve(args) -> None:
    global ring, BACKOFF_TS
    listener = listen(args)
    if uring is None:
        sys.stderr.write(f"io_uring: {probe()}\n")
        sys.exit(1)
    ring = uring.Ring()
    try:
        uring.io_uring_queue_init(QUEUE_ENTRIES, ring)  # io_uring_setup + mmap of SQ and CQ
    except OSError as exc:
        sys.stderr.write(f"io_uring: {setup_failure(exc)}\n")
        sys.exit(1)
    BACKOFF_TS = uring.timespec(ACCEPT_BACKOFF_S)
    announce(listener, f"ring of {QUEUE_ENTRIES} SQEs")
    try:
        event_loop(listener, args.work_us)
    finally:
        # Closing the ring cancels what is still in flight, so the kernel lets go of our buffers
        # and sockets; then the sockets are closed.
        uring.io_uring_queue_exit(ring)
        in_flight.clear()
        for conn in connections:
            conn.sock.close()
        connections.clear()
        listener.close()


# ----------------------------------------------------------------------------------------------
# Can io_uring run here? (the registry's probe)

SETUP_HINTS = {
    errno.EPERM: "seccomp in this container, or sysctl kernel.io_uring_disabled?",
    errno.ENOSYS: "this kernel has no io_uring: older than 5.1, or built without it",
    errno.ENOMEM: "RLIMIT_MEMLOCK too low for the ring on kernels before 5.12: see ulimit -l",
}


def setup_failure(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno, str(exc.errno))
    return f"io_uring_setup failed: {name} ({SETUP_HINTS.get(exc.errno, exc.strerror)})"


def probe() -> str | None:
    """None if this server can run here, else why not. Creates and tears down a ring of the size
    the server uses and checks the kernel knows the operations it needs: cheap, and leaves no fd
    open (the registry calls it whenever it lists the servers)."""
    if not sys.platform.startswith("linux"):
        return f"Linux-only (this is {sys.platform})"
    if uring is None:
        return "liburing package not installed (pip install liburing)"
    test_ring = uring.Ring()
    try:
        uring.io_uring_queue_init(QUEUE_ENTRIES, test_ring)
    except OSError as exc:
        return setup_failure(exc)
    try:
        ops = uring.io_uring_get_probe_ring(test_ring)
        if ops is None:
            return "this kernel's io_uring is too old to list its operations (Linux 5.6+ needed)"
        needed = (uring.io_uring_op.IORING_OP_ACCEPT, uring.io_uring_op.IORING_OP_RECV,
                  uring.io_uring_op.IORING_OP_SEND, uring.io_uring_op.IORING_OP_TIMEOUT)
        missing = [op.name for op in needed if not uring.io_uring_opcode_supported(ops, op)]
        uring.io_uring_free_probe(ops)
    finally:
        uring.io_uring_queue_exit(test_ring)
    if missing:
        return f"this kernel's io_uring lacks {', '.join(missing)} (Linux 5.6+ needed)"
    return None


if __name__ == "__main__":
    run(serve, parse_args("io_uring", __doc__))
