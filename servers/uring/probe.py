"""What this kernel's io_uring offers, found by asking (IORING_REGISTER_PROBE) and by trying.

An older kernel answers -EINVAL to a flag it does not know, or refuses a registration, so each
optional feature the lab uses is tried once on a throwaway ring and socket pair, and the server
falls back where it is missing. ``python -m servers.uring`` prints what this kernel has.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import socket

from servers.uring.abi import (
    IO_URING_OP_SUPPORTED, IORING_CQE_F_MORE, IORING_FEAT_RECVSEND_BUNDLE,
    IORING_REGISTER_PROBE, OPCODE_NAMES, io_uring_probe, io_uring_probe_op,
)
from servers.uring.buffers import BufferRing
from servers.uring.ring import Ring, UringError

_PROBE_ACCEPT, _PROBE_RECV, _PROBE_CANCEL = 1, 2, 3
_PROBE_GROUP = 0x7FFF
OPTIONAL_FEATURES = ("multishot_accept", "pbuf_ring", "multishot_recv", "pbuf_inc",
                     "pbuf_min_left", "recv_bundle", "registered_ring")


def supported_opcodes(ring: Ring) -> set[int]:
    """IORING_REGISTER_PROBE (5.6+): which opcodes this kernel knows."""
    ops = 256

    class Probe(ctypes.Structure):
        _fields_ = [("head", io_uring_probe), ("ops", io_uring_probe_op * ops)]

    probe = Probe()
    ring.register(IORING_REGISTER_PROBE, ctypes.byref(probe), ops)
    return {op for op in range(min(probe.head.last_op + 1, ops))
            if probe.ops[op].flags & IO_URING_OP_SUPPORTED}


def _wait_cqe(ring: Ring, user_data: int) -> tuple[int, int, int] | None:
    for _ in range(8):  # bounded: each submit waits for at least one CQE
        ring.submit(wait_for=1)
        for cqe in ring.completions():
            if cqe[0] == user_data:
                return cqe
    return None


def _buffer_ring_accepts(ring: Ring, **options) -> bool:
    try:
        BufferRing(ring, _PROBE_GROUP, 1, 4096, **options).close()
    except UringError:
        return False
    return True


def probe_features(ring: Ring) -> dict[str, bool]:
    """Which of the lab's optional features this kernel has: multishot accept (5.19), a provided
    buffer ring (5.19), multishot recv (6.0), incremental buffer consumption (6.12), min_left
    on incremental buffers (newest), receive bundles (6.10), a registered ring fd (5.18). Uses
    a throwaway loopback listener and socket pair; leaves the ring as it found it (run it on a
    ring of its own, so that no late CQE of the probe's requests reaches a server)."""
    found = dict.fromkeys(OPTIONAL_FEATURES, False)
    found["recv_bundle"] = bool(ring.features & IORING_FEAT_RECVSEND_BUNDLE)
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
        found["pbuf_inc"] = _buffer_ring_accepts(ring, incremental=True)
        found["pbuf_min_left"] = found["pbuf_inc"] and _buffer_ring_accepts(
            ring, incremental=True, min_left=512)
        try:
            bufs = BufferRing(ring, _PROBE_GROUP, 1, 4096)
        except UringError:
            return found
        found["pbuf_ring"] = True
        try:
            ring.prep_recv_select(pair[0].fileno(), _PROBE_GROUP, _PROBE_RECV, multishot=True)
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
    with Ring(2) as other:  # registering changes how the ring is entered: not on the caller's
        found["registered_ring"] = other.register_ring_fd()
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
        ops = supported_opcodes(ring)
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
