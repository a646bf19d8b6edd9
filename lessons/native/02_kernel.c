/* Lesson 02: what entering the kernel and switching tasks cost, timed in C where Python's own
 * work around each call does not hide it.
 *
 *   02_kernel syscall CALLS
 *       Times CALLS of each, back to back, and prints one line per kind, "NAME ns_per_call":
 *       - getppid: syscall(SYS_getppid), the cheapest round trip into the kernel and back (the
 *         kernel only reads a field of the task); glibc would not cache it, syscall() forces it;
 *       - write: write(2) of one byte to /dev/null (the kernel checks the descriptor, calls the
 *         driver, which discards it);
 *       - clock_vdso: clock_gettime(CLOCK_MONOTONIC) through the vDSO, the page the kernel maps
 *         into every process: it reads the clock in user mode, with no system call at all;
 *       - clock_syscall: the same clock through syscall(SYS_clock_gettime), a real kernel entry.
 *
 *   02_kernel switch ROUND_TRIPS CPU
 *       Two tasks pinned to one CPU hand a byte back and forth over two pipes: each round trip is
 *       two context switches (A blocks in read, the kernel runs B; B writes, blocks in read, the
 *       kernel runs A). Done twice: between two processes (fork: two address spaces, so each
 *       switch also loads the other page tables into CR3) and between two threads of one process
 *       (one address space: the page tables stay). Prints "processes ns_per_switch" and
 *       "threads ns_per_switch": the round trip's time over two, which includes the two pipe
 *       writes and reads, the wake-ups and the scheduler's pick, as a real hand-off between
 *       tasks does.
 *
 * Built at first use by servers/build.py (cc -O2 -pthread); lessons/02_cpu.py runs it.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

static int syscalls(long calls) {
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull < 0) {
        perror("/dev/null");
        return 1;
    }
    struct timespec ts;
    long sink = 0;
    double t0 = now_ns();
    for (long i = 0; i < calls; i++)
        sink += syscall(SYS_getppid);
    double t1 = now_ns();
    for (long i = 0; i < calls; i++)
        sink += write(devnull, "x", 1);
    double t2 = now_ns();
    for (long i = 0; i < calls; i++) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        sink += ts.tv_nsec;
    }
    double t3 = now_ns();
    for (long i = 0; i < calls; i++) {
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
        sink += ts.tv_nsec;
    }
    double t4 = now_ns();
    printf("getppid %.2f\nwrite %.2f\nclock_vdso %.2f\nclock_syscall %.2f\n", (t1 - t0) / calls,
           (t2 - t1) / calls, (t3 - t2) / calls, (t4 - t3) / calls);
    fprintf(stderr, "%ld\n", sink & 1); /* keeps the loops from being optimised away */
    close(devnull);
    return 0;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set); /* 0: the calling thread */
}

struct side {
    int in, out; /* read the ball from in, send it back on out */
    long round_trips;
    int cpu;
};

static void *bounce(void *arg) { /* the second task: return every byte it gets */
    struct side *s = arg;
    char ball;
    pin(s->cpu);
    for (long i = 0; i < s->round_trips; i++)
        if (read(s->in, &ball, 1) != 1 || write(s->out, &ball, 1) != 1)
            break;
    return NULL;
}

static double serve(int to_other, int from_other, long round_trips) { /* the first task */
    char ball = 'b';
    double t0 = now_ns();
    for (long i = 0; i < round_trips; i++)
        if (write(to_other, &ball, 1) != 1 || read(from_other, &ball, 1) != 1)
            return -1;
    return (now_ns() - t0) / round_trips / 2; /* two switches per round trip */
}

static int switches(long round_trips, int cpu) {
    int ab[2], ba[2];
    pin(cpu);
    if (pipe(ab) || pipe(ba)) {
        perror("pipe");
        return 1;
    }
    struct side other = {ab[0], ba[1], round_trips, cpu};
    pid_t pid = fork(); /* two processes: two address spaces */
    if (pid == 0) {
        bounce(&other);
        _exit(0);
    }
    double processes = serve(ab[1], ba[0], round_trips);
    waitpid(pid, NULL, 0);
    pthread_t thread; /* two threads of one process: one address space */
    if (pthread_create(&thread, NULL, bounce, &other) != 0) {
        perror("pthread_create");
        return 1;
    }
    double threads = serve(ab[1], ba[0], round_trips);
    pthread_join(thread, NULL);
    if (processes < 0 || threads < 0) {
        fprintf(stderr, "a pipe broke\n");
        return 1;
    }
    printf("processes %.1f\nthreads %.1f\n", processes, threads);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "syscall") == 0)
        return syscalls(strtol(argv[2], NULL, 10));
    if (argc == 4 && strcmp(argv[1], "switch") == 0)
        return switches(strtol(argv[2], NULL, 10), atoi(argv[3]));
    fprintf(stderr, "usage: %s syscall CALLS | switch ROUND_TRIPS CPU\n", argv[0]);
    return 2;
}
