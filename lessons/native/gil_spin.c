/* Lesson 11: a C function that computes for a while without ever looking at Python.
 *
 * Built as a shared library (servers/build.py with -shared -fPIC) and called through ctypes twice:
 * - ctypes.CDLL: ctypes releases the GIL around every foreign call (Py_BEGIN_ALLOW_THREADS), so
 *   the other Python threads keep running while this spins;
 * - ctypes.PyDLL: the GIL stays held for the whole call, as in a C extension that forgets to
 *   release it. CPython's switch interval cannot help: the request to drop the GIL is only seen by
 *   the eval loop between two bytecodes, and no bytecode runs until this returns.
 */
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Spin for `ms` milliseconds of wall time; return the iterations done, so nothing is optimised away. */
long spin_ms(double ms) {
    double deadline = now_ms() + ms;
    long iterations = 0;
    while (now_ms() < deadline)
        iterations++;
    return iterations;
}
