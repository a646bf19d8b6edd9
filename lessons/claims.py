"""The lesson pages' comparative sentences, and the claim that keeps each one true.

A sentence of docs/NN-*.md that compares figures ("2 workers served 0.98x", "hundreds of times
sooner", "a few milliseconds", "rising in a straight line") must be tied to a claim in its lesson
module's CLAIMS (lessons.common.Claim):

- ``Claim("fragment of the sentence", lambda m: ..., "what it says")``: a check over the recorded
  run, which tests/test_claims.py runs, so a re-recording that flips it fails the suite;
- ``Claim.unmeasured("fragment", "why")``: the sentence compares things the lesson does not measure
  (a documented limit, a kernel version, a default of the kernel's table), and ``why`` says what it
  rests on. The page keeps its sentence; the lesson's code shows, beside the checked claims, which
  sentences rest on something else and why.

A claim covers a sentence when its fragment lies (even in part) inside that sentence.

What is scanned: the page's own prose and its pictures' alt texts. Not scanned: fenced code and the
recorded output, the other text cog generates from the recorded run (its wording is chosen from the
data, so it follows a re-recording by construction), headings, HTML comments, and the Sources
section (titles of other works).

    python -m lessons.claims [NN ...]    # each comparative sentence of the pages and what covers it
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Words and forms that compare figures: a ratio (0.98x, 4.7x); a multiple (twice, half, several
# times, hundreds of times); a comparative (faster, sooner, more, fewer...); a vague quantity that
# stands for a figure (a few, several, dozens, tiny); an approximation of one (about 100 ms, nearly
# all, almost none); sameness (the same as, as fast as); the shape of a curve (a straight line, in
# proportion, flat, grows, climbs, in steps).
NUMBERISH = (r"(?:\d|a\b|an\b|the\b|one|two|three|four|five|six|seven|eight|nine|ten|half|twice|as\b"
             r"|what|all\b|none|nothing|every)")
UNITS = (r"(?:times|ns|nanoseconds?|µs|microseconds?|ms|milliseconds?|s\b|seconds?|minutes?|bytes|KiB|MiB"
         r"|GiB|pages|cores|CPUs|threads|processes|tasks|connections|clients|calls|syscalls|system\ calls"
         r"|switches|interrupts|ticks|requests|messages|percent|points)")
COMPARATIVE = re.compile(rf"""(?ix)
      \b\d[\d,]*(?:\.\d+)?\s?[x×](?![\w-])
    | \b(?:twice|thrice|half|double[sd]?|halve[sd]?)\b
    | \b(?:[\d,.]+|ten|a\ hundred|hundreds\ of|thousands\ of)\ times\b
    | \b(?:faster|slower|quicker|sooner|cheaper|costlier|larger|smaller|bigger|longer|shorter
          |higher|lower|greater|fewer|more|less|least|most|better|worse)\b
    | \b(?:a\ few|several|many|a\ handful\ of|dozens\ of|a\ dozen)\ {UNITS}
    | \b(?:hundreds|thousands|millions|tiny|negligible)\b
    | \b(?:about|around|roughly|approximately|nearly|almost|close\ to)\ {NUMBERISH}
    | \b(?:nearly|almost)\b
    | \b(?:the\ same\ as|as\ (?:fast|slow|much|many|large|small|often|long)\ as)\b
    | \border\ of\ magnitude\b
    | \b(?:straight\ line|in\ proportion|proportional(?:ly)?|linear(?:ly)?|flat
          |grows?|grew|grown|climbs?|climbed|rises|rising|rose|in\ steps)\b
""")
# Idioms that use those words without comparing figures.
IDIOMS = re.compile(r"(?i)\b(?:one or more|two or more|or more|no more|not any more|any more|more or less"
                    r"|at least|at most|how many times|as long as it|as long as they|for a shorter run with the same measurements)\b")

SKIPPED_SECTIONS = ("## Sources",)  # from such a heading to the next "## " heading


@dataclass(frozen=True)
class Sentence:
    text: str  # whitespace flattened
    start: int  # offset in the page's scanned prose (flattened)
    words: tuple[str, ...]  # the comparative words it contains


def page_of(lesson: str) -> Path:
    pages = sorted((ROOT / "docs").glob(f"{lesson[:2]}-*.md"))
    if not pages:
        raise LookupError(f"lesson {lesson[:2]} has no page docs/{lesson[:2]}-*.md")
    return pages[0]


def flat(text: str) -> str:
    """Whitespace-insensitive: a fragment may wrap across lines of the Markdown."""
    return re.sub(r"\s+", " ", text).strip()


def prose(markdown: str) -> list[str]:
    """The page's own prose as blocks (paragraphs and list items), each flattened; see the module
    docstring for what is left out."""
    kept: list[str] = []
    lines = markdown.splitlines()
    i, skipping_section = 0, False
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            skipping_section = line.startswith(SKIPPED_SECTIONS)
        if "[[[cog" in line:  # a cog block: its source, then its output up to [[[end]]]
            j = i
            while j < len(lines) and "[[[end]]]" not in lines[j]:
                j += 1
            block = "\n".join(lines[i:j])
            kept.extend(f"\n{alt}\n" for alt in re.findall(r"!\[([^\]]*)\]\(", block))  # alt texts
            kept.append("\n")  # a cog block ends the paragraph it sits in only if it is on its own
            i = j + 1
            continue
        if line.lstrip().startswith("```"):  # fenced code: up to the closing fence
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            kept.append("\n")
            i = j + 1
            continue
        if not skipping_section and not line.startswith("#"):
            kept.append(re.sub(r"<!--.*?-->", "", line))
        else:
            kept.append("")
        i += 1
    text = "\n".join(kept)
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    blocks = re.split(r"\n\s*\n|\n(?=\s*(?:[-*]|\d+\.)\s)", text)  # paragraphs, list items
    return [b for b in (flat(block) for block in blocks) if b]


# A sentence ends at . ! or ? followed by a space and a capital, a backtick, an asterisk or a
# parenthesis (so "1.5 ms", "e.g. a" and "3.11 does" do not end one).
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*(\[\"])")


def sentences(markdown: str) -> tuple[str, list[Sentence]]:
    """(the scanned prose, flattened, one block a line; its sentences with comparative words)."""
    out, offset, joined = [], 0, []
    for block in prose(markdown):
        start = 0
        for piece in SENTENCE_END.split(block):
            where = block.index(piece, start)
            start = where + len(piece)
            words = tuple(m.group(0) for m in COMPARATIVE.finditer(IDIOMS.sub("", piece)))
            if words:
                out.append(Sentence(piece, offset + where, words))
        joined.append(block)
        offset += len(block) + 1
    return "\n".join(joined), out


def claims_of(lesson: str) -> list:
    from lessons.figures import lesson_module
    return list(getattr(lesson_module(lesson), "CLAIMS", []))


def coverage(lesson: str) -> list[tuple[Sentence, list]]:
    """Each comparative sentence of the lesson's page with the claims whose fragment lies in it."""
    text, found = sentences(page_of(lesson).read_text())
    spans = []
    for claim in claims_of(lesson):
        fragment = flat(claim.text)
        for m in re.finditer(re.escape(fragment), text):
            spans.append((m.start(), m.end(), claim))
    return [(s, [c for a, b, c in spans if a < s.start + len(s.text) and b > s.start]) for s in found]


def uncovered(lesson: str) -> list[Sentence]:
    return [s for s, claims in coverage(lesson) if not claims]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    lessons = argv or sorted(p.name[:2] for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
    missing = 0
    for lesson in lessons:
        rows = coverage(lesson)
        page = page_of(lesson)
        print(f"== {page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}: {len(rows)} comparative sentences, "
              f"{sum(1 for _, c in rows if not c)} without a claim")
        for sentence, claims in rows:
            if not claims:
                missing += 1
                tag = "NO CLAIM"
            elif not any(c.measured for c in claims):
                tag = "unmeasured: " + "; ".join(c.says for c in claims)
            else:
                tag = "checked: " + "; ".join(c.says for c in claims if c.measured)
            print(f"- [{', '.join(sentence.words)}] {sentence.text}\n    -> {tag}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
