"""Numbers for people: the few formats every part of the report speaks (the Markdown, the charts,
the HTML page and `bench compare`), so one figure reads the same everywhere.

    fmt_rps(41213) -> '41,200'      fmt_us(1250) -> '1.25 ms'      fmt_bytes(3174) -> '3.1 KiB'
    fmt_ratio(0.8123) -> '0.81×'    fmt_spread(stat, fmt_rps) -> '41,200 (40,100–42,000)'
    fmt_percentile(99.99, 30_000) -> 'p99.99 (from 3 requests)'
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


def fmt_us(value_us: float) -> str:
    """A latency: '310 µs', '1.25 ms', '48 ms', '2.1 s'."""
    if value_us < 1000:
        return f"{sig(value_us):g} µs"
    if value_us < 1_000_000:
        return f"{sig(value_us / 1000):g} ms"
    return f"{sig(value_us / 1e6):g} s"


def fmt_bytes(value: float) -> str:
    """'3.1 KiB', '1.9 MiB' (binary units, three significant figures)."""
    for scale, unit in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= scale:
            return f"{sig(value / scale):g} {unit}"
    return f"{sig(value):g} B"


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
    return f"{sig(value, 2):g}" if abs(value) < 10 else f"{sig(value):,.0f}"


def fmt_ratio(ratio: float) -> str:
    """A ratio to the reference (or between two figures): '0.81×', '1.2×', '12×'."""
    return f"{sig(ratio, 2):g}×"


def fmt_pct(change: float) -> str:
    """A relative change: '+12 %', '−3.4 %' (a true minus sign)."""
    text = f"{abs(change) * 100:.2g}" if abs(change) < 0.1 else f"{abs(change) * 100:.0f}"
    return f"{'+' if change >= 0 else '−'}{text} %"


def fmt_cell(cell: results.CellKey) -> str:
    """'128 conns × 1 KiB', '16 conns × 1 KiB at 20,000 req/s', '100 conns × 1 KiB at 50 % of
    peak'."""
    text = f"{cell.conns:,} conn{'s' if cell.conns != 1 else ''} × {fmt_size(cell.size_bytes)}"
    if cell.fraction is not None:
        return f"{text} at {fmt_share(cell.fraction)} of peak"
    return text if cell.rate is None else f"{text} at {fmt_rps(cell.rate)} req/s"


def fmt_cell_short(cell: results.CellKey) -> str:
    """Two short lines, for a column heading: '128 × 1 KiB', '16 × 1 KiB\\n@ 50 % of peak'."""
    top = f"{cell.conns:,} × {fmt_size(cell.size_bytes)}"
    if cell.fraction is not None:
        return f"{top}\n@ {fmt_share(cell.fraction)} of peak"
    return top if cell.rate is None else f"{top}\n@ {fmt_short(cell.rate)}/s"


def fmt_spread(s: results.Stat | None, fmt: Callable[[float], str]) -> str:
    """'64 µs (63–65)': the median, then the 95 % CI of the median where the run recorded enough
    repeats for one, else the min–max of the repeats; the unit once."""
    if s is None:
        return "—"
    low, high = s.ci95 if s.ci95 else (s.low, s.high)
    median, low, high = fmt(s.median), fmt(low), fmt(high)
    if s.n < 2 or low == high:
        return median
    unit = median.rpartition(" ")[2] if " " in median else ""
    if unit and low.endswith(" " + unit) and high.endswith(" " + unit):
        low, high = low[: -len(unit) - 1], high[: -len(unit) - 1]
    return f"{median} ({'CI ' if s.ci95 else ''}{low}–{high})"


def percentile_name(percentile: float) -> str:
    """99.99 -> 'p99.99', 50 -> 'p50'."""
    return f"p{percentile:g}"


def fmt_percentile(percentile: float, requests: float | None) -> str:
    """'p99.99', or 'p99.99 (from 3 requests)' when fewer than results.TAIL_MIN_SAMPLES requests
    lie beyond it: such a figure is a few requests' say, not a distribution's."""
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
