"""Tests of the C load engine (bench/load/c_engine.py and engine.c): its HdrHistogram port against
`hdrh`, its fallback, its window and its source addresses. The behaviour both engines share (byte check, coordinated
omission, error kinds, --target, the command line) is tested once per engine in test_load.py.

Everything talks to loopback; no assertion depends on how fast this machine is.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import pytest

from bench import hist, load
from bench.load import c_engine, contract
from servers import build
from tests.test_load import EchoServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
C_OK, C_WHY = c_engine.available()
needs_c = pytest.mark.skipif(not C_OK, reason=f"C engine unavailable: {C_WHY}")


# -- the HdrHistogram port -----------------------------------------------------------------------


def c_histogram(values: list[int]):
    """Record `values` with the engine's own code (--hist-selftest), read back as hdrh."""
    done = subprocess.run([str(c_engine.binary()), "--hist-selftest"], text=True,
                          input=" ".join(map(str, values)), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    parsed = c_engine.parse_result(done.stdout.splitlines())
    return hist.decode(parsed["hist"]), parsed["latency_out_of_range"]


def python_histogram(values: list[int]):
    """The same values the way the Python engine records them (bench/hist.py)."""
    counter = hist.LatencyCounter()
    for value in values:
        counter.record(value)
    return hist.decode(counter.encoded()), counter.out_of_range


EDGES = [0, 1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 2050, 4095, 4096, 4097, 65_535, 65_536,
         999_999, 1_000_000, 33_554_431, 33_554_432, 59_999_999, 60_000_000, 60_000_001,
         67_108_863, 10**9]


@needs_c
def test_c_histogram_matches_hdrh_on_values_from_1_us_to_60_s():
    rng = random.Random(17)
    # log-uniform from 1 µs to 60 s, so every bucket of the range is exercised, plus the edges
    values = [int(10 ** rng.uniform(0, 7.78)) for _ in range(5000)] + EDGES
    ours, ours_out = c_histogram(values)
    theirs, theirs_out = python_histogram(values)

    assert ours.get_total_count() == theirs.get_total_count() == len(values)
    # clamped into 1 µs .. 60 s and counted, never dropped: 0, the edges past 60 s, and the
    # random values that fell past 60 s
    clamped = sum(not hist.LOWEST_US <= v <= hist.HIGHEST_US for v in values)
    assert clamped >= 4 and ours_out == theirs_out == clamped
    assert list(ours.counts) == list(theirs.counts)  # bucket by bucket
    assert hist.summarize(ours) == hist.summarize(theirs)
    percentiles = [0.1, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 99.999, 100]
    assert ours.get_percentile_to_value_dict(percentiles) == \
        theirs.get_percentile_to_value_dict(percentiles)
    assert ours.get_max_value() == theirs.get_max_value()
    assert ours.get_min_value() == theirs.get_min_value()
    assert ours.get_mean_value() == theirs.get_mean_value()
    assert hist.count_at_or_above(ours, 100_000) == hist.count_at_or_above(theirs, 100_000)


@needs_c
def test_every_bucket_of_the_range_has_hdrhs_index_and_value():
    """One value per bucket, at each bucket's lowest value: the engine must file each in its own
    bucket under the same value hdrh gives it (value_from_index, counts_index)."""
    reference = hist.new_histogram()
    lowest = sorted({reference.get_value_from_index(i) for i in range(reference.counts_len)})
    lowest = [v for v in lowest if hist.LOWEST_US <= v <= hist.HIGHEST_US]
    ours, out_of_range = c_histogram(lowest)
    assert out_of_range == 0
    recorded = [(item.value_iterated_to, item.count_at_value_iterated_to)
                for item in ours.get_recorded_iterator()]
    for value in lowest:
        reference.record_value(value)
    expected = [(item.value_iterated_to, item.count_at_value_iterated_to)
                for item in reference.get_recorded_iterator()]
    assert recorded == expected and len(recorded) == len(lowest)


# -- the contract: one source for both engines ------------------------------------------------------


@needs_c
def test_the_engines_own_formulas_give_contract_pys_figures():
    """engine.c writes the stall limit and the open-loop schedule again, in C (its constants come
    from contract.py as -D flags): on the same inputs, the same figures, to the nanosecond."""
    stalls = [(16, 40_000, 2.0, None), (10_000, 40_000, 2.0, None), (100_000, 12_345, 1.5, None),
              (10_000, 40_000, 2.0, 20_000.0), (10, 0, 2.0, None), (3, 7, 0.0, None)]
    schedules = [(0, 1, 1.0), (3, 7, 1000.0), (99_999, 100_000, 10_000.0), (12, 64, 333.3),
                 (5, 50, float(contract.MAX_RATE_PER_S)), (1, 3, 2e9 / 5)]  # the last: a tie
    lines = [f"stall {o} {c} {w!r} {r or 0.0!r}" for o, c, w, r in stalls]
    lines += [f"schedule {g} {total} {rate!r}" for g, total, rate in schedules]
    done = subprocess.run([str(c_engine.binary()), "--contract-selftest"], text=True,
                          input="\n".join(lines), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = done.stdout.splitlines()
    assert len(got) == len(lines)
    assert [float(v) for v in got[:len(stalls)]] == [contract.stall_limit_s(*s) for s in stalls]
    assert [tuple(map(int, v.split())) for v in got[len(stalls):]] == \
        [contract.open_loop_schedule(g, total, rate, start_ns=0) for g, total, rate in schedules]


@needs_c
def test_a_constant_changed_in_contract_py_rebuilds_the_engine_with_it(monkeypatch, tmp_path):
    """The engine's constants are contract.py's, passed as -D flags: the build cache hashes the
    flags, so a changed value gives a new engine that uses it, with no edit to engine.c."""
    before = c_engine.binary()
    monkeypatch.setattr(build, "CACHE", tmp_path)  # the new build goes here, not the shared cache
    monkeypatch.setattr(contract, "STALL_TIMEOUT_S", 2.5)
    after = c_engine.binary()
    assert after != before and after.is_relative_to(tmp_path)
    done = subprocess.run([str(after), "--contract-selftest"], text=True, capture_output=True,
                          input="stall 1 1000 1.0 0\n", timeout=60)
    assert float(done.stdout) == 2.5 == contract.stall_limit_s(1, 1000, 1.0, None)


# -- choosing the engine ---------------------------------------------------------------------------


def _without_compiler(tmp_path) -> dict:
    """An environment where the engine cannot be built: no compiler, an empty build cache."""
    return {**os.environ, "CC": "/nonexistent/cc", "LAB_BUILD_DIR": str(tmp_path / "cache")}


def test_without_a_compiler_bench_load_falls_back_to_python_and_says_why(tmp_path):
    with EchoServer() as server:
        done = subprocess.run(
            [sys.executable, "-m", "bench.load", "--target", f"127.0.0.1:{server.port}",
             "--conns", "2", "--duration", "0.3", "--warmup", "0", "--json"],
            cwd=ROOT, text=True, capture_output=True, timeout=120, env=_without_compiler(tmp_path))
    assert done.returncode == 0, done.stderr
    notices = [line for line in done.stderr.splitlines() if "Python engine" in line]
    assert len(notices) == 1  # one line
    assert "C compiler" in notices[0] and "apt-get install gcc" in notices[0]  # why, and the fix
    assert '"engine": "python"' in done.stdout


def test_asking_for_the_c_engine_without_a_compiler_exits_2_with_the_fix(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bench.load", "--target", "127.0.0.1:9", "--engine", "c"],
        cwd=ROOT, text=True, capture_output=True, timeout=120, env=_without_compiler(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--engine" in done.stderr and "apt-get install gcc" in done.stderr


# -- the window, the keys, the sources -------------------------------------------------------------


@needs_c
def test_on_window_is_called_before_the_window_with_its_edges():
    calls = []

    def on_window(start_ns, end_ns):
        calls.append((time.monotonic_ns(), start_ns, end_ns))

    with EchoServer() as server:
        result = load.run_load("127.0.0.1", server.port, conns=2, size=1024, duration=0.5,
                               warmup=0.2, engine="c", on_window=on_window)
    ((called_ns, start_ns, end_ns),) = calls
    assert called_ns < start_ns  # in time for the sampler's first reading
    assert (start_ns, end_ns) == (result["window_start_ns"], result["window_end_ns"])
    assert end_ns - start_ns == 500_000_000
    assert result["requests"] > 0 and result["engine"] == "c"


@needs_c
def test_both_engines_return_the_same_keys():
    with EchoServer() as server:
        keys = {}
        for engine in load.ENGINES:
            for rate in (None, 200.0):
                result = load.run_load("127.0.0.1", server.port, conns=2, size=512, duration=0.3,
                                       warmup=0.1, rate=rate, engine=engine)
                keys[engine, rate] = set(result)
                assert result["engine"] == engine and result["requests"] > 0
    assert keys["c", None] == keys["python", None]
    assert keys["c", 200.0] == keys["python", 200.0]


def test_sources_are_spread_only_past_the_per_source_share():
    assert c_engine.sources_for("127.0.0.1", c_engine.CONNS_PER_SOURCE) == 1
    assert c_engine.sources_for("127.0.0.1", c_engine.CONNS_PER_SOURCE + 1) == 2
    many = -(-100_000 // c_engine.CONNS_PER_SOURCE)  # ceil
    assert c_engine.sources_for("127.0.0.1", 100_000) == many > 1
    assert c_engine.sources_for("localhost", 100_000) == many
    assert c_engine.sources_for("10.1.2.3", 100_000) == 1  # not loopback: one source
    assert c_engine.sources_for("::1", 100_000) == 1  # the engine speaks IPv4


class PeerRecordingServer(EchoServer):
    """An echo server that notes each connection's source address."""

    def __init__(self):
        super().__init__()
        self.peers: list[str] = []

    def _accept(self) -> None:
        try:
            sock, peer = self.listener.accept()
        except BlockingIOError:
            return
        self.peers.append(peer[0])
        self.listener_accepted(sock)

    def listener_accepted(self, sock) -> None:
        import selectors
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(5.0)
        self.selector.register(sock, selectors.EVENT_READ,
                               {"replies": 0, "previous": None, "served": True})


@needs_c
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="127.0.0.0/8 on lo: Linux")
def test_connections_are_spread_over_loopback_source_addresses(monkeypatch):
    monkeypatch.setattr(c_engine, "CONNS_PER_SOURCE", 2)  # 6 connections: 3 sources
    with PeerRecordingServer() as server:
        result = load.run_load("127.0.0.1", server.port, conns=6, size=256, duration=0.3,
                               warmup=0.1, workers=1, engine="c")
    assert result["errors"] == dict.fromkeys(load.ERROR_KINDS, 0)
    assert result["conns_established"] == 6 and result["requests"] > 0
    assert sorted(server.peers) == ["127.0.0.1"] * 2 + ["127.0.0.2"] * 2 + ["127.0.0.3"] * 2


def test_port_shortfall_counts_the_sources():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = map(int, f.read().split())
    ports = high - low + 1
    too_many = ports + 1
    assert "ip_local_port_range" in load.port_shortfall("127.0.0.1", too_many, "python")
    if C_OK and ports > c_engine.CONNS_PER_SOURCE:
        assert load.port_shortfall("127.0.0.1", too_many, "c") is None
    assert load.port_shortfall("127.0.0.1", 100, "python") is None


@needs_c
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NOFILE via preexec: Linux")
@pytest.mark.timeout(120)
def test_the_engine_raises_its_soft_fd_limit_for_more_than_1024_connections():
    import resource

    def soft_limit_1024():
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))

    if (load.fd_hard_limit() or 10**9) < 1600:
        pytest.skip("the hard fd limit is below 1,600 here")
    with EchoServer() as server:
        proc = subprocess.Popen(
            [str(c_engine.binary()), "--host", "127.0.0.1", "--port", str(server.port),
             "--conns", "1500", "--size", "64", "--warmup", "0", "--duration", "0.3",
             "--threads", "1", "--connect-timeout", "5", "--connect-budget", "60",
             "--ramp-batch", "250", "--ramp-pause", "0.02", "--start-wait", "30"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=soft_limit_1024)
        try:
            ready = proc.stdout.readline().strip()
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            rest, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    assert ready.split()[:2] == ["ready", "1500"]  # all connected: the soft limit was raised
    assert "error connect 0" in rest.splitlines()


@needs_c
def test_past_the_per_process_fd_limit_several_engines_share_one_schedule(monkeypatch):
    """RLIMIT_NOFILE is per process: past it the connections are spread over several engine
    processes, which start together and keep one open-loop schedule, as if they were one."""
    monkeypatch.setattr(c_engine, "per_process_conns", lambda: 2)  # 6 connections: 3 processes
    with EchoServer() as server:
        closed = load.run_load("127.0.0.1", server.port, conns=6, size=256, duration=0.5,
                               warmup=0.1, workers=1, engine="c")
        opened = load.run_load("127.0.0.1", server.port, conns=6, size=256, duration=1.0,
                               warmup=0.2, workers=1, rate=300.0, engine="c")
    for result in (closed, opened):
        assert result["errors"] == dict.fromkeys(load.ERROR_KINDS, 0), result["error_examples"]
        assert result["conns_established"] == 6 and result["requests"] > 0
        assert result["client_workers"] == 3  # one thread in each of the 3 processes
    assert opened["offered_rps"] == pytest.approx(300, abs=5)  # one schedule, not three
    assert opened["requests"] <= 300 * 1.2 + 6


@needs_c
def test_a_caller_holding_more_than_1024_files_can_run_the_engine():
    """The wrapper waits on the engine's pipes with poll, not select (FD_SETSIZE is 1024): a
    caller such as a test with an in-process server may hold thousands of sockets."""
    import resource
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 1200:
        pytest.skip("this process may not open 1,200 files")
    held = [socket.socket() for _ in range(1100)]  # the engine's pipes get fds past 1024
    try:
        with EchoServer() as server:
            result = load.run_load("127.0.0.1", server.port, conns=2, size=64, duration=0.3,
                                   warmup=0.0, engine="c")
    finally:
        for sock in held:
            sock.close()
    assert result["requests"] > 0 and result["errors"] == dict.fromkeys(load.ERROR_KINDS, 0)


@needs_c
def test_headroom_measures_every_client_in_every_round_and_writes_the_figures(tmp_path, capsys):
    """`python -m bench headroom`: each round measures the C engine, the minimal client and the
    Python engine against c-epoll, in a rotating order; the summary is each engine's ratio to the
    minimal client, said against the goal."""
    import json

    import servers
    from bench import headroom

    if not servers.get("c-epoll").available:
        pytest.skip("the C reference is unavailable here")
    code = headroom.main(["--rounds", "3", "--conns", "4", "--measure-s", "0.15",
                          "--warmup-s", "0.05", "--out", str(tmp_path)])
    assert code == 0
    record = json.loads((tmp_path / "headroom.json").read_text())
    assert [r["order"][0] for r in record["rounds"]] == list(headroom.CLIENTS)  # rotates
    for r in record["rounds"]:
        assert all(r[c]["rps"] > 0 for c in headroom.CLIENTS), r
    summary = record["summary"]
    assert summary["minimal"]["vs_minimal"] == 1.0
    assert summary["engine-c"]["vs_minimal"] > 0 and summary["engine-c"]["vs_minimal_ci95"] is None
    assert record["machine"]["cores_logical"] and record["params"]["rounds"] == 3
    out = capsys.readouterr().out
    assert "of the minimal client" in out and "the goal of 0.95" in out


def test_headroom_rejects_bad_options_with_exit_2(capsys):
    from bench import headroom

    with pytest.raises(SystemExit) as exc:
        headroom.main(["--measure-s", "0"])
    assert exc.value.code == 2 and "--measure-s must be above 0" in capsys.readouterr().err


@needs_c
def test_alternating_with_a_second_server_splits_the_window_and_keeps_their_figures_apart():
    """run_load(alt=...): both servers echo in alternating slices of one window, each byte
    checked; each gets about half the window, its own requests, latencies and errors. An
    alternate that hangs up on every connection costs the target nothing: its errors are its own."""
    with EchoServer() as target, EchoServer() as alt:
        result = load.run_load("127.0.0.1", target.port, conns=4, size=512, duration=0.4,
                               warmup=0.05, engine="c", alt=("127.0.0.1", alt.port))
    other = result["alt"]
    assert result["slice_s"] == pytest.approx(0.025) and 0.4 / result["slice_s"] % 2 == 0
    assert sum(result["errors"].values()) == 0 and other["errors"] == 0
    assert result["conns_established"] == other["conns_established"] == 4
    assert result["requests"] > 100 and other["requests"] > 100
    # each was active in its own slices: together the window, each near half of it
    assert result["active_s"] + other["active_s"] == pytest.approx(0.4, abs=0.01)
    assert result["active_s"] > 0.05 and other["active_s"] > 0.05  # each had its slices
    assert result["rps"] == pytest.approx(result["requests"] / result["active_s"], rel=1e-4)
    assert other["latency_us"]["count"] == other["requests"]

    with EchoServer() as target, EchoServer(hang_up_after=3) as alt:
        result = load.run_load("127.0.0.1", target.port, conns=4, size=512, duration=0.3,
                               warmup=0.05, engine="c", alt=("127.0.0.1", alt.port))
    assert sum(result["errors"].values()) == 0 and result["requests"] > 100
    assert result["alt"]["errors"] == 4  # every alternate connection was reset


def test_alternating_needs_the_c_engine_and_a_closed_loop():
    with pytest.raises(ValueError, match="alt"):
        load.run_load("127.0.0.1", 9, conns=1, size=8, duration=0.1, rate=100.0, engine="c",
                      alt=("127.0.0.1", 10))
    with pytest.raises(ValueError, match="alt"):
        load.run_load("127.0.0.1", 9, conns=1, size=8, duration=0.1, engine="python",
                      alt=("127.0.0.1", 10))


def _echo_epoll_pids() -> set[str]:
    pids = set()
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and b"echo_epoll" in open(f"/proc/{p}/cmdline", "rb").read():
                pids.add(p)
        except OSError:
            pass
    return pids


@needs_c
def test_headroom_stopped_by_sigterm_keeps_its_rounds_and_leaves_no_server(tmp_path):
    import json

    import servers
    if not servers.get("c-epoll").available:
        pytest.skip("the C reference is unavailable here")
    before = _echo_epoll_pids()
    proc = subprocess.Popen([sys.executable, "-m", "bench", "headroom", "--rounds", "100",
                             "--conns", "4", "--measure-s", "0.1", "--warmup-s", "0.02",
                             "--out", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        for line in proc.stdout:
            if line.startswith("  round  1:"):
                break
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "SIGTERM: stopped after" in err
    record = json.loads((tmp_path / "headroom.json").read_text())
    assert record["interrupted"] == "SIGTERM" and 1 <= len(record["rounds"]) < 100
    time.sleep(0.2)
    assert not (_echo_epoll_pids() - before), "the reference server was left running"
