"""Latency histograms for the bench: HdrHistogram in µs, from 1 µs to 60 s, 3 significant digits.

Why HdrHistogram: a latency distribution has a long tail, and the tail is what we want to see.
Keeping every sample costs memory; keeping only a mean or a few percentiles cannot be merged across
worker processes. An HdrHistogram keeps counts in logarithmic buckets with a fixed relative
precision (3 significant digits: 1 µs steps up to ~2 ms, then 0.1 % of the value), is a few tens of
kB, and two of them add exactly. Workers send theirs ENCODED (a compressed base64 string); the
parent adds them up.

Why a dict in front of it: `HdrHistogram.record_value` is pure Python (about 1.7 µs a call), more
than all the Python work a fast server does per echo. `LatencyCounter` instead counts each
microsecond value in a plain dict (about 0.05 µs) and moves the counts into the histogram in bulk,
once per distinct value. Latencies at 1 µs resolution repeat a lot, so the dict stays small; the
load generator flushes it when it grows.

Values outside the trackable range are never dropped: they are counted in `out_of_range` and
recorded as the nearest trackable value, so the request count stays right and the tail still shows.
"""

from __future__ import annotations

from hdrh.histogram import HdrHistogram

LOWEST_US = 1  # smallest value told apart from 0
HIGHEST_US = 60_000_000  # 60 s: anything slower is clamped to this and counted as out of range
SIGNIFICANT_DIGITS = 3

# The percentiles every summary reports; the keys name them without dots so they read well in JSON.
SUMMARY_PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9, "p99_99": 99.99}


def new_histogram() -> HdrHistogram:
    """An empty latency histogram with the bench's range and precision."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


class LatencyCounter:
    """Counts microsecond values in a dict, moves them into an HdrHistogram in bulk.

    The hot path of the load generator increments `counts` itself, to save even the method call:
    `counts[v] = counts.get(v, 0) + 1`. `record` is the readable version of the same thing.
    """

    __slots__ = ("counts", "histogram", "out_of_range")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # value in µs -> how many times seen since the last flush
        self.histogram = new_histogram()  # everything flushed so far
        self.out_of_range = 0  # values that were clamped into [LOWEST_US, HIGHEST_US]

    def record(self, value_us: int) -> None:
        counts = self.counts
        counts[value_us] = counts.get(value_us, 0) + 1

    def flush(self) -> None:
        """Move the dict's counts into the histogram (one record_value per distinct value)."""
        record_value = self.histogram.record_value
        for value_us, count in self.counts.items():
            if value_us > HIGHEST_US:
                self.out_of_range += count
                value_us = HIGHEST_US
            elif value_us < LOWEST_US:
                self.out_of_range += count
                value_us = LOWEST_US
            record_value(value_us, count)
        self.counts.clear()

    def total_count(self) -> int:
        return self.histogram.get_total_count() + sum(self.counts.values())

    def encoded(self) -> str:
        """Flush, then encode the histogram for sending to another process."""
        self.flush()
        return encode(self.histogram)


def encode(histogram: HdrHistogram) -> str:
    """The histogram as a base64 string (HdrHistogram's standard V2 compressed encoding)."""
    return histogram.encode().decode("ascii")


def decode(encoded: str | bytes) -> HdrHistogram:
    """The inverse of `encode`; raises ValueError on text that is not an encoded histogram."""
    if isinstance(encoded, str):
        encoded = encoded.encode("ascii")
    try:
        return HdrHistogram.decode(encoded)
    except Exception as exc:  # hdrh's own cookie/length exceptions, zlib and binascii errors
        raise ValueError(f"not an encoded HdrHistogram: {exc}") from exc


def merge(encoded_histograms: list[str | bytes]) -> HdrHistogram:
    """Add up encoded histograms (one per worker process) into one new histogram."""
    merged = new_histogram()
    for encoded in encoded_histograms:
        merged.add(decode(encoded))
    return merged


def summarize(histogram: HdrHistogram) -> dict:
    """p50/p90/p99/p99.9/p99.99/max/mean/count of a histogram, values in µs (all 0 when empty).

    Percentiles and max are reported as HdrHistogram does: the highest value equivalent to the
    recorded one at 3 significant digits, so they may exceed the true value by up to 0.1 %.
    """
    count = histogram.get_total_count()
    if count == 0:
        return {**{name: 0 for name in SUMMARY_PERCENTILES}, "max": 0, "mean": 0.0, "count": 0}
    by_percentile = histogram.get_percentile_to_value_dict(list(SUMMARY_PERCENTILES.values()))
    summary = {name: int(by_percentile[p]) for name, p in SUMMARY_PERCENTILES.items()}
    summary["max"] = int(histogram.get_max_value())
    summary["mean"] = round(mean(histogram), 1)
    summary["count"] = int(count)
    return summary


def mean(histogram: HdrHistogram) -> float:
    """The histogram's mean as hdrh's get_mean_value computes it (each count at its bucket's
    median-equivalent value), by walking the counts array once: hdrh's recorded-value iterator
    takes ~35 ms over a 1 µs..60 s histogram, this ~5 ms, on every measurement of a run."""
    total = histogram.get_total_count()
    if not total:
        return 0.0
    value_of, median_of = histogram.get_value_from_index, histogram._hdr_median_equiv_value
    weighted = sum(count * median_of(value_of(index))
                   for index, count in enumerate(histogram.counts) if count)
    return float(weighted) / total


def count_at_or_above(histogram: HdrHistogram, value_us: int) -> int:
    """How many recorded values are at or above `value_us` (to the histogram's precision)."""
    threshold = histogram.get_lowest_equivalent_value(value_us)
    return sum(
        item.count_at_value_iterated_to
        for item in histogram.get_recorded_iterator()
        if item.value_iterated_to >= threshold
    )
