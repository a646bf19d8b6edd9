"""A server of the registry under the lab's load generator, for the lessons that compare servers.

    r = loaded("prefork", cpus=(server_cpus, client_cpus), seconds=4.0)
    r["rps"], r["latency_us"]["p99"]
    per_s, median_us = connection_per_request(server.address, seconds, max_requests)

``loaded`` starts the server (servers.launch, pinned to its CPUs), drives it with bench.load's
closed loop (LOAD_CONNS connections, one LOAD_SIZE_BYTES message in flight each), lets ``then``
measure more while it runs, and stops it whatever happens. Lessons 02 (reuseport, 1 and 2 workers)
and 04 (fork against prefork) use it; lessons/cpus.py's split_by_core chooses the CPUs.
"""

from __future__ import annotations

import socket
import statistics
import time

import servers
import servers.launch

LOAD_CONNS = 32
LOAD_SIZE_BYTES = 64


def loaded(name: str, extra: list[str] | None = None, cpus=(None, None), seconds: float = 4.0,
           then=None) -> dict:
    """Start `name` (with `extra` options) on cpus[0], load it from cpus[1] for `seconds` after a
    warm-up, and return bench.load's summary; ``then(server)``'s result is under "then"."""
    from bench.load import run_load  # imported here: multiprocessing's spawn children re-import
    # the lessons that use this, and need not pay for the load generator's imports

    server_cpus, client_cpus = cpus
    server = servers.launch.start(servers.get(name), extra or [], cpus=server_cpus)
    try:
        result = run_load(server.host, server.port, conns=LOAD_CONNS, size=LOAD_SIZE_BYTES,
                          duration=seconds, warmup=min(1.0, seconds / 2), cpus=client_cpus)
        if then:
            result["then"] = then(server)
        return result
    finally:
        server.stop()


def connection_per_request(address, seconds: float, max_requests: int) -> tuple[float, float]:
    """connect, send 64 bytes, read the echo, close; again and again for `seconds` (at most
    `max_requests` times). Returns (connections per second, median µs per connection)."""
    payload = b"x" * LOAD_SIZE_BYTES
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(times) < max_requests:
        t0 = time.perf_counter()
        with socket.create_connection(address, timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(payload)
            received = 0
            while received < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection before echoing")
                received += len(chunk)
        times.append((time.perf_counter() - t0) * 1e6)
    return len(times) / sum(times) * 1e6, statistics.median(times)


def unavailable(name: str) -> str | None:
    """None if the registry has `name` and it runs here, else why not."""
    if name not in servers.BY_NAME:
        return f"no {name!r} server in the registry (python -m servers lists them)"
    ok, reason = servers.get(name).availability()
    return None if ok else reason
