"""The report's static charts: matplotlib, each written as PNG (for report.md) and SVG beside it,
drawn from what bench/report/series.py computed (no chart computes a figure of its own). This module
draws the status matrix and the line charts and holds the list of all (DRAW); the bar charts
(ranking, sizes, cpu, memory, interpreters) are in bench/report/bars.py, what they share in
bench/report/chartkit.py.

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
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, Rectangle  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from bench import results  # noqa: E402
from bench.report.bars import (  # noqa: E402
    draw_cpu, draw_interpreters, draw_memory, draw_ranking, draw_sizes,
)
from bench.report.chartkit import (  # noqa: E402
    KEY_DEGRADED, KEY_FAILED, KEY_HOLLOW, VERDICT_COLOURS, dodges, draw_line, failed_marks,
    legend_keys, log_axis, log_ticks, new_figure, save, server_legend,
)
from bench.report.fmt import fmt_cell_short, fmt_percentile, fmt_short, fmt_size  # noqa: E402
from bench.report.series import SPECTRUM_MARKS, Chart  # noqa: E402
from bench.report.view import DEGRADED_RING, FAMILY_COLOURS, OTHER_COLOUR, View  # noqa: E402

CHART_GLOB = ("ranking.*", "status.*", "throughput*.*", "latency*.*", "sizes.*", "spectrum.*",
              "openloop.*", "cpu.*", "memory.*", "interpreters.*")


def draw_status(view: View, chart: Chart, path: Path) -> None:
    servers, cells = view.servers, view.cells
    nrows, ncols = len(servers), len(cells)
    height = min(max(3.6, 1.9 + 0.36 * nrows + (0.3 if any(c.is_open for c in cells) else 0)), 14)
    fig, (ax,) = new_figure(view, "What every result is worth, server by cell", height_in=height)
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
    save(fig, path)


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
    fig, axes = new_figure(view, title, ncols=ncols, nrows=nrows, sharex=True, sharey=True,
                        height_in=min(3.2 + 3.1 * nrows, 14.0))
    verdicts: set[str] = set()
    any_failed = False
    ref = lines.get(data.reference) if data.reference else None
    for ax, family in zip(axes, families, strict=False):
        members = [s for s in data.servers if view.families[s] == family and s in lines]
        for ln, dodge in zip([lines[s] for s in members], dodges(len(members)), strict=True):
            verdicts |= draw_line(ax, view, ln, dodge=dodge)
            any_failed |= failed_marks(ax, view, ln, dodge)
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
        log_ticks(ax, data.conns, lambda v: f"{v:,.0f}")
        ax.set_xlim(min(data.conns) / 1.5, max(data.conns) * 1.5)
        if log:
            ax.set_yscale("log")
            log_axis(ax.yaxis)
    for ax in axes[len(families):]:
        ax.set_visible(False)
    for ax in axes[:len(families)]:
        ax.tick_params(labelbottom=True)
    for row in range(nrows):
        axes[row * ncols].set_ylabel(ylabel)
    for ax in axes[(nrows - 1) * ncols:len(families)]:
        ax.set_xlabel("connections (log scale)")
    keys = legend_keys(verdicts, any_failed)
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
    save(fig, path)


def draw_latency(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig = _family_panels(view, data, "p99", f"p99 latency vs connections · "
                         f"{fmt_size(data.size)} messages, closed loop, a panel per family",
                         log=True, ylabel="p99 round trip (ms, log)",
                         subtitle="99th percentile, median of the rounds (the table has p50); "
                                  "dashed black: the C reference")
    save(fig, path)


# -- Message sizes -------------------------------------------------------------------------------------


def draw_spectrum(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, (ax,) = new_figure(view, f"Latency by percentile · {data.cell.label}, closed loop")
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
    log_axis(ax.yaxis)
    ax.set_xlabel("percentile (log scale of 1 / (1 − p)); '(from N requests)': the fewest "
                  "requests any server had beyond it")
    ax.set_ylabel("round-trip latency (ms, log scale)")
    server_legend(fig, view, [c.server for c in data.curves], keys=legend_keys(verdicts, False))
    save(fig, path)


# -- Open loop -------------------------------------------------------------------------------------------


def draw_openloop(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, axes = new_figure(view, "Latency vs offered load (open loop: requests sent on a fixed "
                              "schedule)", ncols=2, width_ratios=[3, 2])
    verdicts: set[str] = set()
    for ll in data.lines:
        verdicts |= draw_line(axes[0], view, ll.p99)
        draw_line(axes[1], view, ll.completed)
        if data.several_settings:
            axes[0].annotate(f"{ll.conns}×{fmt_size(ll.size)}", ll.label_at,
                             textcoords="offset points", xytext=(6, 0), fontsize=8,
                             color=view.colour(ll.p99.server))
    axes[0].set_yscale("log")
    log_axis(axes[0].yaxis)
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
    server_legend(fig, view, data.servers, keys=legend_keys(verdicts, False))
    save(fig, path)


# -- Bars per server: CPU; dots per server: memory ----------------------------------------------------


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
