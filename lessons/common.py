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

The interface a lesson module uses (stable; lessons 01-11 rely on it):

- ``lesson.measure(label, value, unit)``, ``lesson.skip(label, why)``, ``lesson.notice(text)``,
  ``lesson.section(title)``: the printed lines, kept in the record.
- ``lesson.series(name, data)``: JSON-able data a picture needs beyond the scalar measurements
  (lists of numbers, lists of dicts); saved as ``record["series"][name]``. Returns ``data``.
- ``PICTURES = {"stem": draw}`` at module level: ``draw(record, fig)`` draws on a
  matplotlib Figure from the recorded JSON only (see lessons/figures.py; ``figures.not_measured``
  for a record that lacks the data). Saved as docs/results/lessons/NN-stem.png and embedded in the
  page with ``docsync.picture(lesson, stem, alt)``.
- ``CLAIMS = [Claim("fragment of the page", lambda m: m["label a"] < m["label b"], "what it says")]``:
  tests/test_claims.py checks that each fragment is in docs/NN-*.md (whitespace-insensitive) and
  that the predicate holds on the recorded run. ``m`` is a ``Figures``: measurement values by label,
  plus ``m.series``, ``m.skipped`` and ``m.record``. A claim whose measurement the recording skipped
  (no root, no strace on that machine) is reported as skipped with the reason; one that names a
  measurement the run does not have at all fails. ``Claim.unmeasured("fragment", "why")``
  marks a comparative sentence that rests on something the lesson does not measure (a documented
  limit, a version), with the reason; lessons/claims.py finds the page's comparative sentences and
  tests/test_claims.py fails on one that neither kind of claim covers.
- ``TOLERANCE = {"label": 0.5}``: how far the reader's figure may be from the recorded one before
  ``finish()`` names it (see ``compare``): a float is a relative tolerance (0.5 = within 50 %), a
  tuple ``(relative, absolute)`` also accepts an absolute difference in the measurement's unit, and
  ``None`` marks a machine-dependent figure that is shown but not judged.
- ``lesson.finish()``: saves the JSON (``--json``), draws the run's pictures (under
  docs/results/lessons/ when recording there, else under results/lessons/) and, unless it is the
  recording, prints each of the reader's figures beside the recorded one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSON_RESULTS = ROOT / "docs" / "results" / "lessons"
READER_RESULTS = ROOT / "results" / "lessons"

# "Noise" for yours-against-recorded: two runs of the same lesson on the same quiet machine land
# within about 10-30 % of each other on timings (more for rare events such as switches per second);
# a different CPU, kernel or load moves absolute times by 2x and more. So by default a figure is
# named as different when it is more than 50 % away from the recorded one, a percentage when it is
# more than 10 points away; a lesson can say better per label in its TOLERANCE.
DEFAULT_RELATIVE_TOLERANCE = 0.5
PERCENT_POINTS_TOLERANCE = 10.0


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
        self.series_data: dict[str, object] = {}
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

    def skip_all(self, labels, reason: str) -> None:
        """Every one of ``labels`` skipped for one reason: a section that cannot run here."""
        for label in labels:
            self.skip(label, reason)

    def notice(self, text: str) -> None:
        self.notices.append(text)
        self._print(f"notice: {text}")

    def series(self, name: str, data):
        """Keep JSON-able data for a picture (not printed); saved as record["series"][name]."""
        json.dumps(data)  # fail here, at the lesson's line, rather than when the run is saved
        self.series_data[name] = data
        return data

    def record(self) -> dict:
        return {
            "lesson": self.number, "title": self.title, "quick": self.quick,
            "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "measurements": self.measurements, "skipped": self.skipped,
            "notices": self.notices, "series": self.series_data, "output": "\n".join(self.lines),
        }

    def finish(self) -> int:
        record = self.record()
        recording = False
        if self.args.json:
            self.args.json.parent.mkdir(parents=True, exist_ok=True)
            self.args.json.write_text(json.dumps(record, indent=2) + "\n")
            recording = self.args.json.resolve().parent == LESSON_RESULTS
        self._draw(record, LESSON_RESULTS if recording else READER_RESULTS)
        if not recording:
            self._against_recorded(record)
        return 0

    def _draw(self, record: dict, out_dir: Path) -> None:
        try:
            from lessons import figures
            paths = figures.render(self.number, record, out_dir)
        except Exception as e:  # noqa: BLE001  (a picture is a bonus: it never takes the lesson down)
            print(f"pictures: not drawn ({type(e).__name__}: {e})", flush=True)
            return
        for path in paths:
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            print(f"picture: {shown}", flush=True)

    def _against_recorded(self, record: dict) -> None:
        matches = sorted(LESSON_RESULTS.glob(f"{self.number}_*.json"))
        if not matches:
            print("-- yours against recorded: no recorded run to compare with --", flush=True)
            return
        theirs = json.loads(matches[0].read_text())
        m = theirs.get("machine", {})
        say = lambda text: print(textwrap.fill(text, COLUMNS, subsequent_indent="  "), flush=True)  # noqa: E731
        say(f"-- yours against recorded ({matches[0].name}, in {matches[0].parent.relative_to(ROOT)}: "
            f"{m.get('cpu_model')}, "
            f"{m.get('cores_logical')} CPUs, {theirs.get('recorded', '')[:10]}"
            + (", quick mode" if theirs.get("quick") else "") + ") --")
        if self.quick and not theirs.get("quick"):
            say("  (yours is a --quick run, the recording a full one: sizes and counts the mode "
                "chooses differ by design)")
        rows = compare(record, theirs, getattr(_module(self.number), "TOLERANCE", {}))
        for r in rows:
            print("\n".join(row_lines(r)), flush=True)
        differ = [r.label for r in rows if r.verdict.startswith("differs")]
        say(f"{len(differ)} of {len(rows)} figures differ beyond noise (by default more than "
            f"{DEFAULT_RELATIVE_TOLERANCE:.0%} away, or {PERCENT_POINTS_TOLERANCE:g} points for a "
            "percentage). Absolute times and rates follow the CPU, the kernel and whatever else runs, "
            "so those are expected to differ; what should hold on any machine is the comparison "
            "each notice draws.")


@dataclass(frozen=True)
class Row:
    label: str
    yours: str
    recorded: str
    verdict: str  # "within noise", "differs (2.1x)", "machine-dependent", "only in yours", ...


COLUMNS = 80  # a terminal's width: a row longer than this goes on to a second line, indented


def row_lines(r: Row) -> list[str]:
    """One figure of yours beside the recorded one: on one line where it fits COLUMNS, else the
    label on its own line and the figures under it, wrapped."""
    figures = f"yours {r.yours}, recorded {r.recorded}: {r.verdict}"
    line = f"  {r.label}: {figures}"
    if len(line) <= COLUMNS:
        return [line]
    return [f"  {r.label}:", *textwrap.wrap(figures, COLUMNS, initial_indent="    ",
                                            subsequent_indent="      ", break_on_hyphens=False)]


def _tolerance(spec, unit: str) -> tuple[float, float] | None:
    if spec is None:
        return None
    if isinstance(spec, tuple):
        return float(spec[0]), float(spec[1])
    if isinstance(spec, int | float):
        return float(spec), 0.0
    return (0.0, PERCENT_POINTS_TOLERANCE) if unit == "%" else (DEFAULT_RELATIVE_TOLERANCE, 0.0)


def compare(yours: dict, recorded: dict, tolerance: dict) -> list[Row]:
    """Each of the reader's measurements beside the recorded one, with a verdict (see TOLERANCE)."""
    rows = []
    theirs = recorded.get("measurements", {})
    for label, mine in yours.get("measurements", {}).items():
        if label not in theirs:
            why = recorded.get("skipped", {}).get(label)
            rows.append(Row(label, mine["shown"], "skipped" if why else "-",
                            "not in the recorded run" + (f" (skipped there: {why})" if why else "")))
            continue
        other = theirs[label]
        a, b = mine["value"], other["value"]
        spec = tolerance.get(label, "default")
        tol = _tolerance(spec, mine.get("unit", ""))
        if tol is None:
            verdict = "machine-dependent (not judged)"
        elif isinstance(a, bool) or isinstance(b, bool) or not (
                isinstance(a, int | float) and isinstance(b, int | float)):
            verdict = "same" if a == b else "differs"
        elif a != a or b != b:  # NaN: a measurement that had nothing to measure
            verdict = "same" if (a != a) == (b != b) else "differs (one is not a number)"
        else:
            relative, absolute = tol
            gap = abs(a - b)
            if gap <= max(relative * max(abs(a), abs(b)), absolute):
                verdict = "within noise"
            elif a and b and (a > 0) == (b > 0):
                verdict = f"differs ({abs(a / b):.2g}x the recorded)"
            else:
                verdict = "differs"
        rows.append(Row(label, mine["shown"], other["shown"], verdict))
    for label, why in yours.get("skipped", {}).items():
        if label in theirs:
            rows.append(Row(label, "skipped", theirs[label]["shown"], f"skipped in yours: {why}"))
    return rows


def _module(number: str):
    from lessons.figures import lesson_module
    return lesson_module(number)


# -- Claims: the page's comparative sentences, checked against the recorded run ---------------------


class SkippedMeasurement(KeyError):
    """A claim needs a measurement that the recorded run skipped (no root, no strace...)."""


class Figures(dict):
    """A recorded run's measurement values by label, with its series, skips and whole record."""

    def __init__(self, record: dict):
        super().__init__({label: m["value"] for label, m in record.get("measurements", {}).items()})
        self.record = record
        self.series = record.get("series", {})
        self.skipped = record.get("skipped", {})

    def __missing__(self, label):
        if label in self.skipped:
            raise SkippedMeasurement(f"{label!r} was skipped in the recorded run: {self.skipped[label]}")
        raise KeyError(f"the recorded run has no measurement {label!r}")


@dataclass(frozen=True)
class Claim:
    """A sentence of the page that compares figures, and the check that keeps it true.

    ``text`` is a fragment exactly as it appears in docs/NN-*.md (runs of whitespace, including line
    breaks, compare equal); ``holds(m)`` says whether the recorded run bears it out; ``says`` is the
    claim in plain words, for the failure message.

    ``Claim.unmeasured(text, why)`` marks a sentence that compares things the lesson does not
    measure (a documented limit, a version, the kernel's own table): ``why`` says what it rests on.
    Every comparative sentence of a checked page needs one or the other (lessons/claims.py).
    """
    text: str
    holds: Callable[[Figures], bool] | None
    says: str
    measured: bool = True

    @classmethod
    def unmeasured(cls, text: str, why: str) -> Claim:
        """A comparative sentence the lesson does not measure, and what it rests on instead."""
        return cls(text, None, why, measured=False)
