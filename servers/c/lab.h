/* lab.h: the plumbing every C server of the lab shares (servers/common.py's, in C), so that each
 * server file shows only its model: logging, the shared options, the listening socket, the
 * readiness line, the CPU-work knob. Header-only (static functions): servers/build.py compiles
 * one source file per server and hashes the local headers it includes with it.
 *
 * Define LAB_NAME (the registry name) before including it.
 */
#ifndef LAB_H
#define LAB_H

#ifndef LAB_NAME
#error "define LAB_NAME, the server's registry name, before including lab.h"
#endif

#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void log_line(const char *fmt, ...) {
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[%s %d] %s\n", LAB_NAME, (int)getpid(), text);
}

static long long monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

/* "BEFORE: strerror(err)AFTER" at most once per 5 s, so a condition that repeats (EMFILE under
 * load, clients resetting) cannot flood stderr */
static void log_every_5s(long long *last_ms, const char *before, int err, const char *after) {
    long long now = monotonic_ms();
    if (!*last_ms || now - *last_ms >= 5000) {
        *last_ms = now;
        log_line("%s: %s%s", before, strerror(err), after);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Options: --host, --port, --backlog, --work-us, and at most one switch of the server's own   */

struct options {
    const char *host;
    const char *port;
    int backlog;
    long work_us;
    bool flag; /* the server's own switch (c-uring: --sqpoll), if it has one */
};

struct server_info {
    const char *summary;   /* one line: what the server is */
    const char *flag;      /* its own switch, e.g. "--sqpoll", or NULL */
    const char *flag_help; /* what the switch does */
};

static void usage(FILE *out, const struct server_info *info) {
    fprintf(out,
            "usage: python -m servers serve %s [--host HOST] [--port PORT] [--backlog N] [--work-us N]%s%s%s\n"
            "%s\n"
            "  --host HOST   address to listen on (default: 127.0.0.1, loopback only)\n"
            "  --port PORT   TCP port; 0 picks a free one (default: 0)\n"
            "  --backlog N   listen queue length, capped by net.core.somaxconn (default: %d)\n"
            "  --work-us N   burn N microseconds of CPU per chunk received, before echoing it (default: 0)\n",
            LAB_NAME, info->flag ? " [" : "", info->flag ? info->flag : "", info->flag ? "]" : "",
            info->summary, SOMAXCONN);
    if (info->flag)
        fprintf(out, "  %-12s  %s\n", info->flag, info->flag_help);
    fprintf(out, "Prints 'serving %s on HOST:PORT (pid N)' once it accepts connections; "
                 "SIGINT or SIGTERM stops it (exit 0).\n", LAB_NAME);
}

static void bad_option(const char *fmt, ...) {
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: error: %s (see --help)\n", LAB_NAME, text);
    exit(2);
}

static long whole_number(const char *option, const char *text, long min, long max, const char *range) {
    char *end;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno || end == text || *end)
        bad_option("argument %s: '%s' is not a whole number: %s", option, text, range);
    if (value < min || value > max)
        bad_option("argument %s: %ld out of range: %s", option, value, range);
    return value;
}

static struct options parse_args(int argc, char **argv, const struct server_info *info) {
    struct options o = {"127.0.0.1", "0", SOMAXCONN, 0, false};
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *value = NULL, *eq = strchr(arg, '=');
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout, info);
            exit(0);
        }
        if (info->flag && !strcmp(arg, info->flag)) {
            o.flag = true;
            continue;
        }
        if (strncmp(arg, "--", 2) == 0 && eq) { /* --port=8000 */
            *eq = '\0';
            value = eq + 1;
        }
        bool known = !strcmp(arg, "--host") || !strcmp(arg, "--port") ||
                     !strcmp(arg, "--backlog") || !strcmp(arg, "--work-us");
        if (!known)
            bad_option("unrecognized argument %s: the options are --host, --port, --backlog, --work-us%s%s",
                       arg, info->flag ? ", " : "", info->flag ? info->flag : "");
        if (!value) {
            if (i + 1 >= argc)
                bad_option("argument %s: expected one value", arg);
            value = argv[++i];
        }
        if (!strcmp(arg, "--host"))
            o.host = value;
        else if (!strcmp(arg, "--port")) {
            whole_number("--port", value, 0, 65535, "give a number from 0 to 65535 (0 picks a free port)");
            o.port = value; /* getaddrinfo takes the service as text */
        }
        else if (!strcmp(arg, "--backlog"))
            o.backlog = (int)whole_number("--backlog", value, 1, INT_MAX, "give 1 or more");
        else
            o.work_us = whole_number("--work-us", value, 0, LONG_MAX / 1000, "give 0 or more");
    }
    return o;
}

/* ------------------------------------------------------------------------------------------ */
/* The listening socket, the fd limit, the readiness line                                     */

/* Every connection costs a descriptor, and the soft default (often 1024) is far below what the
 * kernel allows: raise the soft RLIMIT_NOFILE to the hard one. */
static void raise_fd_limit(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &lim) != 0)
            log_line("could not raise the fd limit: %s", strerror(errno));
    }
}

/* socket, bind, listen on --host:--port; socket_flags: e.g. SOCK_NONBLOCK. Exits on failure
 * with a one-line message naming the fix. */
static int listen_on(const struct options *o, int socket_flags) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(o->host, o->port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: cannot listen on '%s': %s; give --host an IP address such as 127.0.0.1\n",
                LAB_NAME, o->host, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | socket_flags, 0), one = 1;
    if (fd < 0) {
        fprintf(stderr, "%s: socket: %s\n", LAB_NAME, strerror(errno));
        exit(1);
    }
    /* SO_REUSEADDR lets a restarted server bind while old connections sit in TIME_WAIT */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, o->backlog) != 0) {
        int err = errno;
        fprintf(stderr, "%s: cannot listen on %s:%s: %s; %s\n", LAB_NAME, o->host, o->port, strerror(err),
                err == EADDRINUSE ? "pick another --port, or --port 0 for a free one"
                                  : "check --host and --port");
        exit(1);
    }
    freeaddrinfo(ai);
    return fd;
}

/* The readiness line: the contract with every harness. Printed once, after listen(). */
static void announce(int listener, const char *facts) {
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    getsockname(listener, (struct sockaddr *)&addr, &len);
    getnameinfo((struct sockaddr *)&addr, len, host, sizeof host, port, sizeof port,
                NI_NUMERICHOST | NI_NUMERICSERV);
    bool v6 = strchr(host, ':') != NULL;
    printf("serving %s on %s%s%s:%s (pid %d, %s)\n", LAB_NAME, v6 ? "[" : "", host,
           v6 ? "]" : "", port, (int)getpid(), facts);
    fflush(stdout);
}

/* --work-us: spin for that many microseconds of this thread's CPU time (lesson 11). The thread
 * CPU clock counts only time the thread ran, so the work costs the same CPU however often the
 * scheduler preempts it. */
static void burn_cpu(long work_us) {
    if (work_us <= 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    long long deadline = now.tv_sec * 1000000000LL + now.tv_nsec + work_us * 1000LL;
    do
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    while (now.tv_sec * 1000000000LL + now.tv_nsec < deadline);
}

#endif
