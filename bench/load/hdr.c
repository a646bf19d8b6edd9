/* HdrHistogram's bucket indexing for the C load engine (hdr.h says why and for which range).
 *
 * Ported from HdrHistogram_c, release 0.11.10 (commit 18c7a32), src/hdr_histogram.c; "line N"
 * below is a line of that file. The original keeps the bucket layout in struct hdr_histogram and
 * reads it per call (h->sub_bucket_mask, ...); here it is compile-time constants (HDR_..., the -D
 * flags of bench/load/contract.py), so each step is the original's with h-> dropped.
 */
#include "hdr.h"

#include <inttypes.h>

/* get_bucket_index(), lines 211-215: the power of two that holds the value (line 213;
 * count_leading_zeros_64() is __builtin_clzll, line 207), counted from the first bucket
 * (line 214). */
static int32_t bucket_index_of(int64_t value) {
    int32_t pow2ceiling = 64 - __builtin_clzll((uint64_t)(value | HDR_SUB_BUCKET_MASK));
    return pow2ceiling - HDR_UNIT_MAGNITUDE - (HDR_SUB_BUCKET_HALF_COUNT_MAGNITUDE + 1);
}

/* get_sub_bucket_index(), line 219: the value's position inside its bucket. */
static int32_t sub_bucket_index_of(int64_t value, int32_t bucket_index) {
    return (int32_t)(value >> (bucket_index + HDR_UNIT_MAGNITUDE));
}

/* counts_index_for(), lines 238-244, with counts_index(), lines 222-231, written into it: bucket
 * (bucket_index + 1) starts at (bucket_index + 1) << sub_bucket_half_count_magnitude (line 226),
 * plus the offset in the bucket (line 228), added up at line 230. */
int32_t hdr_counts_index(int64_t value) {
    int32_t bucket_index = bucket_index_of(value);
    int32_t sub_bucket_index = sub_bucket_index_of(value, bucket_index);
    int32_t bucket_base_index = (bucket_index + 1) << HDR_SUB_BUCKET_HALF_COUNT_MAGNITUDE;
    return bucket_base_index + (sub_bucket_index - HDR_SUB_BUCKET_HALF_COUNT);
}

/* hdr_value_at_index(), lines 246-258 (value_from_array_index() in older releases), with
 * value_from_index(), line 235, at its end: the lowest value that lands at `index`. Recording it
 * into hdrh lands at the same index, so the counts, hence every percentile, the mean and the max,
 * come out as if the raw values had been recorded there. */
int64_t hdr_value_at_index(int32_t index) {
    int32_t bucket_index = (index >> HDR_SUB_BUCKET_HALF_COUNT_MAGNITUDE) - 1; /* line 248 */
    int32_t sub_bucket_index = (index & (HDR_SUB_BUCKET_HALF_COUNT - 1))      /* line 249 */
                               + HDR_SUB_BUCKET_HALF_COUNT;
    if (bucket_index < 0) { /* lines 251-255: the first bucket has both halves */
        sub_bucket_index -= HDR_SUB_BUCKET_HALF_COUNT;
        bucket_index = 0;
    }
    return (int64_t)sub_bucket_index << (bucket_index + HDR_UNIT_MAGNITUDE); /* line 235 */
}

/* hdr_record_values(), lines 534-552, with bench/hist.py's LatencyCounter.flush() in front: the
 * original refuses a value outside the trackable range (line 538) and returns false; here it is
 * never dropped, but clamped and counted, so the request count stays right and the tail shows. */
void hist_record_us(struct hist *h, int64_t value_us) {
    if (value_us > HDR_HIGHEST_US) {
        value_us = HDR_HIGHEST_US;
        h->out_of_range++;
    } else if (value_us < HDR_LOWEST_US) {
        value_us = HDR_LOWEST_US;
        h->out_of_range++;
    }
    h->counts[hdr_counts_index(value_us)]++; /* lines 543 and 549 */
}

/* hdr_add() merges two histograms value by value; with one layout, it is adding the counts. */
void hist_add(struct hist *into, const struct hist *from) {
    for (int i = 0; i < HDR_COUNTS_LEN; i++) into->counts[i] += from->counts[i];
    into->out_of_range += from->out_of_range;
}

int64_t hist_total_count(const struct hist *h) {
    int64_t total = 0;
    for (int i = 0; i < HDR_COUNTS_LEN; i++) total += h->counts[i];
    return total;
}

void hist_print(FILE *out, const char *name, const struct hist *h) {
    fprintf(out, "%s", name);
    for (int i = 0; i < HDR_COUNTS_LEN; i++)
        if (h->counts[i])
            fprintf(out, " %" PRId64 " %" PRId64, hdr_value_at_index(i), h->counts[i]);
    fputc('\n', out);
}
