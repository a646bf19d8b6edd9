/* c-uring: one thread, one io_uring, in C on the raw system calls: the completion model's ceiling
 * (lesson 09, asynchronous I/O), beside c-epoll, the readiness model's.
 *
 * The model is servers/io_uring_server.py's, step for step and with the same names (arm_accept,
 * arm_recv, send, received, sent, settle), without the interpreter: the server says up front
 * "accept on this socket", "receive on that one", and the kernel answers "done: a new fd",
 * "done: n bytes are in buffer 17". One io_uring_enter() per loop turn submits every request
 * written since the last one and waits for completions, which are read straight from memory.
 *
 * No liburing (the lab runs where none is installed): three system calls through syscall(2),
 * io_uring_setup, io_uring_enter and io_uring_register, the rings mapped with mmap, and the
 * kernel's own header <linux/io_uring.h>; what an older distribution's copy lacks is defined
 * below. What it asks of the kernel (the readiness line names what it got):
 *
 * - one multishot accept on the listener (5.19): one CQE per new connection;
 * - per connection one multishot recv (6.0) that takes its buffer from a provided buffer ring
 *   (5.19) only when bytes arrive: an idle connection pins no buffer. With incremental
 *   consumption (6.12) the pool is 128 buffers of 128 KiB filled a message after another (and
 *   retired at 64 KiB left where the kernel has min_left), so a 1 KiB message takes 1 KiB and a
 *   64 KiB one lands in one piece; without it, 256 whole buffers of 64 KiB;
 * - sends queued per connection: one in flight, from the buffer the bytes arrived in; pieces that
 *   arrive meanwhile wait behind it and go out in one send where they lie back to back. A buffer
 *   goes back to the ring when the kernel is done filling it and every piece of it was sent;
 * - the ring's own fd registered (5.18), so io_uring_enter does not look it up on every call;
 * - DEFER_TASKRUN (6.1): completions are processed only when the loop waits for them, in this
 *   thread; --sqpoll instead: a kernel thread polls the SQ, so submitting needs no syscall (it
 *   spins a CPU while busy). The ring's indices are loaded with acquire and stored with release
 *   (__atomic, as liburing's io_uring_smp_* do), which SQPOLL needs on any architecture.
 *
 * Backpressure: once MAX_QUEUED pieces wait behind a send the client does not read, its recv is
 * cancelled (ASYNC_CANCEL) and armed again when the queue drains, so a client that never reads
 * holds a few pieces, and then TCP flow control stops it. An empty pool makes a recv complete
 * with -ENOBUFS: that connection waits until buffers come back. Signals: SIGINT and SIGTERM are
 * blocked and read from a signalfd by a READ in the ring: a signal is one more CQE. Out of fds:
 * the accept is cancelled and a TIMEOUT brings it back ACCEPT_BACKOFF_MS later, so nothing spins.
 * A connection is freed and closed only once no request of its own is left in the kernel.
 *
 * Syscalls: io_uring_setup, mmap, io_uring_register, then io_uring_enter per turn and close per
 * connection; clock_gettime for --work-us. Linux 6.0+ with io_uring allowed; `--probe` says
 * whether it can run here, and why not.
 *
 * Run it:  make serve SERVER=c-uring [ARGS=--sqpoll]   (built at first use by servers/build.py)
 * Watch it:  strace -f -e trace=io_uring_enter -p PID; cat /proc/PID/fdinfo/RINGFD
 */
#define _GNU_SOURCE
#define LAB_NAME "c-uring"
#include "lab.h" /* the plumbing: options, listening socket, readiness line, --work-us */

#if !__has_include(<linux/io_uring.h>)
#error "c-uring needs the kernel's header linux/io_uring.h: apt-get install linux-libc-dev"
#endif
#include <linux/io_uring.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>

/* Newer than the header of some distributions (Debian 12 ships 6.1's). */
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4) /* 6.12: the kernel goes on filling this buffer */
#endif
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2 /* 6.12: buffers consumed a part at a time */
#endif
#ifndef __NR_io_uring_setup /* the same numbers on every architecture of the generic table */
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif
struct buf_reg { /* io_uring_buf_reg with min_left, a late addition (before it: zeros) */
    uint64_t ring_addr;
    uint32_t ring_entries;
    uint16_t bgid, flags;
    uint32_t min_left, resv[5];
};

#define QUEUE_ENTRIES 1024
#define CQ_ENTRIES (8 * QUEUE_ENTRIES)
#define POOL_BYTES (16u << 20)
#define INC_BUFFER_BYTES (128u << 10)
#define WHOLE_BUFFER_BYTES (64u << 10)
#define MIN_LEFT_BYTES (64u << 10)
#define MAX_QUEUED 4 /* pieces waiting behind the send in flight: then stop receiving */
#define ACCEPT_BACKOFF_MS 100
#define GROUP 0

/* What a request was: the low 3 bits of its user_data; a connection's pointer is the rest. */
enum kind { ACCEPT, RECV, SEND, BACKOFF, CANCEL, SIGNAL };
#define KIND_MASK 7u

struct piece {
    char *addr;
    uint32_t len;
    int32_t bid;
};

struct connection {
    int fd;
    bool recv_armed;  /* a multishot recv is in the kernel (until a CQE without F_MORE) */
    bool cancelling;  /* an ASYNC_CANCEL of that recv is on its way */
    bool sending;     /* a send is in flight: it covers queue[0 .. in_flight - 1] */
    bool peer_done;   /* the client sent FIN: echo what is queued, then close */
    bool broken;      /* reset or broken pipe: close once the kernel holds nothing of ours */
    bool starved;     /* the pool was empty: armed again when buffers come back */
    uint32_t in_flight, queued, capacity; /* pieces being sent, pieces held, room in queue */
    char *send_addr;  /* what the send in flight still has to send */
    uint32_t send_len;
    struct piece *queue; /* NULL while idle */
    struct connection *next_starved;
};

/* ------------------------------------------------------------------------------------------ */
/* The ring: io_uring_setup, the mappings, SQEs in, CQEs out (liburing's setup.c and queue.c)  */

static struct {
    int fd, enter_fd;
    unsigned enter_flags, setup_flags, features, sq_mask, cq_mask, sq_entries, pending;
    unsigned *sq_head, *sq_tail, *sq_flags, *cq_head, *cq_tail, local_tail;
    struct io_uring_sqe *sqes;
    struct io_uring_cqe *cqes;
    bool sqpoll;
} ring;

static long uring_enter(unsigned to_submit, unsigned wait_for, unsigned flags) {
    return syscall(__NR_io_uring_enter, ring.enter_fd, to_submit, wait_for,
                   flags | ring.enter_flags, NULL, 0);
}

static long uring_register(unsigned opcode, void *arg, unsigned nr) {
    return syscall(__NR_io_uring_register, ring.fd, opcode, arg, nr);
}

/* The best setup flags this kernel accepts (an older one answers EINVAL to a flag it does not
 * know); -errno if none. */
static int ring_setup(bool sqpoll) {
    struct io_uring_params p;
    unsigned base = IORING_SETUP_CQSIZE | (sqpoll ? IORING_SETUP_SQPOLL : 0);
    unsigned candidates[] = {
        sqpoll ? base | IORING_SETUP_SUBMIT_ALL
               : base | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        base | IORING_SETUP_SUBMIT_ALL | (sqpoll ? 0 : IORING_SETUP_COOP_TASKRUN), base};
    int fd = -EINVAL;
    for (unsigned i = 0; i < 3 && fd == -EINVAL; i++) {
        memset(&p, 0, sizeof p);
        p.flags = candidates[i];
        p.cq_entries = CQ_ENTRIES;
        fd = (int)syscall(__NR_io_uring_setup, QUEUE_ENTRIES, &p);
        if (fd < 0)
            fd = -errno;
    }
    if (fd < 0)
        return fd;
    ring.fd = ring.enter_fd = fd;
    ring.setup_flags = p.flags;
    ring.features = p.features;
    ring.sqpoll = sqpoll;
    ring.sq_entries = p.sq_entries;
    /* SINGLE_MMAP (5.4): the SQ and CQ rings are one mapping; the SQEs are their own */
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
    if (cq_size > sq_size)
        sq_size = cq_size;
    char *sq = mmap(NULL, sq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQ_RING);
    char *cq = sq;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP))
        cq = mmap(NULL, cq_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                  IORING_OFF_CQ_RING);
    ring.sqes = mmap(NULL, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_POPULATE, fd, IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || ring.sqes == MAP_FAILED)
        return -errno;
    ring.sq_head = (unsigned *)(sq + p.sq_off.head);
    ring.sq_tail = (unsigned *)(sq + p.sq_off.tail);
    ring.sq_flags = (unsigned *)(sq + p.sq_off.flags);
    ring.sq_mask = *(unsigned *)(sq + p.sq_off.ring_mask);
    ring.cq_head = (unsigned *)(cq + p.cq_off.head);
    ring.cq_tail = (unsigned *)(cq + p.cq_off.tail);
    ring.cq_mask = *(unsigned *)(cq + p.cq_off.ring_mask);
    ring.cqes = (struct io_uring_cqe *)(cq + p.cq_off.cqes);
    unsigned *array = (unsigned *)(sq + p.sq_off.array);
    for (unsigned i = 0; i < p.sq_entries; i++)
        array[i] = i; /* slot i always holds SQE i, as liburing does */
    ring.local_tail = *ring.sq_tail;
    /* the ring's fd, registered (5.18): enter by index, without fdget/fdput per call */
    struct io_uring_rsrc_update reg = {.offset = -1U, .data = (uint64_t)fd};
    if (uring_register(IORING_REGISTER_RING_FDS, &reg, 1) == 1) {
        ring.enter_fd = (int)reg.offset;
        ring.enter_flags = IORING_ENTER_REGISTERED_RING;
    }
    return 0;
}

/* Submit what was written; with wait_for, sleep until that many CQEs are ready. */
static void submit(unsigned wait_for) {
    __atomic_store_n(ring.sq_tail, ring.local_tail, __ATOMIC_RELEASE); /* the SQEs, then the tail */
    unsigned flags = wait_for || (ring.setup_flags & IORING_SETUP_DEFER_TASKRUN) ? IORING_ENTER_GETEVENTS : 0;
    unsigned to_submit = ring.pending;
    if (ring.sqpoll) { /* the poller takes the SQEs itself: enter only to wake it, or to wait */
        to_submit = 0;
        ring.pending = ring.local_tail - __atomic_load_n(ring.sq_head, __ATOMIC_ACQUIRE);
        if (__atomic_load_n(ring.sq_flags, __ATOMIC_ACQUIRE) & IORING_SQ_NEED_WAKEUP)
            flags |= IORING_ENTER_SQ_WAKEUP;
        else if (!wait_for || __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE) != *ring.cq_head)
            return;
    }
    long ret = uring_enter(to_submit, wait_for, flags);
    if (ret < 0 && errno != EINTR && errno != EBUSY) { /* EBUSY: CQ overflow before 5.19: reap first */
        log_line("io_uring_enter: %s", strerror(errno));
        exit(1);
    }
    if (!ring.sqpoll && ret > 0)
        ring.pending -= (unsigned)ret;
}

/* The next free SQE, zeroed; a full SQ is submitted first. */
static struct io_uring_sqe *get_sqe(void) {
    while (ring.pending >= ring.sq_entries) {
        submit(0);
        if (ring.sqpoll && ring.pending >= ring.sq_entries)
            uring_enter(0, 0, IORING_ENTER_SQ_WAIT); /* wait for the poller to make room */
    }
    struct io_uring_sqe *sqe = &ring.sqes[ring.local_tail & ring.sq_mask];
    memset(sqe, 0, sizeof *sqe);
    ring.local_tail++;
    ring.pending++;
    return sqe;
}

static void prep(uint8_t opcode, int fd, const void *addr, unsigned len, uint64_t user_data) {
    struct io_uring_sqe *sqe = get_sqe();
    sqe->opcode = opcode;
    sqe->fd = fd;
    sqe->addr = (uint64_t)(uintptr_t)addr;
    sqe->len = len;
    sqe->user_data = user_data;
}

/* ------------------------------------------------------------------------------------------ */
/* The provided-buffer pool (servers/uring/buffers.py's, in C)                                 */

static struct {
    struct io_uring_buf_ring *br;
    char *base;
    unsigned count, size, min_left;
    uint16_t tail;
    bool incremental;
    uint32_t *filled;  /* bytes the kernel has put in each buffer since it was given */
    uint16_t *holds;   /* the kernel's hold (1 while in the ring) + the pieces we hold */
    unsigned recycled; /* buffers given back this turn */
} pool;

static void pool_add(unsigned bid) {
    struct io_uring_buf *b = &pool.br->bufs[pool.tail & (pool.count - 1)];
    b->addr = (uint64_t)(uintptr_t)(pool.base + (size_t)bid * pool.size);
    b->len = pool.size;
    b->bid = (uint16_t)bid; /* never b->resv: in entry 0 it is the ring's tail */
    pool.tail++;
    pool.holds[bid] = 1;
    pool.filled[bid] = 0;
}

static bool pool_register(bool incremental, unsigned min_left) {
    unsigned size = incremental ? INC_BUFFER_BYTES : WHOLE_BUFFER_BYTES, count = POOL_BYTES / size;
    void *br = mmap(NULL, count * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (br == MAP_FAILED)
        return false;
    struct buf_reg reg = {.ring_addr = (uint64_t)(uintptr_t)br, .ring_entries = count, .bgid = GROUP,
                          .flags = incremental ? IOU_PBUF_RING_INC : 0, .min_left = min_left};
    if (uring_register(IORING_REGISTER_PBUF_RING, &reg, 1) != 0) {
        munmap(br, count * sizeof(struct io_uring_buf));
        return false;
    }
    pool.br = br;
    pool.count = count;
    pool.size = size;
    pool.incremental = incremental;
    pool.min_left = min_left;
    return true;
}

/* The best pool this kernel takes: incremental with min_left, incremental, whole buffers. */
static bool pool_setup(void) {
    if (!pool_register(true, MIN_LEFT_BYTES) && !pool_register(true, 0) && !pool_register(false, 0))
        return false;
    /* page-aligned (mmap): a copy into a buffer 1-31 bytes past a page is slow on AMD (lesson 07).
     * In transparent huge pages where the kernel allows (THP "madvise" or "always"): the kernel
     * copies every message into this memory, and 16 MiB take 8 TLB entries of 2 MiB instead of
     * 4,096 of 4 KiB. Then touched, so that it is resident from the start. */
    pool.base = mmap(NULL, POOL_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (pool.base != MAP_FAILED) {
        madvise(pool.base, POOL_BYTES, MADV_HUGEPAGE);
        memset(pool.base, 0, POOL_BYTES);
    }
    pool.filled = calloc(pool.count, sizeof *pool.filled);
    pool.holds = calloc(pool.count, sizeof *pool.holds);
    if (pool.base == MAP_FAILED || !pool.filled || !pool.holds)
        return false;
    for (unsigned bid = 0; bid < pool.count; bid++)
        pool_add(bid);
    __atomic_store_n(&pool.br->tail, pool.tail, __ATOMIC_RELEASE);
    return true;
}

/* A completion put len bytes into buffer bid: where they start. We hold that piece now. */
static char *pool_taken(unsigned bid, uint32_t len, uint32_t cqe_flags) {
    char *start = pool.base + (size_t)bid * pool.size + pool.filled[bid];
    pool.filled[bid] += len;
    if (cqe_flags & IORING_CQE_F_BUF_MORE)
        pool.holds[bid]++; /* the kernel goes on filling it: one hold more, ours */
    return start;
}

/* One hold of bid is done (a piece sent or dropped; the kernel letting go): at 0 it goes back. */
static void pool_release(int bid) {
    if (bid >= 0 && --pool.holds[bid] == 0) {
        pool_add((unsigned)bid);
        pool.recycled++;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The model: the same steps as servers/io_uring_server.py                                     */

static int listener;
static long work_us;
static bool accept_backoff;                 /* out of fds: accept again only after a timer */
static struct __kernel_timespec backoff_ts = {0, ACCEPT_BACKOFF_MS * 1000000LL};
static struct connection *starved;          /* waiting for the pool to have a buffer again */
static struct signalfd_siginfo siginfo;     /* where the READ on the signalfd puts a signal */

static uint64_t tag(struct connection *c, enum kind kind) { return (uint64_t)(uintptr_t)c | kind; }

static void arm_accept(void) {
    prep(IORING_OP_ACCEPT, listener, NULL, 0, tag(NULL, ACCEPT));
    ring.sqes[(ring.local_tail - 1) & ring.sq_mask].ioprio = IORING_ACCEPT_MULTISHOT;
    ring.sqes[(ring.local_tail - 1) & ring.sq_mask].accept_flags = SOCK_CLOEXEC;
}

static void arm_recv(struct connection *c) {
    prep(IORING_OP_RECV, c->fd, NULL, 0, tag(c, RECV));
    struct io_uring_sqe *sqe = &ring.sqes[(ring.local_tail - 1) & ring.sq_mask];
    sqe->ioprio = IORING_RECV_MULTISHOT;
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = GROUP;
    c->recv_armed = true;
}

static void cancel(uint64_t target, struct connection *c) {
    prep(IORING_OP_ASYNC_CANCEL, -1, (void *)(uintptr_t)target, 0, tag(c, CANCEL));
}

static void stop_receiving(struct connection *c) {
    if (c->recv_armed && !c->cancelling) {
        c->cancelling = true;
        cancel(tag(c, RECV), c);
    }
}

/* Echo the first waiting piece, and every piece right behind it in memory: one send per run. */
static void send_queued(struct connection *c) {
    uint32_t n = 1, len = c->queue[0].len;
    while (n < c->queued && c->queue[n].addr == c->queue[0].addr + len)
        len += c->queue[n++].len;
    c->sending = true;
    c->in_flight = n;
    c->send_addr = c->queue[0].addr;
    c->send_len = len;
    prep(IORING_OP_SEND, c->fd, c->send_addr, len, tag(c, SEND));
    ring.sqes[(ring.local_tail - 1) & ring.sq_mask].msg_flags = MSG_WAITALL | MSG_NOSIGNAL;
}

static void release_queue(struct connection *c, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        pool_release(c->queue[i].bid);
    c->queued -= n;
    memmove(c->queue, c->queue + n, c->queued * sizeof *c->queue);
    if (!c->queued) { /* idle again: an idle connection holds no memory but its struct */
        free(c->queue);
        c->queue = NULL;
        c->capacity = 0;
    }
}

static void dropped(struct connection *c, int err) {
    static long long last_log_ms;
    if (!c->broken)
        log_every_5s(&last_log_ms, "connection dropped", err, "");
    c->broken = true;
    if (!c->sending)
        release_queue(c, c->queued);
}

/* After any completion on c: close it, receive again, or leave it as it is. */
static void settle(struct connection *c) {
    if (c->sending)
        return; /* the next step comes with the send's CQE */
    if (c->broken || (c->peer_done && !c->queued)) {
        if (c->recv_armed) {
            stop_receiving(c); /* its last CQE comes back here */
        } else if (!c->starved) {
            close(c->fd); /* nothing of c is in the kernel now */
            free(c->queue);
            free(c);
        }
        return;
    }
    if (!c->recv_armed && !c->starved && !c->peer_done && c->queued < MAX_QUEUED)
        arm_recv(c);
}

static void accepted(int res, uint32_t flags) {
    static long long last_log_ms;
    if (res >= 0) {
        struct connection *c = calloc(1, sizeof *c);
        if (!c) {
            close(res);
        } else {
            c->fd = res;
            arm_recv(c);
        }
    } else if (res != -ECANCELED && res != -ECONNABORTED && res != -EPROTO && res != -EPERM &&
               res != -EINTR) {
        /* out of fds (EMFILE, ENFILE) or memory: the client stays queued, and accepting again at
         * once would fail at once, forever. Stop, and come back after a timer. */
        log_every_5s(&last_log_ms, "accept", -res, "; backing off");
        accept_backoff = true;
        if (flags & IORING_CQE_F_MORE)
            cancel(tag(NULL, ACCEPT), NULL); /* its last CQE comes without F_MORE */
    }
    if (!(flags & IORING_CQE_F_MORE)) { /* no longer armed: arm it, now or after a timer */
        if (accept_backoff) {
            prep(IORING_OP_TIMEOUT, -1, &backoff_ts, 1, tag(NULL, BACKOFF));
        } else {
            arm_accept();
        }
    }
}

/* A recv CQE: res bytes are already in a buffer (0: the client sent FIN). */
static void received(struct connection *c, int res, uint32_t flags) {
    static long long last_log_ms;
    if (!(flags & IORING_CQE_F_MORE))
        c->recv_armed = c->cancelling = false; /* that recv is over */
    int bid = flags & IORING_CQE_F_BUFFER ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    if (res > 0) {
        burn_cpu(work_us);
        char *addr = pool_taken((unsigned)bid, (uint32_t)res, flags);
        if (c->broken || c->peer_done) {
            pool_release(bid); /* nobody to echo to any more */
        } else {
            if (c->queued == c->capacity) {
                uint32_t capacity = c->capacity ? 2 * c->capacity : MAX_QUEUED;
                struct piece *grown = realloc(c->queue, capacity * sizeof *grown);
                if (!grown) {
                    pool_release(bid);
                    dropped(c, ENOMEM);
                    settle(c);
                    return;
                }
                c->queue = grown;
                c->capacity = capacity;
            }
            c->queue[c->queued++] = (struct piece){addr, (uint32_t)res, bid};
            if (!c->sending)
                send_queued(c); /* the common case: straight back out, from the buffer */
            else if (c->queued - c->in_flight >= MAX_QUEUED)
                stop_receiving(c);
        }
    } else {
        if (bid >= 0 && !(flags & IORING_CQE_F_BUF_MORE))
            pool_release(bid); /* no data, but the kernel had taken the buffer */
        if (res == 0) {
            c->peer_done = true; /* end of stream */
        } else if (res == -ENOBUFS) { /* the pool is empty: wait for buffers to come back */
            c->starved = true;
            c->next_starved = starved;
            starved = c;
            log_every_5s(&last_log_ms, "recv", ENOBUFS, " (the buffer pool is empty); waiting");
        } else if (res != -ECANCELED) {
            dropped(c, -res);
        }
    }
    settle(c);
}

/* A send CQE: res bytes went into the socket's send buffer (all, or an error). */
static void sent(struct connection *c, int res) {
    if (res >= 0 && (uint32_t)res < c->send_len) { /* short (a signal): send the rest */
        c->send_addr += res;
        c->send_len -= (uint32_t)res;
        prep(IORING_OP_SEND, c->fd, c->send_addr, c->send_len, tag(c, SEND));
        ring.sqes[(ring.local_tail - 1) & ring.sq_mask].msg_flags = MSG_WAITALL | MSG_NOSIGNAL;
        return;
    }
    c->sending = false;
    release_queue(c, c->in_flight);
    c->in_flight = 0;
    if (res < 0)
        dropped(c, -res); /* gives back what still waits, too */
    else if (c->broken)
        release_queue(c, c->queued); /* the recv side broke meanwhile */
    else if (c->queued)
        send_queued(c);
    settle(c);
}

/* Buffers came back: arm as many starved connections as buffers came back. */
static void feed_starved(void) {
    while (starved && pool.recycled) {
        struct connection *c = starved;
        starved = c->next_starved;
        c->starved = false;
        pool.recycled--;
        settle(c);
    }
}

static void arm_signals(int sigfd) {
    prep(IORING_OP_READ, sigfd, &siginfo, sizeof siginfo, tag(NULL, SIGNAL));
    ring.sqes[(ring.local_tail - 1) & ring.sq_mask].off = (uint64_t)-1; /* the file position */
}

/* What the readiness line says about the ring: which features this run uses. */
static const char *facts(void) {
    static char text[256];
    snprintf(text, sizeof text, "multishot accept, provided buffers %ux%uKiB%s%s, multishot recv%s%s%s",
             pool.count, pool.size >> 10, pool.incremental ? " incremental" : "",
             pool.min_left ? " min-left 64KiB" : "",
             ring.setup_flags & IORING_SETUP_DEFER_TASKRUN ? ", defer-taskrun" : "",
             ring.enter_flags ? ", registered ring" : "", ring.sqpoll ? ", sqpoll" : "");
    return text;
}

static const char *errname(int err) {
    return err == ENOSYS ? "ENOSYS" : err == EPERM ? "EPERM" : err == ENOMEM ? "ENOMEM"
         : err == EINVAL ? "EINVAL" : "error";
}

/* io_uring_setup failed: why, and the fix (servers/uring/probe.py's setup_failure). */
static const char *setup_failure(int err) {
    if (err == ENOSYS)
        return "this kernel has no io_uring: older than 5.1, or built without CONFIG_IO_URING";
    if (err == EPERM)
        return "refused: a seccomp filter (Docker's default profile blocks io_uring), or sysctl "
               "kernel.io_uring_disabled (set it to 0 to allow io_uring)";
    if (err == ENOMEM)
        return "out of locked memory for the ring (kernels before 5.12 count it: ulimit -l)";
    return strerror(err);
}

static const struct server_info INFO = {
    "One thread, one io_uring, in C on the raw system calls: the completion model's ceiling.",
    "--sqpoll", "IORING_SETUP_SQPOLL: a kernel thread polls the SQ (it spins a CPU while busy)"};

int main(int argc, char **argv) {
    bool probe = argc == 2 && !strcmp(argv[1], "--probe"); /* can it run here? (the registry's) */
    struct options o = probe ? (struct options){0} : parse_args(argc, argv, &INFO);
    work_us = o.work_us;
    raise_fd_limit();
    int err = ring_setup(o.flag);
    if (err < 0) {
        fprintf(stderr, "%s: io_uring_setup failed: %s (%s)\n", LAB_NAME, errname(-err),
                setup_failure(-err));
        return 1;
    }
    if (!pool_setup()) {
        fprintf(stderr, "%s: this kernel has no provided buffer rings (Linux 5.19+ needed)\n", LAB_NAME);
        return 1;
    }
    if (probe) { /* multishot recv (6.0) is the newest thing it cannot do without; SEND_ZC, the
                  * last opcode 6.0 added, tells a 6.0 kernel */
        struct io_uring_probe *p = calloc(1, sizeof *p + 256 * sizeof p->ops[0]);
        if (!p || uring_register(IORING_REGISTER_PROBE, p, 256) < 0 || p->last_op < IORING_OP_SEND_ZC) {
            fprintf(stderr, "%s: this kernel's io_uring is too old (Linux 6.0+ needed)\n", LAB_NAME);
            return 1;
        }
        printf("ok: %s\n", facts());
        return 0;
    }

    /* SIGINT/SIGTERM become a readable signalfd, read by a request in the ring */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    int sigfd = signalfd(-1, &stop, SFD_CLOEXEC);
    listener = listen_on(&o, 0);
    /* Linux copies TCP_NODELAY from the listener into every accepted socket: one setsockopt */
    int one = 1;
    setsockopt(listener, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (sigfd < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", LAB_NAME, strerror(errno));
        return 1;
    }
    arm_signals(sigfd);
    arm_accept();
    announce(listener, facts());

    for (;;) {
        /* -- one syscall: submit every SQE written since the last one, sleep until a CQE */
        submit(1);
        /* -- reap every completion that is ready, straight from the shared CQ */
        unsigned head = *ring.cq_head, tail = __atomic_load_n(ring.cq_tail, __ATOMIC_ACQUIRE);
        pool.recycled = 0;
        for (; head != tail; head++) {
            struct io_uring_cqe *cqe = &ring.cqes[head & ring.cq_mask];
            struct connection *c = (struct connection *)(uintptr_t)(cqe->user_data & ~(uint64_t)KIND_MASK);
            switch (cqe->user_data & KIND_MASK) {
            case RECV:
                received(c, cqe->res, cqe->flags);
                break;
            case SEND:
                sent(c, cqe->res);
                break;
            case ACCEPT:
                accepted(cqe->res, cqe->flags);
                break;
            case BACKOFF:
                accept_backoff = false;
                arm_accept();
                break;
            case SIGNAL:
                if (cqe->res == sizeof siginfo) {
                    log_line("%s: shut down", siginfo.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
                    return 0; /* exit closes every socket; the clients see FIN */
                }
                arm_signals(sigfd);
                break;
            default: /* CANCEL: the cancelled request's own CQE carries what matters */
                break;
            }
        }
        __atomic_store_n(ring.cq_head, head, __ATOMIC_RELEASE); /* the slots are the kernel's again */
        if (pool.recycled) {
            __atomic_store_n(&pool.br->tail, pool.tail, __ATOMIC_RELEASE); /* the buffers given back */
            feed_starved();
        }
    }
}
