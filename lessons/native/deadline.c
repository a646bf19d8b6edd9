/* Lesson 11: SCHED_DEADLINE, a guarantee instead of a priority.
 *
 * A periodic job: released every PERIOD_US, it must do WORK_US of CPU before the next release
 * (its deadline). Meanwhile a SCHED_FIFO hog (priority 1, the lowest real-time priority) spins on
 * every CPU this process may use, for the whole run.
 *   other:    the job is an ordinary task (SCHED_OTHER, nice 0). Every real-time task outranks it,
 *             so it runs only in the small share the kernel keeps for ordinary tasks under
 *             real-time load (sched_rt_runtime_us; the fair server since Linux 6.12), or after.
 *   deadline: the job asks sched_setattr(2) for SCHED_DEADLINE: RUNTIME_US of CPU in every
 *             PERIOD_US, by the end of the period. The kernel admits it only if the bandwidth
 *             fits (runtime / period, summed over its deadline tasks, within sched_rt_runtime_us
 *             per second), then runs it earliest deadline first, ahead of every SCHED_FIFO and
 *             SCHED_RR task: its runtime is reserved, whatever else wants the CPU.
 *
 * Needs CAP_SYS_NICE for SCHED_FIFO and SCHED_DEADLINE; without it, or when the kernel refuses the
 * deadline task (a CPU mask narrower than its root domain, e.g. under taskset: sched(7)), exits 3
 * with {"error": ...}. The hogs stop after JOBS + 1 periods whatever happens, and real-time
 * throttling keeps a share of each CPU for ordinary tasks meanwhile.
 *
 * usage: deadline other|deadline RUNTIME_US PERIOD_US WORK_US JOBS
 * Prints one JSON object: the policy, jobs, deadlines missed, the worst and median response time
 * (release to finish, ms) and every job's [release ms, response ms].
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef SCHED_DEADLINE
#define SCHED_DEADLINE 6
#endif

struct sched_attr {  /* include/uapi/linux/sched/types.h; glibc 2.41 has its own, older ones none */
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;  /* ns */
};

#define MAX_JOBS 1000
#define MAX_CPUS 1024

static struct timespec hog_start;
static volatile double hog_end_ms;  /* read by the spinning hogs: volatile, so each turn reloads it */

static double ms(const struct timespec *t) { return t->tv_sec * 1e3 + t->tv_nsec / 1e6; }

static struct timespec now(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t;
}

static struct timespec plus_us(struct timespec t, long long us) {
    long long ns = t.tv_nsec + (us % 1000000) * 1000;
    t.tv_sec += us / 1000000 + ns / 1000000000;
    t.tv_nsec = ns % 1000000000;
    return t;
}

static void *hog(void *arg) {
    (void)arg;
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &hog_start, NULL);
    struct timespec t;
    do t = now(CLOCK_MONOTONIC);
    while (ms(&t) < hog_end_ms);  /* bounded: the hog stops at hog_end_ms */
    return NULL;
}

static void fail(const char *what, int err) {
    printf("{\"error\": \"%s: %s\"}\n", what, strerror(err));
    exit(err == EPERM || err == EBUSY || err == EINVAL ? 3 : 1);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 6 || (strcmp(argv[1], "other") && strcmp(argv[1], "deadline"))) {
        fprintf(stderr, "usage: deadline other|deadline RUNTIME_US PERIOD_US WORK_US JOBS\n");
        return 2;
    }
    long runtime_us = atol(argv[2]), period_us = atol(argv[3]), work_us = atol(argv[4]);
    int jobs = atoi(argv[5]);
    if (period_us < 1000 || period_us > 1000000 || runtime_us < 100 || runtime_us > period_us
        || work_us <= 0 || work_us > runtime_us || jobs < 1 || jobs > MAX_JOBS) {
        fprintf(stderr, "deadline: PERIOD_US in [1000, 1000000], RUNTIME_US in [100, PERIOD_US], "
                        "WORK_US in (0, RUNTIME_US], JOBS in [1, %d]\n", MAX_JOBS);
        return 2;
    }
    int deadline = strcmp(argv[1], "deadline") == 0;

    /* One hog per CPU of this process's mask, pinned there, sleeping until hog_start. */
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) != 0) fail("sched_getaffinity", errno);
    struct timespec first = plus_us(now(CLOCK_MONOTONIC), 20000);  /* time to set everything up */
    hog_start = first;
    struct timespec end = plus_us(first, (long long)(jobs + 1) * period_us);
    hog_end_ms = ms(&end);
    pthread_t hogs[MAX_CPUS];
    int n_hogs = 0;
    for (int cpu = 0; cpu < MAX_CPUS; cpu++) {
        if (!CPU_ISSET(cpu, &mask)) continue;
        pthread_attr_t attr;
        struct sched_param param = {.sched_priority = 1};
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_attr_init(&attr);
        pthread_attr_setinheritsched(&attr, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&attr, SCHED_FIFO);
        pthread_attr_setschedparam(&attr, &param);
        pthread_attr_setaffinity_np(&attr, sizeof one, &one);
        int err = pthread_create(&hogs[n_hogs], &attr, hog, NULL);
        pthread_attr_destroy(&attr);
        if (err) fail("SCHED_FIFO for a hog thread (needs CAP_SYS_NICE)", err);
        n_hogs++;
    }

    if (deadline) {  /* after the pthread_creates: a deadline task may not fork or clone */
        struct sched_attr attr = {.size = sizeof attr, .sched_policy = SCHED_DEADLINE,
                                  .sched_runtime = runtime_us * 1000ULL,
                                  .sched_deadline = period_us * 1000ULL,
                                  .sched_period = period_us * 1000ULL};
        if (syscall(SYS_sched_setattr, 0, &attr, 0) != 0) {
            int err = errno;
            hog_end_ms = 0;  /* let the hogs go at once */
            for (int i = 0; i < n_hogs; i++) pthread_join(hogs[i], NULL);
            fail("sched_setattr(SCHED_DEADLINE) (needs CAP_SYS_NICE and a CPU mask that spans "
                 "its root domain)", err);
        }
    }

    /* The jobs: job k is released at first + 1 ms + k periods (the hogs spin from `first`). */
    static double release_ms[MAX_JOBS], response_ms[MAX_JOBS], sorted[MAX_JOBS];
    struct timespec origin = plus_us(first, 1000);
    int missed = 0;
    for (int k = 0; k < jobs; k++) {
        struct timespec release = plus_us(origin, (long long)k * period_us);
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &release, NULL);
        struct timespec cpu0 = now(CLOCK_THREAD_CPUTIME_ID), cpu;
        do cpu = now(CLOCK_THREAD_CPUTIME_ID);  /* WORK_US of this thread's CPU time */
        while ((ms(&cpu) - ms(&cpu0)) * 1000 < work_us);
        struct timespec done = now(CLOCK_MONOTONIC);
        release_ms[k] = ms(&release) - ms(&origin);
        response_ms[k] = ms(&done) - ms(&release);
        if (response_ms[k] * 1000 > period_us) missed++;
    }
    if (deadline) {  /* back to an ordinary task before anything else */
        struct sched_attr attr = {.size = sizeof attr, .sched_policy = SCHED_OTHER};
        syscall(SYS_sched_setattr, 0, &attr, 0);
    }
    for (int i = 0; i < n_hogs; i++) pthread_join(hogs[i], NULL);

    memcpy(sorted, response_ms, sizeof(double) * jobs);
    qsort(sorted, jobs, sizeof(double), by_value);
    printf("{\"policy\": \"%s\", \"hogs\": %d, \"jobs\": %d, \"missed\": %d, \"period_ms\": %.3f, "
           "\"work_ms\": %.3f, \"worst_response_ms\": %.3f, \"median_response_ms\": %.3f, \"series\": [",
           argv[1], n_hogs, jobs, missed, period_us / 1e3, work_us / 1e3, sorted[jobs - 1],
           sorted[jobs / 2]);
    for (int k = 0; k < jobs; k++)
        printf("%s[%.3f, %.3f]", k ? ", " : "", release_ms[k], response_ms[k]);
    printf("]}\n");
    return 0;
}
