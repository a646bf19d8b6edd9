"""Every lesson runs in quick mode and prints every field its recorded full run has."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
RECORDS = ROOT / "docs" / "results" / "lessons"


def test_every_lesson_has_a_recorded_run():
    for name in SCRIPTS:
        assert (RECORDS / f"{name}.json").exists(), f"{name}: run `make lessons-record` and commit it"


QUICK_TIMEOUT_S = 90  # a --quick run takes seconds (5 s for lesson 09 on a 2-core VM)


def run_quick(name: str, out: Path) -> subprocess.CompletedProcess:
    """`python -m lessons.NAME --quick`; one that hangs past QUICK_TIMEOUT_S fails the test with
    where every thread of it was: faulthandler prints their stacks on SIGABRT."""
    argv = [sys.executable, "-X", "faulthandler", "-m", f"lessons.{name}", "--quick",
            "--json", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=QUICK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it started
            proc.wait()
        pytest.fail(f"{name} --quick still ran after {QUICK_TIMEOUT_S} s; where it was:\n"
                    f"{stderr[-6000:]}\n--- its output, last lines:\n{stdout[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("name", SCRIPTS)
def test_lesson_quick_prints_every_recorded_field(name, tmp_path):
    out = tmp_path / f"{name}.json"
    result = run_quick(name, out)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert "notice:" in result.stdout, f"{name} prints no 'notice:' line"
    quick = json.loads(out.read_text())
    record_path = RECORDS / f"{name}.json"
    if not record_path.exists():
        pytest.fail(f"{name}: no recorded run to compare with (make lessons-record)")
    recorded = json.loads(record_path.read_text())
    seen = set(quick["measurements"]) | set(quick["skipped"])
    missing = [label for label in recorded["measurements"] if label not in seen]
    assert not missing, f"{name} --quick lacks fields of its recorded run: {missing}"
    for label in quick["measurements"]:
        assert f"{label}:" in result.stdout
    # The reader's run is set beside the recorded one, figure by figure (lessons.common.compare).
    assert "-- yours against recorded (" in result.stdout, f"{name} does not compare with its recording"
    for label in quick["measurements"]:
        if label in recorded["measurements"]:
            assert re.search(rf"^  {re.escape(label)} +yours ", result.stdout, re.M), (
                f"{name}: {label!r} is not set beside its recorded value")
    # And draws its own pictures (under results/lessons/, never over the committed ones).
    from lessons.figures import lesson_module
    for stem in getattr(lesson_module(name), "PICTURES", {}):
        assert f"picture: results/lessons/{name[:2]}-{stem}.png" in result.stdout, (
            f"{name} did not draw {stem}: {result.stdout[-2000:]}")
