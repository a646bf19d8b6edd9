"""Tests of the load generator (bench/load/) and its histograms (bench/hist.py).

The echo servers here are small in-process ones on a thread, each with a knob to misbehave (corrupt
a byte, reorder, echo stale bytes, stall once, never answer, hang up), so each test shows one thing
the generator must catch. Everything is on loopback, every run is short, and no assertion depends
on how fast this machine is: thresholds are behavioural ("a 300 ms stall is seen by many requests"),
never "at least N requests per second". Every process a test starts is checked to be gone after it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from bench import hist, load
from bench.load import c_engine as engine_module
from bench.load import contract, handshake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULT_KEYS = {
    "mode", "conns", "conns_established", "size_bytes", "duration_s", "requests", "rps",
    "bytes_per_s", "latency_us", "hist", "latency_out_of_range", "errors", "client_cpu_s",
    "client_cpu_util", "client_workers", "client_cpus", "window_start_ns", "window_end_ns",
    "engine",
}
LATENCY_KEYS = {"p50", "p90", "p99", "p99_9", "p99_99", "max", "mean", "count"}
ERROR_KINDS = {"connect", "reset", "mismatch", "unserved", "timeout"}


# -- An in-process echo server with knobs for misbehaving ------------------------------------------


class EchoServer:
    """Echo on 127.0.0.1, one thread, selectors; `transform(conn_state, data)` may spoil replies.

    stall_at_s / stall_s: once, `stall_at_s` after the first byte arrived, sleep `stall_s` (the
    whole server stops, like a GC pause or a blocking call in an event loop).
    silent: read but never answer. hang_up_after: close each connection after that many replies.
    serve_only: answer only the first N connections accepted; read the others but never answer.
    """

    def __init__(self, *, transform=None, stall_at_s=None, stall_s=0.0, silent=False,
                 hang_up_after=None, serve_only=None):
        self.transform = transform
        self.serve_only = serve_only  # answer only the first N connections accepted
        self.accepted = 0
        self.stall_at_s, self.stall_s = stall_at_s, stall_s
        self.silent = silent
        self.hang_up_after = hang_up_after
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, None)
        self.stopping = threading.Event()
        self.first_data_at = None
        self.stalled = False
        self.thread = threading.Thread(target=self._serve, name="test echo server", daemon=True)

    def __enter__(self) -> EchoServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join(10)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            for key, _ in self.selector.select(timeout=0.02):
                if key.data is None:
                    self._accept()
                else:
                    self._echo(key.fileobj, key.data)
            self._maybe_stall()

    def _accept(self) -> None:
        try:
            sock, _ = self.listener.accept()
        except BlockingIOError:
            return
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5.0)  # sendall may block briefly; never forever
        self.accepted += 1
        served = self.serve_only is None or self.accepted <= self.serve_only
        self.selector.register(sock, selectors.EVENT_READ,
                               {"replies": 0, "previous": None, "served": served})

    def _echo(self, sock, state) -> None:
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(sock)
            sock.close()
            return
        if self.first_data_at is None:
            self.first_data_at = time.monotonic()
        if self.silent or not state["served"]:
            return
        reply = self.transform(state, data) if self.transform else data
        try:
            sock.sendall(reply)
        except OSError:
            pass
        state["replies"] += 1
        if self.hang_up_after is not None and state["replies"] >= self.hang_up_after:
            self.selector.unregister(sock)
            sock.close()

    def _maybe_stall(self) -> None:
        if (self.stall_at_s is not None and not self.stalled and self.first_data_at is not None
                and time.monotonic() - self.first_data_at >= self.stall_at_s):
            self.stalled = True
            time.sleep(self.stall_s)


def flip_a_byte_every(n: int):
    counter = {"chunks": 0}

    def transform(state, data: bytes) -> bytes:
        counter["chunks"] += 1
        if counter["chunks"] % n:
            return data
        spoiled = bytearray(data)
        spoiled[len(spoiled) // 2] ^= 0x01
        return bytes(spoiled)
    return transform


def swap_halves_every(n: int):
    counter = {"chunks": 0}

    def transform(state, data: bytes) -> bytes:
        counter["chunks"] += 1
        if counter["chunks"] % n or len(data) < 2:
            return data
        half = len(data) // 2
        return data[half:] + data[:half]
    return transform


def echo_the_previous_message(state, data: bytes) -> bytes:
    """A stale echo: the right length, the bytes of the message before."""
    previous, state["previous"] = state["previous"], data
    return previous if previous is not None and len(previous) == len(data) else data


def closed_port() -> int:
    """A loopback port with nothing listening on it (connect is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children() -> list[psutil.Process]:
    """Child processes of this one, except multiprocessing's resource tracker: that one is started
    once with the first "spawn" worker and stays until this process exits, by design."""
    children = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "resource_tracker" not in " ".join(child.cmdline()):
                children.append(child)
        except psutil.Error:
            pass  # it just exited
    return children


@pytest.fixture(autouse=True)
def no_processes_left_behind():
    """Every test must leave no worker process behind, whatever happened."""
    before = {p.pid for p in _children()}
    yield
    deadline = time.monotonic() + 5
    while True:
        left = [p for p in _children() if p.pid not in before]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for proc in left:
        proc.kill()
    assert not left, f"processes left behind: {[p.pid for p in left]}"


def run(port: int, **options) -> dict:
    options = {"conns": 4, "size": 1024, "duration": 1.0, "warmup": 0.2, "workers": 2, **options}
    result = load.run_load("127.0.0.1", port, **options)
    if options.get("engine"):
        assert result["engine"] == options["engine"]
    return result


# Both engines pass the same tests: the ones that take `engine` run once with each.
C_ENGINE_OK, C_ENGINE_WHY = engine_module.available()
ENGINE_PARAMS = [
    pytest.param("c", id="c", marks=pytest.mark.skipif(
        not C_ENGINE_OK, reason=f"C engine unavailable: {C_ENGINE_WHY}")),
    pytest.param("python", id="python"),
]


@pytest.fixture(params=ENGINE_PARAMS)
def engine(request) -> str:
    return request.param


# -- (a) histograms merge across workers -----------------------------------------------------------


def test_merging_encoded_histograms_gives_the_union():
    first, second, together = hist.new_histogram(), hist.new_histogram(), hist.new_histogram()
    for value_us in range(1, 1001):
        first.record_value(value_us)
        together.record_value(value_us)
    for value_us in range(1001, 5001):
        second.record_value(value_us)
        together.record_value(value_us)

    merged = hist.merge([hist.encode(first), hist.encode(second)])

    assert merged.get_total_count() == 5000
    assert hist.summarize(merged) == hist.summarize(together)
    summary = hist.summarize(merged)
    assert summary["count"] == 5000
    # 3 significant digits: values are exact to 1 µs below 2048, to 0.1 % above
    assert abs(summary["p50"] - 2500) <= 3
    assert abs(summary["p90"] - 4500) <= 5
    assert abs(summary["max"] - 5000) <= 5


def test_the_mean_is_hdrhs_own_mean():
    """hist.mean walks the counts array instead of hdrh's slow iterator: the same figure, to the
    last bit, over values from 1 µs to past 60 s and with repeats."""
    import random

    rng = random.Random(7)
    histogram = hist.new_histogram()
    for _ in range(20_000):
        histogram.record_value(min(hist.HIGHEST_US, int(rng.lognormvariate(6, 1.5)) + 1))
    histogram.record_value(hist.HIGHEST_US, 3)
    assert hist.mean(histogram) == histogram.get_mean_value() > 0
    assert hist.mean(hist.new_histogram()) == 0.0
    assert hist.summarize(histogram)["mean"] == round(histogram.get_mean_value(), 1)


def test_latency_counter_clamps_out_of_range_values_and_keeps_them():
    counter = hist.LatencyCounter()
    for value_us in (0, 50, 50, 70, 61_000_000):
        counter.record(value_us)
    decoded = hist.decode(counter.encoded())
    assert decoded.get_total_count() == 5  # nothing dropped
    assert counter.out_of_range == 2  # 0 µs and 61 s
    assert hist.summarize(decoded)["max"] >= hist.HIGHEST_US  # the 61 s shows, as 60 s


def test_a_real_run_merges_the_histograms_of_its_workers(echo_server, engine):
    result = run(echo_server.port, conns=4, workers=2, engine=engine)
    assert result["client_workers"] == 2
    merged = hist.decode(result["hist"])
    assert merged.get_total_count() == result["requests"] == result["latency_us"]["count"]
    assert result["requests"] > 0


# -- (b) the open-loop schedule and coordinated omission -------------------------------------------


def test_open_loop_sends_are_evenly_spaced_at_the_rate():
    conns, rate = 7, 1000.0
    intended = sorted(
        first + k * interval
        for g in range(conns)
        for first, interval in [load.open_loop_schedule(g, conns, rate, start_ns=10**12)]
        for k in range(50))
    gaps_ns = {b - a for a, b in zip(intended, intended[1:], strict=False)}
    assert max(gaps_ns) - min(gaps_ns) <= 2  # rounding to whole ns only
    assert abs(sum(gaps_ns) / len(gaps_ns) - 1e9 / rate) <= 2
    assert intended[0] == 10**12


@pytest.mark.timeout(90)
def test_open_loop_charges_a_stall_to_every_request_it_delayed(engine):
    """A 300 ms stall of the whole server, once, at 1000 requests/s.

    Open loop keeps the schedule, so the ~300 requests due during the stall all wait, and their
    latency counts from when they were due: the stall shows in the tail. A closed loop would have
    sent nothing during the stall and seen just one slow request per connection.
    """
    with EchoServer(stall_at_s=0.6, stall_s=0.3) as server:
        result = run(server.port, conns=4, rate=1000.0, duration=2.0, warmup=0.3, workers=1,
                     engine=engine)
        assert server.stalled

    assert result["mode"] == "open" and result["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    latencies = hist.decode(result["hist"])
    slow = hist.count_at_or_above(latencies, 100_000)  # at least 100 ms
    assert result["latency_us"]["max"] >= 250_000
    assert slow >= 50, f"only {slow} requests saw the stall"  # about 200 expected
    assert result["latency_us"]["p99"] >= 100_000
    assert result["send_lag_us"]["max"] >= 100_000  # they queued on their connections
    assert result["offered_rps"] > 0


@pytest.mark.timeout(90)
def test_closed_loop_hides_the_same_stall_that_open_loop_shows(engine):
    """The same stall measured closed-loop: only about one request per connection sees it."""
    with EchoServer(stall_at_s=0.6, stall_s=0.3) as server:
        closed = run(server.port, conns=4, duration=2.0, warmup=0.3, workers=1, engine=engine)
    with EchoServer(stall_at_s=0.6, stall_s=0.3) as server:
        opened = run(server.port, conns=4, rate=1000.0, duration=2.0, warmup=0.3, workers=1,
                     engine=engine)
    slow_closed = hist.count_at_or_above(hist.decode(closed["hist"]), 100_000)
    slow_open = hist.count_at_or_above(hist.decode(opened["hist"]), 100_000)
    assert slow_open > slow_closed


# -- (c) the byte check ----------------------------------------------------------------------------


@pytest.mark.parametrize("transform", [
    pytest.param(flip_a_byte_every(50), id="flip-one-byte"),
    pytest.param(swap_halves_every(20), id="reorder"),
    pytest.param(echo_the_previous_message, id="stale"),
])
def test_a_corrupting_server_is_caught(transform, engine):
    with EchoServer(transform=transform) as server:
        result = run(server.port, conns=4, duration=1.0, warmup=0.0, engine=engine)
    assert result["errors"]["mismatch"] > 0
    # a mismatching connection is closed, never retried: at most one mismatch per connection
    assert result["errors"]["mismatch"] <= result["conns_established"]
    assert result["conns_open_at_end"] == result["conns_established"] - result["errors"]["mismatch"]
    assert "mismatch" in result["error_examples"]


# -- (d) a correct server --------------------------------------------------------------------------


@pytest.fixture
def echo_server():
    with EchoServer() as server:
        yield server


def test_closed_loop_against_a_correct_server(echo_server, engine):
    result = run(echo_server.port, conns=4, duration=1.0, warmup=0.2, workers=2, engine=engine)
    assert RESULT_KEYS <= result.keys()
    assert result["mode"] == "closed"
    assert result["conns_established"] == 4
    assert result["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    assert result["requests"] > 0
    assert result["rps"] == pytest.approx(result["requests"] / result["duration_s"])
    assert result["bytes_per_s"] == pytest.approx(result["rps"] * 1024)
    assert set(result["latency_us"]) == LATENCY_KEYS
    lat = result["latency_us"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["p99_99"] <= lat["max"]
    assert result["latency_out_of_range"] == 0
    assert result["client_cpu_s"] > 0 and result["client_cpu_util"] > 0
    assert result["window_end_ns"] - result["window_start_ns"] == 1_000_000_000
    json.dumps(result)  # the --json output is this dict


def test_open_loop_result_has_its_extra_keys(echo_server, engine):
    result = run(echo_server.port, conns=4, rate=400.0, duration=1.0, warmup=0.2, engine=engine)
    assert result["mode"] == "open" and result["rate"] == 400.0
    assert set(result["send_lag_us"]) == {"p50", "p99", "max"}
    assert result["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    # the schedule, not the server, sets the pace: no more round trips than were scheduled
    assert 0 < result["requests"] <= 400 * (0.2 + 1.0) + 4
    assert result["offered_rps"] == pytest.approx(400, abs=5)  # 400 sends due in the window


def test_messages_larger_than_a_read_are_checked_in_pieces(echo_server, engine):
    result = run(echo_server.port, conns=2, size=300_000, duration=0.5, warmup=0.1,
                 engine=engine)
    assert result["requests"] > 0
    assert result["errors"] == dict.fromkeys(ERROR_KINDS, 0)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU pinning is Linux-only")
def test_workers_can_be_pinned(echo_server, engine):
    cpu = load.available_cpus()[0]
    result = run(echo_server.port, conns=2, workers=None, cpus=[cpu], duration=0.5,
                 engine=engine)
    assert result["client_cpus"] == [cpu] and result["client_workers"] == 1
    assert result["requests"] > 0


# -- (e) a server that is not there, or hangs, or hangs up -----------------------------------------


def test_a_closed_port_gives_connect_errors_not_an_exception(engine):
    started = time.monotonic()
    result = run(closed_port(), conns=4, duration=5.0, engine=engine)
    assert result["errors"]["connect"] == 4
    assert result["conns_established"] == 0 and result["requests"] == 0
    assert "connect" in result["error_examples"]
    assert result["warnings"]
    assert time.monotonic() - started < 30  # nothing to measure: it does not sit out the 5 s


@pytest.mark.timeout(60)
def test_a_server_that_never_answers_leaves_every_connection_unserved_in_bounded_time(engine):
    with EchoServer(silent=True) as server:
        started = time.monotonic()
        closed = run(server.port, conns=3, duration=1.5, warmup=0.0, engine=engine)
        opened = run(server.port, conns=3, duration=1.5, warmup=0.0, rate=100.0, engine=engine)
        elapsed_s = time.monotonic() - started
    for result in (closed, opened):
        # no echo at all: counted once per connection, not also as timeouts
        assert result["requests"] == 0
        assert result["errors"]["unserved"] == 3 and result["errors"]["timeout"] == 0
        assert "no echo at all" in result["error_examples"]["unserved"]
    assert elapsed_s < 2 * (1.5 + load.SPAWN_BUDGET_S + load.WRAPUP_BUDGET_S)


@pytest.mark.timeout(60)
def test_connections_a_server_never_serves_are_unserved_the_others_measured(engine):
    # Like a pool of 2 threads: the first two connections are served, the third never is.
    with EchoServer(serve_only=2) as server:
        result = run(server.port, conns=3, duration=1.5, warmup=0.0, workers=1, engine=engine)
    assert result["requests"] > 0
    assert result["errors"]["unserved"] == 1 and result["errors"]["timeout"] == 0


@pytest.mark.timeout(60)
def test_open_loop_connections_not_yet_asked_long_enough_are_not_unserved(engine):
    # 20 connections at 10 requests/s in total: connection g first sends at g / 10 s. A server
    # that never answers has left connections 0..4 waiting past the 1 s stall limit by the end
    # (1.45 s); connections 5..14 were asked too recently to tell, 15..19 not asked at all.
    with EchoServer(silent=True) as server:
        result = run(server.port, conns=20, rate=10.0, duration=1.45, warmup=0.0, workers=1,
                     engine=engine)
    assert result["errors"]["unserved"] == 5 and result["errors"]["timeout"] == 0


def test_stall_limit_grows_with_connections_by_littles_law():
    # 16 connections at 20,000 round trips/s wait 0.8 ms each in turn: the 1 s limit holds.
    assert load.stall_limit_s(16, 40_000, 2.0, None) == load.STALL_TIMEOUT_S
    # 10,000 connections at 20,000/s wait 0.5 s in perfect turn: a timeout is 10 x that.
    assert load.stall_limit_s(10_000, 40_000, 2.0, None) == pytest.approx(
        load.STALL_FAIR_SHARES * 0.5)
    # open loop keeps the fixed limit: its schedule, not the server, sets the pace
    assert load.stall_limit_s(10_000, 40_000, 2.0, 20_000.0) == load.STALL_TIMEOUT_S
    assert load.stall_limit_s(10, 0, 2.0, None) == load.STALL_TIMEOUT_S  # nothing completed


def test_a_name_that_does_not_resolve_gives_connect_errors_not_an_exception(engine):
    # .invalid never resolves (RFC 6761); the C engine used to end its handshake early here
    result = load.run_load("nonexistent.invalid", 9000, conns=2, size=64, duration=1.0,
                           warmup=0.0, engine=engine)
    assert result["errors"]["connect"] == 2 and result["requests"] == 0
    assert result["conns_established"] == 0 and "connect" in result["error_examples"]
    assert "no connection could be established; nothing was measured" in result["warnings"]


def test_a_server_that_hangs_up_gives_resets(engine):
    with EchoServer(hang_up_after=5) as server:
        result = run(server.port, conns=4, duration=1.0, warmup=0.0, engine=engine)
    assert result["errors"]["reset"] == 4
    assert result["errors"]["mismatch"] == 0


def test_bad_arguments_to_run_load_raise_value_error():
    for bad in ({"conns": 0}, {"size": -1}, {"duration": 0}, {"rate": -5.0}, {"workers": 0},
                {"engine": "fortran"}):
        with pytest.raises(ValueError):
            load.run_load("127.0.0.1", 9, **{"conns": 1, "size": 1, "duration": 1.0, **bad})


# -- the handshake: one driver for both engines ------------------------------------------------------


class FakeWorker:
    """A handshake.Worker with no process behind it: says what it is told, notes what it gets."""

    def __init__(self, name: str, ready, result=None):
        self.name, self._ready, self._result = name, ready, result
        self.got: list = []  # ("start", start_ns) or "stop", in order

    def ready(self, deadline: float) -> dict:
        if isinstance(self._ready, Exception):
            raise self._ready
        return self._ready

    def start(self, start_ns: int) -> None:
        self.got.append(("start", start_ns))

    def stop(self) -> None:
        self.got.append("stop")

    def result(self, deadline: float) -> dict:
        if isinstance(self._result, Exception):
            raise self._result
        return self._result


def test_the_handshake_starts_every_worker_at_one_time_and_announces_the_window_first():
    calls = []
    first = FakeWorker("w0", {"conns_established": 2, "connect_s": 0.25},
                       contract.worker_result(conns_established=2))
    second = FakeWorker("w1", {"conns_established": 1, "connect_s": 0.5},
                        handshake.Lost("sent no complete result in time"))
    results, start_ns, notes = handshake.drive(
        [first, second], ready_by=time.monotonic() + 1, warmup=0.2, duration=1.0,
        on_window=lambda a, b: calls.append((time.monotonic_ns(), a, b)))
    assert first.got == second.got == [("start", start_ns)]  # one start time for all
    ((called_ns, window_start_ns, window_end_ns),) = calls
    assert called_ns < start_ns < window_start_ns == start_ns + 200_000_000
    assert window_end_ns == window_start_ns + 1_000_000_000
    # the worker without a result is named; the other's result is kept, with its connect time
    assert [(r["conns_established"], r["connect_s"]) for r in results] == [(2, 0.25)]
    assert notes == ["w1 sent no complete result in time; its connections are missing from the "
                     "result"]


def test_the_handshake_measures_nothing_when_a_worker_is_not_ready_and_says_who():
    ready = FakeWorker("w0", {"conns_established": 2, "connect_s": 0.1},
                       contract.worker_result(conns_established=2))
    gone = FakeWorker("w1", handshake.Lost("exited (code 1) before it was ready"))
    results, start_ns, notes = handshake.drive([ready, gone], ready_by=time.monotonic() + 1,
                                               warmup=0.0, duration=1.0,
                                               on_window=lambda *_: pytest.fail("no window"))
    assert start_ns is None and ready.got == gone.got == ["stop"]
    assert [r["conns_established"] for r in results] == [2]  # what the ready one reports
    assert notes == ["a worker failed to get ready; nothing was measured",
                     "w1 exited (code 1) before it was ready; its connections are missing from "
                     "the result"]


def test_a_worker_result_holds_what_the_summary_reads_and_nothing_else():
    empty = contract.worker_result()  # a worker that measured nothing
    summary = contract.summarize([empty], host="h", port=1, conns=1, size=8, rate=None,
                                 duration=1.0, warmup=0.0, n_workers=1, cpus=None, cores=1,
                                 loop_name="-", result_warnings=[], start_ns=None, engine="c")
    assert summary["requests"] == 0 and summary["errors"] == dict.fromkeys(ERROR_KINDS, 0)
    with pytest.raises(TypeError, match="latency_hist"):
        contract.worker_result(latency_hist="")  # a misspelt field is an error, not a new key


# -- (f) the command line --------------------------------------------------------------------------


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.load", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout_s)


@pytest.mark.parametrize("args", [
    pytest.param([], id="no-target"),
    pytest.param(["--target", "localhost"], id="no-port"),
    pytest.param(["--target", "127.0.0.1:99999"], id="port-out-of-range"),
    pytest.param(["--target", "127.0.0.1:x"], id="port-not-a-number"),
    pytest.param(["--target", "127.0.0.1:9", "--conns", "0"], id="zero-conns"),
    pytest.param(["--target", "127.0.0.1:9", "--size", "-5"], id="negative-size"),
    pytest.param(["--target", "127.0.0.1:9", "--duration", "soon"], id="duration-not-a-number"),
    pytest.param(["--target", "127.0.0.1:9", "--rate", "0"], id="zero-rate"),
    pytest.param(["--target", "127.0.0.1:9", "--cpus", "one"], id="cpus-not-a-list"),
    pytest.param(["--target", "127.0.0.1:9", "--cpus", "4096"], id="cpu-not-available"),
    pytest.param(["--target", "127.0.0.1:9", "--warmup", "-1"], id="negative-warmup"),
    pytest.param(["--target", "127.0.0.1:9", "--frobnicate"], id="unknown-option"),
    pytest.param(["--target", "127.0.0.1:9", "--engine", "fortran"], id="unknown-engine"),
])
def test_bad_options_exit_2_with_a_message(args):
    done = cli(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "usage:" in done.stderr and "error:" in done.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE via preexec: Linux")
def test_too_few_file_descriptors_is_refused_with_the_fix(engine):
    import resource

    def low_hard_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    # The C engine raises the hard limit itself where it may (as root): ask for more files than
    # even root may have (fs.nr_open is at most 2^30), so the refusal shows for every user.
    conns = "1000" if engine == "python" else str(2**31 - 1000)
    done = subprocess.run([sys.executable, "-m", "bench.load", "--target", "127.0.0.1:9",
                           "--conns", conns, "--workers", "1", "--engine", engine], cwd=ROOT,
                          text=True, capture_output=True, timeout=60, preexec_fn=low_hard_limit)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ulimit" in done.stderr and "256" in done.stderr
    assert load.fd_shortfall(10, 1) is None


def test_a_bad_option_message_names_the_fix():
    done = cli("--target", "127.0.0.1:9", "--conns", "0")
    assert "--conns 16" in done.stderr  # an example of a correct use


def test_cli_json_output(echo_server, engine):
    done = cli("--target", f"127.0.0.1:{echo_server.port}", "--conns", "2", "--duration", "0.5",
               "--warmup", "0.1", "--json", "--engine", engine)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert RESULT_KEYS <= result.keys() and result["requests"] > 0
    assert result["engine"] == engine


def test_cli_human_output(echo_server):
    done = cli("--target", f"127.0.0.1:{echo_server.port}", "--conns", "2", "--duration", "0.5",
               "--warmup", "0.1")
    assert done.returncode == 0, done.stderr
    for label in ("requests", "throughput", "latency", "p99", "errors", "client CPU"):
        assert label in done.stdout


def test_cli_against_a_closed_port_explains_and_exits_1(engine):
    done = cli("--target", f"127.0.0.1:{closed_port()}", "--conns", "2", "--duration", "1",
               "--engine", engine)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "connect" in done.stdout and "is the server running?" in done.stderr


# -- no orphans ------------------------------------------------------------------------------------


def _start_cli_and_wait_for_workers(port: int, workers: int,
                                    engine: str) -> tuple[subprocess.Popen, list]:
    """Start the CLI; return it and its children: `workers` worker processes of the Python
    engine, or the C engine's one process (its workers are threads)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--target", f"127.0.0.1:{port}", "--conns", "2",
         "--workers", str(workers), "--duration", "60", "--warmup", "0", "--engine", engine],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group, like a job in a terminal
    if engine == "c":
        workers = 1
    deadline = time.monotonic() + 30
    children: list = []
    try:
        while time.monotonic() < deadline and len(children) < workers:
            time.sleep(0.1)
            children = [c for c in psutil.Process(proc.pid).children() if _is_worker(c)]
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return proc, children


def _is_worker(child: psutil.Process) -> bool:
    """A load worker, not multiprocessing's resource tracker nor a short-lived helper the CLI ran
    (a build or a probe) that has exited and is not yet reaped: a zombie has no command line."""
    try:
        return child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


@pytest.mark.timeout(90)
def test_ctrl_c_stops_the_workers(echo_server, engine):
    proc, workers = _start_cli_and_wait_for_workers(echo_server.port, 2, engine)
    try:
        assert len(workers) == (2 if engine == "python" else 1)
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert "Traceback" not in stderr
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.timeout(90)
def test_workers_exit_when_the_parent_is_killed(echo_server, engine):
    proc, workers = _start_cli_and_wait_for_workers(echo_server.port, 2, engine)
    try:
        assert len(workers) == (2 if engine == "python" else 1)
        proc.kill()  # SIGKILL: the parent cannot clean up; the workers notice their pipe closed
        proc.wait(10)
        gone, alive = psutil.wait_procs(workers, timeout=15)
        assert not alive
    finally:
        for worker in workers:
            if worker.is_running():
                worker.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
