"""The report's view of one run: bench/results.py's folded cells arranged for showing.

    view = load("results/20261201-221500-quick")
    view.servers          # in family order (the reference first), then run order
    view.cells            # closed loop first, then by size, connections, rate
    view.outcome("epoll", cell)   # a results.CellSummary, or None if it was not planned

Nothing here measures or re-derives a figure: every number comes from results.CellSummary, and
every ranking from results.rank (the one rule). What this module adds is presentation: the order
of servers, each one's colour and marker, which cell to headline, and which results may be
credited as a leader (`clean`).

Families and their colours come from the run itself (each record's family field), never from
today's registry, so an old run's report never changes.
"""

from __future__ import annotations

import colorsys
import statistics
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from matplotlib.colors import to_hex, to_rgb

import servers
from bench import hist, results

# Families in the registry's order (the order the lessons meet them), each with its colour
# (Okabe-Ito, distinct for colour-blind readers). The C reference is a family of its own, drawn in
# black, and "yours" is a server from outside the lab (bench run --server / --target).
REFERENCE_FAMILY = "reference"
FAMILIES = (REFERENCE_FAMILY, *servers.FAMILIES, "yours")
FAMILY_COLOURS = {
    REFERENCE_FAMILY: "#000000",
    "blocking": "#D55E00",  # vermillion
    "multi-process": "#CC79A7",  # reddish purple
    "multiplexed": "#0072B2",  # blue
    "async": "#009E73",  # bluish green
    "fibers": "#E69F00",  # orange
    "yours": "#56B4E9",  # sky blue
}
OTHER_COLOUR = "#777777"  # a family this version of the report does not know
SHADE_SPAN = 0.14  # lightness range of the servers of one family (HLS lightness, 0..1)
MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "*", "h")  # "x" is kept for failures
LINESTYLES = ("-", "--", "-.", ":")

# How every chart marks a figure that is not clean (results.STATUS_ORDER), the same way in the
# PNGs, the SVGs and the HTML page: filled = ok; hollow = noisy or client-bound (a floor, or a
# window other processes disturbed); hollow in a red ring = degraded; × on the axis = failed.
NOT_CLEAN = ("noisy", "client-bound", "degraded")
DEGRADED_RING = "#cc3311"

class ReportError(Exception):
    """A run directory the report cannot read; the message says what to do."""


def clean(o: results.CellSummary | None) -> bool:
    """A result that may be ranked and credited as a leader (results.CellSummary.clean)."""
    return o is not None and o.clean


@dataclass
class View:
    run: results.Run
    servers: list[str]  # family order, then run order
    families: dict[str, str]  # server -> family (REFERENCE_FAMILY for the reference)
    cells: list[results.CellKey]
    summaries: dict[tuple[str, results.CellKey], results.CellSummary]
    skipped_servers: dict[str, str]  # server -> why it was not run at all
    reference: str | None  # the reference server's name, if the run measured one

    @property
    def dir(self) -> Path:
        return self.run.dir

    @property
    def meta(self) -> dict:
        return self.run.meta

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def date(self) -> str:
        created = self.meta.get("created")
        try:
            return datetime.fromisoformat(created).strftime("%Y-%m-%d") if created else "date unknown"
        except (TypeError, ValueError):
            return str(created)

    @property
    def machine_text(self) -> str:
        machine = self.meta.get("machine") or {}
        cores = machine.get("cores_logical")
        return f"{machine.get('cpu_model') or 'unknown CPU'}, {cores if cores else '?'} cores"

    @property
    def footer(self) -> str:
        return f"{self.machine_text} · run {self.run_id} · {self.date}"

    @property
    def has_ratios(self) -> bool:
        """The run has a reference measured beside the servers (schema 2), so ratios lead."""
        return any(o.vs_ref is not None for o in self.summaries.values() if not o.is_reference)

    def mem_basis(self) -> str | None:
        """The one memory basis the charts use: the one most records were computed from."""
        bases = [m.extra.get("server_mem_basis") for m in self.run.measurements
                 if m.extra.get("server_mem_basis")]
        return statistics.mode(bases) if bases else None

    def outcome(self, server: str, cell: results.CellKey) -> results.CellSummary | None:
        return self.summaries.get((server, cell))

    def colour(self, server: str) -> str:
        return FAMILY_COLOURS.get(self.families.get(server, ""), OTHER_COLOUR)

    def style(self, server: str) -> tuple[str, str, str]:
        """(colour, marker, linestyle): its family's hue, a little darker or lighter by its rank
        in the family, and a marker and dash of its own."""
        family = self.families.get(server)
        members = [s for s in self.servers if self.families.get(s) == family]
        rank = members.index(server)
        return (_shade(self.colour(server), rank, len(members)), MARKERS[rank % len(MARKERS)],
                LINESTYLES[rank % len(LINESTYLES)])

    def measured_servers(self) -> list[str]:
        return [s for s in self.servers if any(self.outcome(s, c) and self.outcome(s, c).measured
                                               for c in self.cells)]

    def closed_cells(self, size_bytes: int | None = None, *, measured: bool = False):
        """Closed-loop cells (of one message size), or only those some server measured."""
        return [c for c in self.cells if not c.is_open
                and (size_bytes is None or c.size_bytes == size_bytes)
                and (not measured or any((o := self.outcome(s, c)) and o.measured
                                         for s in self.servers))]

    def family_order(self, servers: list[str]) -> list[str]:
        return list(dict.fromkeys(self.families[s] for s in servers))


def _shade(colour: str, rank: int, count: int) -> str:
    """The same hue, from a little darker (first in the family) to a little lighter (last)."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*to_rgb(colour))
    if count > 1:
        lightness = min(0.75, max(0.2, lightness + SHADE_SPAN * (rank / (count - 1) - 0.5)))
    return to_hex(colorsys.hls_to_rgb(hue, lightness, saturation))


def load(run_dir: str | Path) -> View:
    """The run in `run_dir` through results.read_run, its warnings printed once; ReportError (with
    what to do) when it cannot be used."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", results.CutLineWarning)  # printed below, once
        try:
            run = results.read_run(run_dir)
        except results.ResultsError as exc:
            raise ReportError(str(exc)) from None
    for note in run.warnings:
        print(f"warning: {note}", file=sys.stderr)
    return of_run(run)


def of_run(run: results.Run) -> View:
    """A run already read (results.read_run, or the one the runner holds) arranged for showing;
    ReportError if it measured nothing."""
    if not run.measurements:
        raise ReportError(f"{run.dir / 'results.jsonl'} is empty: the run measured nothing. Run "
                          f"`make bench` again (and look at its output for why it stopped).")
    folded = run.summaries()
    reference = next((o.server for o in folded if o.is_reference), None)
    families = {name: family or "other" for name, family in run.families.items()}
    if reference:
        families[reference] = REFERENCE_FAMILY
    skipped = {str(k): str(v) for k, v in (run.meta.get("skipped_servers") or {}).items()}
    names = list(dict.fromkeys([*(run.meta.get("servers") or []), *(o.server for o in folded),
                                *skipped]))
    for name in names:
        families.setdefault(name, "other")

    def family_rank(name: str) -> int:
        family = families[name]
        return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)

    ordered = sorted(names, key=lambda n: (family_rank(n), names.index(n)))
    cells = run.cells()
    summaries = {(o.server, o.cell): o for o in folded}
    # A server skipped as a whole (unavailable here) gets a skipped result in every cell, so the
    # status matrix shows it; the runner may or may not have written records for it.
    for name, reason in skipped.items():
        for cell in cells:
            if (name, cell) not in summaries:
                m = results.Measurement.from_dict(results.skipped(
                    results.record(name, cell, None, family=families[name]), reason))
                summaries[(name, cell)] = results.CellSummary(name, families[name], cell, [m])
    return View(run, ordered, families, cells, summaries, skipped, reference)


# -- Choosing what to show -------------------------------------------------------------------------


def primary_size(view: View) -> int | None:
    """The message size the run sweeps connections with most (ties: more results, then smaller)."""
    sizes = {c.size_bytes for c in view.closed_cells()}
    if not sizes:
        return None

    def weight(size: int) -> tuple:
        cells = view.closed_cells(size)
        return (len(view.closed_cells(size, measured=True)), len(cells),
                sum(len(o.measured) for o in view.summaries.values() if o.cell in cells), -size)

    return max(sizes, key=weight)


def headline_cell(view: View, wanted: tuple[int, int] | None = None) -> results.CellKey | None:
    """The cell the headline ranks and the spectrum and cost charts show: the one asked for,
    else the one the run's profile named before it ran (meta.json's "headline": it got the most
    rounds), else, for a run from before profiles named one, the closed-loop cell with the most
    rounds (where its extra rounds went), the most clean results and the most connections."""
    closed = view.closed_cells()
    if wanted is not None:
        for cell in closed:
            if (cell.conns, cell.size_bytes) == tuple(wanted):
                return cell
        choices = ", ".join(f"{c.conns}x{c.size_bytes}" for c in closed)
        raise ReportError(f"the run has no closed-loop cell {wanted[0]}x{wanted[1]} "
                          f"(connections x bytes); it has: {choices or 'none'}")
    named = view.meta.get("headline")
    if isinstance(named, dict) and "conns" in named and "size_bytes" in named:
        cell = results.CellKey.of(named)
        if cell in closed:
            return cell
    measured = view.closed_cells(measured=True)
    if not measured:
        return None

    def weight(cell: results.CellKey) -> tuple:
        outs = [o for s in view.servers if (o := view.outcome(s, cell))]
        rounds = statistics.median(len(o.measured) for o in outs) if outs else 0
        return rounds, sum(1 for o in outs if o.clean), cell.conns

    return max(measured, key=weight)


def ranking(view: View, cell: results.CellKey) -> results.Ranking:
    """The cell's results in the one order (results.rank): by vs_ref where the run has ratios,
    else by req/s."""
    return results.rank(view.summaries.values(), cell, by_ratio=view.has_ratios)


def ranked(view: View, cell: results.CellKey) -> tuple[list[results.CellSummary], list]:
    """(the ranked results, best first, the reference among them where ranked by vs_ref; the
    measured results that may not be ranked)."""
    r = ranking(view, cell)
    return [p.summary for p in r.placed], r.apart


def offered(o: results.CellSummary) -> results.Stat:
    """The load an open-loop result offered: what the generator scheduled in the window, else the
    rate its records asked for (a share of the peak differs per server and repeat)."""
    return (o.stat("offered_rps") or o.stat("rate")
            or results.Stat(o.cell.rate or 0.0, o.cell.rate or 0.0, o.cell.rate or 0.0, 1, None))


def requests(o: results.CellSummary) -> float | None:
    """Requests measured over the rounds used: what a percentile of the merged histogram rests
    on."""
    counts = [m.requests for m in o.used if m.requests]
    return float(sum(counts)) if counts else None


def merged_histogram(o: results.CellSummary):
    encoded = [m.extra["hist"] for m in o.used if m.extra.get("hist")]
    if not encoded:
        return None
    try:
        merged = hist.merge(encoded)
    except ValueError as exc:
        print(f"warning: {o.server} at {o.cell.label}: {exc}; left out of the spectrum",
              file=sys.stderr)
        return None
    return merged if merged.get_total_count() else None


# -- C10K: the largest cell ------------------------------------------------------------------------

C10K_CONNS = 10_000
C10K_MIN_CONNS = 1000  # a run whose largest cell is smaller has no C10K section


def c10k_cell(view: View) -> results.CellKey | None:
    """The closed-loop cell with the most connections (at the main message size), if it has at
    least C10K_MIN_CONNS: 10,000 in the full profile."""
    cells = [c for c in view.closed_cells(primary_size(view)) if c.conns >= C10K_MIN_CONNS]
    return max(cells, key=lambda c: c.conns) if cells else None


def scale_cells(view: View) -> list[results.CellKey]:
    """The sweep of `make bench-c100k`: open-loop cells at one fixed total rate and message size
    over two or more connection counts, the largest at least C10K_MIN_CONNS; smallest first.
    Empty for runs without one."""
    groups: dict[tuple[float, int], list[results.CellKey]] = {}
    for c in view.cells:
        if c.rate and c.fraction is None:
            groups.setdefault((c.rate, c.size_bytes), []).append(c)
    sweep = sorted(max(groups.values(), key=len, default=[]), key=lambda c: c.conns)
    return sweep if len(sweep) >= 2 and sweep[-1].conns >= C10K_MIN_CONNS else []


def scale_heading(cells: list[results.CellKey]) -> str:
    return (f"Connections held: {cells[0].conns:,} to {cells[-1].conns:,} at "
            f"{cells[0].rate:,.0f} req/s")


def c10k_heading(cell: results.CellKey) -> str:
    if cell.conns == C10K_CONNS:
        return f"C10K: {C10K_CONNS:,} connections"
    return f"C10K: {cell.conns:,} connections, this run's largest cell"


# -- Interpreters: a Python model under each -------------------------------------------------------


def model_servers(view: View) -> dict[str, dict[str, str]]:
    """model -> {interpreter tag: server}: each Python model and the servers that ran it, one per
    interpreter (epoll -> {"3.11": "epoll", "3.13": "epoll@3.13"}), in view order; from the
    records' interpreter field (schema 3), so an older run has none."""
    out: dict[str, dict[str, str]] = {}
    for m in sorted(view.run.measurements, key=lambda m: view.servers.index(m.server)
                    if m.server in view.servers else len(view.servers)):
        tag = (m.interpreter or {}).get("tag")
        if tag:
            out.setdefault(m.model, {}).setdefault(tag, m.server)
    return out
