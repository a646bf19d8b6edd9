"""The bench pipeline end to end (smoke profile), and the runner's verdicts on broken servers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import servers
from bench import run as bench_run

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
    profile = bench_run.PROFILES["smoke"]
    assert len(records) == len(names) * len(profile.cells) * profile.repeats
    for r in records:
        assert r["status"] == "ok", r
        assert r["requests"] > 0 and r["rps"] > 0
        assert r["errors"] == {"connect": 0, "reset": 0, "mismatch": 0, "timeout": 0}
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
    profile = bench_run.Profile("t", [], 1, warmup_s=0.1, measure_s=0.5, description="test")
    return bench_run.measure(entry, bench_run.Cell(2, 4096), 0, profile, None, None)


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
