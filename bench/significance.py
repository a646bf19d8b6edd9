"""The two-run test of `bench compare`: is a server's change between two runs beyond noise?

Per server x cell, the per-round ratios to the reference (logs) of run A against run B: Welch's
t-test of their difference's distance beyond a margin (a minimum-effect test), with the spread of
servers' changes from run to run (between_runs: the shift a cell's servers share and a robust
Paule-Mandel estimate of the spread around it) added to the rounds' own; then Holm's step-down
correction over every cell tested. bench/compare.py applies it and says what it found;
docs/bench.md ("make compare") tells why each choice.
"""

from __future__ import annotations

import math
import statistics

from bench import stats as st

# A server changed only when a cell moved by at least this much (the geometric mean of its ratios,
# B over A), however sure the test: below it a change is not worth a verdict on a shared 2-core VM.
MIN_CHANGE = 0.05
# Holm's family-wise level: the chance of one false verdict among all the cells tested.
HOLM_LEVEL = 0.05
# The fewest servers tested in a cell from which the shift they share and the run-to-run spread
# around it are estimated (between_runs); with fewer, each server is judged on its rounds alone.
MIN_SERVERS = 5


def log_values(values) -> list[float]:
    return [math.log(v) for v in (st.number(x) for x in values) if v is not None and v > 0]


def welch(a: list[float], b: list[float], extra_var: float = 0.0, centre: float = 0.0,
          margin: float = 0.0) -> tuple[float, float | None]:
    """(the change of b's mean over a's less `centre`, the p of Welch's t-test that it lies
    within ±`margin`: two-sided, of its distance beyond the margin) on two samples of logs;
    `extra_var` is added to the variance of the difference (the run-to-run spread, taken as
    known: an estimate over many servers). p None with fewer than 2 values on a side."""
    diff = statistics.fmean(b) - statistics.fmean(a) - centre
    beyond = math.copysign(max(0.0, abs(diff) - margin), diff)
    if len(a) < 2 or len(b) < 2:
        return diff, None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    total = va + vb + extra_var
    if total == 0:
        return diff, 0.0 if beyond else 1.0
    denom = (va ** 2 / (len(a) - 1)) + (vb ** 2 / (len(b) - 1))
    df = total ** 2 / denom if denom else math.inf
    t = beyond / math.sqrt(total)
    if math.isinf(df):
        return diff, math.erfc(abs(t) / math.sqrt(2))
    return diff, st.t_two_sided_p(t, df)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given: the i-th smallest of m is
    multiplied by m - i + 1, and kept no smaller than the one before it."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted = [1.0] * len(pvalues)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def between_runs(changes: list[float], within: list[float]) -> tuple[float, float]:
    """(the shift every server of a cell shares, the variance of a server's run-to-run change
    around it beyond what its rounds' own spread explains), from one cell's servers' changes
    (log B - log A) and their within-run variances: the median change, and the smallest tau^2
    at which the changes, each standardized by sqrt(within + tau^2), have the median absolute
    deviation of a standard normal (0.6745): a robust form of the Paule-Mandel estimator of
    meta-analysis. A few servers that really changed move neither median much; servers with
    tight rounds and loose ones are each standardized by their own spread. Needs MIN_SERVERS;
    else (0, 0): each server on its own rounds."""
    if len(changes) < MIN_SERVERS:
        return 0.0, 0.0
    centre = statistics.median(changes)

    def mad(tau2: float) -> float:
        return statistics.median(abs(c - centre) / math.sqrt(w + tau2)
                                 for c, w in zip(changes, within, strict=True) if w + tau2 > 0)

    if any(w <= 0 for w in within) or mad(0.0) <= NORMAL_MAD:
        return centre, 0.0 if all(w > 0 for w in within) else _floor(changes, centre)
    low, high = 0.0, max(1.0, max((c - centre) ** 2 for c in changes))
    for _ in range(100):  # mad falls as tau^2 grows: bisect to where it is NORMAL_MAD
        mid = (low + high) / 2
        low, high = (mid, high) if mad(mid) > NORMAL_MAD else (low, mid)
    return centre, high


NORMAL_MAD = 0.6745  # the median of |Z| for a standard normal Z


def _floor(changes: list[float], centre: float) -> float:
    """Servers with no spread within their runs (identical rounds: a test's copies): the robust
    spread of the changes alone."""
    return (1.4826 * statistics.median(abs(c - centre) for c in changes)) ** 2
