"""Compare bench runs: what changed between a baseline and one or more later runs.

    python -m bench compare docs/results/quick results/20261201-221500-quick
    make compare A=docs/results/quick B=results/20261201-221500-quick
    python -m bench compare A B --html compare.html --fail-above 5     # CI: exit 1 on a regression

The first run is the baseline (as in pyperf's compare_to); each later run is compared with it, per
server and per cell both runs measured, on four figures: the ratio to the C reference (vs_ref,
where both runs have one: it cancels a change of the machine's speed that hits every server
alike), req/s, p99 latency and server CPU µs per request. Each change is shown with both runs'
spread (the 95 % CI of the median where a run recorded enough repeats, else min–max) and said in
words:

- "faster" / "slower" (for CPU: "less CPU" / "more CPU") when the change is beyond noise: a
  Welch t-test over the two runs' repeats rejects "no change" at 95 %, and the change is at least
  NOISE_FLOOR_PCT (a significant 0.3 % is not a result on a shared machine);
- "within noise" otherwise;
- "noise unknown" when a run has a single repeat there: one value has no spread to judge by.

A ratio cannot cancel a change that hits the kernel-heavy reference and an interpreter unequally
(docs/bench.md, "The reference, and figures as ratios"). So where the reference's own req/s moved
between the runs beyond noise and by more than REF_MOVED_PCT, the comparison says so at the top,
and every figure in those cells says how far the reference moved: there a vs_ref verdict may be
the machine's as much as the server's.

Figures come from bench/results.py's fold (through bench/report/view.py); nothing is re-derived here.
`--fail-above PCT` exits 1 when any figure got worse beyond noise by more than PCT percent, like
pytest-benchmark's --benchmark-compare-fail.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import results
from bench.report import view
from bench.report.blocks import (
    Block, BulletList, Heading, Paragraph, Table, page, to_html, to_markdown,
)
from bench.report.fmt import fmt_pct, fmt_ratio, fmt_rps, fmt_small, fmt_spread, fmt_us

NOISE_FLOOR_PCT = 2.0
# The reference's req/s moving more than this between two runs (beyond noise) means the machine
# was in another state; on the lab's 2-core VM, states an hour apart differed by 1.5-2.5x.
REF_MOVED_PCT = 20.0

# Two-sided 95 % critical values of Student's t by degrees of freedom (interpolated between).
T_975 = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365),
         (8, 2.306), (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086), (25, 2.060),
         (30, 2.042), (40, 2.021), (60, 2.000), (120, 1.980), (math.inf, 1.960))


def t_critical(df: float) -> float:
    for (d0, t0), (d1, t1) in zip(T_975, T_975[1:], strict=False):
        if df <= d1:
            if df <= d0 or math.isinf(d1):
                return t0 if df <= d0 else t1
            return t0 + (t1 - t0) * (df - d0) / (d1 - d0)
    return 1.960


def significant(a: list[float], b: list[float]) -> bool | None:
    """Welch's t-test at 95 %: do the two samples' means differ? None with fewer than 2 values
    on a side (no spread to judge by)."""
    if len(a) < 2 or len(b) < 2:
        return None
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return ma != mb
    t = abs(ma - mb) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if va else 0) + (vb ** 2 / (len(b) - 1) if vb else 0))
    return t > t_critical(df)


@dataclass(frozen=True)
class Metric:
    key: str
    title: str
    higher_is_better: bool
    better: str
    worse: str
    fmt: object

    def values(self, o: results.CellSummary) -> list[float]:
        get = {"vs_ref": lambda m: m.vs_ref, "rps": lambda m: m.rps,
               "p99": lambda m: (m.latency_us or {}).get("p99"),
               "cpu": lambda m: m.server_cpu_us_per_request}[self.key]
        return [float(v) for m in o.measured if isinstance(v := get(m), int | float)]

    def stat(self, o: results.CellSummary) -> results.Stat | None:
        return results.stat(self.values(o))


METRICS = (Metric("vs_ref", "vs ref", True, "faster", "slower", fmt_ratio),
           Metric("rps", "req/s", True, "faster", "slower", fmt_rps),
           Metric("p99", "p99", False, "faster", "slower", fmt_us),
           Metric("cpu", "CPU µs/req", False, "less CPU", "more CPU", lambda v: f"{fmt_small(v)} µs"))


@dataclass
class Change:
    server: str
    cell: results.CellKey
    metric: Metric
    a: results.Stat
    b: results.Stat
    change: float  # (b - a) / a, medians
    verdict: str  # faster / slower / less CPU / more CPU / within noise / noise unknown
    worse_beyond_noise: bool
    flags: str = ""  # what the runs' own verdicts say of these figures, when not ok
    ref_moved: float | None = None  # how far the reference's req/s moved in this cell, if beyond REF_MOVED_PCT


def judge(metric: Metric, a: list[float], b: list[float]) -> tuple[str, bool, float]:
    ma, mb = statistics.median(a), statistics.median(b)
    change = (mb - ma) / ma if ma else 0.0
    sig = significant(a, b)
    if sig is None:
        return "noise unknown", False, change
    if not sig or abs(change) * 100 < NOISE_FLOOR_PCT:
        return "within noise", False, change
    improved = (change > 0) == metric.higher_is_better
    return (metric.better if improved else metric.worse), not improved, change


def reference_moves(base: view.View, other: view.View) -> dict[results.CellKey, tuple[str, float]]:
    """cell -> (reference server, change of its req/s) where the reference ran faster or slower
    in `other` beyond noise and by more than REF_MOVED_PCT."""
    moves = {}
    for cell in base.cells:
        pair = []
        for v in (base, other):
            refs = [o for s in v.servers if (o := v.outcome(s, cell)) is not None and o.is_reference]
            pair.append(refs[0] if refs else None)
        a, b = pair
        if a is None or b is None or a.server != b.server:
            continue
        va, vb = METRICS[1].values(a), METRICS[1].values(b)
        if not va or not vb:
            continue
        verdict, _, change = judge(METRICS[1], va, vb)
        if verdict in ("faster", "slower") and abs(change) * 100 > REF_MOVED_PCT:
            moves[cell] = (a.server, change)
    return moves


def compare(base: view.View, other: view.View) -> list[Change]:
    ratios = base.has_ratios and other.has_ratios
    moves = reference_moves(base, other)
    out = []
    for server in base.servers:
        for cell in base.cells:
            a, b = base.outcome(server, cell), other.outcome(server, cell)
            if a is None or b is None or not a.measured or not b.measured:
                continue
            for metric in METRICS:
                if metric.key == "vs_ref" and (not ratios or a.is_reference):
                    continue
                va, vb = metric.values(a), metric.values(b)
                if not va or not vb:
                    continue
                verdict, worse, change = judge(metric, va, vb)
                said = [f"{side}: {o.verdict}" for side, o in (("A", a), ("B", b)) if o.verdict != "ok"]
                moved = moves[cell][1] if cell in moves and not a.is_reference else None
                if moved is not None:
                    said.append(f"the reference moved {fmt_pct(moved)}")
                out.append(Change(server, cell, metric, metric.stat(a), metric.stat(b), change,
                                  verdict, worse, "; ".join(said), moved))
    return out


def per_server(changes: list[Change], lead: str) -> dict[str, dict[str, int]]:
    """server -> {verdict: cells} on the leading figure (vs_ref, else req/s)."""
    out: dict[str, dict[str, int]] = {}
    for c in changes:
        if c.metric.key == lead:
            counts = out.setdefault(c.server, {})
            counts[c.verdict] = counts.get(c.verdict, 0) + 1
    return out


def noise_notes(v: view.View) -> list[str]:
    """The run's own warnings: the machine busy at the start, windows flagged noisy."""
    out = []
    busy = (v.meta.get("noise") or {}).get("busy_at_start")
    if busy and busy.get("top") and busy.get("busy", True):
        top = ", ".join(f"{name} {pct:.0f} %" for name, pct in busy["top"][:3])
        out.append(f"the machine was busy when the run started ({top}).")
    windows = [m for m in v.run.measurements if m.noise is not None]
    if windows and (noisy := sum(1 for m in windows if m.noisy)):
        out.append(f"{noisy} of {len(windows)} measurement windows were flagged noisy.")
    return out


def interpreters_text(v: view.View) -> str:
    """'3.11.7 (plain names), 3.13.0 (NAME@3.13)': what the run's Python servers ran under."""
    return ", ".join(f"{i['label']} ("
                     + ("plain names" if i["default"] else f"NAME@{i['tag']}") + ")"
                     for i in v.run.interpreters) or "none recorded"


def interpreters_differ(base: view.View, other: view.View) -> str | None:
    """A sentence where the runs' Python servers ran under other interpreters, else None: a
    server's change between them may be the interpreter's as much as its code's."""
    a, b = interpreters_text(base), interpreters_text(other)
    if a == b:
        return None
    return (f"**The Python interpreters differ**: A ran its Python servers under {a}; B under "
            f"{b}. A server of the same name changed interpreter where its plain name's did, "
            f"and a NAME@TAG server is compared only where both runs have it.")


def run_line(label: str, v: view.View) -> str:
    profile = v.meta.get("profile") or "?"
    return f"**{label}**: `{v.run_id}` ({profile}; {v.machine_text}; {v.date})"


def document(base: view.View, others: list[view.View], changes: dict[str, list[Change]],
             fail_above: float | None) -> tuple[list[Block], list[Change]]:
    """The comparison as blocks (printed as Markdown, written as HTML), and the regressions."""
    doc: list[Block] = [
        Heading(1, f"bench compare: {len(others)} run{'s' if len(others) != 1 else ''} against "
                   f"`{base.run_id}`"),
        BulletList([run_line("baseline (A)", base)]
                   + [run_line(f"B{i + 1 if len(others) > 1 else ''}", o)
                      for i, o in enumerate(others)]),
        Paragraph(f"Verdicts: **faster** / **slower** (CPU: **less CPU** / **more CPU**) when a "
                  f"Welch t-test over the repeats says the runs differ at 95 % and the change is "
                  f"at least {NOISE_FLOOR_PCT:g} %; else **within noise**; **noise unknown** "
                  f"where a run has one repeat. Spreads: (CI …) is the 95 % CI of the median, "
                  f"else min–max.")]
    regressions = []
    for other in others:
        found = changes[other.run_id]
        ratios = base.has_ratios and other.has_ratios
        lead = "vs_ref" if ratios else "rps"
        doc.append(Heading(2, f"`{other.run_id}` against `{base.run_id}`"))
        if not ratios:
            doc.append(Paragraph(
                "Compared on absolute figures: "
                + ("neither run has" if not (base.has_ratios or other.has_ratios)
                   else "only one run has") + " a C reference measured beside the servers, so a "
                "change of machine or a busy machine shows up as a change of every server."))
        if base.machine_text != other.machine_text:
            doc.append(Paragraph(f"The runs come from different machines ({base.machine_text} "
                                 f"vs {other.machine_text})."))
        if (said := interpreters_differ(base, other)) is not None:
            doc.append(Paragraph(said))
        if moves := reference_moves(base, other):
            ref = next(iter(moves.values()))[0]
            where = ", ".join(f"{cell.label} {fmt_pct(change)}" for cell, (_, change) in moves.items())
            doc.append(Paragraph(
                f"**The machine changed between the runs.** The reference (`{ref}`) itself ran "
                f"at another speed in B, beyond noise: {where} in req/s. A ratio to it cancels "
                "a change that speeds or slows every server alike, not one that hits the "
                "kernel-heavy reference and an interpreter unequally (docs/bench.md, \"The "
                "reference, and figures as ratios\"), so in "
                f"{'that cell' if len(moves) == 1 else 'those cells'} a vs_ref verdict may be "
                "the machine's as much as the server's. Runs compare best when the reference "
                "ran at the same speed in both."))
        if said := [f"{label}: {note}" for label, v in (("A", base), ("B", other))
                    for note in noise_notes(v)]:
            doc.append(BulletList(said))
        if not found:
            doc.append(Paragraph("No server was measured in a cell both runs have: nothing to "
                                 "compare."))
            continue
        servers = []
        for server, counts in per_server(found, lead).items():
            order = ("faster", "slower", "within noise", "noise unknown")
            text = ", ".join(f"{counts[k]} cell{'s' if counts[k] != 1 else ''} {k}"
                             for k in order if counts.get(k))
            overall = ("faster" if counts.get("faster") and not counts.get("slower") else
                       "slower" if counts.get("slower") and not counts.get("faster") else
                       "mixed" if counts.get("faster") else
                       "within noise" if counts.get("within noise") else "noise unknown")
            moved = sum(1 for c in found if c.server == server and c.metric.key == lead
                        and c.ref_moved is not None)
            cells = sum(counts.values())
            also = ("" if not moved else "; the reference moved there" if moved == cells == 1 else
                    f"; the reference moved in {'all' if moved == cells else moved} of these {cells} cells")
            servers.append(f"**{server}**: {overall} ({text}; by "
                           f"{'vs_ref' if ratios else 'req/s'}{also})")
        doc += [Heading(3, "Per server"), BulletList(servers), Heading(3, "Every figure"),
                Table(["server", "cell", "figure", "A", "B", "change", "verdict", "the runs said"],
                      [[f"`{c.server}`", c.cell.label, c.metric.title,
                        fmt_spread(c.a, c.metric.fmt), fmt_spread(c.b, c.metric.fmt),
                        fmt_pct(c.change),
                        c.verdict if c.verdict in ("within noise", "noise unknown")
                        else f"**{c.verdict}**", c.flags] for c in found],
                      right={"A", "B", "change"})]
        if fail_above is not None:
            regressions += [c for c in found
                            if c.worse_beyond_noise and abs(c.change) * 100 > fail_above]
    if fail_above is not None:
        doc.append(Heading(2, "Regressions"))
        if regressions:
            doc.append(BulletList([
                f"`{c.server}` at {c.cell.label}: {c.metric.title} {fmt_pct(c.change)} "
                f"({c.verdict}, beyond noise and above {fail_above:g} %"
                + (f"; the reference moved {fmt_pct(c.ref_moved)} there" if c.ref_moved is not None else "")
                + ")" for c in regressions]))
        else:
            doc.append(Paragraph(f"None beyond noise and above {fail_above:g} %."))
    return doc, regressions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare",
        description="Compare bench runs: per server and cell, the change in vs_ref, req/s, p99 "
                    "and server CPU per request, each with both runs' spread, said as faster, "
                    "slower or within noise. The first run is the baseline.")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="two or more run directories (results/<run_id>, docs/results/quick)")
    parser.add_argument("--html", type=Path, metavar="PATH",
                        help="also write the comparison as an HTML page")
    parser.add_argument("--fail-above", type=float, metavar="PCT",
                        help="exit 1 if any figure got worse, beyond noise, by more than PCT %%")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        parser.error("give at least two runs: the baseline first, e.g. "
                     "`python -m bench compare docs/results/quick results/<run>`")
    if args.fail_above is not None and not 0 <= args.fail_above < 1000:
        parser.error(f"--fail-above {args.fail_above:g}: give a percentage, e.g. 5")
    try:
        views = [view.load(run) for run in args.runs]
    except view.ReportError as exc:
        print(f"bench compare: {exc}", file=sys.stderr)
        return 2
    base, others = views[0], views[1:]
    changes = {o.run_id: compare(base, o) for o in others}
    doc, regressions = document(base, others, changes, args.fail_above)
    sys.stdout.write(to_markdown(doc))
    if args.html:
        args.html.write_text(page("bench compare", to_html(doc)))
        print(f"\nwrote {args.html}", file=sys.stderr)
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
