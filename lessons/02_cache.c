/* Lesson 02: the caches, measured where Python cannot see them.
 *
 *   02_cache chase SIZE_BYTES LOADS
 *       Walk a random cycle of pointers, one per 64-byte cache line, through SIZE_BYTES of memory.
 *       Each load needs the previous one's result, so nothing overlaps and the prefetcher cannot
 *       guess the next line: the time per load is the latency of wherever SIZE_BYTES fits
 *       (L1, L2, L3 or DRAM, plus TLB misses once the pages outgrow the TLB).
 *       Prints "ns_per_load X".
 *
 *   02_cache share OFFSET_BYTES INCREMENTS CPU [CPU2]
 *       One thread per CPU given; thread i atomically adds 1 to its own counter INCREMENTS times
 *       (on x86 a `lock add`, as a per-thread statistics counter would be updated). Counter 0 sits
 *       at offset 0 of a 64-byte aligned block, counter 1 at OFFSET_BYTES. With OFFSET 8 both
 *       counters share one cache line: each atomic add needs the line in this core's cache,
 *       exclusively (MESI's M state), so the line bounces between the two cores although the
 *       threads share no data:
 *       false sharing. With OFFSET 128 each has its own line (128, not 64: Intel's adjacent-line
 *       prefetcher fetches lines in pairs). Prints "ns_per_increment X": each thread's own CPU time
 *       (CLOCK_THREAD_CPUTIME_ID) per increment, averaged over the threads, so that time spent
 *       waiting for a CPU on a busy machine does not count, only the time the stores took.
 *
 * Built at first use by servers/build.py (cc -O2 -pthread); lessons/02_cpu.py runs it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE 64

static double clock_ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static double now_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static uint64_t rng = 88172645463325252ull;
static uint64_t next_random(void) { /* xorshift64: enough to shuffle, and the same every run */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int chase(size_t size, long loads) {
    size_t lines = size / LINE;
    if (lines < 2) {
        fprintf(stderr, "size must be at least %d bytes\n", 2 * LINE);
        return 2;
    }
    char *memory = aligned_alloc(4096, lines * LINE);
    size_t *order = malloc(lines * sizeof *order);
    if (!memory || !order) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < lines; i++)
        order[i] = i;
    for (size_t i = lines - 1; i > 0; i--) { /* Sattolo: a random permutation that is one cycle */
        size_t j = next_random() % i;
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < lines; i++) /* line order[i] points to line order[i + 1] */
        *(void **)(memory + order[i] * LINE) = memory + order[(i + 1) % lines] * LINE;
    void **p = (void **)memory;
    for (size_t i = 0; i < lines; i++) /* one lap to warm the caches and the TLB */
        p = *p;
    double t0 = now_ns();
    for (long i = 0; i < loads; i++)
        p = *p;
    double elapsed = now_ns() - t0;
    /* print p so the compiler cannot drop the walk */
    printf("ns_per_load %.3f %p\n", elapsed / loads, (void *)p);
    free(order);
    free(memory);
    return 0;
}

struct worker {
    volatile long *counter;
    long increments;
    int cpu;
    volatile int *start;
    double cpu_ns; /* this thread's CPU time for its increments */
};

static void *run_worker(void *arg) {
    struct worker *w = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    while (!*w->start) /* both threads begin together */
        ;
    double t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < w->increments; i++)
        __atomic_fetch_add(w->counter, 1, __ATOMIC_RELAXED); /* x86: lock add, needs the line owned */
    w->cpu_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - t0;
    return NULL;
}

static int share(size_t offset, long increments, int ncpus, int *cpus) {
    if (offset < sizeof(long) || offset + sizeof(long) > 4 * LINE) {
        fprintf(stderr, "offset must be between %zu and %zu\n", sizeof(long), 4 * LINE - sizeof(long));
        return 2;
    }
    char *block = aligned_alloc(LINE, 4 * LINE);
    memset(block, 0, 4 * LINE);
    volatile int start = 0;
    pthread_t threads[2];
    struct worker workers[2];
    for (int i = 0; i < ncpus; i++) {
        workers[i] = (struct worker){(volatile long *)(block + i * offset), increments, cpus[i], &start};
        if (pthread_create(&threads[i], NULL, run_worker, &workers[i]) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    start = 1;
    double cpu_ns = 0;
    for (int i = 0; i < ncpus; i++) {
        pthread_join(threads[i], NULL);
        cpu_ns += workers[i].cpu_ns;
    }
    printf("ns_per_increment %.3f\n", cpu_ns / ncpus / increments);
    free(block);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "chase") == 0)
        return chase(strtoull(argv[2], NULL, 10), strtol(argv[3], NULL, 10));
    if ((argc == 5 || argc == 6) && strcmp(argv[1], "share") == 0) {
        int cpus[2] = {atoi(argv[4]), argc == 6 ? atoi(argv[5]) : 0};
        return share(strtoull(argv[2], NULL, 10), strtol(argv[3], NULL, 10), argc - 4, cpus);
    }
    fprintf(stderr, "usage: %s chase SIZE_BYTES LOADS | share OFFSET_BYTES INCREMENTS CPU [CPU2]\n",
            argv[0]);
    return 2;
}
