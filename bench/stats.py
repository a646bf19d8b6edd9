"""The statistics of a run: its records folded, one CellSummary per server x cell, each figure a
median over the rounds with its range and its 95 % confidence interval, and the one status order.
bench/results.py (the record) re-exports these names, so the report and compare read the whole
model through `from bench import results`.

The one status order, mildest first (``STATUS_ORDER``):

    ok < noisy < client-bound < degraded < failed < skipped

A record's ``status`` stays one of ok, degraded, failed, skipped (what the server did); its
``verdict`` adds what the bench can say about the figure: an ok measurement in a window flagged
noisy is "noisy", one where the load generator saturated is "client-bound" (its req/s is a floor
for the server). A cell's status and verdict are the worst of its measurements', except that
skipped measurements count only when nothing in the cell was measured (a repeat the runner
skipped after a failure leaves the cell failed; one skipped after good repeats leaves it ok).

Confidence intervals. The 95 % interval of a median is distribution-free, from order statistics:
for n sorted values, the interval [x_(j), x_(n+1-j)] with the largest j such that
P(j <= B <= n-j) >= 0.95 for B ~ Binomial(n, 1/2) (the number of values below the true median).
It needs n >= 6: with 5 values even [min, max] covers the median with only 93.75 %, so below 6
values there is no 95 % interval (None) and the cell cannot be converged. vs_ref_ci95 is that
interval over the server's vs_ref values in the cell; the reference's own median is treated as
fixed (its spread is the reference's own row).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.results import CellKey, Measurement

STATUS_ORDER = ("ok", "noisy", "client-bound", "degraded", "failed", "skipped")
_RANK = {s: i for i, s in enumerate(STATUS_ORDER)}

# A cell is converged when the 95 % CI of its median vs_ref lies within ±TOLERANCE of it.
TOLERANCE = 0.05
CI_MIN_N = 6  # the fewest values with a distribution-free 95 % CI of the median


def number(value) -> float | None:
    """A finite int or float as a float; None for anything else (None, a bool, NaN, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Stat:
    """Median, range and the 95 % CI of the median of one figure over a cell's measurements."""

    median: float
    low: float
    high: float
    n: int
    ci95: tuple[float, float] | None

    @property
    def relative_width(self) -> float:
        return (self.high - self.low) / self.median if self.median else 0.0

    @property
    def ci_half_width(self) -> float | None:
        """Half the CI as a share of the median (0.05 = ±5 %); None without a CI."""
        if self.ci95 is None or not self.median:
            return None
        return max(self.median - self.ci95[0], self.ci95[1] - self.median) / abs(self.median)


def _binom_cdf(k: int, n: int) -> float:
    """P(B <= k) for B ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n


def median_ci95(values: Iterable[float]) -> tuple[float, float] | None:
    """Distribution-free 95 % CI of the median from order statistics (see the module docstring);
    None with fewer than CI_MIN_N values."""
    xs = sorted(values)
    n = len(xs)
    if n < CI_MIN_N:
        return None
    # The interval [x_(j), x_(n+1-j)] (1-based) misses the median when at most j-1 values lie
    # below it or at most j-1 above: coverage 1 - 2 P(B <= j-1). Take the largest j with >= 95 %.
    j = 1
    while j + 1 <= n // 2 and 1 - 2 * _binom_cdf(j, n) >= 0.95:
        j += 1
    return xs[j - 1], xs[n - j]


def stat(values: Iterable[float | None]) -> Stat | None:
    xs = [v for v in (number(x) for x in values) if v is not None]
    if not xs:
        return None
    return Stat(statistics.median(xs), min(xs), max(xs), len(xs), median_ci95(xs))


def converged(ci: tuple[float, float] | list[float] | None, median: float | None,
              tolerance: float = TOLERANCE) -> bool:
    """The CI lies within ±tolerance of the median."""
    if ci is None or not median:
        return False
    return ci[0] >= median * (1 - tolerance) and ci[1] <= median * (1 + tolerance)


# -- The fold --------------------------------------------------------------------------------------


def worst(statuses: Iterable[str]) -> str:
    """The worst status in STATUS_ORDER; skipped only when everything was skipped."""
    statuses = list(statuses)
    measured = [s for s in statuses if s != "skipped"]
    pool = measured or statuses
    return max(pool, key=lambda s: _RANK.get(s, len(STATUS_ORDER))) if pool else "skipped"


@dataclass
class CellSummary:
    """One server at one cell: its measurements folded (see the module docstring)."""

    server: str
    family: str | None
    cell: CellKey
    measurements: list[Measurement]

    def __post_init__(self) -> None:
        ms = self.measurements
        self.measured = [m for m in ms if m.measured]
        self.status = worst(m.status for m in ms)
        self.verdict = worst(m.verdict for m in ms)
        self.client_bound = any(m.client_bound for m in self.measured)
        self.noisy = any(m.noisy for m in self.measured)
        self.noisy_count = sum(1 for m in self.measured if m.noisy)
        self.is_reference = any(m.is_reference for m in ms)
        self.reasons = list(dict.fromkeys(m.reason for m in ms if m.reason))
        tails = [m.stderr_tail for m in ms if m.stderr_tail]
        self.stderr_tail = tails[0] if tails else None
        self.target = next((m.target for m in ms if m.target), None)
        self.engine = next((m.engine for m in ms if m.engine), None)
        self.rounds = len(ms)
        windows = [m.window_s for m in ms if m.window_s is not None]
        self.window_s = max(windows) if windows else None

    def stat(self, key) -> Stat | None:
        """A figure over the measured repeats: a field name ('latency_us.p99' reaches in), a
        Measurement property name, or a function of a Measurement."""
        if callable(key):
            get = key
        else:
            def get(m):
                return getattr(m, key) if isinstance(getattr(type(m), key, None), property) \
                    else m.get(key)
        return stat(get(m) for m in self.measured)

    @property
    def rps(self) -> Stat | None:
        return self.stat("rps")

    @property
    def p99_us(self) -> Stat | None:
        return self.stat("latency_us.p99")

    @property
    def cpu_us_per_request(self) -> Stat | None:
        return self.stat("server_cpu_us_per_request")

    @property
    def ctx_per_request(self) -> Stat | None:
        return self.stat("ctx_per_request")

    @property
    def mem_per_conn_bytes(self) -> Stat | None:
        return self.stat("mem_per_conn_bytes")

    @property
    def vs_ref_stat(self) -> Stat | None:
        return self.stat("vs_ref")

    @property
    def vs_ref(self) -> float | None:
        s = self.vs_ref_stat
        return s.median if s else None

    @property
    def vs_ref_ci95(self) -> tuple[float, float] | None:
        s = self.vs_ref_stat
        return s.ci95 if s else None

    @property
    def cpu_vs_ref(self) -> float | None:
        s = self.stat("cpu_vs_ref")
        return s.median if s else None

    @property
    def converged(self) -> bool:
        s = self.vs_ref_stat
        return bool(s and converged(s.ci95, s.median))

    @property
    def repeats_text(self) -> str:
        """'2/3': measurements that measured something, of those run ('—' when none ran)."""
        return "—" if self.status == "skipped" else f"{len(self.measured)}/{len(self.measurements)}"


def fold(measurements: Iterable[Measurement]) -> list[CellSummary]:
    """One CellSummary per (server, cell), in cell order, then in the order servers first appear."""
    groups: dict[tuple[str, CellKey], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.server, m.cell), []).append(m)
    servers = list(dict.fromkeys(server for server, _ in groups))
    keys = sorted(groups, key=lambda k: (k[1].sort_key, servers.index(k[0])))
    return [CellSummary(server, next((m.family for m in groups[(server, cell)] if m.family), None),
                        cell, groups[(server, cell)]) for server, cell in keys]

