"""Creating a child process the ways the lessons compare, and timing an action.

    fork_exit_wait(status=0)   fork(); the child _exit()s at once; the parent waits: its exit code
    fork_exec_wait(program)    fork(); the child execs `program`; the parent waits
    posix_spawn_wait(program)  posix_spawn(3) (glibc: clone3/clone with CLONE_VM | CLONE_VFORK)
    median_us(action, n)       the median wall time of n calls of action(), in µs

POSIX: they run on any Unix with fork; what they cost is the lessons' measurement (03, 04, 06).
"""

from __future__ import annotations

import os
import statistics
import time


def fork_exit_wait(status: int = 0) -> int:
    """fork(); the child exits at once with `status`; the parent waits and returns the exit code."""
    pid = os.fork()
    if pid == 0:  # ---- the child: a copy of the parent, running from this same line
        os._exit(status)  # _exit: no Python cleanup, no flushing of the parent's copied buffers
    _, wait_status = os.waitpid(pid, 0)  # ---- the parent: sleeps until the child has exited
    return os.waitstatus_to_exitcode(wait_status)


def fork_exec_wait(program: str) -> int:
    """fork(); the child replaces itself with `program` (execve); the parent waits: the exit code."""
    pid = os.fork()  # copies the page tables of the whole parent...
    if pid == 0:
        try:
            os.execv(program, [program])  # ...which exec throws away at once; never returns
        finally:
            os._exit(127)  # exec failed
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def posix_spawn_wait(program: str) -> int:
    """posix_spawn(3) `program` and wait: the child borrows the parent's memory until it execs."""
    pid = os.posix_spawn(program, [program], os.environ)  # glibc: clone3/clone(CLONE_VM|CLONE_VFORK), exec
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status)


def median_us(action, repeats: int) -> float:
    """The median wall time of `repeats` calls of action(), in µs (the median: a call that other
    programs on the machine delayed does not move it)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        action()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)
