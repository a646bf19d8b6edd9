"""The pages' comparative sentences hold on their recorded runs, and the pictures draw from them.

Each lesson module may define CLAIMS (lessons.common.Claim): a fragment of docs/NN-*.md and a check
on the recorded run docs/results/lessons/NN_*.json. A re-recording that flips a claim fails here
until the page's sentence changes with it. On every lesson page (CHECKED_PAGES) every sentence that
compares figures must have a claim: a check, or Claim.unmeasured with the reason it rests on
something the lesson does not measure (lessons/claims.py finds them; `python -m lessons.claims NN`
lists them). PICTURES (lessons/figures.py) must draw from a recorded record, draw a "not
measured" note for a record without the data, and give the same bytes twice.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from lessons import claims
from lessons.common import Claim, Figures, SkippedMeasurement, compare
from lessons.figures import render

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
RECORDS = ROOT / "docs" / "results" / "lessons"


def _module(name: str):
    return importlib.import_module(f"lessons.{name}")


def _page(name: str) -> str:
    pages = sorted((ROOT / "docs").glob(f"{name[:2]}-*.md"))
    assert pages, f"lesson {name} has no page docs/{name[:2]}-*.md"
    return pages[0].read_text()


def _flat(text: str) -> str:
    """Whitespace-insensitive: a fragment may wrap across lines of the Markdown."""
    return re.sub(r"\s+", " ", text).strip()


def _record(name: str) -> dict:
    return json.loads((RECORDS / f"{name}.json").read_text())


CLAIMS = [(name, i, claim) for name in SCRIPTS
          for i, claim in enumerate(getattr(_module(name), "CLAIMS", []))]


@pytest.mark.parametrize(("name", "i", "claim"), CLAIMS,
                         ids=[f"{name[:2]}-{i}" for name, i, _ in CLAIMS])
def test_claim_is_in_its_page_and_holds_on_the_recorded_run(name, i, claim: Claim):
    assert _flat(claim.text) in _flat(_page(name)), (
        f"lesson {name} claims {claim.text!r}, but its page no longer says so: update CLAIMS")
    if not claim.measured:  # rests on a documented limit or a version: it must say which
        assert claim.holds is None and len(claim.says.split()) >= 4, (
            f"lesson {name}: Claim.unmeasured({claim.text!r}) must say in a few words what it rests on")
        return
    figures = Figures(_record(name))
    try:
        holds = claim.holds(figures)
    except SkippedMeasurement as e:
        pytest.skip(f"lesson {name}: the claim {claim.text!r} was not measured in the recorded run: {e}")
    except KeyError as e:
        pytest.fail(f"lesson {name}: the claim {claim.text!r} needs a figure the recorded run lacks: {e}")
    assert holds is True or holds is False, f"lesson {name}: a claim's check must return a bool"
    assert holds, (f"lesson {name}'s page says {claim.text!r} ({claim.says}), but its recorded run "
                   "does not bear it out: change the sentence or re-record on a quiet machine")


# Every lesson page: each comparative sentence of each is tied to a claim, so a new page is
# checked from its first commit (its script's CLAIMS must cover it before it lands).
CHECKED_PAGES = [name[:2] for name in SCRIPTS]


def test_every_lesson_page_is_checked():
    pages = sorted(p.name[:2] for p in (ROOT / "docs").glob("[0-9][0-9]-*.md"))
    assert pages and pages == CHECKED_PAGES, f"pages {pages} against scripts {CHECKED_PAGES}"


@pytest.mark.parametrize("lesson", CHECKED_PAGES)
def test_every_comparative_sentence_of_a_checked_page_has_a_claim(lesson):
    missing = claims.uncovered(lesson)
    assert not missing, (
        f"docs/{claims.page_of(lesson).name}: {len(missing)} sentences compare figures without a claim; "
        f"give each a Claim (a check over the recorded run) or Claim.unmeasured(fragment, why) in the "
        f"CLAIMS of lessons/{lesson}_*.py (`python -m lessons.claims {lesson}` lists them all):\n"
        + "\n".join(f"- [{', '.join(s.words)}] {s.text}" for s in missing))


SCANNED = """# 99 · A page

Intro: two programs share a core. `make lesson N=99 ARGS=--quick` for a shorter run with the same measurements.

- **The sleeper.** It answered hundreds of times sooner than the spinner.
- One or more threads wait; each took a few milliseconds.

```text
  noticed: 2.5x faster (output: not prose)
```

<!-- [[[cog from lessons.docsync import picture; cog.out(picture("99", "x", "a curve rising in a straight line")) ]]] -->
![a curve rising in a straight line](results/lessons/99-x.png)
the processes ran 1.8x as fast (generated from the recorded run)
<!-- [[[end]]] -->

The hog took several times its probe. Nothing compared here.

## Sources

- A. Author, *Faster than light*, 1999.
"""


def test_the_scanner_finds_comparative_sentences_in_prose_and_alt_texts_only():
    _, found = claims.sentences(SCANNED)
    texts = {s.text: s.words for s in found}
    assert set(texts) == {
        "- **The sleeper.** It answered hundreds of times sooner than the spinner.",
        "- One or more threads wait; each took a few milliseconds.",
        "a curve rising in a straight line",
        "The hog took several times its probe.",
    }, texts  # not: the quick-run line, the fenced output, the generated line, the Sources
    assert texts["- One or more threads wait; each took a few milliseconds."] == ("a few milliseconds",)
    assert set(texts["a curve rising in a straight line"]) == {"rising", "straight line"}


def test_a_claim_covers_the_sentence_its_fragment_lies_in(monkeypatch, tmp_path):
    page = tmp_path / "99-a-page.md"
    page.write_text(SCANNED)
    monkeypatch.setattr(claims, "page_of", lambda lesson: page)
    monkeypatch.setattr(claims, "claims_of", lambda lesson: [
        Claim("hundreds of times sooner", lambda m: True, "checked"),
        Claim.unmeasured("in a straight\nline", "the picture's own fit, not a measurement"),
    ])
    left = {s.text for s in claims.uncovered("99")}
    assert left == {"- One or more threads wait; each took a few milliseconds.",
                    "The hog took several times its probe."}
    assert claims.main(["99"]) == 1  # the listing names what is missing


PICTURED = [name for name in SCRIPTS if getattr(_module(name), "PICTURES", None)]


@pytest.mark.parametrize("name", PICTURED)
def test_pictures_draw_from_the_record_and_are_deterministic(name, tmp_path):
    record = _record(name)
    first = render(name, record, tmp_path / "a")
    second = render(name, record, tmp_path / "b")
    assert [p.name for p in first] == [f"{name[:2]}-{stem}.png" for stem in _module(name).PICTURES]
    for a, b in zip(first, second, strict=True):
        data = a.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n"), f"{a.name} is not a PNG"
        assert data == b.read_bytes(), f"{a.name}: two draws of one record differ (not deterministic)"
        assert b"Software" not in data and b"matplotlib" not in data.lower(), "metadata left in PNG"


@pytest.mark.parametrize("name", PICTURED)
def test_pictures_say_not_measured_for_a_record_without_the_data(name):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    empty = {"lesson": name[:2], "measurements": {}, "skipped": {}, "series": {}, "notices": []}
    for stem, draw in _module(name).PICTURES.items():
        fig = Figure()
        draw(empty, fig)  # must not raise: an old or skipped run still gets a picture
        assert fig.texts or any(ax.texts for ax in fig.axes), f"{name}/{stem}: says nothing"


def _run(measurements: dict, skipped: dict | None = None) -> dict:
    return {"measurements": {k: {"value": v, "unit": u, "shown": f"{v} {u}"}
                             for k, (v, u) in measurements.items()}, "skipped": skipped or {}}


def test_yours_against_recorded_names_only_differences_beyond_noise():
    mine = _run({"slice": (3.0, "ms"), "rate": (250.0, "/s"), "share": (48.0, "%"),
                 "tight": (1.2, "us"), "cpu": (9.0, "ns"), "new": (1, "")})
    theirs = _run({"slice": (4.0, "ms"), "rate": (1000.0, "/s"), "share": (70.0, "%"),
                   "tight": (1.0, "us"), "cpu": (1.0, "ns")})
    rows = {r.label: r.verdict for r in compare(mine, theirs, {"tight": 0.1, "cpu": None})}
    assert rows["slice"] == "within noise"  # 25 % off, inside the default 50 %
    assert rows["rate"].startswith("differs (0.25x")
    assert rows["share"].startswith("differs")  # 22 points apart
    assert rows["tight"].startswith("differs")  # 20 % off, beyond the lesson's own 10 %
    assert rows["cpu"].startswith("machine-dependent")
    assert rows["new"].startswith("not in the recorded run")


def test_figures_name_a_skipped_measurement():
    m = Figures(_run({"a": (1.0, "ms")}, {"b": "needs root"}))
    assert m["a"] == 1.0
    with pytest.raises(SkippedMeasurement, match="needs root"):
        m["b"]
    with pytest.raises(KeyError, match="no measurement 'c'") as missing:
        m["c"]
    assert not isinstance(missing.value, SkippedMeasurement)
