"""What every static chart of the report shares: the figure with its title and footer, saving as PNG
and SVG, the server legend and the keys for results that are not clean, log axes, a server's line
and its failed marks, dodging, and the tie groups' bands. bench/report/charts.py draws the status
matrix and the line charts with them, bench/report/bars.py the ranking and the bar charts; the
conventions they share are told in charts.py's docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window: works on a headless server and in CI

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator  # noqa: E402

from bench.report.series import (  # noqa: E402
    Line, bounds, has_bar,
)
from bench.report.view import (  # noqa: E402
    DEGRADED_RING, FAMILY_COLOURS, OTHER_COLOUR, View,
)

FIG_WIDTH_IN = 12.0  # x DPI = 1200 px: readable on a GitHub page without zooming
FIG_HEIGHT_IN = 6.5
DPI = 100
FOOTER_IN = 0.32  # the strip at the bottom kept free for the footer

VERDICT_COLOURS = {"ok": "#c7e9c0", "noisy": "#fff3b0", "client-bound": "#c6dbef",
                   "degraded": "#fdd49e", "failed": "#fc9272", "skipped": "#e0e0e0"}

# Every file this module may write in charts/, so a redraw removes the ones it no longer makes.


# -- Plumbing ----------------------------------------------------------------------------------------


def new_figure(view: View, title: str, *, ncols: int = 1, nrows: int = 1,
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


def save(fig: Figure, path: Path) -> Path:
    """The PNG and the SVG beside it. The SVG without a date and with ids from a fixed salt
    (matplotlib draws them at random): redrawn from the same run, every file is byte-identical."""
    fig.savefig(path, dpi=DPI, facecolor="white")
    with matplotlib.rc_context({"svg.hashsalt": "bench-report"}):
        fig.savefig(path.with_suffix(".svg"), facecolor="white", metadata={"Date": None})
    return path


def header_handle() -> Line2D:
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


def server_legend(fig: Figure, view: View, servers: list[str], *, keys: Iterable = ()) -> None:
    """One legend to the right of the plots: servers grouped under their family, then a key."""
    handles, labels, headers = [], [], []
    for family in view.family_order(servers):
        headers.append((len(labels), FAMILY_COLOURS.get(family, OTHER_COLOUR)))
        handles.append(header_handle())
        labels.append(family)
        for server in (s for s in servers if view.families[s] == family):
            colour, marker, linestyle = view.style(server)
            handles.append(Line2D([], [], color=colour, marker=marker, linestyle=linestyle,
                                  linewidth=2, markersize=7))
            labels.append(server)
    keys = list(keys)
    if keys:
        headers.append((len(labels), "#333333"))
        handles.append(header_handle())
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


def legend_keys(verdicts: set[str], failed: bool) -> list:
    return (([KEY_HOLLOW] if verdicts & {"noisy", "client-bound"} else [])
            + ([KEY_DEGRADED] if "degraded" in verdicts else []) + ([KEY_FAILED] if failed else []))


def log_ticks(ax, values: Iterable[float], formatter: Callable[[float], str]) -> None:
    """x ticks exactly at the values measured (1, 16, 128 connections), in plain numbers."""
    ax.xaxis.set_major_locator(FixedLocator(sorted(set(values))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: formatter(v)))
    ax.xaxis.set_minor_locator(NullLocator())


def log_axis(axis, formatter: Callable = lambda v: f"{v:,.6g}", base: float = 10,
              wide: bool = False) -> None:
    """Log ticks at 1, 2, 5 x powers of ten (only powers when `wide`: many decades), or at powers
    of `base`, in plain numbers."""
    subs = (1.0, 2.0, 5.0) if base == 10 and not wide else (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _p: formatter(v)))
    axis.set_minor_locator(NullLocator())


def draw_line(ax, view: View, ln: Line, *, dodge: float = 1.0) -> set[str]:
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


def failed_marks(ax, view: View, ln: Line, dodge: float = 1.0) -> bool:
    """Crosses on the x axis where a server failed, so its line visibly ends for a reason."""
    if ln.failed_at:
        ax.plot([x * dodge for x in ln.failed_at], [0.0] * len(ln.failed_at), marker="x",
                color=view.colour(ln.server), markersize=9, markeredgewidth=2.2,
                linestyle="none", clip_on=False, zorder=4, transform=ax.get_xaxis_transform())
    return bool(ln.failed_at)


def dodges(n: int, spread_octaves: float = 0.35) -> list[float]:
    """Small horizontal offsets on a log axis, so error bars of servers at one x stay apart."""
    if n <= 1:
        return [1.0] * n
    return [2 ** (spread_octaves * (i / (n - 1) - 0.5)) for i in range(n)]


# -- Who won ---------------------------------------------------------------------------------------

GROUP_BANDS = ("#f1f3f6", "#ffffff")  # alternate tie groups' backgrounds
APART_BAND = "#fbf3e6"

