"""The ring: io_uring_setup, the shared mappings, submitting SQEs and reaping CQEs.

liburing's src/setup.c and src/queue.c in Python. The memory shared with the kernel (nothing is
copied to hand an entry over):

    SQ ring   head, tail, ring_mask, flags, array   we write the tail, the kernel the head
    SQEs      sq_entries x io_uring_sqe (64 bytes): opcode, fd, buffer address, length, user_data
    CQ ring   head, tail, ring_mask, cq_entries x io_uring_cqe (16 bytes): user_data, res, flags
              the kernel writes the tail, we the head

With IORING_FEAT_SINGLE_MMAP (Linux 5.4+) the SQ ring and the CQ ring are one mapping, otherwise
two; the SQEs are always their own. Each index is a free-running 32-bit counter; the slot is
``index & ring_mask``. A ring is empty when head == tail and full when tail - head == entries.
Where each field sits is the kernel's to say: io_uring_setup fills io_sqring_offsets and
io_cqring_offsets (abi.py), and the ring reads them by name.

Memory ordering: who may see which store when. The producer of a ring writes the entries, then
the tail; the consumer reads the tail, then the entries. liburing makes the tail store a release
(io_uring_smp_store_release) and the tail load an acquire (io_uring_smp_load_acquire). On x86-64
(TSO) every plain store is already a release and every plain load an acquire, so plain stores in
program order suffice. Entries are written with ``struct.pack_into`` (nobody reads a slot before
the tail that publishes it); every index (the SQ tail, the CQ head, a buffer ring's tail) is
stored and loaded through a ctypes scalar over the ring's memory (``_index``), one aligned move.
Not with struct: CPython's pack_into first zeroes the destination, then writes the value, so a
kernel thread on another CPU can read an index of 0 in between. An SQ tail of 0 reads as "4
billion entries ready" (tail - head wraps): the SQPOLL thread took every slot, stale ones
included, ran past the real tail and never stopped (seen on 6.18 within seconds of NOPs).
On arm64 plain stores may become visible to another CPU out of order, and Python cannot emit an
``stlr``/``ldar``. What keeps this module correct there anyway:
  - without SQPOLL the kernel reads the SQ inside io_uring_enter, on the CPU and in the thread
    that wrote it; a CPU sees its own stores in program order, and a migration to another CPU
    goes through the scheduler's full barriers. So the tail store needs no release.
  - CQEs: with IORING_SETUP_DEFER_TASKRUN (6.1+) the kernel posts completions only from our own
    thread, inside io_uring_enter(GETEVENTS); again one thread, program order. The lab reads the
    CQ only after an io_uring_enter in the same turn, never by polling it from user space.
  - Not guaranteed: on arm64 with a kernel older than 6.1, a CQE that another CPU posts in the
    instant between io_uring_enter returning and our load of the tail could be read before its
    contents are visible. Socket completions do not come that way (the kernel posts them as task
    work in our own thread); a file read that an io-wq worker completes can.
  - SQPOLL (a kernel thread on another CPU polls our tail, and posts CQEs we may read without
    entering the kernel) really needs the release store and the acquire load; ``Ring(sqpoll=
    True)`` is refused off x86-64 for that reason.
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import platform
import time

from servers.uring.abi import (
    CQE, CQE_SIZE, FEATURES, IORING_ENTER_GETEVENTS, IORING_ENTER_REGISTERED_RING,
    IORING_ENTER_SQ_WAIT, IORING_ENTER_SQ_WAKEUP, IORING_FEAT_SINGLE_MMAP, IORING_OFF_CQ_RING,
    IORING_OFF_SQ_RING, IORING_OFF_SQES, IORING_OP_SEND, IORING_REGISTER_RING_FDS,
    IORING_SETUP_COOP_TASKRUN, IORING_UNREGISTER_RING_FDS,
    IORING_SETUP_CQSIZE, IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER,
    IORING_SETUP_SQ_AFF, IORING_SETUP_SQPOLL, IORING_SETUP_SUBMIT_ALL, IORING_SQ_NEED_WAKEUP,
    SQ_ARRAY_ENTRY_SIZE, SQE, SQE_SIZE, SQE_ZERO_TAIL, SYS_IO_URING_ENTER, SYS_IO_URING_REGISTER,
    SYS_IO_URING_SETUP, io_uring_params, io_uring_rsrc_update,
)
from servers.uring.ops import SEND_FLAGS, Ops

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long)
_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_madvise = _libc.madvise
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_c_long = ctypes.c_long
_ENTER = ctypes.c_long(SYS_IO_URING_ENTER)  # built once: submit() runs once per loop turn

PROT_READ_WRITE = 0x1 | 0x2
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE = 0x01, 0x02, 0x20, 0x8000
MAP_FAILED = ctypes.c_void_p(-1).value
MADV_HUGEPAGE = 14
SQ_WAIT_S = 5.0  # how long a full SQ may wait for the SQPOLL thread before that is an error


class UringError(OSError):
    """io_uring_setup, enter or register failed: errno, and which call."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise UringError(err, f"{what}: {os.strerror(err)}")
    return ret


def _index(addr: int, ctype=ctypes.c_uint32):
    """A ring index the kernel reads or writes concurrently, as a ctypes scalar at its address:
    ``.value`` is one aligned load or store, never torn and never zeroed first."""
    return ctype.from_address(addr)


def map_memory(size: int, fd: int = -1, offset: int = 0, *,
               huge: bool = False) -> tuple[int, memoryview]:
    """mmap through libc: (address, a byte memoryview over it). A shared mapping of the ring's
    fd, or anonymous private memory (resident at once) for fd -1. Python's mmap module would dup
    the ring's fd for every mapping; and struct.pack_into writes through a memoryview about
    twice as fast as through a ctypes array. ``huge``: ask for transparent huge pages
    (MADV_HUGEPAGE, honoured where THP is "madvise" or "always"): 16 MiB of buffers in 8 TLB
    entries of 2 MiB instead of 4,096 of 4 KiB, for memory the kernel copies every message into."""
    if fd >= 0:
        flags = MAP_SHARED | MAP_POPULATE
    else:
        flags = MAP_PRIVATE | MAP_ANONYMOUS | (0 if huge else MAP_POPULATE)
    addr = _mmap(None, size, PROT_READ_WRITE, flags, fd, offset)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise UringError(err, f"mmap of {size} bytes: {os.strerror(err)}")
    if huge:  # before the first touch: the pages are then faulted in 2 MiB at a time
        _madvise(addr, size, MADV_HUGEPAGE)
        ctypes.memset(addr, 0, size)  # resident from the start, as MAP_POPULATE would make it
    return addr, memoryview((ctypes.c_char * size).from_address(addr)).cast("B")


def unmap_memory(addr: int, size: int, *views) -> None:
    """Let go of the memoryviews over a mapping (a slice held elsewhere keeps its own), then
    unmap it."""
    for view in views:
        if view is not None:
            try:
                view.release()
            except BufferError:
                pass
    _munmap(addr, size)


def setup(entries: int, params: io_uring_params, flags: int | None, sqpoll: bool) -> int:
    """io_uring_setup with the best flags this kernel accepts: the ring's fd, and ``params``
    filled in. An older kernel answers EINVAL to a flag it does not know, so the candidates go
    from the newest to none. DEFER_TASKRUN (6.1) runs completions only when we wait for them,
    in our thread; COOP_TASKRUN (5.19) at least spares an interrupt per completion; SQPOLL
    cannot have DEFER_TASKRUN. ``flags``: exactly these, no fallback."""
    base = params.flags
    if flags is not None:
        candidates = [base | flags]
    elif sqpoll:
        candidates = [base | IORING_SETUP_SUBMIT_ALL, base]
    else:
        candidates = [base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER
                      | IORING_SETUP_DEFER_TASKRUN,
                      base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN, base]
    for i, setup_flags in enumerate(candidates):
        params.flags = setup_flags
        ret = _syscall(_c_long(SYS_IO_URING_SETUP), ctypes.c_uint(entries), ctypes.byref(params))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINVAL or i == len(candidates) - 1:
            raise UringError(err, f"io_uring_setup: {os.strerror(err)}")
    raise AssertionError("unreachable")


class Ring(Ops):
    """One io_uring: the shared rings, the SQE writer, submit, and the CQE reader. (The
    io_uring_prep_* of liburing, one per operation, are in ops.py.)

    Writing an SQE only fills 64 bytes of shared memory; nothing reaches the kernel until
    ``submit()``: one io_uring_enter for every SQE written since the last one."""

    def __init__(self, entries: int = 256, *, cq_entries: int = 0, sqpoll: bool = False,
                 sq_thread_cpu: int | None = None, flags: int | None = None):
        self.fd, self._maps, self.buf_rings = -1, [], {}
        self._enter_flags = 0  # IORING_ENTER_REGISTERED_RING once the fd is registered
        if sqpoll and platform.machine() not in ("x86_64", "AMD64"):
            raise ValueError("SQPOLL needs a release store of the SQ tail that Python cannot "
                             f"make on {platform.machine()}; it is allowed on x86-64 only")
        params = io_uring_params(cq_entries=cq_entries, sq_thread_cpu=sq_thread_cpu or 0)
        params.flags = ((IORING_SETUP_CQSIZE if cq_entries else 0)
                        | (IORING_SETUP_SQPOLL if sqpoll else 0)
                        | (IORING_SETUP_SQ_AFF if sqpoll and sq_thread_cpu is not None else 0))
        self.fd = self._enter_fd = setup(entries, params, flags, sqpoll)
        self.sq_entries, self.cq_entries = params.sq_entries, params.cq_entries
        self.setup_flags, self.features = params.flags, params.features
        self.sqpoll = bool(self.setup_flags & IORING_SETUP_SQPOLL)
        self._defer_taskrun = bool(self.setup_flags & IORING_SETUP_DEFER_TASKRUN)
        try:
            self._map_rings(params)
        except BaseException:
            self.close()
            raise
        # hoisted: the hot path writes one SQE per echo
        self._pack_sqe, self._pack_head = SQE.pack_into, SQE_ZERO_TAIL.pack_into
        self._pending = 0  # SQEs written but not yet taken by the kernel
        self.enters = 0  # io_uring_enter calls made (lesson 09 counts them)

    def _map_rings(self, params: io_uring_params) -> None:
        sq_off, cq_off = params.sq_off, params.cq_off
        sq_size = sq_off.array + self.sq_entries * SQ_ARRAY_ENTRY_SIZE
        cq_size = cq_off.cqes + self.cq_entries * CQE_SIZE
        if self.features & IORING_FEAT_SINGLE_MMAP:
            sq_size = cq_size = max(sq_size, cq_size)
        sq_addr, self.sq = map_memory(sq_size, self.fd, IORING_OFF_SQ_RING)
        self._maps.append((sq_addr, sq_size, self.sq))
        if self.features & IORING_FEAT_SINGLE_MMAP:
            cq_addr, self.cq = sq_addr, self.sq  # one mapping holds both rings
        else:
            cq_addr, self.cq = map_memory(cq_size, self.fd, IORING_OFF_CQ_RING)
            self._maps.append((cq_addr, cq_size, self.cq))
        sqes_size = self.sq_entries * SQE_SIZE
        sqes_addr, self.sqes = map_memory(sqes_size, self.fd, IORING_OFF_SQES)
        self._maps.append((sqes_addr, sqes_size, self.sqes))
        self.mmaps = len(self._maps)  # 2 with SINGLE_MMAP, else 3
        self._k_sq_head, self._k_sq_tail = _index(sq_addr + sq_off.head), _index(sq_addr + sq_off.tail)
        self._k_sq_flags = _index(sq_addr + sq_off.flags)
        self.sq_mask = _index(sq_addr + sq_off.ring_mask).value
        self._k_cq_head, self._k_cq_tail = _index(cq_addr + cq_off.head), _index(cq_addr + cq_off.tail)
        self.cq_mask = _index(cq_addr + cq_off.ring_mask).value
        self._cqes = cq_off.cqes  # where the CQE array starts in self.cq
        # The SQ ring's array maps ring slots to SQE indices. Like liburing, map slot i to SQE i
        # once, for good: then the SQE for tail t is simply sqes[t & mask].
        array = (ctypes.c_uint32 * self.sq_entries).from_address(sq_addr + sq_off.array)
        array[:] = range(self.sq_entries)
        self.sq_tail = self._k_sq_tail.value  # our copy; the ring's is published by submit()
        self.cq_head = self._k_cq_head.value

    # -- submitting ----------------------------------------------------------------------------

    def sqe(self, opcode: int, fd: int = -1, addr: int = 0, length: int = 0, off: int = 0,
            op_flags: int = 0, user_data: int = 0, flags: int = 0, ioprio: int = 0,
            buf_index: int = 0) -> None:
        """Write one SQE (abi.io_uring_sqe) into the next free slot. If the SQ is full, submit
        the batch first."""
        pending = self._pending
        if pending >= self.sq_entries:
            self._make_room()
            pending = self._pending
        tail = self.sq_tail
        if buf_index:
            self._pack_sqe(self.sqes, (tail & self.sq_mask) * SQE_SIZE, opcode, flags, ioprio,
                           fd, off, addr, length, op_flags, user_data, buf_index, 0, 0, 0, 0)
        else:  # the same 64 bytes from 9 arguments: about 60 ns less per SQE
            self._pack_head(self.sqes, (tail & self.sq_mask) * SQE_SIZE, opcode, flags, ioprio,
                            fd, off, addr, length, op_flags, user_data)
        self.sq_tail = (tail + 1) & 0xFFFFFFFF
        self._pending = pending + 1

    def prep_send(self, fd: int, addr: int, length: int, user_data: int, flags: int = 0) -> None:
        """Ops.prep_send written out, without sqe() between: the one SQE of every echoed
        message (about 0.1 us less per message than through sqe's ten arguments)."""
        if self._pending >= self.sq_entries:
            self._make_room()
        tail = self.sq_tail
        self._pack_head(self.sqes, (tail & self.sq_mask) * SQE_SIZE, IORING_OP_SEND, flags, 0,
                        fd, 0, addr, length, SEND_FLAGS, user_data)
        self.sq_tail = (tail + 1) & 0xFFFFFFFF
        self._pending += 1

    def submit(self, wait_for: int = 0) -> int:
        """One io_uring_enter: publish the tail (every SQE written since the last call), and with
        wait_for > 0 sleep until that many CQEs are ready. Returns how many SQEs were taken.
        EINTR (a signal) returns 0 after Python has run the handler (which may raise)."""
        self._k_sq_tail.value = self.sq_tail  # one plain store: see the module docstring
        to_submit = self._pending
        enter_flags = self._enter_flags | (
            IORING_ENTER_GETEVENTS if wait_for or self._defer_taskrun else 0)
        if self.sqpoll:
            # The kernel thread picks the SQEs up by itself; a syscall is needed only to wake it
            # if it went to sleep, or to wait for completions.
            self._pending = self._sq_unconsumed()
            if self._k_sq_flags.value & IORING_SQ_NEED_WAKEUP:
                enter_flags |= IORING_ENTER_SQ_WAKEUP
            elif not wait_for or self.cq_ready():
                return to_submit
            to_submit = 0
        self.enters += 1
        ret = _syscall(_ENTER, self._enter_fd, to_submit, wait_for, enter_flags, None, 0)
        if ret < 0:
            err = ctypes.get_errno()
            if err in (errno.EINTR, errno.EBUSY):  # a signal; or (before 5.19) the CQ is full:
                return 0  # reap, then enter again
            raise UringError(err, f"io_uring_enter: {os.strerror(err)}")
        if not self.sqpoll:
            self._pending = to_submit - ret  # what the kernel did not take stays in the SQ
        return ret

    def _make_room(self) -> None:
        """The SQ is full: hand the batch to the kernel now (with SQPOLL: wait for the poller)."""
        self.submit()
        deadline = time.monotonic() + SQ_WAIT_S
        while self.sqpoll and self._pending >= self.sq_entries:
            if time.monotonic() > deadline:
                raise UringError(errno.ETIMEDOUT, f"the SQPOLL thread took no SQE in {SQ_WAIT_S} s")
            _syscall(_c_long(SYS_IO_URING_ENTER), self._enter_fd, 0, 0,
                     self._enter_flags | IORING_ENTER_SQ_WAIT, None, 0)
            self._pending = self._sq_unconsumed()

    def _sq_unconsumed(self) -> int:
        """SQEs published that the SQPOLL thread has not taken yet. More than the ring holds
        means its head ran past our tail (it read a tail we never wrote): stop, rather than let
        it go on taking stale slots."""
        pending = (self.sq_tail - self._k_sq_head.value) & 0xFFFFFFFF
        if pending > self.sq_entries:
            raise UringError(errno.EIO, f"the SQPOLL thread's head {self.sq_head()} passed the "
                             f"SQ tail {self.sq_tail}")
        return pending

    def sq_head(self) -> int:
        """How far the kernel has consumed the SQ (it writes the head)."""
        return self._k_sq_head.value

    # -- reaping -------------------------------------------------------------------------------

    def cq_tail(self) -> int:
        """How far the kernel has filled the CQ (it writes the tail)."""
        return self._k_cq_tail.value

    def cq_ready(self) -> int:
        return (self.cq_tail() - self.cq_head) & 0xFFFFFFFF

    def completions(self) -> list[tuple[int, int, int]]:
        """Every CQE ready now, read straight from the shared ring, and the slots handed back."""
        tail = self.cq_tail()
        out = list(self.cqes_until(tail))
        self.cq_advance(tail)
        return out

    def cqes_until(self, tail: int):
        """(user_data, res, flags) of each CQE from our head up to ``tail``, decoded by one
        struct.iter_unpack over the ring's memory (two, where the range wraps around the end).
        The kernel never writes a slot between head and tail: those are ours until cq_advance."""
        head, mask = self.cq_head, self.cq_mask
        count = (tail - head) & 0xFFFFFFFF
        start = head & mask
        first = min(count, mask + 1 - start)
        base, cq = self._cqes, self.cq
        cqes = CQE.iter_unpack(cq[base + start * CQE_SIZE:base + (start + first) * CQE_SIZE])
        if count > first:  # the range wraps: the rest starts at slot 0
            cqes = itertools.chain(cqes, CQE.iter_unpack(cq[base:base + (count - first) * CQE_SIZE]))
        return cqes

    def cq_advance(self, head: int) -> None:
        """Tell the kernel the CQEs up to ``head`` are read: their slots may be reused."""
        self.cq_head = head & 0xFFFFFFFF
        self._k_cq_head.value = self.cq_head

    # -- registering, closing ------------------------------------------------------------------

    def register(self, opcode: int, arg, nr_args: int) -> int:
        ret = _syscall(_c_long(SYS_IO_URING_REGISTER), self.fd, opcode, arg, nr_args)
        return _check(ret, f"io_uring_register({opcode})")

    def register_ring_fd(self) -> bool:
        """IORING_REGISTER_RING_FDS (5.18+): enter by an index into the task's registered rings,
        so that each io_uring_enter skips looking the fd up (fdget/fdput). False if refused."""
        update = io_uring_rsrc_update(offset=0xFFFFFFFF, data=self.fd)  # any free index
        try:
            self.register(IORING_REGISTER_RING_FDS, ctypes.byref(update), 1)
        except UringError:
            return False
        self._enter_fd, self._enter_flags = update.offset, IORING_ENTER_REGISTERED_RING
        return True

    def close(self) -> None:
        """Close the ring's fd (the kernel cancels what is still in flight and lets go of every
        buffer it was told about), then unmap everything."""
        buf_rings = list(self.buf_rings.values())
        for buf_ring in buf_rings:
            buf_ring.unregister()
        if self._enter_flags & IORING_ENTER_REGISTERED_RING:
            # the registration holds the ring open: without this, close(fd) would free nothing
            update = io_uring_rsrc_update(offset=self._enter_fd)
            self.register(IORING_UNREGISTER_RING_FDS, ctypes.byref(update), 1)
            self._enter_fd, self._enter_flags = self.fd, 0
        if self.fd >= 0:
            os.close(self.fd)  # first: no request may write into a buffer after it is unmapped
            self.fd = -1
        for buf_ring in buf_rings:
            buf_ring.close()
        for addr, size, view in self._maps:
            unmap_memory(addr, size, view)
        self._maps.clear()
        self.sq = self.cq = self.sqes = None
        # the index scalars point into the unmapped memory: drop them, so a use after close
        # fails with an AttributeError instead of a segfault
        self._k_sq_head = self._k_sq_tail = self._k_sq_flags = None
        self._k_cq_head = self._k_cq_tail = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def feature_names(self) -> list[str]:
        return [name for name, bit in FEATURES.items() if self.features & bit]
