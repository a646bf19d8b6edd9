/* c-epoll: one thread, epoll, in C: the lab's reference, the practical ceiling of one core
 * (lesson 08, multiplexed I/O).
 *
 * The model is servers/epoll_server.py's, level-triggered, with nothing between the loop and the
 * kernel: no interpreter, no object per event, one recv() and one send() per chunk. Every result
 * of the bench is also given as a ratio to this server, measured in the same run (`vs_ref`), so
 * that a number survives a noisy machine. It is short on purpose: a reader should be able to
 * check it against the Python sibling line by line (the step names are the same).
 *
 * Every socket is non-blocking. The one thread sleeps in epoll_pwait(); the kernel wakes it with
 * the list of ready descriptors; it does the accept4(), recv() or send() that cannot block, and
 * goes back. A waiting connection costs no thread, only a `struct connection` (a few dozen bytes)
 * here and an entry in the kernel's epoll instance.
 *
 * Output and backpressure: a chunk is received into one shared 64 KiB buffer and sent straight
 * back. Only what the kernel's send buffer had no room for is copied into the connection's own
 * `pending` buffer; while that is non-empty the connection is not read from (EPOLLIN off, EPOLLOUT
 * on), so a client that never reads costs at most CHUNK_BYTES here, and then its own send() stalls
 * because the kernel's receive buffer fills. An idle connection holds no buffer at all.
 *
 * Signals: SIGINT and SIGTERM are blocked and read from a signalfd that sits in the same epoll set,
 * so a signal is one more ready descriptor: no handler runs in the middle of a recv(), and there is
 * no race between checking a flag and going to sleep. Exit closes every socket (the kernel does it
 * for a process that exits), exit status 0.
 *
 * Out of descriptors (EMFILE): the connection stays in the listen queue, so the listener stays
 * readable and level-triggered epoll would report it again at once: a spin. Instead the listener
 * leaves the epoll set for ACCEPT_BACKOFF_MS and the loop sleeps with that timeout. (The other
 * classic fix, holding a spare descriptor to close, accept and drop the client, turns clients away;
 * the backoff keeps them queued until a descriptor frees up.)
 *
 * Syscalls: epoll_create1, epoll_ctl, epoll_pwait, accept4, recv, send, close, signalfd,
 * clock_gettime(CLOCK_THREAD_CPUTIME_ID) for --work-us. Linux only.
 *
 * Run it:  make serve SERVER=c-epoll      (built at first use by servers/build.py, cached)
 * Watch it:  strace -f -e trace=epoll_pwait,epoll_ctl,recvfrom,sendto -p PID
 */
#define _GNU_SOURCE
#define LAB_NAME "c-epoll"
#include "lab.h" /* the plumbing: options, listening socket, readiness line, --work-us */

#include <signal.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>

#define CHUNK_BYTES (64 * 1024)  /* one recv() asks for at most this; also the pending bound */
#define ACCEPT_BACKOFF_MS 100    /* out of fds: stop watching the listener for this long */
#define MAX_EVENTS 256           /* ready descriptors taken from the kernel per epoll_pwait */

struct connection {
    int fd;
    char *pending;        /* echo the kernel's send buffer had no room for, or NULL */
    size_t pending_bytes; /* how much of it is left, from pending_off */
    size_t pending_off;
    bool peer_done;       /* the client sent FIN: send what is pending, then close */
    uint32_t events;      /* the interest registered with the kernel for this fd */
};

/* epoll_data carries a pointer; these two addresses mark the listener and the signalfd. */
static char LISTENER_TAG, SIGNALS_TAG;

/* one receive buffer for every connection: the thread is one. Page-aligned: the kernel's copy
 * into a buffer that starts 1 to 31 bytes past a page is far slower on AMD EPYC (lesson 07) */
static char chunk[CHUNK_BYTES] __attribute__((aligned(4096)));

static const struct server_info INFO = {"One thread, epoll, in C: the lab's reference echo server.",
                                        NULL, NULL};

/* ------------------------------------------------------------------------------------------ */
/* The model: the same steps as servers/epoll_server.py                                       */

static int epfd;
static long work_us;

static void set_interest(struct connection *c, uint32_t events) {
    if (events != c->events) { /* each epoll_ctl is a syscall: only when the interest changes */
        struct epoll_event ev = {.events = events, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = events;
    }
}

static void close_connection(struct connection *c) {
    close(c->fd); /* close() also removes the fd from the epoll set */
    free(c->pending);
    free(c);
}

/* The listener is readable: accept every queued client. false when out of descriptors. */
static bool accept_ready(int listener) {
    static long long last_log_ms;
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return true; /* the listen queue is empty */
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_every_5s(&last_log_ms, "accept", errno, "; not accepting for 100 ms");
                return false;
            }
            continue; /* ECONNABORTED, EPROTO, EINTR...: that one client only */
        }
        /* Nagle off: a small echo must leave now, not wait up to 40 ms for a delayed ACK */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct connection *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            return false;
        }
        c->fd = fd;
        c->events = EPOLLIN;
        /* ADD checks readiness at once: bytes that arrived before this call are reported too */
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

/* The send buffer has room: hand the kernel as much pending output as it takes.
 * Returns false if the connection broke (reset, broken pipe). */
static bool write_ready(struct connection *c) {
    while (c->pending_bytes) {
        ssize_t sent = send(c->fd, c->pending + c->pending_off, c->pending_bytes, MSG_NOSIGNAL);
        if (sent < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c->pending_off += (size_t)sent;
        c->pending_bytes -= (size_t)sent;
    }
    free(c->pending); /* drained: an idle connection holds no buffer */
    c->pending = NULL;
    c->pending_off = 0;
    return true;
}

/* The client's bytes are here: read one chunk and echo it (level-triggered: one chunk per turn
 * is fair to the others, epoll reports us again if more is waiting). false if it broke. */
static bool read_ready(struct connection *c) {
    ssize_t got = recv(c->fd, chunk, sizeof chunk, 0);
    if (got < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    if (got == 0) {
        c->peer_done = true; /* end of stream; close once the pending output is sent */
        return true;
    }
    burn_cpu(work_us);
    ssize_t sent = send(c->fd, chunk, (size_t)got, MSG_NOSIGNAL); /* usually all of it, at once */
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        sent = 0;
    }
    if (sent < got) { /* the kernel's send buffer is full: keep the rest until it drains */
        c->pending_bytes = (size_t)(got - sent);
        c->pending = malloc(c->pending_bytes);
        if (!c->pending)
            return false;
        memcpy(c->pending, chunk + sent, c->pending_bytes);
    }
    return true;
}

/* Do what readiness allows on one connection; close it once finished or broken. */
static void connection_ready(struct connection *c, uint32_t events) {
    static long long last_log_ms;
    bool ok = true;
    /* EPOLLHUP/EPOLLERR are always reported: the next recv/send returns the error or EOF */
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ok = write_ready(c);
    if (ok && !c->pending_bytes && !c->peer_done && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        ok = read_ready(c);
    if (!ok)
        log_every_5s(&last_log_ms, "connection dropped", errno, "");
    if (!ok || (c->peer_done && !c->pending_bytes)) { /* broken, or FIN and everything echoed */
        close_connection(c);
        return;
    }
    /* backpressure: while output is pending, stop reading and wait for room instead */
    set_interest(c, c->pending_bytes ? EPOLLOUT : c->peer_done ? 0 : EPOLLIN);
}

int main(int argc, char **argv) {
    struct options o = parse_args(argc, argv, &INFO);
    work_us = o.work_us;
    raise_fd_limit();

    /* SIGINT/SIGTERM become readable bytes on a signalfd, watched like any socket */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int sigfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);

    int listener = listen_on(&o, SOCK_NONBLOCK);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event listen_ev = {.events = EPOLLIN, .data.ptr = &LISTENER_TAG};
    struct epoll_event sig_ev = {.events = EPOLLIN, .data.ptr = &SIGNALS_TAG};
    if (sigfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &listen_ev) != 0 ||
        epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &sig_ev) != 0) {
        fprintf(stderr, "%s: epoll/signalfd: %s\n", LAB_NAME, strerror(errno));
        return 1;
    }
    long long accept_paused_until_ms = 0; /* out of fds: the listener is unwatched until then */
    announce(listener, "level-triggered");

    struct epoll_event ready[MAX_EVENTS];
    for (;;) {
        /* -- how long to wait: forever (no CPU at all while idle), unless accepting is paused */
        int timeout_ms = -1;
        if (accept_paused_until_ms) {
            long long left_ms = accept_paused_until_ms - monotonic_ms();
            if (left_ms <= 0) { /* the backoff is over: watch the listener again */
                epoll_ctl(epfd, EPOLL_CTL_ADD, listener, &listen_ev);
                accept_paused_until_ms = 0;
            } else {
                timeout_ms = (int)left_ms;
            }
        }

        /* -- sleep in the kernel until something is ready */
        int n = epoll_pwait(epfd, ready, MAX_EVENTS, timeout_ms, NULL);
        if (n < 0 && errno != EINTR) {
            log_line("epoll_pwait: %s", strerror(errno));
            return 1;
        }
        /* -- do the I/O that cannot block now */
        for (int i = 0; i < n; i++) {
            void *tag = ready[i].data.ptr;
            if (tag == &SIGNALS_TAG) {
                struct signalfd_siginfo si;
                if (read(sigfd, &si, sizeof si) == sizeof si) {
                    log_line("%s: shut down", si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
                    return 0; /* exit closes every socket; the clients see FIN */
                }
            } else if (tag == &LISTENER_TAG) {
                if (!accept_ready(listener)) {
                    /* the listener stays readable while clients wait in its queue: retrying at
                     * once would spin, so stop watching it for ACCEPT_BACKOFF_MS */
                    epoll_ctl(epfd, EPOLL_CTL_DEL, listener, NULL);
                    accept_paused_until_ms = monotonic_ms() + ACCEPT_BACKOFF_MS;
                }
            } else {
                connection_ready(tag, ready[i].events);
            }
        }
    }
}
