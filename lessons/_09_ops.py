"""Lesson 09's requests beyond send and receive, each tried on the lab's ring (servers/uring):
a linked chain and what a failure does to the rest of it (IOSQE_IO_LINK), a deadline on a
receive that never completes (IORING_OP_LINK_TIMEOUT), the cancel of a pending receive
(IORING_OP_ASYNC_CANCEL), and a zero-copy send (IORING_OP_SEND_ZC, 6.0+) against a plain send of
1 MiB over loopback TCP. Each returns what the CQEs said, as text: res as an errno name.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import statistics
import tempfile
import threading
import time
from typing import TYPE_CHECKING

from servers import uring

if TYPE_CHECKING:
    from lessons.common import Lesson

ZC_BYTES = 1 << 20
IORING_SEND_ZC_REPORT_USAGE = 1 << 3  # 6.2, sqe->ioprio: the notification says if it copied
IORING_NOTIF_USAGE_ZC_COPIED = 1 << 31  # in the notification's res


def res_name(res: int) -> str:
    return f"-{errno.errorcode.get(-res, str(-res))}" if res < 0 else str(res)


def wait_cqes(ring: uring.Ring, count: int, timeout_s: float = 5.0) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(out)} of {count} CQEs within {timeout_s} s")
        ring.submit(wait_for=1)
        out.extend(ring.completions())
    return out


def linked_chains() -> tuple[str, str]:
    """A send linked to a recv on a socketpair, then the same chain with a send that fails."""
    a, b = socket.socketpair()
    data, buf = bytearray(b"x" * 64), bytearray(64)
    try:
        with uring.Ring(8) as ring:
            ring.prep_send(a.fileno(), uring.address_of(data), 64, 1, flags=uring.IOSQE_IO_LINK)
            ring.prep_recv(b.fileno(), uring.address_of(buf), 64, 2)
            ok = sorted(wait_cqes(ring, 2))
            bad = os.open(os.devnull, os.O_RDONLY)  # not a socket: the send fails (-ENOTSOCK)
            try:
                ring.prep_send(bad, uring.address_of(data), 64, 3, flags=uring.IOSQE_IO_LINK)
                ring.prep_recv(b.fileno(), uring.address_of(buf), 64, 4)
                failed = sorted(wait_cqes(ring, 2))
            finally:
                os.close(bad)
    finally:
        a.close()
        b.close()
    return (f"send {res_name(ok[0][1])}, then recv {res_name(ok[1][1])}",
            f"send {res_name(failed[0][1])}, then recv {res_name(failed[1][1])}")


def link_timeout(seconds: float = 0.05) -> tuple[str, float]:
    """A recv nobody sends to, with a LINK_TIMEOUT: (the CQEs, ms until both arrived)."""
    a, b = socket.socketpair()
    buf = bytearray(64)
    ts = uring.make_timespec(seconds)
    try:
        with uring.Ring(8) as ring:
            t0 = time.perf_counter()
            ring.prep_recv(b.fileno(), uring.address_of(buf), 64, 1, flags=uring.IOSQE_IO_LINK)
            ring.prep_link_timeout(uring.address_of(ts), 2)
            cqes = sorted(wait_cqes(ring, 2))
            ms = (time.perf_counter() - t0) * 1e3
    finally:
        a.close()
        b.close()
    return f"recv {res_name(cqes[0][1])}, timeout {res_name(cqes[1][1])}", ms


def cancel_pending() -> str:
    """A recv nobody sends to, then ASYNC_CANCEL of it by its user_data."""
    a, b = socket.socketpair()
    buf = bytearray(64)
    try:
        with uring.Ring(8) as ring:
            ring.prep_recv(b.fileno(), uring.address_of(buf), 64, 1)
            ring.submit()
            ring.prep_cancel(1, 2)
            cqes = sorted(wait_cqes(ring, 2))
    finally:
        a.close()
        b.close()
    return f"recv {res_name(cqes[0][1])}, cancel {res_name(cqes[1][1])}"


def sends(zero_copy: bool, count: int) -> tuple[float, float, str]:
    """``count`` sends of 1 MiB over loopback TCP, one in flight, a thread draining the other
    end: (µs per send, CQEs per send, what the notifications said about copying)."""
    listener = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(listener.getsockname())
    b, _ = listener.accept()
    listener.close()
    data = bytearray(os.urandom(ZC_BYTES))
    stop = threading.Event()

    def drain():
        sink = bytearray(ZC_BYTES)
        while not stop.is_set():
            if not b.recv_into(sink):
                return

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    cqes = copied = notifs = 0
    try:
        with uring.Ring(8) as ring:
            t0 = time.perf_counter()
            for i in range(count):
                if zero_copy:
                    ring.sqe(uring.IORING_OP_SEND_ZC, a.fileno(), uring.address_of(data), ZC_BYTES,
                             0, socket.MSG_NOSIGNAL | socket.MSG_WAITALL, i,
                             ioprio=IORING_SEND_ZC_REPORT_USAGE)
                else:
                    ring.prep_send(a.fileno(), uring.address_of(data), ZC_BYTES, i)
                done = False
                deadline = time.monotonic() + 5
                while not done:  # zero copy: the send's CQE (F_MORE), then the notification
                    if time.monotonic() > deadline:
                        raise RuntimeError("a send did not complete within 5 s")
                    ring.submit(wait_for=1)
                    for _, res, flags in ring.completions():
                        cqes += 1
                        if flags & uring.IORING_CQE_F_NOTIF:
                            notifs += 1
                            copied += bool(res & IORING_NOTIF_USAGE_ZC_COPIED)
                            done = True
                        elif res < 0:
                            raise OSError(-res, f"send: {os.strerror(-res)}")
                        elif not flags & uring.IORING_CQE_F_MORE:
                            done = True
            us = (time.perf_counter() - t0) / count * 1e6
    finally:
        stop.set()
        a.close()
        drainer.join(5)
        b.close()
    said = (f"{copied} of {notifs} copied by the kernel after all" if notifs
            else "no notification (a plain send)")
    return us, cqes / count, said


FIXED_BYTES, FIXED_FILE_BYTES = 256 * 1024, 8 << 20


def reads(path: str, fixed: bool, count: int) -> float:
    """µs per 256 KiB read of a cached file, one in flight: READ into a plain buffer, or
    READ_FIXED into one registered (IORING_REGISTER_BUFFERS: its pages pinned once, at
    registration, instead of for every read)."""
    buf = bytearray(FIXED_BYTES)
    addr = uring.address_of(buf)
    fd = os.open(path, os.O_RDONLY)
    try:
        with uring.Ring(8) as ring:
            if fixed:
                vec = uring.iovec(addr, FIXED_BYTES)
                ring.register(uring.IORING_REGISTER_BUFFERS, ctypes.byref(vec), 1)
            slots = FIXED_FILE_BYTES // FIXED_BYTES
            t0 = time.perf_counter()
            for i in range(count):
                off = (i % slots) * FIXED_BYTES
                if fixed:
                    ring.prep_read_fixed(fd, addr, FIXED_BYTES, off, 0, i)
                else:
                    ring.prep_read(fd, addr, FIXED_BYTES, off, i)
                (_, res, _), = wait_cqes(ring, 1)
                if res != FIXED_BYTES:
                    raise OSError(-res if res < 0 else 0, f"read: {res_name(res)}")
            return (time.perf_counter() - t0) / count * 1e6
    finally:
        os.close(fd)


# -- the lesson's sections over them (lessons/09_async_io.py runs them) ---------------------------


OPS_LABELS = ("linked send then recv", "linked chain whose first request fails",
              "recv with a 50 ms LINK_TIMEOUT", "time until both CQEs, LINK_TIMEOUT 50 ms",
              "ASYNC_CANCEL of a pending recv", "time per 1 MiB send, SEND",
              "time per 1 MiB send, SEND_ZC", "CQEs per send, SEND", "CQEs per send, SEND_ZC",
              "SEND_ZC notifications")


def ops_section(lesson: Lesson, uring_ok: bool, uring_why: str | None) -> None:
    """Links, a link timeout, a cancel and a zero-copy send, tried (lessons/_09_py)."""
    lesson.section("links, timeouts, cancels, zero copy: what the CQEs say")
    if not uring_ok:
        lesson.skip_all(OPS_LABELS, uring_why)
        return
    with uring.Ring(8) as ring:
        have = uring.supported_opcodes(ring)
    needs = {uring.IORING_OP_LINK_TIMEOUT: "LINK_TIMEOUT (5.5+)",
             uring.IORING_OP_ASYNC_CANCEL: "ASYNC_CANCEL (5.5+)", uring.IORING_OP_SEND: "SEND (5.6+)"}
    missing = [what for op, what in needs.items() if op not in have]
    if missing:
        lesson.skip_all(OPS_LABELS, f"this kernel's io_uring lacks {', '.join(missing)}")
        return
    try:
        ok, failed = linked_chains()
    except (OSError, RuntimeError, uring.UringError) as exc:  # a kernel that answers otherwise
        lesson.skip_all(OPS_LABELS, f"{type(exc).__name__}: {exc}")
        return
    lesson.measure(OPS_LABELS[0], ok)
    lesson.measure(OPS_LABELS[1], failed)
    cqes, ms = link_timeout(0.05)
    lesson.measure(OPS_LABELS[2], cqes)
    lesson.measure(OPS_LABELS[3], ms, "ms", fmt=".1f")
    lesson.measure(OPS_LABELS[4], cancel_pending())
    count = 50 if lesson.quick else 300
    us, per, _ = sends(False, count)
    lesson.measure(OPS_LABELS[5], us, "µs", fmt=".0f")
    lesson.measure(OPS_LABELS[7], per, fmt=".2f")
    if uring.IORING_OP_SEND_ZC not in have:
        lesson.skip_all((OPS_LABELS[6], OPS_LABELS[8], OPS_LABELS[9]), "this kernel's io_uring has no SEND_ZC (6.0+)")
        return
    try:  # IORING_SEND_ZC_REPORT_USAGE is 6.2+: a 6.0 or 6.1 kernel answers -EINVAL
        us, per, said = sends(True, count)
    except (OSError, RuntimeError) as exc:
        lesson.skip_all((OPS_LABELS[6], OPS_LABELS[8], OPS_LABELS[9]), f"SEND_ZC with IORING_SEND_ZC_REPORT_USAGE (6.2+): {exc}")
        return
    lesson.measure(OPS_LABELS[6], us, "µs", fmt=".0f")
    lesson.measure(OPS_LABELS[8], per, fmt=".2f")
    lesson.measure(OPS_LABELS[9], said)


def fixed_reads(lesson: Lesson, uring_ok: bool, uring_why: str | None) -> None:
    """READ against READ_FIXED (a registered buffer), interleaved rounds, medians."""
    labels = ("time per 256 KiB read, READ", "time per 256 KiB read, READ_FIXED")
    if not uring_ok:
        lesson.skip_all(labels, uring_why)
        return
    count, rounds = (200, 3) if lesson.quick else (1000, 7)
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.NamedTemporaryFile(prefix="lesson09-") as f:
        f.write(os.urandom(FIXED_FILE_BYTES))
        f.flush()
        for r in range(rounds):
            for fixed in ((False, True) if r % 2 == 0 else (True, False)):
                times[fixed].append(reads(f.name, fixed, count))
    for fixed, label in zip((False, True), labels, strict=True):
        lesson.measure(label, statistics.median(times[fixed]), "µs", fmt=".1f")
