"""The report's static charts: matplotlib, each written as PNG (for report.md) and SVG beside it,
drawn from what bench/report/series.py computed (this module computes no figure of its own).

- ranking       who won at the headline cell: × ref (req/s without a reference) by the one rule,
                bars best first, whiskers the 95 % intervals, tie groups banded; the results not
                ranked apart below
- status        server x cell: what each result is worth (ok / noisy / client-bound / degraded /
                failed / skipped)
- throughput    req/s vs connections, small multiples: a panel per family (one chart per size)
- latency       p50 and p99 vs connections
- sizes         bandwidth per message size, a bar per size, at one connection count
- spectrum      the whole latency distribution at the headline cell, HdrHistogram style
- openloop      p99 and completed share vs offered load, the knee (when the run has open loop)
- cpu           server CPU microseconds and context switches per request at the headline cell
- memory        memory per connection: dots on a log axis, one basis, one dot per connection count
- interpreters  each Python model's ratio to the reference under each interpreter (a run with
                several, `bench run --python`): a dot per interpreter with its interval

Every chart marks a figure that is not clean the same way (see bench/report/view.py): filled = ok;
hollow = noisy or client-bound; hollow in a red ring = degraded; × = failed. Lines into a point
that is not clean are dotted, so such a point never reads as the best line. Error bars are the
95 % interval where the run recorded one (bench/stats.py), else the range of the rounds. Colours
are one per family, the same in every chart; every chart has a footer naming the machine, run and
date.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator  # noqa: E402

from bench import results  # noqa: E402
from bench.report.fmt import (  # noqa: E402
    fmt_bytes, fmt_cell_short, fmt_percentile, fmt_ratio, fmt_rps, fmt_short, fmt_size,
    fmt_small,
)
from bench.report.series import (  # noqa: E402
    SPECTRUM_MARKS, Bar, Chart, Line, bounds, has_bar,
)
from bench.report.view import (  # noqa: E402
    DEGRADED_RING, FAMILY_COLOURS, OTHER_COLOUR, View, clean,
)

FIG_WIDTH_IN = 12.0  # x DPI = 1200 px: readable on a GitHub page without zooming
FIG_HEIGHT_IN = 6.5
DPI = 100
FOOTER_IN = 0.32  # the strip at the bottom kept free for the footer

VERDICT_COLOURS = {"ok": "#c7e9c0", "noisy": "#fff3b0", "client-bound": "#c6dbef",
                   "degraded": "#fdd49e", "failed": "#fc9272", "skipped": "#e0e0e0"}

# Every file this module may write in charts/, so a redraw removes the ones it no longer makes.
CHART_GLOB = ("ranking.*", "status.*", "throughput*.*", "latency*.*", "sizes.*", "spectrum.*",
              "openloop.*", "cpu.*", "memory.*", "interpreters.*")


# -- Plumbing ----------------------------------------------------------------------------------------


def _figure(view: View, title: str, *, ncols: int = 1, nrows: int = 1,
            height_in: float = FIG_HEIGHT_IN, sharey: bool = False, sharex: bool = False,
            width_ratios=None) -> tuple[Figure, list]:
    fig = Figure(figsize=(FIG_WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    footer_share = FOOTER_IN / height_in
    fig.get_layout_engine().set(rect=(0, footer_share, 1, 1 - footer_share), w_pad=0.08)
    axes = fig.subplots(nrows, ncols, sharey=sharey, sharex=sharex, squeeze=False,
                        gridspec_kw={"width_ratios": width_ratios} if width_ratios else None
                        ).flatten()
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
    """The PNG and the SVG beside it. The SVG without a date and with ids from a fixed salt
    (matplotlib draws them at random): redrawn from the same run, every file is byte-identical."""
    fig.savefig(path, dpi=DPI, facecolor="white")
    with matplotlib.rc_context({"svg.hashsalt": "bench-report"}):
        fig.savefig(path.with_suffix(".svg"), facecolor="white", metadata={"Date": None})
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


def _line(ax, view: View, ln: Line, *, dodge: float = 1.0) -> set[str]:
    """A server's line: medians joined (dotted into a point that is not clean), error bars,
    markers filled (ok), hollow (noisy, client-bound) or hollow and ringed (degraded)."""
    if not ln.points:
        return set()
    colour, marker, linestyle = ln.style
    points = ln.points
    xs = [p.x * dodge for p in points]
    for p0, p1, xa, xb in zip(points, points[1:], xs, xs[1:], strict=False):
        both = p0.verdict == "ok" and p1.verdict == "ok"
        ax.plot([xa, xb], [p0.stat.value, p1.stat.value], color=colour, zorder=2,
                linestyle=linestyle if both else ":", linewidth=2 if both else 1.3,
                alpha=1.0 if both else 0.7)
    for x, p in zip(xs, points, strict=True):
        s = p.stat
        low, high = bounds(s)
        if has_bar(s):
            ax.errorbar([x], [s.value], yerr=[[s.value - low], [high - s.value]], fmt="none",
                        ecolor=colour, elinewidth=1.2, capsize=3, alpha=0.8, zorder=2)
        ax.plot([x], [s.value], marker=marker, color=colour, markersize=8, linestyle="none",
                zorder=3, markerfacecolor=colour if p.verdict == "ok" else "white",
                markeredgewidth=1.8)
        if p.verdict == "degraded":
            ax.plot([x], [s.value], marker="o", markersize=15, linestyle="none", zorder=3,
                    markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.6)
    return {p.verdict for p in points}


def _failed_marks(ax, view: View, ln: Line, dodge: float = 1.0) -> bool:
    """Crosses on the x axis where a server failed, so its line visibly ends for a reason."""
    if ln.failed_at:
        ax.plot([x * dodge for x in ln.failed_at], [0.0] * len(ln.failed_at), marker="x",
                color=view.colour(ln.server), markersize=9, markeredgewidth=2.2,
                linestyle="none", clip_on=False, zorder=4, transform=ax.get_xaxis_transform())
    return bool(ln.failed_at)


def _dodges(n: int, spread_octaves: float = 0.35) -> list[float]:
    """Small horizontal offsets on a log axis, so error bars of servers at one x stay apart."""
    if n <= 1:
        return [1.0] * n
    return [2 ** (spread_octaves * (i / (n - 1) - 0.5)) for i in range(n)]


# -- Who won ---------------------------------------------------------------------------------------

GROUP_BANDS = ("#f1f3f6", "#ffffff")  # alternate tie groups' backgrounds
APART_BAND = "#fbf3e6"


def draw_ranking(view: View, chart: Chart, path: Path) -> None:
    """The headline cell ranked: a bar per result, best first, whiskers its 95 % interval, each
    tie group on a band of its own and numbered; the C reference at 1 with a line down the
    chart; below, apart and hatched, the results that are not ranked."""
    data = chart.data
    r = data.ranking
    rows: list[tuple] = [("placed", p) for p in r.placed]
    if data.apart:
        rows.append(("gap", None))
        rows += [("apart", item) for item in data.apart]
    height = min(max(3.4, 2.2 + 0.34 * len(rows)), 14.0)
    fig, (ax,) = _figure(view, f"Who won at {r.cell.label}: {data.unit}", height_in=height)
    ax.set_title(data.confidence.replace("confidence: ", "how sure: "), fontsize=10.5,
                 color="#333333", loc="left")
    values = [p.ci[1] if p.ci else p.value for p in r.placed]
    values += [s.spread[1] if s.spread else s.value for _, s in data.apart if s]
    top = max(values, default=1.0) * 1.32
    show = (lambda v: f"{v:.2f}×") if r.by_ratio else fmt_rps
    for y, (kind, item) in enumerate(rows):
        if kind == "gap":
            ax.axhspan(y - 0.5, len(rows) - 0.5, color=APART_BAND, zorder=0)
            ax.text(top * 0.995, y, "not ranked (noisy, client-bound or degraded):",
                    ha="right", va="center", fontsize=9.5, style="italic", color="#555555")
            continue
        if kind == "placed":
            p = item
            o, value, ci = p.summary, p.value, p.ci
            hatched = False
        else:
            o, s = item
            if s is None:
                continue
            value, ci, hatched = s.value, s.ci95, True
        colour = "#000000" if o.is_reference else data.styles.get(o.server, ("#777777",))[0]
        ax.barh(y, value, color=colour, height=0.66, hatch="///" if hatched else None,
                edgecolor="white", linewidth=0, alpha=0.9, zorder=2)
        if ci is not None and ci[1] > ci[0]:
            ax.errorbar(value, y, xerr=[[value - ci[0]], [ci[1] - value]], fmt="none",
                        ecolor="#222222", capsize=3.5, elinewidth=1.3, zorder=3)
        end = ci[1] if ci is not None else value
        if kind == "placed" and o.is_reference and r.by_ratio:
            label = "1× (the reference, by definition)"
        elif ci is not None:
            label = f"{show(value)} ({show(ci[0]).rstrip('×')}–{show(ci[1]).rstrip('×')})"
        else:
            label = f"{show(value)} (1 round: no interval)"
        if kind == "apart":
            label += f" · {o.verdict}"
        ax.text(end + top * 0.012, y, label, va="center", fontsize=9, zorder=4,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    for g, group in enumerate(r.groups):
        first, last = r.placed.index(group[0]), r.placed.index(group[-1])
        ax.axhspan(first - 0.5, last + 0.5, color=GROUP_BANDS[g % 2], zorder=0)
        ax.text(-0.01, (first + last) / 2, f"{g + 1}", transform=ax.get_yaxis_transform(),
                ha="right", va="center", fontsize=12, fontweight="bold", color="#666666")
    if r.by_ratio:
        ax.axvline(1.0, color="#000000", linestyle="--", linewidth=1.1, zorder=1)
    names = [("" if kind == "gap" else (item.server if kind == "placed" else item[0].server))
             for kind, item in rows]
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(names, fontsize=10)
    for label, name in zip(ax.get_yticklabels(), names, strict=True):
        label.set_color("#000000" if name == view.reference else view.colour(name) if name
                        else "#000000")
    ax.tick_params(axis="y", length=0, pad=22)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, top)
    ax.grid(False, axis="y")
    ax.xaxis.set_major_formatter(FuncFormatter(
        (lambda v, _p: f"{v:g}×") if r.by_ratio else (lambda v, _p: f"{v:,.0f}")))
    ax.set_xlabel(("req/s as a multiple of the C reference's, measured in the same windows: the "
                   "geometric mean of the rounds, whiskers its 95 % interval (Student's t on the "
                   "logs)" if r.by_ratio else "req/s: the geometric mean of the rounds, whiskers "
                   "its 95 % interval (Student's t on the logs)")
                  + "\nbands: tie groups, numbered; a server ties the best of its group when "
                    "their intervals overlap", fontsize=10)
    handles = [Patch(facecolor=GROUP_BANDS[0], edgecolor="#cccccc", label="a tie group"),
               Patch(facecolor="white", edgecolor="#444444", hatch="///",
                     label="not ranked")] if data.apart else []
    handles += [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
                for f in view.family_order([o.server for o in
                                            [p.summary for p in r.placed]
                                            + [o for o, _ in data.apart]])]
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)
    _save(fig, path)


# -- Status --------------------------------------------------------------------------------------


def draw_status(view: View, chart: Chart, path: Path) -> None:
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
                text += f"\n{fmt_short(o.rps.value)}" + (" req/s" if with_unit else "")
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
    _save(fig, path)


# -- Lines against connections -------------------------------------------------------------------------


PANEL_COLUMNS = 3  # small multiples: panels to a row


def _family_panels(view: View, data, key: str, title: str, *, log: bool, ylabel: str,
                   subtitle: str) -> Figure:
    """Small multiples: a panel per family with its servers' `key` lines against connections,
    every panel on the same axes, the C reference drawn thin and dashed in each for scale, a
    legend of its own in each: no panel has more than one family's lines."""
    lines = {ln.server: ln for ln in data.lines[key]}
    families = [f for f in view.family_order([s for s in data.servers if s != data.reference])]
    ncols = min(PANEL_COLUMNS, max(1, len(families)))
    nrows = math.ceil(len(families) / ncols) if families else 1
    fig, axes = _figure(view, title, ncols=ncols, nrows=nrows, sharex=True, sharey=True,
                        height_in=min(3.2 + 3.1 * nrows, 14.0))
    verdicts: set[str] = set()
    any_failed = False
    ref = lines.get(data.reference) if data.reference else None
    for ax, family in zip(axes, families, strict=False):
        members = [s for s in data.servers if view.families[s] == family and s in lines]
        for ln, dodge in zip([lines[s] for s in members], _dodges(len(members)), strict=True):
            verdicts |= _line(ax, view, ln, dodge=dodge)
            any_failed |= _failed_marks(ax, view, ln, dodge)
        if ref is not None and ref.points:
            ax.plot([p.x for p in ref.points], [p.stat.value for p in ref.points],
                    color="#000000", linestyle="--", linewidth=1.1, zorder=1)
        ax.set_title(family, fontsize=11.5, fontweight="bold",
                     color=FAMILY_COLOURS.get(family, OTHER_COLOUR), loc="left")
        handles = [Line2D([], [], color=view.style(s)[0], marker=view.style(s)[1],
                          linestyle=view.style(s)[2], linewidth=2, markersize=6, label=s)
                   for s in members]
        if ref is not None and ref.points:
            handles.append(Line2D([], [], color="#000000", linestyle="--", linewidth=1.1,
                                  label=f"{data.reference} (reference)"))
        ax.legend(handles=handles, fontsize=8, loc="best", frameon=True, framealpha=0.85)
        ax.set_xscale("log")
        _log_ticks(ax, data.conns, lambda v: f"{v:,.0f}")
        ax.set_xlim(min(data.conns) / 1.5, max(data.conns) * 1.5)
        if log:
            ax.set_yscale("log")
            _log_axis(ax.yaxis)
    for ax in axes[len(families):]:
        ax.set_visible(False)
    for ax in axes[:len(families)]:
        ax.tick_params(labelbottom=True)
    for row in range(nrows):
        axes[row * ncols].set_ylabel(ylabel)
    for ax in axes[(nrows - 1) * ncols:len(families)]:
        ax.set_xlabel("connections (log scale)")
    keys = _keys(verdicts, any_failed)
    short = {KEY_HOLLOW[1]: "hollow, dotted: noisy or client-bound\n(not ranked)",
             KEY_DEGRADED[1]: "ringed: degraded (clients\nrefused, reset or unserved)",
             KEY_FAILED[1]: "× on the x axis: failed"}
    handles, labels = [h for h, _ in keys], [short[t] for _, t in keys]
    spare = axes[len(families):]
    if spare:  # the key in the first empty panel
        host = spare[0]
        host.set_visible(True)
        host.axis("off")
        legend = host.legend(handles, labels, loc="upper left", fontsize=9.5, frameon=False,
                             title=subtitle.replace("; ", ";\n"), alignment="left",
                             title_fontsize=10)
    else:
        legend = fig.legend(handles, labels, loc="outside right upper", fontsize=9,
                            frameon=False, title=subtitle.replace("; ", ";\n"),
                            alignment="left", title_fontsize=9.5)
    legend.get_title().set_color("#444444")
    return fig


def draw_throughput(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig = _family_panels(view, data, "rps", f"Throughput vs connections · "
                         f"{fmt_size(data.size)} messages, closed loop, a panel per family",
                         log=False, ylabel="requests per second",
                         subtitle="median of the rounds; bars: its 95 % CI where recorded, else "
                                  "the range; dashed black: the C reference")
    for ax in fig.axes:
        if ax.get_visible() and ax.get_legend() is not None:
            ax.set_ylim(bottom=0)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_short(v)))
    _save(fig, path)


def draw_latency(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig = _family_panels(view, data, "p99", f"p99 latency vs connections · "
                         f"{fmt_size(data.size)} messages, closed loop, a panel per family",
                         log=True, ylabel="p99 round trip (ms, log)",
                         subtitle="99th percentile, median of the rounds (the table has p50); "
                                  "dashed black: the C reference")
    _save(fig, path)


# -- Message sizes -------------------------------------------------------------------------------------


def draw_sizes(view: View, chart: Chart, path: Path) -> None:
    """Bandwidth per message size: a bar per size, per server, in MiB/s on a linear axis."""
    data = chart.data
    cells, servers = data.cells, data.servers
    fig, (ax,) = _figure(view, f"Bandwidth by message size · {data.conns:,} connections, "
                               f"closed loop",
                         height_in=min(max(4.0, 1.8 + 0.26 * len(servers) * len(cells)), 16))
    mib = float(1 << 20)
    height = 0.8 / len(cells)
    top = data.top / mib
    hatched = False
    for row, server in enumerate(servers):
        for k, (cell, bar) in enumerate(zip(cells, data.bars[server], strict=True)):
            y = row - 0.4 + height * (k + 0.5)
            o, s = bar.outcome, bar.stat
            if s is None:
                ax.text(0, y, f"  {fmt_size(cell.size_bytes)}: {o.verdict if o else 'not run'}",
                        va="center", fontsize=8.5, color="#555555", style="italic")
                continue
            not_clean = not clean(o)
            hatched |= not_clean
            alpha = 0.55 + 0.45 * (k / max(1, len(cells) - 1))  # lighter: smaller messages
            ax.barh(y, s.value / mib, height=height * 0.9, color=view.colour(server),
                    alpha=alpha, hatch="///" if not_clean else None, edgecolor="white")
            low, high = bounds(s)
            if has_bar(s):
                ax.errorbar(s.value / mib, y, xerr=[[(s.value - low) / mib],
                                                     [(high - s.value) / mib]],
                            fmt="none", ecolor="#333333", capsize=2, elinewidth=1)
            ax.text(high / mib + top * 0.012, y, f"{fmt_size(cell.size_bytes)}: "
                    f"{fmt_rps(s.value / mib)} MiB/s", va="center", fontsize=8.5)
    _server_names(ax, view, servers)
    ax.set_ylim(len(servers) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.3)
    ax.grid(False, axis="y")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.set_xlabel("bandwidth: message bytes echoed per second (MiB/s, linear)")
    ax.set_title("a bar per message size, lightest the smallest; bars: 95 % CI or min–max",
                 fontsize=10, color="#444444")
    _family_legend(fig, view, servers, hatched)
    _save(fig, path)


# -- The latency spectrum ------------------------------------------------------------------------------


def draw_spectrum(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, (ax,) = _figure(view, f"Latency by percentile · {data.cell.label}, closed loop")
    ax.set_title("all rounds' histograms merged; each step right is 10× rarer requests",
                 fontsize=10, color="#444444")
    verdicts = set()
    for curve in data.curves:
        colour, marker, linestyle = curve.style
        o = curve.outcome
        ok = o.verdict == "ok"
        ax.plot(curve.xs, curve.ys, color=colour, linestyle=linestyle if ok else ":",
                linewidth=2 if ok else 1.4, zorder=2)
        mark_x = [x for x, _ in curve.marks]
        mark_y = [y for _, y in curve.marks]
        ax.plot(mark_x, mark_y, marker=marker, color=colour, linestyle="none", markersize=8,
                markeredgewidth=1.8, markerfacecolor=colour if ok else "white", zorder=3)
        if o.verdict == "degraded":
            ax.plot(mark_x, mark_y, marker="o", markersize=15, linestyle="none", zorder=3,
                    markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.4)
        verdicts.add(o.verdict)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(FixedLocator([1 / (1 - p / 100) for p in SPECTRUM_MARKS]))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda v, _p: fmt_percentile(100 * (1 - 1 / v), data.fewest).replace(" (", "\n(")
        if v > 1 else ""))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1.7, 13_000)
    _log_axis(ax.yaxis)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p)); '(from N requests)': the fewest "
                  "requests any server had beyond it")
    ax.set_ylabel("round-trip latency (ms, log scale)")
    _server_legend(fig, view, [c.server for c in data.curves], keys=_keys(verdicts, False))
    _save(fig, path)


# -- Open loop -------------------------------------------------------------------------------------------


def draw_openloop(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, axes = _figure(view, "Latency vs offered load (open loop: requests sent on a fixed "
                              "schedule)", ncols=2, width_ratios=[3, 2])
    verdicts: set[str] = set()
    for ll in data.lines:
        verdicts |= _line(axes[0], view, ll.p99)
        _line(axes[1], view, ll.completed)
        if data.several_settings:
            axes[0].annotate(f"{ll.conns}×{fmt_size(ll.size)}", ll.label_at,
                             textcoords="offset points", xytext=(6, 0), fontsize=8,
                             color=view.colour(ll.p99.server))
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
        ax.set_xlim(0, data.highest * 1.08)
        if data.by_share:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:.0f} %"))
            ax.set_xlabel("offered load, % of each server's own closed-loop peak")
        else:
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_short(v) if v else "0"))
            ax.set_xlabel("offered load (requests per second)")
    _server_legend(fig, view, data.servers, keys=_keys(verdicts, False))
    _save(fig, path)


# -- Bars per server: CPU; dots per server: memory ----------------------------------------------------


def _bars_height(count: int) -> float:
    return min(max(4.0, 2.0 + 0.42 * count), 14.0)


def _server_names(ax, view: View, servers: list[str]) -> None:
    """Server names down the y axis, each in its family's colour."""
    ax.set_yticks(range(len(servers)))
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(view.colour(server))
    ax.tick_params(axis="y", length=0)


def _family_legend(fig: Figure, view: View, servers: list[str], hatched: bool) -> None:
    handles = [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
               for f in view.family_order(servers)]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="///",
                             label="hatched: noisy, client-bound\nor degraded"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)


def _bar_panel(ax, view: View, bars: list[Bar], fmt, *, names: bool = True,
               log: bool = False) -> bool:
    """Horizontal bars, one per server, hatched where the result is not clean; where a server has
    no value, the word why. Returns whether any bar is hatched."""
    stats = [b.stat for b in bars if b.stat and b.stat.value > 0]
    top = max((s.high for s in stats), default=1.0)
    floor = min(s.value for s in stats) / 3 if log and stats else 0.0
    any_hatched = False
    for y, bar in enumerate(bars):
        s, o = bar.stat, bar.outcome
        if s is None or s.value <= 0:
            word = (f"{fmt(s.value)}: nothing measurable" if s is not None else
                    o.verdict if o is not None and not o.measured else "not recorded")
            ax.text(floor, y, f"  {word}", va="center", fontsize=9.5, color="#555555",
                    style="italic")
            continue
        hatched = not clean(o)
        any_hatched |= hatched
        ax.barh(y, s.value - floor, left=floor, color=view.colour(bar.server), height=0.7,
                hatch="///" if hatched else None, edgecolor="white", linewidth=0)
        low, high = bounds(s)
        if has_bar(s):
            ax.errorbar(s.value, y, xerr=[[s.value - low], [high - s.value]], fmt="none",
                        ecolor="#333333", capsize=3, elinewidth=1)
        ax.text(high * 1.1 if log else high + top * 0.015, y, fmt(s.value), va="center",
                fontsize=9.5)
    servers = [b.server for b in bars]
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


def draw_cpu(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, axes = _figure(view, f"Server cost per request · {data.cell.label}", ncols=2,
                        sharey=True, height_in=_bars_height(len(data.servers)))
    hatched = _bar_panel(axes[0], view, data.cpu, lambda v: f"{fmt_small(v)} µs")
    values = [b.stat.value for b in data.ctx if b.stat and b.stat.value > 0]
    hatched |= _bar_panel(axes[1], view, data.ctx, fmt_small, names=False,
                          log=len(values) >= 2 and max(values) / min(values) > 30)
    axes[0].set_xlabel("server CPU time per request (µs)")
    axes[1].set_xlabel("context switches per request")
    axes[0].set_title("CPU (user + system) of the whole process tree:\nfair even where the client "
                      "was the bottleneck", fontsize=10.5)
    axes[1].set_title("switches (voluntary + involuntary) of every thread:\nbelow 1, one wakeup "
                      "served several requests", fontsize=10.5)
    _family_legend(fig, view, data.servers, hatched)
    _save(fig, path)


MEMORY_MARKERS = ("o", "s", "^", "D", "v", "P")  # one per connection count, in order


def draw_memory(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    cells, servers, floor = data.cells, data.servers, data.floor
    fig, (ax,) = _figure(view, f"Memory per connection · process-tree {data.basis}, log scale",
                         height_in=_bars_height(len(servers)))
    markers = {c: MEMORY_MARKERS[i % len(MEMORY_MARKERS)] for i, c in enumerate(cells)}
    verdicts = set()
    for y, server in enumerate(servers):
        colour = view.colour(server)
        for cell, dot in data.dots[server]:
            s, o = dot.stat, dot.outcome
            low, high = bounds(s)
            if s.n > 1 and high > low and low > 0:
                ax.plot([max(low, floor), high], [y, y], color=colour, linewidth=1.2, alpha=0.6)
            ax.plot([dot.x], [y], marker=markers[cell], markersize=9, linestyle="none",
                    color=colour, markerfacecolor=colour if o.verdict == "ok" else "white",
                    markeredgewidth=1.6)
            if o.verdict == "degraded":
                ax.plot([dot.x], [y], marker="o", markersize=16, linestyle="none",
                        markerfacecolor="none", markeredgecolor=DEGRADED_RING, markeredgewidth=1.4)
            verdicts.add(o.verdict)
        best = data.dots[server][-1][1]  # the largest count's
        ax.text(max(best.stat.value, floor) * 1.35, y - 0.28,
                fmt_bytes(best.stat.value) if best.stat.value > 0 else "≈ 0", fontsize=8.5,
                color="#333333")
    ax.set_xscale("log")
    _log_axis(ax.xaxis, lambda v: fmt_bytes(v), base=4)  # 1 KiB, 4 KiB, 16 KiB ...: binary steps
    ax.set_xlim(floor / 1.5, max(d.stat.high for row in data.dots.values() for _, d in row) * 3)
    _server_names(ax, view, servers)
    ax.set_ylim(len(servers) - 0.4, -0.6)
    ax.set_xlabel(f"memory per connection = (process-tree {data.basis} with every "
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
    _save(fig, path)


# Round ratios to tick a log axis at: every one over a narrow span, fewer over a wide one.
RATIO_TICKS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5,
               2.0, 3.0, 5.0, 10.0)
RATIO_TICKS_WIDE = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def draw_interpreters(view: View, chart: Chart, path: Path) -> None:
    """A row per Python model, a dot per interpreter (its colour and marker) with its interval
    as a whisker, on a log axis of the ratio to the reference; hollow where not clean."""
    data = chart.data
    fig, (ax,) = _figure(view, f"Each Python model under each interpreter · {data.cell.label}",
                         height_in=_bars_height(len(data.models)))
    count = len(data.interpreters)
    offsets = [(k - (count - 1) / 2) * min(0.22, 0.7 / count) for k in range(count)]
    values, unmeasured = [], []
    for y, model in enumerate(data.models):
        for k, bar in enumerate(data.dots[model]):
            if bar is not None and bar.stat is None:  # skipped or failed under it: said below
                unmeasured.append((y + offsets[k], data.interpreters[k], bar.outcome.verdict))
            if bar is None or bar.stat is None:
                continue
            colour, marker, _ = bar.style
            s, o = bar.stat, bar.outcome
            low, high = bounds(s)
            values += [low, high, s.value]
            if has_bar(s):
                ax.plot([low, high], [y + offsets[k]] * 2, color=colour, linewidth=1.4)
            ax.plot([s.value], [y + offsets[k]], marker=marker, markersize=8, linestyle="none",
                    color=colour, markerfacecolor=colour if clean(o) else "white",
                    markeredgewidth=1.6)
            if o.verdict == "degraded":
                ax.plot([s.value], [y + offsets[k]], marker="o", markersize=14,
                        linestyle="none", markerfacecolor="none",
                        markeredgecolor=DEGRADED_RING, markeredgewidth=1.4)
    positive = [v for v in values if v > 0]
    if data.unit.startswith("×"):
        ax.axvline(1.0, color="#000000", linewidth=1, linestyle="--")
        ax.text(1.0, -0.75, " the reference (1×)", fontsize=9, va="bottom")
        positive.append(1.0)
    ax.set_xscale("log")
    low, high = min(positive) / 1.15, max(positive) * 1.15
    ax.set_xlim(low, high)
    for y, i, verdict in unmeasured:
        ax.text(low, y, f"  {verdict} under {i['label']}", va="center", fontsize=9,
                color=i["colour"], style="italic")
    if data.unit.startswith("×"):  # ratios span less than a decade: ticks at round ratios
        ticks = RATIO_TICKS if high / low < 3 else RATIO_TICKS_WIDE
        _log_ticks(ax, [t for t in ticks if low <= t <= high], fmt_ratio)
    else:
        _log_axis(ax.xaxis, fmt_rps)
    ax.set_yticks(range(len(data.models)))
    ax.set_yticklabels(data.models, fontsize=10)
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(len(data.models) - 0.4, -0.9)
    ax.grid(False, axis="y")
    ax.set_xlabel(f"{data.unit} (log scale); whiskers: 95 % interval")
    handles = [Line2D([], [], color=i["colour"], marker=i["marker"], linestyle="none",
                      markersize=8, label=i["label"] + (" (free-threaded)" if i["free_threaded"]
                                                         else "")
                      + (", plain names" if i["default"] else f", NAME@{i['tag']}"))
               for i in data.interpreters]
    handles.append(Line2D([], [], color="#444444", marker="o", markerfacecolor="white",
                          linestyle="none", markersize=8,
                          label="hollow: noisy, client-bound\nor degraded (not compared)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False,
               title="interpreter", title_fontproperties={"weight": "bold", "size": 10},
               alignment="left")
    _save(fig, path)


DRAW = {"ranking": draw_ranking, "status": draw_status, "throughput": draw_throughput,
        "latency": draw_latency,
        "sizes": draw_sizes, "spectrum": draw_spectrum, "openloop": draw_openloop,
        "cpu": draw_cpu, "memory": draw_memory, "interpreters": draw_interpreters}


def draw(view: View, charts: list[Chart], charts_dir: Path) -> None:
    """Every planned chart that has a file, as PNG and SVG in `charts_dir`; sets chart.path."""
    for chart in charts:
        if chart.file is not None:
            chart.path = charts_dir / chart.file
            DRAW[chart.key](view, chart, chart.path)
