"""The bench pipeline end to end (smoke profile), and the runner's verdicts on broken servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import servers
from bench import load as load_gen
from bench import results
from bench.run import cli, guard, profiles, subject, verdict
from bench.run.measure import beside_possible, measure
from bench.run import runner as bench_runner
from servers import launch

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_profile_runs_the_whole_pipeline(tmp_path):
    names = [n for n in ("threads", "select") if servers.get(n).available]
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--servers", ",".join(names),
         "--out", str(tmp_path), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout + result.stderr
    (run_dir,) = tmp_path.iterdir()
    assert str(run_dir) in result.stdout, "the run directory is printed"
    meta = json.loads((run_dir / "meta.json").read_text())
    for key in ("machine", "python", "packages", "pinning", "limits", "git_commit", "io_uring",
                "gevent_backend", "duration_s"):
        assert key in meta, key
    assert meta["machine"]["cores_logical"] >= 1
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    profile = profiles.PROFILES["smoke"]
    reference = meta["reference"]
    measured = names + ([reference["name"]] if reference["available"] else [])
    # the planned rounds (more at the headline cell), then perhaps extra ones within the budget
    for name in measured:
        for cell in profile.cells:
            rounds = sorted(r["round"] for r in records
                            if r["server"] == name and results.CellKey.of(r) == cell)
            assert rounds == list(range(len(rounds))), (name, cell)
            assert profile.rounds_of(cell) <= len(rounds) <= profile.rounds_max, (name, cell)
    assert meta["headline"] == {"conns": 8, "size_bytes": 1024, "rate": None,
                                "rate_fraction_of_peak": None}
    assert meta["schema"] == results.SCHEMA_VERSION and meta["interrupted"] is None
    assert meta["noise"]["windows"] == len(records)
    if not reference["available"]:
        assert reference["reason"] and "no reference this run" in result.stdout
    else:
        assert "× ref" in result.stdout and "confidence: " in result.stdout
    assert "who won at 8 conns × 1 KiB" in result.stdout
    assert f"report: {run_dir / 'report.html'}" in result.stdout
    for r in records:
        beside = r.get("ref_basis") == "beside"
        assert r["schema"] == results.SCHEMA_VERSION
        assert r["window_s"] == profile.measure_s * (2 if beside else 1)
        assert r["is_reference"] == (r["server"] == reference["name"])
        assert (r["vs_ref_ci95"] is not None) == (reference["available"]
                                                  and not r["is_reference"]), "from 2 rounds"
        assert (r["vs_ref"] is not None) == reference["available"]
        assert set(r["noise"]) >= {"steal_pct", "foreign_cpu_pct", "loadavg_1m", "noisy", "why"}
        assert r["noise"]["foreign_cpu_pct"] is not None and r["noise"]["steal_pct"] is not None
        assert r["status"] == "ok", r
        assert r["requests"] > 0 and r["rps"] > 0
        assert r["errors"] == {"connect": 0, "reset": 0, "mismatch": 0, "unserved": 0, "timeout": 0}
        assert r["exit"]["clean"], r["exit"]
        assert r["server_cpu_s"] > 0 and r["server_cpu_us_per_request"] > 0
        assert r["server_ctx_voluntary"] + r["server_ctx_involuntary"] > 0
        assert r["latency_us"]["p50"] <= r["latency_us"]["p99"] <= r["latency_us"]["max"]
    report = run_dir / "report.md"
    assert report.exists(), "make bench ends with a report"
    text = report.read_text()
    for name in names:
        assert name in text
    assert (run_dir / "charts").is_dir() and any((run_dir / "charts").glob("*.png"))


def _fake(mode: str) -> servers.Server:
    return servers.Server(mode, "tests.misbehaving_server", "blocking", "07", f"misbehaving: {mode}",
                          options=(mode,))


def _measure(entry):
    profile = profiles.Profile("t", [], 1, warmup_s=0.1, measure_s=0.5, description="test")
    return measure(entry, results.CellKey(2, 4096), 0, profile, None, None)


@pytest.fixture(autouse=True)
def _fake_servers_accept_no_options(monkeypatch):
    # the misbehaving servers take a mode, not the shared options: start them without --port
    from servers import launch
    real_start = launch.start

    def start(server, extra_args=(), **kw):
        if isinstance(server, servers.Server) and server.module == "tests.misbehaving_server":
            kw.setdefault("ready_timeout_s", 3.0)
            return real_start(server, ["--port=unused"], **kw)
        return real_start(server, extra_args, **kw)

    monkeypatch.setattr(launch, "start", start)


def test_the_reference_beside_is_measured_in_the_same_window_and_leaves_no_process():
    """measure(beside=the reference): c-epoll is started beside the server, both are measured in
    alternating slices of one window twice the profile's, and the record's vs_ref is to that
    (ref_basis "beside"); both servers are gone afterwards. A server whose connections break
    keeps its own verdict, and the reference its clean figures."""
    from bench.load import c_engine
    ref, server = servers.get(results.REFERENCE), servers.get("select")
    if not (ref.available and c_engine.available()[0]):
        pytest.skip("needs the C reference and the C engine")
    reference = subject.Subject.registry(ref, is_reference=True)
    profile = profiles.Profile("t", [], 1, warmup_s=0.05, measure_s=0.2, description="test",
                                beside_ref=True)
    before = set(os.listdir("/proc"))
    record = measure(server, results.CellKey(4, 1024), 0, profile, None, None,
                               beside=reference)
    assert record["status"] == "ok", record
    assert record["window_s"] == 0.4 and 0.05 < record["active_s"] < 0.35  # its own slices
    beside = record["beside_ref"]
    assert beside["server"] == "c-epoll" and beside["ok"] and beside["errors"] == 0
    assert beside["rps"] > 0 and beside["server_cpu_us_per_request"] > 0
    results.annotate([record])
    assert record["ref_basis"] == "beside"
    assert record["vs_ref"] == pytest.approx(record["rps"] / beside["rps"], rel=1e-3)
    time.sleep(0.2)
    left = [p for p in set(os.listdir("/proc")) - before if p.isdigit()
            and Path(f"/proc/{p}/cmdline").exists()
            and b"echo_epoll" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert not left, "the reference beside was left running"

    broken = measure(_fake("corrupt"), results.CellKey(2, 4096), 0, profile, None,
                               None, beside=reference)
    assert broken["status"] == "failed" and broken["errors"]["mismatch"] > 0
    assert broken["beside_ref"]["ok"] and broken["beside_ref"]["errors"] == 0
    # no pairing where it cannot be: the reference itself, or open loop
    assert not beside_possible(reference, results.CellKey(4, 1024), None, reference)
    assert not beside_possible(subject.Subject.registry(server),
                                         results.CellKey(4, 1024, rate=100.0), 100.0, reference)


def test_corrupted_bytes_are_a_failed_result():
    record = _measure(_fake("corrupt"))
    assert record["status"] == "failed"
    assert "corrupt" in record["reason"]
    assert record["errors"]["mismatch"] > 0


def test_server_that_dies_under_load_is_a_failed_result_not_a_crash():
    record = _measure(_fake("crash"))
    assert record["status"] == "failed"
    assert "exited" in record["reason"] or "no round trip" in record["reason"]


def test_server_without_readiness_line_is_a_failed_result():
    record = _measure(_fake("silent"))
    assert record["status"] == "failed"
    assert "did not start" in record["reason"]


# -- At scale: the runner's checks, its guard, and what it says about why --------------------------

def test_client_bound_means_the_generator_saturated_and_the_server_not():
    cb = verdict.client_bound
    assert cb(0.94, 0.77)  # the server idled a quarter of the window: the client set the pace
    assert cb(0.92, 0.88)  # idle more than a tenth, and less busy than the client
    assert not cb(0.93, 0.93) and not cb(0.95, 0.91)  # both at their limit: the server's figure
    assert not cb(0.80, 0.40)  # the client was not saturated: nobody was (a slow window)
    assert not cb(0.90, 0.97)  # the server was the busier side



def test_too_few_file_descriptors_skip_the_cell_with_the_fix(monkeypatch):
    monkeypatch.setattr(load_gen, "fd_hard_limit", lambda: 512)  # as if ulimit -Hn 512
    profile = profiles.Profile("t", [], 1, warmup_s=0.1, measure_s=0.5, description="test")
    record = measure(servers.get("threads"), results.CellKey(1000, 1024), 0, profile,
                               None, None)
    assert record["status"] == "skipped" and "ulimit -n" in record["reason"]
    assert guard.preflight(results.CellKey(440, 1024), None) is None  # 440 + headroom fit


def test_c100k_adds_a_cell_at_the_machines_fd_ceiling(monkeypatch):
    """Under ulimit -Hn 20,000 the 30,000 and 100,000 cells are skipped; the sweep still gets a
    cell at the most one server process may hold (19,000), at the profile's rate. Without a
    limit in the way, nothing is added."""
    profile = profiles.PROFILES["c100k"]
    monkeypatch.setattr(load_gen, "fd_hard_limit", lambda: 20_000)
    cell = guard.fd_limit_cell(profile)
    assert cell == results.CellKey(19_000, 1024, rate=10_000.0)
    assert guard.preflight(cell, None) is None
    assert guard.preflight(results.CellKey(30_000, 1024, rate=10_000.0), None) is not None
    monkeypatch.setattr(load_gen, "fd_hard_limit", lambda: 1 << 20)
    assert guard.fd_limit_cell(profile) is None
    monkeypatch.setattr(load_gen, "fd_hard_limit", lambda: 10_500)  # 10,000 is the most
    assert guard.fd_limit_cell(profile) is None


def test_guard_stops_a_server_before_memory_runs_out(monkeypatch):
    # A floor above the machine's whole memory: the guard must act at once, like it would when a
    # fork server at 10,000 clients eats the last gigabytes.
    monkeypatch.setattr(guard, "MEMORY_FLOOR_FRACTION", 2.0)
    monkeypatch.setattr(guard, "MEMORY_FLOOR_MAX_BYTES", 1 << 60)
    stopped_groups = []
    real_start = launch.start

    def start(entry, *args, **kw):
        server = real_start(entry, *args, **kw)
        stopped_groups.append(server)
        return server

    monkeypatch.setattr(launch, "start", start)
    profile = profiles.Profile("t", [], 1, warmup_s=0.5, measure_s=1.0, description="test")
    record = measure(servers.get("threads"), results.CellKey(4, 1024), 0, profile,
                               None, None)
    assert record["status"] == "failed", record
    assert record["reason"].startswith("stopped by the bench at ")
    assert "memory would run out" in record["reason"]
    (server,) = stopped_groups
    assert not server.group_pids(), "the guard leaves nothing of the server running"


def test_open_loop_at_a_share_of_the_peak_runs_after_the_cells_that_measure_it():
    profile = profiles.PROFILES["full"]
    order = bench_runner.plan(profile, ["epoll", "threads"], seed=1)
    for repeat in range(profile.rounds):
        cells = [cell for r, cell, _ in order if r == repeat]
        shares = [i for i, cell in enumerate(cells) if cell.fraction is not None]
        assert shares and min(shares) > max(i for i, c in enumerate(cells) if not c.is_open)
    closed = {("epoll", 1024): {1: [14_000.0], 100: [139_000.0, 141_000.0]}}
    assert bench_runner.peak_rps(closed, "epoll", 1024) == (140_000.0, 100)
    assert bench_runner.peak_rps(closed, "threads", 1024) is None


def test_reasons_name_the_counts_and_quote_the_server():
    stderr = ("[select 4242] a client got fd >= 1024, past select()'s FD_SETSIZE: closing it\n"
              "[select 4242] connection dropped: Connection reset by peer\n"
              "[select 4242] SIGTERM: shut down\n")
    assert verdict.server_said(stderr) == [
        "a client got fd >= 1024, past select()'s FD_SETSIZE: closing it"]
    record = {"conns": 10_000, "stderr_tail": stderr, "exit": {"clean": True},
              "server_threads": 1, "server_processes": 1}
    load = {"requests": 5000, "errors": {"connect": 0, "reset": 8980, "mismatch": 0,
                                         "unserved": 0, "timeout": 0}}
    verdict.judge(record, load, None)
    assert record["status"] == "degraded"
    assert record["reason"].startswith("8,980 of 10,000 connections were reset or closed by the server")
    assert "FD_SETSIZE" in record["reason"]
    record = {"conns": 10_000, "stderr_tail": None, "exit": {"clean": True},
              "server_threads": 10_001, "server_processes": 1}
    load = {"requests": 5000, "warmup_s": 1.0, "duration_s": 1.5, "conns_established": 10_000,
            "errors": {"connect": 0, "reset": 0, "mismatch": 0, "unserved": 2553, "timeout": 0}}
    verdict.judge(record, load, None)
    assert "2,553 of 10,000 connections got no echo at all in 2.5 s" in record["reason"]
    assert "GIL" in record["reason"]  # a thread for every connection: what they waited for


# -- Your own server in the run: --server NAME='CMD' and --target NAME=HOST:PORT --pid PID ------

# An echo server from outside the lab: no readiness line, dies of SIGTERM's default action, as
# vmbench's servers do. It listens where its argument says.
PLAIN_ECHO = """
import socket, sys, threading
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def test_your_own_servers_are_measured_like_lab_servers(tmp_path):
    script = tmp_path / "plain_echo.py"
    script.write_text(PLAIN_ECHO)
    port = subject.free_port()
    running = subprocess.Popen([sys.executable, str(script), str(port)], start_new_session=True)
    out = tmp_path / "runs"
    try:
        deadline = time.monotonic() + 30
        while not _accepts(port):
            assert time.monotonic() < deadline and running.poll() is None, "plain echo did not start"
            time.sleep(0.05)
        result = subprocess.run(
            [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--conns", "4",
             "--server", f"mine={sys.executable} {script} {{port}}",
             "--target", f"theirs=127.0.0.1:{port}", "--pid", str(running.pid),
             "--no-reference", "--out", str(out), "--no-progress", "--no-report"],
            cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        assert running.poll() is None, "a --target is never stopped by the bench"
    finally:
        os.killpg(running.pid, signal.SIGKILL)
        running.wait(10)
    (run_dir,) = out.iterdir()
    records = {r["server"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    assert set(records) == {"mine", "theirs"}, "only yours: --server/--target without --servers"
    mine, theirs = records["mine"], records["theirs"]
    assert mine["target"]["kind"] == "command" and str(script) in mine["target"]["command"]
    assert isinstance(mine["target"]["port"], int)
    assert theirs["target"] == {"kind": "running", "command": None, "host": "127.0.0.1",
                                "port": port, "pid": running.pid}
    for r in (mine, theirs):
        assert r["status"] == "ok", r
        assert r["family"] == "yours" and r["exit"]["clean"]
        assert r["server_cpu_us_per_request"] > 0 and r["server_threads"] >= 2
        assert r["vs_ref"] is None, "no reference asked for"


def _accepts(port: int) -> bool:
    import socket
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize(("args", "says"), [
    (["--target", "x=127.0.0.1:9"], "--pid"),
    (["--target", "x=nowhere", "--pid", "1"], "HOST:PORT"),
    (["--server", "x="], "NAME='CMD"),
    (["--server", "threads=python x.py"], "taken"),
])
def test_bad_own_server_options_exit_2_naming_the_fix(args, says):
    result = subprocess.run([sys.executable, "-m", "bench", "run", "--profile", "smoke", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and says in result.stderr, result.stderr


def test_a_starvation_verdict_states_whether_the_window_was_long_enough():
    record = {"conns": 10_000, "mode": "closed", "status": "degraded", "window_s": 1.5,
              "warmup_s": 1.0, "duration_s": 1.5, "errors": {"unserved": 4601}}
    assert verdict.starved(record)
    # at 50 µs per request, 10,000 connections x 3 serves need 1.5 s: 2.5 s of load is enough
    assert verdict.window_needed_s(record, 50.0) == pytest.approx(1.5)
    assert "a fact of the model" in verdict.window_note(record, 50.0)
    # at 500 µs, 15 s are needed: the verdict may be the window's
    assert "may be the window's" in verdict.window_note(record, 500.0)
    assert not verdict.starved({**record, "errors": {"reset": 3}})


class FakeClock:
    """time.monotonic for the runner, advanced by each fake measurement's elapsed_s."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def test_rounds_go_on_until_stable_within_the_budget(tmp_path, monkeypatch):
    """The round logic alone, with a fake measurement of 1 s on a fake clock: steady stops once
    converged, wobbly never converges and is measured until the budget ends, the headline cell
    first (to rounds_max) and the other cell only then, and the reference is in every round of
    every cell."""
    clock = FakeClock()
    order = []

    def fake_measure(subject, cell, rnd, profile, server_cpus, client_cpus, rate=None,
                     measure_s=None, beside=None):
        clock.now += 1.0
        order.append((cell.conns, rnd))
        if subject.is_reference:
            rps = 2000.0
        elif subject.name == "steady":
            rps = 1000.0
        else:
            rps = 500.0 if rnd % 2 else 1500.0
        return {"server": subject.name, "family": "x", "conns": cell.conns,
                "size_bytes": cell.size_bytes, "rate": None, "rate_fraction_of_peak": None,
                "mode": "closed", "repeat": rnd, "round": rnd, "status": "ok", "reason": None,
                "rps": rps, "server_cpu_us_per_request": 10.0, "elapsed_s": 1.0,
                "is_reference": subject.is_reference, "window_s": profile.measure_s}

    monkeypatch.setattr(bench_runner, "measure", fake_measure)
    monkeypatch.setattr(bench_runner, "time", clock)
    cells = [results.CellKey(1, 1024), results.CellKey(16, 1024)]
    profile = profiles.Profile("t", cells, 3, warmup_s=0.0, measure_s=0.4, description="t",
                               headline=results.CellKey(16, 1024), headline_rounds=4,
                               rounds_max=12, budget_s=44.0)
    subjects = [subject.Subject("steady", "x"), subject.Subject("wobbly", "x")]
    reference = subject.Subject("c-epoll", "x", is_reference=True)
    runner = bench_runner.Runner(profile, subjects, reference, {}, tmp_path, {}, [], 0, False,
                                 None, None)
    runner.run()
    records = runner.records
    assert [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()] \
        == records, "results.jsonl rewritten with the final ratios"

    def rounds(name, conns):
        return sorted(r["round"] for r in records if r["server"] == name and r["conns"] == conns)

    assert rounds("steady", 16) == list(range(4)), "the headline's planned 4, then converged"
    assert rounds("steady", 1) == list(range(3))
    steady16 = [r for r in records if r["server"] == "steady" and r["conns"] == 16]
    assert all(r["converged"] and r["vs_ref"] == 0.5 for r in steady16)
    assert not any(r["converged"] for r in records if r["server"] == "wobbly")
    # planned: 3 x 2 cells + 1 headline round, 3 measurements each = 21 s; then the headline
    # cell's extra rounds (wobbly and the reference, 2 s each) to round 12 = 16 s; then the other
    # cell's while the budget lasts: 44 - 37 = 7 s, 3 rounds
    assert rounds("wobbly", 16) == list(range(12)), "the headline cell's extra rounds come first"
    assert rounds("wobbly", 1) == list(range(6))
    first_other_extra = order.index((1, 3))
    assert all(conns == 16 for conns, rnd in order[:first_other_extra] if rnd >= 4)
    assert max(rnd for conns, rnd in order if conns == 16) == 11
    assert clock.now - 1000.0 <= profile.budget_s
    for rnd, conns in {(r["round"], r["conns"]) for r in records}:
        assert rnd in rounds("c-epoll", conns), "the reference is in every round of every cell"


def test_a_server_that_did_not_start_is_not_started_again(tmp_path, monkeypatch):
    calls = []

    def fake_measure(subject, cell, rnd, profile, server_cpus, client_cpus, rate=None,
                     measure_s=None, beside=None):
        calls.append((subject.name, cell.conns, rnd))
        record = results.record(subject.name, cell, rnd, family="x")
        if subject.name == "broken":
            return results.failed(record, "did not start: exited with code 1 before it was "
                                  "ready", elapsed_s=0.1)
        return dict(record, rps=1000.0, elapsed_s=0.1)

    monkeypatch.setattr(bench_runner, "measure", fake_measure)
    cells = [results.CellKey(1, 1024), results.CellKey(16, 1024)]
    profile = profiles.Profile("t", cells, 2, warmup_s=0.0, measure_s=0.1, description="t")
    runner = bench_runner.Runner(profile, [subject.Subject("broken", "x"),
                                           subject.Subject("fine", "x")], None, {}, tmp_path,
                                 {}, [], 0, False, None, None)
    runner.run()
    assert [c for c in calls if c[0] == "broken"] == [("broken", 1, 0)], "started once"
    assert len([c for c in calls if c[0] == "fine"]) == 4
    broken = [r for r in runner.records if r["server"] == "broken"]
    assert [r["status"] for r in broken] == ["failed", "skipped", "skipped", "skipped"]
    assert all("it did not start at 1 conn × 1 KiB, round 1" in r["reason"] for r in broken[1:])


def test_without_a_c_compiler_the_run_goes_on_without_the_reference(tmp_path):
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc")}  # servers/build.py finds no compiler
    result = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--servers", "threads",
         "--conns", "2", "--rounds", "1", "--rounds-max", "1", "--out", str(tmp_path / "runs"),
         "--no-progress", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("note: no reference")]
    assert "apt-get install gcc" in line, "one line, naming the fix"
    (run_dir,) = (tmp_path / "runs").iterdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["reference"]["available"] is False and "gcc" in meta["reference"]["reason"]
    records = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [r["server"] for r in records] == ["threads"]
    assert records[0]["status"] == "ok" and records[0]["vs_ref"] is None


def test_a_cpu_hog_outside_the_bench_makes_the_window_noisy():
    """A process outside the server's and the generator's trees spinning on a CPU for the whole
    window shows as foreign CPU, and flags the window."""
    import psutil
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        time.sleep(0.3)
        before, t0 = sum(psutil.Process(hog.pid).cpu_times()[:2]), time.monotonic()
        profile = profiles.Profile("t", [], 1, warmup_s=0.1, measure_s=1.0, description="test")
        record = measure(servers.get("threads"), results.CellKey(1, 1024), 0, profile,
                                   None, None)
        hog_s, wall_s = sum(psutil.Process(hog.pid).cpu_times()[:2]) - before, time.monotonic() - t0
    finally:
        os.killpg(hog.pid, signal.SIGKILL)
        hog.wait(10)
    assert record["status"] == "ok", record
    # The hog ran, and the window counted it: past the noisy threshold, and no more than the
    # machine has. (Not compared with the hog's share over the whole call: outside the window it
    # had a CPU to itself, inside it shared them with the server and the generator.)
    hog_pct = 100 * hog_s / (wall_s * (os.cpu_count() or 1))
    assert hog_pct > 10, "the hog ran"
    assert results.FOREIGN_NOISY_PCT < record["noise"]["foreign_cpu_pct"] <= 100, record["noise"]
    assert record["noise"]["noisy"] and "other processes" in record["noise"]["why"]


def test_a_starved_cell_is_measured_again_with_a_window_long_enough(tmp_path, monkeypatch):
    calls = []

    def fake_measure(subject, cell, rnd, profile, server_cpus, client_cpus, rate=None,
                     measure_s=None, beside=None):
        window = profile.measure_s if measure_s is None else measure_s
        calls.append(window)
        # 400 µs per request: 1,000 connections x 3 serves need 1.2 s
        return {"server": subject.name, "family": "x", "conns": cell.conns,
                "size_bytes": cell.size_bytes, "rate": None, "rate_fraction_of_peak": None,
                "mode": "closed", "repeat": rnd, "round": rnd, "status": "degraded",
                "reason": "400 of 1,000 connections got no echo at all",
                "errors": {"unserved": 400}, "rps": 2000.0, "server_cpu_us_per_request": 400.0,
                "warmup_s": 0.1, "duration_s": window, "window_s": window, "elapsed_s": 1.0}

    monkeypatch.setattr(bench_runner, "measure", fake_measure)
    profile = profiles.Profile("t", [results.CellKey(1000, 1024)], 1, warmup_s=0.1,
                                measure_s=0.3, description="t")
    runner = bench_runner.Runner(profile, [subject.Subject("threads", "x")], None, {}, tmp_path,
                              {}, [], 0, False, None, None)
    runner.run()
    assert calls == [0.3, pytest.approx(1.2)], "measured again, once, with the window it needs"
    (record,) = runner.records
    assert record["window_s"] == pytest.approx(1.2) and record["window_first_s"] == 0.3
    assert "a fact of the model, not of the window" in record["reason"]


@pytest.mark.parametrize(("first", "then", "windows", "status"), [
    ("no round trip completed", "ok", [0.3, pytest.approx(1.6)], "ok"),  # a starved window: once more
    ("no round trip completed", "failed", [0.3, pytest.approx(1.6)], "failed"),  # silent twice: failed
    ("corrupted bytes: 3 connections got back what they did not send", None, [0.3], "failed"),
])
def test_a_window_in_which_nothing_came_back_is_measured_once_more_before_it_fails(
        tmp_path, monkeypatch, first, then, windows, status):
    calls = []

    def fake_measure(subject, cell, rnd, profile, server_cpus, client_cpus, rate=None,
                     measure_s=None, beside=None):
        window = profile.measure_s if measure_s is None else measure_s
        calls.append(window)
        again = len(calls) > 1
        ok = again and then == "ok"
        return {"server": subject.name, "family": "x", "conns": cell.conns,
                "size_bytes": cell.size_bytes, "rate": None, "rate_fraction_of_peak": None,
                "mode": "closed", "repeat": rnd, "round": rnd, "status": "ok" if ok else "failed",
                "reason": None if ok else (first if not again else "no round trip completed"),
                "errors": {}, "requests": 900 if ok else 0, "rps": 3000.0 if ok else None,
                "server_cpu_us_per_request": 10.0 if ok else None,
                "warmup_s": 0.1, "duration_s": window, "window_s": window, "elapsed_s": 1.0}

    monkeypatch.setattr(bench_runner, "measure", fake_measure)
    profile = profiles.Profile("t", [results.CellKey(3, 100)], 1, warmup_s=0.1,
                                measure_s=0.3, description="t")
    runner = bench_runner.Runner(profile, [subject.Subject("select", "x")], None, {}, tmp_path,
                              {}, [], 0, False, None, None)
    runner.run()
    assert calls == windows
    (record,) = runner.records
    assert record["status"] == status


def test_a_run_names_the_command_that_compares_it_with_the_recorded_run(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    hint = cli.compare_hint("quick-custom", ROOT / "results" / "20261202-163905-quick-custom")
    assert hint == ("quick", "make compare A=docs/results/quick "
                             "B=results/20261202-163905-quick-custom")
    assert cli.compare_hint("full", tmp_path / "x")[1].endswith(
        f"A=docs/results/full B={tmp_path / 'x'}")
    assert cli.compare_hint("smoke", tmp_path / "x") is None  # nothing recorded to compare with
    assert cli.compare_hint("quick", ROOT / "docs" / "results" / "quick") is None


def test_a_record_keeps_fields_the_load_summary_has():
    """results.fill_load copies the summary's fields named by the engines' contract
    (RECORD_FIELDS): each must be one summarize() writes (open loop, so the schedule's too), or
    one of the two an alternating run adds, so a renamed summary field fails here instead of
    silently leaving every record without it."""
    from bench import hist
    from bench.load import contract

    empty = hist.encode(hist.new_histogram())
    summary = contract.summarize(
        [contract.worker_result(send_lag_hist=empty)], host="127.0.0.1", port=1, conns=1,
        size=1024, rate=100.0, duration=1.0, warmup=0.1, n_workers=1, cpus=None, cores=1,
        loop_name="test", result_warnings=[], start_ns=0, engine="python")
    assert set(contract.RECORD_FIELDS) - set(summary) == {"active_s", "slice_s"}
    record = results.record("x", results.CellKey(1, 1024, 100.0), 0)
    results.fill_load(record, summary)
    assert all(record[k] == summary[k] for k in contract.RECORD_FIELDS if k in summary)
