"""The statistics of a run: its records folded, one CellSummary per server x cell, each figure with
its interval, the one status order, and the one rule that ranks servers and ties them.
bench/results.py (the record) re-exports these names, so the report, the console and compare read
the whole model through `from bench import results`.

The one status order, mildest first (``STATUS_ORDER``):

    ok < noisy < client-bound < degraded < failed < skipped

A record's ``status`` stays one of ok, degraded, failed, skipped (what the server did); its
``verdict`` adds what the bench can say about the figure: an ok measurement in a window flagged
noisy is "noisy", one where the load generator saturated is "client-bound" (its req/s is a floor
for the server). A cell's status and verdict are the worst of its measurements', except that
skipped measurements count only when nothing in the cell was measured (a round the runner
skipped after a failure leaves the cell failed; one skipped after good rounds leaves it ok), and
that a noisy window is left out of a cell whose clean windows are more than half of its measured
ones (``CellSummary.left_out``): its figures then rest on the clean rounds, and the cell is ok.

Two kinds of figure, two intervals, each valid for small samples (``Stat.method``):

- **A ratio to the reference** (vs_ref, cpu_vs_ref): the figure is the geometric mean of the
  per-round ratios, each already paired (the server and the reference in the same window, or the
  same round), and its 95 % interval is Student's t-interval on their logarithms,
  exp(mean(log r) ± t(0.975, n-1) · sd(log r) / sqrt(n)). It exists from 2 rounds (wide: t is
  12.7 at n = 2, 4.3 at n = 3, 2.2 at n = 12), is symmetric on a log scale (a ratio of 2 and of
  1/2 are the same distance from 1), and treats a ratio, not a difference, as what varies from
  round to round. The reference's own ratio (1 by definition) has none.
- **An absolute figure** (req/s, p99, CPU µs per request, ...): the figure is the median over
  the rounds; its 95 % interval is distribution-free, from order statistics: for n sorted
  values, [x_(j), x_(n+1-j)] with the largest j such that P(j <= B <= n-j) >= 0.95 for
  B ~ Binomial(n, 1/2). It needs n >= 6 (with 5 values even [min, max] covers the median with
  only 93.75 %); below 6, the figure is shown with its range (min-max), never as a bare number.

A cell is converged when the 95 % interval of its vs_ref lies within ±TOLERANCE of it.

The one rule that ranks and ties (``rank``): walk the clean results by vs_ref, best first; the
best not yet placed leads a new group, and a server joins the leader's group when its interval
overlaps the leader's (never a neighbour's, so a tie cannot chain down the list). The reference
stands in the ranking at 1 with no spread, so a server whose interval holds 1 ties the C ceiling
and is never a win over it. Noisy, client-bound and degraded results are listed apart, never
ranked. Two servers are ordered beyond noise when their intervals do not overlap
(``Ranking.beyond_noise``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.results import CellKey, Measurement

STATUS_ORDER = ("ok", "noisy", "client-bound", "degraded", "failed", "skipped")
_RANK = {s: i for i, s in enumerate(STATUS_ORDER)}

# A cell is converged when the 95 % interval of its vs_ref lies within ±TOLERANCE of it.
TOLERANCE = 0.05
CI_MIN_N = 6  # the fewest values with a distribution-free 95 % CI of the median
RATIO_CI_MIN_N = 2  # the fewest rounds with a t-interval of a ratio
LEVEL = 0.95


def number(value) -> float | None:
    """A finite int or float as a float; None for anything else (None, a bool, NaN, a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# -- Student's t, without scipy ----------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz's
    method, as in Numerical Recipes' betacf)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p (0 < p < 1), by bisection on t_cdf."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie between 0 and 1, not {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        if t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def t_two_sided_p(t: float, df: float) -> float:
    """The two-sided p-value of a t statistic."""
    return min(1.0, 2.0 * (1.0 - t_cdf(abs(t), df)))


# -- Intervals ---------------------------------------------------------------------------------------


@dataclass
class Stat:
    """One figure over a cell's rounds: its value, range, count and 95 % interval.

    ``method`` says what the value and the interval are (see the module docstring): "median"
    (the median; the interval from order statistics, from CI_MIN_N values) or "geomean" (the
    geometric mean of ratios; Student's t-interval on their logs, from RATIO_CI_MIN_N)."""

    value: float
    low: float
    high: float
    n: int
    ci95: tuple[float, float] | None
    method: str = "median"

    @property
    def relative_width(self) -> float:
        return (self.high - self.low) / self.value if self.value else 0.0

    @property
    def ci_half_width(self) -> float | None:
        """The interval's larger half as a share of the value (0.05 = ±5 %); None without one."""
        if self.ci95 is None or not self.value:
            return None
        return max(self.value - self.ci95[0], self.ci95[1] - self.value) / abs(self.value)

    @property
    def spread(self) -> tuple[float, float] | None:
        """What to show beside the value: the 95 % interval, else the range of two or more
        rounds; None for a single value."""
        if self.ci95 is not None:
            return self.ci95
        return (self.low, self.high) if self.n >= 2 else None


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
    while j + 1 <= n // 2 and 1 - 2 * _binom_cdf(j, n) >= LEVEL:
        j += 1
    return xs[j - 1], xs[n - j]


def log_t_interval(values: Iterable[float], level: float = LEVEL
                   ) -> tuple[float, tuple[float, float] | None] | None:
    """(the geometric mean, Student's t-interval on the logs mapped back) of positive values;
    the interval None with fewer than RATIO_CI_MIN_N; None without a positive value."""
    logs = [math.log(v) for v in values if v is not None and v > 0]
    if not logs:
        return None
    centre = statistics.fmean(logs)
    if len(logs) < RATIO_CI_MIN_N:
        return math.exp(centre), None
    half = (t_quantile(0.5 + level / 2, len(logs) - 1) * statistics.stdev(logs)
            / math.sqrt(len(logs)))
    return math.exp(centre), (math.exp(centre - half), math.exp(centre + half))


def stat(values: Iterable[float | None]) -> Stat | None:
    """An absolute figure: the median, the range, and the CI of the median (n >= CI_MIN_N)."""
    xs = [v for v in (number(x) for x in values) if v is not None]
    if not xs:
        return None
    return Stat(statistics.median(xs), min(xs), max(xs), len(xs), median_ci95(xs))


def ratio_stat(values: Iterable[float | None]) -> Stat | None:
    """A ratio: the geometric mean of the positive values, their range, and the t-interval on
    their logs (n >= RATIO_CI_MIN_N)."""
    xs = [v for v in (number(x) for x in values) if v is not None and v > 0]
    found = log_t_interval(xs)
    if found is None:
        return None
    centre, ci = found
    return Stat(centre, min(xs), max(xs), len(xs), ci, method="geomean")


def converged(ci: tuple[float, float] | list[float] | None, value: float | None,
              tolerance: float = TOLERANCE) -> bool:
    """The interval lies within ±tolerance of the value."""
    if ci is None or not value:
        return False
    return ci[0] >= value * (1 - tolerance) and ci[1] <= value * (1 + tolerance)


# -- The fold --------------------------------------------------------------------------------------


def worst(statuses: Iterable[str]) -> str:
    """The worst status in STATUS_ORDER; skipped only when everything was skipped."""
    statuses = list(statuses)
    measured = [s for s in statuses if s != "skipped"]
    pool = measured or statuses
    return max(pool, key=lambda s: _RANK.get(s, len(STATUS_ORDER))) if pool else "skipped"


def distinct_reasons(reasons: Iterable[str]) -> list[str]:
    """Each thing said once: the rounds of a cell often give one reason with other figures (112 of
    128 connections unserved, at 8, 9 or 10 µs of CPU per request); the first round's words stand
    for all that differ only in their numbers."""
    first: dict[str, str] = {}
    for reason in reasons:
        first.setdefault(re.sub(r"\d[\d,.]*", "#", reason), reason)
    return list(first.values())


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
        clean_windows = [m for m in self.measured if not m.noisy]
        # noisy windows left out when the clean ones are more than half: the figures rest on them
        self.left_out = (len(self.measured) - len(clean_windows)
                         if 2 * len(clean_windows) > len(self.measured) else 0)
        self.used = clean_windows if self.left_out else self.measured
        left = {id(m) for m in self.measured} - {id(m) for m in self.used}
        judged = [m for m in ms if id(m) not in left]
        self.status = worst(m.status for m in judged)
        self.verdict = worst(m.verdict for m in judged)
        self.client_bound = any(m.client_bound for m in self.used)
        self.noisy = any(m.noisy for m in self.measured)
        self.noisy_count = sum(1 for m in self.measured if m.noisy)
        self.is_reference = any(m.is_reference for m in ms)
        self.reasons = distinct_reasons(m.reason for m in ms if m.reason)
        tails = [m.stderr_tail for m in ms if m.stderr_tail]
        self.stderr_tail = tails[0] if tails else None
        self.target = next((m.target for m in ms if m.target), None)
        self.engine = next((m.engine for m in ms if m.engine), None)
        self.rounds = len(ms)
        windows = [m.window_s for m in ms if m.window_s is not None]
        self.window_s = max(windows) if windows else None

    def stat(self, key) -> Stat | None:
        """An absolute figure over the rounds used: a field name ('latency_us.p99' reaches in),
        a Measurement property name, or a function of a Measurement."""
        return stat(self._values(key))

    def _values(self, key) -> list:
        if callable(key):
            get = key
        else:
            def get(m):
                return getattr(m, key) if isinstance(getattr(type(m), key, None), property) \
                    else m.get(key)
        return [get(m) for m in self.used]

    @property
    def clean(self) -> bool:
        """A result that may be ranked and credited as a leader: measured, and neither noisy,
        client-bound nor degraded (a server that held 1,020 of 10,000 connections leads
        nothing)."""
        return self.verdict == "ok" and self.rps is not None

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
        """The ratio of req/s to the reference's: the geometric mean of the paired per-round
        ratios and its t-interval (none for the reference itself: 1 by definition)."""
        if self.is_reference:
            return None
        return ratio_stat(self._values("vs_ref"))

    @property
    def vs_ref(self) -> float | None:
        if self.is_reference:
            return 1.0 if any(m.vs_ref is not None for m in self.used) else None
        s = self.vs_ref_stat
        return s.value if s else None

    @property
    def vs_ref_ci95(self) -> tuple[float, float] | None:
        s = self.vs_ref_stat
        return s.ci95 if s else None

    @property
    def cpu_vs_ref_stat(self) -> Stat | None:
        return None if self.is_reference else ratio_stat(self._values("cpu_vs_ref"))

    @property
    def cpu_vs_ref(self) -> float | None:
        s = self.cpu_vs_ref_stat
        return s.value if s else None

    @property
    def converged(self) -> bool:
        s = self.vs_ref_stat
        return bool(s and converged(s.ci95, s.value))

    @property
    def served_all(self) -> bool | None:
        """Every connection served to the end in every round used (None: not recorded). A
        per-connection figure of a cell that left some unserved divides by connections the
        server never held."""
        held = [m.held_conns for m in self.used]
        if not held or any(h is None for h in held):
            return None
        return min(held) >= self.cell.conns

    @property
    def served_text(self) -> str | None:
        """'served 16 of 128 connections' where some were left unserved, else None."""
        held = [m.held_conns for m in self.used if m.held_conns is not None]
        if not held or min(held) >= self.cell.conns:
            return None
        return f"served {min(held):,.0f} of {self.cell.conns:,} connections"

    @property
    def rounds_text(self) -> str:
        """'2/3': rounds that measured something, of those run ('—' when none ran); '11/12 (1
        noisy left out)' when a noisy window was left out."""
        if self.status == "skipped":
            return "—"
        text = f"{len(self.measured)}/{len(self.measurements)}"
        return text + (f" ({self.left_out} noisy left out)" if self.left_out else "")


def fold(measurements: Iterable[Measurement]) -> list[CellSummary]:
    """One CellSummary per (server, cell), in cell order, then in the order servers first appear."""
    groups: dict[tuple[str, CellKey], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.server, m.cell), []).append(m)
    servers = list(dict.fromkeys(server for server, _ in groups))
    keys = sorted(groups, key=lambda k: (k[1].sort_key, servers.index(k[0])))
    return [CellSummary(server, next((m.family for m in groups[(server, cell)] if m.family), None),
                        cell, groups[(server, cell)]) for server, cell in keys]


# -- The one rule that ranks and ties ----------------------------------------------------------------


@dataclass
class Placed:
    """A ranked result: its figure, its interval (None: one round, no interval) and its group."""

    summary: CellSummary
    value: float
    ci: tuple[float, float] | None
    group: int = 0

    @property
    def server(self) -> str:
        return self.summary.server

    @property
    def bounds(self) -> tuple[float, float]:
        """The interval, or the whole line for a result without one (it cannot be ordered)."""
        return self.ci if self.ci is not None else (-math.inf, math.inf)

    def overlaps(self, other: Placed) -> bool:
        (a_low, a_high), (b_low, b_high) = self.bounds, other.bounds
        return a_low <= b_high and b_low <= a_high


@dataclass
class Ranking:
    """One cell's results in the one order (see the module docstring): ``placed``, best first,
    each with its group (0 = the leading group); ``apart``, the measured results that may not
    be ranked (noisy, client-bound, degraded), best first; ``by_ratio``: ranked on vs_ref (the
    reference at 1), else on req/s (a run without a reference)."""

    cell: CellKey
    placed: list[Placed]
    apart: list[CellSummary]
    by_ratio: bool
    reference: CellSummary | None = None
    groups: list[list[Placed]] = field(init=False)

    def __post_init__(self) -> None:
        self.groups = []
        leader: Placed | None = None
        for p in self.placed:
            if leader is None or not p.overlaps(leader):
                leader = p
                self.groups.append([])
            p.group = len(self.groups) - 1
            self.groups[-1].append(p)

    @property
    def servers(self) -> list[Placed]:
        """The ranked results but the reference's."""
        return [p for p in self.placed if not p.summary.is_reference]

    def beyond_noise(self, a: str, b: str) -> int:
        """+1 when `a` is ahead of `b` beyond noise (their intervals do not overlap), -1 when
        behind, 0 when they tie or either is not ranked."""
        found = {p.server: p for p in self.placed}
        if a not in found or b not in found or found[a].overlaps(found[b]):
            return 0
        return 1 if found[a].value > found[b].value else -1

    @property
    def separated_top(self) -> int:
        """How many results at the top stand apart beyond noise from every other ranked one
        (the reference among them)."""
        count = 0
        for p in self.placed:
            if any(q is not p and p.overlaps(q) for q in self.placed):
                break
            count += 1
        return count

    @property
    def has_intervals(self) -> bool:
        return any(p.ci is not None for p in self.placed)

    @property
    def ties(self) -> list[list[Placed]]:
        """The groups of two or more."""
        return [g for g in self.groups if len(g) > 1]


def rank(summaries: Iterable[CellSummary], cell: CellKey, *, by_ratio: bool | None = None
         ) -> Ranking:
    """The one ranking of `cell` from its summaries (see the module docstring). `by_ratio`:
    rank on vs_ref (default: where a server has one), else on req/s."""
    outs = [o for o in summaries if o.cell == cell and o.measured]
    reference = next((o for o in outs if o.is_reference), None)
    if by_ratio is None:
        by_ratio = any(o.vs_ref is not None for o in outs if not o.is_reference)
    placed, apart = [], []
    for o in outs:
        if o.is_reference and by_ratio:
            placed.append(Placed(o, 1.0, (1.0, 1.0)))
            continue
        s = o.vs_ref_stat if by_ratio else ratio_stat(m.rps for m in o.used)
        if s is None:
            continue
        if o.clean:
            placed.append(Placed(o, s.value, s.ci95))
        else:
            apart.append(o)

    def key(o: CellSummary) -> float:
        s = o.vs_ref_stat if by_ratio else o.rps
        return s.value if s else 0.0

    placed.sort(key=lambda p: (-p.value, p.server))
    apart.sort(key=lambda o: (-key(o), o.server))
    return Ranking(cell, placed, apart, by_ratio, reference)
