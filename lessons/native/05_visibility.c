/* Lesson 05: when one thread's store becomes visible to another, measured in C, where neither an
 * interpreter nor a lock stands between the threads.
 *
 *   05_visibility flag plain|atomic WAIT_MS
 *       A thread spins until a flag is set; the main thread sets it WAIT_MS later. With "plain"
 *       the flag is a plain int, which the compiler may read once and keep in a register (nothing
 *       in the loop tells it another thread writes it: a data race, undefined behaviour in C11);
 *       with "atomic" it is read with an atomic load (memory_order_acquire), which must read
 *       memory on every pass. Prints "plain_seen_us X" or "atomic_seen_us X": how long after the
 *       store the spinner left its loop, or -1 if it had not within 200 ms (then its loop never
 *       ends, and the process's exit ends it). One kind per process, so that a spinner that never
 *       ends does not take a CPU from the other measurement.
 *
 *   05_visibility sb ITERATIONS CPU0 CPU1
 *       The store-buffering litmus test, two threads pinned to two CPUs, both starting each round
 *       together: thread 0 does x = 1 then r0 = y; thread 1 does y = 1 then r1 = x. In any
 *       interleaving of those four steps at least one load sees a 1; r0 == r1 == 0 means each
 *       CPU's load ran before its own earlier store reached memory: the store waited in the
 *       core's store buffer (x86's TSO allows exactly this reordering, store then load).
 *       Done with relaxed atomics, then with a full fence (seq_cst: x86's mfence) between the
 *       store and the load. Prints "relaxed_both_zero N" and "fenced_both_zero N" out of
 *       ITERATIONS rounds.
 *
 * Built at first use by servers/build.py (cc -O2 -pthread); lessons/05_threads.py runs it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* -- flag: the compiler and a plain variable ---------------------------------------------------- */

static int plain_ready;               /* nothing says another thread writes it */
static atomic_int atomic_ready;
static _Atomic double left_at_us;    /* when the spinner got out of its loop */

static void *spin_plain(void *arg) {
    (void)arg;
    while (!plain_ready) /* gcc -O2 loads plain_ready once: this can be an endless loop */
        ;
    atomic_store(&left_at_us, now_us());
    return NULL;
}

static void *spin_atomic(void *arg) {
    (void)arg;
    while (!atomic_load_explicit(&atomic_ready, memory_order_acquire))
        ;
    atomic_store(&left_at_us, now_us());
    return NULL;
}

static double one_flag(void *(*spinner)(void *), void (*set)(void), int wait_ms) {
    pthread_t thread;
    atomic_store(&left_at_us, 0);
    pthread_create(&thread, NULL, spinner, NULL);
    pthread_detach(thread); /* it may never return */
    usleep(wait_ms * 1000);
    double set_at = now_us();
    set();
    while (atomic_load(&left_at_us) == 0 && now_us() - set_at < 200e3)
        usleep(100);
    double left = atomic_load(&left_at_us);
    return left == 0 ? -1 : left - set_at;
}

static void set_plain(void) { plain_ready = 1; }
static void set_atomic(void) { atomic_store_explicit(&atomic_ready, 1, memory_order_release); }

static int flag(const char *kind, int wait_ms) {
    int plain = strcmp(kind, "plain") == 0;
    double seen = plain ? one_flag(spin_plain, set_plain, wait_ms) : one_flag(spin_atomic, set_atomic, wait_ms);
    printf("%s_seen_us %.1f\n", plain ? "plain" : "atomic", seen);
    fflush(stdout);
    _exit(0); /* ends a spinner that never saw its flag */
}

/* -- sb: the store buffer ---------------------------------------------------------------------- */

static atomic_int x, y;
static atomic_long arrived; /* a barrier both threads pass twice per round */
static long rounds;
static int fenced;
static char *r0, *r1;       /* each round's loaded values */

static void barrier(long *passes) {
    long target = 2 * ++*passes;
    atomic_fetch_add(&arrived, 1);
    while (atomic_load(&arrived) < target)
        ;
}

struct litmus { int me, cpu; };

static void *litmus(void *arg) {
    struct litmus *l = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(l->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    atomic_int *mine = l->me ? &y : &x, *other = l->me ? &x : &y;
    char *seen = l->me ? r1 : r0;
    long passes = 0;
    for (long i = 0; i < rounds; i++) {
        atomic_store_explicit(mine, 0, memory_order_relaxed);
        barrier(&passes); /* both reset, both start the round together */
        atomic_store_explicit(mine, 1, memory_order_relaxed);
        if (fenced)
            atomic_thread_fence(memory_order_seq_cst); /* x86: mfence, the store buffer drains */
        seen[i] = (char)atomic_load_explicit(other, memory_order_relaxed);
        barrier(&passes); /* both loaded before either resets */
    }
    return NULL;
}

static long run_litmus(int fence, int cpu0, int cpu1) {
    pthread_t threads[2];
    struct litmus sides[2] = {{0, cpu0}, {1, cpu1}};
    fenced = fence;
    atomic_store(&arrived, 0);
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, litmus, &sides[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    long both_zero = 0;
    for (long i = 0; i < rounds; i++)
        both_zero += !r0[i] && !r1[i];
    return both_zero;
}

static int store_buffer(long iterations, int cpu0, int cpu1) {
    rounds = iterations;
    r0 = calloc(iterations, 1);
    r1 = calloc(iterations, 1);
    if (!r0 || !r1) {
        perror("calloc");
        return 1;
    }
    long relaxed = run_litmus(0, cpu0, cpu1);
    long fenced_zero = run_litmus(1, cpu0, cpu1);
    printf("relaxed_both_zero %ld\nfenced_both_zero %ld\n", relaxed, fenced_zero);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "flag") == 0)
        return flag(argv[2], atoi(argv[3]));
    if (argc == 5 && strcmp(argv[1], "sb") == 0)
        return store_buffer(strtol(argv[2], NULL, 10), atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: %s flag plain|atomic WAIT_MS | sb ITERATIONS CPU0 CPU1\n", argv[0]);
    return 2;
}
