"""Compare bench runs: which servers got faster or slower between a baseline and a later run, in
a way a CI gate can trust.

    python -m bench compare docs/results/quick results/20261201-221500-quick
    make compare A=docs/results/quick B=results/20261201-221500-quick
    python -m bench compare A B --fail-above 5     # CI: exit 1 when a server got slower

The first run is the baseline (as in pyperf's compare_to); each later run is compared with it.

**The figure.** Per server and cell both runs measured cleanly, the per-round ratios to the
reference (vs_ref: the reference runs in the same window or round, so the ratio cancels the
machine's drift; it is the figure every ranking uses); where a run has no reference, the
per-round req/s. A cell that is noisy, client-bound, degraded or failed in either run is not
tested (its figure is not the server's; the run's own ranking leaves it out the same way), nor
one with a single round in a run (one value has no spread to judge by).

**The test.** Welch's t-test on the logarithms of the per-round figures (bench/stats.py's t
distribution, Welch-Satterthwaite degrees of freedom): a ratio varies by a factor, and the logs
make 0.5x and 2x the same distance from 1, as the run's own interval of vs_ref does
(stats.log_t_interval). Why not a rank or permutation test: at the quick profile's 3 rounds a
side the smallest two-sided p a permutation of 3 + 3 values can give is 2/20 = 0.1, so after any
correction no change could ever be found; the t-test's assumption (normal logs) is the one the
run's intervals already make, and Welch's degrees of freedom (as few as 2 at 3 + 3 rounds) pay
for the small samples with a wide threshold instead of a false verdict.

**The correction.** Every server x cell tested is one hypothesis; Holm's step-down method
(HOLM_LEVEL) controls the chance of even one false "faster" or "slower" among all of them, at
any dependence between the tests, where 60 uncorrected tests at 5 % would give three by chance.

**The practical threshold is part of the test.** A significant 1 % is not a result on a shared
machine, so each cell's test asks whether its change lies beyond ±MIN_CHANGE, not beyond 0: t is
the distance of the change past the margin over its standard error (a minimum-effect test). On
seeded synthetic A/A pairs (tests/test_compare.py's synthetic_run: 20 servers x 3 cells, the
quick profile's rounds, 3-12 % per-round noise, outlier rounds, 4 % + 3 % run-to-run shifts), 8
of 60 pairs gave a false verdict when the test was against 0 and the 5 % only a cut on the
estimate, 1 of 60 with the margin in the test.

**The verdict.** A server is **faster** (or **slower**) when at least one of its cells changed
beyond ±MIN_CHANGE after the correction, and none of its cells moved the other way by
MIN_CHANGE with p under HOLM_LEVEL against no change, even before the correction (the veto is not
corrected: that would make a false verdict easier); such a server is **mixed**, never faster or
slower; the others are unchanged.

**Between runs, not only within.** Rounds of one run share its machine's state; two runs an
hour apart may not (docs/bench.md, "The reference, and figures as ratios": the reference slowed
by half while the Python servers slowed less). So each cell's test adds to the rounds' own
spread the spread of the run-to-run changes that every server in that cell shows (a robust
estimate over the servers, BETWEEN_RUNS): the noise a second run of the same commit would have.

**Output.** A summary of at most 30 lines on the terminal (its width; 120 columns when not a
terminal): the verdict per changed server, how many are unchanged, how the runs' environments
differ (commit, kernel, Python, CPU, the reference's own req/s and whether it moved), pairs of
servers ordered beyond noise one way in A and the other in B (the run's one rule,
stats.Ranking.beyond_noise), the cells only one run has, and the path of the full table:
Markdown beside the later run, <B>/compare-<A's run id>.md (`--table PATH` to choose; `--html`
writes it as a page too).

Exit code: 0; 1 with --fail-above PCT when a server is slower, beyond noise, by more than PCT % in
a cell (no lower than MIN_CHANGE); 2 on a bad option or a run that cannot be read.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench import results
from bench import stats as st
from bench.report import view
# The test itself (Welch on the logs, Holm, the run-to-run spread): bench/significance.py.
from bench.significance import (  # noqa: F401
    HOLM_LEVEL, MIN_CHANGE, MIN_SERVERS, between_runs, holm, log_values, welch)
# What differs between the runs' environments: bench/environment.py.
from bench.environment import (  # noqa: F401
    ReferenceMove, commit_text, environment, interpreters_text, reference_moves)
from bench.report.blocks import BulletList, Heading, Paragraph, Table, page, to_html, to_markdown
from bench.report.fmt import fmt_pct, fmt_ratio, fmt_rps, fmt_spread, fmt_us, join

# The reference's own req/s moving more than this (beyond noise) means the machine was in
# another state; on the lab's 2-core VM, states an hour apart differed by 1.5-2.5x.
REF_MOVED = 0.20
SUMMARY_LINES = 30  # the most lines of the summary printed on the terminal


# -- The comparison -------------------------------------------------------------------------------


@dataclass
class CellTest:
    """One server at one cell in both runs: the figure in each, the change and the test."""

    server: str
    cell: results.CellKey
    a: results.CellSummary
    b: results.CellSummary
    a_stat: results.Stat | None = None  # the figure tested (vs_ref, or req/s without ratios)
    b_stat: results.Stat | None = None
    change: float | None = None  # B over A, minus 1
    relative: float | None = None  # the change against the shift the cell's servers share
    p: float | None = None  # that the change lies within ±MIN_CHANGE (margin test)
    p_any: float | None = None  # that there is no change at all (for the veto)
    p_holm: float | None = None
    not_tested: str | None = None  # why, when it was not

    @property
    def beyond_noise(self) -> bool:
        return self.p_holm is not None and self.p_holm < HOLM_LEVEL

    @property
    def direction(self) -> int:
        """+1 faster, -1 slower beyond noise and by at least MIN_CHANGE; 0 otherwise."""
        if not self.beyond_noise or self.relative is None or abs(self.relative) < MIN_CHANGE:
            return 0
        return 1 if self.relative > 0 else -1

    @property
    def against(self) -> int:
        """The direction of a change of at least MIN_CHANGE with p under HOLM_LEVEL before the
        correction: a cell that moved so the other way keeps its server from being called faster
        (or slower). The correction guards against false verdicts; applied to this veto, it
        would make them easier."""
        if self.p_any is None or self.p_any >= HOLM_LEVEL or self.relative is None \
                or abs(self.relative) < MIN_CHANGE:
            return 0
        return 1 if self.relative > 0 else -1

    @property
    def verdict(self) -> str:
        if self.not_tested:
            return "not tested"
        if self.p is None:
            return "noise unknown"
        return {1: "faster", -1: "slower"}.get(self.direction, "within noise" if not
                                               self.beyond_noise else f"under {pct(MIN_CHANGE)}")


@dataclass
class ServerVerdict:
    server: str
    verdict: str  # faster, slower, mixed, unchanged
    cells: list[CellTest]  # the cells behind the verdict (beyond noise), biggest change first


@dataclass
class Comparison:
    base: view.View
    other: view.View
    by_ratio: bool
    tests: list[CellTest]
    servers: list[ServerVerdict]
    between: dict[results.CellKey, tuple[float, float]]  # per cell: the shared shift, the
    # run-to-run spread around it (logs: a change, a standard deviation)
    only_a: dict[str, list[results.CellKey]] = field(default_factory=dict)
    only_b: dict[str, list[results.CellKey]] = field(default_factory=dict)
    reversed_pairs: list[tuple[results.CellKey, str, str]] = field(default_factory=list)
    ordered_pairs: int = 0  # pairs ordered beyond noise in both runs

    @property
    def tested(self) -> list[CellTest]:
        return [t for t in self.tests if t.p is not None]

    def of(self, verdict: str) -> list[ServerVerdict]:
        return [s for s in self.servers if s.verdict == verdict]


def figure(o: results.CellSummary, by_ratio: bool) -> tuple[list[float], results.Stat | None]:
    """The per-round values tested, and their Stat: vs_ref (its geometric mean and t-interval),
    or req/s where the runs have no reference."""
    if by_ratio:
        return [m.vs_ref for m in o.used if m.vs_ref], o.vs_ref_stat
    return [m.rps for m in o.used if m.rps], st.ratio_stat(m.rps for m in o.used)


def compare(base: view.View, other: view.View) -> Comparison:
    """Every server x cell both runs have, tested and Holm-corrected; each server's verdict."""
    by_ratio = base.has_ratios and other.has_ratios
    tests: list[CellTest] = []
    only_a: dict[str, list[results.CellKey]] = {}
    only_b: dict[str, list[results.CellKey]] = {}
    for server in dict.fromkeys([*base.servers, *other.servers]):
        for cell in dict.fromkeys([*base.cells, *other.cells]):
            a, b = base.outcome(server, cell), other.outcome(server, cell)
            a = a if a is not None and a.measured else None
            b = b if b is not None and b.measured else None
            if a is None and b is None:
                continue
            if a is None or b is None:
                (only_a if b is None else only_b).setdefault(server, []).append(cell)
                continue
            if a.is_reference or b.is_reference:
                continue  # 1 by definition; its req/s is the environment's (environment())
            t = CellTest(server, cell, a, b)
            tests.append(t)
            if cell.is_open:
                t.not_tested = "open loop: req/s is the rate offered"
                continue
            if not (a.clean and b.clean):
                said = [f"{side} {o.verdict}" for side, o in (("A", a), ("B", b)) if not o.clean]
                t.not_tested = ", ".join(said)
                continue
            (va, t.a_stat), (vb, t.b_stat) = figure(a, by_ratio), figure(b, by_ratio)
            la, lb = log_values(va), log_values(vb)
            if not la or not lb:
                t.not_tested = "no figure"
    between: dict[results.CellKey, float] = {}
    for cell in dict.fromkeys(t.cell for t in tests):
        here = [t for t in tests if t.cell == cell and not t.not_tested]
        logs = [(log_values(figure(t.a, by_ratio)[0]), log_values(figure(t.b, by_ratio)[0]))
                for t in here]
        pairs = [(la, lb) for la, lb in logs if len(la) >= 2 and len(lb) >= 2]
        centre, var = between_runs(
            [statistics.fmean(lb) - statistics.fmean(la) for la, lb in pairs],
            [statistics.variance(la) / len(la) + statistics.variance(lb) / len(lb)
             for la, lb in pairs])
        between[cell] = (centre, math.sqrt(var))
        for t, (la, lb) in zip(here, logs, strict=True):
            diff, t.p = welch(la, lb, var, centre, math.log1p(MIN_CHANGE))
            _, t.p_any = welch(la, lb, var, centre)
            t.change = math.exp(diff + centre) - 1
            t.relative = math.exp(diff) - 1
    tested = [t for t in tests if t.p is not None]
    for t, adjusted in zip(tested, holm([t.p for t in tested]), strict=True):
        t.p_holm = adjusted
    verdicts = []
    for server in dict.fromkeys(t.server for t in tests):
        mine = [t for t in tests if t.server == server]
        ups = [t for t in mine if t.direction > 0]
        downs = [t for t in mine if t.direction < 0]
        up_any = any(t.against > 0 for t in mine)
        down_any = any(t.against < 0 for t in mine)
        if (ups and down_any) or (downs and up_any):
            verdict, cells = "mixed", ups + downs
        elif ups or downs:
            verdict, cells = ("faster", ups) if ups else ("slower", downs)
        else:
            verdict, cells = "unchanged", []
        cells.sort(key=lambda t: -abs(t.relative or 0))
        verdicts.append(ServerVerdict(server, verdict, cells))
    comparison = Comparison(base, other, by_ratio, tests, verdicts, between, only_a, only_b)
    reversed_orderings(comparison)
    return comparison


def reversed_orderings(c: Comparison) -> None:
    """Pairs of servers ordered beyond noise in both runs by each run's one rule
    (stats.Ranking.beyond_noise), and those ordered one way in A and the other in B."""
    for cell in [cell for cell in c.base.cells if cell in c.other.cells]:
        ra, rb = view.ranking(c.base, cell), view.ranking(c.other, cell)
        names = sorted({p.server for p in ra.servers} & {p.server for p in rb.servers})
        for i, x in enumerate(names):
            for y in names[i + 1:]:
                da, db = ra.beyond_noise(x, y), rb.beyond_noise(x, y)
                if da and db:
                    c.ordered_pairs += 1
                    if da != db:
                        c.reversed_pairs.append((cell, x, y) if da > 0 else (cell, y, x))


# -- The summary (terminal) -----------------------------------------------------------------------


def cell_short(cell: results.CellKey) -> str:
    return cell.label.replace(" conns", "").replace(" conn", "")


def change_text(t: CellTest) -> str:
    """'−24 % at 16 × 1 KiB': the change against the shift the cell's servers share."""
    return f"{fmt_pct(t.relative)} at {cell_short(t.cell)}"


def pct(share: float) -> str:
    return f"{share * 100:g} %"


def summary_lines(c: Comparison, table_path: Path | None, fail_above: float | None,
                  most: int = 6) -> list[str]:
    """The summary's lines, before wrapping, naming at most `most` servers per verdict (the
    rest are counted; the table has them all)."""
    figure_name = "× ref" if c.by_ratio else "req/s (a run has no reference)"
    lines = [f"bench compare: B {c.other.run_id} against A {c.base.run_id}",
             f"by {figure_name} per round: Welch t on the logs, beyond ±{pct(MIN_CHANGE)}, Holm "
             f"over {len(c.tested)} server × cell tests at {pct(HOLM_LEVEL)} (--help says how)"]
    for verdict in ("slower", "faster", "mixed"):
        found = c.of(verdict)
        items = [f"{s.server} ({', '.join(change_text(t) for t in s.cells[:2])}"
                 + (f", +{len(s.cells) - 2} cells" if len(s.cells) > 2 else "") + ")"
                 for s in found]
        if len(items) > most:
            items = items[:most] + [f"{len(items) - most} more in the table"]
        lines.append(f"{verdict}: " + ("; ".join(items) or "none"))
    if differ := [what for what, a, b in environment(c.base, c.other)
                  if a != b and what in ("kernel", "CPU")]:
        lines.append(f"the runs ran on another {' and '.join(differ)}: a verdict may be the "
                     f"machine's, not the code's")
    unchanged = c.of("unchanged")
    untested = [t for t in c.tests if t.p is None]
    lines.append(f"unchanged: {len(unchanged)} server{'s' if len(unchanged) != 1 else ''}; "
                 f"{len(untested)} server × cell not tested (noisy, client-bound, degraded "
                 f"or one round in a run)")
    if shared := [f"{cell_short(cell)} {fmt_pct(math.expm1(centre))} ±{pct(round(sd, 3))}"
                  for cell, (centre, sd) in c.between.items() if centre or sd]:
        lines.append("the servers together (each judged against it), and the run-to-run spread "
                     "around it: " + "; ".join(shared))
    lines.append("environment, A → B:")
    for what, a, b in environment(c.base, c.other):
        lines.append(f"  {what}: " + (f"same, {a}" if a == b else f"{a} → {b}"))
    if moves := reference_moves(c.base, c.other):
        said = [f"{cell_short(m.cell)} {fmt_rps(m.a.value)} → {fmt_rps(m.b.value)} "
                f"({fmt_pct(m.change)}, {'beyond' if m.moved else 'within'} noise)"
                for m in moves]
        far = [m for m in moves if m.moved and abs(m.change) > REF_MOVED]
        lines.append(f"  {moves[0].server} req/s: " + "; ".join(said)
                     + (f"; moved over {pct(REF_MOVED)}: the machine's state changed, and "
                        "× ref verdicts there may be the machine's" if far else ""))
    if c.reversed_pairs:
        pairs = [f"{x} > {y} at {cell_short(cell)} in A, < in B"
                 for cell, x, y in c.reversed_pairs[:3]]
        more = len(c.reversed_pairs) - 3
        lines.append("ordered both ways: " + "; ".join(pairs) + (f"; {more} more" if more > 0 else ""))
    else:
        lines.append(f"ordered both ways: none of the {c.ordered_pairs} pairs of servers ordered "
                     "beyond noise in both runs")
    for side, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            lines.append(f"only in {side}: " + (only_text(only, c.base, c.other) if side == "A"
                                                 else only_text(only, c.other, c.base)))
    if fail_above is not None:
        failing = regressions(c, fail_above)
        lines.append(f"gate --fail-above {fail_above:g}: "
                     + (f"FAIL, {join(sorted({t.server for t in failing}))} slower by more than "
                        f"{pct(max(fail_above / 100, MIN_CHANGE))}" if failing else "pass"))
    if table_path is not None:
        lines += ["full table:", f"  {table_path}"]
    return lines


def only_text(only: dict[str, list[results.CellKey]], v: view.View, other: view.View) -> str:
    """What `v` measured and `other` did not: '1 × 1 KiB (the whole cell, 22 servers);
    epoll@3.13 (3 cells); c-uring (16 × 1 KiB)'. A cell the other run has no server at, and a
    server it has at no cell, are each said once."""
    other_cells = {c for s in other.servers for c in other.cells
                   if (o := other.outcome(s, c)) is not None and o.measured}
    whole_cells = list(dict.fromkeys(c for cells in only.values() for c in cells
                                     if c not in other_cells))
    said = [f"{cell_short(c)} (the whole cell, "
            f"{sum(1 for cells in only.values() if c in cells)} servers)" for c in whole_cells]
    for server, cells in only.items():
        rest = [c for c in cells if c not in whole_cells]
        if rest:
            said.append(f"{server} ({', '.join(cell_short(c) for c in rest)})" if len(rest) < 3
                        else f"{server} ({len(rest)} cells)")
    return "; ".join(said[:8]) + (f"; {len(said) - 8} more" if len(said) > 8 else "")


def wrapped(lines: list[str], width: int) -> list[str]:
    """Each line wrapped at `width` (words whole, continuations indented), a path on a line of
    its own (indented two spaces, never wrapped)."""
    from bench.run.console import wrap

    out = []
    for line in lines:
        for joined in (" %", " × ", " KiB", " MiB"):  # kept together: no-break spaces to wrap
            line = line.replace(joined, joined.replace(" ", "\u00a0"))
        if line.startswith("  ") and " " not in line.strip():
            out.append(line)  # a path: whole
        else:
            out += wrap(line, indent="    " if line.startswith("  ") else "  ",
                        width=width).splitlines()
    return [line.replace("\u00a0", " ") for line in out]


def summary(c: Comparison, table_path: Path | None, fail_above: float | None,
            width: int) -> list[str]:
    """The summary wrapped at `width`, in at most SUMMARY_LINES lines: fewer servers named per
    verdict until it fits."""
    for most in (6, 3, 1, 0):
        lines = wrapped(summary_lines(c, table_path, fail_above, most), width)
        if len(lines) <= SUMMARY_LINES:
            break
    return lines


def regressions(c: Comparison, fail_above: float) -> list[CellTest]:
    """Cells of servers called slower that moved down by more than fail_above %."""
    slower = {s.server for s in c.of("slower")}
    return [t for t in c.tests if t.server in slower and t.direction < 0
            and abs(t.relative) * 100 > fail_above]


# -- The full table (Markdown file) ---------------------------------------------------------------


def p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def shared_text(between: tuple[float, float] | None) -> str:
    """'+4.6 % ±5.9 %': the shift a cell's servers share and the run-to-run spread around it."""
    if between is None:
        return "—"
    centre, sd = between
    return f"{fmt_pct(math.expm1(centre))} ±{sd * 100:.2g} %"


def table_blocks(c: Comparison) -> list:
    fig = "vs ref" if c.by_ratio else "req/s"
    blocks = [
        Heading(1, f"bench compare: `{c.other.run_id}` against `{c.base.run_id}`"),
        Paragraph(f"Per server and cell, the per-round {fig} of each run (A, B: the geometric "
                  f"mean and its 95 % interval), the change B over A, the shift the cell's "
                  f"servers share (their median change) with the run-to-run spread around it, "
                  f"the change against that shift, the p of Welch's t-test that it lies within "
                  f"±{pct(MIN_CHANGE)} (on the logs; the rounds' spread plus the run-to-run "
                  f"spread) and the p "
                  f"after Holm's correction over all "
                  f"{len(c.tested)} tests. A server is faster or slower when a cell's Holm p is "
                  f"under {HOLM_LEVEL:g}, and no cell "
                  f"moved beyond noise the other way (bench/compare.py, docs/bench.md). req/s, "
                  f"p99 and CPU µs per request are shown for reading, not judged."),
        Heading(2, "Per server"),
        BulletList([f"**{s.server}**: {s.verdict}"
                    + (f" ({', '.join(change_text(t) for t in s.cells)})" if s.cells else "")
                    for s in c.servers]),
        Heading(2, "Environment, A → B"),
        BulletList([f"{what}: {a}" + ("" if a == b else f" → {b}")
                    for what, a, b in environment(c.base, c.other)]
                   + [f"{m.server} req/s at {m.cell.label}: {fmt_spread(m.a, fmt_rps)} → "
                      f"{fmt_spread(m.b, fmt_rps)}, {fmt_pct(m.change)}, p {p_text(m.p)}"
                      for m in reference_moves(c.base, c.other)]),
        Heading(2, "Every server × cell")]

    def cmp(o_a, o_b, fmt):
        if o_a is None or o_b is None:
            return "—"
        change = f", {fmt_pct(o_b.value / o_a.value - 1)}" if o_a.value else ""
        return f"{fmt(o_a.value)} → {fmt(o_b.value)}{change}"

    rows = []
    for t in c.tests:
        rows.append([f"`{t.server}`", t.cell.label, fmt_spread(t.a_stat, fmt_ratio if c.by_ratio
                                                               else fmt_rps),
                     fmt_spread(t.b_stat, fmt_ratio if c.by_ratio else fmt_rps),
                     fmt_pct(t.change) if t.change is not None else "—",
                     shared_text(c.between.get(t.cell)),
                     fmt_pct(t.relative) if t.relative is not None else "—",
                     p_text(t.p), p_text(t.p_holm),
                     t.verdict if t.verdict not in ("faster", "slower") else f"**{t.verdict}**",
                     t.not_tested or "",
                     cmp(t.a.rps, t.b.rps, fmt_rps), cmp(t.a.p99_us, t.b.p99_us, fmt_us),
                     cmp(t.a.cpu_us_per_request, t.b.cpu_us_per_request,
                         lambda v: f"{v:.1f} µs")])
    blocks.append(Table(["server", "cell", f"A {fig}", f"B {fig}", "change", "cell's servers",
                         "against them", "p", "Holm p", "verdict", "why not tested", "req/s",
                         "p99", "CPU/req"],
                        rows, right={"change", "cell's servers", "against them", "p", "Holm p"}))
    if c.reversed_pairs:
        blocks += [Heading(2, "Ordered both ways"),
                   BulletList([f"{cell.label}: {x} ahead of {y} beyond noise in A, behind in B"
                               for cell, x, y in c.reversed_pairs])]
    for side, only in (("A", c.only_a), ("B", c.only_b)):
        if only:
            blocks += [Heading(2, f"Only in {side}"),
                       BulletList([f"{s}: {', '.join(cell.label for cell in cells)}"
                                   for s, cells in only.items()])]
    return blocks


def table_path(base: view.View, other: view.View) -> Path:
    """The full table's default place: beside the later run, named after the baseline."""
    return other.dir / f"compare-{base.run_id}.md"


# -- Command line ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Which servers got faster or slower between runs, beyond noise.\n"
                    "The first run is the baseline A; each later run B is compared with it.",
        epilog=f"""\
how it judges:
  per server and cell clean in both runs, the per-round ratio to the
  reference (req/s where a run has none); Welch's t-test on their logs of
  the change against the shift the cell's servers share, with the rounds'
  spread plus the servers' run-to-run spread around that shift; Holm's
  correction over every server x cell tested (family-wise {HOLM_LEVEL:g}). A server
  is faster or slower when a cell moved beyond noise past ±{pct(MIN_CHANGE)} and no
  cell moved {pct(MIN_CHANGE)} the other way at p < {HOLM_LEVEL:g}; both ways: mixed.

output:
  a summary of at most {SUMMARY_LINES} lines; the full table as Markdown in
  <B>/compare-<A's run id>.md (or --table PATH).

exit status:
  0  compared (and with --fail-above, no server slower by more than PCT)
  1  --fail-above PCT: a server is slower, beyond noise, by more than PCT %
     (PCT below {MIN_CHANGE * 100:g} counts as {MIN_CHANGE * 100:g}) in a cell
  2  a bad option, or a run that cannot be read""")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="two or more run directories (results/<run_id>, docs/results/quick)")
    parser.add_argument("--table", type=Path, metavar="PATH",
                        help="write the full table here (with several later runs: the last's)")
    parser.add_argument("--html", type=Path, metavar="PATH",
                        help="also write the full table as an HTML page")
    parser.add_argument("--fail-above", type=float, metavar="PCT",
                        help="exit 1 if a server is slower, beyond noise, by more than PCT %%")
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
    from bench.run.console import NOT_A_TERMINAL_WIDTH, terminal_width

    width = terminal_width() or NOT_A_TERMINAL_WIDTH
    base, failed = views[0], False
    for i, other in enumerate(views[1:]):
        c = compare(base, other)
        blocks = table_blocks(c)
        path = args.table if args.table and i == len(views) - 2 else table_path(base, other)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_markdown(blocks))
        except OSError as exc:
            print(f"bench compare: cannot write the full table to {path} ({exc.strerror}); "
                  f"give another place with --table PATH", file=sys.stderr)
            path = None
        if i:
            print()
        print("\n".join(summary(c, path, args.fail_above, width)))
        if args.html and i == len(views) - 2:
            args.html.write_text(page("bench compare", to_html(blocks)))
            print(f"wrote {args.html}", file=sys.stderr)
        failed |= bool(args.fail_above is not None and regressions(c, args.fail_above))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
