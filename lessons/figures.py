"""Pictures for the lesson pages, drawn from a lesson's recorded run (its JSON), never measured here.

Each lesson module may define

    PICTURES = {"timeline": draw_timeline}

where ``draw_timeline(record: dict, fig: matplotlib.figure.Figure) -> None`` draws from
``record["measurements"]`` and ``record["series"]`` (what ``Lesson.series`` kept). A record that
lacks what a picture needs (an old run, a skipped measurement) gets a clear "not measured: why"
drawn instead: call ``not_measured(fig, why)``, never raise.

``render(lesson, record, out_dir)`` draws every picture of one lesson on a fresh figure in the lab's
one style and saves ``out_dir/NN-stem.png``. The files are deterministic (fixed size and dpi, no
metadata, same bytes for the same record), so a redraw of an unchanged record leaves git clean.

    python -m lessons.figures [NN ...]      # redraw docs/results/lessons/NN-*.png from the JSON

`make docs` redraws them too: the pages' ``picture()`` cog blocks call ``render``
(lessons.docsync), and ``Lesson.finish()`` draws the reader's own run under results/lessons/.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
LESSON_RESULTS = ROOT / "docs" / "results" / "lessons"

FIG_WIDTH_IN = 9.0  # x DPI = 900 px: readable in a GitHub page's column without zooming
FIG_HEIGHT_IN = 4.2
DPI = 100

# The lab's one style for lesson pictures (Okabe-Ito colours, as the bench's charts use).
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "axes.prop_cycle": matplotlib.cycler(color=COLOURS),
}


def lesson_module(lesson: str):
    """The module lessons/NN_name.py for "NN" or "NN_name"."""
    number = lesson[:2]
    matches = sorted((ROOT / "lessons").glob(f"{number}_*.py"))
    if not matches:
        raise LookupError(f"no lesson {number}: lessons/{number}_*.py does not exist")
    return importlib.import_module(f"lessons.{matches[0].stem}")


def recorded(lesson: str) -> dict | None:
    """The recorded run docs/results/lessons/NN_*.json, or None if there is none."""
    matches = sorted(LESSON_RESULTS.glob(f"{lesson[:2]}_*.json"))
    return json.loads(matches[0].read_text()) if matches else None


def not_measured(fig: Figure, why: str) -> None:
    """What a picture shows when its record lacks the data: the reason, in words."""
    fig.clear()
    fig.text(0.5, 0.5, f"not measured: {why}", ha="center", va="center", wrap=True,
             fontsize=12, color="#555555")


def png_name(lesson: str, stem: str) -> str:
    return f"{lesson[:2]}-{stem}.png"


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    # No metadata ("Software" is the only key Agg writes by default), fixed dpi and size: the same
    # record gives the same bytes, so redrawing an unchanged record changes nothing in git.
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    data = buffer.getvalue()
    if not path.exists() or path.read_bytes() != data:
        path.write_bytes(data)


def render(lesson: str, record: dict, out_dir: Path) -> list[Path]:
    """Draw every PICTURES entry of `lesson` from `record` into out_dir/NN-stem.png."""
    pictures = getattr(lesson_module(lesson), "PICTURES", {})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, draw in pictures.items():
        with matplotlib.rc_context(STYLE):
            fig = Figure(figsize=(FIG_WIDTH_IN, FIG_HEIGHT_IN), dpi=DPI, layout="constrained")
            try:
                draw(record, fig)
            except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
                # A draw function should handle a record without its data itself; if it did not,
                # the page still gets a picture that says why, and the test suite names the gap.
                not_measured(fig, f"this record lacks what the picture needs ({type(e).__name__}: {e})")
            path = out_dir / png_name(lesson, stem)
            _save(fig, path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    numbers = argv or sorted(p.name[:2] for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
    for number in numbers:
        record = recorded(number)
        if record is None:
            print(f"{number}: no recorded run in {LESSON_RESULTS} (make lessons-record)", file=sys.stderr)
            continue
        for path in render(number, record, LESSON_RESULTS):
            print(path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
