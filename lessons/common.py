"""What every lesson script shares: its command line, labelled output, and the recorded run.

A lesson script measures one effect on the reader's machine and prints it as labelled lines:

    == 01 Multitasking in the OS ==
    -- two spinners pinned to one core --
      cpu share of spinner A: 49.8 %
      involuntary switches per second: 250 /s
    notice: each got about half the core: the scheduler time-sliced them ...

``Lesson`` keeps every measurement (label -> value, unit) so that ``--json PATH`` can save the run
with the machine's metadata beside it. `make lessons-record` saves each lesson's full run under
docs/results/lessons/, and the docs pages quote numbers only from those files (lessons.docsync).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def parse_args(doc: str | None, argv: list[str] | None = None,
               extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m {Path(sys.argv[0]).stem}" if sys.argv and sys.argv[0] else None,
        description=(doc or "").strip().splitlines()[0] if doc else None)
    parser.add_argument("--quick", action="store_true",
                        help="smaller, faster measurements (under 30 s); the same fields")
    parser.add_argument("--json", metavar="PATH", type=Path,
                        help="also save the measurements and the machine's metadata as JSON")
    if extra:
        extra(parser)
    return parser.parse_args(argv)


def linux_only(feature: str) -> str | None:
    """None on Linux, else the reason a measurement is skipped."""
    if sys.platform.startswith("linux"):
        return None
    return f"{feature} is Linux-only (this is {sys.platform})"


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        commit = None
    return {
        "cpu_model": cpu,
        "cores_logical": os.cpu_count(),
        "kernel": platform.release(),
        "os": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "git_commit": commit,
    }


class Lesson:
    """Collects and prints a lesson's measurements."""

    def __init__(self, number: str, title: str, args: argparse.Namespace):
        self.number, self.title, self.args = number, title, args
        self.quick = bool(args.quick)
        self.measurements: dict[str, dict] = {}
        self.notices: list[str] = []
        self.skipped: dict[str, str] = {}
        self.lines: list[str] = []
        self._print(f"== {number} {title} ==" + ("  (quick)" if self.quick else ""))

    def _print(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def section(self, title: str) -> None:
        self._print(f"-- {title} --")

    def measure(self, label: str, value, unit: str = "", *, fmt: str | None = None):
        """Print and keep one measurement. Returns ``value`` so it can be used in a notice."""
        if fmt:
            shown = format(value, fmt)
        elif isinstance(value, float):
            shown = f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        elif isinstance(value, int):
            shown = f"{value:,}"
        else:
            shown = str(value)
        self.measurements[label] = {"value": value, "unit": unit, "shown": f"{shown} {unit}".strip()}
        self._print(f"  {label}: {shown} {unit}".rstrip())
        return value

    def skip(self, label: str, reason: str) -> None:
        self.skipped[label] = reason
        self._print(f"  {label}: skipped ({reason})")

    def notice(self, text: str) -> None:
        self.notices.append(text)
        self._print(f"notice: {text}")

    def finish(self) -> int:
        if self.args.json:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            record = {
                "lesson": self.number, "title": self.title, "quick": self.quick,
                "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": machine(),
                "measurements": self.measurements, "skipped": self.skipped,
                "notices": self.notices, "output": "\n".join(self.lines),
            }
            self.args.json.write_text(json.dumps(record, indent=2) + "\n")
        return 0
