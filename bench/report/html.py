"""report.html: report.md's text with interactive charts, in one file that needs no network.

Built with plotly (PyPI `plotly`): plotly.js is inlined once in the page's <head> (about 4.8 MB),
and each chart is a <div> drawn by it. Why plotly rather than altair/vega-lite: its legend toggles
a server on click and its hover shows every value with no extra wiring, it draws error bars,
log axes and small multiples natively, and its Python package ships the JS bundle, so inlining
needs nothing else (altair's inline mode needs vl-convert, a ~100 MB binary, and toggles must be
written as selection parameters). The cost is size: the page is ~5 MB, the same for any run.

The page opens, as report.md does, with who won at the headline cell: that chart is the PNG's SVG
inlined, so the ranking, its whiskers and its tie groups are drawn once, the same on both.
What the page offers beyond the PNGs: hover values (median, CI or range, verdict, rounds);
click a server in a legend to hide or show it; buttons above each chart hide or show a whole
family; lines against connections are small multiples, one panel per family. Results that are
not clean are marked as in the PNGs (bench/report/view.py): open symbol = noisy or client-bound; open
symbol in a red outline = degraded; bars are hatched for any of these. Failed results have no
point; the status matrix (inlined as SVG) and the tables name them.

The text is the report's blocks (bench/report/document.py), the same blocks report.md is written
from, rendered to HTML by bench/report/blocks.py. Each chart is drawn here from what
bench/report/series.py computed for the PNG, or inlined as its SVG.
"""

from __future__ import annotations

import html as htmllib
import math
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from bench import results
from bench.report import blocks
from bench.report.fmt import fmt_bytes, fmt_percentile, fmt_rps, fmt_size, fmt_us
from bench.report.series import SPECTRUM_MARKS, Chart, Line, RankedBars, bounds
from bench.report.view import DEGRADED_RING, View, clean

PANEL_COLUMNS = 3  # small multiples per row
CONFIG = {"displaylogo": False, "responsive": True, "toImageButtonOptions": {"format": "svg"}}


# -- Marking a point the same way everywhere ------------------------------------------------------


def symbol(verdict: str, base: str = "circle") -> str:
    return base if verdict == "ok" else f"{base}-open"


def outline(verdict: str, colour: str) -> str:
    return DEGRADED_RING if verdict == "degraded" else colour


def _hover(o: results.CellSummary, value: str) -> str:
    extra = "" if o.verdict == "ok" else f"<br><b>{o.verdict}</b>: not ranked"
    ratio = f"<br>vs ref {o.vs_ref:.3g}×" if o.vs_ref is not None and not o.is_reference else ""
    return (f"<b>{o.server}</b> ({o.family or ''})<br>{o.cell.label}<br>{value}{ratio}"
            f"<br>rounds {o.rounds_text}{extra}")


def _trace(ln: Line, text, name_suffix: str = "", **kw) -> go.Scatter:
    """One server's line; `text(point)` says its value in the hover."""
    colour = ln.colour
    points = ln.points
    ys = [p.stat.value for p in points]
    lows = [y - bounds(p.stat)[0] for y, p in zip(ys, points, strict=True)]
    highs = [bounds(p.stat)[1] - y for y, p in zip(ys, points, strict=True)]
    verdicts = [p.verdict for p in points]
    return go.Scatter(
        x=[p.x for p in points], y=ys, mode="lines+markers", name=ln.server + name_suffix,
        legendgroup=ln.server, line={"color": colour, "width": 2},
        error_y={"type": "data", "array": highs, "arrayminus": lows, "visible": True,
                 "thickness": 1.2, "width": 3, "color": colour},
        marker={"size": 9, "color": colour, "symbol": [symbol(v) for v in verdicts],
                "line": {"width": [2.5 if v == "degraded" else 1.5 for v in verdicts],
                         "color": [outline(v, colour) for v in verdicts]}},
        hovertext=[_hover(p.outcome, f"{text(p)}<br>{'95 % CI' if p.stat.ci95 else 'range'} "
                                     f"{bounds(p.stat)[0]:.3g}–{bounds(p.stat)[1]:.3g}")
                   for p in points],
        hoverinfo="text",
        meta={"family": ln.family}, **kw)


MARGIN_TOP_PX, MARGIN_BOTTOM_PX = 165, 70


def _family_buttons(fig: go.Figure, view: View, height: int) -> None:
    """A toggle button per family above the chart: a click hides its servers, a second shows
    them (plotly's args / args2)."""
    families = list(dict.fromkeys(t.meta["family"] for t in fig.data if t.meta))
    if len(families) < 2:
        return
    buttons = []
    for family in families:
        idx = [i for i, t in enumerate(fig.data) if t.meta and t.meta["family"] == family]
        buttons.append({"label": family, "method": "restyle",
                        "args": [{"visible": "legendonly"}, idx],
                        "args2": [{"visible": True}, idx]})
    # Above the plots and their panel titles: paper y = 1 is the top of the plotting area, so a
    # pixel offset is a share of its height.
    above = 1 / max(1, height - MARGIN_TOP_PX - MARGIN_BOTTOM_PX)
    fig.update_layout(updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons,
                                    "x": 0, "xanchor": "left", "y": 1 + 30 * above,
                                    "yanchor": "bottom", "pad": {"t": 0, "b": 0},
                                    "showactive": False, "active": -1, "font": {"size": 11}}],
                      annotations=list(fig.layout.annotations or ()) + [
                          {"text": "families (click: hide / show):", "x": 0, "y": 1 + 66 * above,
                           "xref": "paper", "yref": "paper", "xanchor": "left",
                           "yanchor": "bottom", "showarrow": False,
                           "font": {"size": 11, "color": "#555"}}])


def _layout(fig: go.Figure, view: View, title: str, height: int) -> go.Figure:
    """Title, footer, legend and family buttons; `height` is the plotting area's, in pixels."""
    height = max(height, 120) + MARGIN_TOP_PX + MARGIN_BOTTOM_PX
    fig.update_layout(title={"text": f"{title}<br><sup>{view.footer}</sup>", "x": 0.01,
                             "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 12}},
                      height=height, template="plotly_white", margin={"t": MARGIN_TOP_PX, "b": MARGIN_BOTTOM_PX, "r": 10},
                      legend={"title": {"text": "servers (click: hide / show)"},
                              "groupclick": "toggleitem"},
                      hoverlabel={"align": "left"})
    _family_buttons(fig, view, height)
    return fig


def _panels(view: View, servers: list[str]):
    """(figure, family -> (row, col)): a panel per family, PANEL_COLUMNS to a row."""
    families = view.family_order(servers)
    cols = min(PANEL_COLUMNS, len(families))
    rows = math.ceil(len(families) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=families, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.14)
    return fig, {f: (i // cols + 1, i % cols + 1) for i, f in enumerate(families)}, rows


# -- The figures, from the charts' series ----------------------------------------------------------


def fig_against_conns(view: View, chart: Chart) -> go.Figure | None:
    """Throughput or p99 against connections, a panel per family."""
    data, rps = chart.data, chart.key == "throughput"
    lines = [ln for ln in data.lines["rps" if rps else "p99"] if ln.points]
    if not lines:
        return None
    fig, where, rows = _panels(view, [ln.server for ln in lines])
    text = ((lambda p: f"{fmt_rps(p.stat.value)} req/s") if rps
            else (lambda p: f"p99 {p.stat.value:.3g} ms"))
    for ln in lines:
        row, col = where[ln.family]
        fig.add_trace(_trace(ln, text), row=row, col=col)
    fig.update_xaxes(type="log", title_text="connections", matches="x")
    fig.update_yaxes(type="linear" if rps else "log", rangemode="tozero")
    fig.update_yaxes(title_text="req/s" if rps else "p99 (ms, log)", col=1)
    title = (f"Throughput vs connections · {fmt_size(data.size)}" if rps
             else f"p99 latency vs connections · {fmt_size(data.size)}")
    return _layout(fig, view, title, 330 * rows)


def fig_ranked_bars(view: View, ranked: RankedBars | None, what: str) -> go.Figure | None:
    """A bar per server at one cell, the smallest first: vs_ref (or req/s), or CPU µs per
    request."""
    if ranked is None:
        return None
    fig = go.Figure()
    for bar in ranked.bars:
        s, o, colour = bar.stat, bar.outcome, bar.style[0]
        low, high = bounds(s)
        fig.add_trace(go.Bar(
            y=[o.server], x=[s.value], orientation="h", name=o.server, legendgroup=o.server,
            marker={"color": colour, "pattern": {"shape": "" if clean(o) else "/"},
                    "line": {"color": outline(o.verdict, colour), "width": 2}},
            error_x={"type": "data", "array": [high - s.value], "arrayminus": [s.value - low]},
            hovertext=[_hover(o, f"{s.value:.4g} {ranked.unit}")], hoverinfo="text",
            meta={"family": view.families[o.server]}))
    title = (f"{what} at {ranked.cell.label} ({ranked.unit}; hatched: noisy, client-bound or "
             f"degraded, not ranked)")
    fig.update_xaxes(title_text=ranked.unit)
    return _layout(fig, view, title, 40 + 26 * len(ranked.bars))


def fig_spectrum(view: View, chart: Chart) -> go.Figure:
    data = chart.data
    fig = go.Figure()
    for curve in data.curves:
        o, server, colour = curve.outcome, curve.server, curve.style[0]
        xs, ys = curve.xs, curve.ys
        fig.add_trace(go.Scatter(
            x=list(xs), y=list(ys), mode="lines", name=server, legendgroup=server,
            line={"color": colour, "width": 2, "dash": "solid" if clean(o) else "dot"},
            hovertext=[f"<b>{server}</b><br>p{100 * (1 - 1 / x):.4g}: {fmt_us(y * 1000)}"
                       + ("" if clean(o) else f"<br><b>{o.verdict}</b>")
                       for x, y in zip(xs, ys, strict=True)],
            hoverinfo="text", meta={"family": view.families[server]}))
    ticks = [1 / (1 - p / 100) for p in SPECTRUM_MARKS]
    fig.update_xaxes(type="log", tickvals=ticks,
                     ticktext=[fmt_percentile(p, data.fewest) for p in SPECTRUM_MARKS],
                     title_text="percentile")
    fig.update_yaxes(type="log", title_text="latency (ms, log)")
    return _layout(fig, view, f"Latency by percentile · {data.cell.label} (dotted: not clean)",
                   400)


def fig_openloop(view: View, chart: Chart) -> go.Figure:
    data = chart.data
    fig, where, rows = _panels(view, list(dict.fromkeys(ll.p99.server for ll in data.lines)))
    for ll in data.lines:
        row, col = where[ll.p99.family]
        suffix = f" ({ll.conns} × {fmt_size(ll.size)})" if data.several_settings else ""
        fig.add_trace(_trace(ll.p99, lambda p: f"p99 {p.stat.value:.3g} ms; completed "
                                                     f"{fmt_rps(p.outcome.rps.value)} req/s",
                             suffix), row=row, col=col)
    fig.update_xaxes(title_text="offered, % of own peak" if data.by_share else "offered req/s",
                     matches="x")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="p99 (ms, log)", col=1)
    return _layout(fig, view, "Open loop: p99 vs offered load (the knee)", 330 * rows)


MEMORY_SYMBOLS = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross")  # as the PNG's


def fig_memory(view: View, chart: Chart) -> go.Figure:
    data = chart.data
    fig = go.Figure()
    symbols = MEMORY_SYMBOLS
    for server in data.servers:
        mine = data.dots[server]
        colour = view.style(server)[0]
        fig.add_trace(go.Scatter(
            x=[dot.x for _, dot in mine], y=[server] * len(mine), mode="markers",
            name=server, legendgroup=server,
            marker={"size": 11, "color": colour,
                    "symbol": [symbol(dot.verdict, symbols[data.cells.index(c) % len(symbols)])
                               for c, dot in mine],
                    "line": {"width": 1.5, "color": [outline(dot.verdict, colour)
                                                     for _, dot in mine]}},
            hovertext=[_hover(dot.outcome, f"{fmt_bytes(dot.stat.value) if dot.stat.value > 0 else '≈ 0'} "
                                           f"per connection ({data.basis})")
                       for _, dot in mine],
            hoverinfo="text", meta={"family": view.families[server]}))
    fig.update_xaxes(type="log", title_text=f"bytes per connection ({data.basis}, log; "
                                            f"≈ 0 drawn at the left)")
    fig.update_yaxes(autorange="reversed")
    shapes = ", ".join(f"{symbols[i % len(symbols)]} = {c.conns:,} conns"
                       for i, c in enumerate(data.cells))
    return _layout(fig, view, f"Memory per connection · {data.basis} · {shapes}",
                   60 + 26 * len(data.servers))


def fig_sizes(view: View, chart: Chart) -> go.Figure:
    data = chart.data
    cells = data.cells
    fig = go.Figure()
    mib = float(1 << 20)
    for server in data.servers:
        outs = [(c, bar) for c, bar in zip(cells, data.bars[server], strict=True) if bar.stat]
        if not outs:
            continue
        colour = view.style(server)[0]
        for c, bar in outs:
            s, o = bar.stat, bar.outcome
            low, high = bounds(s)
            fig.add_trace(go.Bar(
                y=[server], x=[s.value / mib], orientation="h", name=server,
                legendgroup=server, showlegend=c == outs[0][0],
                offsetgroup=str(c.size_bytes), marker={
                    "color": colour, "opacity": 0.5 + 0.5 * cells.index(c) / max(1, len(cells) - 1),
                    "pattern": {"shape": "" if clean(o) else "/"}},
                error_x={"type": "data", "array": [(high - s.value) / mib],
                         "arrayminus": [(s.value - low) / mib]},
                text=[f"{fmt_size(c.size_bytes)}: {fmt_rps(s.value / mib)} MiB/s"],
                textposition="outside", hovertext=[_hover(o, f"{fmt_rps(s.value / mib)} MiB/s")],
                hoverinfo="text", meta={"family": view.families[server]}))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="MiB/s echoed")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, view, f"Bandwidth by message size · {data.conns:,} connections "
                              f"(MiB/s)", 60 + 18 * len(fig.data))


def fig_interpreters(view: View, chart: Chart) -> go.Figure:
    """A row per Python model, a dot per interpreter with its interval (series.interpreters),
    the interpreters side by side within a row as in the PNG."""
    data = chart.data
    count = len(data.interpreters)
    fig = go.Figure()
    for k, i in enumerate(data.interpreters):
        shown = [(y, bar) for y, model in enumerate(data.models)
                 if (bar := data.dots[model][k]) is not None and bar.stat is not None]
        if not shown:
            continue
        name = i["label"] + (" (free-threaded)" if i["free_threaded"] else "")
        offset = (k - (count - 1) / 2) * min(0.22, 0.7 / count)
        fig.add_trace(go.Scatter(
            x=[b.stat.value for _, b in shown], y=[y + offset for y, _ in shown],
            mode="markers", name=name + (", plain names" if i["default"] else f", NAME@{i['tag']}"),
            marker={"size": 10, "color": i["colour"],
                    "symbol": [symbol(b.outcome.verdict, PLOTLY_SYMBOLS.get(i["marker"], "circle"))
                               for _, b in shown],
                    "line": {"width": 1.5, "color": [outline(b.outcome.verdict, i["colour"])
                                                     for _, b in shown]}},
            error_x={"type": "data", "array": [bounds(b.stat)[1] - b.stat.value for _, b in shown],
                     "arrayminus": [b.stat.value - bounds(b.stat)[0] for _, b in shown],
                     "thickness": 1.4, "width": 3, "color": i["colour"]},
            hovertext=[_hover(b.outcome, f"{b.stat.value:.3g} {data.unit} under {name}")
                       for _, b in shown], hoverinfo="text"))
    fig.update_xaxes(type="log", title_text=f"{data.unit} (log); whiskers: 95 % interval")
    fig.update_yaxes(tickvals=list(range(len(data.models))), ticktext=data.models,
                     range=[len(data.models) - 0.5, -0.5], showgrid=False)
    if data.unit.startswith("×"):
        fig.add_vline(x=1.0, line_dash="dash", line_color="#000000")
    _layout(fig, view, f"Each Python model under each interpreter · {data.cell.label}",
            40 + 30 * len(data.models))
    fig.update_layout(legend={"title": {"text": "interpreter (click: hide / show)"}})
    return fig


PLOTLY_SYMBOLS = {"o": "circle", "s": "square", "D": "diamond", "^": "triangle-up",
                  "v": "triangle-down", "P": "cross"}


def figures_for(view: View, chart: Chart) -> list[go.Figure]:
    """The interactive figures that stand in for one static chart ([] = inline its SVG)."""
    key = chart.key
    figs: list[go.Figure | None] = []
    if key == "throughput":
        figs = [fig_against_conns(view, chart)]
    elif key == "latency":
        figs = [fig_against_conns(view, chart)]
    elif key == "spectrum":
        figs = [fig_spectrum(view, chart)]
    elif key == "openloop":
        figs = [fig_openloop(view, chart)]
    elif key == "cpu":
        figs = [fig_ranked_bars(view, chart.data.ranked_cpu, "Server CPU per request")]
    elif key == "memory":
        figs = [fig_memory(view, chart)]
    elif key == "sizes":
        figs = [fig_sizes(view, chart)]
    elif key == "interpreters":
        figs = [fig_interpreters(view, chart)]
    return [f for f in figs if f is not None]


# -- The page ----------------------------------------------------------------------------------------


def write(view: View, doc: list[blocks.Block]) -> Path:
    """report.html in the run's directory, from the report's blocks."""
    counter = iter(range(1_000_000))

    def figure(block: blocks.Figure) -> str:
        chart = block.chart
        figs = figures_for(view, chart) if chart else []
        if figs:
            return "\n".join(
                f'<div class="chart" data-chart="{chart.key}">' + fig.to_html(
                    full_html=False, include_plotlyjs=False, config=CONFIG,
                    div_id=f"chart-{chart.key}-{next(counter)}") + "</div>" for fig in figs)
        if chart and chart.svg and chart.svg.is_file():
            svg = chart.svg.read_text()
            svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG has none
            return (f'<div class="svgchart" data-chart="{chart.key}" '
                    f'title="{htmllib.escape(block.alt)}">{svg}</div>')
        return blocks.no_figure(block)

    body = blocks.to_html(doc, figure)
    path = view.dir / "report.html"
    path.write_text(blocks.page(f"Bench report {view.run_id}", body,
                                head=f"<script>{get_plotlyjs()}</script>"))
    return path
