"""report.html: report.md's text with interactive charts, in one file that needs no network.

Built with plotly (PyPI `plotly`): plotly.js is inlined once in the page's <head> (about 4.8 MB),
and each chart is a <div> drawn by it. Why plotly rather than altair/vega-lite: its legend toggles
a server on click and its hover shows every value with no extra wiring, it draws error bars,
log axes and small multiples natively, and its Python package ships the JS bundle, so inlining
needs nothing else (altair's inline mode needs vl-convert, a ~100 MB binary, and toggles must be
written as selection parameters). The cost is size: the page is ~5 MB, the same for any run.

What the page offers beyond the PNGs: hover values (median, CI or range, verdict, repeats);
click a server in a legend to hide or show it; buttons above each chart hide or show a whole
family; lines against connections are small multiples, one panel per family. Results that are
not clean are marked as in the PNGs (bench/report/view.py): open symbol = noisy or client-bound; open
symbol in a red outline = degraded; bars are hatched for any of these. Failed results have no
point; the status matrix (inlined as SVG) and the tables name them.

The text is report.md rendered by a small converter (`md_to_html`) for the Markdown that
bench/report/markdown.py writes: headings, paragraphs, bullets, tables, code blocks, <details>, bold,
code and links. Each chart image is replaced by its interactive figure, or by its SVG inlined.
"""

from __future__ import annotations

import html as htmllib
import math
import re
from pathlib import Path

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from bench import results
from bench.report.charts import (
    Chart, SPECTRUM_MARKS, basis_name, latency_ms, load_x, memory_points, openloop_series,
    sizes_cells, spectrum_curve, spectrum_curves,
)
from bench.report.fmt import fmt_bytes, fmt_percentile, fmt_rps, fmt_size, fmt_us
from bench.report.markdown import anchor
from bench.report.view import DEGRADED_RING, View, clean, requests

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
            f"<br>repeats {o.repeats_text}{extra}")


def _bounds(s: results.Stat) -> tuple[float, float]:
    return s.ci95 if s.ci95 else (s.low, s.high)


def _trace(view: View, server: str, points: list, name_suffix: str = "", **kw) -> go.Scatter:
    """One server's line: points are (x, Stat, CellSummary, value text)."""
    colour = view.style(server)[0]
    points = sorted(points, key=lambda p: p[0])
    ys = [p[1].median for p in points]
    lows = [y - _bounds(p[1])[0] for y, p in zip(ys, points, strict=True)]
    highs = [_bounds(p[1])[1] - y for y, p in zip(ys, points, strict=True)]
    verdicts = [p[2].verdict for p in points]
    return go.Scatter(
        x=[p[0] for p in points], y=ys, mode="lines+markers", name=server + name_suffix,
        legendgroup=server, line={"color": colour, "width": 2},
        error_y={"type": "data", "array": highs, "arrayminus": lows, "visible": True,
                 "thickness": 1.2, "width": 3, "color": colour},
        marker={"size": 9, "color": colour, "symbol": [symbol(v) for v in verdicts],
                "line": {"width": [2.5 if v == "degraded" else 1.5 for v in verdicts],
                         "color": [outline(v, colour) for v in verdicts]}},
        hovertext=[_hover(p[2], f"{p[3]}<br>{'95 % CI' if p[1].ci95 else 'range'} "
                              f"{_bounds(p[1])[0]:.3g}–{_bounds(p[1])[1]:.3g}") for p in points],
        hoverinfo="text",
        meta={"family": view.families[server]}, **kw)


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


# -- The figures -----------------------------------------------------------------------------------


def fig_against_conns(view: View, size: int, what: str) -> go.Figure | None:
    """Throughput ('rps') or p99 ('p99') against connections, a panel per family."""
    cells = view.closed_cells(size)
    series = {}
    for server in view.servers:
        points = []
        for cell in cells:
            o = view.outcome(server, cell)
            s = (o.rps if what == "rps" else o.stat(latency_ms("p99"))) if o else None
            if s is not None:
                text = f"{fmt_rps(s.median)} req/s" if what == "rps" else f"p99 {s.median:.3g} ms"
                points.append((cell.conns, s, o, text))
        if points:
            series[server] = points
    if not series:
        return None
    fig, where, rows = _panels(view, list(series))
    for server, points in series.items():
        row, col = where[view.families[server]]
        fig.add_trace(_trace(view, server, points), row=row, col=col)
    fig.update_xaxes(type="log", title_text="connections", matches="x")
    fig.update_yaxes(type="log" if what == "p99" else "linear", rangemode="tozero")
    fig.update_yaxes(title_text="req/s" if what == "rps" else "p99 (ms, log)", col=1)
    title = (f"Throughput vs connections · {fmt_size(size)}" if what == "rps"
             else f"p99 latency vs connections · {fmt_size(size)}")
    return _layout(fig, view, title, 330 * rows)


def fig_headline_bars(view: View, cell: results.CellKey, what: str) -> go.Figure | None:
    """At the headline cell, a bar per server: vs_ref (or req/s), or CPU µs per request."""
    outs = [o for s in view.servers if (o := view.outcome(s, cell)) and o.measured]
    if what == "rps":
        stat = (lambda o: o.vs_ref_stat) if view.has_ratios else (lambda o: o.rps)
        unit = "× the reference's req/s" if view.has_ratios else "req/s"
    else:
        stat, unit = (lambda o: o.cpu_us_per_request), "server CPU µs per request"
    outs = [o for o in outs if stat(o) is not None]
    if not outs:
        return None
    outs.sort(key=lambda o: stat(o).median)
    fig = go.Figure()
    for o in outs:
        s, colour = stat(o), view.style(o.server)[0]
        low, high = _bounds(s)
        fig.add_trace(go.Bar(
            y=[o.server], x=[s.median], orientation="h", name=o.server, legendgroup=o.server,
            marker={"color": colour, "pattern": {"shape": "" if clean(o) else "/"},
                    "line": {"color": outline(o.verdict, colour), "width": 2}},
            error_x={"type": "data", "array": [high - s.median], "arrayminus": [s.median - low]},
            hovertext=[_hover(o, f"{s.median:.4g} {unit}")], hoverinfo="text",
            meta={"family": view.families[o.server]}))
    title = (f"{'Throughput' if what == 'rps' else 'Server CPU per request'} at {cell.label}"
             f" ({unit}; hatched: noisy, client-bound or degraded, not ranked)")
    fig.update_xaxes(title_text=unit)
    return _layout(fig, view, title, 40 + 26 * len(outs))


def fig_spectrum(view: View, cell: results.CellKey) -> go.Figure | None:
    curves = spectrum_curves(view, cell)
    if not curves:
        return None
    fig = go.Figure()
    fewest = min((n for _, o in curves.values() if (n := requests(o))), default=None)
    for server, (merged, o) in curves.items():
        xs, ys = spectrum_curve(merged)
        colour = view.style(server)[0]
        fig.add_trace(go.Scatter(
            x=list(xs), y=list(ys), mode="lines", name=server, legendgroup=server,
            line={"color": colour, "width": 2, "dash": "solid" if clean(o) else "dot"},
            hovertext=[f"<b>{server}</b><br>p{100 * (1 - 1 / x):.4g}: {fmt_us(y * 1000)}"
                       + ("" if clean(o) else f"<br><b>{o.verdict}</b>") for x, y in zip(xs, ys, strict=True)],
            hoverinfo="text", meta={"family": view.families[server]}))
    ticks = [1 / (1 - p / 100) for p in SPECTRUM_MARKS]
    fig.update_xaxes(type="log", tickvals=ticks,
                     ticktext=[fmt_percentile(p, fewest) for p in SPECTRUM_MARKS],
                     title_text="percentile")
    fig.update_yaxes(type="log", title_text="latency (ms, log)")
    return _layout(fig, view, f"Latency by percentile · {cell.label} (dotted: not clean)", 400)


def fig_openloop(view: View) -> go.Figure | None:
    drawable = openloop_series(view)
    if not drawable:
        return None
    servers = list(dict.fromkeys(k[0] for k in drawable))
    fig, where, rows = _panels(view, servers)
    by_share = all(o.cell.fraction is not None for v in drawable.values() for o in v)
    settings = {(k[1], k[2]) for k in drawable}
    for (server, conns, size), outs in drawable.items():
        points = [(load_x(o, by_share), s, o, f"p99 {s.median:.3g} ms; completed "
                   f"{fmt_rps(o.rps.median)} req/s") for o in outs
                  if (s := o.stat(latency_ms("p99")))]
        row, col = where[view.families[server]]
        suffix = f" ({conns} × {fmt_size(size)})" if len(settings) > 1 else ""
        fig.add_trace(_trace(view, server, points, suffix), row=row, col=col)
    fig.update_xaxes(title_text="offered, % of own peak" if by_share else "offered req/s",
                     matches="x")
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="p99 (ms, log)", col=1)
    return _layout(fig, view, "Open loop: p99 vs offered load (the knee)", 330 * rows)


def fig_memory(view: View) -> go.Figure | None:
    basis, cells, points = memory_points(view)
    if not points:
        return None
    fig = go.Figure()
    symbols = ("circle", "square", "triangle-up", "diamond", "triangle-down", "cross")  # as the PNG's
    positive = [s.median for s in points.values() if s.median > 0]
    floor = min(positive) / 2 if positive else 1.0
    for server in view.servers:
        mine = [(c, points[(server, c)]) for c in cells if (server, c) in points]
        if not mine:
            continue
        colour = view.style(server)[0]
        outs = [view.outcome(server, c) for c, _ in mine]
        fig.add_trace(go.Scatter(
            x=[max(s.median, floor) for _, s in mine], y=[server] * len(mine), mode="markers",
            name=server, legendgroup=server,
            marker={"size": 11, "color": colour,
                    "symbol": [symbol(o.verdict, symbols[cells.index(c) % len(symbols)])
                               for (c, _), o in zip(mine, outs, strict=True)],
                    "line": {"width": 1.5, "color": [outline(o.verdict, colour) for o in outs]}},
            hovertext=[_hover(o, f"{fmt_bytes(s.median) if s.median > 0 else '≈ 0'} per "
                                 f"connection ({basis_name(basis)})")
                       for (_, s), o in zip(mine, outs, strict=True)],
            hoverinfo="text", meta={"family": view.families[server]}))
    fig.update_xaxes(type="log", title_text=f"bytes per connection ({basis_name(basis)}, log; "
                                            f"≈ 0 drawn at the left)")
    fig.update_yaxes(autorange="reversed")
    shapes = ", ".join(f"{symbols[i % len(symbols)]} = {c.conns:,} conns"
                       for i, c in enumerate(cells))
    return _layout(fig, view, f"Memory per connection · {basis_name(basis)} · {shapes}",
                   60 + 26 * len({k[0] for k in points}))


def fig_sizes(view: View) -> go.Figure | None:
    cells = sizes_cells(view)
    if not cells:
        return None
    fig = go.Figure()
    mib = float(1 << 20)
    for server in view.servers:
        outs = [(c, o) for c in cells if (o := view.outcome(server, c)) and o.stat("bytes_per_s")]
        if not outs:
            continue
        colour = view.style(server)[0]
        for c, o in outs:
            s = o.stat("bytes_per_s")
            low, high = _bounds(s)
            fig.add_trace(go.Bar(
                y=[server], x=[s.median / mib], orientation="h", name=server,
                legendgroup=server, showlegend=c == outs[0][0],
                offsetgroup=str(c.size_bytes), marker={
                    "color": colour, "opacity": 0.5 + 0.5 * cells.index(c) / max(1, len(cells) - 1),
                    "pattern": {"shape": "" if clean(o) else "/"}},
                error_x={"type": "data", "array": [(high - s.median) / mib],
                         "arrayminus": [(s.median - low) / mib]},
                text=[f"{fmt_size(c.size_bytes)}: {fmt_rps(s.median / mib)} MiB/s"],
                textposition="outside", hovertext=[_hover(o, f"{fmt_rps(s.median / mib)} MiB/s")],
                hoverinfo="text", meta={"family": view.families[server]}))
    fig.update_layout(barmode="group")
    fig.update_xaxes(title_text="MiB/s echoed")
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, view, f"Bandwidth by message size · {cells[0].conns:,} connections "
                              f"(MiB/s)", 60 + 18 * len(fig.data))


def figures_for(view: View, chart: Chart, focus: results.CellKey | None) -> list[go.Figure]:
    """The interactive figures that stand in for one static chart ([] = inline its SVG)."""
    key = chart.key
    figs: list[go.Figure | None] = []
    if key == "throughput":
        figs = [fig_against_conns(view, chart.extra["size"], "rps")]
        if focus is not None and chart.extra["size"] == focus.size_bytes:
            figs.append(fig_headline_bars(view, focus, "rps"))
    elif key == "latency":
        figs = [fig_against_conns(view, chart.extra["size"], "p99")]
    elif key == "spectrum":
        figs = [fig_spectrum(view, chart.extra["cell"])]
    elif key == "openloop":
        figs = [fig_openloop(view)]
    elif key == "cpu":
        figs = [fig_headline_bars(view, chart.extra["cell"], "cpu")]
    elif key == "memory":
        figs = [fig_memory(view)]
    elif key == "sizes":
        figs = [fig_sizes(view)]
    return [f for f in figs if f is not None]


# -- Markdown to HTML, for the Markdown bench/report/markdown.py writes ------------------------------------


def _inline(text: str) -> str:
    text = htmllib.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)


def _cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [p.strip().replace("\\|", "|") for p in parts]


def md_to_html(markdown: str, image: callable) -> str:
    """`image(alt, src)` returns the HTML that replaces an image line."""
    out: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            block = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                block.append(lines[i][2:] if lines[i].startswith("  ") else lines[i])
                i += 1
            out.append(f"<pre><code>{htmllib.escape(chr(10).join(block))}</code></pre>")
            i += 1
        elif stripped.startswith("<") and not stripped.startswith("<http"):
            out.append(stripped)  # <details>, <summary>, </details>: our own, passed through
            i += 1
        elif m := re.match(r"^(#{1,3}) (.*)", line):
            level, text = len(m[1]), m[2]
            out.append(f'<h{level} id="{anchor(text)}">{_inline(text)}</h{level}>')
            i += 1
        elif m := re.match(r"^!\[([^\]]*)\]\(([^)]+)\)$", stripped):
            out.append(image(m[1], m[2]))
            i += 1
        elif stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            right = [c.endswith(":") for c in rows[1]] if len(rows) > 1 else []
            body = "".join("<tr>" + "".join(
                f'<td{" class=r" if k < len(right) and right[k] else ""}>{_inline(c)}</td>'
                for k, c in enumerate(r)) + "</tr>" for r in rows[2:])
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            out.append(f"<div class=tablewrap><table><thead><tr>{head}</tr></thead>"
                       f"<tbody>{body}</tbody></table></div>")
        elif stripped.startswith("- "):
            items = []
            while i < len(lines) and (lines[i].startswith("- ") or lines[i].startswith("  ")
                                      or not lines[i].strip()):
                if lines[i].startswith("- "):
                    items.append([lines[i][2:]])
                elif lines[i].strip() and items:
                    items[-1].append(lines[i][2:])
                elif not lines[i].strip() and i + 1 < len(lines) and not (
                        lines[i + 1].startswith("- ") or lines[i + 1].startswith("  ")):
                    break
                i += 1
            out.append("<ul>" + "".join(f"<li>{md_to_html(chr(10).join(item), image)}</li>"
                                        for item in items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#|\||- |!\[|```|<)",
                                                                       lines[i].strip()):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto;
       max-width: 1300px; padding: 0 20px 60px; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
code { background: #f3f3f3; padding: 0 3px; border-radius: 3px; }
pre { background: #f6f6f6; padding: 8px; overflow-x: auto; }
.tablewrap { overflow-x: auto; } table { border-collapse: collapse; font-size: 0.86em; }
th, td { border: 1px solid #ddd; padding: 3px 6px; vertical-align: top; } td.r { text-align: right; }
th { background: #f3f3f3; position: sticky; top: 0; } .chart { margin: 12px 0; }
.svgchart svg { max-width: 100%; height: auto; }
"""


def write(view: View, charts: list[Chart], md_path: Path) -> Path:
    """report.html beside report.md."""
    by_src = {c.path.relative_to(view.dir).as_posix(): c for c in charts if c.path}
    focus = next((c.extra.get("cell") for c in charts if c.key == "spectrum" and c.path), None)
    counter = iter(range(1_000_000))

    def image(alt: str, src: str) -> str:
        chart = by_src.get(src)
        figs = figures_for(view, chart, focus) if chart else []
        if figs:
            return "\n".join(
                f'<div class="chart" data-chart="{chart.key}">' + fig.to_html(
                    full_html=False, include_plotlyjs=False, config=CONFIG,
                    div_id=f"chart-{chart.key}-{next(counter)}") + "</div>" for fig in figs)
        if chart and chart.svg and chart.svg.is_file():
            svg = chart.svg.read_text()
            svg = svg[svg.index("<svg"):]  # drop the XML prolog and DOCTYPE: inline SVG has none
            return f'<div class="svgchart" data-chart="{chart.key}" title="{htmllib.escape(alt)}">{svg}</div>'
        return f"<p><em>{htmllib.escape(alt)}: chart missing</em></p>"

    body = md_to_html(md_path.read_text(), image)
    body = body.replace('<a href="report.html">report.html</a> is the same report',
                        "This page is the same report")
    page = (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width, initial-scale=1'>"
            f"<title>Bench report {htmllib.escape(view.run_id)}</title><style>{STYLE}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>\n{body}\n</body></html>\n")
    path = md_path.with_suffix(".html")
    path.write_text(page)
    return path


