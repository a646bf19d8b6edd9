"""The server contract (docs/contract.md), checked on every server in the registry.

Each test is parametrized over the registry, so a new server is checked by adding its registry
line. Everything here is behaviour: bytes echoed exactly, limits held, clean exits. Timing appears
only as generous bounds on behaviour the contract names (exit within 2 s; a Nagle stall is 40 ms).
"""

from __future__ import annotations

import random
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from servers import launch
from tests.echo_client import (
    connect, exchange, recv_until_eof, reset, round_trip_s, serves, tree_cpu_s,
    tree_rss_bytes,
)

MiB = 1 << 20
rng = random.Random(20261125)


def payload(n: int) -> bytes:
    return rng.randbytes(n)


def skip_if_serial(entry, why: str):
    if entry.serial:
        pytest.skip(f"{entry.name} serves one client at a time: {why}")


# -- readiness and defaults -----------------------------------------------------------------------


def documented_readiness_re() -> re.Pattern:
    """The regex docs/contract.md gives every black-box tool (the block after its marker)."""
    page = (Path(__file__).resolve().parent.parent / "docs" / "contract.md").read_text()
    found = re.search(r"<!-- readiness-regex -->\n```\n(.+)\n```", page)
    assert found, "docs/contract.md lost its readiness-regex block"
    return re.compile(found[1])


def test_readiness_line_names_server_and_loopback(server, entry):
    match = launch.READY_RE.match(server.ready_line)
    assert match["name"] == entry.name
    assert match["host"] == "127.0.0.1", "servers listen on loopback unless told otherwise"
    assert int(match["pid"]) == server.pid
    assert 0 < server.port < 65536
    # What any tool that follows docs/contract.md sees: exactly the documented regex.
    documented = documented_readiness_re().fullmatch(server.ready_line)
    assert documented, f"{server.ready_line!r} does not match the regex in docs/contract.md"
    assert documented.groups() == (entry.name, "127.0.0.1", str(server.port), str(server.pid))


def listen_queues(port: int) -> list[int]:
    """The accept-queue length of every socket listening on port (ss's Send-Q for a listener)."""
    try:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except FileNotFoundError:
        pytest.skip("ss is not installed: apt-get install iproute2")
    return [int(line.split()[2]) for line in out.splitlines() if line.strip()]


@pytest.mark.skipif(not Path("/proc/sys/net/core/somaxconn").exists(), reason="Linux only (/proc/sys/net/core)")
def test_default_listen_queue_is_the_same_for_every_server(server, entry):
    """Every server asks for 4096 by default (the kernel caps it at net.core.somaxconn): a shorter
    queue drops connections in a burst (Go's syscall.SOMAXCONN of 128 overflowed 1,800 times in
    5,000 connects), which would be the listen() call's figure, not the model's."""
    cap = int(Path("/proc/sys/net/core/somaxconn").read_text())
    queues = listen_queues(server.port)
    assert queues, f"nothing listens on port {server.port}"
    assert set(queues) == {min(4096, cap)}, f"{entry.name} listens with a queue of {queues}"


# -- echo, exactly --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 100, 1460, 65536, 65537, 1 * MiB, 16 * MiB],
                         ids=lambda n: f"{n}B")
def test_echoes_payload_exactly(server, size):
    data = payload(size)
    with connect(server.address) as sock:
        assert exchange(sock, [data], timeout_s=120) == data


def test_echoes_stream_of_random_fragments(server):
    pieces = [payload(rng.randint(1, 3000)) for _ in range(3000)]
    with connect(server.address) as sock:
        assert exchange(sock, pieces) == b"".join(pieces)


def test_half_close_echoes_everything_then_closes(server):
    data = payload(2 * MiB)
    with connect(server.address) as sock:
        got = []
        reader = threading.Thread(target=lambda: got.append(recv_until_eof(sock, len(data))))
        reader.start()
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # FIN: "I will send no more", still reading
        reader.join(60)
        assert not reader.is_alive(), "server did not close after echoing a half-closed stream"
    assert got and got[0] == data


def test_serves_200_concurrent_clients(server, entry):
    skip_if_serial(entry, "200 clients would be served one after another")
    n_clients = 200
    barrier = threading.Barrier(n_clients, timeout=60)
    failures: list[str] = []

    def client(i: int):
        data = payload(1000 + i)
        try:
            with connect(server.address, timeout_s=30) as sock:
                barrier.wait()  # all 200 connected at once before anyone talks
                round_trip_s(sock, data)  # asserts the echo is exact
        except Exception as exc:  # noqa: BLE001
            failures.append(f"client {i}: {exc!r}")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert not any(t.is_alive() for t in threads), "some clients never finished"
    assert not failures, failures[:5]


# -- abusive clients --------------------------------------------------------------------------------


def test_survives_resets_and_clients_that_leave_mid_transfer(server):
    for _ in range(20):  # reset while the server is echoing
        sock = connect(server.address)
        sock.sendall(payload(256 * 1024))
        reset(sock)
    for _ in range(3):  # write 8 MiB, read nothing, leave
        sock = connect(server.address)
        sock.settimeout(0.5)
        data, sent = payload(8 * MiB), 0
        try:
            while sent < len(data):
                sent += sock.send(data[sent:sent + MiB])
        except TimeoutError:
            pass  # the server stopped reading from us: back-pressure, as it should
        sock.close()
    assert server.proc.poll() is None, "server died"
    assert serves(server.address, payload(5000))


def test_client_that_never_reads_cannot_grow_server_memory(server, entry):
    before = tree_rss_bytes(server.pid)
    hog = connect(server.address)
    hog.settimeout(0.25)
    chunk, pushed, stalls = payload(MiB), 0, 0
    deadline = time.monotonic() + 15
    # Push up to 256 MiB without reading. A server with back-pressure stops reading from us once
    # its output for us is bounded; our send() then stalls. One that buffers grows instead.
    while pushed < 256 * MiB and time.monotonic() < deadline:
        try:
            pushed += hog.send(chunk)
            stalls = 0
        except TimeoutError:
            stalls += 1
            if stalls >= 3:
                break
    try:
        if not entry.serial:
            # Meanwhile another client is served normally.
            with connect(server.address) as other:
                data = payload(64 * 1024)
                assert exchange(other, [data], timeout_s=20) == data
        grown = tree_rss_bytes(server.pid) - before
        assert grown < 64 * MiB, (
            f"server grew {grown / MiB:.0f} MiB while a client sent {pushed / MiB:.0f} MiB "
            "without reading")
        assert server.proc.poll() is None
    finally:
        reset(hog)


def test_no_nagle_stall_on_round_trips(server):
    # A server that leaves Nagle on stalls a small write behind an unacknowledged one until the
    # client's delayed ACK fires: about 40 ms on Linux. A healthy loopback round trip is < 5 ms.
    with connect(server.address) as sock:
        for size in (10 * 1024, 100 * 1024):
            data = payload(size)
            times = sorted(round_trip_s(sock, data) for _ in range(25))
            median = times[len(times) // 2]
            assert median < 0.020, f"{size} B round trips take {median * 1000:.1f} ms (Nagle?)"


def test_idle_server_with_idle_connections_uses_no_cpu(server, entry):
    clients = [connect(server.address) for _ in range(1 if entry.serial else 20)]
    try:
        round_trip_s(clients[0], b"wake")
        time.sleep(0.3)  # let start-up and accept work finish
        cpu0, t0 = tree_cpu_s(server.pid), time.monotonic()
        time.sleep(1.0)  # a spinning server burns all of it; 5 % is 50 ms, five clock ticks
        used = tree_cpu_s(server.pid) - cpu0
        elapsed = time.monotonic() - t0
        assert used < 0.05 * elapsed, f"idle server used {used * 1000:.0f} ms CPU in {elapsed:.1f} s"
    finally:
        for c in clients:
            c.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE via prlimit: Linux")
def test_out_of_file_descriptors_neither_crashes_nor_spins(entry):
    with launch.start(entry, nofile=64) as server:
        clients = []
        try:
            for _ in range(100):  # the kernel completes these handshakes; accept() runs out of fds
                sock = connect(server.address)
                sock.sendall(b"x")
                clients.append(sock)
            time.sleep(0.5)  # the server has met EMFILE by now, and handles it as it will
            cpu0, t0 = tree_cpu_s(server.pid), time.monotonic()
            time.sleep(1.0)
            used = tree_cpu_s(server.pid) - cpu0
            assert used < 0.5 * (time.monotonic() - t0), f"server spins at EMFILE ({used:.2f} s CPU)"
            assert server.proc.poll() is None, f"server died at EMFILE:\n{server.stderr_tail()}"
            # at least one client was served: wait for any echo at all, not for each in turn
            served, deadline = 0, time.monotonic() + 5.0
            while not served and time.monotonic() < deadline:
                readable, _, _ = select.select(clients, [], [], max(0.0, deadline - time.monotonic()))
                for sock in readable:
                    try:
                        served += sock.recv(1) == b"x"
                    except OSError:
                        pass  # a client the server turned away (reset): not served, and no harm
                    clients.remove(sock)  # read once: an EOF would stay readable for ever
                    sock.close()
            assert served, "no client at all was served"
        finally:
            for sock in clients:
                sock.close()
        assert serves(server.address, timeout_s=20), "server does not serve again once fds free up"


# -- shutdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_clients_connected_exits_0_within_2s(entry, sig):
    server = launch.start(entry)
    clients = []
    try:
        for _ in range(5):
            sock = connect(server.address)
            clients.append(sock)
        round_trip_s(clients[0], b"hello")  # at least one connection is being served
        time.sleep(0.2)
        code, elapsed = server.signal_and_wait(sig)
        assert code == 0, f"exit code {code} after {signal.Signals(sig).name}:\n{server.stderr_tail()}"
        assert elapsed <= 2.0, f"took {elapsed:.2f} s to exit"
        left = server.group_pids()
        assert not left, f"processes left behind after exit: {left}"
    finally:
        for c in clients:
            c.close()
        server.kill()


# -- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [["--port", "x"], ["--port", "70000"], ["--no-such-option"],
                                 ["--work-us", "-5"]], ids=["port-x", "port-70000", "unknown", "work-neg"])
def test_bad_options_exit_2_without_traceback(entry, bad):
    result = subprocess.run([*entry.command, *bad], capture_output=True, text=True,
                            timeout=30, stdin=subprocess.DEVNULL, start_new_session=True)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip(), "exit 2 with no message"
    assert bad[-1] in result.stderr, f"the message names what was wrong ({bad[-1]}): {result.stderr}"
    assert result.stdout == "", "no readiness line for a server that did not start"


def test_port_in_use_is_a_one_line_error(server, entry):
    result = subprocess.run([*entry.command, "--port", str(server.port)],
                            capture_output=True, text=True, timeout=30,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    assert result.returncode not in (0, None)
    assert "Traceback" not in result.stderr
    assert re.search(r"in use", result.stderr, re.I), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_work_us_makes_round_trips_slower(entry):
    work_us = 20_000
    with launch.start(entry, ["--work-us", str(work_us)]) as server, connect(server.address) as sock:
        times = [round_trip_s(sock, b"w") for _ in range(5)]
    # one chunk received = one burn of 20 ms CPU, and CPU time never runs faster than the clock
    assert min(times) >= 0.95 * work_us / 1e6, f"round trips {times} shorter than the work"


def test_finished_clients_leave_no_zombie(server):
    for _ in range(10):
        with connect(server.address) as sock:
            round_trip_s(sock, b"ping")
    deadline = time.monotonic() + 5
    while True:  # a child that just exited is a zombie for a moment, until SIGCHLD is handled
        zombies = [pid for pid in server.group_pids(zombies=True) if _state(pid) == "Z"]
        if not zombies or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert not zombies, f"zombie processes not reaped: {zombies}"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return "gone"
    return stat[stat.rfind(b")") + 2:].split()[0].decode()
