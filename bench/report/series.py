"""What each chart shows, computed once: the points, their statuses and error bars, each server's
colour, marker and dash, and what to notice. bench/report/charts.py draws it with matplotlib (PNG
and SVG), bench/report/html.py with plotly (report.html); neither computes a figure of its own.

    planned = plan(view, focus, asked=False)   # every chart the report has, in its order
    planned[1].key, planned[1].data            # 'throughput', a ConnsData

A chart the run has no data for is still planned, with `skipped_because` saying why, so the
report says it instead of leaving a gap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench import results
from bench.report import notes
from bench.report.fmt import fmt_size, size_slug
from bench.report.view import (
    View, merged_histogram, model_servers, offered, primary_size, ranking, requests, scale_cells,
)

SPECTRUM_MARKS = (50.0, 90.0, 99.0, 99.9, 99.99)  # the percentiles marked on the spectrum
BASIS_NAMES = {"PSS_ANON": "anonymous PSS", "PSS": "PSS", "USS": "USS", "RSS": "RSS"}


@dataclass
class Chart:
    """One chart of the report: what it shows (`data`, one of the classes below), its heading,
    what to notice, and its file once drawn; or why the run has no such chart."""

    key: str
    heading: str
    file: str | None  # the PNG's name in charts/ (the SVG beside it); None: not drawn
    data: object = None
    notes: list[str] = field(default_factory=list)
    skipped_because: str | None = None
    path: Path | None = None  # set once drawn

    @property
    def svg(self) -> Path | None:
        return self.path.with_suffix(".svg") if self.path else None


def skipped(key: str, heading: str, why: str) -> Chart:
    return Chart(key, heading, None, skipped_because=why)


# -- Points and lines ------------------------------------------------------------------------------


def bounds(s: results.Stat) -> tuple[float, float]:
    """The error bar: the 95 % interval where recorded (of a median from 6 rounds; of a ratio,
    Student's t on its logs, from 2), else the range of the rounds."""
    return s.ci95 if s.ci95 else (s.low, s.high)


def has_bar(s: results.Stat) -> bool:
    """Whether the figure has an error bar to draw: two rounds or more that differ."""
    low, high = bounds(s)
    return s.n > 1 and high > low


@dataclass
class Point:
    x: float
    stat: results.Stat
    outcome: results.CellSummary

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


@dataclass
class Line:
    """One server's points, lowest x first, and where it failed (drawn as crosses on the axis)."""

    server: str
    family: str
    style: tuple[str, str, str]  # colour, marker, dash (view.style)
    points: list[Point]
    failed_at: list[float] = field(default_factory=list)

    @property
    def colour(self) -> str:
        return self.style[0]


def line(view: View, server: str, points: list[Point], failed_at: list[float] = ()) -> Line:
    return Line(server, view.families[server], view.style(server),
                sorted(points, key=lambda p: p.x), list(failed_at))


def latency_ms(key: str) -> Callable[[results.Measurement], float | None]:
    """A measurement's latency percentile `key` ('p50', 'p99') in milliseconds."""
    return lambda m: (v / 1000 if (v := (m.latency_us or {}).get(key)) is not None else None)


# -- Throughput and latency against connections ------------------------------------------------------

CONNS_METRICS = {"rps": lambda o: o.rps, "p50": lambda o: o.stat(latency_ms("p50")),
                 "p99": lambda o: o.stat(latency_ms("p99"))}


@dataclass
class ConnsData:
    size: int
    conns: list[int]  # the x ticks: every count measured, or failed at
    servers: list[str]
    lines: dict[str, list[Line]]  # metric ('rps', 'p50', 'p99') -> a line per server
    reference: str | None = None  # drawn in every panel of the small multiples, for scale


def against_conns(view: View, size: int, metrics: tuple[str, ...], primary: bool) -> Chart:
    """Throughput (('rps',)) or latency (('p50', 'p99')) against connections at one size."""
    key = "throughput" if metrics == ("rps",) else "latency"
    slug = "" if primary else f"-{size_slug(size)}"
    heading = (f"{'Throughput' if key == 'throughput' else 'Latency'} vs connections "
               f"({fmt_size(size)} messages)")
    cells = view.closed_cells(size)
    measured = sorted({c.conns for c in view.closed_cells(size, measured=True)})
    first = CONNS_METRICS[metrics[0]]
    if key == "throughput":
        servers = [s for s in view.servers if any((o := view.outcome(s, c)) and o.measured
                                                  for c in cells)]
    else:
        servers = [s for s in view.servers if any((o := view.outcome(s, c)) and first(o)
                                                  for c in cells)]
    if len(measured) < 2 or not servers:
        if key == "throughput":
            why = ("no server measured anything" if not measured else
                   f"only one connection count ({measured[0]:,}) was measured")
        else:
            why = ("no latencies were recorded" if not servers or not measured else
                   f"only one connection count ({measured[0]:,}) was measured")
        return skipped(key, heading, f"at {fmt_size(size)}, {why}.")
    conns = sorted({*measured, *(c.conns for c in cells if any(
        (o := view.outcome(s, c)) and o.status == "failed" for s in servers))})
    lines = {}
    for metric in metrics:
        lines[metric] = []
        for server in servers:
            points, failed = [], []
            for cell in cells:
                o = view.outcome(server, cell)
                s = CONNS_METRICS[metric](o) if o is not None else None
                if s:
                    points.append(Point(cell.conns, s, o))
                elif o is not None and o.status == "failed":
                    failed.append(cell.conns)
            lines[metric].append(line(view, server, points, failed))
    data = ConnsData(size, conns, servers, lines, view.reference)
    text = notes.throughput(view, size) if key == "throughput" else notes.latency(view, size)
    return Chart(key, heading, f"{key}{slug}.png", data, text)


# -- A bar per server at one cell --------------------------------------------------------------------


@dataclass
class Bar:
    server: str
    style: tuple[str, str, str]
    stat: results.Stat | None  # None: nothing measured (the outcome's verdict says why)
    outcome: results.CellSummary


@dataclass
class RankedBars:
    """A bar per server that measured something at `cell`, the smallest first."""

    cell: results.CellKey
    unit: str
    bars: list[Bar]


def bars(view: View, cell: results.CellKey, get) -> list[Bar]:
    """A bar per server with a result at `cell` (`get(outcome)` its figure), in view order."""
    return [Bar(s, view.style(s), get(o), o) for s in view.servers if (o := view.outcome(s, cell))]


def ranked(cell: results.CellKey, unit: str, of: list[Bar]) -> RankedBars | None:
    kept = sorted((b for b in of if b.outcome.measured and b.stat is not None),
                  key=lambda b: b.stat.value)
    return RankedBars(cell, unit, kept) if kept else None


# -- Who won: the headline cell's ranking -------------------------------------------------------------


@dataclass
class RankingData:
    """The headline cell's ranking (results.rank: the one rule), for the chart that opens the
    report: the ranked results, best first, in their tie groups, then apart the results that
    are not ranked (noisy, client-bound, degraded), with their figures."""

    ranking: results.Ranking
    styles: dict[str, tuple[str, str, str]]  # server -> view.style
    apart: list[tuple[results.CellSummary, results.Stat | None]]
    unit: str
    confidence: str

    @property
    def cell(self) -> results.CellKey:
        return self.ranking.cell


def who_won(view: View, cell: results.CellKey | None) -> Chart | None:
    """The chart that opens the report: the headline cell ranked by × ref (req/s without a
    reference), whiskers the 95 % intervals, tie groups marked; None when nothing ranks."""
    if cell is None:
        return None
    r = ranking(view, cell)
    if not r.placed and not r.apart:
        return None
    unit = "× the C reference's req/s" if r.by_ratio else "req/s"
    apart = [(o, o.vs_ref_stat if r.by_ratio else o.rps) for o in r.apart]
    data = RankingData(r, {s: view.style(s) for s in view.servers}, apart, unit,
                       notes.confidence(r))
    return Chart("ranking", f"Who won at {cell.label}", "ranking.png", data,
                 [notes.ranking_text(view, r) or ""])


@dataclass
class CostData:
    cell: results.CellKey
    servers: list[str]
    cpu: list[Bar]  # server CPU µs per request
    ctx: list[Bar]  # context switches per request
    ranked_cpu: RankedBars | None


def cost(view: View, cell: results.CellKey | None) -> Chart:
    heading = "Server CPU and context switches per request"
    if cell is None:
        return skipped("cpu", heading, "no closed-loop cell has measurements.")
    heading += f" at {cell.label}"
    cpu = bars(view, cell, lambda o: o.cpu_us_per_request)
    ctx = bars(view, cell, lambda o: o.ctx_per_request)
    if not any(b.stat for b in cpu) and not any(b.stat for b in ctx):
        return skipped("cpu", heading, f"no server CPU was recorded at {cell.label}.")
    data = CostData(cell, [b.server for b in cpu], cpu, ctx,
                    ranked(cell, "server CPU µs per request", cpu))
    return Chart("cpu", heading, "cpu.png", data, notes.cpu(view, cell))


# -- Message sizes -----------------------------------------------------------------------------------


def sizes_cells(view: View) -> list[results.CellKey]:
    """The closed-loop cells at the connection count measured with the most message sizes (two
    at least), smallest size first; [] when no count has two."""
    by_conns: dict[int, list[results.CellKey]] = {}
    for cell in view.closed_cells(measured=True):
        by_conns.setdefault(cell.conns, []).append(cell)
    if not by_conns or max(len(v) for v in by_conns.values()) < 2:
        return []
    conns = max(by_conns, key=lambda n: (len(by_conns[n]), n))
    return sorted(by_conns[conns], key=lambda c: c.size_bytes)


@dataclass
class SizesData:
    cells: list[results.CellKey]  # one connection count, smallest message first
    servers: list[str]
    bars: dict[str, list[Bar]]  # server -> a bar per cell (stat: bytes per second)
    top: float  # the highest error bar's end, bytes per second

    @property
    def conns(self) -> int:
        return self.cells[0].conns


def sizes(view: View) -> Chart | None:
    """Bandwidth per message size (None: no connection count was measured at two sizes)."""
    cells = sizes_cells(view)
    if not cells:
        return None
    servers = [s for s in view.servers if any((o := view.outcome(s, c)) and o.measured
                                              for c in cells)]
    per = {s: [Bar(s, view.style(s), o.stat("bytes_per_s") if o else None, o) for c in cells
               for o in [view.outcome(s, c)]] for s in servers}
    top = max((b.stat.high for row in per.values() for b in row if b.stat), default=1 << 20)
    heading = f"Bandwidth by message size ({cells[0].conns:,} connections)"
    return Chart("sizes", heading, "sizes.png", SizesData(cells, servers, per, top),
                 notes.sizes(view, cells))


# -- The latency spectrum ----------------------------------------------------------------------------


@dataclass
class Curve:
    server: str
    style: tuple[str, str, str]
    outcome: results.CellSummary
    histogram: object  # the merged HdrHistogram of every repeat
    xs: np.ndarray  # 1 / (1 - p), from p50 to p99.99
    ys: np.ndarray  # latency in ms at p
    marks: list[tuple[float, float]]  # (x, ms) at SPECTRUM_MARKS


def spectrum_curve(histogram) -> tuple[np.ndarray, np.ndarray]:
    """x = 1 / (1 - p) from p50 to p99.99, y = latency in ms at p."""
    xs = np.geomspace(2, 10_000, 160)
    percentiles = np.minimum(100 * (1 - 1 / xs), 99.99)
    ys = np.array([histogram.get_value_at_percentile(float(p)) for p in percentiles]) / 1000
    return xs, ys


@dataclass
class SpectrumData:
    cell: results.CellKey
    curves: list[Curve]
    fewest: float | None  # the fewest requests any server measured: what the tail rests on


def spectrum(view: View, cell: results.CellKey | None, *, asked: bool) -> Chart:
    if cell is None:
        return skipped("spectrum", "Latency spectrum", "no closed-loop cell has measurements.")
    heading = f"Latency spectrum at {cell.label}"
    curves = []
    for server in view.servers:
        o = view.outcome(server, cell)
        if o and o.measured and (merged := merged_histogram(o)) is not None:
            xs, ys = spectrum_curve(merged)
            marks = [(1 / (1 - p / 100), merged.get_value_at_percentile(p) / 1000)
                     for p in SPECTRUM_MARKS]
            curves.append(Curve(server, view.style(server), o, merged, xs, ys, marks))
    if not curves:
        return skipped("spectrum", heading,
                       f"no readable latency histograms were recorded at {cell.label}.")
    fewest = min((n for c in curves if (n := requests(c.outcome))), default=None)
    text = notes.spectrum(view, cell, {c.server: (c.histogram, c.outcome) for c in curves},
                          asked=asked)
    return Chart("spectrum", heading, "spectrum.png", SpectrumData(cell, curves, fewest), text)


# -- Open loop ---------------------------------------------------------------------------------------


def openloop_series(view: View) -> dict[tuple[str, int, int], list[results.CellSummary]]:
    """(server, conns, size) -> its open-loop results with a p99, lowest offered load first;
    only series of two points or more."""
    series: dict[tuple[str, int, int], list] = {}
    for (server, cell), o in view.summaries.items():
        if cell.is_open and o.measured and o.stat(latency_ms("p99")):
            series.setdefault((server, cell.conns, cell.size_bytes), []).append(o)
    return {k: sorted(v, key=lambda o: (o.cell.fraction or 0, offered(o).value))
            for k, v in series.items() if len(v) >= 2}


def load_x(o: results.CellSummary, by_share: bool) -> float:
    """Where an open-loop result sits on the x axis: its share of the server's own peak (in %)
    when every series is given as a share, else the load it was offered (req/s)."""
    return o.cell.fraction * 100 if by_share else offered(o).value


@dataclass
class LoadLine:
    """One server's open-loop series at one setting: p99 and completed share by offered load."""

    conns: int
    size: int
    p99: Line
    completed: Line  # completed as % of offered
    label_at: tuple[float, float]  # where the setting's label goes: the highest load's p99


@dataclass
class OpenLoopData:
    by_share: bool  # x is a share of each server's own peak (%), else offered req/s
    several_settings: bool  # more than one (conns, size): each line is labelled with its own
    servers: list[str]
    lines: list[LoadLine]
    highest: float  # the largest x


def openloop(view: View) -> Chart:
    heading = "Latency vs offered load (open loop)"
    if not any(c.is_open for c in view.cells):
        return skipped("openloop", heading,
                       f"this run has no open-loop cells (profile "
                       f"{view.meta.get('profile', 'unknown')}), so there is no latency-vs-load "
                       f"curve; `make bench-full` measures them.")
    drawable = openloop_series(view)
    if not drawable:
        return skipped("openloop", heading,
                       "no server measured two or more offered rates, so there is no curve to draw.")
    by_share = all(o.cell.fraction is not None for v in drawable.values() for o in v)
    settings = {(k[1], k[2]) for k in drawable}
    servers = list(dict.fromkeys(s for s in view.servers for k in drawable if k[0] == s))
    lines, highest = [], 0.0
    for (server, conns, size), outs in drawable.items():
        xs = [load_x(o, by_share) for o in outs]
        highest = max(highest, *xs)
        p99 = [Point(x, o.stat(latency_ms("p99")), o) for x, o in zip(xs, outs, strict=True)]
        done = [Point(x, s, o) for x, o in zip(xs, outs, strict=True)
                if (s := results.stat(m.rps / r * 100 for m in o.used
                                      if m.rps and (r := m.extra.get("offered_rps") or m.rate)))]
        lines.append(LoadLine(conns, size, line(view, server, p99), line(view, server, done),
                              (xs[-1], p99[-1].stat.value)))
    curves = [notes.LoadCurve.read(f"{server} ({conns} × {fmt_size(size)})" if len(settings) > 1
                                   else server, outs)
              for (server, conns, size), outs in drawable.items()]
    data = OpenLoopData(by_share, len(settings) > 1, servers, lines, highest)
    return Chart("openloop", heading, "openloop.png", data, notes.openloop(curves))


# -- Memory per connection ---------------------------------------------------------------------------


def memory_points(view: View) -> tuple[str | None, list[results.CellKey], dict]:
    """(basis, cells, {(server, cell): Stat}): memory per connection in the one basis most records
    use, at every closed-loop cell of the main message size from MEM_PER_CONN_MIN_CONNS up; in a
    run without those (`make bench-c100k`), at every count of its fixed-rate sweep."""
    basis = view.mem_basis()
    cells = [c for c in view.closed_cells(primary_size(view))
             if c.conns >= results.MEM_PER_CONN_MIN_CONNS] or scale_cells(view)

    def in_basis(m: results.Measurement) -> float | None:
        if basis is not None and m.extra.get("server_mem_basis") not in (basis, None):
            return None
        return m.mem_per_conn_bytes

    points = {(s, c): st for s in view.servers for c in cells
              if (o := view.outcome(s, c)) and (st := o.stat(in_basis)) is not None}
    return basis, [c for c in cells if any(k[1] == c for k in points)], points


def basis_name(basis: str | None) -> str:
    return BASIS_NAMES.get(basis, basis) if basis else "memory (basis not recorded: USS or PSS)"


@dataclass
class MemoryData:
    basis: str  # its name for people (basis_name)
    cells: list[results.CellKey]  # a marker each, by index
    servers: list[str]
    dots: dict[str, list[tuple[results.CellKey, Point]]]  # server -> (cell, x = bytes) per cell
    floor: float  # where a dot of zero or less is drawn (a log axis has no zero)


def memory(view: View) -> Chart:
    heading = "Memory per connection"
    basis, cells, points = memory_points(view)
    if not points:
        return skipped("memory", heading, f"no server recorded its memory at "
                                          f"{results.MEM_PER_CONN_MIN_CONNS} connections or more.")
    heading += f" ({fmt_size(cells[0].size_bytes)} messages)"
    servers = [s for s in view.servers if any(k[0] == s for k in points)]
    positive = [s.value for s in points.values() if s.value > 0]
    floor = min(positive) / 2 if positive else 1.0
    dots = {s: [(c, Point(max(points[(s, c)].value, floor), points[(s, c)], view.outcome(s, c)))
                for c in cells if (s, c) in points] for s in servers}
    name = basis_name(basis)
    return Chart("memory", heading, "memory.png", MemoryData(name, cells, servers, dots, floor),
                 notes.memory(view, name, cells, points))


# -- Interpreters: each Python model under each ------------------------------------------------------

# A colour and a marker per interpreter, in the run's order (the bench's own first): this chart
# compares interpreters, so they, not the families, get the colours (Okabe-Ito).
INTERPRETER_STYLES = (("#555555", "o"), ("#0072B2", "s"), ("#D55E00", "D"), ("#009E73", "^"),
                      ("#CC79A7", "v"), ("#E69F00", "P"))


@dataclass
class InterpretersData:
    cell: results.CellKey
    interpreters: list[dict]  # results.Run.interpreters, each with its "colour" and "marker"
    models: list[str]  # the Python models measured under two interpreters or more, view order
    dots: dict[str, list[Bar | None]]  # model -> per interpreter, its result (None: not run)
    unit: str


def interpreters(view: View, focus: results.CellKey | None) -> Chart | None:
    """Each Python model's ratio to the reference (else req/s) under each interpreter at the
    headline cell, with its interval; None for a run of one interpreter."""
    known = [dict(i, colour=c, marker=m) for i, (c, m)
             in zip(view.run.interpreters, INTERPRETER_STYLES * 4, strict=False) if i["tag"]]
    if len(known) < 2:
        return None
    heading = "Each Python model under each interpreter"
    if focus is None:
        return skipped("interpreters", heading, "no closed-loop cell has measurements.")
    heading += f" at {focus.label}"
    ratios = view.has_ratios
    dots = {}
    for model, by_tag in model_servers(view).items():
        row = []
        for i in known:
            o = view.outcome(by_tag[i["tag"]], focus) if i["tag"] in by_tag else None
            stat = (o.vs_ref_stat if ratios else o.rps) if o is not None and o.measured else None
            row.append(Bar(o.server, (i["colour"], i["marker"], "-"), stat, o)
                       if o is not None else None)
        # run under two interpreters or more, and measured under one at least
        if sum(1 for b in row if b is not None) >= 2 and any(b and b.stat for b in row):
            dots[model] = row
    if not dots:
        return skipped("interpreters", heading, f"no Python server was run under two "
                                                f"interpreters at {focus.label}.")
    data = InterpretersData(focus, known, list(dots), dots,
                            "× the reference's req/s" if ratios else "req/s")
    return Chart("interpreters", heading, "interpreters.png", data,
                 notes.interpreters(view, data))


# -- The report's charts -----------------------------------------------------------------------------


def plan(view: View, focus: results.CellKey | None, *, asked: bool) -> list[Chart]:
    """Every chart the run has data for, in the order the report shows them: who won at the
    headline cell first (the report opens with it), then the status matrix (charts.py draws it
    from the view itself) and the rest."""
    charts = [c for c in (who_won(view, focus),) if c is not None]
    charts.append(Chart("status", "Status of every server and cell", "status.png",
                        notes=notes.status(view)))
    primary = primary_size(view)
    by_size = sorted({c.size_bytes for c in view.closed_cells()},
                     key=lambda s: (s != primary, s))
    for size in by_size:
        pair = (against_conns(view, size, ("rps",), size == primary),
                against_conns(view, size, ("p50", "p99"), size == primary))
        # a size measured at one connection count only shows up in the sizes chart and the table
        charts += [c for c in pair if c.file or size == primary]
    if (sizes_chart := sizes(view)) is not None:
        charts.append(sizes_chart)
    if (by_interpreter := interpreters(view, focus)) is not None:
        charts.append(by_interpreter)
    charts += [spectrum(view, focus, asked=asked), openloop(view), cost(view, focus),
               memory(view)]
    return charts

