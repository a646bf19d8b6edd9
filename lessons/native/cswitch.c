/* Lesson 10: what a stackful switch costs in C, where nothing but the switch is in the way.
 *
 * A fiber here is a stack of its own (64 KiB from the heap) and a saved stack pointer. Two ways to
 * switch, each measured as a ping-pong between the main fiber and one other (a round trip is two
 * switches):
 * - swapcontext(3), the portable POSIX way: it saves every register of the ucontext_t and, on
 *   glibc, the signal mask too, with an rt_sigprocmask system call per switch;
 * - fiber_switch below, on x86-64: push the six callee-saved registers, store the stack pointer,
 *   load the other fiber's, pop its six, return into it. That is all a stackful switch must do
 *   (the caller-saved registers were saved by the compiler around the call), and what Boost.Context
 *   and Go's runtime (gogo) do. On other machines only swapcontext is measured.
 *
 * usage: cswitch ROUND_TRIPS REPEATS
 * Prints one JSON object: {"arch": ..., "swapcontext_ns": ..., "register_swap_ns": ... or null}.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>

#define STACK_BYTES (64 * 1024)

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* -- swapcontext ----------------------------------------------------------------------------- */

static ucontext_t main_ctx, fiber_ctx;

static void ucontext_echo(void) {
    for (;;)
        swapcontext(&fiber_ctx, &main_ctx);  /* back to main; resumed here next time */
}

static double swapcontext_ns(long round_trips) {
    static char *stack;
    if (!stack)
        stack = aligned_alloc(16, STACK_BYTES);
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = stack;
    fiber_ctx.uc_stack.ss_size = STACK_BYTES;
    fiber_ctx.uc_link = NULL;
    makecontext(&fiber_ctx, ucontext_echo, 0);
    double t0 = now_ns();
    for (long i = 0; i < round_trips; i++)
        swapcontext(&main_ctx, &fiber_ctx);
    return (now_ns() - t0) / (2.0 * round_trips);
}

/* -- a register swap, x86-64 only ------------------------------------------------------------ */

#if defined(__x86_64__)
#define HAVE_REGISTER_SWAP 1
/* fiber_switch(void **save_sp, void *load_sp): System V x86-64 ABI, rdi = save_sp, rsi = load_sp.
 * rbx, rbp and r12-r15 are the callee-saved registers: the only state a switch must keep. */
__asm__(".text\n"
        ".globl fiber_switch\n"
        ".type fiber_switch, @function\n"
        "fiber_switch:\n"
        "    pushq %rbp\n    pushq %rbx\n    pushq %r12\n    pushq %r13\n    pushq %r14\n    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"   /* this fiber's stack pointer, saved */
        "    movq %rsi, %rsp\n"     /* the other fiber's stack, loaded */
        "    popq %r15\n    popq %r14\n    popq %r13\n    popq %r12\n    popq %rbx\n    popq %rbp\n"
        "    ret\n"                 /* into the other fiber, where it last called fiber_switch */
        ".size fiber_switch, .-fiber_switch\n");
void fiber_switch(void **save_sp, void *load_sp);

static void *main_sp, *fiber_sp;

static void register_echo(void) {
    for (;;)
        fiber_switch(&fiber_sp, main_sp);
}

static double register_swap_ns(long round_trips) {
    static char *stack;
    if (!stack)
        stack = aligned_alloc(16, STACK_BYTES);
    /* A new fiber's stack looks as if it had called fiber_switch: six zeroed registers to pop and
     * a return address, register_echo, at a 16-byte aligned slot (so that register_echo starts
     * with the stack aligned as the ABI wants after a call). */
    void **top = (void **)(stack + STACK_BYTES - 16);
    top[0] = (void *)register_echo;
    for (int i = 1; i <= 6; i++)
        top[-i] = 0;
    fiber_sp = top - 6;
    double t0 = now_ns();
    for (long i = 0; i < round_trips; i++)
        fiber_switch(&main_sp, fiber_sp);
    return (now_ns() - t0) / (2.0 * round_trips);
}
#endif

int main(int argc, char **argv) {
    long round_trips = argc == 3 ? atol(argv[1]) : 0, repeats = argc == 3 ? atol(argv[2]) : 0;
    if (round_trips < 1 || repeats < 1 || repeats > 99) {
        fprintf(stderr, "usage: cswitch ROUND_TRIPS REPEATS (REPEATS at most 99)\n");
        return 2;
    }
    double uc[99], rs[99];
    for (long r = 0; r < repeats; r++) {
        uc[r] = swapcontext_ns(round_trips);
#ifdef HAVE_REGISTER_SWAP
        rs[r] = register_swap_ns(round_trips);
#endif
    }
    qsort(uc, repeats, sizeof uc[0], compare);
    printf("{\"arch\": \"%s\", \"swapcontext_ns\": %.3f, \"register_swap_ns\": ",
#if defined(__x86_64__)
           "x86_64",
#elif defined(__aarch64__)
           "aarch64",
#else
           "other",
#endif
           uc[repeats / 2]);
#ifdef HAVE_REGISTER_SWAP
    qsort(rs, repeats, sizeof rs[0], compare);
    printf("%.3f}\n", rs[repeats / 2]);
#else
    (void)rs;
    printf("null}\n");
#endif
    return 0;
}
