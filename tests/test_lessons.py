"""Every lesson runs in quick mode and prints every field its recorded full run has."""

from __future__ import annotations

import json
import re
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


@pytest.mark.parametrize("name", SCRIPTS)
def test_lesson_quick_prints_every_recorded_field(name, tmp_path):
    out = tmp_path / f"{name}.json"
    result = subprocess.run([sys.executable, "-m", f"lessons.{name}", "--quick", "--json", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=90,
                            stdin=subprocess.DEVNULL, start_new_session=True)
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
