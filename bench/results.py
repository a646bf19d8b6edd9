"""The results model: one typed, versioned record per measurement, one fold of repeats, every
derived metric computed here once. The runner writes it; the report, `bench compare` and the
exports read it; nothing else re-derives a metric.

    from bench import results
    run = results.read_run("results/20261201-221500-quick")   # Run: meta + measurements
    for s in run.summaries():                                  # one CellSummary per server x cell
        print(s.server, s.cell.label, s.verdict, s.rps.median, s.vs_ref, s.vs_ref_ci95)

API (kept stable; the report and compare build on it):

- ``SCHEMA_VERSION`` (2). Records of older runs carry no "schema" field: schema 1. Every field of
  schema 1 is kept; schema 2 adds engine, round, is_reference, vs_ref, cpu_vs_ref, converged,
  vs_ref_ci95, noise, window_s and target (bench/run/__init__.py's docstring lists the fields a
  run writes). A reader treats an absent field as null.
- ``Measurement.from_dict(d)`` / ``.to_dict()``: one line of results.jsonl. The common fields are
  attributes; every other field is kept in ``extra`` and written back unchanged, so a record
  round-trips byte for byte in content. Derived metrics are properties (``ctx_per_request``,
  ``mem_per_conn_bytes``, ``bytes_per_s``, ``held_conns``, ``verdict``...).
- ``CellKey``: one load setting (conns, size_bytes, rate, fraction); ``Measurement.cell``.
- ``read_run(run_dir) -> Run``; ``Run.meta``, ``Run.measurements``, ``Run.summaries()``,
  ``Run.warnings``. A last line cut mid-write (an interrupted run, a full disk) is skipped with a
  ``CutLineWarning`` naming the line; any other bad line is a ``ResultsError`` naming the line.
- ``write_records(run_dir, records)``: results.jsonl written atomically (temp file + rename), so a
  reader never sees half a rewrite. ``append_record(run_dir, record)``: one line, flushed.
- ``annotate(records)``: sets vs_ref, cpu_vs_ref, vs_ref_ci95 and converged on every record
  from the records themselves, each ratio paired with the reference's measurement of the same
  round (the runner calls it before each rewrite).
- ``fold(measurements) -> list[CellSummary]``: the one fold of repeats.
- ``median_ci95(values)``: the confidence interval of a median (see below).

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

import json
import math
import os
import statistics
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.report.fmt import fmt_rps, fmt_share, fmt_size

SCHEMA_VERSION = 2
REFERENCE = "c-epoll"  # the registry name of the C reference server (servers/c/echo_epoll.c)

STATUSES = ("ok", "degraded", "failed", "skipped")  # what a record's status field may hold
STATUS_ORDER = ("ok", "noisy", "client-bound", "degraded", "failed", "skipped")
_RANK = {s: i for i, s in enumerate(STATUS_ORDER)}

# A cell is converged when the 95 % CI of its median vs_ref lies within ±TOLERANCE of it.
TOLERANCE = 0.05
CI_MIN_N = 6  # the fewest values with a distribution-free 95 % CI of the median

# A window is noisy when, during it, other processes used more than FOREIGN_NOISY_PCT % of all the
# CPUs' time, or the hypervisor stole more than STEAL_NOISY_PCT % of it. On a 2-core machine 10 %
# is a fifth of a core: enough to take a server's core for a scheduler slice now and then.
FOREIGN_NOISY_PCT = 10.0
STEAL_NOISY_PCT = 5.0

# Per-connection memory is reported from this many connections up: below, the growth is lost in
# the interpreter's own noise (a few hundred KiB either way).
MEM_PER_CONN_MIN_CONNS = 10
# The machine is busy at the start when other processes use more than this share of all CPUs.
BUSY_AT_START_PCT = 10.0
# A percentile needs about this many samples beyond it to be more than a few requests' say.
TAIL_MIN_SAMPLES = 10


class ResultsError(ValueError):
    """A run directory that cannot be read; the message names the file, the line and the fix."""


class CutLineWarning(UserWarning):
    """The last line of results.jsonl was cut mid-write; it was skipped."""


# -- One load setting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellKey:
    """Closed loop (rate and fraction None), open loop at ``rate`` requests/s in total, or open
    loop at ``fraction`` of each server's own closed-loop peak (each server at its own rate, which
    its records hold; the cell is the fraction, so ``rate`` is None in the key)."""

    conns: int
    size_bytes: int
    rate: float | None = None
    fraction: float | None = None

    @classmethod
    def of(cls, d: dict) -> CellKey:
        fraction = d.get("rate_fraction_of_peak")
        rate = None if fraction is not None else d.get("rate")
        return cls(int(d["conns"]), int(d["size_bytes"]),
                   None if rate is None else float(rate),
                   None if fraction is None else float(fraction))

    @property
    def is_open(self) -> bool:
        return self.rate is not None or self.fraction is not None

    @property
    def sort_key(self) -> tuple:
        """Closed loop first, then by size, connections, rate or share."""
        return (self.is_open, self.size_bytes, self.conns, self.fraction is not None,
                self.rate or self.fraction or 0.0)

    @property
    def label(self) -> str:
        """The one label of a cell: '16 conns × 1 KiB', '100 conns × 1 KiB at 50 % of peak',
        '16 conns × 1 KiB at 2,000 req/s'."""
        text = f"{self.conns:,} conn{'s' if self.conns != 1 else ''} × {fmt_size(self.size_bytes)}"
        if self.fraction is not None:
            return f"{text} at {fmt_share(self.fraction)} of peak"
        return text if self.rate is None else f"{text} at {fmt_rps(self.rate)} req/s"


# -- One measurement -------------------------------------------------------------------------------


def _num(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class Measurement:
    """One line of results.jsonl. Attributes for the fields everyone reads; the rest in ``extra``."""

    server: str
    conns: int
    size_bytes: int
    status: str
    family: str | None = None
    lesson: str | None = None
    rate: float | None = None
    rate_fraction_of_peak: float | None = None
    mode: str = "closed"
    repeat: int = 0
    reason: str | None = None
    rps: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    latency_us: dict | None = None
    errors: dict | None = None
    conns_established: int | None = None
    client_bound: bool = False
    server_cpu_us_per_request: float | None = None
    stderr_tail: str | None = None
    # schema 2 (absent in older runs: None)
    schema: int = 1
    engine: str | None = None
    round: int | None = None
    is_reference: bool = False
    vs_ref: float | None = None
    cpu_vs_ref: float | None = None
    converged: bool | None = None
    vs_ref_ci95: list[float] | None = None
    noise: dict | None = None
    window_s: float | None = None
    target: dict | None = None
    extra: dict = field(default_factory=dict)

    _FIELDS = ("server", "conns", "size_bytes", "status", "family", "lesson", "rate",
               "rate_fraction_of_peak", "mode", "repeat", "reason", "rps", "requests",
               "duration_s", "latency_us", "errors", "conns_established", "client_bound",
               "server_cpu_us_per_request", "stderr_tail", "schema", "engine", "round",
               "is_reference", "vs_ref", "cpu_vs_ref", "converged", "vs_ref_ci95", "noise",
               "window_s", "target")

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        """Any schema: absent fields take their defaults (None, or the schema-1 meaning)."""
        problem = check_record(d)
        if problem:
            raise ResultsError(problem)
        known = {k: d[k] for k in cls._FIELDS if k in d and d[k] is not None}
        known["client_bound"] = bool(d.get("client_bound"))
        known["is_reference"] = bool(d.get("is_reference"))
        extra = {k: v for k, v in d.items() if k not in cls._FIELDS}
        m = cls(**known, extra=extra)
        m._order = list(d)  # written back in the order it was read
        return m

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self._FIELDS}
        out.update(self.extra)
        order = getattr(self, "_order", None) or []
        ordered = {k: out[k] for k in order if k in out}
        ordered.update(out)
        return ordered

    def get(self, key: str, default=None):
        """A field by name, attribute or extra; 'latency_us.p99' reaches in."""
        value: object = self.to_dict() if "." in key else None
        if value is None:
            return getattr(self, key) if key in self._FIELDS else self.extra.get(key, default)
        for part in key.split("."):
            if not isinstance(value, dict):
                return default
            value = value.get(part)
        return default if value is None else value

    # -- what it is

    @property
    def cell(self) -> CellKey:
        return CellKey.of({"conns": self.conns, "size_bytes": self.size_bytes, "rate": self.rate,
                           "rate_fraction_of_peak": self.rate_fraction_of_peak})

    @property
    def measured(self) -> bool:
        """It measured something: ok or degraded, with a rate."""
        return self.status in ("ok", "degraded") and bool(self.rps)

    @property
    def noisy(self) -> bool:
        return bool((self.noise or {}).get("noisy"))

    @property
    def verdict(self) -> str:
        """The status, or for an ok measurement what the bench can say about the figure."""
        if self.status == "ok" and self.client_bound:
            return "client-bound"
        if self.status == "ok" and self.noisy:
            return "noisy"
        return self.status

    # -- derived metrics (computed here, nowhere else)

    @property
    def ctx_per_request(self) -> float | None:
        """Context switches per request, from the raw counts when the record has them (the
        rounded field reads 0.0 for a loop that switches once per thousand requests)."""
        vol = _num(self.extra.get("server_ctx_voluntary"))
        invol = _num(self.extra.get("server_ctx_involuntary"))
        if vol is not None and invol is not None and self.requests:
            return (vol + invol) / self.requests
        return _num(self.extra.get("ctx_switches_per_request"))

    @property
    def bytes_per_s(self) -> float | None:
        value = _num(self.extra.get("bytes_per_s"))
        if value is None and self.rps is not None:
            value = self.rps * self.size_bytes
        return value

    @property
    def mem_per_conn_bytes(self) -> float | None:
        """Growth of the server's tree over its idle size, per connection. Older runs lack the
        field: worked out from USS (or RSS) and the idle size. A null field is the runner saying
        "too few connections to tell", not a gap to fill."""
        if "server_mem_per_conn_bytes" in self.extra:
            return _num(self.extra["server_mem_per_conn_bytes"])
        used = _num(self.extra.get("server_uss_bytes")) or _num(self.extra.get("server_rss_bytes"))
        idle = _num(self.extra.get("server_mem_idle_bytes"))
        if used is not None and idle is not None and self.conns:
            return (used - idle) / self.conns
        return None

    @property
    def held_conns(self) -> float | None:
        """Connections served to the end: connected, and not reset, unserved or closed for a
        corrupted echo."""
        if not isinstance(self.errors, dict):
            return None
        established = self.conns if self.conns_established is None else self.conns_established
        lost = sum(self.errors.get(k) or 0 for k in ("reset", "unserved", "mismatch"))
        return max(0.0, float(established - lost))


def check_record(d: object) -> str | None:
    """Why ``d`` is not a results record, or None."""
    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object"
    for key in ("server", "status", "conns", "size_bytes"):
        if key not in d:
            return f"no {key!r} field"
    if d["status"] not in STATUSES:
        return f"status {d['status']!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(d["conns"], int) or not isinstance(d["size_bytes"], int):
        return "conns and size_bytes must be integers"
    return None


# -- Figures computed from raw readings (the runner calls these; the report reads their output) ---


def cpu_us_per_request(cpu_s: float, span_s: float, requests: int, duration_s: float) -> float | None:
    """The CPU the sampled span cost, over the round trips completed in that span: the rate over
    the load's window, scaled to the span (which brackets the window to within one reading)."""
    if not requests or not duration_s or not span_s:
        return None
    return cpu_s * 1e6 / (requests / duration_s * span_s)


def per_request(count: float, span_s: float, requests: int, duration_s: float) -> float | None:
    if not requests or not duration_s or not span_s:
        return None
    return count / (requests / duration_s * span_s)


def mem_per_conn(idle_bytes: float | None, busy_bytes: float | None, conns: int) -> float | None:
    if idle_bytes is None or busy_bytes is None or conns < MEM_PER_CONN_MIN_CONNS:
        return None
    return (busy_bytes - idle_bytes) / conns


def noise_verdict(steal_pct: float | None, foreign_cpu_pct: float | None) -> tuple[bool, str | None]:
    """(noisy, why): a window is noisy past FOREIGN_NOISY_PCT or STEAL_NOISY_PCT."""
    why = []
    if foreign_cpu_pct is not None and foreign_cpu_pct > FOREIGN_NOISY_PCT:
        why.append(f"other processes used {foreign_cpu_pct:.0f} % of the CPUs "
                   f"(threshold {FOREIGN_NOISY_PCT:.0f} %)")
    if steal_pct is not None and steal_pct > STEAL_NOISY_PCT:
        why.append(f"the hypervisor stole {steal_pct:.1f} % of CPU time "
                   f"(threshold {STEAL_NOISY_PCT:.0f} %)")
    return bool(why), "; ".join(why) or None


def window_noise(w: dict, *, client_cpu_s: float | None, client_duration_s: float | None,
                 cpus: int, loadavg_1m: float | None, freq_mhz: float | None,
                 governor: str | None) -> dict:
    """The record's noise figures for one window, from the sampler's window (bench/run/sample.py:
    the machine's CPU counters and the runner's own CPU at the window's edges, the server tree's
    CPU between them) and the generator's own CPU over its window. Foreign CPU is what the
    machine ran besides the server's tree, the generator's workers and the runner itself."""
    steal_pct = foreign_pct = None
    span = w.get("span_s")
    total = w.get("machine_total_s")
    if span and total:
        steal_pct = round(100.0 * w["machine_steal_s"] / total, 2)
        client = (client_cpu_s or 0.0) * (span / client_duration_s if client_duration_s else 1.0)
        foreign_s = w["machine_busy_s"] - w.get("cpu_s", 0.0) - client - w.get("runner_cpu_s", 0.0)
        # the counters tick at 100 Hz: a small negative figure is rounding, not negative work
        foreign_pct = round(max(0.0, 100.0 * foreign_s / (span * cpus)), 1)
    noisy, why = noise_verdict(steal_pct, foreign_pct)
    return {"steal_pct": steal_pct, "foreign_cpu_pct": foreign_pct,
            "loadavg_1m": None if loadavg_1m is None else round(loadavg_1m, 2),
            "freq_mhz": freq_mhz, "governor": governor, "noisy": noisy, "why": why}


def noise_summary(records: Iterable[dict], busy_at_start: dict | None) -> dict:
    """meta.json's machine-noise summary over the run's windows."""
    noises = [r["noise"] for r in records if isinstance(r.get("noise"), dict)]

    def agg(key):
        values = [n[key] for n in noises if _num(n.get(key)) is not None]
        return ({"median": round(statistics.median(values), 2), "max": round(max(values), 2)}
                if values else None)

    return {"windows": len(noises), "noisy_windows": sum(1 for n in noises if n.get("noisy")),
            "steal_pct": agg("steal_pct"), "foreign_cpu_pct": agg("foreign_cpu_pct"),
            "loadavg_1m": agg("loadavg_1m"), "busy_at_start": busy_at_start,
            "thresholds": {"foreign_cpu_pct": FOREIGN_NOISY_PCT, "steal_pct": STEAL_NOISY_PCT}}


def tail_samples(requests: int | None, percentile: float) -> float | None:
    """How many requests lie beyond ``percentile`` (99.99 -> 0.01 % of them)."""
    if not requests:
        return None
    return requests * (100.0 - percentile) / 100.0


# -- Statistics ------------------------------------------------------------------------------------


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
    xs = [v for v in (_num(x) for x in values) if v is not None]
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
        elif isinstance(getattr(Measurement, key, None), property):
            def get(m):
                return getattr(m, key)
        else:
            def get(m):
                return m.get(key)
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


# -- Ratios to the reference -----------------------------------------------------------------------


def annotate(records: list[dict], tolerance: float = TOLERANCE) -> None:
    """Set vs_ref, cpu_vs_ref, vs_ref_ci95 and converged on every record (dicts, in place).

    Beside, where the record has one (beside_ref: the reference measured in the same window, in
    alternating slices of a few tens of milliseconds, bench/run/measure.py): the ratio is to
    that, which shares even the machine's sub-second drift. Otherwise paired by round: a record's
    ratio is to the reference's measurement in the same cell and the same round, which ran within seconds of it on a machine in the same state. On a VM the speed
    of the whole machine drifts from round to round; a pair shares that drift and the ratio
    cancels it, where a ratio to the reference's median over all rounds keeps it (measured on
    three consecutive quick runs here: medians of paired ratios at 16 conns x 1 KiB agreed within
    ±10 % for 18-20 of 20 servers between runs, ratios to the median for 6-14). A round without a
    reference measurement falls back to the reference's median over the rounds measured so far.
    Without a measured reference in a cell, the fields are null there."""
    by_cell: dict[CellKey, list[dict]] = {}
    for r in records:
        by_cell.setdefault(CellKey.of(r), []).append(r)
    for group in by_cell.values():
        ref = [r for r in group if r.get("is_reference") and r.get("status") in ("ok", "degraded")
               and r.get("rps")]
        ref_rps = statistics.median(r["rps"] for r in ref) if ref else None
        ref_cpus = [r["server_cpu_us_per_request"] for r in ref if r.get("server_cpu_us_per_request")]
        ref_cpu = statistics.median(ref_cpus) if ref_cpus else None
        ref_by_round = {r.get("round", r.get("repeat")): r for r in ref}
        per_server: dict[str, list[dict]] = {}
        for r in group:
            measured = r.get("status") in ("ok", "degraded") and r.get("rps")
            beside = r.get("beside_ref") if isinstance(r.get("beside_ref"), dict) else None
            if beside and beside.get("ok") and beside.get("rps"):
                # measured in the same window, in alternating slices: the tightest pair there is
                base_rps = beside["rps"]
                base_cpu = beside.get("server_cpu_us_per_request") or ref_cpu
                r["ref_basis"] = "beside"
            else:
                pair = ref_by_round.get(r.get("round", r.get("repeat")))
                base_rps = pair["rps"] if pair else ref_rps
                base_cpu = (pair.get("server_cpu_us_per_request") if pair else None) or ref_cpu
                r["ref_basis"] = "round" if pair else "median"
            r["vs_ref"] = round(r["rps"] / base_rps, 4) if measured and base_rps else None
            cpu = r.get("server_cpu_us_per_request")
            r["cpu_vs_ref"] = round(cpu / base_cpu, 4) if measured and cpu and base_cpu else None
            per_server.setdefault(r["server"], []).append(r)
        for rs in per_server.values():
            s = stat(r["vs_ref"] for r in rs)
            ci = [round(s.ci95[0], 4), round(s.ci95[1], 4)] if s and s.ci95 else None
            done = bool(s and converged(s.ci95, s.median, tolerance))
            for r in rs:
                r["vs_ref_ci95"] = ci
                r["converged"] = done


# -- A run on disk ---------------------------------------------------------------------------------


@dataclass
class Run:
    dir: Path
    meta: dict
    measurements: list[Measurement]
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.dir.name)

    @property
    def schema(self) -> int:
        return int(self.meta.get("schema") or 1)

    @property
    def reference(self) -> dict:
        """meta.json's reference entry: {"name", "available", "reason"}; for older runs, unknown."""
        return self.meta.get("reference") or {"name": REFERENCE, "available": False,
                                              "reason": "recorded before the bench had a reference"}

    @property
    def interrupted(self) -> dict | None:
        return self.meta.get("interrupted")

    @property
    def families(self) -> dict[str, str]:
        """server -> family, from the run itself (records, then meta), never today's registry."""
        out: dict[str, str] = {}
        for m in self.measurements:
            if m.family:
                out.setdefault(m.server, m.family)
        for name, family in (self.meta.get("families") or {}).items():
            out.setdefault(name, family)
        return out

    def cells(self) -> list[CellKey]:
        cells = {m.cell for m in self.measurements}
        for spec in self.meta.get("cells") or []:
            if isinstance(spec, dict) and "conns" in spec and "size_bytes" in spec:
                cells.add(CellKey.of(spec))
        return sorted(cells, key=lambda c: c.sort_key)

    def summaries(self) -> list[CellSummary]:
        if not hasattr(self, "_summaries"):
            self._summaries = fold(self.measurements)
        return self._summaries


def read_run(run_dir: str | Path) -> Run:
    """meta.json and results.jsonl of a run. ResultsError (with what to do) when they cannot be
    used; a cut last line is skipped with a CutLineWarning (also in ``Run.warnings``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: no such run directory. Run `make bench` to measure one, "
                           f"or pass a directory under results/ (ls results/).")
    path = run_dir / "results.jsonl"
    if not path.is_file():
        raise ResultsError(f"{run_dir} has no results.jsonl, so it is not a bench run directory. "
                           f"Pass a directory written by `python -m bench run` (ls results/).")
    meta: dict = {}
    meta_path = run_dir / "meta.json"
    notes: list[str] = []
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{meta_path} is not valid JSON ({exc}); it was damaged or cut "
                               f"short. Measure the run again with `make bench`.") from None
        if not isinstance(meta, dict):
            raise ResultsError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object; "
                               f"measure the run again with `make bench`.")
    else:
        notes.append(f"{meta_path} is missing; the machine's details are unknown")
    lines = [(n, t) for n, t in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if t.strip()]
    measurements = []
    for i, (number, text) in enumerate(lines):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                note = (f"{path}, line {number}: cut mid-write ({exc}); skipped it and read the "
                        f"{len(measurements)} lines before it (an interrupted run leaves this: "
                        f"`python -m bench run --resume {run_dir}` measures what is missing)")
                warnings.warn(note, CutLineWarning, stacklevel=2)
                notes.append(note)
                break
            raise ResultsError(f"{path}, line {number}: not valid JSON ({exc}), and not the last "
                               f"line, so the file was damaged, not cut short: measure again with "
                               f"`make bench`.") from None
        problem = check_record(d)
        if problem:
            raise ResultsError(f"{path}, line {number}: {problem}. Was it written by "
                               f"`python -m bench run`? Measure again with `make bench`.")
        measurements.append(Measurement.from_dict(d))
    return Run(run_dir, meta, measurements, notes)


def write_records(run_dir: str | Path, records: Iterable[dict | Measurement]) -> Path:
    """results.jsonl, atomically: written to a temporary file in the same directory, flushed to
    disk, then renamed over the old one (rename within a file system is atomic)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.jsonl"
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".jsonl.tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            for r in records:
                f.write(json.dumps(r.to_dict() if isinstance(r, Measurement) else r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def append_record(run_dir: str | Path, record: dict | Measurement) -> None:
    """One more line, flushed: a run killed outright keeps every measurement before it."""
    d = record.to_dict() if isinstance(record, Measurement) else record
    with (Path(run_dir) / "results.jsonl").open("a") as f:
        f.write(json.dumps(d) + "\n")
        f.flush()


def write_meta(run_dir: str | Path, meta: dict) -> Path:
    """meta.json, atomically like results.jsonl."""
    run_dir = Path(run_dir)
    fd, tmp = tempfile.mkstemp(prefix=".meta-", suffix=".json.tmp", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, run_dir / "meta.json")
    return run_dir / "meta.json"
