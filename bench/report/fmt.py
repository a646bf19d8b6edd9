"""Numbers for people: one formatter for each kind of figure, so that one figure reads the same in
the report (Markdown, charts, HTML), `bench compare`, the runner's console, `bench load` and the
microbenchmarks' table.

    fmt_rps(41213) -> '41,200'         fmt_bytes(3174) -> '3.1 KiB'      fmt_ratio(0.8123) -> '0.81×'
    fmt_us(1250) -> '1.25 ms'          fmt_duration(245) -> '4 min 05 s'
    fmt_duration(3200, "ns", zeros=True) -> '3.20 µs'                   (a column that lines up)
    fmt_spread(stat, fmt_rps) -> '41,200 (40,100–42,000)'
    fmt_percentile(99.99, 30_000) -> 'p99.99 (from 3 requests)'

A cell's label is results.CellKey.label, built from fmt_size, fmt_rps and fmt_share here. This
module imports nothing of the bench at load time (results.py imports it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench import results

def sig(value: float, digits: int = 3) -> float:
    """`value` rounded to `digits` significant figures."""
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def fmt_rps(value: float) -> str:
    """41213 -> '41,200'; 12.34 -> '12.3' (three significant figures, thousands separated)."""
    value = sig(value)
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def fmt_short(value: float) -> str:
    """41213 -> '41.2k' (for cramped labels)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{sig(value / scale):g}{suffix}"
    return f"{sig(value):g}"


def figures(value: float, digits: int = 3, *, zeros: bool = False) -> str:
    """`value` to `digits` significant figures: '1.25', '48', '310'; zeros=True keeps the trailing
    zeros, so that a column lines up: '3.20', '57.0'."""
    value = sig(value, digits)
    if not zeros or value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.{max(0, digits - 1 - math.floor(math.log10(abs(value))))}f}"


# Each unit of time in nanoseconds (whole numbers, so that a ratio of two is exact).
DURATION_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
DURATION_SYMBOLS = {"ns": "ns", "us": "µs", "ms": "ms", "s": "s"}


def fmt_duration(value: float, unit: str = "s", *, zeros: bool = False) -> str:
    """A duration given in `unit` ('ns', 'us', 'ms' or 's'), in the largest unit it is at least one
    of and never below `unit`, to three significant figures: '310 µs', '1.25 ms', '2.1 s'. From a
    minute up, as a clock reads: '4 min 05 s', '1 h 02 min'. zeros=True: see figures()."""
    given = DURATION_UNITS[unit]
    seconds = value / (DURATION_UNITS["s"] / given)
    if seconds >= 59.5:
        minutes, secs = divmod(round(seconds), 60)
        hours, minutes = divmod(minutes, 60)
        return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
    shown = next((u for u in ("s", "ms", "us") if DURATION_UNITS[u] >= given
                  and value >= DURATION_UNITS[u] / given), unit)
    return f"{figures(value / (DURATION_UNITS[shown] / given), zeros=zeros)} {DURATION_SYMBOLS[shown]}"


def fmt_us(value_us: float) -> str:
    """A latency in microseconds: '310 µs', '1.25 ms', '48 ms', '2.1 s'."""
    return fmt_duration(value_us, "us")


def fmt_bytes(value: float, *, zeros: bool = False) -> str:
    """'3.1 KiB', '1.9 MiB', '187 B' (binary units, three significant figures; zeros=True: see
    figures())."""
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= scale:
            return f"{figures(value / scale, zeros=zeros)} {unit}"
    return f"{figures(value, zeros=zeros and value != round(value))} B"


def fmt_share(fraction: float) -> str:
    """0.5 -> '50 %' (a share of a server's peak)."""
    return f"{fraction * 100:.0f} %"


def fmt_size(size_bytes: int) -> str:
    """A message size: '1 KiB', '64 KiB', '100 B'."""
    for scale, unit in ((1 << 20, "MiB"), (1 << 10, "KiB")):
        if size_bytes >= scale and size_bytes % scale == 0:
            return f"{size_bytes // scale} {unit}"
    return fmt_bytes(size_bytes)


SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
              "mb": 1 << 20, "mib": 1 << 20}


def parse_size(text: str) -> int:
    """A message size as people write it, the way fmt_size prints it: '1024', '64KiB', '64k',
    '64 KiB', '1MiB' (binary units: k and KiB are 1,024 bytes). ValueError naming the form."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a size: write bytes, or KiB or MiB, e.g. 1024, 64KiB, "
                         f"64k or 1MiB")
    return int(match.group(1)) * SIZE_UNITS[unit]


def fmt_small(value: float) -> str:
    """Counts per request: '1.9', '0.04', '0.0008'."""
    if value == 0:
        return "0"
    return f"{sig(value, 2):g}" if abs(value) < 10 else f"{sig(value):,.0f}"


def fmt_ratio(ratio: float) -> str:
    """A ratio to the reference (or between two figures): '0.81×', '1.2×', '12×'."""
    return f"{sig(ratio, 2):g}×"


def fmt_pct(change: float) -> str:
    """A relative change: '+12 %', '−3.4 %' (a true minus sign)."""
    text = f"{abs(change) * 100:.2g}" if abs(change) < 0.1 else f"{abs(change) * 100:.0f}"
    return f"{'+' if change >= 0 else '−'}{text} %"


def fmt_cell_short(cell: results.CellKey) -> str:
    """Two short lines, for a column heading: '128 × 1 KiB', '16 × 1 KiB\\n@ 50 % of peak'."""
    top = f"{cell.conns:,} × {fmt_size(cell.size_bytes)}"
    if cell.fraction is not None:
        return f"{top}\n@ {fmt_share(cell.fraction)} of peak"
    return top if cell.rate is None else f"{top}\n@ {fmt_short(cell.rate)}/s"


def fmt_spread(s: results.Stat | None, fmt: Callable[[float], str]) -> str:
    """'64 µs (CI 63–65)' or '64 µs (range 60–71)': the figure, then its 95 % interval where the
    run recorded one (of a median from 6 rounds, of a ratio from 2), else the range of the
    rounds; the unit once. One round: '64 µs', alone (a table says what a bare figure is)."""
    if s is None:
        return "—"
    low, high = s.ci95 if s.ci95 else (s.low, s.high)
    value, low, high = fmt(s.value), fmt(low), fmt(high)
    if s.n < 2 or low == high:
        return value
    unit = value.rpartition(" ")[2] if " " in value else ""
    if unit and low.endswith(" " + unit) and high.endswith(" " + unit):
        low, high = low[: -len(unit) - 1], high[: -len(unit) - 1]
    elif value.endswith("×"):
        low = low.rstrip("×")
        high = high.rstrip("×")
    return f"{value} ({'CI' if s.ci95 else 'range'} {low}–{high})"


def percentile_name(percentile: float) -> str:
    """99.99 -> 'p99.99', 50 -> 'p50'."""
    return f"p{percentile:g}"


def fmt_percentile(percentile: float, requests: float | None) -> str:
    """'p99.99', or 'p99.99 (from 3 requests)' when fewer than results.TAIL_MIN_SAMPLES requests
    lie beyond it: such a figure is a few requests' say, not a distribution's."""
    from bench import results  # here, not at the top: results.py imports this module

    name = percentile_name(percentile)
    beyond = results.tail_samples(int(requests) if requests else None, percentile)
    if beyond is None or beyond >= results.TAIL_MIN_SAMPLES:
        return name
    count = max(0, math.floor(beyond))
    return f"{name} (from {count} request{'s' if count != 1 else ''})"


def possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def how_much_more(high: float, low: float, than: str = "") -> str:
    """'2.1× the slowest', or 'only 4% more than the slowest' when the two are close."""
    if not low:
        return f"far more than {than}".rstrip() if than else "far more"
    ratio = high / low
    if ratio < 1.1:
        return f"only {ratio - 1:.0%} more" + (f" than {than}" if than else "")
    return f"{fmt_ratio(ratio)} {than}".rstrip()


def size_slug(size_bytes: int) -> str:
    return fmt_size(size_bytes).replace(" ", "")


def join(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split()).rstrip(".")
    return text if len(text) <= limit else text[: limit - 1] + "…"
