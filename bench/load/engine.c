/* The C load engine behind `python -m bench.load --engine c`.
 *
 * It does what bench/load/python_engine.py does (read that file's essay first: closed and open
 * loop, coordinated omission, error kinds), at the cost of a C client, so that the generator is
 * never the bottleneck of what it measures. Shape, after wrk2: one epoll loop per thread, each
 * thread pinned to one CPU, one histogram per thread (hdr.c), merged at the end.
 *
 * What the two engines share is written once, in bench/load/contract.py: the tunables
 * (STALL_TIMEOUT_S, OFFSET_SPAN_BYTES, ...), the error kinds (E_CONNECT ... E_KINDS and their
 * names) and the histogram's layout come from there as -D flags when c_engine.py builds this file,
 * so they cannot drift. The two formulas written here again (stall_limit_s, the open-loop
 * schedule) are checked against contract.py's by tests/test_engine.py (--contract-selftest).
 *
 * Past the per-process fd limit the wrapper starts several engines (--first, --step): connection
 * g of all goes to engine g % step, and they keep one schedule.
 *
 * It is not meant to be run by hand: bench/load/c_engine.py builds it (servers/build.py), starts
 * it, and speaks a line protocol with it (bench/load/handshake.py drives both engines through it):
 *
 *   engine -> wrapper (stdout)          wrapper -> engine (stdin)
 *   ready <established> <connect_s>      (connect_s: how long the ramp took)
 *                                       start <start_ns>   (warm-up starts then, CLOCK_MONOTONIC)
 *                                       or: stop, or EOF   (the wrapper gave up, or died)
 *   window <window_start_ns> <window_end_ns>
 *   ... the result, one fact per line (see print_result), then "done"
 *
 * CLOCK_MONOTONIC is the clock of Python's time.monotonic_ns(), so the wrapper's on_window hook
 * and the engine agree on the window's edges to the nanosecond.
 *
 * --alt HOST:PORT --slice-ms MS (closed loop only): a second server, the reference, measured in
 * the same window. The engine opens --conns connections to each; time is cut into slices of MS
 * from the window's start, the first slice the target's, the next the alternate's, and so on
 * through the warm-up and the window. In a slice only that server's connections send: a
 * connection whose echo completes in the other's slice waits, parked, until its server's next
 * slice. Both servers see the same machine within milliseconds of each other, so a drift of the
 * machine's speed that lasts longer than a slice (a VM's neighbours, a frequency change) slows
 * both alike and their ratio cancels it. Each gets its own histogram, its own error count and
 * the time it was actually active in the window (active_ns), which its rate is counted over.
 *
 *   engine --hist-selftest < values     records the values, prints the histogram (for the test
 *                                       that checks this port of HdrHistogram against hdrh)
 *   engine --contract-selftest < lines  "stall OPEN COMPLETED WINDOW_S RATE" -> the stall limit,
 *                                       "schedule G TOTAL RATE" -> first send offset, interval
 *                                       (RATE 0: closed loop), for the test against contract.py
 *   engine --probe-fds N                exit 0 if N connections' worth of files can be opened
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "hdr.h"

/* contract.py's tunables and error kinds, as -D flags (c_defines); the histogram's in hdr.h. */
#if !defined(STALL_TIMEOUT_S) || !defined(STALL_FAIR_SHARES) || !defined(OFFSET_SPAN_BYTES) \
    || !defined(MESSAGES_PER_WORKER) || !defined(MESSAGE_MEMORY_BYTES) || !defined(MIN_TICK_NS) \
    || !defined(FD_HEADROOM) || !defined(E_KINDS) || !defined(ERROR_KIND_NAMES)
#error "built without bench/load/contract.py's -D flags, which c_engine.py's binary() passes"
#endif
/* The engine's own. */
#define READ_BUFFER_BYTES (256 << 10)
#define MAX_EVENTS 512

/* -- State ------------------------------------------------------------------------------------ */

static const char *ERROR_NAMES[E_KINDS] = {ERROR_KIND_NAMES}; /* E_CONNECT = 0, E_RESET, ... */

static struct config {
    struct sockaddr_in target, alt; /* alt: the second server of --alt, if has_alt */
    int has_alt;
    int64_t slice_ns;
    int conns, size, threads, sources, ramp_batch_per_thread;
    /* This process's connections are global indices first, first + step, ... (conns of them) of
     * total_conns in all: past the per-process fd limit the wrapper starts several engines. */
    int first, step, total_conns;
    double rate; /* 0: closed loop */
    double warmup_s, duration_s, connect_timeout_s, connect_budget_s, ramp_pause_s, start_wait_s;
    int cpus[1024], ncpus;
} cfg;

struct conn {
    int fd;
    uint32_t global_index;
    uint32_t message;      /* index into the thread's offsets: the message in flight */
    uint32_t written;      /* bytes of it written so far (a large one takes several writes) */
    uint32_t received;     /* bytes of its echo checked so far */
    uint8_t in_flight, closed, want_out;
    uint8_t target;        /* 0: the target; 1: the alternate (--alt) */
    uint8_t parked;        /* --alt: its echo came back in the other server's slice; it waits */
    uint64_t echoes;       /* complete echoes, ever: served or unserved */
    int64_t sent_at_ns;    /* closed loop: when the message in flight went out */
    int64_t first_send_ns; /* open loop: message k is intended at first_send_ns + k * interval */
    uint64_t due, sent;    /* open loop: scheduled sends that came due; actually written */
    int64_t intended_ns;   /* open loop: intended send time of the message in flight */
};

struct thread {
    int index, cpu;
    pthread_t tid;
    int epoll_fd, timer_fd;
    struct conn *conns;
    int nconns;             /* established */
    uint8_t *payload;       /* random bytes; message i is payload[offsets[i] : offsets[i] + size] */
    uint32_t *offsets, noffsets;
    uint8_t *buf;           /* what read() fills; checked against the payload, never copied */
    int64_t interval_ns, window_start_ns, window_end_ns;
    uint32_t ticker_next;   /* open loop: the next connection in the cyclic order of its sends */
    struct hist latency, send_lag, alt_latency;
    uint64_t offered;
    int64_t errors[E_KINDS];
    int64_t alt_errors;     /* --alt: every error on the alternate's connections, of any kind */
    int cur_target;         /* whose connection is being handled: count_error() files it */
    int nconns_target;      /* established to the target (nconns counts both with --alt) */
    int active;             /* --alt: whose slice it is */
    int64_t next_switch_ns, active_since_ns, active_ns[2];
    char example[E_KINDS][240];
    struct rusage cpu0;
    int cpu0_taken;
    double cpu_user_s, cpu_sys_s, stall_limit_s;
    int open_at_end;
    double connect_s;       /* how long this thread's connect phase took */
};

static struct thread *threads;
static atomic_int stop_flag, ready_threads, finished_threads;
static atomic_llong start_ns = -1; /* set by the main thread on "start" */
static int stop_event_fd;          /* readable once the run must stop: every epoll watches it */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;

#define TAG_TIMER 0ull
#define TAG_STOP 1ull
#define TAG_PENDING (2ull << 32)
#define TAG_CONN (3ull << 32)

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_until_ns(int64_t when_ns) {
    struct timespec ts = {when_ns / 1000000000, when_ns % 1000000000};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static void count_error(struct thread *t, int kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void count_error(struct thread *t, int kind, const char *fmt, ...) {
    if (t->cur_target) { /* the alternate's: its own count, never the target's */
        t->alt_errors++;
        return;
    }
    t->errors[kind]++;
    if (!t->example[kind][0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->example[kind], sizeof t->example[kind], fmt, ap);
        va_end(ap);
    }
}

/* -- The messages ------------------------------------------------------------------------------
 * As make_messages() in bench/load/python_connection.py: random bytes, and messages cut from them
 * at offsets that differ from one message to the next, so a stale echo or another connection's
 * bytes mismatch. */

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void make_messages(struct thread *t) {
    size_t len = (size_t)cfg.size + OFFSET_SPAN_BYTES;
    t->payload = malloc(len);
    uint64_t seed = (uint64_t)now_ns() ^ ((uint64_t)t->index << 40);
    for (size_t i = 0; i < len; i += 8) { /* fast and unpredictable enough for an echo check */
        uint64_t r = splitmix64(&seed);
        memcpy(t->payload + i, &r, len - i < 8 ? len - i : 8);
    }
    uint32_t count = MESSAGE_MEMORY_BYTES / cfg.size;
    t->noffsets = count < 16 ? 16 : count > MESSAGES_PER_WORKER ? MESSAGES_PER_WORKER : count;
    t->offsets = malloc(t->noffsets * sizeof *t->offsets);
    t->offsets[0] = splitmix64(&seed) % OFFSET_SPAN_BYTES;
    for (uint32_t i = 1; i < t->noffsets; i++)
        t->offsets[i] = (t->offsets[i - 1] + 1 + splitmix64(&seed) % (OFFSET_SPAN_BYTES - 1))
                        % OFFSET_SPAN_BYTES;
}

/* -- One connection ------------------------------------------------------------------------- */

static void close_conn(struct thread *t, struct conn *c) {
    if (c->closed) return;
    /* SO_LINGER 0: close() sends RST at once, like asyncio's transport.abort() */
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->closed = 1;
    c->in_flight = 0;
}

static void set_events(struct thread *t, struct conn *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0),
                             .data.u64 = TAG_CONN | (uint64_t)(c - t->conns)};
    epoll_ctl(t->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

/* Write what is left of the message in flight; wait for EPOLLOUT if the socket buffer is full. */
static void flush_message(struct thread *t, struct conn *c) {
    const uint8_t *message = t->payload + t->offsets[c->message];
    while (c->written < (uint32_t)cfg.size) {
        ssize_t n = send(c->fd, message + c->written, cfg.size - c->written, MSG_NOSIGNAL);
        if (n > 0) {
            c->written += n;
        } else if (n < 0 && errno == EAGAIN) {
            set_events(t, c, 1);
            return;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            count_error(t, E_RESET, "%s (errno %d) writing to the server", strerror(errno), errno);
            close_conn(t, c);
            return;
        }
    }
    set_events(t, c, 0);
}

static void send_next_message(struct thread *t, struct conn *c) {
    c->message = c->message + 1 == t->noffsets ? 0 : c->message + 1;
    c->written = 0;
    c->received = 0;
    c->in_flight = 1;
    flush_message(t, c);
}

/* Open loop: write the oldest due message; its send lag is how late that is. */
static void open_send(struct thread *t, struct conn *c, int64_t now) {
    c->intended_ns = c->first_send_ns + (int64_t)c->sent * t->interval_ns;
    c->sent++;
    if (t->window_start_ns <= now && now < t->window_end_ns)
        hist_record_us(&t->send_lag, (now - c->intended_ns) / 1000);
    send_next_message(t, c);
}

/* The byte check: every byte read must be the byte sent at that position of the message in
 * flight; a stale, reordered, corrupted or extra byte is a mismatch, and the connection is over. */
static void mismatch(struct thread *t, struct conn *c, const uint8_t *data, size_t n) {
    if (!c->in_flight || c->received >= (uint32_t)cfg.size) {
        count_error(t, E_MISMATCH, "%zu byte(s) more than was sent came back", n);
    } else {
        const uint8_t *sent = t->payload + t->offsets[c->message] + c->received;
        size_t sent_len = n < (size_t)cfg.size - c->received ? n : (size_t)cfg.size - c->received;
        size_t i = 0;
        while (i < sent_len && data[i] == sent[i]) i++;
        if (i < sent_len)
            count_error(t, E_MISMATCH, "byte %zu of a %d-byte message came back as 0x%02x, "
                        "0x%02x was sent", c->received + i, cfg.size, data[i], sent[i]);
        else
            count_error(t, E_MISMATCH, "%zu byte(s) more than was sent came back", n - sent_len);
    }
    close_conn(t, c);
}

static void on_readable(struct thread *t, struct conn *c) {
    ssize_t n = read(c->fd, t->buf, READ_BUFFER_BYTES);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        count_error(t, E_RESET, "%s (errno %d)", strerror(errno), errno);
        close_conn(t, c);
        return;
    }
    if (n == 0) { /* the server closed its side: whatever was in flight is lost */
        count_error(t, E_RESET, "unexpected EOF from the server");
        close_conn(t, c);
        return;
    }
    if (!c->in_flight || c->received + (size_t)n > (size_t)cfg.size
            || memcmp(t->buf, t->payload + t->offsets[c->message] + c->received, n) != 0) {
        mismatch(t, c, t->buf, n);
        return;
    }
    c->received += n;
    if (c->received < (uint32_t)cfg.size) return; /* more of this echo to come */

    /* The echo is complete. One clock read: the end of this round trip starts the next one. */
    int64_t now = now_ns();
    c->echoes++;
    int in_window = t->window_start_ns <= now && now < t->window_end_ns;
    if (cfg.rate == 0) {
        if (in_window)
            hist_record_us(c->target ? &t->alt_latency : &t->latency, (now - c->sent_at_ns) / 1000);
        c->sent_at_ns = now;
        if (c->target == t->active) {
            send_next_message(t, c);
        } else { /* the other server's slice: wait for this one's next */
            c->in_flight = 0;
            c->parked = 1;
        }
    } else {
        c->in_flight = 0;
        /* Charged from the INTENDED send time: the coordinated-omission correction (wrk2's
         * expected_latency_start = thread_start + complete / throughput). */
        if (in_window) hist_record_us(&t->latency, (now - c->intended_ns) / 1000);
        if (c->sent < c->due) open_send(t, c, now); /* it queued behind this one: already late */
    }
}

/* -- The open-loop ticker ----------------------------------------------------------------------
 * As OpenLoopTicker in bench/load/python_ticker.py: the thread's connections share one interval
 * and their first sends lie within one interval, so in order of first send they come due in a
 * fixed cyclic order; walk it, fire what is due, sleep on the timerfd until the next one. Returns
 * the next due time, or INT64_MAX when nothing more is scheduled inside the window. */
static int64_t tick(struct thread *t, int64_t now) {
    if (t->nconns == 0) return INT64_MAX;
    for (;;) {
        struct conn *c = &t->conns[t->ticker_next];
        int64_t due_ns = c->first_send_ns + (int64_t)c->due * t->interval_ns;
        if (due_ns >= t->window_end_ns) return INT64_MAX;
        if (due_ns > now) return due_ns;
        c->due++;
        if (!c->closed) {
            if (t->window_start_ns <= due_ns) t->offered++;
            if (!c->in_flight) open_send(t, c, now);
        }
        if (++t->ticker_next == (uint32_t)t->nconns) t->ticker_next = 0;
    }
}

static void arm_timer(struct thread *t, int64_t when_ns) {
    struct itimerspec spec = {{0, 0}, {when_ns / 1000000000, when_ns % 1000000000}};
    timerfd_settime(t->timer_fd, TFD_TIMER_ABSTIME, &spec, NULL);
}

/* -- Phase 1: connect, in batches (a ramp, so the server's listen queue never overflows) ------- */

static void connect_all(struct thread *t) {
    int share = 0;
    for (int g = t->index; g < cfg.conns; g += cfg.threads) share++;
    t->conns = calloc(share ? share * (1 + cfg.has_alt) : 1, sizeof *t->conns);
    int batch = cfg.ramp_batch_per_thread;
    struct { int fd; uint32_t g; int state; } *pending = calloc(batch, sizeof *pending);
    struct epoll_event events[MAX_EVENTS];
    int64_t deadline = now_ns() + (int64_t)(cfg.connect_budget_s * 1e9);

    for (int tgt = 0; tgt <= cfg.has_alt; tgt++) { /* the target's connections, then --alt's */
    t->cur_target = tgt;
    const struct sockaddr_in *addr = tgt ? &cfg.alt : &cfg.target;
    for (int first = 0; first < share; first += batch) {
        int count = share - first < batch ? share - first : batch;
        int64_t now = now_ns();
        if (now >= deadline || atomic_load(&stop_flag)) {
            for (int i = 0; i < count; i++)
                count_error(t, E_CONNECT, "not attempted: the connect phase ran out of time");
            continue;
        }
        double timeout_s = fmin(cfg.connect_timeout_s, (deadline - now) / 1e9);
        int waiting = 0;
        for (int i = 0; i < count; i++) {
            uint32_t k = t->index + (uint32_t)(first + i) * cfg.threads; /* this process's */
            uint32_t g = cfg.first + k * cfg.step;                            /* all engines' */
            pending[i].g = g;
            pending[i].state = -1; /* failed, until it connects */
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                count_error(t, E_CONNECT, "socket(): %s (errno %d)", strerror(errno), errno);
                continue;
            }
            int one = 1;
            /* Nagle's algorithm would hold a small write back for the previous segment's ACK */
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (cfg.sources > 1) {
                /* Past ~28,000 connections one (source, destination) pair runs out of ephemeral
                 * ports. Bind each connection to one of several loopback sources (all of
                 * 127.0.0.0/8 is routed to lo); IP_BIND_ADDRESS_NO_PORT leaves the choice of the
                 * port to connect(), which can then reuse a port toward another destination. */
                struct sockaddr_in src = {.sin_family = AF_INET,
                                          .sin_addr.s_addr = htonl(0x7f000001u + g % cfg.sources)};
                setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
                if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) {
                    count_error(t, E_CONNECT, "bind to 127.0.0.%u: %s (errno %d)",
                                1 + g % cfg.sources, strerror(errno), errno);
                    close(fd);
                    continue;
                }
            }
            if (connect(fd, (struct sockaddr *)addr, sizeof *addr) < 0
                    && errno != EINPROGRESS) {
                count_error(t, E_CONNECT, "connect(): %s (errno %d)", strerror(errno), errno);
                close(fd);
                continue;
            }
            /* writable once the handshake is done (or failed); ONESHOT: report it once */
            struct epoll_event ev = {.events = EPOLLOUT | EPOLLONESHOT,
                                     .data.u64 = TAG_PENDING | (uint64_t)i};
            epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev);
            pending[i].fd = fd;
            pending[i].state = 0; /* in progress */
            waiting++;
        }
        int64_t batch_deadline = now_ns() + (int64_t)(timeout_s * 1e9);
        while (waiting > 0 && !atomic_load(&stop_flag)) {
            int64_t left_ms = (batch_deadline - now_ns() + 999999) / 1000000;
            if (left_ms <= 0) break;
            int n = epoll_wait(t->epoll_fd, events, MAX_EVENTS, (int)left_ms);
            for (int e = 0; e < n; e++) {
                uint64_t tag = events[e].data.u64;
                if ((tag >> 32) == (TAG_CONN >> 32)) {
                    /* an established connection of an earlier batch: the server hung up on it
                     * or sent bytes nobody asked for (reset or mismatch, as in the run) */
                    struct conn *c = &t->conns[(uint32_t)tag];
                    t->cur_target = c->target;
                    if (!c->closed) on_readable(t, c);
                    t->cur_target = tgt;
                    continue;
                }
                if ((tag >> 32) != (TAG_PENDING >> 32)) continue; /* the stop event */
                int i = (int)(uint32_t)tag;
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(pending[i].fd, SOL_SOCKET, SO_ERROR, &err, &len);
                waiting--;
                if (err) {
                    count_error(t, E_CONNECT, "connect(): %s (errno %d)", strerror(err), err);
                    epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, pending[i].fd, NULL);
                    close(pending[i].fd);
                    pending[i].state = -1;
                } else {
                    pending[i].state = 1;
                }
            }
        }
        /* In order of global index, so that the open-loop ticker's cyclic order holds. */
        for (int i = 0; i < count; i++) {
            if (pending[i].state == 0) {
                count_error(t, E_CONNECT, "not connected within %.1f s", timeout_s);
                epoll_ctl(t->epoll_fd, EPOLL_CTL_DEL, pending[i].fd, NULL);
                close(pending[i].fd);
            } else if (pending[i].state == 1) {
                struct conn *c = &t->conns[t->nconns];
                c->fd = pending[i].fd;
                c->global_index = pending[i].g;
                c->message = (pending[i].g * 7919u) % t->noffsets; /* spread the starting points */
                c->target = (uint8_t)tgt;
                t->nconns_target += !tgt;
                struct epoll_event ev = {.events = EPOLLIN,
                                         .data.u64 = TAG_CONN | (uint64_t)t->nconns};
                epoll_ctl(t->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
                t->nconns++;
            }
        }
        if (first + batch < share) sleep_until_ns(now_ns() + (int64_t)(cfg.ramp_pause_s * 1e9));
    }
    }
    t->cur_target = 0;
    free(pending);
}

/* -- Phase 2: warm up, then measure --------------------------------------------------------- */

/* contract.stall_limit_s(): how long a request may wait before it counts as a timeout (rate 0:
 * closed loop, where Little's law sets a floor). */
static double stall_limit_s(long open_conns, int64_t completed, double window_s, double rate) {
    if (rate != 0 || window_s <= 0 || !completed || !open_conns) return STALL_TIMEOUT_S;
    double fair_wait_s = open_conns / (completed / window_s); /* Little's law */
    return fmax(STALL_TIMEOUT_S, STALL_FAIR_SHARES * fair_wait_s);
}

/* contract.open_loop_schedule(): connection g sends every total / rate seconds, starting g / rate
 * seconds after the start, so all sends are evenly spaced 1 / rate. llrint rounds half to even,
 * as Python's round() does. */
static int64_t schedule_interval_ns(long total_conns, double rate) {
    return llrint(total_conns * 1e9 / rate);
}
static int64_t schedule_offset_ns(uint32_t global_index, double rate) {
    return llrint(global_index * 1e9 / rate);
}

/* --alt: whose slice `now` lies in, and when the next one starts. Slice k counts from the
 * window's start (k < 0 in the warm-up); the target has the even ones. */
static int slice_of(const struct thread *t, int64_t now, int64_t *next_switch_ns) {
    int64_t d = now - t->window_start_ns;
    int64_t k = d >= 0 ? d / cfg.slice_ns : -((-d + cfg.slice_ns - 1) / cfg.slice_ns);
    *next_switch_ns = t->window_start_ns + (k + 1) * cfg.slice_ns;
    return (int)(k & 1);
}

/* --alt: the part of the window since the last switch goes to whoever was active. */
static void account_active(struct thread *t, int64_t now) {
    int64_t a = t->active_since_ns > t->window_start_ns ? t->active_since_ns : t->window_start_ns;
    int64_t b = now < t->window_end_ns ? now : t->window_end_ns;
    if (b > a) t->active_ns[t->active] += b - a;
    t->active_since_ns = now;
}

/* --alt: a slice boundary passed. The new slice's parked connections send at once; the other
 * server's in-flight echoes still come back (and count for it), then its connections park. */
static void switch_slice(struct thread *t, int64_t now) {
    int64_t next;
    int active = slice_of(t, now, &next);
    t->next_switch_ns = next;
    if (active == t->active) return;
    account_active(t, now);
    t->active = active;
    for (int i = 0; i < t->nconns; i++) {
        struct conn *c = &t->conns[i];
        if (c->closed || !c->parked || c->target != active) continue;
        c->parked = 0;
        c->sent_at_ns = now;
        t->cur_target = c->target;
        send_next_message(t, c);
    }
    t->cur_target = 0;
}

static void run(struct thread *t, int64_t start) {
    t->window_start_ns = start + (int64_t)(cfg.warmup_s * 1e9);
    t->window_end_ns = t->window_start_ns + (int64_t)(cfg.duration_s * 1e9);
    if (cfg.rate != 0) {
        t->interval_ns = schedule_interval_ns(cfg.total_conns, cfg.rate);
        for (int i = 0; i < t->nconns; i++) {
            struct conn *c = &t->conns[i];
            c->first_send_ns = start + schedule_offset_ns(c->global_index, cfg.rate);
        }
    }
    sleep_until_ns(start);
    int64_t now = now_ns();
    t->next_switch_ns = INT64_MAX;
    if (cfg.has_alt) {
        t->active = slice_of(t, now, &t->next_switch_ns);
        t->active_since_ns = now;
    }
    if (cfg.rate == 0) {
        for (int i = 0; i < t->nconns; i++) {
            struct conn *c = &t->conns[i];
            if (c->closed) continue;
            c->sent_at_ns = now;
            c->message = c->message == 0 ? t->noffsets - 1 : c->message - 1; /* next = its own */
            if (c->target != t->active) {
                c->parked = 1; /* the other server's slice first */
                continue;
            }
            t->cur_target = c->target;
            send_next_message(t, c);
        }
        t->cur_target = 0;
    }
    int64_t next_due = cfg.rate != 0 ? tick(t, now) : INT64_MAX;
    struct epoll_event events[MAX_EVENTS];
    int done = 0;
    int64_t armed_ns = -1; /* when the timerfd will fire; -1: not armed (it fired, or never set) */
    while (!done) {
        /* One timer for everything that is not a socket: the window's edges and the schedule.
         * It is re-armed only when that time changes: a timerfd_settime per loop turn would be
         * a system call per round trip, the generator's largest cost after read and write. */
        int64_t wake = t->window_end_ns;
        if (!t->cpu0_taken && t->window_start_ns < wake) wake = t->window_start_ns;
        if (next_due < wake) wake = next_due > now + MIN_TICK_NS ? next_due : now + MIN_TICK_NS;
        if (t->next_switch_ns < wake) wake = t->next_switch_ns;
        if (wake != armed_ns) {
            arm_timer(t, wake);
            armed_ns = wake;
        }
        int n = epoll_wait(t->epoll_fd, events, MAX_EVENTS, -1);
        for (int e = 0; e < n; e++) {
            uint64_t tag = events[e].data.u64;
            if (tag == TAG_TIMER) {
                uint64_t expirations;
                if (read(t->timer_fd, &expirations, sizeof expirations) < 0) {}
                armed_ns = -1;
                now = now_ns();
                if (!t->cpu0_taken && now >= t->window_start_ns) {
                    getrusage(RUSAGE_THREAD, &t->cpu0); /* this thread's CPU time so far */
                    t->cpu0_taken = 1;
                }
                if (now >= t->window_end_ns) done = 1;
                else if (cfg.rate != 0) next_due = tick(t, now);
                else if (now >= t->next_switch_ns) switch_slice(t, now);
            } else if (tag == TAG_STOP) {
                done = 1;
            } else {
                struct conn *c = &t->conns[(uint32_t)tag];
                if (c->closed) continue;
                t->cur_target = c->target;
                if (events[e].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(t, c);
                if (!c->closed && (events[e].events & EPOLLOUT)) flush_message(t, c);
                t->cur_target = 0;
            }
        }
        now = now_ns();
    }

    /* The window is over: the CPU reading first, so the wrap-up is not charged to it. */
    struct rusage cpu1;
    getrusage(RUSAGE_THREAD, &cpu1);
    if (t->cpu0_taken) {
        t->cpu_user_s = (cpu1.ru_utime.tv_sec - t->cpu0.ru_utime.tv_sec)
                        + (cpu1.ru_utime.tv_usec - t->cpu0.ru_utime.tv_usec) / 1e6;
        t->cpu_sys_s = (cpu1.ru_stime.tv_sec - t->cpu0.ru_stime.tv_sec)
                       + (cpu1.ru_stime.tv_usec - t->cpu0.ru_stime.tv_usec) / 1e6;
    }
    int64_t end = now < t->window_end_ns ? now : t->window_end_ns;
    if (cfg.has_alt) account_active(t, end);
    for (int i = 0; i < t->nconns; i++)
        t->open_at_end += !t->conns[i].closed && !t->conns[i].target;
    t->stall_limit_s = stall_limit_s(t->open_at_end, hist_total_count(&t->latency),
                                     (end - t->window_start_ns) / 1e9, cfg.rate);
    int64_t stall_ns = (int64_t)(t->stall_limit_s * 1e9);
    for (int i = 0; i < t->nconns; i++) {
        struct conn *c = &t->conns[i];
        if (c->closed) continue; /* closed after an error, which was counted as such */
        if (c->target) { /* the alternate's (closed loop only): its own count */
            t->alt_errors += c->echoes == 0 || (c->in_flight && end - c->sent_at_ns >= stall_ns);
            continue;
        }
        /* unserved: no echo at all; in open loop only once its first request is older than the
         * stall limit (at a low rate over many connections it may come due late, or never) */
        if (c->echoes == 0 && (cfg.rate == 0 || c->first_send_ns <= end - stall_ns)) {
            t->errors[E_UNSERVED]++;
        } else if (cfg.rate == 0) {
            t->errors[E_TIMEOUT] += c->in_flight && end - c->sent_at_ns >= stall_ns;
        } else {
            /* in-flight plus queued messages whose intended time is older than the stall limit */
            int64_t cutoff = end - stall_ns;
            if (cutoff >= c->first_send_ns) {
                int64_t last_stale = (cutoff - c->first_send_ns) / t->interval_ns;
                int64_t stale = (int64_t)c->due < last_stale + 1 ? (int64_t)c->due : last_stale + 1;
                int64_t late = stale - (int64_t)c->echoes;
                if (late > 0) t->errors[E_TIMEOUT] += late;
            }
        }
    }
    if (t->errors[E_UNSERVED] && !t->example[E_UNSERVED][0])
        snprintf(t->example[E_UNSERVED], sizeof t->example[0], "connected, but no echo at all in "
                 "%.1f s (warm-up and window)", (end > start ? end - start : 0) / 1e9);
    if (t->errors[E_TIMEOUT] && !t->example[E_TIMEOUT][0])
        snprintf(t->example[E_TIMEOUT], sizeof t->example[0], "no echo within %.1f s of the "
                 "(intended) send time by the end", t->stall_limit_s);
}

static void *thread_main(void *arg) {
    struct thread *t = arg;
    if (t->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(t->cpu, &set);
        sched_setaffinity(0, sizeof set, &set); /* 0: the calling thread */
    }
    make_messages(t);
    /* Page-aligned, not malloc's: a 256 KiB malloc is its own mmap, and the pointer it returns
     * is 16 bytes past a page. The kernel's copy of each read into a buffer that starts 1 to 31
     * bytes past a page boundary is about 3x slower on this AMD EPYC (lesson 07 measures it on
     * yours: "where the copy lands"); on the boundary, or 32 bytes or more past it, it is fast.
     * With malloc's buffer the engine spent twice the CPU per echo at 64 KiB, and was slower
     * than the Python engine (side by side in one run: 2.0x the req/s against c-epoll at
     * 16 x 64 KiB with this buffer, 74 -> 38 µs of CPU per request). */
    t->buf = aligned_alloc(4096, READ_BUFFER_BYTES);
    t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    t->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_TIMER};
    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->timer_fd, &ev);
    ev.data.u64 = TAG_STOP;
    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, stop_event_fd, &ev);

    int64_t connect_start = now_ns();
    connect_all(t);
    t->connect_s = (now_ns() - connect_start) / 1e9;
    atomic_fetch_add(&ready_threads, 1);
    pthread_mutex_lock(&start_lock);
    while (atomic_load(&start_ns) < 0 && !atomic_load(&stop_flag))
        pthread_cond_wait(&start_cond, &start_lock);
    pthread_mutex_unlock(&start_lock);
    if (!atomic_load(&stop_flag)) run(t, atomic_load(&start_ns));
    for (int i = 0; i < t->nconns; i++) close_conn(t, &t->conns[i]);
    atomic_fetch_add(&finished_threads, 1);
    return NULL;
}

/* -- The main thread: limits, threads, the line protocol, the result ------------------------- */

/* Raise RLIMIT_NOFILE for `conns` connections: the soft limit to the hard one, and the hard one
 * itself where allowed (root, CAP_SYS_RESOURCE, up to fs.nr_open). NULL if it worked. */
static const char *raise_fd_limit(int conns, char *why, size_t why_len) {
    rlim_t wanted = (rlim_t)conns + FD_HEADROOM;
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < wanted) {
        struct rlimit raised = {wanted, wanted};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) return NULL;
        snprintf(why, why_len, "%d connections need about %llu open files, but the hard limit "
                 "(ulimit -Hn) is %llu and this user may not raise it: raise it, e.g. `ulimit -n "
                 "%llu` as root or in /etc/security/limits.conf, then run again", conns,
                 (unsigned long long)wanted, (unsigned long long)lim.rlim_max,
                 (unsigned long long)(wanted > 20000 ? wanted : 20000));
        return why;
    }
    if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < wanted) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    return NULL;
}

static void print_result(FILE *out) {
    struct hist *latency = calloc(1, sizeof *latency), *lag = calloc(1, sizeof *lag);
    int64_t errors[E_KINDS] = {0};
    const char *examples[E_KINDS] = {0};
    struct hist *alt_latency = calloc(1, sizeof *alt_latency);
    long established = 0, open_at_end = 0, alt_established = 0;
    int64_t alt_errors = 0, active_ns[2] = {0, 0};
    uint64_t offered = 0;
    double user = 0, sys = 0, stall = STALL_TIMEOUT_S;
    for (int w = 0; w < cfg.threads; w++) {
        struct thread *t = &threads[w];
        hist_add(latency, &t->latency);
        hist_add(lag, &t->send_lag);
        hist_add(alt_latency, &t->alt_latency);
        alt_errors += t->alt_errors;
        alt_established += t->nconns - t->nconns_target;
        /* each thread switches on its own timer: the mean of their active times */
        for (int k = 0; k < 2; k++) active_ns[k] += t->active_ns[k] / cfg.threads;
        for (int k = 0; k < E_KINDS; k++) {
            errors[k] += t->errors[k];
            if (!examples[k] && t->example[k][0]) examples[k] = t->example[k];
        }
        established += t->nconns_target;
        open_at_end += t->open_at_end;
        offered += t->offered;
        user += t->cpu_user_s;
        sys += t->cpu_sys_s;
        if (t->stall_limit_s > stall) stall = t->stall_limit_s;
    }
    fprintf(out, "conns_established %ld\nconns_open_at_end %ld\n", established, open_at_end);
    fprintf(out, "stall_limit_s %.6f\noffered %" PRIu64 "\n", stall, offered);
    fprintf(out, "cpu_user_s %.6f\ncpu_sys_s %.6f\n", user, sys);
    fprintf(out, "latency_out_of_range %" PRId64 "\n", latency->out_of_range);
    for (int k = 0; k < E_KINDS; k++) fprintf(out, "error %s %" PRId64 "\n", ERROR_NAMES[k], errors[k]);
    for (int k = 0; k < E_KINDS; k++)
        if (examples[k]) fprintf(out, "example %s %s\n", ERROR_NAMES[k], examples[k]);
    hist_print(out, "latency", latency);
    hist_print(out, "send_lag", lag);
    if (cfg.has_alt) {
        fprintf(out, "alt_established %ld\nalt_errors %" PRId64 "\n", alt_established, alt_errors);
        fprintf(out, "active_ns %" PRId64 " %" PRId64 "\n", active_ns[0], active_ns[1]);
        hist_print(out, "alt_latency", alt_latency);
    }
    fprintf(out, "done\n");
    fflush(out);
    free(latency);
    free(lag);
    free(alt_latency);
}

/* Wait for a line on stdin for up to timeout_ms; returns 1 with the line, 0 on timeout, -1 on
 * EOF (the wrapper is gone). */
static int read_line(char *line, size_t len, int timeout_ms) {
    struct pollfd p = {0, POLLIN, 0};
    int r = poll(&p, 1, timeout_ms);
    if (r == 0) return 0;
    if (r < 0) return errno == EINTR ? 0 : -1;
    return fgets(line, (int)len, stdin) ? 1 : -1;
}

static void stop_all(void) {
    atomic_store(&stop_flag, 1);
    uint64_t one = 1;
    if (write(stop_event_fd, &one, sizeof one) < 0) {} /* wakes every thread's epoll_wait */
    pthread_mutex_lock(&start_lock);
    pthread_cond_broadcast(&start_cond);
    pthread_mutex_unlock(&start_lock);
}

static int hist_selftest(void) {
    struct hist *h = calloc(1, sizeof *h);
    long long value;
    while (scanf("%lld", &value) == 1) hist_record_us(h, value);
    printf("latency_out_of_range %" PRId64 "\n", h->out_of_range);
    hist_print(stdout, "latency", h);
    return 0;
}

static int contract_selftest(void) {
    char kind[16];
    while (scanf("%15s", kind) == 1) {
        long open_conns, total;
        long long completed;
        unsigned global_index;
        double window_s, rate;
        if (!strcmp(kind, "stall")
                && scanf("%ld %lld %lf %lf", &open_conns, &completed, &window_s, &rate) == 4)
            printf("%.17g\n", stall_limit_s(open_conns, completed, window_s, rate));
        else if (!strcmp(kind, "schedule")
                 && scanf("%u %ld %lf", &global_index, &total, &rate) == 3)
            printf("%" PRId64 " %" PRId64 "\n", schedule_offset_ns(global_index, rate),
                   schedule_interval_ns(total, rate));
        else
            return 2;
    }
    return 0;
}

static int usage(const char *why) {
    fprintf(stderr, "engine: %s\nusage: engine --host A --port P --conns N --size B --warmup S "
            "--duration S [--rate R] --threads T [--cpus 0,1] --connect-timeout S "
            "--connect-budget S --ramp-batch N --ramp-pause S --start-wait S [--sources K]\n"
            "[--alt HOST:PORT --slice-ms MS]\n"
            "[--first F --step S --total-conns T]\n"
            "(bench/load/c_engine.py runs it; use python -m bench.load --engine c)\n", why);
    return 2;
}

int main(int argc, char **argv) {
    if (argc == 2 && !strcmp(argv[1], "--hist-selftest")) return hist_selftest();
    if (argc == 2 && !strcmp(argv[1], "--contract-selftest")) return contract_selftest();
    char why[512];
    if (argc == 3 && !strcmp(argv[1], "--probe-fds")) {
        if (raise_fd_limit(atoi(argv[2]), why, sizeof why)) {
            fprintf(stderr, "%s\n", why);
            return 2;
        }
        return 0;
    }
    const char *host = "127.0.0.1", *alt = NULL;
    int port = 0;
    double slice_ms = 0;
    cfg.threads = 1;
    cfg.sources = 1;
    cfg.step = 1;
    cfg.ncpus = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--conns")) cfg.conns = atoi(v);
        else if (!strcmp(k, "--size")) cfg.size = atoi(v);
        else if (!strcmp(k, "--warmup")) cfg.warmup_s = atof(v);
        else if (!strcmp(k, "--duration")) cfg.duration_s = atof(v);
        else if (!strcmp(k, "--rate")) cfg.rate = atof(v);
        else if (!strcmp(k, "--threads")) cfg.threads = atoi(v);
        else if (!strcmp(k, "--connect-timeout")) cfg.connect_timeout_s = atof(v);
        else if (!strcmp(k, "--connect-budget")) cfg.connect_budget_s = atof(v);
        else if (!strcmp(k, "--ramp-batch")) cfg.ramp_batch_per_thread = atoi(v);
        else if (!strcmp(k, "--ramp-pause")) cfg.ramp_pause_s = atof(v);
        else if (!strcmp(k, "--start-wait")) cfg.start_wait_s = atof(v);
        else if (!strcmp(k, "--sources")) cfg.sources = atoi(v);
        else if (!strcmp(k, "--first")) cfg.first = atoi(v);
        else if (!strcmp(k, "--step")) cfg.step = atoi(v);
        else if (!strcmp(k, "--total-conns")) cfg.total_conns = atoi(v);
        else if (!strcmp(k, "--alt")) alt = v;
        else if (!strcmp(k, "--slice-ms")) slice_ms = atof(v);
        else if (!strcmp(k, "--cpus")) {
            for (const char *p = v; *p && cfg.ncpus < 1024; p++) {
                cfg.cpus[cfg.ncpus++] = (int)strtol(p, (char **)&p, 10);
                if (!*p) break;
            }
        } else return usage("unknown option");
    }
    if (cfg.conns <= 0 || cfg.size <= 0 || cfg.threads <= 0 || cfg.duration_s <= 0 || port <= 0
            || cfg.ramp_batch_per_thread <= 0 || cfg.sources <= 0 || cfg.rate < 0
            || cfg.first < 0 || cfg.step <= 0)
        return usage("missing or bad option");
    if (alt && (cfg.rate != 0 || slice_ms <= 0))
        return usage("--alt takes --slice-ms above 0, and is closed loop only (no --rate)");
    if (cfg.threads > cfg.conns) cfg.threads = cfg.conns;
    if (cfg.total_conns < cfg.first + (cfg.conns - 1) * cfg.step + 1)
        cfg.total_conns = cfg.first + (cfg.conns - 1) * cfg.step + 1;

    /* Ctrl-C reaches the whole process group; the wrapper handles it and stops us. If the
     * wrapper dies without a word, the kernel sends SIGTERM (and stdin reads EOF). */
    signal(SIGINT, SIG_IGN);
    setvbuf(stdin, NULL, _IONBF, 0); /* poll() must see every line: none may wait in a buffer */
    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_PDEATHSIG, SIGTERM);

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *found;
    int gai = getaddrinfo(host, NULL, &hints, &found);
    if (gai != 0) {
        printf("ready 0 0\nerror connect %d\nexample connect cannot resolve %s: %s\n", cfg.conns,
               host, gai_strerror(gai));
        printf("conns_established 0\ndone\n");
        return 0;
    }
    cfg.target = *(struct sockaddr_in *)found->ai_addr;
    cfg.target.sin_port = htons(port);
    freeaddrinfo(found);
    if (alt) { /* HOST:PORT, an IPv4 address (the bench's reference on loopback) */
        char alt_host[64];
        const char *colon = strrchr(alt, ':');
        size_t n = colon ? (size_t)(colon - alt) : 0;
        cfg.alt.sin_family = AF_INET;
        if (!colon || n >= sizeof alt_host || atoi(colon + 1) <= 0)
            return usage("--alt wants HOST:PORT, e.g. 127.0.0.1:9001");
        memcpy(alt_host, alt, n);
        alt_host[n] = 0;
        if (inet_pton(AF_INET, alt_host, &cfg.alt.sin_addr) != 1)
            return usage("--alt wants an IPv4 address, e.g. 127.0.0.1:9001");
        cfg.alt.sin_port = htons(atoi(colon + 1));
        cfg.has_alt = 1;
        cfg.slice_ns = (int64_t)(slice_ms * 1e6);
    }

    if (raise_fd_limit(cfg.conns * (1 + cfg.has_alt), why, sizeof why)) {
        fprintf(stderr, "too few file descriptors: %s\n", why);
        return 2;
    }
    stop_event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    threads = calloc(cfg.threads, sizeof *threads);
    for (int w = 0; w < cfg.threads; w++) {
        threads[w].index = w;
        threads[w].cpu = cfg.ncpus ? cfg.cpus[w % cfg.ncpus] : -1;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        pthread_create(&threads[w].tid, &attr, thread_main, &threads[w]);
        pthread_attr_destroy(&attr);
    }

    /* Phase 1: wait until every thread has connected its share. Only EOF on stdin (the wrapper
     * is gone) is looked for meanwhile: the wrapper says nothing before "ready". */
    char line[256];
    while (atomic_load(&ready_threads) < cfg.threads) {
        struct pollfd p = {0, POLLIN, 0};
        if (atomic_load(&stop_flag)) {
            usleep(1000);
            continue;
        }
        if (poll(&p, 1, 20) <= 0) continue;
        if (p.revents & (POLLHUP | POLLERR)) stop_all();
        else usleep(1000); /* a line came early: it waits for phase 2 */
    }
    long established = 0;
    double connect_s = 0;
    for (int w = 0; w < cfg.threads; w++) {
        established += threads[w].nconns_target;
        if (threads[w].connect_s > connect_s) connect_s = threads[w].connect_s;
    }
    printf("ready %ld %.6f\n", established, connect_s);
    fflush(stdout);

    /* Phase 2: "start <ns>" from the wrapper, or stop. */
    int64_t give_up = now_ns() + (int64_t)(cfg.start_wait_s * 1e9);
    while (!atomic_load(&stop_flag)) {
        int r = read_line(line, sizeof line, 100);
        if (r < 0 || (r > 0 && strncmp(line, "start ", 6) != 0) || now_ns() > give_up) {
            stop_all();
            break;
        }
        if (r > 0) {
            int64_t start = strtoll(line + 6, NULL, 10);
            int64_t window_start = start + (int64_t)(cfg.warmup_s * 1e9);
            printf("window %" PRId64 " %" PRId64 "\n", window_start,
                   window_start + (int64_t)(cfg.duration_s * 1e9));
            fflush(stdout);
            pthread_mutex_lock(&start_lock);
            atomic_store(&start_ns, start);
            pthread_cond_broadcast(&start_cond);
            pthread_mutex_unlock(&start_lock);
            break;
        }
    }
    /* Phase 3: the threads run to the end of the window; a "stop" or EOF ends them early. */
    while (atomic_load(&finished_threads) < cfg.threads) {
        int r = read_line(line, sizeof line, 20);
        if (r < 0) {
            stop_all();
            usleep(20000); /* EOF stays readable: do not spin on it */
        } else if (r > 0) {
            stop_all();
        }
    }
    for (int w = 0; w < cfg.threads; w++) pthread_join(threads[w].tid, NULL);
    print_result(stdout);
    return 0;
}
