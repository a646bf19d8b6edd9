"""The lab's own io_uring: a ring over the raw system calls, in plain Python (lesson 09).

No binding, no C: three system calls through libc's generic ``syscall()`` (ctypes), three shared
memory mappings, and ``struct`` to read and write the entries at the offsets the kernel gives us.
Everything here follows the kernel's include/uapi/linux/io_uring.h and what liburing does in
src/setup.c (mapping), src/queue.c (submitting, reaping) and src/register.c (probe, buffer rings).

The three system calls, the same numbers on x86-64, arm64 and every other architecture that uses
the generic table (include/uapi/asm-generic/unistd.h; alpha and mips are the exceptions):

    io_uring_setup(entries, &params)              425: make a ring, fill params with its layout
    io_uring_enter(fd, to_submit, min_complete,   426: hand the kernel the new SQEs and, with
                   flags, sigset, sigset_size)         GETEVENTS, sleep until min_complete CQEs
    io_uring_register(fd, opcode, arg, nr_args)   427: probe opcodes, register buffer rings...

The memory, shared with the kernel (nothing is copied to hand an entry over):

    SQ ring   head, tail, mask, flags, and an array of SQE indices   the process writes the tail
    SQEs      sq_entries x 64 bytes: what to do (opcode, fd, buffer address, length, user_data)
    CQ ring   head, tail, mask, and cq_entries x 16 bytes of CQEs    the kernel writes the tail
              (user_data, res, flags)

With IORING_FEAT_SINGLE_MMAP (Linux 5.4+) the SQ ring and the CQ ring are one mapping, otherwise
two; the SQE array is always its own. Each index is a free-running 32-bit counter; the slot is
``index & mask``. The ring is empty when head == tail and full when tail - head == entries.

Memory ordering: who may see which store when. The producer of a ring writes the entries, then
the tail; the consumer reads the tail, then the entries. liburing makes the tail store a release
(io_uring_smp_store_release) and the tail load an acquire (io_uring_smp_load_acquire), so the
entries are visible before the index that publishes them. On x86-64 (TSO) every plain store is
already a release and every plain load an acquire: stores are not reordered with older stores,
loads not with older loads, so plain stores in program order suffice. Entries are written with
``struct.pack_into`` (nobody reads a slot before the tail that publishes it); every index (the
SQ tail, the CQ head, a buffer ring's tail) is stored and loaded through a ctypes scalar over
the ring's memory, one aligned 4-byte (2-byte) move. Not with struct: CPython's pack_into first
zeroes the destination, then writes the value (s_pack_internal's memset), so a kernel thread on
another CPU can read an index of 0 in between. An SQ tail of 0 reads as "4 billion entries
ready" (tail - head wraps): the SQPOLL thread took every slot, stale ones included, ran past
the real tail and never stopped. (Seen on 6.18 within seconds of NOPs, before this was fixed.)
On arm64 plain stores may become visible to another CPU out of order, and Python cannot emit an
``stlr``/``ldar``. What keeps this module correct there anyway:
  - without SQPOLL the kernel reads the SQ inside io_uring_enter, on the CPU and in the thread
    that wrote it; a CPU always sees its own stores in program order, and a migration to another
    CPU goes through the scheduler's full barriers. So the tail store needs no release.
  - CQEs: with IORING_SETUP_DEFER_TASKRUN (6.1+) the kernel posts completions only from our own
    thread, inside io_uring_enter(GETEVENTS); again one thread, program order. This module reads
    the CQ only after an io_uring_enter in the same turn, never by polling it from user space.
  - What is not guaranteed: on arm64 with a kernel older than 6.1 (no DEFER_TASKRUN), a CQE that
    another CPU posts in the instant between io_uring_enter returning and our load of the tail
    could be read before its contents are visible. Socket completions do not come that way (the
    kernel posts them as task work in our own thread, inside io_uring_enter); a file read that
    an io-wq worker thread completes can. The lab's server uses sockets only.
  - SQPOLL (a kernel thread on another CPU polls our tail, and posts CQEs we may read without
    entering the kernel) is the one case that really needs the release store and the acquire
    load; ``Ring(sqpoll=True)`` is refused off x86-64 for that reason. On x86-64 (TSO) polling
    the CQ tail with plain loads is what liburing's acquire compiles to anyway.

Run it:  python -m servers.uring      prints what this kernel's io_uring offers (the feature flags,
         the opcodes the lab uses, multishot accept and recv, provided buffer rings).
"""

from __future__ import annotations

import ctypes
import errno
import itertools
import os
import platform
import socket
import struct
import time

# -- the system calls ---------------------------------------------------------------------------

SYS_IO_URING_SETUP, SYS_IO_URING_ENTER, SYS_IO_URING_REGISTER = 425, 426, 427

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                  ctypes.c_long)
_munmap = _libc.munmap
_munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_setsockopt = _libc.setsockopt
_setsockopt.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_uint)
_c_long, _c_void_p = ctypes.c_long, ctypes.c_void_p

PROT_READ_WRITE = 0x1 | 0x2
MAP_SHARED, MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE = 0x01, 0x02, 0x20, 0x8000
MAP_FAILED = ctypes.c_void_p(-1).value

# mmap offsets that select which part of the ring a mapping of the ring's fd shows
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000

# -- constants from include/uapi/linux/io_uring.h (the ones this lab uses) ----------------------

# setup flags (io_uring_params.flags)
IORING_SETUP_SQPOLL = 1 << 1  # a kernel thread polls the SQ: submitting needs no syscall
IORING_SETUP_SQ_AFF = 1 << 2  # the SQPOLL thread runs on sq_thread_cpu
IORING_SETUP_CQSIZE = 1 << 3  # cq_entries is ours, not 2 x sq_entries
IORING_SETUP_SUBMIT_ALL = 1 << 7  # 5.18: keep submitting the batch after one SQE fails
IORING_SETUP_COOP_TASKRUN = 1 << 8  # 5.19: no IPI to run completions; they run at the next enter
IORING_SETUP_SINGLE_ISSUER = 1 << 12  # 6.0: only one thread submits
IORING_SETUP_DEFER_TASKRUN = 1 << 13  # 6.1: completions run only in io_uring_enter(GETEVENTS)

# features the kernel reports back (io_uring_params.features)
FEATURES = {
    "SINGLE_MMAP": 1 << 0, "NODROP": 1 << 1, "SUBMIT_STABLE": 1 << 2, "RW_CUR_POS": 1 << 3,
    "CUR_PERSONALITY": 1 << 4, "FAST_POLL": 1 << 5, "POLL_32BITS": 1 << 6,
    "SQPOLL_NONFIXED": 1 << 7, "EXT_ARG": 1 << 8, "NATIVE_WORKERS": 1 << 9,
    "RSRC_TAGS": 1 << 10, "CQE_SKIP": 1 << 11, "LINKED_FILE": 1 << 12, "REG_REG_RING": 1 << 13,
    "RECVSEND_BUNDLE": 1 << 14, "MIN_TIMEOUT": 1 << 15,
}
IORING_FEAT_SINGLE_MMAP = FEATURES["SINGLE_MMAP"]
IORING_FEAT_NODROP = FEATURES["NODROP"]

# io_uring_enter flags
IORING_ENTER_GETEVENTS = 1 << 0  # wait for min_complete completions
IORING_ENTER_SQ_WAKEUP = 1 << 1  # SQPOLL: wake the sleeping poller thread
IORING_ENTER_SQ_WAIT = 1 << 2  # SQPOLL: wait until the poller has made room in the SQ

IORING_SQ_NEED_WAKEUP = 1 << 0  # in the SQ ring's flags: the SQPOLL thread went to sleep

# opcodes (the SQE's first byte)
IORING_OP_NOP, IORING_OP_READ, IORING_OP_TIMEOUT, IORING_OP_ACCEPT = 0, 22, 11, 13
IORING_OP_ASYNC_CANCEL, IORING_OP_CLOSE, IORING_OP_SEND, IORING_OP_RECV = 14, 19, 26, 27
OPCODE_NAMES = {IORING_OP_NOP: "NOP", IORING_OP_READ: "READ", IORING_OP_TIMEOUT: "TIMEOUT",
                IORING_OP_ACCEPT: "ACCEPT", IORING_OP_ASYNC_CANCEL: "ASYNC_CANCEL",
                IORING_OP_CLOSE: "CLOSE", IORING_OP_SEND: "SEND", IORING_OP_RECV: "RECV"}

# SQE flags
IOSQE_ASYNC = 1 << 4  # do not try inline: hand the request to an io-wq worker thread at once
IOSQE_BUFFER_SELECT = 1 << 5  # the kernel picks the buffer from a provided-buffer group
IOSQE_CQE_SKIP_SUCCESS = 1 << 6  # 5.17: post no CQE if it succeeds

# per-opcode flags, in the SQE's ioprio field
IORING_ACCEPT_MULTISHOT = 1 << 0  # 5.19: one accept SQE, one CQE per connection
IORING_RECV_MULTISHOT = 1 << 1  # 6.0: one recv SQE, one CQE per chunk, until it stops

# CQE flags
IORING_CQE_F_BUFFER = 1 << 0  # a provided buffer was used; its id is flags >> 16
IORING_CQE_F_MORE = 1 << 1  # a multishot request stays armed: more CQEs will follow
IORING_CQE_BUFFER_SHIFT = 16

# io_uring_register opcodes
IORING_REGISTER_PROBE = 8
IORING_REGISTER_PBUF_RING, IORING_UNREGISTER_PBUF_RING = 22, 23  # 5.19
IO_URING_OP_SUPPORTED = 1 << 0

# -- the layouts --------------------------------------------------------------------------------

# struct io_uring_params: 10 u32 (sq_entries, cq_entries, flags, sq_thread_cpu, sq_thread_idle,
# features, wq_fd, resv[3]), then io_sqring_offsets (head, tail, ring_mask, ring_entries, flags,
# dropped, array, resv1, u64 user_addr) and io_cqring_offsets (head, tail, ring_mask,
# ring_entries, overflow, cqes, flags, resv1, u64 user_addr): 120 bytes.
PARAMS = struct.Struct("<10I 8IQ 8IQ")
assert PARAMS.size == 120

# struct io_uring_sqe, 64 bytes; the unions reduced to the member this lab uses:
#   u8 opcode, u8 flags, u16 ioprio, s32 fd, u64 off (or addr2, or the cancel target), u64 addr,
#   u32 len, u32 op_flags (msg_flags, accept_flags, timeout_flags...), u64 user_data,
#   u16 buf_group (or buf_index), u16 personality, s32 splice_fd_in / file_index, u64 addr3, pad
SQE = struct.Struct("<BBHiQQIIQHHiQQ")
assert SQE.size == 64

# struct io_uring_cqe, 16 bytes: u64 user_data, s32 res (what the syscall would return, or
# -errno), u32 flags (F_BUFFER, F_MORE; the buffer id in the top 16 bits)
CQE = struct.Struct("<QiI")
assert CQE.size == 16

# struct io_uring_buf, 16 bytes: u64 addr, u32 len, u16 bid, u16 resv. A buffer ring is an array
# of these; the ring's tail (u16) lives in the first entry's resv field, at byte 14. So an entry
# is written as its first 14 bytes only (liburing's io_uring_buf_ring_add does the same): writing
# resv too would set the tail to 0 whenever entry 0 is reused.
BUF = struct.Struct("<QIH")
BUF_ENTRY_SIZE = 16
BUF_RING_TAIL_OFFSET = 14

# struct io_uring_buf_reg: u64 ring_addr, u32 ring_entries, u16 bgid, u16 flags, u64 resv[3]
BUF_REG = struct.Struct("<QIHH3Q")

# struct __kernel_timespec: s64 tv_sec, s64 tv_nsec
TIMESPEC = struct.Struct("<qq")

U32 = struct.Struct("<I")

MSG_NOSIGNAL, MSG_WAITALL = 0x4000, 0x100

SQ_WAIT_S = 5.0  # how long a full SQ may wait for the SQPOLL thread before that is an error


class UringError(OSError):
    """io_uring_setup, enter or register failed: errno, and which call."""


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise UringError(err, f"{what}: {os.strerror(err)}")
    return ret


def _index(addr: int, ctype=ctypes.c_uint32):
    """A ring index the kernel reads or writes concurrently (SQ head and tail, CQ head and tail,
    SQ flags, a buffer ring's tail), as a ctypes scalar at its address: ``.value`` is one
    aligned load or store, never torn and never zeroed first as struct.pack_into's is."""
    return ctype.from_address(addr)


def _map(size: int, fd: int = -1, offset: int = 0) -> tuple[int, memoryview]:
    """mmap through libc: (address, a byte memoryview over it). A shared mapping of the ring's
    fd, or anonymous private memory for fd -1. (Python's mmap module would dup the ring's fd for
    every mapping, and 3.11 has no way to stop it.) A memoryview rather than the ctypes array
    itself: struct.pack_into gets a memoryview's buffer about twice as fast, and the SQE
    written per echo is the hot path. (Indices are not written with struct: see _index.)"""
    if fd < 0:
        flags, prot = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, PROT_READ_WRITE
    else:
        flags, prot = MAP_SHARED | MAP_POPULATE, PROT_READ_WRITE
    addr = _mmap(None, size, prot, flags, fd, offset)
    if addr in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise UringError(err, f"mmap of {size} bytes: {os.strerror(err)}")
    return addr, memoryview((ctypes.c_char * size).from_address(addr)).cast("B")


def _release(*views) -> None:
    """Let go of memoryviews before their memory is unmapped (a slice still held elsewhere
    keeps its own view; nothing here reads through it after close)."""
    for view in views:
        if view is not None:
            try:
                view.release()
            except BufferError:
                pass


def set_nodelay(fd: int) -> None:
    """TCP_NODELAY on a raw fd, without making a Python socket object (which costs a
    getsockname to check the fd). Errors are ignored, as for a socket the peer already reset."""
    one = ctypes.c_int(1)
    _setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_NODELAY, ctypes.byref(one), 4)


# -- the ring -----------------------------------------------------------------------------------


class Ring:
    """One io_uring: setup, the three mappings, SQE preparation, submit/wait, CQE reaping.

    Preparing an SQE only writes 64 bytes into shared memory; nothing reaches the kernel until
    ``submit()`` (one io_uring_enter for the whole batch)."""

    def __init__(self, entries: int = 256, *, cq_entries: int = 0, sqpoll: bool = False,
                 sq_thread_cpu: int | None = None, flags: int | None = None):
        self.fd = -1
        self._maps: list[tuple[int, int]] = []  # (address, size) to munmap at close
        self.buf_rings: dict[int, BufferRing] = {}
        if sqpoll and platform.machine() not in ("x86_64", "AMD64"):
            raise ValueError("SQPOLL needs a release store of the SQ tail that Python cannot "
                             f"make on {platform.machine()}; it is allowed on x86-64 only")
        # Try the best setup flags first, then fall back on EINVAL (an older kernel rejects
        # flags it does not know): DEFER_TASKRUN (6.1), COOP_TASKRUN (5.19), nothing (5.1).
        base = (IORING_SETUP_CQSIZE if cq_entries else 0) | (IORING_SETUP_SQPOLL if sqpoll else 0)
        if sqpoll and sq_thread_cpu is not None:
            base |= IORING_SETUP_SQ_AFF  # pin the poller thread, e.g. away from our own CPU
        if flags is not None:
            candidates = [flags | base]
        elif sqpoll:  # DEFER_TASKRUN is not allowed with SQPOLL
            candidates = [base | IORING_SETUP_SUBMIT_ALL, base]
        else:
            candidates = [
                base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER
                | IORING_SETUP_DEFER_TASKRUN,
                base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN,
                base,
            ]
        for i, setup_flags in enumerate(candidates):
            params = ctypes.create_string_buffer(PARAMS.size)
            PARAMS.pack_into(params, 0, 0, cq_entries, setup_flags, sq_thread_cpu or 0,
                             *([0] * 24))
            ret = _syscall(_c_long(SYS_IO_URING_SETUP), ctypes.c_uint(entries), params)
            if ret >= 0:
                break
            err = ctypes.get_errno()
            if err != errno.EINVAL or i == len(candidates) - 1:
                raise UringError(err, f"io_uring_setup: {os.strerror(err)}")
        self.fd = ret
        p = PARAMS.unpack_from(params)
        self.sq_entries, self.cq_entries, self.setup_flags = p[0], p[1], p[2]
        self.features = p[5]
        sq_off, cq_off = p[10:19], p[19:28]
        self.sqpoll = bool(self.setup_flags & IORING_SETUP_SQPOLL)
        self._defer_taskrun = bool(self.setup_flags & IORING_SETUP_DEFER_TASKRUN)
        try:
            self._map_rings(sq_off, cq_off)
        except BaseException:
            self.close()
            raise
        # Hoisted for the hot path: struct methods bound to their layout.
        self._pack_sqe = SQE.pack_into
        self._unpack_cqe = CQE.unpack_from
        self._pending = 0  # SQEs written but not yet taken by the kernel
        self.enters = 0  # io_uring_enter calls made (lesson 09 counts them)

    def _map_rings(self, sq_off, cq_off) -> None:
        sq_size = sq_off[6] + self.sq_entries * 4  # up to the end of the index array
        cq_size = cq_off[5] + self.cq_entries * CQE.size  # up to the end of the CQEs
        if self.features & IORING_FEAT_SINGLE_MMAP:
            size = max(sq_size, cq_size)
            sq_addr, sq = _map(size, self.fd, IORING_OFF_SQ_RING)
            self._maps.append((sq_addr, size))
            cq_addr, cq = sq_addr, sq  # one mapping holds both rings
        else:
            sq_addr, sq = _map(sq_size, self.fd, IORING_OFF_SQ_RING)
            self._maps.append((sq_addr, sq_size))
            cq_addr, cq = _map(cq_size, self.fd, IORING_OFF_CQ_RING)
            self._maps.append((cq_addr, cq_size))
        sqe_size = self.sq_entries * SQE.size
        addr, self.sqes = _map(sqe_size, self.fd, IORING_OFF_SQES)
        self._maps.append((addr, sqe_size))
        self.sq, self.cq = sq, cq
        self._cq_bytes = cq  # sliced to decode the CQEs without a copy
        self.mmaps = len(self._maps)  # 2 with SINGLE_MMAP, else 3
        self._k_sq_head, self._k_sq_tail = _index(sq_addr + sq_off[0]), _index(sq_addr + sq_off[1])
        self._k_sq_flags = _index(sq_addr + sq_off[4])
        self.sq_mask = U32.unpack_from(sq, sq_off[2])[0]
        self._k_cq_head, self._k_cq_tail = _index(cq_addr + cq_off[0]), _index(cq_addr + cq_off[1])
        self.cq_mask = U32.unpack_from(cq, cq_off[2])[0]
        self._cqes = cq_off[5]
        # The SQ ring's array maps ring slots to SQE indices. Like liburing, map slot i to SQE i
        # once, for good: then the SQE for tail t is simply sqes[t & mask].
        array = sq_off[6]
        for i in range(self.sq_entries):
            U32.pack_into(sq, array + 4 * i, i)
        self.sq_tail = self._k_sq_tail.value  # our copy; the ring's is published by submit()
        self.cq_head = self._k_cq_head.value

    # -- submitting ----------------------------------------------------------------------------

    def sqe(self, opcode: int, fd: int = -1, addr: int = 0, length: int = 0, *, off: int = 0,
            op_flags: int = 0, user_data: int = 0, flags: int = 0, ioprio: int = 0,
            buf_group: int = 0) -> None:
        """Write one SQE into the next free slot. If the SQ is full, submit the batch first."""
        if self._pending >= self.sq_entries:
            self._make_room()  # the SQ is full: hand the batch to the kernel now
        tail = self.sq_tail
        self._pack_sqe(self.sqes, (tail & self.sq_mask) * 64, opcode, flags, ioprio, fd, off,
                       addr, length, op_flags, user_data, buf_group, 0, 0, 0, 0)
        self.sq_tail = (tail + 1) & 0xFFFFFFFF
        self._pending += 1

    def _make_room(self) -> None:
        self.submit()
        deadline = time.monotonic() + SQ_WAIT_S
        while self.sqpoll and self._pending >= self.sq_entries:
            # the poller thread has not caught up: wait until it has consumed some
            if time.monotonic() > deadline:
                raise UringError(errno.ETIMEDOUT, f"the SQPOLL thread took no SQE in {SQ_WAIT_S} s")
            _syscall(_c_long(SYS_IO_URING_ENTER), self.fd, 0, 0, IORING_ENTER_SQ_WAIT, None, 0)
            self._pending = self._sq_unconsumed()

    def _sq_unconsumed(self) -> int:
        """SQEs published that the SQPOLL thread has not taken yet. More than the ring holds
        means its head ran past our tail (it read a tail we never wrote): stop rather than let
        it go on taking stale slots."""
        pending = (self.sq_tail - self._k_sq_head.value) & 0xFFFFFFFF
        if pending > self.sq_entries:
            raise UringError(errno.EIO, f"the SQPOLL thread's head {self.sq_head()} passed the "
                             f"SQ tail {self.sq_tail}")
        return pending

    def sq_head(self) -> int:
        """How far the kernel has consumed the SQ (it writes the head)."""
        return self._k_sq_head.value

    def submit(self, wait_for: int = 0) -> int:
        """One io_uring_enter: publish the tail (every SQE written since the last call), and with
        wait_for > 0 sleep until that many CQEs are ready. Returns how many SQEs were taken.
        EINTR (a signal) returns 0 after Python has run the handler (which may raise)."""
        self._k_sq_tail.value = self.sq_tail  # one plain store: see the module docstring
        to_submit = self._pending
        enter_flags = IORING_ENTER_GETEVENTS if wait_for or self._defer_taskrun else 0
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
        ret = _syscall(_c_long(SYS_IO_URING_ENTER), self.fd, to_submit, wait_for, enter_flags,
                       None, 0)
        if ret < 0:
            err = ctypes.get_errno()
            if err == errno.EINTR:
                return 0
            if err == errno.EBUSY:  # the CQ overflowed (kernels before 5.19): reap, then retry
                return 0
            raise UringError(err, f"io_uring_enter: {os.strerror(err)}")
        if not self.sqpoll:
            self._pending = to_submit - ret  # what the kernel did not take stays in the SQ
        return ret

    # -- reaping -------------------------------------------------------------------------------

    def cq_tail(self) -> int:
        """How far the kernel has filled the CQ (it writes the tail)."""
        return self._k_cq_tail.value

    def cq_ready(self) -> int:
        return (self.cq_tail() - self.cq_head) & 0xFFFFFFFF

    def cqe(self, index: int) -> tuple[int, int, int]:
        """(user_data, res, flags) of the CQE at free-running index ``index``."""
        return self._unpack_cqe(self.cq, self._cqes + (index & self.cq_mask) * 16)

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
        base, cq = self._cqes, self._cq_bytes
        cqes = CQE.iter_unpack(cq[base + start * 16:base + (start + first) * 16])
        if count > first:  # the range wraps: the rest starts at slot 0
            cqes = itertools.chain(cqes, CQE.iter_unpack(cq[base:base + (count - first) * 16]))
        return cqes

    def cq_advance(self, head: int) -> None:
        """Tell the kernel the CQEs up to ``head`` are read: their slots may be reused."""
        self.cq_head = head & 0xFFFFFFFF
        self._k_cq_head.value = self.cq_head

    # -- prep helpers: one per operation the lab uses (liburing's io_uring_prep_*) -------------

    def prep_nop(self, user_data: int) -> None:
        self.sqe(IORING_OP_NOP, user_data=user_data)

    def prep_read(self, fd: int, addr: int, length: int, offset: int, user_data: int, *,
                  force_async: bool = False) -> None:
        """read(fd) at offset (-1: the file's position, for a pipe or socket) into addr.
        force_async (IOSQE_ASYNC): skip the inline attempt, run it on an io-wq kernel worker,
        as the kernel does by itself for a read that would block (an uncached file)."""
        self.sqe(IORING_OP_READ, fd, addr, length, off=offset & 0xFFFFFFFFFFFFFFFF,
                 user_data=user_data, flags=IOSQE_ASYNC if force_async else 0)

    def prep_accept(self, fd: int, user_data: int, *, multishot: bool = False) -> None:
        """accept4(fd, NULL, NULL, SOCK_CLOEXEC); multishot: one CQE per connection until an
        error stops it (no IORING_CQE_F_MORE on the last one)."""
        self.sqe(IORING_OP_ACCEPT, fd, op_flags=socket.SOCK_CLOEXEC, user_data=user_data,
                 ioprio=IORING_ACCEPT_MULTISHOT if multishot else 0)

    def prep_recv(self, fd: int, addr: int, length: int, user_data: int) -> None:
        """recv(fd) into our own buffer: the kernel writes there as soon as bytes arrive, so the
        buffer is pinned for as long as the recv is in flight."""
        self.sqe(IORING_OP_RECV, fd, addr, length, user_data=user_data)

    def prep_recv_select(self, fd: int, group: int, user_data: int, *,
                         multishot: bool = False) -> None:
        """recv(fd) into a buffer the kernel picks from provided-buffer group ``group`` only when
        data arrives (IOSQE_BUFFER_SELECT); the CQE names it. multishot: stays armed."""
        self.sqe(IORING_OP_RECV, fd, 0, 0, user_data=user_data, flags=IOSQE_BUFFER_SELECT,
                 buf_group=group, ioprio=IORING_RECV_MULTISHOT if multishot else 0)

    def prep_send(self, fd: int, addr: int, length: int, user_data: int) -> None:
        """send(fd, addr, length, MSG_WAITALL | MSG_NOSIGNAL). On a stream socket MSG_WAITALL
        makes io_uring retry a short send itself (5.19+), so the CQE comes when all is sent or
        the connection failed; MSG_NOSIGNAL turns SIGPIPE into -EPIPE."""
        # The one SQE per echo: written here directly rather than through sqe(), which saves a
        # Python call and the keyword arguments on the hot path. The same 64 bytes.
        if self._pending >= self.sq_entries:
            self._make_room()
        tail = self.sq_tail
        self._pack_sqe(self.sqes, (tail & self.sq_mask) * 64, IORING_OP_SEND, 0, 0, fd, 0, addr,
                       length, MSG_WAITALL | MSG_NOSIGNAL, user_data, 0, 0, 0, 0, 0)
        self.sq_tail = (tail + 1) & 0xFFFFFFFF
        self._pending += 1

    def prep_timeout(self, timespec_addr: int, user_data: int) -> None:
        """A timer: its CQE (res -ETIME) comes after the __kernel_timespec at timespec_addr."""
        self.sqe(IORING_OP_TIMEOUT, -1, timespec_addr, 1, user_data=user_data)

    def prep_cancel(self, target_user_data: int, user_data: int) -> None:
        """Cancel the request tagged target_user_data: it completes with -ECANCELED (a multishot
        one without F_MORE), and this SQE completes with 0, -ENOENT or -EALREADY."""
        self.sqe(IORING_OP_ASYNC_CANCEL, -1, target_user_data, user_data=user_data)

    def prep_close(self, fd: int, user_data: int) -> None:
        self.sqe(IORING_OP_CLOSE, fd, user_data=user_data)

    # -- registering ---------------------------------------------------------------------------

    def register(self, opcode: int, arg, nr_args: int) -> int:
        ret = _syscall(_c_long(SYS_IO_URING_REGISTER), self.fd, opcode, arg, nr_args)
        return _check(ret, f"io_uring_register({opcode})")

    def supported_opcodes(self) -> set[int]:
        """IORING_REGISTER_PROBE (5.6+): which opcodes this kernel knows."""
        ops = 256
        probe = ctypes.create_string_buffer(16 + 8 * ops)  # io_uring_probe + ops[] of 8 bytes
        self.register(IORING_REGISTER_PROBE, probe, ops)
        last_op = probe.raw[0]
        return {op for op in range(min(last_op + 1, ops))
                if probe.raw[16 + 8 * op + 2] & IO_URING_OP_SUPPORTED}

    def close(self) -> None:
        """Unmap everything and close the ring's fd: the kernel cancels what is still in flight
        and lets go of every buffer it was told about."""
        buf_rings = list(self.buf_rings.values())
        for buf_ring in buf_rings:
            buf_ring.unregister()
        if self.fd >= 0:
            os.close(self.fd)  # first: no request may write into a buffer after it is unmapped
            self.fd = -1
        for buf_ring in buf_rings:
            buf_ring.close()
        _release(getattr(self, "sq", None), getattr(self, "cq", None),
                 getattr(self, "sqes", None))
        for addr, size in self._maps:
            _munmap(addr, size)
        self._maps.clear()
        self.sq = self.cq = self.sqes = self._cq_bytes = None
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


class BufferRing:
    """A provided-buffer ring (IORING_REGISTER_PBUF_RING, 5.19+): ``count`` buffers of ``size``
    bytes that the kernel picks from, one per completed recv, only when data has arrived.

    Two pieces of our own memory: the ring of io_uring_buf entries (address, length, id) that we
    fill and the kernel consumes from, and the buffers themselves. Giving a buffer back is
    writing its entry at our tail and, once per batch, publishing the tail (the same release
    store question as the SQ tail: the kernel reads this tail when a recv completes, possibly on
    another CPU; on x86-64 plain stores in order suffice; on arm64 the entry and the tail are
    read by the kernel in task context after our next io_uring_enter, see the module docstring).
    """

    def __init__(self, ring: Ring, group: int, count: int, size: int):
        assert count & (count - 1) == 0 and count <= 32768, "a power of two up to 32768"
        self.ring, self.group, self.count, self.size = ring, group, count, size
        self.mask = count - 1
        self._ring_bytes = count * BUF_ENTRY_SIZE
        self.ring_addr, self.entries = _map(self._ring_bytes)  # page-aligned, as required
        self.pool_addr, self.pool = _map(count * size)  # MAP_POPULATE: resident from the start
        self.view = self.pool  # slices of it, without copying
        self.addresses = [self.pool_addr + bid * size for bid in range(count)]  # by buffer id
        reg = ctypes.create_string_buffer(BUF_REG.size)
        BUF_REG.pack_into(reg, 0, self.ring_addr, count, group, 0, 0, 0, 0)
        try:
            ring.register(IORING_REGISTER_PBUF_RING, reg, 1)
        except UringError:
            self._unmap()
            raise
        ring.buf_rings[group] = self
        self.tail = 0
        self._tail_index = _index(self.ring_addr + BUF_RING_TAIL_OFFSET, ctypes.c_uint16)
        self._pack_buf = BUF.pack_into
        for bid in range(count):
            self.give_back(bid)
        self.publish()

    def give_back(self, bid: int) -> None:
        """Put buffer ``bid`` at our tail (not yet visible: see publish)."""
        self._pack_buf(self.entries, (self.tail & self.mask) * 16,
                       self.pool_addr + bid * self.size, self.size, bid)
        self.tail = (self.tail + 1) & 0xFFFF

    def publish(self) -> None:
        """Store the tail: the kernel may now use every buffer given back before it."""
        self._tail_index.value = self.tail

    def address(self, bid: int) -> int:
        return self.addresses[bid]

    def _unmap(self) -> None:
        _release(self.entries, self.pool)
        self.view = self.entries = self.pool = self._tail_index = None
        _munmap(self.ring_addr, self._ring_bytes)
        _munmap(self.pool_addr, self.count * self.size)

    def unregister(self) -> None:
        if self.ring.fd >= 0 and self.group in self.ring.buf_rings:
            reg = ctypes.create_string_buffer(BUF_REG.size)
            BUF_REG.pack_into(reg, 0, 0, 0, self.group, 0, 0, 0, 0)
            try:
                self.ring.register(IORING_UNREGISTER_PBUF_RING, reg, 1)
            except UringError:
                pass

    def close(self) -> None:
        """Unregister and unmap. (Ring.close closes the ring between the two.)"""
        self.unregister()
        self.ring.buf_rings.pop(self.group, None)
        if self.view is not None or self.ring_addr:
            self._unmap()
            self.ring_addr = 0


def make_timespec(seconds: float) -> ctypes.Array:
    """A __kernel_timespec the kernel reads when the TIMEOUT SQE is submitted; keep it alive."""
    ts = ctypes.create_string_buffer(TIMESPEC.size)
    TIMESPEC.pack_into(ts, 0, int(seconds), int(seconds % 1 * 1e9))
    return ts


def address_of(buffer) -> int:
    """The address of a writable Python buffer (bytearray, ctypes array) for an SQE. The buffer
    must stay alive, unresized, until the operation's CQE arrives."""
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))


# -- what this kernel offers: probing by trying -------------------------------------------------

_PROBE_ACCEPT, _PROBE_RECV, _PROBE_CANCEL = 1, 2, 3


def _wait_cqe(ring: Ring, user_data: int) -> tuple[int, int, int] | None:
    for _ in range(8):  # bounded: each submit waits for at least one CQE
        ring.submit(wait_for=1)
        for cqe in ring.completions():
            if cqe[0] == user_data:
                return cqe
    return None


def probe_features(ring: Ring) -> dict[str, bool]:
    """Which of the lab's optional features this kernel has, found by trying each (an older
    kernel answers -EINVAL, or refuses the registration): multishot accept (5.19), a provided
    buffer ring (5.19), multishot recv (6.0). Uses a throwaway loopback listener and socket
    pair; leaves the ring as it found it."""
    found = {"multishot_accept": False, "pbuf_ring": False, "multishot_recv": False}
    listener = socket.socket()
    client = socket.socket()
    pair = socket.socketpair()
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        ring.prep_accept(listener.fileno(), _PROBE_ACCEPT, multishot=True)
        client.connect(listener.getsockname())
        cqe = _wait_cqe(ring, _PROBE_ACCEPT)
        if cqe and cqe[1] >= 0:
            os.close(cqe[1])
            found["multishot_accept"] = bool(cqe[2] & IORING_CQE_F_MORE)
            if cqe[2] & IORING_CQE_F_MORE:
                ring.prep_cancel(_PROBE_ACCEPT, _PROBE_CANCEL)
                _wait_cqe(ring, _PROBE_ACCEPT)
        try:
            bufs = BufferRing(ring, 0x7FFF, 1, 4096)
        except UringError:
            return found
        found["pbuf_ring"] = True
        try:
            ring.prep_recv_select(pair[0].fileno(), 0x7FFF, _PROBE_RECV, multishot=True)
            pair[1].send(b"x")
            cqe = _wait_cqe(ring, _PROBE_RECV)
            found["multishot_recv"] = bool(cqe and cqe[1] == 1 and cqe[2] & IORING_CQE_F_MORE)
            if cqe and cqe[2] & IORING_CQE_F_MORE:
                ring.prep_cancel(_PROBE_RECV, _PROBE_CANCEL)
                _wait_cqe(ring, _PROBE_RECV)
        finally:
            bufs.close()
    finally:
        for sock in (listener, client, *pair):
            sock.close()
        ring.completions()  # drop whatever the probe left behind (cancel results)
    return found


def setup_failure(err: int) -> str:
    """Why io_uring_setup failed, in words that name the cause and the fix."""
    name = errno.errorcode.get(err, str(err))
    if err == errno.ENOSYS:
        why = "this kernel has no io_uring: older than 5.1, or built without CONFIG_IO_URING"
    elif err == errno.EPERM:
        why = "refused: a seccomp filter (Docker's default profile blocks io_uring)"
        try:
            with open("/proc/sys/kernel/io_uring_disabled") as f:
                disabled = int(f.read())
        except (OSError, ValueError):
            disabled = 0
        if disabled == 2:
            why = "refused: sysctl kernel.io_uring_disabled=2 (set it to 0 to allow io_uring)"
        elif disabled == 1:
            why = ("refused: sysctl kernel.io_uring_disabled=1 allows only the group in "
                   "kernel.io_uring_group (or set it to 0)")
    elif err == errno.ENOMEM:
        why = "out of locked memory for the ring (kernels before 5.12 count it: ulimit -l)"
    else:
        why = os.strerror(err)
    return f"io_uring_setup failed: {name} ({why})"


def describe() -> str:
    """What this kernel's io_uring offers, as lines of text (python -m servers.uring)."""
    try:
        ring = Ring(8)
    except UringError as exc:
        return setup_failure(exc.errno)
    with ring:
        ops = ring.supported_opcodes()
        found = probe_features(ring)
        lines = [
            f"io_uring on {platform.system()} {platform.release()} ({platform.machine()})",
            f"  setup flags accepted: {ring.setup_flags:#x}"
            + (" (DEFER_TASKRUN, SINGLE_ISSUER)" if ring._defer_taskrun else ""),
            f"  features: {' '.join(ring.feature_names())}",
            f"  mappings: {ring.mmaps} (SINGLE_MMAP: SQ and CQ rings share one)"
            if ring.mmaps == 2 else f"  mappings: {ring.mmaps}",
            "  opcodes the lab uses: " + " ".join(
                f"{name}{'' if op in ops else ' (missing)'}" for op, name in OPCODE_NAMES.items()),
        ]
        lines += [f"  {name}: {'yes' if ok else 'no'}" for name, ok in found.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
