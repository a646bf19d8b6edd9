"""The report's static charts: matplotlib, each written as PNG (for report.md) and SVG beside it.

- status        server x cell: what each result is worth (ok / noisy / client-bound / degraded /
                failed / skipped)
- throughput    req/s vs connections, one line per server (one chart per message size)
- latency       p50 and p99 vs connections
- sizes         bandwidth per message size, a bar per size, at one connection count
- spectrum      the whole latency distribution at the headline cell, HdrHistogram style
- openloop      p99 and completed share vs offered load, the knee (when the run has open loop)
- cpu           server CPU microseconds and context switches per request at the headline cell
- memory        memory per connection: dots on a log axis, one basis, one dot per connection count

Every chart marks a figure that is not clean the same way (see bench/report/view.py): filled = ok;
hollow = noisy or client-bound; hollow in a red ring = degraded; × = failed. Lines into a point
that is not clean are dotted, so such a point never reads as the best line. Error bars are the
95 % CI of the median where the run recorded enough repeats, else their min–max. Colours are one
per family, the same in every chart; every chart has a footer naming the machine, run and date.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

import numpy as np  # noqa: E402  (matplotlib's own dependency)
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator  # noqa: E402

from bench import results  # noqa: E402
from bench.report import notes  # noqa: E402
from bench.report.fmt import (  # noqa: E402
    fmt_bytes, fmt_cell_short, fmt_percentile, fmt_rps, fmt_short, fmt_size,
    fmt_small, size_slug,
)
from bench.report.view import (  # noqa: E402
    DEGRADED_RING, FAMILY_COLOURS, OTHER_COLOUR, View, clean, merged_histogram, offered,
    primary_size, requests, scale_cells,
)

FIG_WIDTH_IN = 12.0  # x DPI = 1200 px: readable on a GitHub page without zooming
FIG_HEIGHT_IN = 6.5
DPI = 100
FOOTER_IN = 0.32  # the strip at the bottom kept free for the footer

VERDICT_COLOURS = {"ok": "#c7e9c0", "noisy": "#fff3b0", "client-bound": "#c6dbef",
                   "degraded": "#fdd49e", "failed": "#fc9272", "skipped": "#e0e0e0"}
SPECTRUM_MARKS = (50.0, 90.0, 99.0, 99.9, 99.99)  # the percentiles marked on the spectrum

# Every file this module may write in charts/, so a redraw removes the ones it no longer makes.
CHART_GLOB = ("status.*", "throughput*.*", "latency*.*", "sizes.*", "spectrum.*", "openloop.*",
              "cpu.*", "memory.*")


@dataclass
class Chart:
    """One chart for the report: its files, heading, and what to notice (or why it is absent)."""

    key: str
    heading: str
    path: Path | None  # the PNG; the SVG is beside it
    notes: list[str]
    skipped_because: str | None = None
    extra: dict = field(default_factory=dict)  # what the HTML page needs to draw it again

    @property
    def svg(self) -> Path | None:
        return self.path.with_suffix(".svg") if self.path else None


# -- Plumbing ----------------------------------------------------------------------------------------


def _figure(view: View, title: str, *, ncols: int = 1, height_in: float = FIG_HEIGHT_IN,
            sharey: bool = False, width_ratios=None) -> tuple[Figure, list]:
    fig = Figure(figsize=(FIG_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    footer_share = FOOTER_IN / height_in
    fig.get_layout_engine().set(rect=(0, footer_share, 1, 1 - footer_share), w_pad=0.08)
    axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False,
                        gridspec_kw={"width_ratios": width_ratios} if width_ratios else None)[0]
    fig.suptitle(title, fontsize=15, fontweight="bold", x=0.006, ha="left")
    fig.text(0.006, 0.3 * footer_share, view.footer, fontsize=9, color="#555555",
             ha="left", va="bottom")
    for ax in axes:
        ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    return fig, list(axes)


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, facecolor="white")
    fig.savefig(path.with_suffix(".svg"), facecolor="white")
    return path


def _header_handle() -> Line2D:
    return Line2D([], [], linestyle="none", marker="none")


KEY_HOLLOW = (Line2D([], [], color="#444444", marker="o", markerfacecolor="white",
                     linestyle=":", markersize=7),
              "hollow, dotted: noisy or client-bound\n(not ranked: the window was disturbed,\n"
              "or the load generator saturated)")
KEY_DEGRADED = (Line2D([], [], marker="o", markersize=13, linestyle="none", markerfacecolor="none",
                       markeredgecolor=DEGRADED_RING, markeredgewidth=1.6),
                "ringed: degraded (some clients\nrefused, reset or unserved)")
KEY_FAILED = (Line2D([], [], color="#444444", marker="x", linestyle="none", markersize=8,
                     markeredgewidth=2), "× on the x axis: failed")


def _server_legend(fig: Figure, view: View, servers: list[str], *, keys: Iterable = ()) -> None:
    """One legend to the right of the plots: servers grouped under their family, then a key."""
    handles, labels, headers = [], [], []
    for family in view.family_order(servers):
        headers.append((len(labels), FAMILY_COLOURS.get(family, OTHER_COLOUR)))
        handles.append(_header_handle())
        labels.append(family)
        for server in (s for s in servers if view.families[s] == family):
            colour, marker, linestyle = view.style(server)
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
    legend = fig.legend(handles, labels, loc="outside right upper",
                        fontsize=10 if len(labels) <= 24 else 8.5, frameon=False,
                        handlelength=2.6, borderaxespad=0.2)
    texts = legend.get_texts()
    for index, colour in headers:
        texts[index].set_fontweight("bold")
        texts[index].set_color(colour)


def _keys(verdicts: set[str], failed: bool) -> list:
    return (([KEY_HOLLOW] if verdicts & {"noisy", "client-bound"} else [])
            + ([KEY_DEGRADED] if "degraded" in verdicts else []) + ([KEY_FAILED] if failed else []))


def _log_ticks(ax, values: Iterable[float], formatter: Callable[[float], str]) -> None:
    """x ticks exactly at the values measured (1, 16, 128 connections), in plain numbers."""
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: formatter(v)))
    ax.xaxis.set_minor_locator(NullLocator())


def _log_axis(axis, formatter: Callable = lambda v: f"{v:,.6g}", base: float = 10,
              wide: bool = False) -> None:
    """Log ticks at 1, 2, 5 x powers of ten (only powers when `wide`: many decades), or at powers
    of `base`, in plain numbers."""
    subs = (1.0, 2.0, 5.0) if base == 10 and not wide else (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: formatter(v)))
    axis.set_minor_locator(NullLocator())


def _bounds(s: results.Stat) -> tuple[float, float]:
    """The error bar: the 95 % CI of the median where recorded, else min–max."""
    return s.ci95 if s.ci95 else (s.low, s.high)


def _series(ax, view: View, server: str, points: list[tuple[float, results.Stat, str]], *,
            dodge: float = 1.0) -> set[str]:
    """A server's line: medians joined (dotted into a point that is not clean), error bars,
    markers filled (ok), hollow (noisy, client-bound) or hollow and ringed (degraded)."""
    if not points:
        return set()
    colour, marker, linestyle = view.style(server)
    points = sorted(points, key=lambda p: p[0])
    xs = [p[0] * dodge for p in points]
    for (_, s0, v0), (_, s1, v1), xa, xb in zip(points, points[1:], xs, xs[1:],
                                                strict=False):
        both = v0 == "ok" and v1 == "ok"
        ax.plot([xa, xb], [s0.median, s1.median], color=colour, zorder=2,
                linestyle=linestyle if both else ":", linewidth=2 if both else 1.3,
                alpha=1.0 if both else 0.7)
    for x, (_, s, verdict) in zip(xs, points, strict=True):
        low, high = _bounds(s)
        if s.n > 1 and high > low:
            ax.errorbar([x], [s.median], yerr=[[s.median - low], [high - s.median]], fmt="none",
                        ecolor=colour, elinewidth=1.2, capsize=3, alpha=0.8, zorder=2)
        ax.plot([x], [s.median], marker=marker, color=colour, markersize=8, linestyle="none",
                zorder=3, markerfacecolor=colour if verdict == "ok" else "white",
                markeredgewidth=1.8)
        if verdict == "degraded":
            ax.plot([x], [s.median], marker="o", markersize=15, linestyle="none", zorder=3,
                    markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.6)
    return {p[2] for p in points}


def _failed_marks(ax, view: View, server: str, xs: list[float], dodge: float = 1.0) -> bool:
    """Crosses on the x axis where a server failed, so its line visibly ends for a reason."""
    if xs:
        ax.plot([x * dodge for x in xs], [0.0] * len(xs), marker="x", color=view.colour(server),
                markersize=9, markeredgewidth=2.2, linestyle="none", clip_on=False, zorder=4,
                transform=ax.get_xaxis_transform())
    return bool(xs)


def _dodges(n: int, spread_octaves: float = 0.35) -> list[float]:
    """Small horizontal offsets on a log axis, so error bars of servers at one x stay apart."""
    if n <= 1:
        return [1.0] * n
    return [2 ** (spread_octaves * (i / (n - 1) - 0.5)) for i in range(n)]


def _ms(value_us: float | None) -> float | None:
    return value_us / 1000 if value_us is not None else None


def latency_ms(key: str) -> Callable[[results.Measurement], float | None]:
    """A measurement's latency percentile `key` ('p50', 'p99') in milliseconds."""
    return lambda m: _ms((m.latency_us or {}).get(key))


# -- Status --------------------------------------------------------------------------------------


def chart_status(view: View, charts_dir: Path) -> Chart:
    servers, cells = view.servers, view.cells
    nrows, ncols = len(servers), len(cells)
    height = min(max(3.6, 1.9 + 0.36 * nrows + (0.3 if any(c.is_open for c in cells) else 0)), 14)
    fig, (ax,) = _figure(view, "What every result is worth, server by cell", height_in=height)
    column_in = 8.0 / max(ncols, 1)  # the axes get about 8 of the figure's 12 inches
    compact = column_in < 0.6
    with_unit = column_in >= 1.05
    short = {"degraded": "degr.", "client-bound": "c-bound", "failed": "FAIL", "skipped": "skip"}
    for row, server in enumerate(servers):
        for col, cell in enumerate(cells):
            o = view.outcome(server, cell)
            verdict = o.verdict if o else None  # None: not in this server's plan
            ax.add_patch(Rectangle((col, row), 1, 1, facecolor=VERDICT_COLOURS.get(verdict, "white"),
                                   edgecolor="#eeeeee" if verdict is None else "white",
                                   linewidth=2))
            text = "—" if verdict is None else (short.get(verdict, verdict) if column_in < 0.9
                                                else verdict.upper() if verdict == "failed"
                                                else verdict)
            if o and o.rps and not compact:
                text += f"\n{fmt_short(o.rps.median)}" + (" req/s" if with_unit else "")
            ax.text(col + 0.5, row + 0.5, text, ha="center", va="center",
                    fontsize=8 if compact else (9.5 if with_unit else 8.5),
                    fontweight="bold" if verdict == "failed" else "normal")
    ax.set_xlim(0, ncols)
    ax.set_ylim(nrows, 0)
    if column_in / ((height - 1.5) / max(nrows, 1)) > 2.6:  # few cells: keep them from
        ax.set_aspect(1 / 2.6, adjustable="box")  # stretching into long flat bars
    ax.set_xticks([c + 0.5 for c in range(ncols)])
    upright = column_in >= 0.85
    ax.set_xticklabels([fmt_cell_short(c) for c in cells], fontsize=9,
                       rotation=0 if upright else 40, ha="center" if upright else "left",
                       rotation_mode="anchor", va="bottom" if upright else "baseline")
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.5 for r in range(nrows)])
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(view.colour(server))
        label.set_fontweight("bold")
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_xlabel("cell: connections × message size (open loop: @ offered req/s, or @ a share of "
                  "each server's own peak); text: verdict" + ("" if compact else
                                                               " and median req/s"), fontsize=10)
    handles = [Patch(facecolor=VERDICT_COLOURS[v], label=v) for v in results.STATUS_ORDER]
    if any(view.outcome(s, c) is None for s in servers for c in cells):
        handles.append(Patch(facecolor="white", edgecolor="#cccccc",
                             label="—: not planned\nfor this server"))
    family_header = len(handles) + 1
    handles += [Patch(facecolor="none", edgecolor="none", label=""),
                Patch(facecolor="none", edgecolor="none", label="family (name colour)")]
    handles += [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
                for f in view.family_order(servers)]
    legend = fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False,
                        title="verdict", title_fontproperties={"weight": "bold", "size": 10},
                        alignment="left")
    legend.get_texts()[family_header].set_fontweight("bold")
    path = _save(fig, charts_dir / "status.png")
    return Chart("status", "Status of every server and cell", path, notes.status(view))


# -- Lines against connections -------------------------------------------------------------------------


def chart_throughput(view: View, charts_dir: Path, size: int, primary: bool) -> Chart:
    cells = view.closed_cells(size)
    name = "throughput.png" if primary else f"throughput-{size_slug(size)}.png"
    heading = f"Throughput vs connections ({fmt_size(size)} messages)"
    conns_values = sorted({c.conns for c in view.closed_cells(size, measured=True)})
    servers = [s for s in view.servers if any((o := view.outcome(s, c)) and o.measured
                                              for c in cells)]
    if len(conns_values) < 2 or not servers:
        why = ("no server measured anything" if not conns_values else
               f"only one connection count ({conns_values[0]:,}) was measured")
        return Chart("throughput", heading, None, [], f"at {fmt_size(size)}, {why}.")
    conns_values = sorted({*conns_values, *(c.conns for c in cells if any(
        (o := view.outcome(s, c)) and o.status == "failed" for s in servers))})
    fig, (ax,) = _figure(view, f"Throughput vs connections · {fmt_size(size)} messages, "
                               f"closed loop")
    ax.set_title("median of the repeats; bars: 95 % CI of the median where recorded, else "
                 "min–max", fontsize=10, color="#444444")
    verdicts: set[str] = set()
    any_failed = False
    for server, dodge in zip(servers, _dodges(len(servers)), strict=True):
        points, failed = [], []
        for cell in cells:
            o = view.outcome(server, cell)
            if o is not None and o.rps:
                points.append((cell.conns, o.rps, o.verdict))
            elif o is not None and o.status == "failed":
                failed.append(cell.conns)
        verdicts |= _series(ax, view, server, points, dodge=dodge)
        any_failed |= _failed_marks(ax, view, server, failed, dodge)
    ax.set_xscale("log")
    _log_ticks(ax, conns_values, lambda v: f"{v:,.0f}")
    ax.set_xlim(min(conns_values) / 1.5, max(conns_values) * 1.5)
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.set_xlabel("concurrent connections (log scale)")
    ax.set_ylabel("throughput (requests per second)")
    _server_legend(fig, view, servers, keys=_keys(verdicts, any_failed))
    path = _save(fig, charts_dir / name)
    return Chart("throughput", heading, path, notes.throughput(view, size), extra={"size": size})


def chart_latency(view: View, charts_dir: Path, size: int, primary: bool) -> Chart:
    cells = view.closed_cells(size)
    name = "latency.png" if primary else f"latency-{size_slug(size)}.png"
    heading = f"Latency vs connections ({fmt_size(size)} messages)"
    conns_values = sorted({c.conns for c in view.closed_cells(size, measured=True)})
    servers = [s for s in view.servers if any(
        (o := view.outcome(s, c)) and o.stat(latency_ms("p50")) for c in cells)]
    if len(conns_values) < 2 or not servers:
        why = ("no latencies were recorded" if not servers or not conns_values else
               f"only one connection count ({conns_values[0]:,}) was measured")
        return Chart("latency", heading, None, [], f"at {fmt_size(size)}, {why}.")
    conns_values = sorted({*conns_values, *(c.conns for c in cells if any(
        (o := view.outcome(s, c)) and o.status == "failed" for s in servers))})
    fig, axes = _figure(view, f"Latency vs connections · {fmt_size(size)} messages, closed loop",
                        ncols=2, sharey=True)
    verdicts: set[str] = set()
    any_failed = False
    for ax, key, label in zip(axes, ("p50", "p99"), ("median (p50)", "99th percentile (p99)"),
                              strict=True):
        for server, dodge in zip(servers, _dodges(len(servers)), strict=True):
            points, failed = [], []
            for cell in cells:
                o = view.outcome(server, cell)
                value = o.stat(latency_ms(key)) if o is not None else None
                if value:
                    points.append((cell.conns, value, o.verdict))
                elif o is not None and o.status == "failed":
                    failed.append(cell.conns)
            verdicts |= _series(ax, view, server, points, dodge=dodge)
            any_failed |= _failed_marks(ax, view, server, failed, dodge)
        ax.set_title(f"{label}, median of repeats", fontsize=11)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax, conns_values, lambda v: f"{v:,.0f}")
        ax.set_xlim(min(conns_values) / 1.5, max(conns_values) * 1.5)
        _log_axis(ax.yaxis)
        ax.set_xlabel("concurrent connections (log scale)")
    axes[1].tick_params(labelleft=True)
    axes[0].set_ylabel("round-trip latency (ms, log scale)")
    _server_legend(fig, view, servers, keys=_keys(verdicts, any_failed))
    path = _save(fig, charts_dir / name)
    return Chart("latency", heading, path, notes.latency(view, size), extra={"size": size})


# -- Message sizes -------------------------------------------------------------------------------------


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


def chart_sizes(view: View, charts_dir: Path) -> Chart | None:
    """Bandwidth per message size: a bar per size, per server, in MiB/s on a linear axis."""
    cells = sizes_cells(view)
    if not cells:
        return None
    conns = cells[0].conns
    heading = f"Bandwidth by message size ({conns:,} connections)"
    servers = [s for s in view.servers if any((o := view.outcome(s, c)) and o.measured
                                              for c in cells)]
    fig, (ax,) = _figure(view, f"Bandwidth by message size · {conns:,} connections, closed loop",
                         height_in=min(max(4.0, 1.8 + 0.26 * len(servers) * len(cells)), 16))
    mib = float(1 << 20)
    height = 0.8 / len(cells)
    top = max((s.high for srv in servers for c in cells
               if (o := view.outcome(srv, c)) and (s := o.stat("bytes_per_s"))), default=mib) / mib
    hatched = False
    for row, server in enumerate(servers):
        for k, cell in enumerate(cells):
            y = row - 0.4 + height * (k + 0.5)
            o = view.outcome(server, cell)
            s = o.stat("bytes_per_s") if o else None
            if s is None:
                ax.text(0, y, f"  {fmt_size(cell.size_bytes)}: {o.verdict if o else 'not run'}",
                        va="center", fontsize=8.5, color="#555555", style="italic")
                continue
            not_clean = not clean(o)
            hatched |= not_clean
            alpha = 0.55 + 0.45 * (k / max(1, len(cells) - 1))  # lighter: smaller messages
            ax.barh(y, s.median / mib, height=height * 0.9, color=view.colour(server),
                    alpha=alpha, hatch="///" if not_clean else None, edgecolor="white")
            low, high = _bounds(s)
            if s.n > 1 and high > low:
                ax.errorbar(s.median / mib, y, xerr=[[(s.median - low) / mib],
                                                     [(high - s.median) / mib]],
                            fmt="none", ecolor="#333333", capsize=2, elinewidth=1)
            ax.text(high / mib + top * 0.012, y, f"{fmt_size(cell.size_bytes)}: "
                    f"{fmt_rps(s.median / mib)} MiB/s", va="center", fontsize=8.5)
    ax.set_yticks(range(len(servers)))
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(view.colour(server))
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(servers) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.3)
    ax.grid(False, axis="y")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.set_xlabel("bandwidth: message bytes echoed per second (MiB/s, linear)")
    ax.set_title("a bar per message size, lightest the smallest; bars: 95 % CI or min–max",
                 fontsize=10, color="#444444")
    handles = [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
               for f in view.family_order(servers)]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="///",
                             label="hatched: noisy, client-bound\nor degraded"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)
    path = _save(fig, charts_dir / "sizes.png")
    return Chart("sizes", heading, path, notes.sizes(view, cells), extra={"cells": cells})


# -- The latency spectrum ------------------------------------------------------------------------------


def spectrum_curve(histogram) -> tuple[np.ndarray, np.ndarray]:
    """x = 1 / (1 - p) from p50 to p99.99, y = latency in ms at p."""
    xs = np.geomspace(2, 10_000, 160)
    percentiles = np.minimum(100 * (1 - 1 / xs), 99.99)
    ys = np.array([histogram.get_value_at_percentile(float(p)) for p in percentiles]) / 1000
    return xs, ys


def spectrum_curves(view: View, cell: results.CellKey) -> dict:
    """server -> (merged histogram, its CellSummary) at `cell`."""
    curves = {}
    for server in view.servers:
        o = view.outcome(server, cell)
        if o and o.measured and (merged := merged_histogram(o)) is not None:
            curves[server] = (merged, o)
    return curves


def chart_spectrum(view: View, charts_dir: Path, cell: results.CellKey | None, *,
                   asked: bool = False) -> Chart:
    if cell is None:
        return Chart("spectrum", "Latency spectrum", None, [],
                     "no closed-loop cell has measurements.")
    heading = f"Latency spectrum at {cell.label}"
    curves = spectrum_curves(view, cell)
    if not curves:
        return Chart("spectrum", heading, None, [],
                     f"no readable latency histograms were recorded at {cell.label}.")
    fig, (ax,) = _figure(view, f"Latency by percentile · {cell.label}, closed loop")
    ax.set_title("all repeats' histograms merged; each step right is 10× rarer requests",
                 fontsize=10, color="#444444")
    verdicts = set()
    for server, (merged, o) in curves.items():
        colour, marker, linestyle = view.style(server)
        xs, ys = spectrum_curve(merged)
        ok = o.verdict == "ok"
        ax.plot(xs, ys, color=colour, linestyle=linestyle if ok else ":", linewidth=2 if ok else 1.4,
                zorder=2)
        mark_x = [1 / (1 - p / 100) for p in SPECTRUM_MARKS]
        mark_y = [merged.get_value_at_percentile(p) / 1000 for p in SPECTRUM_MARKS]
        ax.plot(mark_x, mark_y, marker=marker, color=colour, linestyle="none", markersize=8,
                markeredgewidth=1.8, markerfacecolor=colour if ok else "white", zorder=3)
        if o.verdict == "degraded":
            ax.plot(mark_x, mark_y, marker="o", markersize=15, linestyle="none", zorder=3,
                    markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.4)
        verdicts.add(o.verdict)
    fewest = min((n for _, o in curves.values() if (n := requests(o))), default=None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - p / 100) for p in SPECTRUM_MARKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _p: fmt_percentile(100 * (1 - 1 / v), fewest).replace(" (", "\n(") if v > 1
        else ""))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1.7, 13_000)
    _log_axis(ax.yaxis)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p)); '(from N requests)': the fewest "
                  "requests any server had beyond it")
    ax.set_ylabel("round-trip latency (ms, log scale)")
    _server_legend(fig, view, list(curves), keys=_keys(verdicts, False))
    path = _save(fig, charts_dir / "spectrum.png")
    return Chart("spectrum", heading, path, notes.spectrum(view, cell, curves, asked=asked),
                 extra={"cell": cell})


# -- Open loop -------------------------------------------------------------------------------------------


def openloop_series(view: View) -> dict[tuple[str, int, int], list[results.CellSummary]]:
    """(server, conns, size) -> its open-loop results with a p99, lowest offered load first;
    only series of two points or more."""
    series: dict[tuple[str, int, int], list] = {}
    for (server, cell), o in view.summaries.items():
        if cell.is_open and o.measured and o.stat(latency_ms("p99")):
            series.setdefault((server, cell.conns, cell.size_bytes), []).append(o)
    return {k: sorted(v, key=lambda o: (o.cell.fraction or 0, offered(o).median))
            for k, v in series.items() if len(v) >= 2}


def load_x(o: results.CellSummary, by_share: bool) -> float:
    """Where an open-loop result sits on the x axis: its share of the server's own peak (in %)
    when every series is given as a share, else the load it was offered (req/s)."""
    return o.cell.fraction * 100 if by_share else offered(o).median


def chart_openloop(view: View, charts_dir: Path) -> Chart:
    heading = "Latency vs offered load (open loop)"
    if not any(c.is_open for c in view.cells):
        return Chart("openloop", heading, None, [],
                     f"this run has no open-loop cells (profile "
                     f"{view.meta.get('profile', 'unknown')}), so there is no latency-vs-load "
                     f"curve; `make bench-full` measures them.")
    drawable = openloop_series(view)
    if not drawable:
        return Chart("openloop", heading, None, [],
                     "no server measured two or more offered rates, so there is no curve to draw.")
    by_share = all(o.cell.fraction is not None for v in drawable.values() for o in v)
    settings = {(k[1], k[2]) for k in drawable}
    servers = list(dict.fromkeys(s for s in view.servers for k in drawable if k[0] == s))
    fig, axes = _figure(view, "Latency vs offered load (open loop: requests sent on a fixed "
                              "schedule)", ncols=2, width_ratios=[3, 2])
    verdicts: set[str] = set()
    highest = 0.0
    for (server, conns, size), outs in drawable.items():
        xs = [load_x(o, by_share) for o in outs]
        highest = max(highest, *xs)
        p99 = [(x, o.stat(latency_ms("p99")), o.verdict) for x, o in zip(xs, outs, strict=True)]
        done = [(x, results.stat(m.rps / r * 100 for m in o.measured
                                 if m.rps and (r := m.extra.get("offered_rps") or m.rate)),
                 o.verdict) for x, o in zip(xs, outs, strict=True)]
        verdicts |= _series(axes[0], view, server, p99)
        _series(axes[1], view, server, [p for p in done if p[1] is not None])
        if len(settings) > 1:
            axes[0].annotate(f"{conns}×{fmt_size(size)}", (xs[-1], p99[-1][1].median),
                             textcoords="offset points", xytext=(6, 0), fontsize=8,
                             color=view.colour(server))
    axes[0].set_yscale("log")
    _log_axis(axes[0].yaxis)
    axes[0].set_ylabel("p99 round-trip latency (ms, log scale)\nmeasured from the intended send "
                       "time")
    axes[0].set_title("p99: flat while the server keeps up, then the knee", fontsize=11)
    axes[1].axhline(100, color="#888888", linestyle=":", linewidth=1.8, zorder=1)
    axes[1].set_ylim(0, 110)
    axes[1].set_ylabel("completed, as % of offered")
    axes[1].set_title("completed vs offered (100 %: keeping up)", fontsize=11)
    for ax in axes:
        ax.set_xlim(0, highest * 1.08)
        if by_share:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f} %"))
            ax.set_xlabel("offered load, % of each server's own closed-loop peak")
        else:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_short(v) if v else "0"))
            ax.set_xlabel("offered load (requests per second)")
    _server_legend(fig, view, servers, keys=_keys(verdicts, False))
    path = _save(fig, charts_dir / "openloop.png")
    curves = [notes.LoadCurve.read(f"{server} ({conns} × {fmt_size(size)})" if len(settings) > 1
                                   else server, outs)
              for (server, conns, size), outs in drawable.items()]
    return Chart("openloop", heading, path, notes.openloop(curves), extra={"by_share": by_share})


# -- Bars per server: CPU; dots per server: memory ----------------------------------------------------


def _bars_height(count: int) -> float:
    return min(max(4.0, 2.0 + 0.42 * count), 14.0)


def _bar_panel(ax, view: View, servers: list[str], values: dict, fmt, *, names: bool = True,
               log: bool = False) -> bool:
    """Horizontal bars, one per server, hatched where the result is not clean; where a server has
    no value, the word why. Returns whether any bar is hatched."""
    stats = [s for s, _ in values.values() if s and s.median > 0]
    top = max((s.high for s in stats), default=1.0)
    floor = min(s.median for s in stats) / 3 if log and stats else 0.0
    any_hatched = False
    for y, server in enumerate(servers):
        s, o = values[server]
        if s is None or s.median <= 0:
            word = (f"{fmt(s.median)}: nothing measurable" if s is not None else
                    o.verdict if o is not None and not o.measured else "not recorded")
            ax.text(floor, y, f"  {word}", va="center", fontsize=9.5, color="#555555",
                    style="italic")
            continue
        hatched = not clean(o)
        any_hatched |= hatched
        ax.barh(y, s.median - floor, left=floor, color=view.colour(server), height=0.7,
                hatch="///" if hatched else None, edgecolor="white", linewidth=0)
        low, high = _bounds(s)
        if s.n > 1 and high > low:
            ax.errorbar(s.median, y, xerr=[[s.median - low], [high - s.median]], fmt="none",
                        ecolor="#333333", capsize=3, elinewidth=1)
        ax.text(high * 1.1 if log else high + top * 0.015, y, fmt(s.median), va="center",
                fontsize=9.5)
    ax.set_yticks(range(len(servers)))
    if names:
        ax.set_yticklabels(servers, fontsize=10)
        for label, server in zip(ax.get_yticklabels(), servers, strict=True):
            label.set_color(view.colour(server))
    else:
        ax.tick_params(labelleft=False)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(servers) - 0.4, -0.6)
    ax.grid(False, axis="y")
    if log and stats:
        ax.set_xscale("log")
        ax.set_xlim(floor, top * 5)
        _log_axis(ax.xaxis, wide=top * 5 / floor > 300)
    else:
        ax.set_xlim(0, top * 1.3)
    return any_hatched


def chart_cpu(view: View, charts_dir: Path, cell: results.CellKey | None) -> Chart:
    heading = "Server CPU and context switches per request"
    if cell is None:
        return Chart("cpu", heading, None, [], "no closed-loop cell has measurements.")
    heading += f" at {cell.label}"
    servers = [s for s in view.servers if view.outcome(s, cell)]
    cpu = {s: (o.cpu_us_per_request, o) for s in servers if (o := view.outcome(s, cell))}
    ctx = {s: (o.ctx_per_request, o) for s in servers if (o := view.outcome(s, cell))}
    if not any(v[0] for v in cpu.values()) and not any(v[0] for v in ctx.values()):
        return Chart("cpu", heading, None, [], f"no server CPU was recorded at {cell.label}.")
    fig, axes = _figure(view, f"Server cost per request · {cell.label}", ncols=2, sharey=True,
                        height_in=_bars_height(len(servers)))
    hatched = _bar_panel(axes[0], view, servers, cpu, lambda v: f"{fmt_small(v)} µs")
    values = [s.median for s, _ in ctx.values() if s and s.median > 0]
    hatched |= _bar_panel(axes[1], view, servers, ctx, fmt_small, names=False,
                          log=len(values) >= 2 and max(values) / min(values) > 30)
    axes[0].set_xlabel("server CPU time per request (µs)")
    axes[1].set_xlabel("context switches per request")
    axes[0].set_title("CPU (user + system) of the whole process tree:\nfair even where the client "
                      "was the bottleneck", fontsize=10.5)
    axes[1].set_title("switches (voluntary + involuntary) of every thread:\nbelow 1, one wakeup "
                      "served several requests", fontsize=10.5)
    handles = [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
               for f in view.family_order(servers)]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="///",
                             label="hatched: noisy, client-bound\nor degraded"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)
    path = _save(fig, charts_dir / "cpu.png")
    return Chart("cpu", heading, path, notes.cpu(view, cell), extra={"cell": cell})


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


BASIS_NAMES = {"PSS_ANON": "anonymous PSS", "PSS": "PSS", "USS": "USS", "RSS": "RSS"}


def basis_name(basis: str | None) -> str:
    return BASIS_NAMES.get(basis, basis) if basis else "memory (basis not recorded: USS or PSS)"


def chart_memory(view: View, charts_dir: Path) -> Chart:
    heading = "Memory per connection"
    basis, cells, points = memory_points(view)
    if not points:
        return Chart("memory", heading, None, [],
                     f"no server recorded its memory at {results.MEM_PER_CONN_MIN_CONNS} "
                     f"connections or more.")
    size = cells[0].size_bytes
    heading += f" ({fmt_size(size)} messages)"
    servers = [s for s in view.servers if any(k[0] == s for k in points)]
    fig, (ax,) = _figure(view, f"Memory per connection · process-tree {basis_name(basis)}, "
                               f"log scale", height_in=_bars_height(len(servers)))
    positive = [s.median for s in points.values() if s.median > 0]
    floor = min(positive) / 2 if positive else 1.0
    markers = {c: ("o", "s", "^", "D", "v", "P")[i % 6] for i, c in enumerate(cells)}
    verdicts = set()
    for y, server in enumerate(servers):
        colour = view.colour(server)
        for cell in cells:
            s = points.get((server, cell))
            if s is None:
                continue
            o = view.outcome(server, cell)
            x = max(s.median, floor)
            low, high = _bounds(s)
            if s.n > 1 and high > low and low > 0:
                ax.plot([max(low, floor), high], [y, y], color=colour, linewidth=1.2, alpha=0.6)
            ax.plot([x], [y], marker=markers[cell], markersize=9, linestyle="none", color=colour,
                    markerfacecolor=colour if o.verdict == "ok" else "white", markeredgewidth=1.6)
            if o.verdict == "degraded":
                ax.plot([x], [y], marker="o", markersize=16, linestyle="none",
                        markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.4)
            verdicts.add(o.verdict)
        best = points.get((server, cells[-1])) or next(
            points[(server, c)] for c in reversed(cells) if (server, c) in points)
        ax.text(max(best.median, floor) * 1.35, y - 0.28,
                fmt_bytes(best.median) if best.median > 0 else "≈ 0", fontsize=8.5,
                color="#333333")
    ax.set_xscale("log")
    _log_axis(ax.xaxis, lambda v: fmt_bytes(v), base=4)  # 1 KiB, 4 KiB, 16 KiB ...: binary steps
    ax.set_xlim(floor / 1.5, max(s.high for s in points.values()) * 3)
    ax.set_yticks(range(len(servers)))
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(view.colour(server))
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(servers) - 0.4, -0.6)
    ax.set_xlabel(f"memory per connection = (process-tree {basis_name(basis)} with every "
                  f"connection open − the same when idle) ÷ connections\n(log scale; ≈ 0 is "
                  f"drawn at the left edge)")
    ax.set_title("a dot per connection count; the figure printed is the largest count's",
                 fontsize=10, color="#444444")
    handles = [Line2D([], [], marker=markers[c], color="#444444", linestyle="none", markersize=8,
                      label=f"{c.conns:,} connections") for c in cells]
    handles += [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
                for f in view.family_order(servers)]
    handles += [h for h, _ in _keys(verdicts, False)]
    labels = [h.get_label() for h in handles[: len(handles) - len(_keys(verdicts, False))]]
    labels += [text for _, text in _keys(verdicts, False)]
    fig.legend(handles, labels, loc="outside right upper", fontsize=10, frameon=False)
    path = _save(fig, charts_dir / "memory.png")
    return Chart("memory", heading, path, notes.memory(view, basis_name(basis), cells, points),
                 extra={"basis": basis})


def draw_all(view: View, charts_dir: Path, focus: results.CellKey | None,
             asked: bool) -> list[Chart]:
    """Every chart the run has data for, in the order report.md shows them."""
    charts = [chart_status(view, charts_dir)]
    primary = primary_size(view)
    sizes = sorted({c.size_bytes for c in view.closed_cells()}, key=lambda s: (s != primary, s))
    for size in sizes:
        pair = (chart_throughput(view, charts_dir, size, size == primary),
                chart_latency(view, charts_dir, size, size == primary))
        # a size measured at one connection count only shows up in the sizes chart and the table
        charts += [c for c in pair if c.path or size == primary]
    if (sizes_chart := chart_sizes(view, charts_dir)) is not None:
        charts.append(sizes_chart)
    charts.append(chart_spectrum(view, charts_dir, focus, asked=asked))
    charts.append(chart_openloop(view, charts_dir))
    charts.append(chart_cpu(view, charts_dir, focus))
    charts.append(chart_memory(view, charts_dir))
    return charts
