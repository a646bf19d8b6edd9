/* The C load engine's latency histograms: HdrHistogram's bucket indexing, ported from
 * HdrHistogram_c (hdr.c says which line of the original each step follows), as wrk2 keeps
 * hdr_histogram.c apart from wrk.c.
 *
 * The range and precision are bench/hist.py's (1 µs .. 60 s, 3 significant digits), and the bucket
 * layout is the one HdrHistogram computes from them (hdr_calculate_bucket_config); both arrive as
 * -D flags from bench/load/contract.py (c_defines), where the `hdrh` package computes the layout.
 * For the bench's range: sub_bucket_count_magnitude = ceil(log2(2 * 10^3)) = 11, so
 * sub_bucket_half_count_magnitude = 10, sub_bucket_half_count = 1024, sub_bucket_mask = 2047,
 * unit_magnitude = floor(log2(1)) = 0; bucket_count = 16 (2047 << 15 is the first trackable value
 * >= 60,000,000), counts_len = (16 + 1) * 1024 = 17,408.
 *
 * The engine hands Python (value, count) pairs, one per non-zero bucket at the bucket's lowest
 * value, and Python records them into `hdrh` histograms: they land in the same buckets, so
 * merging, encoding and percentiles are exactly bench/hist.py's (tests/test_engine.py checks it
 * bucket by bucket).
 */
#ifndef BENCH_LOAD_HDR_H
#define BENCH_LOAD_HDR_H

#include <stdint.h>
#include <stdio.h>

#if !defined(HDR_BUCKET_COUNT) || !defined(HDR_SUB_BUCKET_HALF_COUNT_MAGNITUDE) \
    || !defined(HDR_SUB_BUCKET_HALF_COUNT) || !defined(HDR_SUB_BUCKET_MASK) \
    || !defined(HDR_UNIT_MAGNITUDE) || !defined(HDR_LOWEST_US) || !defined(HDR_HIGHEST_US)
#error "built without bench/load/contract.py's -D flags, which c_engine.py's binary() passes"
#endif

#define HDR_COUNTS_LEN ((HDR_BUCKET_COUNT + 1) * HDR_SUB_BUCKET_HALF_COUNT)

struct hist {
    int64_t counts[HDR_COUNTS_LEN];
    int64_t out_of_range; /* clamped into [HDR_LOWEST_US, HDR_HIGHEST_US], as bench/hist.py does */
};

/* Where `value` (µs, within the range) is counted, and the lowest value counted at `index`. */
int32_t hdr_counts_index(int64_t value);
int64_t hdr_value_at_index(int32_t index);

void hist_record_us(struct hist *h, int64_t value_us);
void hist_add(struct hist *into, const struct hist *from);
int64_t hist_total_count(const struct hist *h);
/* One line: NAME v1 c1 v2 c2 ... for the non-zero buckets, v = the bucket's lowest value. */
void hist_print(FILE *out, const char *name, const struct hist *h);

#endif
