"""Helpers for the cog blocks in README.md and docs/*.md: code and numbers come from real files.

In a page:

    <!-- [[[cog from lessons.docsync import code; cog.out(code("servers/iterative.py", "handle_connection")) ]]] -->
    <!-- [[[end]]] -->

`make docs` fills every block (cog -r); the test suite runs cog --check, so a page whose code or
figures no longer match the files fails the build instead of drifting.

- ``code(path, name=None)``: a function or class of a real file (or the whole file), fenced.
- ``figure(lesson, label)``: a measurement from the lesson's recorded run in docs/results/lessons/,
  e.g. "49.8 %", exactly as the script printed it; ``value(lesson, label)`` is the raw number, for a
  cog block that chooses its words from the data.
- ``run_note(lesson)``: one line naming the machine, date and commit of that recorded run.
- ``picture(lesson, stem, alt)``: (re)draws the lesson's PICTURES[stem] from its recorded run into
  docs/results/lessons/NN-stem.png (lessons/figures.py) and returns the Markdown image line.
- ``compare(lesson, a, b, more, less, same)``: a comparative word from the recorded data, e.g.
  "faster" or "within noise of", so the page's wording follows a re-recording.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LESSON_RESULTS = ROOT / "docs" / "results" / "lessons"


def code(path: str, name: str | None = None, lang: str = "python") -> str:
    source = (ROOT / path).read_text()
    if name is None:
        body = source
    else:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == name:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                body = "\n".join(source.splitlines()[start - 1:node.end_lineno])
                break
        else:
            raise LookupError(f"{path} has no function or class named {name!r}")
    where = f"{path}" + (f", `{name}`" if name else "")
    return f"\n```{lang}\n# {where}\n{body.rstrip()}\n```\n"


def _record(lesson: str) -> dict:
    matches = sorted(LESSON_RESULTS.glob(f"{lesson}*.json"))
    if not matches:
        raise FileNotFoundError(f"no recorded run for lesson {lesson} in {LESSON_RESULTS}: "
                                "run `make lessons-record`")
    return json.loads(matches[0].read_text())


def figure(lesson: str, label: str) -> str:
    record = _record(lesson)
    try:
        return record["measurements"][label]["shown"]
    except KeyError:
        if label in record.get("skipped", {}):
            return f"(skipped: {record['skipped'][label]})"
        raise KeyError(f"lesson {lesson}'s recorded run has no measurement {label!r}; it has: "
                       f"{', '.join(record['measurements'])}") from None


def value(lesson: str, label: str):
    """The raw value of a recorded measurement (a number or a string), for wording chosen by data."""
    try:
        return _record(lesson)["measurements"][label]["value"]
    except KeyError:
        raise KeyError(f"lesson {lesson}'s recorded run has no measurement {label!r}") from None


def run_note(lesson: str) -> str:
    record = _record(lesson)
    m = record["machine"]
    return (f"Measured on {m['cpu_model']} ({m['cores_logical']} logical CPUs), Linux {m['kernel']}, "
            f"Python {m['python']}, {record['recorded'][:10]}, commit {m.get('git_commit') or 'unknown'}"
            + (" (quick mode)" if record.get("quick") else "") + ".")


def picture(lesson: str, stem: str, alt: str) -> str:
    """The Markdown image of PICTURES[stem], freshly drawn from the lesson's recorded run."""
    from lessons import figures
    paths = {p.name: p for p in figures.render(lesson, _record(lesson), LESSON_RESULTS)}
    name = figures.png_name(lesson, stem)
    if name not in paths:
        raise LookupError(f"lesson {lesson} has no picture {stem!r} in PICTURES; it has: "
                          f"{', '.join(n[3:-4] for n in paths) or 'none'}")
    return f"\n![{alt}](results/lessons/{name})\n"


def compare(lesson: str, a: str, b: str, more: str = "larger than", less: str = "smaller than",
            same: str = "about the same as", noise: float = 0.1) -> str:
    """`more` if measurement a exceeds b by more than `noise` (relative), `less` if it falls short,
    else `same`: the page's comparative word, from the recorded run."""
    m = _record(lesson)["measurements"]
    x, y = m[a]["value"], m[b]["value"]
    if abs(x - y) <= noise * max(abs(x), abs(y)):
        return same
    return more if x > y else less


def output(lesson: str) -> str:
    """The recorded run's printed output, fenced."""
    return f"\n```text\n{_record(lesson)['output'].rstrip()}\n```\n"
