"""The Makefile as a person meets it: `make help` at an 80-column terminal, `make lesson N=8`.
(`make talk` is in test_talk.py, `make servers` in test_registry.py.)"""

from __future__ import annotations

import re
import subprocess

from tests.terminal import ROOT, at_terminal, visible_width

# make's own targets, never the install: the tests run inside the venv it made
MAKE = ["make", "--no-print-directory", "-o", ".venv/.installed"]


def test_make_help_at_80_columns_wraps_words_and_keeps_each_command_whole():
    code, out = at_terminal([*MAKE, "help"], columns=80)
    assert code == 0, out
    lines = out.splitlines()
    too_wide = [line for line in lines if visible_width(line) > 80]
    assert not too_wide, too_wide
    makefile = (ROOT / "Makefile").read_text()
    commands = re.findall(r"^[a-z0-9-]+:.*## .*?: (make .*)$", makefile, re.M)
    assert commands, "the Makefile's descriptions name commands"
    for command in commands:
        assert any(line.strip() == command for line in lines), f"{command!r} is cut or joined"
    for target in re.findall(r"^([a-z0-9-]+):.*## ", makefile, re.M):
        assert any(line.startswith(f"  make {target} ") for line in lines), target


def test_make_help_piped_is_a_line_per_target():
    out = subprocess.run([*MAKE, "help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    makefile = (ROOT / "Makefile").read_text()
    for target, text in re.findall(r"^([a-z0-9-]+):.*## (.*)$", makefile, re.M):
        assert any(line.startswith(f"  make {target} ") and line.endswith(text)
                   for line in out.splitlines()), target


def test_make_lesson_takes_8_and_08_and_names_the_lessons_otherwise():
    for n in ("8", "08"):
        done = subprocess.run([*MAKE, "lesson", f"N={n}", "ARGS=--help"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "08_multiplexed_io" in done.stdout, done.stdout
    done = subprocess.run([*MAKE, "lesson", "N=99"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "no lesson 99" in done.stdout and "08_multiplexed_io" in done.stdout
