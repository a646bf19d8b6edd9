"""The kernel's side of io_uring, as Python: include/uapi/linux/io_uring.h, the parts the lab uses.

The numbers and the layouts are the kernel's ABI: they never change for an existing field, so a
program built against an old header runs on every newer kernel. Each structure below is the
header's, field for field, as a ctypes Structure, so that code reads ``params.sq_off.tail``
rather than ``params[11]``, and every size comes from ``ctypes.sizeof`` of the structure it is
the size of. For the two entries written and read once per operation (the 64-byte SQE and the
16-byte CQE) the hot path uses ``struct`` instead, which packs a whole entry in one call; those
formats are derived from the Structures here (``packer``), so they cannot drift apart.
"""

from __future__ import annotations

import ctypes
import struct

u8, u16, u32, u64 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64
s32 = ctypes.c_int32

# -- the three system calls: the same numbers on every architecture that uses the generic table
# (include/uapi/asm-generic/unistd.h; x86-64 took the same ones), alpha and mips aside.
SYS_IO_URING_SETUP, SYS_IO_URING_ENTER, SYS_IO_URING_REGISTER = 425, 426, 427

# -- mmap offsets: which part of the ring a mapping of the ring's fd shows
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000

# -- io_uring_params.flags: how to set the ring up
IORING_SETUP_SQPOLL = 1 << 1  # a kernel thread polls the SQ: submitting needs no syscall
IORING_SETUP_SQ_AFF = 1 << 2  # the SQPOLL thread runs on sq_thread_cpu
IORING_SETUP_CQSIZE = 1 << 3  # cq_entries is ours, not 2 x sq_entries
IORING_SETUP_SUBMIT_ALL = 1 << 7  # 5.18: keep submitting the batch after one SQE fails
IORING_SETUP_COOP_TASKRUN = 1 << 8  # 5.19: no IPI to run completions; they run at the next enter
IORING_SETUP_SINGLE_ISSUER = 1 << 12  # 6.0: only one thread submits
IORING_SETUP_DEFER_TASKRUN = 1 << 13  # 6.1: completions run only in io_uring_enter(GETEVENTS)

# -- io_uring_params.features: what the kernel reports back
FEATURES = {
    "SINGLE_MMAP": 1 << 0, "NODROP": 1 << 1, "SUBMIT_STABLE": 1 << 2, "RW_CUR_POS": 1 << 3,
    "CUR_PERSONALITY": 1 << 4, "FAST_POLL": 1 << 5, "POLL_32BITS": 1 << 6,
    "SQPOLL_NONFIXED": 1 << 7, "EXT_ARG": 1 << 8, "NATIVE_WORKERS": 1 << 9,
    "RSRC_TAGS": 1 << 10, "CQE_SKIP": 1 << 11, "LINKED_FILE": 1 << 12, "REG_REG_RING": 1 << 13,
    "RECVSEND_BUNDLE": 1 << 14, "MIN_TIMEOUT": 1 << 15,
}
IORING_FEAT_SINGLE_MMAP = FEATURES["SINGLE_MMAP"]  # 5.4: SQ and CQ rings share one mapping
IORING_FEAT_NODROP = FEATURES["NODROP"]  # 5.5: a full CQ keeps CQEs in an overflow list
IORING_FEAT_RECVSEND_BUNDLE = FEATURES["RECVSEND_BUNDLE"]  # 6.10

# -- io_uring_enter flags
IORING_ENTER_GETEVENTS = 1 << 0  # wait for min_complete completions
IORING_ENTER_SQ_WAKEUP = 1 << 1  # SQPOLL: wake the sleeping poller thread
IORING_ENTER_SQ_WAIT = 1 << 2  # SQPOLL: wait until the poller has made room in the SQ
IORING_ENTER_REGISTERED_RING = 1 << 4  # 5.18: fd is an index into the registered ring fds

IORING_SQ_NEED_WAKEUP = 1 << 0  # in the SQ ring's flags: the SQPOLL thread went to sleep

# -- opcodes (the SQE's first byte), with the name each has in the header
OPCODE_NAMES = {0: "NOP", 4: "READ_FIXED", 11: "TIMEOUT", 13: "ACCEPT", 14: "ASYNC_CANCEL",
                15: "LINK_TIMEOUT", 19: "CLOSE", 22: "READ", 26: "SEND", 27: "RECV",
                47: "SEND_ZC"}
IORING_OP_NOP, IORING_OP_READ_FIXED, IORING_OP_TIMEOUT, IORING_OP_ACCEPT = 0, 4, 11, 13
IORING_OP_ASYNC_CANCEL, IORING_OP_LINK_TIMEOUT, IORING_OP_CLOSE = 14, 15, 19
IORING_OP_READ, IORING_OP_SEND, IORING_OP_RECV, IORING_OP_SEND_ZC = 22, 26, 27, 47

# -- io_uring_sqe.flags
IOSQE_IO_LINK = 1 << 2  # the next SQE starts only once this one succeeded (a chain)
IOSQE_ASYNC = 1 << 4  # do not try inline: hand the request to an io-wq worker thread at once
IOSQE_BUFFER_SELECT = 1 << 5  # the kernel picks the buffer from a provided-buffer group
IOSQE_CQE_SKIP_SUCCESS = 1 << 6  # 5.17: post no CQE if it succeeds

# -- per-opcode flags, in the SQE's ioprio field
IORING_ACCEPT_MULTISHOT = 1 << 0  # 5.19: one accept SQE, one CQE per connection
IORING_RECV_MULTISHOT = 1 << 1  # 6.0: one recv SQE, one CQE per chunk, until it stops
IORING_RECVSEND_FIXED_BUF = 1 << 2  # send/recv from a registered buffer (buf_index)
IORING_RECVSEND_BUNDLE = 1 << 4  # 6.10: one recv fills as many provided buffers as it needs

# -- io_uring_cqe.flags
IORING_CQE_F_BUFFER = 1 << 0  # a provided buffer was used; its id is flags >> 16
IORING_CQE_F_MORE = 1 << 1  # a multishot request stays armed: more CQEs will follow
IORING_CQE_F_NOTIF = 1 << 3  # SEND_ZC: the kernel is done with the buffer (the second CQE)
IORING_CQE_F_BUF_MORE = 1 << 4  # 6.12, incremental buffers: the kernel goes on filling this one
IORING_CQE_BUFFER_SHIFT = 16

# -- io_uring_register opcodes
IORING_REGISTER_BUFFERS = 0  # pin buffers once, for READ_FIXED/WRITE_FIXED and FIXED_BUF sends
IORING_REGISTER_PROBE = 8  # 5.6: which opcodes this kernel knows
IORING_REGISTER_RING_FDS = 20  # 5.18: the ring's own fd, looked up once instead of per enter
IORING_UNREGISTER_RING_FDS = 21
IORING_REGISTER_PBUF_RING, IORING_UNREGISTER_PBUF_RING = 22, 23  # 5.19: a provided buffer ring
IO_URING_OP_SUPPORTED = 1 << 0  # io_uring_probe_op.flags
IOU_PBUF_RING_INC = 2  # 6.12, io_uring_buf_reg.flags: buffers consumed a part at a time

MSG_NOSIGNAL, MSG_WAITALL = 0x4000, 0x100  # <sys/socket.h>, for the send's msg_flags


# -- the structures ------------------------------------------------------------------------------


class io_sqring_offsets(ctypes.Structure):
    """Where, in the SQ ring's mapping, each field lives (filled in by io_uring_setup)."""
    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("flags", u32), ("dropped", u32), ("array", u32), ("resv1", u32),
                ("user_addr", u64)]


class io_cqring_offsets(ctypes.Structure):
    """Where, in the CQ ring's mapping, each field lives (filled in by io_uring_setup)."""
    _fields_ = [("head", u32), ("tail", u32), ("ring_mask", u32), ("ring_entries", u32),
                ("overflow", u32), ("cqes", u32), ("flags", u32), ("resv1", u32),
                ("user_addr", u64)]


class io_uring_params(ctypes.Structure):
    """io_uring_setup's argument: what we ask for in, the ring's layout out."""
    _fields_ = [("sq_entries", u32), ("cq_entries", u32), ("flags", u32),
                ("sq_thread_cpu", u32), ("sq_thread_idle", u32), ("features", u32),
                ("wq_fd", u32), ("resv", u32 * 3),
                ("sq_off", io_sqring_offsets), ("cq_off", io_cqring_offsets)]


class io_uring_sqe(ctypes.Structure):
    """A submission queue entry. The header's unions are reduced to the member the lab uses:
    off (or addr2, the cancel target), op_flags (msg_flags, accept_flags, timeout_flags...),
    buf_index (or buf_group), file_index (or splice_fd_in)."""
    _fields_ = [("opcode", u8), ("flags", u8), ("ioprio", u16), ("fd", s32), ("off", u64),
                ("addr", u64), ("len", u32), ("op_flags", u32), ("user_data", u64),
                ("buf_index", u16), ("personality", u16), ("file_index", s32), ("addr3", u64),
                ("pad2", u64)]


class io_uring_cqe(ctypes.Structure):
    """A completion queue entry: our user_data back, what the call returned (or -errno)."""
    _fields_ = [("user_data", u64), ("res", s32), ("flags", u32)]


class io_uring_buf(ctypes.Structure):
    """One entry of a provided-buffer ring. The ring's tail (u16) overlays ``resv`` of entry 0
    (struct io_uring_buf_ring), so an entry is written without its resv: writing it would set
    the tail to 0 whenever entry 0 is reused."""
    _fields_ = [("addr", u64), ("len", u32), ("bid", u16), ("resv", u16)]


class io_uring_buf_reg(ctypes.Structure):
    """IORING_REGISTER_PBUF_RING's argument (min_left is a late addition: before it, zeros)."""
    _fields_ = [("ring_addr", u64), ("ring_entries", u32), ("bgid", u16), ("flags", u16),
                ("min_left", u32), ("resv", u32 * 5)]


class io_uring_probe_op(ctypes.Structure):
    _fields_ = [("op", u8), ("resv", u8), ("flags", u16), ("resv2", u32)]


class io_uring_probe(ctypes.Structure):
    """IORING_REGISTER_PROBE's answer; ops[] follows it, one io_uring_probe_op per opcode."""
    _fields_ = [("last_op", u8), ("ops_len", u8), ("resv", u16), ("resv2", u32 * 3)]


class io_uring_rsrc_update(ctypes.Structure):
    """IORING_REGISTER_RING_FDS's argument: data is the fd; offset gets its index (-1: any)."""
    _fields_ = [("offset", u32), ("resv", u32), ("data", u64)]


class iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class kernel_timespec(ctypes.Structure):
    """struct __kernel_timespec: what TIMEOUT and LINK_TIMEOUT read through sqe->addr."""
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_int64)]


# -- the hot path's packers, derived from the structures ----------------------------------------

_CODES = {u8: "B", u16: "H", u32: "I", u64: "Q", s32: "i"}


def packer(structure: type[ctypes.Structure], fields: int | None = None, *,
           zeros_after: bool = False) -> struct.Struct:
    """A little-endian struct.Struct for the first ``fields`` fields of ``structure`` (all by
    default), which must lie back to back, with no padding: one pack_into writes them all.
    ``zeros_after``: it also writes zeros over the rest of the structure (struct's pad bytes),
    so that an entry whose last fields are 0 is written whole from fewer arguments."""
    chosen = structure._fields_[:fields]
    fmt = "<" + "".join(_CODES[ctype] for _, ctype in chosen)
    last_name, last_type = chosen[-1]
    end = getattr(structure, last_name).offset + ctypes.sizeof(last_type)
    assert struct.calcsize(fmt) == end, f"{structure.__name__} has padding: {fmt} is not its layout"
    if zeros_after and ctypes.sizeof(structure) > end:
        fmt += f"{ctypes.sizeof(structure) - end}x"
    return struct.Struct(fmt)


SQE = packer(io_uring_sqe)  # all 64 bytes: opcode ... pad2
SQE_ZERO_TAIL = packer(io_uring_sqe, fields=9, zeros_after=True)  # opcode ... user_data, then 0s
CQE = packer(io_uring_cqe)  # user_data, res, flags
BUF = packer(io_uring_buf, fields=3)  # addr, len, bid: never resv (see io_uring_buf)
SQE_SIZE = ctypes.sizeof(io_uring_sqe)  # 64
CQE_SIZE = ctypes.sizeof(io_uring_cqe)  # 16
BUF_SIZE = ctypes.sizeof(io_uring_buf)  # 16
BUF_RING_TAIL_OFFSET = io_uring_buf.resv.offset  # 14: the ring's tail, in entry 0
SQ_ARRAY_ENTRY_SIZE = ctypes.sizeof(u32)  # the SQ ring's array maps slots to SQE indices
assert (SQE_SIZE, CQE_SIZE, BUF_SIZE, ctypes.sizeof(io_uring_params)) == (64, 16, 16, 120)
