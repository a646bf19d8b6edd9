"""The report: charts and a Markdown summary of one bench run, redrawn from its saved files.

    python -m bench report results/20261125-131500-quick        # what `make bench` runs at the end
    make report RUN=results/20261125-131500-quick                # redraw, without measuring again
    python -m bench.report RUN_DIR --cell 128x1024               # focus the spectrum and bars there

The bench's last stage (generate load -> sample the server -> record JSON -> **plot**). It reads only
RUN_DIR/meta.json and RUN_DIR/results.jsonl (the format is described in bench/run.py) and writes
RUN_DIR/report.md and RUN_DIR/charts/*.png beside them:

- status.png        server x cell: ok / degraded / failed / skipped, so a model that broke is seen
- throughput*.png   req/s vs connections, one line per server (one chart per message size)
- latency*.png      p50 and p99 vs connections
- sizes.png         bandwidth vs message size at one connection count (when the run varies size)
- spectrum.png      the whole latency distribution at one cell, HdrHistogram style
- openloop.png      latency vs offered load, the "hockey stick" (when the run has open-loop cells)
- cpu.png           server CPU microseconds and context switches per request, one bar per server
- memory.png        server memory per connection, one bar per server

and, in report.md, the C10K table when the run's largest closed-loop cell has 1,000 connections or
more (10,000 in the full profile): per server, whether it held every connection, its req/s and
p99, memory per connection, CPU per request, processes/threads/fds, and why not if it did not.
Open-loop cells at a share of each server's peak (the full profile's) are one cell per share:
each server's line in the latency-vs-load chart sits at the rates it was offered.

How repeats are folded into one figure per (server, cell):
- numbers: the median over the repeats that measured something (status ok or degraded), with the
  min and max as the spread (error bars in charts, "median (min-max)" in tables);
- status: the worst measured outcome, failed > degraded > ok. "skipped" means nothing was measured,
  so it counts only when every repeat was skipped: a repeat the runner skipped after a failure
  leaves the cell "failed", one skipped after good repeats leaves it "ok";
- client-bound: if any repeat was client-bound (the load generator, not the server, saturated),
  the cell is: its throughput is a floor for the server, not a ceiling. Such points are drawn
  hollow (lines) or hatched (bars and the status matrix).

Colours: one per model family (the Okabe-Ito palette, distinct for colour-blind readers), the same
in every chart; servers of one family differ by marker and line style. Every chart has a footer
naming the machine, the run and its date, so a PNG that travels alone still says where it is from.
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import re
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

import numpy as np  # noqa: E402  (matplotlib's own dependency)
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import (  # noqa: E402
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MultipleLocator,
    NullLocator,
)

from bench import hist  # noqa: E402

# -- What the charts look like ------------------------------------------------------------------------

FIG_WIDTH_IN = 12.0  # x DPI = 1200 px: readable on a GitHub page without zooming
FIG_HEIGHT_IN = 6.5
DPI = 100
FOOTER_IN = 0.32  # the strip at the bottom kept free for the footer

# Families in the order the lessons meet them (servers.FAMILIES, repeated here so that redrawing an
# old run does not depend on today's registry), each with its colour.
FAMILIES = ("blocking", "multi-process", "multiplexed", "async", "fibers")
FAMILY_COLOURS = {
    "blocking": "#D55E00",  # vermillion
    "multi-process": "#CC79A7",  # reddish purple
    "multiplexed": "#0072B2",  # blue
    "async": "#009E73",  # bluish green
    "fibers": "#E69F00",  # orange
}
OTHER_COLOUR = "#777777"  # a family this version of the report does not know

SHADE_SPAN = 0.14  # lightness range of the servers of one family (HLS lightness, 0..1)
# Servers of one family: same colour, told apart by marker and line style ("x" is kept for failures).
MARKERS = ("o", "s", "^", "D", "v", "P", "<", ">", "*", "h")
LINESTYLES = ("-", "--", "-.", ":")

STATUSES = ("ok", "degraded", "failed", "skipped")
STATUS_COLOURS = {"ok": "#c7e9c0", "degraded": "#fdd49e", "failed": "#fc9272", "skipped": "#e0e0e0"}
# Which status wins when repeats disagree (see the module docstring): higher wins.
STATUS_SEVERITY = {"skipped": 0, "ok": 1, "degraded": 2, "failed": 3}

# The percentiles marked on the spectrum, and its range: p50 .. p99.99.
SPECTRUM_MARKS = (50.0, 90.0, 99.0, 99.9, 99.99)

# Open loop: a server "keeps up" while it completes at least this share of the offered requests, and
# its latency has "blown up" once p99 is this many times its p99 at the lowest offered rate.
KEEPS_UP_FRACTION = 0.95
BLOWUP_FACTOR = 10.0

# A spread wider than this share of the median is worth a sentence: differences below it are noise.
NOISY_SPREAD = 0.2

# Every file this module may write in charts/, so a redraw removes the ones it no longer makes.
CHART_GLOB = ("status.png", "throughput*.png", "latency*.png", "sizes.png", "spectrum.png",
              "openloop.png", "cpu.png", "memory.png")


class ReportError(Exception):
    """A run directory the report cannot read; the message says what to do."""


# -- Reading a run ---------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Cell:
    """One load setting: closed loop (rate None), open loop at `rate` requests per second, or open
    loop at `fraction` of each server's own closed-loop peak (each server at its own rate, which
    its lines record; the cell is the fraction)."""

    is_open: bool
    size_bytes: int
    conns: int
    by_share: bool = False  # open loop at a share of each server's peak
    rate: float | None = field(default=None, compare=False)
    rate_key: float = 0.0  # rate, or the share of the peak: for sorting and telling cells apart
    fraction: float | None = field(default=None, compare=False)

    @classmethod
    def of(cls, conns: int, size_bytes: int, rate: float | None,
           fraction: float | None = None) -> Cell:
        if fraction is not None:
            return cls(True, int(size_bytes), int(conns), True, None, float(fraction), fraction)
        return cls(rate is not None, int(size_bytes), int(conns), False, rate, float(rate or 0.0))

    @classmethod
    def of_line(cls, line: dict) -> Cell:
        return cls.of(line["conns"], line["size_bytes"], line.get("rate"),
                      line.get("rate_fraction_of_peak"))

    def label(self) -> str:
        """'128 conns × 1 KiB', or '16 conns × 1 KiB at 20,000 req/s' for open loop, or
        '100 conns × 1 KiB at 50 % of peak'."""
        text = f"{self.conns:,} conn{'s' if self.conns != 1 else ''} × {fmt_size(self.size_bytes)}"
        if self.fraction is not None:
            return f"{text} at {fmt_share(self.fraction)} of peak"
        return text if self.rate is None else f"{text} at {fmt_rps(self.rate)} req/s"

    def column_label(self) -> str:
        """Two short lines for the status matrix."""
        top = f"{self.conns:,} × {fmt_size(self.size_bytes)}"
        if self.fraction is not None:
            return f"{top}\n@ {fmt_share(self.fraction)} of peak"
        return top if self.rate is None else f"{top}\n@ {fmt_short(self.rate)}/s"


@dataclass
class Spread:
    """Median and range of one number over a cell's repeats."""

    median: float
    low: float
    high: float
    n: int

    @property
    def relative_width(self) -> float:
        return (self.high - self.low) / self.median if self.median else 0.0


def spread(values: Iterable[float | None]) -> Spread | None:
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def _field(line: dict, key: str) -> float | None:
    """A numeric field, or None when absent, null or not a number; 'latency_us.p99' reaches in."""
    value: object = line
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _ctx_per_request(line: dict) -> float | None:
    """Context switches per request, from the raw counts when the line has them (the rounded
    field reads 0.0 for a loop that switches once per thousand requests)."""
    voluntary = _field(line, "server_ctx_voluntary")
    involuntary = _field(line, "server_ctx_involuntary")
    requests = _field(line, "requests")
    if voluntary is not None and involuntary is not None and requests:
        return (voluntary + involuntary) / requests
    return _field(line, "ctx_switches_per_request")


def _bytes_per_s(line: dict) -> float | None:
    value = _field(line, "bytes_per_s")
    rps = _field(line, "rps")
    if value is None and rps is not None:
        value = rps * line["size_bytes"]
    return value


def _mem_per_conn(line: dict) -> float | None:
    value = _field(line, "server_mem_per_conn_bytes")
    # Older runs lack the field: work it out from the tree's USS (or RSS) and its idle size. A
    # null field is the runner saying "too few connections to tell", not a gap to fill.
    if value is None and "server_mem_per_conn_bytes" not in line:
        used = _field(line, "server_uss_bytes") or _field(line, "server_rss_bytes")
        idle = _field(line, "server_mem_idle_bytes")
        if used is not None and idle is not None and line.get("conns"):
            value = (used - idle) / line["conns"]
    return value


@dataclass
class Outcome:
    """One server at one cell, its repeats folded together (see the module docstring)."""

    server: str
    family: str
    cell: Cell
    lines: list[dict]

    def __post_init__(self) -> None:
        statuses = [line["status"] for line in self.lines]
        self.status = max(statuses, key=STATUS_SEVERITY.__getitem__)
        self.measured = [line for line in self.lines if line["status"] in ("ok", "degraded")]
        self.client_bound = any(line.get("client_bound") for line in self.measured)
        self.reasons = list(dict.fromkeys(line["reason"] for line in self.lines if line.get("reason")))
        tails = [line["stderr_tail"] for line in self.lines if line.get("stderr_tail")]
        self.stderr_tail = tails[0] if tails else None

    def stat(self, key: str | Callable[[dict], float | None]) -> Spread | None:
        get = key if callable(key) else (lambda line: _field(line, key))
        return spread(get(line) for line in self.measured)

    @property
    def rps(self) -> Spread | None:
        return self.stat("rps")

    @property
    def repeats_text(self) -> str:
        """'2/3': repeats that measured something, of those run ('—' when none ran)."""
        if self.status == "skipped":
            return "—"
        return f"{len(self.measured)}/{len(self.lines)}"


@dataclass
class Run:
    dir: Path
    meta: dict
    lines: list[dict]
    servers: list[str]  # ordered by family, then run order
    families: dict[str, str]  # server -> family
    cells: list[Cell]  # closed loop first, then by size, connections, rate
    outcomes: dict[tuple[str, Cell], Outcome]
    skipped_servers: dict[str, str]  # server -> why it was not run at all

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.dir.name)

    @property
    def mem_basis(self) -> str:
        """What memory per connection was computed from, as the runner recorded it."""
        names = {"PSS_ANON": "anonymous PSS", "PSS": "PSS", "USS": "USS", "RSS": "RSS"}
        bases = {line.get("server_mem_basis") for line in self.lines if line.get("server_mem_basis")}
        if not bases:
            return "PSS, else USS"  # runs recorded before the runner wrote the basis down
        return " / ".join(names.get(b, b) for b in sorted(bases))

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

    def outcome(self, server: str, cell: Cell) -> Outcome | None:
        return self.outcomes.get((server, cell))

    def colour(self, server: str) -> str:
        return FAMILY_COLOURS.get(self.families.get(server, ""), OTHER_COLOUR)

    def style(self, server: str) -> tuple[str, str, str]:
        """(colour, marker, linestyle) of a server's line: its family's hue, a little darker or
        lighter by its rank in the family, and a marker and dash of its own."""
        family = self.families.get(server)
        members = [s for s in self.servers if self.families.get(s) == family]
        rank = members.index(server)
        colour = _shade(self.colour(server), rank, len(members))
        return colour, MARKERS[rank % len(MARKERS)], LINESTYLES[rank % len(LINESTYLES)]

    def measured_servers(self) -> list[str]:
        return [s for s in self.servers if any(o.measured for (name, _), o in self.outcomes.items()
                                               if name == s)]

    def closed_cells(self, size_bytes: int | None = None, *, measured: bool = False) -> list[Cell]:
        """Closed-loop cells (of one message size), or only those some server measured."""
        return [c for c in self.cells if not c.is_open
                and (size_bytes is None or c.size_bytes == size_bytes)
                and (not measured or any(o.measured for s in self.servers
                                         if (o := self.outcome(s, c))))]


def load_run(run_dir: str | Path) -> Run:
    """Read meta.json and results.jsonl; ReportError (with what to do) when they cannot be used."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory. Run `make bench` to measure one, or "
                          f"pass a directory under results/ (ls results/).")
    results_path = run_dir / "results.jsonl"
    if not results_path.is_file():
        raise ReportError(f"{run_dir} has no results.jsonl, so it is not a bench run directory. "
                          f"Pass a directory written by `python -m bench run` (ls results/).")
    meta_path = run_dir / "meta.json"
    meta: dict = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ReportError(f"{meta_path} is not valid JSON ({exc}); it was damaged or cut "
                              f"short. Measure the run again with `make bench`.") from None
        if not isinstance(meta, dict):
            raise ReportError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object; "
                              f"measure the run again with `make bench`.")
    else:
        print(f"warning: {meta_path} is missing; the report will lack the machine's details",
              file=sys.stderr)

    lines = []
    for number, text in enumerate(results_path.read_text(errors="replace").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{results_path}, line {number}: not valid JSON ({exc}). A run "
                              f"interrupted mid-write leaves a cut last line: delete that line, "
                              f"or measure again with `make bench`.") from None
        problem = _check_line(line)
        if problem:
            raise ReportError(f"{results_path}, line {number}: {problem}. Was it written by "
                              f"`python -m bench run`? Measure again with `make bench`.")
        lines.append(line)
    if not lines:
        raise ReportError(f"{results_path} is empty: the run measured nothing. Run `make bench` "
                          f"again (and look at its output for why it stopped).")
    return _assemble(run_dir, meta, lines)


def _check_line(line: object) -> str | None:
    if not isinstance(line, dict):
        return f"a JSON {type(line).__name__}, not an object"
    for key in ("server", "status", "conns", "size_bytes"):
        if key not in line:
            return f"no {key!r} field"
    if line["status"] not in STATUSES:
        return f"status {line['status']!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(line["conns"], int) or not isinstance(line["size_bytes"], int):
        return "conns and size_bytes must be integers"
    return None


def _registry_family(name: str) -> str | None:
    """The family of a server that has no result line (skipped), from today's registry if it has it."""
    try:
        import servers
    except ImportError:
        return None
    entry = getattr(servers, "BY_NAME", {}).get(name)
    return entry.family if entry else None


def _shade(colour: str, rank: int, count: int) -> tuple[float, float, float]:
    """The same hue, from a little darker (first in the family) to a little lighter (last)."""
    hue, lightness, saturation = colorsys.rgb_to_hls(*to_rgb(colour))
    if count > 1:
        lightness = min(0.75, max(0.2, lightness + SHADE_SPAN * (rank / (count - 1) - 0.5)))
    return colorsys.hls_to_rgb(hue, lightness, saturation)


def _assemble(run_dir: Path, meta: dict, lines: list[dict]) -> Run:
    run_order = list(meta.get("servers") or [])
    skipped = {str(k): str(v) for k, v in (meta.get("skipped_servers") or {}).items()}
    names = list(dict.fromkeys([*run_order, *(line["server"] for line in lines), *skipped]))
    families: dict[str, str] = {}
    for line in lines:
        families.setdefault(line["server"], line.get("family") or "")
    for name in names:
        if not families.get(name):
            families[name] = _registry_family(name) or "other"

    def family_rank(name: str) -> int:
        family = families[name]
        return FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)

    ordered = sorted(names, key=lambda n: (family_rank(n), names.index(n)))

    cells = {Cell.of_line(line) for line in lines}
    for spec in meta.get("cells") or []:
        if isinstance(spec, dict) and "conns" in spec and "size_bytes" in spec:
            cells.add(Cell.of_line(spec))
    cells_sorted = sorted(cells)

    grouped: dict[tuple[str, Cell], list[dict]] = {}
    for line in lines:
        cell = Cell.of_line(line)
        grouped.setdefault((line["server"], cell), []).append(line)
    # A server skipped as a whole (unavailable here) gets a skipped outcome in every cell, so the
    # status matrix shows it; the runner may or may not have written lines for it.
    for name, reason in skipped.items():
        for cell in cells_sorted:
            grouped.setdefault((name, cell), [{"server": name, "status": "skipped",
                                               "reason": reason, "conns": cell.conns,
                                               "size_bytes": cell.size_bytes}])
    outcomes = {key: Outcome(key[0], families[key[0]], key[1], group)
                for key, group in grouped.items()}
    return Run(run_dir, meta, lines, ordered, families, cells_sorted, outcomes, skipped)


# -- Formatting numbers for people -------------------------------------------------------------------


def _sig(value: float, digits: int = 3) -> float:
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def fmt_rps(value: float) -> str:
    """41213 -> '41,200'; 12.34 -> '12.3' (three significant figures, thousands separated)."""
    value = _sig(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_short(value: float) -> str:
    """41213 -> '41.2k' (for cramped labels)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{_sig(value / scale):g}{suffix}"
    return f"{_sig(value):g}"


def fmt_us(value_us: float) -> str:
    """A latency: '310 µs', '1.25 ms', '48 ms', '2.1 s'."""
    if value_us < 1000:
        return f"{_sig(value_us):g} µs"
    if value_us < 1_000_000:
        return f"{_sig(value_us / 1000):g} ms"
    return f"{_sig(value_us / 1e6):g} s"


def fmt_bytes(value: float) -> str:
    """'3.1 KiB', '1.9 MiB' (binary units, three significant figures)."""
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= scale:
            return f"{_sig(value / scale):g} {unit}"
    return f"{_sig(value):g} B"


def fmt_share(fraction: float) -> str:
    """0.5 -> '50 %' (a share of a server's peak)."""
    return f"{fraction * 100:.0f} %"


def fmt_size(size_bytes: int) -> str:
    """A message size: '1 KiB', '64 KiB', '100 B'."""
    for scale, unit in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if size_bytes >= scale and size_bytes % scale == 0:
            return f"{size_bytes // scale} {unit}"
    return fmt_bytes(size_bytes)


def fmt_small(value: float) -> str:
    """Counts per request: '1.9', '0.04', '0.0008'."""
    if value == 0:
        return "0"
    return f"{_sig(value, 2):g}" if abs(value) < 10 else f"{_sig(value):,.0f}"


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def fmt_ratio(ratio: float) -> str:
    return f"{_sig(ratio, 2):g}×"


def _how_much_more(high: float, low: float, than: str = "") -> str:
    """'2.1× the slowest', or 'only 4% more than the slowest' when the two are close."""
    if not low:
        return f"far more than {than}".rstrip() if than else "far more"
    ratio = high / low
    if ratio < 1.1:
        return f"only {ratio - 1:.0%} more" + (f" than {than}" if than else "")
    return f"{fmt_ratio(ratio)} {than}".rstrip()


def _size_slug(size_bytes: int) -> str:
    return fmt_size(size_bytes).replace(" ", "")


# -- Choosing what to draw -------------------------------------------------------------------------


def primary_size(run: Run) -> int | None:
    """The message size the run sweeps connections with most (ties: more results, then smaller)."""
    sizes = {c.size_bytes for c in run.closed_cells()}
    if not sizes:
        return None

    def weight(size: int) -> tuple:
        cells = run.closed_cells(size)
        return (len(run.closed_cells(size, measured=True)), len(cells),
                sum(len(o.measured) for o in run.outcomes.values() if o.cell in cells), -size)

    return max(sizes, key=weight)


def focus_cell(run: Run, wanted: tuple[int, int] | None = None) -> Cell | None:
    """The cell the spectrum and the bar charts show.

    The one asked for, else: at the primary size, the closed-loop cell where the most servers
    measured cleanly (status ok), then where the most measured something, the one with most
    connections among those (where models differ most). At 10,000 connections several models
    break; the C10K table shows that cell.
    """
    closed = run.closed_cells()
    if wanted is not None:
        for cell in closed:
            if (cell.conns, cell.size_bytes) == tuple(wanted):
                return cell
        choices = ", ".join(f"{c.conns}x{c.size_bytes}" for c in closed)
        raise ReportError(f"the run has no closed-loop cell {wanted[0]}x{wanted[1]} "
                          f"(connections x bytes); it has: {choices or 'none'}")
    size = primary_size(run)
    candidates = run.closed_cells(size)
    if not candidates:
        return None

    def measured(cell: Cell) -> int:
        return sum(1 for s in run.servers if (o := run.outcome(s, cell)) and o.measured)

    def clean(cell: Cell) -> int:
        return sum(1 for s in run.servers if (o := run.outcome(s, cell)) and o.status == "ok")

    best = max(candidates, key=lambda c: (clean(c), measured(c), c.conns))
    return best if measured(best) else None


# -- Chart plumbing ------------------------------------------------------------------------------------


def _figure(run: Run, title: str, *, ncols: int = 1, height_in: float = FIG_HEIGHT_IN,
            sharey: bool = False, width_ratios=None) -> tuple[Figure, list]:
    fig = Figure(figsize=(FIG_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    footer_share = FOOTER_IN / height_in
    fig.get_layout_engine().set(rect=(0, footer_share, 1, 1 - footer_share), w_pad=0.08)
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False,
                        gridspec_kw={"width_ratios": width_ratios} if width_ratios else None)[0]
    # left-aligned, so a long title never runs into the legend at the top right
    fig.suptitle(title, fontsize=15, fontweight="bold", x=0.006, ha="left")
    fig.text(0.006, 0.3 * footer_share, run.footer, fontsize=9, color="#555555",
             ha="left", va="bottom")
    for ax in axes:
        ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    return path


def _header_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker="none")


def _server_legend(fig: Figure, run: Run, servers: list[str], *, keys: Iterable[tuple] = ()) -> None:
    """One legend to the right of the plots: servers grouped under their family, then a key."""
    handles, labels, headers = [], [], []
    for family in list(dict.fromkeys(run.families[s] for s in servers)):
        headers.append((len(labels), FAMILY_COLOURS.get(family, OTHER_COLOUR)))
        handles.append(_header_handle())
        labels.append(family)
        for server in (s for s in servers if run.families[s] == family):
            colour, marker, linestyle = run.style(server)
            handles.append(Line2D([], [], color=colour, marker=marker, linestyle=linestyle,
                                  linewidth=2, markersize=7))
            labels.append(server)
    keys = list(keys)
    if keys:
        headers.append((len(labels), "#333333"))
        handles.append(_header_handle())
        labels.append("key")
        for handle, label in keys:
            handles.append(handle)
            labels.append(label)
    fontsize = 10 if len(labels) <= 24 else 8.5
    legend = fig.legend(handles, labels, loc="outside right upper", fontsize=fontsize,
                        frameon=False, handlelength=2.6, borderaxespad=0.2)
    texts = legend.get_texts()
    for index, colour in headers:
        texts[index].set_fontweight("bold")
        texts[index].set_color(colour)


def _family_legend(fig: Figure, run: Run, servers: list[str], *, hatched_key: str | None) -> None:
    families = list(dict.fromkeys(run.families[s] for s in servers))
    handles = [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f) for f in families]
    if hatched_key:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="///", label=hatched_key))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)


KEY_CLIENT_BOUND = (Line2D([], [], color="#444444", marker="o", markerfacecolor="white",
                           linestyle="none", markersize=7),
                    "hollow marker: client-bound\n(the load generator saturated;\nthe server may do more)")
KEY_FAILED = (Line2D([], [], color="#444444", marker="x", linestyle="none", markersize=8,
                     markeredgewidth=2), "× on the x axis: failed\n(see the status matrix)")
DEGRADED_RING = "#cc3311"
KEY_DEGRADED = (Line2D([], [], marker="o", markersize=13, linestyle="none", markerfacecolor="none",
                       markeredgecolor=DEGRADED_RING, markeredgewidth=1.6),
                "ringed: degraded (some clients\nrefused, reset or unserved:\nsee the status matrix)")


def _log_ticks(ax, values: Iterable[float], formatter: Callable[[float], str], axis: str = "x"):
    """Ticks exactly at the values measured (1, 16, 128 connections), in plain numbers."""
    values = sorted(set(values))
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(FixedLocator(values))
    target.set_major_formatter(FuncFormatter(lambda v, _pos: formatter(v)))
    target.set_minor_locator(NullLocator())


def _plain_log_formatter(v: float, _pos=None) -> str:
    return f"{v:,.6g}"


def _log_axis(axis, formatter: Callable = _plain_log_formatter, base: float = 10) -> None:
    """Log scale ticks at 1, 2, 5 x powers of ten (or powers of `base`), in plain numbers: a
    range narrower than a decade still gets several labelled ticks."""
    subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: formatter(v)))
    axis.set_minor_locator(NullLocator())


def _series(ax, run: Run, server: str, points: list[tuple[float, Spread, bool]], *,
            dodge: float = 1.0, degraded: Iterable[float] = ()) -> None:
    """A server's line: medians joined, min-max error bars, hollow markers where client-bound,
    a ring around the points at `degraded` x values (measured, but with errors)."""
    if not points:
        return
    colour, marker, linestyle = run.style(server)
    points = sorted(points, key=lambda p: p[0])
    xs = np.array([p[0] for p in points]) * dodge
    med = np.array([p[1].median for p in points])
    low = np.array([p[1].low for p in points])
    high = np.array([p[1].high for p in points])
    ax.plot(xs, med, color=colour, linestyle=linestyle, linewidth=2, zorder=2)
    ax.errorbar(xs, med, yerr=[med - low, high - med], fmt="none", ecolor=colour, elinewidth=1.2,
                capsize=3, alpha=0.8, zorder=2)
    degraded = set(degraded)
    for x, y, (x0, _, client_bound) in zip(xs, med, points, strict=True):
        ax.plot([x], [y], marker=marker, color=colour, markersize=8, linestyle="none", zorder=3,
                markerfacecolor="white" if client_bound else colour, markeredgewidth=1.8)
        if x0 in degraded:
            ax.plot([x], [y], marker="o", markersize=15, linestyle="none", zorder=3,
                    markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.6)


def _failed_marks(ax, run: Run, server: str, xs: Iterable[float], dodge: float = 1.0) -> bool:
    """Crosses on the x axis where a server failed, so its line visibly ends for a reason."""
    xs = [x * dodge for x in xs]
    if xs:
        ax.plot(xs, [0.0] * len(xs), marker="x", color=run.colour(server), markersize=9,
                markeredgewidth=2.2, linestyle="none", clip_on=False, zorder=4,
                transform=ax.get_xaxis_transform())
    return bool(xs)


def _dodges(n: int, spread_octaves: float = 0.35) -> list[float]:
    """Small horizontal offsets on a log axis so error bars of servers at one x do not hide each
    other: n factors spanning `spread_octaves` octaves around 1."""
    if n <= 1:
        return [1.0] * n
    return [2 ** (spread_octaves * (i / (n - 1) - 0.5)) for i in range(n)]


# -- Charts: each draws one PNG and returns a Chart (or says why it drew none) -----------------------


@dataclass
class Chart:
    """One chart for report.md: where it is, its heading, and what to notice (or why it is absent)."""

    key: str
    heading: str
    path: Path | None
    notes: list[str]
    skipped_because: str | None = None


def chart_status(run: Run, charts_dir: Path) -> Chart:
    servers, cells = run.servers, run.cells
    nrows, ncols = len(servers), len(cells)
    height = min(max(3.6, 1.9 + 0.36 * nrows + (0.3 if any(c.is_open for c in cells) else 0)), 14)
    fig, (ax,) = _figure(run, "Status of every server at every cell", height_in=height)
    # What fits in a cell depends on its width: the axes get about 8 of the figure's 12 inches.
    column_in = 8.0 / max(ncols, 1)
    compact = column_in < 0.6  # status only, abbreviated
    with_unit = column_in >= 1.05  # "41.2k req/s" rather than "41.2k"
    cell_font = 8 if compact else (9.5 if with_unit else 8.5)
    for row, server in enumerate(servers):
        for col, cell in enumerate(cells):
            outcome = run.outcome(server, cell)
            status = outcome.status if outcome else None  # None: not in this server's plan
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=STATUS_COLOURS.get(status, "white"),
                                   edgecolor="#eeeeee" if status is None else "white",
                                   linewidth=2))
            if outcome and outcome.client_bound:
                ax.add_patch(Rectangle((col, row), 1, 1, facecolor="none", edgecolor="#777777",
                                       hatch="///", linewidth=0))
            text = {"degraded": "degr." if column_in < 0.85 else "degraded",
                    "failed": "FAILED" if column_in >= 0.75 else "FAIL",
                    "skipped": "skip" if compact else "skipped", None: "—"}.get(status, status)
            rps = outcome.rps if outcome else None
            if rps and not compact:
                text += f"\n{fmt_short(rps.median)}" + (" req/s" if with_unit else "")
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center", fontsize=cell_font,
                    fontweight="bold" if status == "failed" else "normal",
                    bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 1.2}
                    if outcome and outcome.client_bound else None)
    ax.set_xlim(0, ncols)
    ax.set_ylim(nrows, 0)
    if column_in / ((height - 1.5) / max(nrows, 1)) > 2.6:  # few cells: keep them from
        ax.set_aspect(1 / 2.6, adjustable="box")  # stretching into long flat bars
    ax.set_xticks([c + 0.5 for c in range(ncols)])
    upright = column_in >= 0.85
    ax.set_xticklabels([c.column_label() for c in cells], fontsize=9,
                       rotation=0 if upright else 40, ha="center" if upright else "left",
                       rotation_mode="anchor", va="bottom" if upright else "baseline")
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.5 for r in range(nrows)])
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(run.colour(server))
        label.set_fontweight("bold")
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("cell: connections × message size (open loop: @ offered req/s, or @ a share of "
                  "each server's own peak); "
                  "text: status" + ("" if compact else " and median req/s"), fontsize=10)
    handles = [Patch(facecolor=STATUS_COLOURS[s], label=s) for s in STATUSES]
    handles.append(Patch(facecolor="white", edgecolor="#777777", hatch="///",
                         label="client-bound"))
    if any(run.outcome(s, c) is None for s in servers for c in cells):
        handles.append(Patch(facecolor="white", edgecolor="#cccccc", label="—: not planned\nfor this server"))
    family_header = len(handles) + 1
    handles += [Patch(facecolor="none", edgecolor="none", label=""),
                Patch(facecolor="none", edgecolor="none", label="family (name colour)")]
    families = list(dict.fromkeys(run.families[s] for s in servers))
    handles += [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f) for f in families]
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False,
                        title="status", title_fontproperties={"weight": "bold", "size": 10},
                        alignment="left")
    legend.get_texts()[family_header].set_fontweight("bold")
    path = _save(fig, charts_dir / "status.png")
    return Chart("status", "Status of every server and cell", path, _status_notes(run))


def _status_notes(run: Run) -> list[str]:
    counts = dict.fromkeys(STATUSES, 0)
    for outcome in run.outcomes.values():
        counts[outcome.status] += 1
    total = sum(counts.values())
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    notes = [f"Of {total} server × cell results, {', '.join(parts)}."]
    failed: dict[str, list[Cell]] = {}
    for (server, cell), outcome in run.outcomes.items():
        if outcome.status == "failed":
            failed.setdefault(server, []).append(cell)
    for server, cells in failed.items():
        cells.sort()
        first = run.outcome(server, cells[0])
        reason = first.reasons[0] if first and first.reasons else "no reason recorded"
        where = ", ".join(c.label() for c in cells[:3]) + (" and more" if len(cells) > 3 else "")
        notes.append(f"**{server}** failed at {where}: {_one_line(reason)}.")
    degraded = sorted({s for (s, _), o in run.outcomes.items() if o.status == "degraded"},
                      key=run.servers.index)
    if degraded:
        notes.append(f"Degraded (measured, but with errors or warnings): {', '.join(degraded)}; "
                     f"the reasons are listed under [Problems](#problems).")
    for server, reason in run.skipped_servers.items():
        notes.append(f"**{server}** was skipped on this machine: {_one_line(reason)}.")
    return notes


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chart_throughput(run: Run, charts_dir: Path, size: int, primary: bool) -> Chart:
    cells = run.closed_cells(size)
    name = "throughput.png" if primary else f"throughput-{_size_slug(size)}.png"
    heading = f"Throughput vs connections ({fmt_size(size)} messages)"
    conns_values = sorted({c.conns for c in run.closed_cells(size, measured=True)})
    servers = [s for s in run.servers
               if any((o := run.outcome(s, c)) and o.measured for c in cells)]
    if len(conns_values) < 2 or not servers:
        why = ("no server measured anything" if not conns_values else
               f"only one connection count ({conns_values[0]:,}) was measured")
        return Chart("throughput", heading, None, [], f"at {fmt_size(size)}, {why}.")
    failed_too = sorted({c.conns for c in cells if any(
        (o := run.outcome(s, c)) and o.status == "failed" for s in servers)})
    conns_values = sorted({*conns_values, *failed_too})
    repeats = max((len(o.measured) for o in run.outcomes.values()), default=1)
    fig, (ax,) = _figure(run, f"Throughput vs connections · {fmt_size(size)} messages, closed loop")
    ax.set_title(f"median of {repeats} repeat{'s' if repeats != 1 else ''}; bars span min–max",
                 fontsize=10, color="#444444")
    any_failed = any_client_bound = any_degraded = False
    for server, dodge in zip(servers, _dodges(len(servers)), strict=True):
        points, failed, degraded = [], [], []
        for cell in cells:
            outcome = run.outcome(server, cell)
            if outcome is None:
                continue
            if outcome.measured:
                points.append((cell.conns, outcome.rps, outcome.client_bound))
                any_client_bound |= outcome.client_bound
                if outcome.status == "degraded":
                    degraded.append(cell.conns)
            elif outcome.status == "failed":
                failed.append(cell.conns)
        _series(ax, run, server, points, dodge=dodge, degraded=degraded)
        any_failed |= _failed_marks(ax, run, server, failed, dodge)
        any_degraded |= bool(degraded)
    ax.set_xscale("log")
    _log_ticks(ax, conns_values, lambda v: f"{v:,.0f}")
    ax.set_xlim(min(conns_values) / 1.5, max(conns_values) * 1.5)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.set_xlabel("concurrent connections (log scale)")
    ax.set_ylabel("throughput (requests per second)")
    keys = ([KEY_CLIENT_BOUND] if any_client_bound else []) + ([KEY_FAILED] if any_failed else []) \
        + ([KEY_DEGRADED] if any_degraded else [])
    _server_legend(fig, run, servers, keys=keys)
    path = _save(fig, charts_dir / name)
    return Chart("throughput", heading, path, _throughput_notes(run, size))


def _throughput_notes(run: Run, size: int) -> list[str]:
    cells = sorted(run.closed_cells(size), key=lambda c: c.conns)
    notes = []
    by_cell = {c: {s: o for s in run.servers if (o := run.outcome(s, c)) and o.measured}
               for c in cells}
    top = next((c for c in reversed(cells) if len(by_cell[c]) >= 2), None)
    if top is not None:
        ranked = sorted(by_cell[top].items(), key=lambda kv: kv[1].rps.median, reverse=True)
        (lead, lo), (last, lt) = ranked[0], ranked[-1]
        sentence = (f"At {top.label()}, **{lead}**{_flag(lo)} led with {fmt_rps(lo.rps.median)} "
                    f"req/s, {_how_much_more(lo.rps.median, lt.rps.median, 'the slowest')} "
                    f"({last}{', degraded' if lt.status == 'degraded' else ''}, "
                    f"{fmt_rps(lt.rps.median)} req/s).")
        if lo.client_bound:
            sentence += (f" {lead} was client-bound there: the load generator saturated first, so "
                         f"its real ceiling is higher.")
        notes.append(sentence)
    first = cells[0] if cells else None
    if first is not None and top is not None and top != first:
        growth = {s: by_cell[top][s].rps.median / by_cell[first][s].rps.median
                  for s in by_cell[top] if s in by_cell[first] and by_cell[first][s].rps.median}
        if len(growth) >= 2:
            best = max(growth, key=growth.get)
            worst = min(growth, key=growth.get)
            verb = "fell to" if growth[worst] < 1 else "grew only"
            notes.append(f"From {first.conns:,} to {top.conns:,} connections, {best} gained the most "
                         f"({fmt_ratio(growth[best])} its single-connection rate) and {worst} "
                         f"{verb} {fmt_ratio(growth[worst])}.")
    failed = [(s, c) for c in cells for s in run.servers
              if (o := run.outcome(s, c)) and o.status == "failed"]
    if failed:
        where = "; ".join(f"{s} at {c.conns:,} connections" for s, c in failed[:4])
        notes.append(f"Lines that stop at a cross failed there ({where}): see the status matrix.")
    noisy = [(o.rps.relative_width, s, c) for c in cells for s, o in by_cell[c].items()
             if o.rps.n > 1]
    if noisy:
        width, server, cell = max(noisy)
        if width > NOISY_SPREAD:
            notes.append(f"The widest spread between repeats was {server} at {cell.conns:,} "
                         f"connections ({width:.0%} of its median): differences smaller than "
                         f"that are noise.")
    return notes


def chart_latency(run: Run, charts_dir: Path, size: int, primary: bool) -> Chart:
    cells = run.closed_cells(size)
    name = "latency.png" if primary else f"latency-{_size_slug(size)}.png"
    heading = f"Latency vs connections ({fmt_size(size)} messages)"
    conns_values = sorted({c.conns for c in run.closed_cells(size, measured=True)})
    servers = [s for s in run.servers if any(
        (o := run.outcome(s, c)) and o.stat("latency_us.p50") for c in cells)]
    if len(conns_values) < 2 or not servers:
        why = ("no latencies were recorded" if not servers or not conns_values else
               f"only one connection count ({conns_values[0]:,}) was measured")
        return Chart("latency", heading, None, [], f"at {fmt_size(size)}, {why}.")
    failed_too = sorted({c.conns for c in cells if any(
        (o := run.outcome(s, c)) and o.status == "failed" for s in servers)})
    conns_values = sorted({*conns_values, *failed_too})
    fig, axes = _figure(run, f"Latency vs connections · {fmt_size(size)} messages, closed loop",
                        ncols=2, sharey=True)
    any_failed = any_client_bound = any_degraded = False
    for ax, key, label in zip(axes, ("p50", "p99"), ("median (p50)", "99th percentile (p99)"),
                              strict=True):
        for server, dodge in zip(servers, _dodges(len(servers)), strict=True):
            points, failed, degraded = [], [], []
            for cell in cells:
                outcome = run.outcome(server, cell)
                if outcome is None:
                    continue
                value = outcome.stat(lambda line, k=key: _ms(_field(line, f"latency_us.{k}")))
                if value:
                    points.append((cell.conns, value, outcome.client_bound))
                    any_client_bound |= outcome.client_bound
                    if outcome.status == "degraded":
                        degraded.append(cell.conns)
                elif outcome.status == "failed":
                    failed.append(cell.conns)
            _series(ax, run, server, points, dodge=dodge, degraded=degraded)
            any_failed |= _failed_marks(ax, run, server, failed, dodge)
            any_degraded |= bool(degraded)
        ax.set_title(f"{label}, median of repeats (bars: min–max)", fontsize=11)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, conns_values, lambda v: f"{v:,.0f}")
        ax.set_xlim(min(conns_values) / 1.5, max(conns_values) * 1.5)
        _log_axis(ax.yaxis)
        ax.set_xlabel("concurrent connections (log scale)")
    axes[1].tick_params(labelleft=True)
    axes[0].set_ylabel("round-trip latency (ms, log scale)")
    keys = ([KEY_CLIENT_BOUND] if any_client_bound else []) + ([KEY_FAILED] if any_failed else []) \
        + ([KEY_DEGRADED] if any_degraded else [])
    _server_legend(fig, run, servers, keys=keys)
    path = _save(fig, charts_dir / name)
    return Chart("latency", heading, path, _latency_notes(run, size))


def _flag(outcome: Outcome | None) -> str:
    """' (degraded)' after a figure that comes from a run with errors, so no one reads it as clean."""
    return " (degraded)" if outcome is not None and outcome.status == "degraded" else ""


def _ms(value_us: float | None) -> float | None:
    return value_us / 1000 if value_us is not None else None


def _latency_notes(run: Run, size: int) -> list[str]:
    cells = sorted(run.closed_cells(size), key=lambda c: c.conns)
    notes = []

    def p(server, cell, key) -> float | None:
        outcome = run.outcome(server, cell)
        s = outcome.stat(f"latency_us.{key}") if outcome else None
        return s.median if s else None

    rises = []
    for server in run.servers:
        values = [(c, v) for c in cells if (v := p(server, c, "p99"))]
        if len(values) >= 2 and values[0][1] > 0:
            (c0, v0), (c1, v1) = values[0], values[-1]
            rises.append((v1 / v0, server, c0, v0, c1, v1))
    if rises:
        ratio, server, c0, v0, c1, v1 = max(rises)
        notes.append(f"The tail grew most for **{server}**: p99 rose from {fmt_us(v0)} at "
                     f"{c0.conns:,} connection{'s' if c0.conns != 1 else ''} to {fmt_us(v1)} at "
                     f"{c1.conns:,} ({fmt_ratio(ratio)}).")
    top = next((c for c in reversed(cells)
                if sum(1 for s in run.servers if p(s, c, "p99")) >= 2), None)
    if top is not None:
        p99s = {s: v for s in run.servers if (v := p(s, top, "p99"))}
        low, high = min(p99s, key=p99s.get), max(p99s, key=p99s.get)
        notes.append(f"At {top.conns:,} connections the lowest p99 was {possessive(low)} "
                     f"{fmt_us(p99s[low])}{_flag(run.outcome(low, top))}, the highest "
                     f"{possessive(high)} {fmt_us(p99s[high])}{_flag(run.outcome(high, top))}.")
        # Little's law holds when every connection is busy: take the fastest clean server
        clean = [(o.rps.median, s) for s in run.servers
                 if (o := run.outcome(s, top)) and o.status == "ok" and o.rps]
        if clean and top.conns > 1:
            rps, server = max(clean)
            mean = run.outcome(server, top).stat("latency_us.mean")
            measured = f" (measured mean: {fmt_us(mean.median)})" if mean else ""
            notes.append(f"In a closed loop latency follows from throughput (Little's law: "
                         f"latency ≈ connections ÷ req/s): for {server}, {top.conns:,} ÷ "
                         f"{fmt_rps(rps)} req/s ≈ {fmt_us(top.conns / rps * 1e6)}{measured}, so "
                         f"once throughput stops growing, every extra connection adds latency.")
    return notes


def chart_sizes(run: Run, charts_dir: Path) -> Chart | None:
    """Bandwidth vs message size at the connection count measured with the most sizes."""
    closed = run.closed_cells(measured=True)
    by_conns: dict[int, set[int]] = {}
    for cell in closed:
        by_conns.setdefault(cell.conns, set()).add(cell.size_bytes)
    if not by_conns or max(len(v) for v in by_conns.values()) < 2:
        return None
    conns = max(by_conns, key=lambda n: (len(by_conns[n]), n))
    cells = sorted((c for c in closed if c.conns == conns), key=lambda c: c.size_bytes)
    heading = f"Bandwidth vs message size ({conns:,} connections)"
    servers = [s for s in run.servers if any((o := run.outcome(s, c)) and o.measured
                                             for c in cells)]
    fig, axes = _figure(run, f"Message size · {conns:,} connections, closed loop", ncols=2)
    mib = 1 << 20
    any_failed = any_client_bound = False
    for ax, key, ylabel in zip(axes, ("bytes_per_s", "rps"),
                               ("bandwidth (MiB/s echoed, log scale)",
                                "throughput (requests per second, log scale)"), strict=True):
        scale = mib if key == "bytes_per_s" else 1
        for server, dodge in zip(servers, _dodges(len(servers)), strict=True):
            points, failed = [], []
            for cell in cells:
                outcome = run.outcome(server, cell)
                if outcome is None:
                    continue
                value = outcome.stat(lambda line, k=key, sc=scale: (
                    v / sc if (v := _bytes_per_s(line) if k == "bytes_per_s" else _field(line, k))
                    is not None else None))
                if value:
                    points.append((cell.size_bytes, value, outcome.client_bound))
                    any_client_bound |= outcome.client_bound
                elif outcome.status == "failed":
                    failed.append(cell.size_bytes)
            _series(ax, run, server, points, dodge=dodge)
            any_failed |= _failed_marks(ax, run, server, failed, dodge)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = [c.size_bytes for c in cells]
        _log_ticks(ax, sizes, lambda v: fmt_size(int(v)))
        ax.set_xlim(min(sizes) / 1.6, max(sizes) * 1.6)
        _log_axis(ax.yaxis)
        ax.set_xlabel("message size (log scale)")
        ax.set_ylabel(ylabel)
    axes[0].set_title("bytes echoed per second", fontsize=11)
    axes[1].set_title("round trips per second", fontsize=11)
    keys = ([KEY_CLIENT_BOUND] if any_client_bound else []) + ([KEY_FAILED] if any_failed else [])
    _server_legend(fig, run, servers, keys=keys)
    path = _save(fig, charts_dir / "sizes.png")

    notes = []
    small, large = cells[0], cells[-1]
    bw = {s: (run.outcome(s, large).stat(_bytes_per_s), run.outcome(s, small).rps)
          for s in servers if run.outcome(s, large) and run.outcome(s, small)}
    bw = {s: v for s, v in bw.items() if v[0] and v[1]}
    if bw:
        lead = max(bw, key=lambda s: bw[s][0].median)
        notes.append(f"At {large.label()}, **{lead}** moved the most data: "
                     f"{fmt_bytes(bw[lead][0].median)}/s.")
        drops = {s: (bw[s][0].median / large.size_bytes) / bw[s][1].median for s in bw}
        if len(drops) >= 2 and max(drops.values()) < 0.5:
            least = max(drops, key=drops.get)
            most = min(drops, key=drops.get)
            notes.append(f"Going from {fmt_size(small.size_bytes)} to {fmt_size(large.size_bytes)} "
                         f"messages, round trips per second fell least for {least} (to "
                         f"{drops[least]:.0%}) and most for {most} (to {drops[most]:.0%}): with big "
                         f"messages, moving the bytes outweighs the per-request overhead.")
    return Chart("sizes", heading, path, notes)


def _spectrum_curve(histogram) -> tuple[np.ndarray, np.ndarray]:
    xs = np.geomspace(2, 10_000, 160)  # 1/(1-p): p50 .. p99.99
    percentiles = np.minimum(100 * (1 - 1 / xs), 99.99)
    ys = np.array([histogram.get_value_at_percentile(float(p)) for p in percentiles]) / 1000
    return xs, ys


def _merged_histogram(outcome: Outcome):
    encoded = [line["hist"] for line in outcome.measured if line.get("hist")]
    if not encoded:
        return None
    try:
        merged = hist.merge(encoded)
    except ValueError as exc:
        print(f"warning: {outcome.server} at {outcome.cell.label()}: {exc}; left out of the "
              f"spectrum", file=sys.stderr)
        return None
    return merged if merged.get_total_count() else None


def chart_spectrum(run: Run, charts_dir: Path, cell: Cell | None, *, asked: bool = False) -> Chart:
    heading = "Latency spectrum"
    if cell is None:
        return Chart("spectrum", heading, None, [], "no closed-loop cell has measurements.")
    heading = f"Latency spectrum at {cell.label()}"
    curves = {}
    for server in run.servers:
        outcome = run.outcome(server, cell)
        if outcome and outcome.measured:
            merged = _merged_histogram(outcome)
            if merged is not None:
                curves[server] = (merged, outcome)
    if not curves:
        return Chart("spectrum", heading, None, [],
                     f"no readable latency histograms were recorded at {cell.label()}.")
    fig, (ax,) = _figure(run, f"Latency by percentile · {cell.label()}, closed loop")
    ax.set_title("all repeats' histograms merged; x axis stretches the tail: each step right is "
                 "10× rarer requests", fontsize=10, color="#444444")
    any_client_bound = False
    for server, (merged, outcome) in curves.items():
        colour, marker, linestyle = run.style(server)
        xs, ys = _spectrum_curve(merged)
        ax.plot(xs, ys, color=colour, linestyle=linestyle, linewidth=2, zorder=2)
        mark_x = np.array([1 / (1 - p / 100) for p in SPECTRUM_MARKS])
        mark_y = np.array([merged.get_value_at_percentile(p) for p in SPECTRUM_MARKS]) / 1000
        ax.plot(mark_x, mark_y, marker=marker, color=colour, linestyle="none", markersize=8,
                markeredgewidth=1.8, markerfacecolor="white" if outcome.client_bound else colour,
                zorder=3)
        any_client_bound |= outcome.client_bound
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1 / (1 - p / 100) for p in SPECTRUM_MARKS]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _p: f"p{100 * (1 - 1 / v):.4g}" if v > 1 else ""))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1.7, 13_000)
    _log_axis(ax.yaxis)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p): p50, p90, p99, p99.9, p99.99)")
    ax.set_ylabel("round-trip latency (ms, log scale)")
    _server_legend(fig, run, list(curves), keys=[KEY_CLIENT_BOUND] if any_client_bound else [])
    path = _save(fig, charts_dir / "spectrum.png")

    notes = []
    tails = {}
    for server, (merged, _) in curves.items():
        p50 = merged.get_value_at_percentile(50)
        p9999 = merged.get_value_at_percentile(99.99)
        if p50:
            tails[server] = (p9999 / p50, p50, p9999)
    if len(tails) >= 2:
        wide = max(tails, key=lambda s: tails[s][0])
        narrow = min(tails, key=lambda s: tails[s][0])
        notes.append(f"The tail was widest for **{wide}**: its p99.99 was "
                     f"{fmt_ratio(tails[wide][0])} its median ({fmt_us(tails[wide][2])} vs "
                     f"{fmt_us(tails[wide][1])}); narrowest for {narrow} "
                     f"({fmt_ratio(tails[narrow][0])}).")
    worst = {s: merged.get_max_value() for s, (merged, _) in curves.items()}
    if worst:
        server = max(worst, key=worst.get)
        notes.append(f"The slowest single request took {fmt_us(worst[server])} ({server}). A flat "
                     f"line means every request is served alike; a line that turns up at the right "
                     f"means a few requests waited far longer than the rest.")
    if not asked:
        notes.append(f"It is drawn at {cell.label()}, the busiest cell most servers measured; "
                     f"`python -m bench report RUN_DIR --cell CONNSxBYTES` draws another.")
    return Chart("spectrum", heading, path, notes)


def _offered(o: Outcome) -> Spread:
    """The load an open-loop outcome offered: what the generator scheduled in the window, else the
    rate its lines asked for (a share of the peak differs per server and repeat)."""
    return (o.stat("offered_rps") or o.stat("rate")
            or Spread(o.cell.rate or 0.0, o.cell.rate or 0.0, o.cell.rate or 0.0, 1))


def chart_openloop(run: Run, charts_dir: Path) -> Chart:
    heading = "Latency vs offered load (open loop)"
    series: dict[tuple[str, int, int], list[Outcome]] = {}
    for (server, cell), outcome in run.outcomes.items():
        if cell.is_open:
            series.setdefault((server, cell.conns, cell.size_bytes), []).append(outcome)
    if not series:
        return Chart("openloop", heading, None, [],
                     f"this run has no open-loop cells (profile "
                     f"{run.meta.get('profile', 'unknown')}), so there is no latency-vs-load "
                     f"curve; `make bench-full` measures them.")
    drawable = {k: sorted((o for o in v if o.measured and o.stat("latency_us.p99")),
                          key=lambda o: _offered(o).median)
                for k, v in series.items()}
    drawable = {k: v for k, v in drawable.items() if len(v) >= 2}
    if not drawable:
        return Chart("openloop", heading, None, [],
                     "no server measured two or more offered rates, so there is no curve to draw.")
    settings = {(k[1], k[2]) for k in drawable}
    servers = list(dict.fromkeys(s for s in run.servers for k in drawable if k[0] == s))
    fig, axes = _figure(run, "Latency vs offered load (open loop: requests sent on a fixed "
                        "schedule)", ncols=2, width_ratios=[3, 2])
    any_client_bound = False
    highest = 0.0
    for (server, conns, size), outcomes in drawable.items():
        colour, marker, linestyle = run.style(server)
        offered = [_offered(o) for o in outcomes]
        x = [s.median for s in offered]
        highest = max(highest, *x)
        points99 = [(xi, o.stat(lambda line: _ms(_field(line, "latency_us.p99"))), o.client_bound)
                    for xi, o in zip(x, outcomes, strict=True)]
        points_done = [(xi, o.rps, o.client_bound) for xi, o in zip(x, outcomes, strict=True)]
        _series(axes[0], run, server, points99)
        _series(axes[1], run, server, points_done)
        any_client_bound |= any(o.client_bound for o in outcomes)
        if len(settings) > 1:  # say which setting a line is, when there are several
            axes[0].annotate(f"{conns}×{fmt_size(size)}", (x[-1], points99[-1][1].median),
                             textcoords="offset points", xytext=(6, 0), fontsize=8, color=colour)
    axes[0].set_yscale("log")
    _log_axis(axes[0].yaxis)
    axes[0].set_ylabel("p99 round-trip latency (ms, log scale)\nmeasured from the intended send "
                       "time")
    axes[0].set_title("p99 latency: flat, then a hockey stick past saturation", fontsize=11)
    axes[1].plot([0, highest * 1.08], [0, highest * 1.08], color="#888888", linestyle=":",
                 linewidth=1.8, zorder=1)
    axes[1].set_ylim(0, highest * 1.08)
    axes[1].set_ylabel("completed (requests per second)")
    axes[1].set_title("completed vs offered", fontsize=11)
    for ax in axes:
        ax.set_xlim(left=0, right=highest * 1.08)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_short(v) if v else "0"))
        ax.set_xlabel("offered load (requests per second)")
    axes[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_short(v) if v else "0"))
    keys = [(Line2D([], [], color="#888888", linestyle=":", linewidth=1.8),
             "dotted: completed = offered\n(below it: falling behind)")]
    _server_legend(fig, run, servers, keys=keys + ([KEY_CLIENT_BOUND] if any_client_bound else []))
    path = _save(fig, charts_dir / "openloop.png")
    curves = [LoadCurve.read(f"{server} ({conns} × {fmt_size(size)})" if len(settings) > 1
                             else server, outcomes)
              for (server, conns, size), outcomes in drawable.items()]
    return Chart("openloop", heading, path, _openloop_notes(curves))


@dataclass
class LoadCurve:
    """One server's open-loop series, read: where (if anywhere) it stopped keeping up."""

    who: str
    outcomes: list[Outcome]  # by offered rate, lowest first
    knee: int | None  # index of the first rate it did not keep up with; None: kept up with all

    @staticmethod
    def offered(o: Outcome) -> float:
        return _offered(o).median

    @staticmethod
    def p99(o: Outcome) -> float:
        return o.stat("latency_us.p99").median

    @classmethod
    def read(cls, who: str, outcomes: list[Outcome]) -> LoadCurve:
        base = cls.p99(outcomes[0])
        for index, o in enumerate(outcomes):
            behind = o.rps.median < KEEPS_UP_FRACTION * cls.offered(o)
            if behind or (base and cls.p99(o) > BLOWUP_FACTOR * base):
                return cls(who, outcomes, index)
        return cls(who, outcomes, None)

    def sentence(self) -> str:
        o = self.outcomes[self.knee]
        behind = o.rps.median < KEEPS_UP_FRACTION * self.offered(o)
        done = f"{'completed only' if behind else 'still completed'} {fmt_rps(o.rps.median)}"
        jump = f"its p99 was {fmt_us(self.p99(o))}"
        if self.knee == 0:
            return (f"**{self.who}** was already saturated at the lowest offered rate, "
                    f"{fmt_rps(self.offered(o))} req/s: {jump} and it {done} req/s.")
        before = self.outcomes[self.knee - 1]
        return (f"**{self.who}** kept up to {fmt_rps(self.offered(before))} req/s offered (p99 "
                f"{fmt_us(self.p99(before))}); at {fmt_rps(self.offered(o))} req/s {jump} and "
                f"it {done} req/s.")


def _openloop_notes(curves: list[LoadCurve]) -> list[str]:
    """The earliest breakdowns in detail, then one sentence for the rest that broke and one for
    those that held."""
    broke = sorted((c for c in curves if c.knee is not None),
                   key=lambda c: LoadCurve.offered(c.outcomes[c.knee]))
    held = [c for c in curves if c.knee is None]
    notes = [c.sentence() for c in broke[:3]]
    if len(broke) > 3:
        notes.append(f"{_join([c.who for c in broke[3:]])} also stopped keeping up, at higher "
                     f"rates (see the chart).")
    if held:
        top = max(LoadCurve.offered(c.outcomes[-1]) for c in held)
        worst = max(LoadCurve.p99(o) for c in held for o in c.outcomes)
        verb = "kept" if len(held) == 1 else "all kept"
        notes.append(f"{_join([f'**{c.who}**' for c in held])} {verb} up with every offered "
                     f"rate, up to {fmt_rps(top)} req/s, with p99 at most {fmt_us(worst)}.")
    if broke:
        notes.append("Past saturation requests queue, and latency grows with the queue: the "
                     "p99 a closed-loop test reports at the same throughput hides this.")
    return notes


def _join(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


@dataclass
class Bar:
    """One server's bar: its value (None: nothing measured), and what to say about it."""

    value: Spread | None
    outcome: Outcome | None
    note: str = ""  # appended to the value label, e.g. "at 16 conns"
    hatched: bool = False  # client-bound


def _bar_panel(ax, run: Run, servers: list[str], bars: dict[str, Bar],
               fmt: Callable[[float], str], *, names: bool = True) -> bool:
    """Horizontal bars, one per server (top to bottom in family order), log scale when the values
    span more than WIDE_RANGE; where a server has no value, the word why (failed, skipped)."""
    values = [b.value for b in bars.values() if b.value]
    positive = [v.median for v in values if v.median > 0]
    log = len(positive) >= 2 and max(positive) / min(positive) > WIDE_RANGE
    top = max((v.high for v in values if v.high > 0), default=1.0)  # no bar: any scale will do
    floor = min(positive) / 3 if log else 0.0
    any_hatched = False
    ys = np.arange(len(servers))
    for y, server in zip(ys, servers, strict=True):
        bar = bars[server]
        value = bar.value
        if value is None or value.median <= 0:
            if value is not None:
                word = f"{fmt(value.median)}: no measurable growth"
            elif bar.outcome is not None and not bar.outcome.measured:
                word = bar.outcome.status
            else:
                word = "not recorded"
            ax.text(floor if log else 0, y, f"  {word}", va="center", ha="left", fontsize=9.5,
                    color="#555555", style="italic")
            continue
        any_hatched |= bar.hatched
        ax.barh(y, value.median - floor, left=floor, color=run.colour(server), height=0.7,
                hatch="///" if bar.hatched else None, edgecolor="white", linewidth=0)
        if value.n > 1 and value.high > value.low:
            ax.errorbar(value.median, y, xerr=[[value.median - value.low],
                                               [value.high - value.median]],
                        fmt="none", ecolor="#333333", capsize=3, elinewidth=1)
        label = fmt(value.median) + (f" ({bar.note})" if bar.note else "")
        x = value.high * 1.12 if log else value.high + top * 0.015
        ax.text(x, y, label, va="center", ha="left", fontsize=9.5)
    ax.set_yticks(ys)
    if names:  # server names in their family's colour; a second panel shares the first's
        ax.set_yticklabels(servers, fontsize=10)
        for label, server in zip(ax.get_yticklabels(), servers, strict=True):
            label.set_color(run.colour(server))
    else:
        ax.tick_params(labelleft=False)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(servers) - 0.4, -0.6)
    ax.grid(True, axis="x", which="major", color="#dddddd")
    ax.grid(False, axis="y")
    if log:
        ax.set_xscale("log")
        ax.set_xlim(floor, top * 6)
    else:
        ax.set_xlim(0, top * 1.3)
    return any_hatched


def _bars_height(count: int) -> float:
    """A bar chart's height in inches: bars about 0.4 inch apart, within sensible bounds."""
    return min(max(4.0, 2.0 + 0.42 * count), 14.0)


WIDE_RANGE = 30  # bars switch to a log scale when the largest is this many times the smallest


def chart_cpu(run: Run, charts_dir: Path, cell: Cell | None) -> Chart:
    heading = "Server CPU and context switches per request"
    if cell is None:
        return Chart("cpu", heading, None, [], "no closed-loop cell has measurements.")
    heading += f" at {cell.label()}"
    servers = [s for s in run.servers if run.outcome(s, cell)]

    def bars(key) -> dict[str, Bar]:
        out = {}
        for server in servers:
            outcome = run.outcome(server, cell)
            out[server] = Bar(outcome.stat(key), outcome, hatched=outcome.client_bound)
        return out

    cpu, ctx = bars("server_cpu_us_per_request"), bars(_ctx_per_request)
    if not any(b.value for b in cpu.values()) and not any(b.value for b in ctx.values()):
        return Chart("cpu", heading, None, [], f"no server CPU was recorded at {cell.label()}.")
    fig, axes = _figure(run, f"Server cost per request · {cell.label()}", ncols=2, sharey=True,
                        height_in=_bars_height(len(servers)))
    hatched = _bar_panel(axes[0], run, servers, cpu, lambda v: f"{fmt_small(v)} µs")
    hatched |= _bar_panel(axes[1], run, servers, ctx, fmt_small, names=False)
    for ax in axes:
        if ax.get_xscale() == "log":
            _log_axis(ax.xaxis)
    axes[0].set_xlabel("server CPU time per request (µs)")
    axes[1].set_xlabel("context switches per request")
    axes[0].set_title("CPU (user + system) of the whole process tree:\nfair even where the client "
                      "was the bottleneck", fontsize=10.5)
    axes[1].set_title("switches (voluntary + involuntary) of every thread:\nbelow 1, one wakeup "
                      "served several requests", fontsize=10.5)
    _family_legend(fig, run, servers, hatched_key="client-bound" if hatched else None)
    path = _save(fig, charts_dir / "cpu.png")

    notes = []
    have = {s: b.value.median for s, b in cpu.items() if b.value}
    if len(have) >= 2:
        low, high = min(have, key=have.get), max(have, key=have.get)
        notes.append(f"At {cell.label()}, **{low}** spent the least server CPU per request "
                     f"({fmt_small(have[low])} µs), {high} the most ({fmt_small(have[high])} µs, "
                     f"{_how_much_more(have[high], have[low])}).")
    switches = {s: b.value.median for s, b in ctx.items() if b.value}
    if len(switches) >= 2:
        low, high = min(switches, key=switches.get), max(switches, key=switches.get)
        if fmt_small(switches[low]) == fmt_small(switches[high]):
            sentence = (f"Every server switched context about {fmt_small(switches[low])} times "
                        f"per request.")
        else:
            sentence = (f"{high} switched context {fmt_small(switches[high])} times per request, "
                        f"{low} {fmt_small(switches[low])}.")
        if switches[low] < 1:
            sentence += (" Fewer than one switch per request means one wakeup served several "
                         "requests: the thread found more work ready each time it ran.")
        notes.append(sentence)
    return Chart("cpu", heading, path, notes)


def memory_cells(run: Run, focus: Cell | None) -> dict[str, Cell]:
    """Per server, the cell at the focus cell's message size with the most connections where it
    recorded memory, cleanly (status ok) if it did anywhere: per-connection memory is most telling
    at many connections, where the idle baseline and page-sized noise are spread thin; a server
    that failed at 128 connections still shows what 16 cost it, and one that held only 1,020 of
    10,000 connections (select) shows what 1,000 cost it, not its memory over 10,000."""
    if focus is None:
        return {}
    chosen = {}
    for server in run.servers:
        recorded = [(cell, outcome) for cell in sorted(run.closed_cells(focus.size_bytes),
                                                       key=lambda c: -c.conns)
                    if (outcome := run.outcome(server, cell)) and outcome.stat(_mem_per_conn)]
        clean = [cell for cell, outcome in recorded if outcome.status == "ok"]
        if clean or recorded:
            chosen[server] = clean[0] if clean else recorded[0][0]
    return chosen


def chart_memory(run: Run, charts_dir: Path, cells: dict[str, Cell]) -> Chart:
    heading = "Memory per connection"
    if len(cells) < 1:
        return Chart("memory", heading, None, [], "no server recorded its memory.")
    usual = statistics.mode(sorted(c.conns for c in cells.values()))
    size = next(iter(cells.values())).size_bytes
    heading += f" ({fmt_size(size)} messages)"
    servers = run.servers
    bars = {}
    for server in servers:
        cell = cells.get(server)
        if cell is None:  # why not: the status at the usual cell
            usual_cell = next((c for c in run.closed_cells(size) if c.conns == usual), None)
            bars[server] = Bar(None, run.outcome(server, usual_cell) if usual_cell else None)
            continue
        outcome = run.outcome(server, cell)
        note = f"at {cell.conns:,} conns" if cell.conns != usual else ""
        bars[server] = Bar(outcome.stat(_mem_per_conn), outcome, note)
    fig, (ax,) = _figure(run, f"Memory per connection · {usual:,} conns × {fmt_size(size)}, or "
                              f"the most a server held",
                         height_in=_bars_height(len(servers)))
    _bar_panel(ax, run, servers, bars, fmt_bytes)
    if ax.get_xscale() == "log":
        _log_axis(ax.xaxis, fmt_bytes, base=4)  # 1 KiB, 4 KiB, 16 KiB ...: binary steps
    else:  # steps of a power of two bytes: 32 KiB, 64 KiB, ... rather than 24.4 KiB
        top = ax.get_xlim()[1]
        ax.xaxis.set_major_locator(MultipleLocator(
            2 ** math.ceil(math.log2(max(top / 7, 1)))))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_bytes(v) if v else "0"))
    log_note = " (log scale)" if ax.get_xscale() == "log" else ""
    ax.set_xlabel(f"memory per connection = (process-tree {run.mem_basis}, with every "
                  f"connection open − the same when idle) ÷ connections{log_note}")
    ax.set_title("what each extra connection costs the server, in memory only it holds",
                 fontsize=10, color="#444444")
    _family_legend(fig, run, servers, hatched_key=None)
    path = _save(fig, charts_dir / "memory.png")

    notes = []
    have = {s: b.value.median for s, b in bars.items() if b.value and b.value.median > 0}
    if len(have) >= 2:
        low, high = min(have, key=have.get), max(have, key=have.get)

        def at(server):
            return f" at {cells[server].conns:,} connections" if cells[server].conns != usual else ""

        notes.append(f"Each connection cost **{high}** ({run.families[high]}) "
                     f"{fmt_bytes(have[high])}{at(high)}, {fmt_ratio(have[high] / have[low])} "
                     f"what it cost {low} ({run.families[low]}): {fmt_bytes(have[low])}{at(low)}.")
    zero = [s for s, b in bars.items() if b.value and b.value.median <= 0]
    if zero:
        notes.append(f"{', '.join(zero)} grew by nothing measurable per connection: memory is "
                     f"read in whole pages, so a small cost rounds to zero, and a connection that "
                     f"only waits in the kernel (say, in the listen queue) costs the process "
                     f"nothing.")
    return Chart("memory", heading, path, notes)


# -- report.md ---------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metadata_table(run: Run) -> list[str]:
    meta, machine = run.meta, run.meta.get("machine") or {}
    rows = [("run id", f"`{run.run_id}`"), ("date", meta.get("created", "unknown")),
            ("profile", meta.get("profile_description") and
             f"{meta.get('profile')}: {meta['profile_description']}" or meta.get("profile"))]
    cores = []
    if machine.get("cores_logical"):
        cores.append(f"{machine['cores_logical']} logical cores")
    if machine.get("cores_physical"):
        cores.append(f"{machine['cores_physical']} physical")
    if machine.get("smt") is not None:
        cores.append("SMT on" if machine["smt"] else "SMT off")
    rows.append(("CPU", ", ".join([machine.get("cpu_model") or "unknown", *cores])))
    if machine.get("memory_bytes"):
        rows.append(("memory", fmt_bytes(machine["memory_bytes"])))
    if machine.get("os") or machine.get("kernel"):
        rows.append(("OS, kernel", " ".join(str(v) for v in (machine.get("os"),
                                                             machine.get("kernel")) if v)))
    py = meta.get("python") or {}
    if py:
        rows.append(("Python", f"{py.get('implementation', '')} {py.get('version', '')}".strip()))
    if meta.get("packages"):
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in meta["packages"].items())))
    if meta.get("gevent_backend"):
        rows.append(("gevent backend", meta["gevent_backend"]))
    if isinstance(meta.get("io_uring"), dict):
        uring = meta["io_uring"]
        rows.append(("io_uring", "available" if uring.get("available")
                     else f"not available: {uring.get('reason', '')}"))
    pinning = meta.get("pinning") or {}
    if pinning:
        rows.append(("CPU pinning", pinning.get("note") or
                     f"server {pinning.get('server_cpus')}, client {pinning.get('client_cpus')}"))
    limits = meta.get("limits") or {}
    if limits:
        rows.append(("limits", ", ".join(f"{k} {v}" for k, v in limits.items())))
    if "git_commit" in meta:
        rows.append(("git commit", f"{meta.get('git_commit') or 'unknown'}"
                     f"{' (uncommitted changes)' if meta.get('git_dirty') else ''}"))
    measured = run.measured_servers()
    rows.append(("servers", f"{len(measured)} measured: {', '.join(measured)}"))
    if run.skipped_servers:
        rows.append(("skipped servers", "; ".join(f"{k} ({v})"
                                                 for k, v in run.skipped_servers.items())))
    closed = run.closed_cells()
    opened = [c for c in run.cells if c.is_open]
    cells_text = ", ".join(c.label() for c in closed)
    if opened:
        cells_text += f"; open loop: {', '.join(c.label() for c in opened)}"
    rows.append(("cells", cells_text))
    if meta.get("repeats"):
        timing = f"{meta['repeats']} per cell"
        if meta.get("warmup_s") is not None and meta.get("measure_s") is not None:
            timing += f", each {meta['warmup_s']} s warm-up + {meta['measure_s']} s measured"
        rows.append(("repeats", timing))
    if meta.get("duration_s"):
        minutes, seconds = divmod(round(meta["duration_s"]), 60)
        rows.append(("run time", f"{minutes} min {seconds} s" if minutes else f"{seconds} s"))
    out = ["| field | value |", "|---|---|"]
    out += [f"| {name} | {_md_escape(value)} |" for name, value in rows if value not in (None, "")]
    return out


def _fmt_spread(s: Spread | None, fmt: Callable[[float], str]) -> str:
    """'64 µs (63–65)': the unit once, when the range is in the median's unit."""
    if s is None:
        return "—"
    median, low, high = fmt(s.median), fmt(s.low), fmt(s.high)
    if s.n < 2 or low == high:
        return median
    unit = median.rpartition(" ")[2] if " " in median else ""
    if unit and low.endswith(" " + unit) and high.endswith(" " + unit):
        low, high = low[: -len(unit) - 1], high[: -len(unit) - 1]
    return f"{median} ({low}–{high})"


def _results_table(run: Run) -> list[str]:
    has_open = any(c.is_open for c in run.cells)
    head = ["server", "family", "conns", "size"] + (["offered req/s"] if has_open else []) + [
        "req/s median (min–max)", "p50", "p99", "server CPU µs/req", "ctx switches/req",
        "mem/conn", "status", "repeats", "flags"]
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---:" if h in ("conns", "req/s median (min–max)", "p50", "p99",
                                         "server CPU µs/req", "ctx switches/req", "mem/conn",
                                         "offered req/s") else "---" for h in head) + "|"]
    for server in run.servers:
        if server in run.skipped_servers and all(
                o.status == "skipped" for (s, _), o in run.outcomes.items() if s == server):
            row = [f"`{server}`", run.families[server], "all", "—"] + ["—"] * (len(head) - 7)
            out.append("| " + " | ".join(row + ["**skipped**", "—", ""]) + " |")
            continue
        for cell in run.cells:
            o = run.outcome(server, cell)
            if o is None:
                continue
            flags = ["client-bound"] if o.client_bound else []
            row = [f"`{server}`", run.families[server], f"{cell.conns:,}", fmt_size(cell.size_bytes)]
            if has_open:
                offered = _offered(o).median if cell.is_open and o.measured else cell.rate
                text = fmt_rps(offered) if offered else "—" if cell.is_open else "closed loop"
                if cell.fraction is not None:
                    text += f" ({fmt_share(cell.fraction)} of peak)"
                row.append(text)
            row += [_fmt_spread(o.rps, fmt_rps),
                    _fmt_spread(o.stat("latency_us.p50"), fmt_us),
                    _fmt_spread(o.stat("latency_us.p99"), fmt_us),
                    _fmt_spread(o.stat("server_cpu_us_per_request"), fmt_small),
                    _fmt_spread(o.stat(_ctx_per_request), fmt_small),
                    _fmt_spread(o.stat(_mem_per_conn), fmt_bytes),
                    f"**{o.status}**" if o.status != "ok" else "ok",
                    o.repeats_text, ", ".join(flags)]
            out.append("| " + " | ".join(_md_escape(v) for v in row) + " |")
    return out


def _problems(run: Run) -> list[str]:
    """A bullet per server and reason (cells that went wrong the same way are listed together),
    with the server's last stderr lines folded away beneath."""
    out = []
    for server in run.servers:
        if server in run.skipped_servers:
            continue
        groups: dict[tuple, list[Outcome]] = {}
        for cell in run.cells:
            o = run.outcome(server, cell)
            if o is not None and (o.status != "ok" or o.reasons):
                groups.setdefault((o.status, tuple(o.reasons)), []).append(o)
        for (status, reasons), outcomes in groups.items():
            why = "; ".join(_one_line(r, 400) for r in reasons) or "no reason recorded"
            where = ", ".join(f"{o.cell.label()} ({o.repeats_text})" for o in outcomes)
            out.append(f"- **{server}**, {status} at {where}: {why}.")
            tail = next((o.stderr_tail for o in outcomes if o.stderr_tail), None)
            if tail:
                tail = tail.rstrip().replace("```", "` ` `")  # must not close the code block
                out += ["", "  <details><summary>server stderr (last lines)</summary>", "",
                        "  ```text", *[f"  {t}" for t in tail.splitlines()], "  ```", "",
                        "  </details>", ""]
    for server, reason in run.skipped_servers.items():
        out.append(f"- **{server}**: skipped, not run on this machine: {_one_line(reason, 400)}.")
    if out:
        out = ["(n/m) after a cell: the repeats that measured something, of those run.", ""] + out
    return out


# -- C10K: the largest cell, server by server ----------------------------------------------------------

C10K_CONNS = 10_000
C10K_MIN_CONNS = 1000  # a run whose largest cell is smaller has no C10K section


def c10k_cell(run: Run) -> Cell | None:
    """The closed-loop cell with the most connections (at the main message size), if it has at
    least C10K_MIN_CONNS: 10,000 in the full profile."""
    size = primary_size(run)
    cells = [c for c in run.closed_cells(size) if c.conns >= C10K_MIN_CONNS]
    return max(cells, key=lambda c: c.conns) if cells else None


def c10k_heading(cell: Cell) -> str:
    if cell.conns == C10K_CONNS:
        return f"C10K: {C10K_CONNS:,} connections"
    return f"C10K: {cell.conns:,} connections, this run's largest cell"


def _held(line: dict) -> float | None:
    """Connections that were served to the end: connected, and not reset, left unserved or closed
    for a corrupted echo."""
    errors = line.get("errors")
    if not isinstance(errors, dict):
        return None
    established = _field(line, "conns_established")
    established = line["conns"] if established is None else established
    lost = sum(errors.get(kind) or 0 for kind in ("reset", "unserved", "mismatch"))
    return max(0.0, established - lost)


def _peak(o: Outcome, key: str) -> float | None:
    values = [v for line in o.lines if (v := _field(line, key)) is not None]
    return max(values) if values else None


def c10k_section(run: Run, cell: Cell) -> list[str]:
    """The C10K table: per server, whether it held every connection, and what each one cost."""
    conns = f"{cell.conns:,}"
    out = [f"Dan Kegel's C10K problem on this machine: every server with {conns} clients "
           f"connected at once ({cell.label()}, closed loop, every echoed byte checked). **held** "
           f"counts the connections served to the end (not refused, reset or left without an "
           f"echo); **memory / conn** is the growth of the server's process tree ({run.mem_basis}) "
           f"over its idle size, divided by the connections; **CPU / req** is the server's own CPU "
           f"time per round trip; processes, threads and fds are the most seen during the window."]
    if cell.conns < C10K_CONNS:
        out[0] += f" The full profile (`make bench-full`) goes to {C10K_CONNS:,} connections."
    out += ["", f"| server | family | status | held (of {conns}) | req/s | p99 | memory / conn | "
                f"CPU / req | processes · threads · fds | why not |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    rank = {"ok": 0, "degraded": 1, "failed": 2, "skipped": 3}
    rows = []
    for server in run.servers:
        o = run.outcome(server, cell)
        if o is None:
            continue
        rows.append((rank.get(o.status, 4), -(o.rps.median if o.rps else 0), server, o))
    rows.sort(key=lambda r: r[:2])
    for _, _, server, o in rows:
        held = o.stat(_held)
        tree = [_peak(o, key) for key in ("server_processes", "server_threads", "server_fds")]
        why = "; ".join(_one_line(r, 240) for r in o.reasons) if o.status != "ok" or o.reasons \
            else ""
        row = [f"`{server}`", run.families[server],
               f"**{o.status}**" if o.status != "ok" else "ok",
               fmt_rps(held.median) if held else "—",
               _fmt_spread(o.rps, fmt_rps),
               _fmt_spread(o.stat("latency_us.p99"), fmt_us),
               _fmt_spread(o.stat(_mem_per_conn), lambda v: fmt_bytes(v) if v > 0 else "≈ 0"),
               _fmt_spread(o.stat("server_cpu_us_per_request"), lambda v: f"{fmt_small(v)} µs"),
               " · ".join(f"{v:,.0f}" if v is not None else "—" for v in tree)
               if any(v is not None for v in tree) else "—",
               why or "—"]
        out.append("| " + " | ".join(_md_escape(v) for v in row) + " |")
    out += [""] + [" ".join(["**What to notice.**", *_c10k_notes(run, cell, [r[3] for r in rows])])]
    return out


def _c10k_notes(run: Run, cell: Cell, outcomes: list[Outcome]) -> list[str]:
    conns = f"{cell.conns:,}"
    held_all = [o.server for o in outcomes if o.status == "ok"]
    others = [o.server for o in outcomes if o.status in ("degraded", "failed")]
    notes = []
    if held_all:
        notes.append(f"{len(held_all)} of {len(outcomes)} servers held all {conns} connections: "
                     f"{_join(held_all)}.")
    else:
        notes.append(f"No server held all {conns} connections cleanly.")
    if others:
        notes.append(f"{_join(others)} did not; the last column says why, in the bench's words "
                     f"and the server's own log.")
    measured = [o for o in outcomes if o.status == "ok"]  # costs compare only at the full count
    for key, what, fmt in ((_mem_per_conn, "Memory per connection", fmt_bytes),
                           ("server_cpu_us_per_request", "Server CPU per request",
                            lambda v: f"{fmt_small(v)} µs")):
        values = {o.server: s.median for o in measured if (s := o.stat(key)) and s.median > 0}
        if len(values) >= 2:
            low, high = min(values, key=values.get), max(values, key=values.get)
            notes.append(f"{what} among those went from {fmt(values[low])} ({low}) to "
                         f"{fmt(values[high])} ({high}), {fmt_ratio(values[high] / values[low])}.")
    slow = sorted(((s.median, o.server) for o in outcomes if (s := o.stat("settle_s"))
                   and s.median >= 1.0), reverse=True)
    if slow:
        listing = _join([f"{server} {value:.1f} s" for value, server in slow])
        notes.append(f"Once the {conns} clients had left, some servers needed a while to go idle "
                     f"again (tearing down a thread or process per connection): {listing}.")
    return notes


def _client_bound_notes(run: Run) -> list[str]:
    bound = [o for o in run.outcomes.values() if o.client_bound]
    if not bound:
        return []
    bound.sort(key=lambda o: (run.servers.index(o.server), o.cell))
    listing = "; ".join(f"{o.server} at {o.cell.label()}" for o in bound[:8])
    more = f" and {len(bound) - 8} more" if len(bound) > 8 else ""
    return [f"{len(bound)} cell{'s were' if len(bound) != 1 else ' was'} client-bound: {listing}"
            f"{more}. There the load generator, not the server, limited throughput (its CPU was "
            f"saturated), so the req/s is a lower bound for the server: compare server CPU µs per "
            f"request instead, which is fair either way."]


def _headline(run: Run, focus: Cell | None) -> list[str]:
    lines = []
    if focus is not None:
        ranked = sorted(((o.rps.median, s, _flag(o)) for s in run.servers
                         if (o := run.outcome(s, focus)) and o.rps), reverse=True)
        if ranked:
            order = ", ".join(f"{s} {fmt_rps(v)}{flag}" for v, s, flag in ranked)
            lines.append(f"- **Throughput at {focus.label()}** (req/s, fastest first): {order}.")
    counts = dict.fromkeys(STATUSES, 0)
    for o in run.outcomes.values():
        counts[o.status] += 1
    lines.append("- **Status**: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
                 " (server × cell results; see [the status matrix](#status-of-every-server-and-cell)).")
    bound = sum(1 for o in run.outcomes.values() if o.client_bound)
    if bound:
        lines.append(f"- **Client-bound**: {bound} cell{'s' if bound != 1 else ''} (drawn hollow or "
                     f"hatched): the load generator was the bottleneck there.")
    if (big := c10k_cell(run)) is not None:
        outcomes = [o for s in run.servers if (o := run.outcome(s, big))]
        held = [o.server for o in outcomes if o.status == "ok"]
        lines.append(f"- **{big.conns:,} connections**: {len(held)} of {len(outcomes)} servers "
                     f"held them all (see [{c10k_heading(big)}](#{_anchor(c10k_heading(big))})).")
    return lines


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def write_markdown(run: Run, charts: list[Chart], focus: Cell | None) -> Path:
    md = [f"# Bench report: run `{run.run_id}`", "",
          f"Every echo server of the lab measured on {run.machine_text} on {run.date}. Numbers are "
          f"medians over the repeats with their spread (min–max); redraw this report from the saved "
          f"results with `make report RUN={_display_dir(run.dir)}`.", ""]
    md += _headline(run, focus) + [""]
    big = c10k_cell(run)
    md += ["## Contents", ""]
    for c in charts:
        md.append(f"- [{c.heading}](#{_anchor(c.heading)})")
        if c.key == "status" and big is not None:
            md.append(f"- [{c10k_heading(big)}](#{_anchor(c10k_heading(big))})")
    md += ["- [Client-bound cells](#client-bound-cells)", "- [Problems](#problems)",
           "- [All results](#all-results)", "- [The run](#the-run)", ""]
    for chart in charts:
        md += [f"## {chart.heading}", ""]
        if chart.path is None:
            md += [f"No chart: {chart.skipped_because}", ""]
            continue
        rel = chart.path.relative_to(run.dir).as_posix()
        md += [f"![{chart.heading}]({rel})", ""]
        if chart.notes:
            md += ["**What to notice.** " + " ".join(chart.notes), ""]
        if chart.key == "status" and big is not None:
            md += [f"## {c10k_heading(big)}", ""] + c10k_section(run, big) + [""]
    md += ["## Client-bound cells", ""]
    md += (_client_bound_notes(run) or ["None: in every cell the server, not the load generator, "
                                        "was the saturated side."]) + [""]
    md += ["## Problems", ""]
    problems = _problems(run)
    md += (problems or ["None: every cell measured cleanly."]) + [""]
    md += ["## All results", "",
           "One row per server and cell: medians over the measured repeats, (min–max) where they "
           "differ. **repeats** counts the repeats that measured something, of those run. Latency "
           "is the round trip, from send (closed loop) or from the intended send time (open loop).",
           ""]
    md += _results_table(run) + [""]
    md += ["## The run", ""] + _metadata_table(run) + [""]
    path = run.dir / "report.md"
    path.write_text("\n".join(md))
    return path


def _display_dir(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


# -- Entry points ------------------------------------------------------------------------------------


def build_report(run_dir: str | Path, *, cell: tuple[int, int] | None = None) -> Path:
    """Draw every chart the run has data for into RUN_DIR/charts/, write RUN_DIR/report.md.

    `cell` = (connections, message bytes) picks the closed-loop cell of the percentile spectrum and
    the CPU bars (default: see `focus_cell`). Returns the path of report.md; raises ReportError.
    """
    run = load_run(run_dir)
    focus = focus_cell(run, cell)
    charts_dir = run.dir / "charts"
    charts_dir.mkdir(exist_ok=True)
    for pattern in CHART_GLOB:  # a redraw must not leave a chart this run no longer has
        for stale in charts_dir.glob(pattern):
            stale.unlink()

    charts = [chart_status(run, charts_dir)]
    primary = primary_size(run)
    sizes = sorted({c.size_bytes for c in run.closed_cells()}, key=lambda s: (s != primary, s))
    for size in sizes:
        throughput = chart_throughput(run, charts_dir, size, size == primary)
        latency = chart_latency(run, charts_dir, size, size == primary)
        # a size measured at one connection count only shows up in the sizes chart and the table
        charts += [c for c in (throughput, latency) if c.path or size == primary]
    sizes_chart = chart_sizes(run, charts_dir)
    if sizes_chart:
        charts.append(sizes_chart)
    charts.append(chart_spectrum(run, charts_dir, focus, asked=cell is not None))
    charts.append(chart_openloop(run, charts_dir))
    charts.append(chart_cpu(run, charts_dir, focus))
    charts.append(chart_memory(run, charts_dir, memory_cells(run, focus)))
    return write_markdown(run, charts, focus)


def parse_cell(text: str) -> tuple[int, int]:
    """'128x1024' or '128x1KiB' or '128x64k' -> (128, 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*(k|kib|kb|m|mib|mb|b)?\s*", text, re.I)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a cell; write CONNSxBYTES, e.g. 128x1024 or 16x64KiB")
    unit = (match.group(3) or "b").lower()[0]
    return int(match.group(1)), int(match.group(2)) * {"b": 1, "k": 1024, "m": 1 << 20}[unit]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Draw the charts and write report.md of a bench run, from its saved results "
                    "(RUN_DIR/meta.json and results.jsonl); nothing is measured again.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory written by `python -m bench run`, e.g. results/<run_id>")
    parser.add_argument("--cell", type=parse_cell, metavar="CONNSxBYTES",
                        help="the closed-loop cell for the percentile spectrum and the CPU bars, "
                             "e.g. 128x1024 (default: the busiest cell most servers measured)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = build_report(args.run_dir, cell=args.cell)
    except ReportError as exc:
        print(f"bench report: {exc}", file=sys.stderr)
        return 2
    charts = sorted((path.parent / "charts").glob("*.png"))
    print(f"wrote {path} and {len(charts)} charts in {path.parent / 'charts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
