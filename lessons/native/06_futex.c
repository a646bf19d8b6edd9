/* Lesson 06: what a pthread mutex and pthread_join ask of the kernel, for strace to watch.

   lessons/06_threads_linux.py builds this (servers/build.py) and runs it under
   `strace -f -e trace=futex,clone,clone3`:

     06_futex private ITERATIONS   two threads, each locking ITS OWN mutex ITERATIONS times
     06_futex shared ITERATIONS    two threads locking ONE mutex ITERATIONS times each
     06_futex join SLEEP_MS        one thread sleeps SLEEP_MS; main waits in pthread_join()

   Same threads, same work in the first two: the only difference is contention. glibc's mutex is
   a word in user memory; pthread_mutex_lock() takes a free one with one atomic compare-and-swap
   and no system call. Only when the word says "taken" does the caller ask the kernel to sleep
   (futex(FUTEX_WAIT)), and only when it says "someone sleeps" does unlock ask the kernel to wake
   one (futex(FUTEX_WAKE)). So `private` makes no futex calls in its loops and `shared` makes many.

   `join` shows what pthread_join() waits on: clone3() was given CLONE_CHILD_CLEARTID and the
   address of the thread's TID field (child_tid=ADDR); pthread_join() sleeps in futex(ADDR,
   FUTEX_WAIT, TID); when the thread exits, the kernel writes 0 at ADDR and does a futex wake on
   it (kernel/fork.c, mm_release). The program prints the TID it joined, so the lesson can match
   the two strace lines. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t locks[2] = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER};
static long counters[2];
static long iterations;
static int share_one;
static long sleep_ms;
static volatile pid_t sleeper_tid;
static int arrived;  /* both lockers spin until the other has started, so their loops overlap */

static void *locker(void *arg) {
    long me = (long)arg;
    pthread_mutex_t *lock = &locks[share_one ? 0 : me];
    __atomic_add_fetch(&arrived, 1, __ATOMIC_SEQ_CST);
    while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < 2)
        ;  /* spin in user space: a wait here must not add futex calls of its own */
    for (long i = 0; i < iterations; i++) {
        pthread_mutex_lock(lock);
        counters[share_one ? 0 : me]++;  /* the critical section: a read-modify-write */
        for (volatile int spin = 0; spin < 200; spin++)
            ;  /* ...made longer, so the other thread often finds the lock taken */
        pthread_mutex_unlock(lock);
        for (volatile int spin = 0; spin < 10; spin++)
            ;  /* work outside the lock, so the holder does not re-take it at once */
    }
    return NULL;
}

static void *sleeper(void *arg) {
    (void)arg;
    sleeper_tid = gettid();
    struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s private|shared ITERATIONS | join SLEEP_MS\n", argv[0]);
        return 2;
    }
    pthread_t threads[2];
    if (strcmp(argv[1], "join") == 0) {
        sleep_ms = atol(argv[2]);
        if (pthread_create(&threads[0], NULL, sleeper, NULL) != 0) return 1;
        pthread_join(threads[0], NULL);  /* sleeps on the thread's TID word until the kernel clears it */
        printf("joined tid %d\n", (int)sleeper_tid);
        return 0;
    }
    share_one = strcmp(argv[1], "shared") == 0;
    if (!share_one && strcmp(argv[1], "private") != 0) {
        fprintf(stderr, "%s: mode must be private, shared or join, not %s\n", argv[0], argv[1]);
        return 2;
    }
    iterations = atol(argv[2]);
    for (long t = 0; t < 2; t++)
        if (pthread_create(&threads[t], NULL, locker, (void *)t) != 0) return 1;
    for (int t = 0; t < 2; t++)
        pthread_join(threads[t], NULL);
    printf("counted %ld\n", counters[0] + counters[1]);
    return counters[0] + counters[1] == 2 * iterations ? 0 : 1;
}
