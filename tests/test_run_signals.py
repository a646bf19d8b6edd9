"""`python -m bench run` stopped by SIGINT, SIGTERM or SIGHUP: the server under test and everything
the runner started are gone (checked by PID and process group), results.jsonl keeps what was
measured, report.md says "interrupted: N of M measurements", the exit code is 128 + the signal,
no traceback; `--resume RUN_DIR` then measures what the plan still lacked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from servers import launch

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc for process groups (Linux only)")


def _descendants(pid: int) -> list[psutil.Process]:
    return launch.tree(pid)[1:]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _start_run(out: Path, *extra: str) -> subprocess.Popen:
    # threads (pure Python, always available) with a window long enough to be caught in it
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--servers", "threads",
           "--duration", "1.5", "--warmup", "0.1", "--rounds", "1", "--rounds-max", "1",
           "--out", str(out), "--no-progress", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for_second_measurement(proc: subprocess.Popen, out: Path) -> list[psutil.Process]:
    """Once one record is written and a server is running again: what the runner started."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        results = list(out.glob("*/results.jsonl"))
        lines = results[0].read_text().splitlines() if results else []
        kids = _descendants(proc.pid)
        started = [k for k in kids if _session(k) == k.pid]  # servers run in their own session
        if lines and started:
            return kids
        time.sleep(0.05)
    raise AssertionError("the run never got to its second measurement")


def _session(p: psutil.Process) -> int | None:
    try:
        return os.getsid(p.pid)
    except OSError:
        return None


@pytest.mark.parametrize(("sig", "to_group"), [
    (signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGHUP, False),
    (signal.SIGINT, True),  # Ctrl-C at a terminal: the whole foreground group gets it
], ids=["SIGINT", "SIGTERM", "SIGHUP", "SIGINT-to-group"])
def test_a_signal_stops_the_run_cleanly_and_writes_what_was_measured(tmp_path, sig, to_group):
    proc = _start_run(tmp_path)
    try:
        kids = _wait_for_second_measurement(proc, tmp_path)
        groups = {os.getpgid(k.pid) for k in kids if _alive(k.pid)}
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 128 + sig, stdout + stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout, stderr
    # nothing the runner started is left: no process, no member of any process group it made
    assert not [k.pid for k in kids if _alive(k.pid)]
    for pgid in groups - {proc.pid}:
        assert launch.group_pids(pgid) == [], f"process group {pgid} still has members"
    (run_dir,) = tmp_path.iterdir()
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    meta = json.loads((run_dir / "meta.json").read_text())
    planned = meta["interrupted"]["planned"]
    assert meta["interrupted"]["signal"] == sig.name
    assert 1 <= len(records) == meta["interrupted"]["measured"] < planned
    assert all(r["status"] == "ok" for r in records), records
    report = (run_dir / "report.md").read_text()
    assert f"interrupted: {len(records)} of {planned} measurements" in report
    assert f"--resume {run_dir}" in stdout


def test_resume_measures_what_the_plan_still_lacks(tmp_path):
    proc = _start_run(tmp_path, "--no-report")
    try:
        _wait_for_second_measurement(proc, tmp_path)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    (run_dir,) = tmp_path.iterdir()
    before = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    # a run killed mid-write leaves a cut last line: resume reads past it, with a warning
    with (run_dir / "results.jsonl").open("a") as f:
        f.write('{"server": "threads", "conns": 8, "size_')
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(run_dir),
                           "--no-progress", "--no-report"], cwd=ROOT, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cut mid-write" in done.stderr
    assert f"{len(before)} already measured" in done.stdout
    after = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    meta = json.loads((run_dir / "meta.json").read_text())
    names = ["threads"] + ([meta["reference"]["name"]] if meta["reference"]["available"] else [])
    keys = [(r["server"], r["conns"], r["round"]) for r in after]
    assert sorted(keys) == sorted((n, c, 0) for n in names for c in (1, 8)), "each once"
    derived = ("vs_ref", "cpu_vs_ref", "vs_ref_ci95", "converged", "ref_basis")  # annotate's
    assert after[:len(before)] == [{**r, **{k: a[k] for k in derived if k in a}}
                                   for r, a in zip(before, after, strict=False)]
    assert meta["interrupted"] is None and meta["resumed"]


def test_bad_resume_directory_exits_2_naming_the_fix(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--resume", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "no meta.json" in done.stderr


def test_kill_own_groups_reaches_a_server_nobody_holds():
    """What a signal landing as Popen returns leaves behind: a server in its own process group
    (with a child of its own) that no RunningServer holds. The sweep after an interrupt kills the
    group, reaps the leader, and leaves alone this process's children that lead no group."""
    forks = ("import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
             "time.sleep(60)\n")
    orphan = subprocess.Popen([sys.executable, "-c", forks], start_new_session=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while len(launch.group_pids(orphan.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(launch.group_pids(orphan.pid)) == 2, "the orphan and its child are running"
        assert orphan.pid in launch.kill_own_groups()
        deadline = time.monotonic() + 5
        while launch.group_pids(orphan.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert launch.group_pids(orphan.pid) == [], "the whole group is gone"
        assert not _alive(orphan.pid), "and the leader reaped, not left a zombie"
        assert bystander.poll() is None, "a child leading no group of its own is not touched"
    finally:
        try:
            os.killpg(orphan.pid, signal.SIGKILL)
        except ProcessLookupError:  # the sweep got it, as it should
            pass
        bystander.kill()
        for proc in (orphan, bystander):
            proc.wait(timeout=5)
