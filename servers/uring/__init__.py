"""The lab's own io_uring: a ring over the raw system calls, in plain Python (lesson 09).

No binding, no C: three system calls through libc's generic ``syscall()`` (ctypes), shared
memory mappings, and ``struct`` to write and read the entries at the offsets the kernel gives.
It follows the kernel's include/uapi/linux/io_uring.h and what liburing does with it:

    abi.py      the header: constants, and each structure as a ctypes Structure, named
    ring.py     Ring: io_uring_setup, the mappings, SQEs in, submit, CQEs out  (setup.c, queue.c)
    ops.py      the SQE writers, one per operation: prep_send, prep_recv_select...  (liburing.h)
    buffers.py  BufferRing: provided buffers, consumed whole or a part at a time  (register.c)
    probe.py    what this kernel offers, found by trying each feature

The three system calls, the same numbers on x86-64, arm64 and every other architecture that uses
the generic table (include/uapi/asm-generic/unistd.h; alpha and mips are the exceptions):

    io_uring_setup(entries, &params)              425: make a ring, fill params with its layout
    io_uring_enter(fd, to_submit, min_complete,   426: hand the kernel the new SQEs and, with
                   flags, sigset, sigset_size)         GETEVENTS, sleep until min_complete CQEs
    io_uring_register(fd, opcode, arg, nr_args)   427: probe opcodes, register buffer rings...

Run it:  python -m servers.uring      prints what this kernel's io_uring offers (the feature flags,
         the opcodes the lab uses, and each optional feature, tried).
"""

from servers.uring.abi import *  # noqa: F403  (the header's names, as uring.IORING_OP_SEND...)
from servers.uring.buffers import BufferRing
from servers.uring.ops import address_of, make_timespec
from servers.uring.probe import OPTIONAL_FEATURES, describe, probe_features, setup_failure, supported_opcodes
from servers.uring.ring import Ring, UringError

__all__ = ["BufferRing", "OPTIONAL_FEATURES", "Ring", "UringError", "address_of", "describe",
           "make_timespec", "probe_features", "setup_failure", "supported_opcodes"]
