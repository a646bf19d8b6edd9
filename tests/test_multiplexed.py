"""What the conformance suite cannot see in lesson 08's servers (and lesson 10's generators):
select()'s FD_SETSIZE wall, epoll's edge-triggered mode, and reading resumed after backpressure.

Every socket has a timeout, every thread a join bound, every server is killed in a finally.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import select
import socket
import sys
import threading
import time

import pytest

import servers
from servers import launch
from tests.echo_client import (
    connect, exchange, recv_until_eof, reset, round_trip_s, serves, tree_cpu_s, tree_rss_bytes,
)

MiB = 1 << 20
rng = random.Random(20261126)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="epoll is Linux-only")

EPOLL_EDGE = dataclasses.replace(servers.get("epoll"), options=("--edge",))


def payload(n: int) -> bytes:
    return rng.randbytes(n)


@pytest.fixture
def edge_server():
    running = launch.start(EPOLL_EDGE)
    try:
        yield running
    finally:
        running.kill()


# The servers of lessons 08 and 10 written here, epoll in both of its modes.
VARIANTS = [
    pytest.param(servers.get("select"), id="select"),
    pytest.param(servers.get("poll"), id="poll"),
    pytest.param(servers.get("epoll"), id="epoll", marks=linux_only),
    pytest.param(EPOLL_EDGE, id="epoll-edge", marks=linux_only),
    pytest.param(servers.get("generators"), id="generators"),
]


def stream_chunk(i: int) -> bytes:
    return random.Random(i).randbytes(256 * 1024)


def push_until_stalled(sock: socket.socket, limit_bytes: int) -> int:
    """Send without reading until send() makes no progress for 1 s: the server stopped reading
    from us. Returns the bytes sent; fails if ``limit_bytes`` went through without a stall."""
    sock.settimeout(1.0)
    chunk, pushed, deadline = payload(MiB), 0, time.monotonic() + 20
    while pushed < limit_bytes and time.monotonic() < deadline:
        try:
            pushed += sock.send(chunk)
        except TimeoutError:
            return pushed
    raise AssertionError(f"sent {pushed / MiB:.0f} MiB without the server ever stopping "
                         "to read from us: no backpressure")


# -- select: clients past FD_SETSIZE are refused, the rest are served --------------------------

N_CLIENTS = 1100  # enough that the last ones get descriptors past 1023 in the server


@pytest.fixture
def fd_limit_raised():
    """Raise this process's soft fd limit to its hard limit (the server inherits it)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = N_CLIENTS + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the hard fd limit ({hard}) is below the {needed} descriptors this test "
                    "needs; raise it (ulimit -Hn) to run it")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def closed_by_server(clients: list[socket.socket], expected: set[int]) -> set[int]:
    """Indices of the clients whose connection the server closed (EOF or reset), as seen by
    poll() (select() itself could not watch these descriptors in this process either). Waits
    until every index in ``expected`` is among them (at most 30 s), then 1 s more."""
    poller = select.poll()
    index_of = {sock.fileno(): i for i, sock in enumerate(clients)}
    for fd in index_of:
        poller.register(fd, select.POLLIN)
    closed: set[int] = set()
    deadline = time.monotonic() + 30
    settled_at = None
    while settled_at is None or time.monotonic() < settled_at:
        for fd, _events in poller.poll(200):
            closed.add(index_of[fd])  # nothing was sent on them: readable means EOF or RST
            poller.unregister(fd)
        if settled_at is None and (expected <= closed or time.monotonic() > deadline):
            settled_at = time.monotonic() + 1.0
    return closed


def test_select_refuses_clients_past_fd_setsize_and_keeps_serving(fd_limit_raised):
    server = launch.start(servers.get("select"))
    clients: list[socket.socket] = []
    try:
        for _ in range(N_CLIENTS):
            clients.append(connect(server.address))
        # The server accepts in order; a client whose server-side fd would be >= 1024 is closed
        # at once. The first ~1020 (fds 4..1023 in the server) are held.
        tail = set(range(N_CLIENTS - 50, N_CLIENTS))
        closed = closed_by_server(clients, expected=tail)
        assert tail <= closed, f"clients past FD_SETSIZE not closed: {sorted(tail - closed)[:10]}"
        assert not closed & set(range(900)), f"early clients were closed: {sorted(closed)[:10]}"
        assert len(closed) <= N_CLIENTS - 900
        for i in sorted(tail)[:5]:  # closed, not served: EOF or reset, never an echo
            clients[i].settimeout(5)
            try:
                clients[i].sendall(b"late")
                assert clients[i].recv(4) == b""
            except (ConnectionResetError, BrokenPipeError):
                pass
        assert server.proc.poll() is None, f"server died:\n{server.stderr_tail()}"

        held = [i for i in range(N_CLIENTS) if i not in closed]
        for i in held[:: len(held) // 20] + held[-3:]:  # early, middle and the last held ones
            round_trip_s(clients[i], payload(1000))
        for i in held[:100]:  # some clients leave: their descriptors below 1024 free up
            clients[i].close()
        assert serves(server.address, payload(5000), timeout_s=20), "no new client served"
        round_trip_s(clients[held[-1]], payload(70_000))  # still serving what it holds

        log = server.stderr_tail()
        assert "FD_SETSIZE" in log, f"no log line explains the refusals:\n{log}"
        assert "Traceback" not in log and "ValueError" not in log, log
        code, _elapsed = server.stop()  # SIGTERM with ~1000 clients connected
        assert code == 0, f"exit code {code} after SIGTERM"
    finally:
        for sock in clients:
            sock.close()
        server.kill()


# -- epoll --edge: the key conformance checks, on the mode that loses data when a loop is wrong --


@linux_only
@pytest.mark.parametrize("size", [1, 1460, 65537, 1 * MiB, 4 * MiB], ids=lambda n: f"{n}B")
def test_epoll_edge_echoes_payload_exactly(edge_server, size):
    assert "edge-triggered" in edge_server.ready_line
    data = payload(size)
    with connect(edge_server.address) as sock:
        assert exchange(sock, [data], timeout_s=60) == data


@linux_only
def test_epoll_edge_echoes_stream_of_random_fragments(edge_server):
    pieces = [payload(rng.randint(1, 3000)) for _ in range(3000)]
    with connect(edge_server.address) as sock:
        assert exchange(sock, pieces) == b"".join(pieces)


@linux_only
def test_epoll_edge_half_close_echoes_everything_then_closes(edge_server):
    data = payload(2 * MiB)
    with connect(edge_server.address) as sock:
        got = []
        reader = threading.Thread(target=lambda: got.append(recv_until_eof(sock, len(data))),
                                  daemon=True)
        reader.start()
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        reader.join(60)
        assert not reader.is_alive(), "server did not close after echoing a half-closed stream"
    assert got and got[0] == data


@linux_only
def test_epoll_edge_serves_100_concurrent_clients(edge_server):
    n_clients = 100
    barrier = threading.Barrier(n_clients, timeout=60)
    failures: list[str] = []

    def client(i: int):
        try:
            with connect(edge_server.address, timeout_s=30) as sock:
                barrier.wait()  # all connected before anyone talks
                round_trip_s(sock, payload(1000 + i))
        except Exception as exc:  # noqa: BLE001
            failures.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "some clients never finished"
    assert not failures, failures[:5]


@linux_only
def test_epoll_edge_client_that_never_reads_cannot_grow_server_memory(edge_server):
    before = tree_rss_bytes(edge_server.pid)
    hog = connect(edge_server.address)
    try:
        pushed = push_until_stalled(hog, limit_bytes=256 * MiB)
        with connect(edge_server.address) as other:  # meanwhile another client is served
            data = payload(64 * 1024)
            assert exchange(other, [data], timeout_s=20) == data
        grown = tree_rss_bytes(edge_server.pid) - before
        assert grown < 64 * MiB, f"grew {grown / MiB:.0f} MiB; client pushed {pushed / MiB:.0f} MiB"
    finally:
        reset(hog)


# -- every model here: a reader that stalls, then reads, gets every byte -----------------------
# Backpressure pauses reading; resuming is where an edge-triggered loop can lose its wake-up
# (the bytes were already waiting, no new edge comes) and a scheduler can forget a parked task.

@pytest.mark.parametrize("entry", VARIANTS)
def test_stalled_reader_gets_every_byte_once_it_reads(entry):
    with launch.start(entry) as server, connect(server.address) as sock:
        sent_digest, sent_bytes = hashlib.sha256(), 0
        sock.settimeout(1.0)
        # 1. push without reading until the server stops reading from us
        i = 0
        stalled = False
        deadline = time.monotonic() + 20
        while not stalled and time.monotonic() < deadline:
            chunk, offset = stream_chunk(i), 0
            while offset < len(chunk):
                try:
                    offset += sock.send(chunk[offset:])
                except TimeoutError:
                    stalled = True
                    break
            sent_digest.update(chunk[:offset])
            sent_bytes += offset
            if not stalled:
                i += 1
        assert stalled, "the server never stopped reading from a client that does not read"
        rest = chunk[offset:]

        # 2. now read everything, while sending the rest of the stream and a FIN
        got_digest, got = hashlib.sha256(), [0]

        def reader():
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    return
                got_digest.update(data)
                got[0] += len(data)

        sock.settimeout(30)
        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        sock.sendall(rest)
        sent_digest.update(rest)
        sent_bytes += len(rest)
        for j in range(i + 1, i + 9):  # 2 MiB more after the pause
            sock.sendall(stream_chunk(j))
            sent_digest.update(stream_chunk(j))
            sent_bytes += 256 * 1024
        sock.shutdown(socket.SHUT_WR)
        thread.join(60)
        assert not thread.is_alive(), (
            f"echo stalled after the pause: {got[0]} of {sent_bytes} bytes back")
        assert got[0] == sent_bytes
        assert got_digest.digest() == sent_digest.digest(), "echo differs from what was sent"


@pytest.mark.parametrize("entry", VARIANTS)
def test_reset_of_a_paused_connection_is_noticed(entry):
    # A client pushes until the server stops reading from it (output over the bound), then
    # resets. The server must notice (POLLHUP/POLLERR, or an error from send) and close the
    # connection: a level-triggered loop that ignores HUP on a paused fd spins forever.
    with launch.start(entry) as server, connect(server.address) as hog:
        push_until_stalled(hog, limit_bytes=256 * MiB)
        reset(hog)
        time.sleep(0.5)
        cpu0, t0 = tree_cpu_s(server.pid), time.monotonic()
        time.sleep(1.5)
        used = tree_cpu_s(server.pid) - cpu0
        elapsed = time.monotonic() - t0
        assert used < 0.5 * elapsed, f"server spins after a reset ({used:.2f} s CPU)"
        assert serves(server.address, payload(5000)), "server does not serve after the reset"
        assert server.proc.poll() is None
