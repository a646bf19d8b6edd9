"""POSIX AIO for lesson 09's file reads: glibc's aio_read(3) through ctypes, beside io_uring and a
thread pool. The struct aiocb is filled by offset (glibc's layout on LP64), so no C is compiled."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

AIOCB_BYTES = 168  # sizeof(struct aiocb) in glibc on LP64 (x86-64, arm64)
AIO_FIELDS = {"fildes": 0, "buf": 16, "nbytes": 24, "sigev_notify": 44, "offset": 128}
SIGEV_NONE, EINPROGRESS = 1, 115


def posix_aio_reads(chunks: list[tuple[str, int]], chunk_bytes: int,
                    kernel_tasks: Callable[[], int]) -> tuple[int, int]:
    """glibc's aio_read(3) for every (path, offset) of `chunks`, aio_suspend until each is done; (bytes, extra tasks).
    glibc implements POSIX AIO in user space: helper threads started on demand (up to 20 by
    default, aio_init(3)), which exit after a second idle."""
    lib = ctypes.CDLL(ctypes.util.find_library("rt") or None, use_errno=True)
    lib.aio_return.restype = ctypes.c_ssize_t
    fds = {p: os.open(p, os.O_RDONLY) for p in dict.fromkeys(path for path, _ in chunks)}
    cbs, buffers = [], []
    for path, off in chunks:
        cb, buf = ctypes.create_string_buffer(AIOCB_BYTES), ctypes.create_string_buffer(chunk_bytes)
        ctypes.c_int.from_buffer(cb, AIO_FIELDS["fildes"]).value = fds[path]
        ctypes.c_void_p.from_buffer(cb, AIO_FIELDS["buf"]).value = ctypes.addressof(buf)
        ctypes.c_size_t.from_buffer(cb, AIO_FIELDS["nbytes"]).value = chunk_bytes
        ctypes.c_int.from_buffer(cb, AIO_FIELDS["sigev_notify"]).value = SIGEV_NONE
        ctypes.c_int64.from_buffer(cb, AIO_FIELDS["offset"]).value = off
        cbs.append(cb)
        buffers.append(buf)
    before, got = kernel_tasks(), 0
    try:
        for cb in cbs:
            if lib.aio_read(cb) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"aio_read: {os.strerror(err)}")
        peak = kernel_tasks()
        for cb in cbs:
            one = (ctypes.c_void_p * 1)(ctypes.addressof(cb))
            while lib.aio_error(cb) == EINPROGRESS:
                lib.aio_suspend(one, 1, None)
            got += lib.aio_return(cb)
    finally:
        for fd in fds.values():
            os.close(fd)
    return got, max(peak, kernel_tasks()) - before
