"""io_uring beyond the contract: the probe tells the truth (and why not, where io_uring is refused),
and the server really runs its I/O through a ring: an idle connection is a recv the kernel holds."""

from __future__ import annotations

import errno
import os
import re
import sys
import time
import types

import pytest

import servers
from servers import io_uring_server, launch
from tests.echo_client import connect, round_trip_s

ENTRY = servers.get("io_uring")
AVAILABLE, REASON = ENTRY.availability()
needs_io_uring = pytest.mark.skipif(not AVAILABLE, reason=f"io_uring unavailable here: {REASON}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd: Linux")
def test_probe_is_consistent_and_leaves_no_fd_open():
    before = os.listdir("/proc/self/fd")
    answers = {io_uring_server.probe() for _ in range(20)}
    assert os.listdir("/proc/self/fd") == before, "the probe leaked a descriptor (the ring's?)"
    assert len(answers) == 1
    (answer,) = answers
    assert answer is None or (isinstance(answer, str) and answer.strip())


def test_probe_says_why_when_io_uring_setup_is_refused(monkeypatch):
    # What a Docker container's default seccomp profile, or kernel.io_uring_disabled=2, does.
    def refuse(entries, ring):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    fake = types.SimpleNamespace(Ring=object, io_uring_queue_init=refuse)
    monkeypatch.setattr(io_uring_server, "uring", fake)
    monkeypatch.setattr(sys, "platform", "linux")
    reason = io_uring_server.probe()
    assert reason.startswith("io_uring_setup failed: EPERM"), reason
    assert "seccomp" in reason
    if AVAILABLE:  # the registry passes the probe's words on, so the suite skips with them
        assert ENTRY.availability() == (False, reason)


def test_probe_without_the_package_or_off_linux(monkeypatch):
    monkeypatch.setattr(io_uring_server, "uring", None)
    monkeypatch.setattr(sys, "platform", "linux")
    assert "liburing" in io_uring_server.probe()
    monkeypatch.setattr(sys, "platform", "darwin")
    assert io_uring_server.probe().startswith("Linux-only")


@needs_io_uring
def test_idle_connections_are_recv_requests_held_by_the_kernel():
    import liburing

    recv = int(liburing.io_uring_op.IORING_OP_RECV)
    accept = int(liburing.io_uring_op.IORING_OP_ACCEPT)
    with launch.start(ENTRY) as server:
        clients = [connect(server.address) for _ in range(3)]
        try:
            for sock in clients:
                round_trip_s(sock, b"hi")
            rings = []
            for fd in os.listdir(f"/proc/{server.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{server.pid}/fd/{fd}") == "anon_inode:[io_uring]":
                        rings.append(fd)
                except OSError:
                    pass
            assert len(rings) == 1, "the server should hold exactly one io_uring"
            # fdinfo lists the requests the kernel has parked waiting for their socket: one
            # accept on the listener and one recv per idle connection; no thread waits for them.
            deadline = time.monotonic() + 10
            while True:
                with open(f"/proc/{server.pid}/fdinfo/{rings[0]}") as f:
                    info = f.read()
                if "PollList:" not in info:
                    pytest.skip("this kernel's io_uring fdinfo does not list pending requests")
                ops = sorted(int(op) for op in re.findall(r"op=(\d+)", info.split("PollList:")[1]))
                if ops == sorted([accept] + [recv] * 3) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)  # the recv is re-armed just after the echo was sent
            assert ops == sorted([accept] + [recv] * 3), info
        finally:
            for sock in clients:
                sock.close()
