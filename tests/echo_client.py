"""A small, careful echo client for the tests: every call bounded in time, every byte checked."""

from __future__ import annotations

import socket
import threading
import time

import psutil

from servers import launch

IO_TIMEOUT_S = 30.0


def connect(address, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(IO_TIMEOUT_S)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Read exactly n bytes, or fewer if the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_until_eof(sock: socket.socket, limit: int) -> bytes:
    buf = bytearray()
    while len(buf) <= limit:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk
    raise AssertionError(f"server sent more than the {limit} bytes it was given")


def exchange(sock: socket.socket, pieces: list[bytes], timeout_s: float = 60.0) -> bytes:
    """Write ``pieces`` while a reader thread reads the echo at the same time (a client that
    wrote everything before reading would deadlock any correct server on a large payload).
    Returns what came back; raises if the exchange does not finish in ``timeout_s``."""
    total = sum(len(p) for p in pieces)
    received: list[bytes] = []
    errors: list[BaseException] = []

    def reader():
        try:
            received.append(recv_exactly(sock, total))
        except BaseException as exc:  # noqa: BLE001 - reported to the caller
            errors.append(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    for piece in pieces:
        sock.sendall(piece)
    thread.join(timeout_s)
    if thread.is_alive():
        raise AssertionError(f"echo of {total} bytes did not finish within {timeout_s} s")
    if errors:
        raise errors[0]
    return received[0]


def round_trip_s(sock: socket.socket, payload: bytes) -> float:
    t0 = time.perf_counter()
    sock.sendall(payload)
    got = recv_exactly(sock, len(payload))
    elapsed = time.perf_counter() - t0
    assert got == payload, "echo differs from what was sent"
    return elapsed


def serves(address, payload: bytes = b"still serving?", timeout_s: float = 10.0) -> bool:
    """True once a new client gets its bytes back, retrying until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with connect(address, timeout_s=2.0) as sock:
                sock.settimeout(2.0)
                sock.sendall(payload)
                if recv_exactly(sock, len(payload)) == payload:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN (an abortive close)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def tree(pid: int) -> list[psutil.Process]:
    return launch.tree(pid)


def tree_rss_bytes(pid: int) -> int:
    total = 0
    for proc in tree(pid):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            pass
    return total


def tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process and its live children (and reaped children's)."""
    return launch.tree_cpu_s(pid) or 0.0
