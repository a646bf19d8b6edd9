"""The SQE writers, one per operation the lab uses: liburing's io_uring_prep_* (liburing.h).

Each fills the fields of one io_uring_sqe (abi.py) that its opcode reads, through Ring.sqe().
``flags`` are the SQE's own (IOSQE_IO_LINK to chain the next SQE behind this one,
IOSQE_CQE_SKIP_SUCCESS...); a request's result comes back in a CQE carrying its user_data.
"""

from __future__ import annotations

import ctypes
import socket

from servers.uring.abi import (
    IORING_ACCEPT_MULTISHOT, IORING_OP_ACCEPT, IORING_OP_ASYNC_CANCEL, IORING_OP_CLOSE,
    IORING_OP_LINK_TIMEOUT, IORING_OP_NOP, IORING_OP_READ, IORING_OP_READ_FIXED, IORING_OP_RECV,
    IORING_OP_SEND, IORING_OP_SEND_ZC, IORING_OP_TIMEOUT, IORING_RECV_MULTISHOT,
    IORING_RECVSEND_BUNDLE, IORING_RECVSEND_FIXED_BUF, IOSQE_ASYNC, IOSQE_BUFFER_SELECT,
    MSG_NOSIGNAL, MSG_WAITALL, kernel_timespec,
)

SEND_FLAGS = MSG_WAITALL | MSG_NOSIGNAL


class Ops:
    """Mixed into Ring: ``self.sqe(opcode, fd, addr, length, off, op_flags, user_data, flags,
    ioprio, buf_index)`` writes the entry."""

    def prep_nop(self, user_data: int, flags: int = 0) -> None:
        self.sqe(IORING_OP_NOP, user_data=user_data, flags=flags)

    def prep_read(self, fd: int, addr: int, length: int, offset: int, user_data: int, *,
                  force_async: bool = False) -> None:
        """read(fd) at offset (-1: the file's position, for a pipe or socket) into addr.
        force_async (IOSQE_ASYNC): skip the inline attempt, run it on an io-wq kernel worker."""
        self.sqe(IORING_OP_READ, fd, addr, length, offset & 0xFFFFFFFFFFFFFFFF,
                 user_data=user_data, flags=IOSQE_ASYNC if force_async else 0)

    def prep_read_fixed(self, fd: int, addr: int, length: int, offset: int, buf_index: int,
                        user_data: int) -> None:
        """read(fd) into registered buffer ``buf_index`` (IORING_REGISTER_BUFFERS): its pages
        were pinned once at registration, not for every read."""
        self.sqe(IORING_OP_READ_FIXED, fd, addr, length, offset & 0xFFFFFFFFFFFFFFFF,
                 user_data=user_data, buf_index=buf_index)

    def prep_accept(self, fd: int, user_data: int, *, multishot: bool = False) -> None:
        """accept4(fd, NULL, NULL, SOCK_CLOEXEC); multishot: one CQE per connection until an
        error stops it (no IORING_CQE_F_MORE on the last one)."""
        self.sqe(IORING_OP_ACCEPT, fd, op_flags=socket.SOCK_CLOEXEC, user_data=user_data,
                 ioprio=IORING_ACCEPT_MULTISHOT if multishot else 0)

    def prep_recv(self, fd: int, addr: int, length: int, user_data: int, flags: int = 0) -> None:
        """recv(fd) into our own buffer: the kernel writes there as soon as bytes arrive, so the
        buffer is pinned for as long as the recv is in flight."""
        self.sqe(IORING_OP_RECV, fd, addr, length, user_data=user_data, flags=flags)

    def prep_recv_select(self, fd: int, group: int, user_data: int, *, multishot: bool = False,
                         bundle: bool = False) -> None:
        """recv(fd) into a buffer the kernel picks from provided-buffer group ``group`` only when
        data arrives (IOSQE_BUFFER_SELECT); the CQE names it. multishot (6.0): stays armed.
        bundle (6.10): one completion may fill several buffers, the ring's next ones in order."""
        self.sqe(IORING_OP_RECV, fd, 0, 0, user_data=user_data, flags=IOSQE_BUFFER_SELECT,
                 buf_index=group, ioprio=(IORING_RECV_MULTISHOT if multishot else 0)
                 | (IORING_RECVSEND_BUNDLE if bundle else 0))

    def prep_send(self, fd: int, addr: int, length: int, user_data: int, flags: int = 0) -> None:
        """send(fd, addr, length, MSG_WAITALL | MSG_NOSIGNAL). On a stream socket MSG_WAITALL
        makes io_uring retry a short send itself (5.19+), so the CQE comes when all is sent or
        the connection failed; MSG_NOSIGNAL turns SIGPIPE into -EPIPE."""
        self.sqe(IORING_OP_SEND, fd, addr, length, 0, SEND_FLAGS, user_data, flags)

    def prep_send_zc(self, fd: int, addr: int, length: int, user_data: int,
                     buf_index: int | None = None) -> None:
        """send without copying (6.0): the NIC, or the receiving socket, reads our pages. Two
        CQEs: the send's (with F_MORE), then a notification (F_NOTIF) once the kernel let go of
        the buffer, which may be much later. With buf_index, from a registered buffer."""
        self.sqe(IORING_OP_SEND_ZC, fd, addr, length, 0, MSG_NOSIGNAL, user_data,
                 ioprio=IORING_RECVSEND_FIXED_BUF if buf_index is not None else 0,
                 buf_index=buf_index or 0)

    def prep_timeout(self, timespec_addr: int, user_data: int, count: int = 0) -> None:
        """A timer: its CQE (res -ETIME) comes after the kernel_timespec at timespec_addr, or
        (res 0) once ``count`` other CQEs were posted, if count > 0."""
        self.sqe(IORING_OP_TIMEOUT, -1, timespec_addr, 1, count, user_data=user_data)

    def prep_link_timeout(self, timespec_addr: int, user_data: int) -> None:
        """A deadline for the SQE before it (which must carry IOSQE_IO_LINK): if that request
        has not completed in time, the kernel cancels it (-ECANCELED) and this CQE says -ETIME."""
        self.sqe(IORING_OP_LINK_TIMEOUT, -1, timespec_addr, 1, user_data=user_data)

    def prep_cancel(self, target_user_data: int, user_data: int) -> None:
        """Cancel the request tagged target_user_data: it completes with -ECANCELED (a multishot
        one without F_MORE), and this SQE completes with 0, -ENOENT or -EALREADY."""
        self.sqe(IORING_OP_ASYNC_CANCEL, -1, target_user_data, user_data=user_data)

    def prep_close(self, fd: int, user_data: int) -> None:
        self.sqe(IORING_OP_CLOSE, fd, user_data=user_data)


def make_timespec(seconds: float) -> kernel_timespec:
    """A kernel_timespec for TIMEOUT or LINK_TIMEOUT: the kernel reads it when the SQE is
    submitted, so keep it alive until then."""
    return kernel_timespec(int(seconds), int(seconds % 1 * 1e9))


def address_of(buffer) -> int:
    """The address of a writable buffer (bytearray, ctypes object) for an SQE. The buffer must
    stay alive, unresized, until the operation's CQE arrives."""
    if isinstance(buffer, ctypes.Structure | ctypes.Array):
        return ctypes.addressof(buffer)
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
