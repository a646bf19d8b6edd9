"""What the event-loop servers (lesson 10) and reuseport (lesson 02) promise beyond the contract:
the loop they name is the loop that runs, and reuseport's workers really share the port."""

from __future__ import annotations

import re
import subprocess
import sys

import psutil
import pytest

import servers
from servers import launch
from tests.echo_client import connect, round_trip_s


def _start_or_skip(name: str, extra=()):
    entry = servers.get(name)
    ok, reason = entry.availability()
    if not ok:
        pytest.skip(f"{name} unavailable here: {reason}")
    return launch.start(entry, list(extra))


@pytest.mark.parametrize("name, loop", [("asyncio-streams", "asyncio"), ("uvloop-streams", "uvloop"),
                                        ("asyncio-protocol", "asyncio"), ("uvloop-protocol", "uvloop")])
def test_readiness_line_names_the_event_loop(name, loop):
    with _start_or_skip(name) as server:
        assert f"{loop} loop" in server.ready_line, server.ready_line


def test_gevent_names_its_loop_backend():
    with _start_or_skip("gevent") as server:
        assert re.search(r"gevent (libev|libuv)-\w+ loop", server.ready_line), server.ready_line
        assert "libev-cext" in server.ready_line, "the registry pins libev-cext"


def test_gevent_unknown_loop_backend_is_a_bad_option():
    entry = servers.get("gevent")
    if not entry.available:
        pytest.skip("gevent unavailable here")
    result = subprocess.run([sys.executable, "-m", entry.module, "--gevent-loop", "no-such-loop"],
                            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "--gevent-loop" in result.stderr


def _tcp_connections(pid: int):
    proc = psutil.Process(pid)
    # net_connections() since psutil 6.0; connections() before (the project allows >= 5.9)
    return getattr(proc, "net_connections", None) or proc.connections


def _listening_pids(port: int, pids: list[int]) -> set[int]:
    found = set()
    for pid in pids:
        try:
            conns = _tcp_connections(pid)(kind="tcp")
        except psutil.Error:
            continue
        if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns):
            found.add(pid)
    return found


def test_reuseport_each_worker_has_its_own_listener_and_gets_clients():
    with _start_or_skip("reuseport", ["--workers", "2"]) as server:
        children = [p.pid for p in psutil.Process(server.pid).children()]
        assert len(children) == 2
        # one listening socket per worker, none in the parent (it only holds the port)
        assert _listening_pids(server.port, children) == set(children)
        assert not _listening_pids(server.port, [server.pid])
        clients = [connect(server.address) for _ in range(40)]
        try:
            for sock in clients:
                round_trip_s(sock, b"ping")
            served_by = {}
            for pid in children:
                conns = _tcp_connections(pid)(kind="tcp")
                served_by[pid] = sum(c.status == psutil.CONN_ESTABLISHED for c in conns)
            assert sum(served_by.values()) == 40, served_by
            # the kernel hashes each connection to one listener: with 40 clients, both workers
            # get some unless the hash is broken (odds of all 40 on one worker: 2 ** -39)
            assert all(served_by.values()), served_by
        finally:
            for sock in clients:
                sock.close()


def test_reuseport_refuses_a_port_another_server_listens_on():
    # A plain listener (no SO_REUSEPORT) holds the port: reuseport must say "in use", not share.
    with _start_or_skip("threads") as other:
        entry = servers.get("reuseport")
        if not entry.available:
            pytest.skip("reuseport unavailable here")
        result = subprocess.run([sys.executable, *entry.argv, "--port", str(other.port)],
                                capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        assert result.returncode not in (0, None)
        assert re.search(r"in use", result.stderr, re.I), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
