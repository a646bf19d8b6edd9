"""Odd but valid `make bench` choices each end with a report and exit 0 (#28: a one-cell custom run
crashed with ZeroDivisionError and wrote no report, and --resume crashed the same way).

Every case goes through the Makefile, so its variable mapping (SERVERS, CONNS, SIZES, ARGS) is the
one a user types; the windows are shortened with ARGS so the matrix costs seconds, not minutes. These
runs check that the pipeline answers, not what it measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHORT = "--duration 0.2 --warmup 0.05 --rounds 2 --budget-s 0 --no-progress"

# (make variables, extra ARGS, the servers the records must name)
MATRIX = [
    pytest.param({"SERVERS": "epoll", "CONNS": "1", "SIZES": "1024"}, "", {"epoll", "c-epoll"},
                 id="one-server-one-conn-1024"),
    pytest.param({"CONNS": "1", "SIZES": "1KiB"}, f"--server 'mine={sys.executable} -m servers serve threads --port {{port}}'",
                 {"mine", "c-epoll"}, id="own-server-on-a-one-conn-cell"),
    pytest.param({"SERVERS": "threads,select", "CONNS": "3", "SIZES": "64k,100"}, "",
                 {"threads", "select", "c-epoll"}, id="lists-and-odd-sizes"),
    pytest.param({"SERVERS": "poll", "CONNS": "2", "SIZES": "512"}, "--no-reference", {"poll"},
                 id="no-reference"),
]


def _make_bench(variables: dict[str, str], args: str, out: Path) -> subprocess.CompletedProcess:
    command = ["make", "-s", "bench", *(f"{k}={v}" for k, v in variables.items()),
               f"ARGS={SHORT} --out {out} {args}".strip()]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "80"})


@pytest.mark.parametrize(("variables", "args", "servers"), MATRIX)
def test_an_odd_valid_make_bench_ends_with_a_report_and_exit_0(tmp_path, variables, args, servers):
    result = _make_bench(variables, args, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert {r["server"] for r in records} == servers
    assert all(r["status"] == "ok" for r in records), [(r["server"], r["status"]) for r in records]
    for name in ("report.md", "report.html", "summary.csv"):
        assert (run_dir / name).stat().st_size > 0, f"{name} missing"
    report = (run_dir / "report.md").read_text()
    assert "Traceback" not in result.stdout + result.stderr + report
    assert str(run_dir / "report.html") in result.stdout.replace("\n", ""), "the run names its report"


def test_resuming_a_finished_one_cell_run_reports_again_and_exits_0(tmp_path):
    first = _make_bench({"SERVERS": "epoll", "CONNS": "1", "SIZES": "1024"}, "", tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    (run_dir,) = tmp_path.iterdir()
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    (run_dir / "report.md").unlink()
    again = subprocess.run(["make", "-s", "bench", f"ARGS=--resume {run_dir} --no-progress"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (run_dir / "results.jsonl").read_text().splitlines()[:len(lines)] == lines, "nothing measured is lost"
    assert (run_dir / "report.md").stat().st_size > 0
