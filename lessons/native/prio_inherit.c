/* Lesson 11: priority inversion with real-time threads, and priority inheritance curing it.
 *
 * Three SCHED_FIFO threads on one CPU. Under SCHED_FIFO the highest-priority runnable thread
 * always runs (sched(7)), so the outcome is decided by priorities alone, not by weights:
 *   low (priority 10) locks a mutex and needs HOLD_MS of CPU before it unlocks;
 *   medium (20) spins for MEDIUM_MS of wall time, never touching the mutex;
 *   high (30, the main thread) then locks the mutex and waits.
 * With PTHREAD_PRIO_NONE, high sleeps on the mutex, medium outranks low, and high waits for medium
 * to finish: inversion. With PTHREAD_PRIO_INHERIT the mutex is a PI futex (FUTEX_LOCK_PI): when
 * high blocks on it, the kernel's rt_mutex lends low high's priority until it unlocks, so low
 * preempts medium, finishes its HOLD_MS and high waits only that long.
 *
 * Needs CAP_SYS_NICE (or an RLIMIT_RTPRIO) for SCHED_FIFO; without it, exits 3 saying so. Every
 * spin is bounded in time, and the kernel's real-time throttling (sched_rt_runtime_us) keeps a
 * share of the CPU for ordinary tasks meanwhile.
 *
 * usage: prio_inherit CPU HOLD_MS MEDIUM_MS none|inherit
 * Prints one JSON object: {"protocol": ..., "wait_ms": ..., "hold_ms": ..., "medium_ms": ...}.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t lock;
static atomic_int low_holds;
static double hold_ms, medium_ms;

static double now_ms(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *low(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    atomic_store(&low_holds, 1);
    /* HOLD_MS of this thread's CPU time, however long the scheduler makes that take (bounded by
     * wall time too, so that nothing here can spin forever). */
    double cpu_deadline = now_ms(CLOCK_THREAD_CPUTIME_ID) + hold_ms;
    double wall_deadline = now_ms(CLOCK_MONOTONIC) + 10 * (hold_ms + medium_ms) + 1000;
    while (now_ms(CLOCK_THREAD_CPUTIME_ID) < cpu_deadline && now_ms(CLOCK_MONOTONIC) < wall_deadline)
        ;
    pthread_mutex_unlock(&lock);
    return NULL;
}

static void *medium(void *arg) {
    (void)arg;
    double deadline = now_ms(CLOCK_MONOTONIC) + medium_ms;
    while (now_ms(CLOCK_MONOTONIC) < deadline)
        ;
    return NULL;
}

static int start(pthread_t *t, void *(*body)(void *), int priority) {
    pthread_attr_t attr;
    struct sched_param param = {.sched_priority = priority};
    pthread_attr_init(&attr);
    pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
    pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
    pthread_attr_setschedparam(&attr, &param);
    int err = pthread_create(t, &attr, body, NULL);
    pthread_attr_destroy(&attr);
    return err;
}

static void fail(const char *what, int err) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(err));
    exit(err == EPERM ? 3 : 1);
}

int main(int argc, char **argv) {
    if (argc != 5 || (strcmp(argv[4], "none") && strcmp(argv[4], "inherit"))) {
        fprintf(stderr, "usage: prio_inherit CPU HOLD_MS MEDIUM_MS none|inherit\n");
        return 2;
    }
    int cpu = atoi(argv[1]);
    hold_ms = atof(argv[2]);
    medium_ms = atof(argv[3]);
    if (hold_ms <= 0 || medium_ms <= 0 || hold_ms > 1000 || medium_ms > 2000) {
        fprintf(stderr, "prio_inherit: HOLD_MS in (0, 1000], MEDIUM_MS in (0, 2000]\n");
        return 2;
    }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0)  /* the threads created below inherit it */
        fail("sched_setaffinity", errno);

    pthread_mutexattr_t mattr;
    pthread_mutexattr_init(&mattr);
    pthread_mutexattr_setprotocol(&mattr, strcmp(argv[4], "inherit") ? PTHREAD_PRIO_NONE
                                                                     : PTHREAD_PRIO_INHERIT);
    pthread_mutex_init(&lock, &mattr);

    struct sched_param high = {.sched_priority = 30};
    int err = pthread_setschedparam(pthread_self(), SCHED_FIFO, &high);
    if (err)
        fail("SCHED_FIFO for the high thread (needs CAP_SYS_NICE)", err);

    pthread_t lo, med;
    if ((err = start(&lo, low, 10)))
        fail("SCHED_FIFO for the low thread", err);
    while (!atomic_load(&low_holds)) {  /* sleep, so that low (the only other runnable) runs */
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if ((err = start(&med, medium, 20)))
        fail("SCHED_FIFO for the medium thread", err);

    double t0 = now_ms(CLOCK_MONOTONIC);
    pthread_mutex_lock(&lock);  /* high blocks here: who runs now decides how long */
    double waited = now_ms(CLOCK_MONOTONIC) - t0;
    pthread_mutex_unlock(&lock);
    pthread_join(lo, NULL);
    pthread_join(med, NULL);

    struct sched_param normal = {.sched_priority = 0};
    pthread_setschedparam(pthread_self(), SCHED_OTHER, &normal);
    printf("{\"protocol\": \"%s\", \"wait_ms\": %.3f, \"hold_ms\": %.3f, \"medium_ms\": %.3f}\n",
           argv[4], waited, hold_ms, medium_ms);
    return 0;
}
