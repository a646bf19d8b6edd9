"""The report's bar charts, drawn with bench/report/chartkit.py from what bench/report/series.py
computed: the ranking (who won at the headline cell: the report's first picture), bandwidth per
message size, CPU and context switches per request, memory per connection, and each Python model
under each interpreter. The conventions every chart follows are told in bench/report/charts.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from bench.report.fmt import (  # noqa: E402
    fmt_bytes, fmt_ratio, fmt_rps, fmt_size,
    fmt_small,
)
from bench.report.series import (  # noqa: E402
    Bar, Chart, bounds, has_bar,
)
from bench.report.view import (  # noqa: E402
    DEGRADED_RING, FAMILY_COLOURS, OTHER_COLOUR, View, clean,
)
from bench.report.chartkit import (  # noqa: E402
    APART_BAND, GROUP_BANDS, legend_keys, log_axis, log_ticks, new_figure, save,
)


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
    fig, (ax,) = new_figure(view, f"Who won at {r.cell.label}: {data.unit}", height_in=height)
    # wrapped to the plot's width: on one line it ran under the legend and out of the picture
    ax.set_title(textwrap.fill(data.confidence.replace("confidence: ", "how sure: "), 105),
                 fontsize=10.5,
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
    save(fig, path)


# -- Status --------------------------------------------------------------------------------------




def draw_sizes(view: View, chart: Chart, path: Path) -> None:
    """Bandwidth per message size: a bar per size, per server, in MiB/s on a linear axis."""
    data = chart.data
    cells, servers = data.cells, data.servers
    fig, (ax,) = new_figure(view, f"Bandwidth by message size · {data.conns:,} connections, "
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
    server_names(ax, view, servers)
    ax.set_ylim(len(servers) - 0.5, -0.5)
    ax.set_xlim(0, top * 1.3)
    ax.grid(False, axis="y")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v:,.0f}"))
    ax.set_xlabel("bandwidth: message bytes echoed per second (MiB/s, linear)")
    ax.set_title("a bar per message size, lightest the smallest; bars: 95 % CI or min–max",
                 fontsize=10, color="#444444")
    family_legend(fig, view, servers, hatched)
    save(fig, path)


# -- The latency spectrum ------------------------------------------------------------------------------



def bars_height(count: int) -> float:
    return min(max(4.0, 2.0 + 0.42 * count), 14.0)


def server_names(ax, view: View, servers: list[str]) -> None:
    """Server names down the y axis, each in its family's colour."""
    ax.set_yticks(range(len(servers)))
    ax.set_yticklabels(servers, fontsize=10)
    for label, server in zip(ax.get_yticklabels(), servers, strict=True):
        label.set_color(view.colour(server))
    ax.tick_params(axis="y", length=0)


def family_legend(fig: Figure, view: View, servers: list[str], hatched: bool) -> None:
    handles = [Patch(facecolor=FAMILY_COLOURS.get(f, OTHER_COLOUR), label=f)
               for f in view.family_order(servers)]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="#444444", hatch="///",
                             label="hatched: noisy, client-bound\nor degraded"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=10, frameon=False)


def bar_panel(ax, view: View, bars: list[Bar], fmt, *, names: bool = True,
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
        log_axis(ax.xaxis, wide=top * 5 / floor > 300)
    else:
        ax.set_xlim(0, top * 1.3)
    return any_hatched


def draw_cpu(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    fig, axes = new_figure(view, f"Server cost per request · {data.cell.label}", ncols=2,
                        sharey=True, height_in=bars_height(len(data.servers)))
    hatched = bar_panel(axes[0], view, data.cpu, lambda v: f"{fmt_small(v)} µs")
    values = [b.stat.value for b in data.ctx if b.stat and b.stat.value > 0]
    hatched |= bar_panel(axes[1], view, data.ctx, fmt_small, names=False,
                          log=len(values) >= 2 and max(values) / min(values) > 30)
    axes[0].set_xlabel("server CPU time per request (µs)")
    axes[1].set_xlabel("context switches per request")
    axes[0].set_title("CPU (user + system) of the whole process tree:\nfair even where the client "
                      "was the bottleneck", fontsize=10.5)
    axes[1].set_title("switches (voluntary + involuntary) of every thread:\nbelow 1, one wakeup "
                      "served several requests", fontsize=10.5)
    family_legend(fig, view, data.servers, hatched)
    save(fig, path)


MEMORY_MARKERS = ("o", "s", "^", "D", "v", "P")  # one per connection count, in order


def draw_memory(view: View, chart: Chart, path: Path) -> None:
    data = chart.data
    cells, servers, floor = data.cells, data.servers, data.floor
    fig, (ax,) = new_figure(view, f"Memory per connection · process-tree {data.basis}, log scale",
                         height_in=bars_height(len(servers)))
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
    log_axis(ax.xaxis, lambda v: fmt_bytes(v), base=4)  # 1 KiB, 4 KiB, 16 KiB ...: binary steps
    ax.set_xlim(floor / 1.5, max(d.stat.high for row in data.dots.values() for _, d in row) * 3)
    server_names(ax, view, servers)
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
    handles += [h for h, _ in legend_keys(verdicts, False)]
    labels = [h.get_label() for h in handles[: len(handles) - len(legend_keys(verdicts, False))]]
    labels += [text for _, text in legend_keys(verdicts, False)]
    fig.legend(handles, labels, loc="outside right upper", fontsize=10, frameon=False)
    save(fig, path)


# Round ratios to tick a log axis at: every one over a narrow span, fewer over a wide one.
RATIO_TICKS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.5,
               2.0, 3.0, 5.0, 10.0)
RATIO_TICKS_WIDE = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


def draw_interpreters(view: View, chart: Chart, path: Path) -> None:
    """A row per Python model, a dot per interpreter (its colour and marker) with its interval
    as a whisker, on a log axis of the ratio to the reference; hollow where not clean."""
    data = chart.data
    fig, (ax,) = new_figure(view, f"Each Python model under each interpreter · {data.cell.label}",
                         height_in=bars_height(len(data.models)))
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
        log_ticks(ax, [t for t in ticks if low <= t <= high], fmt_ratio)
    else:
        log_axis(ax.xaxis, fmt_rps)
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
    save(fig, path)


