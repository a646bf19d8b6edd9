/* The yardstick for the C load engine: the least a closed-loop echo client can do.
 *
 *   minimal_client HOST PORT CONNS SIZE WARMUP_S DURATION_S [CPU]
 *
 * CONNS connections, one SIZE-byte message in flight on each, the next sent the moment the whole
 * echo of the last is in; one thread, one level-triggered epoll loop, optionally pinned to CPU.
 * No byte check, no histogram, no clock read per round trip: only the system calls every echo
 * client must make (epoll_wait, read, write). It counts round trips completed in the window and
 * its own CPU time there (getrusage), and prints
 *
 *   requests N rps R cpu_s C cpu_us_per_request U
 *
 * bench.load --engine c does all the measuring this one leaves out; the goal is that it
 * reaches at least 0.95 of this one's throughput against the same server (docs/bench.md).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct conn { int fd; int received; };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec
           + ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: minimal_client HOST PORT CONNS SIZE WARMUP_S DURATION_S [CPU]\n");
        return 2;
    }
    int conns = atoi(argv[3]), size = atoi(argv[4]);
    double warmup_s = atof(argv[5]), duration_s = atof(argv[6]);
    if (conns <= 0 || size <= 0 || duration_s <= 0) {
        fprintf(stderr, "minimal_client: CONNS, SIZE and DURATION_S must be > 0\n");
        return 2;
    }
    if (argc > 7) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(argv[7]), &set);
        sched_setaffinity(0, sizeof set, &set);
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "minimal_client: HOST must be an IPv4 address, e.g. 127.0.0.1\n");
        return 2;
    }
    /* the read buffer page-aligned: where malloc puts it would decide the speed of the kernel's
     * copy into it (engine.c says why), and the yardstick must not depend on that luck */
    char *message = malloc(size), *buf = aligned_alloc(4096, 1 << 16);
    for (int i = 0; i < size; i++) message[i] = (char)(i * 7 + 1);
    struct conn *cs = calloc(conns, sizeof *cs);
    int ep = epoll_create1(0);
    for (int i = 0; i < conns; i++) {
        /* blocking connect, then non-blocking: connecting is not what is measured */
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            fprintf(stderr, "minimal_client: connect %d: %s\n", i, strerror(errno));
            return 1;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, O_NONBLOCK);
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    for (int i = 0; i < conns; i++)
        if (write(cs[i].fd, message, size) != size) return 1; /* small: fits the socket buffer */

    double start = now_s(), window_start = start + warmup_s, window_end = window_start + duration_s;
    double cpu0 = 0;
    int measuring = 0;
    long requests = 0;
    struct epoll_event events[512];
    for (;;) {
        /* the clock once per batch of events, not per round trip: the window's edges are
         * as precise as one epoll_wait, which is plenty for a yardstick of throughput */
        double now = now_s();
        if (!measuring && now >= window_start) {
            measuring = 1;
            cpu0 = cpu_s();
            requests = 0;
        }
        if (now >= window_end) break;
        int n = epoll_wait(ep, events, 512, 10);
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            ssize_t got = read(c->fd, buf, 1 << 16);
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN) continue;
                fprintf(stderr, "minimal_client: the server closed a connection\n");
                return 1;
            }
            c->received += got;
            if (c->received >= size) {
                c->received = 0;
                requests++;
                if (write(c->fd, message, size) != size) return 1;
            }
        }
    }
    double used = cpu_s() - cpu0;
    printf("requests %ld rps %.1f cpu_s %.4f cpu_us_per_request %.3f\n", requests,
           requests / duration_s, used, requests ? used * 1e6 / requests : 0.0);
    return 0;
}
