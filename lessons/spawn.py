"""Creating a child process the ways the lessons compare, and timing an action.

    fork_exit_wait(status=0)   fork(); the child _exit()s at once; the parent waits: its exit code
    fork_exec_wait(program)    fork(); the child execs `program`; the parent waits
    posix_spawn_wait(program)  posix_spawn(3) (glibc: clone3/clone with CLONE_VM | CLONE_VFORK)
    median_us(action, n)       the median wall time of n calls of action(), in µs
    ballast(mib, huge=False)   a parent's extra memory, populated, in 4 KiB or 2 MiB pages
    thp_mode()                 transparent huge pages: "always", "madvise", "never" (or None)
    cpu_work(iterations)       pure-Python arithmetic, the lessons' CPU-bound task
    in_processes(work, arg, n) n children doing work(arg) at once (pinned, if given CPUs): wall s
    in_fresh_interpreter(target, *args)  target(conn, *args) in a new interpreter: what it sent

POSIX: they run on any Unix with fork; what they cost is the lessons' measurement (02 to 06).
ballast's page sizes are Linux's (madvise(2) MADV_HUGEPAGE, MADV_NOHUGEPAGE).
"""

from __future__ import annotations

import mmap
import os
import re
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


# -- a parent of a given size ---------------------------------------------------------------------------

THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"


def thp_mode() -> str | None:
    """Transparent huge pages: "always", "madvise" or "never" (the bracketed word of
    /sys/kernel/mm/transparent_hugepage/enabled), or None where the kernel has no THP."""
    try:
        with open(THP_ENABLED) as f:
            text = f.read()
    except OSError:
        return None
    chosen = re.search(r"\[(\w+)\]", text)
    return chosen[1] if chosen else None


def ballast(mib: int, huge: bool = False) -> mmap.mmap | None:
    """`mib` MiB of anonymous memory, every page of it written (populated), in 4 KiB pages
    (madvise MADV_NOHUGEPAGE, whatever the THP mode) or, with `huge`, in 2 MiB transparent huge
    pages where the kernel can give them (MADV_HUGEPAGE: THP mode "always" or "madvise"; how much
    it got shows in smaps_rollup's AnonHugePages). None for 0 MiB. close() it to free it."""
    if mib == 0:
        return None
    size = mib << 20
    memory = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    advice = getattr(mmap, "MADV_HUGEPAGE" if huge else "MADV_NOHUGEPAGE", None)  # Linux only
    if advice is not None:
        memory.madvise(advice)  # before the first touch: it decides the page size of each fault
    chunk = b"\x01" * min(size, 1 << 20)
    for offset in range(0, size, len(chunk)):  # every write fault allocates a page (or a huge page)
        memory[offset:offset + len(chunk)] = chunk
    return memory


# -- the same work in several processes at once -----------------------------------------------------------


def cpu_work(iterations: int) -> int:
    """Pure Python arithmetic: it never waits, so only a CPU can make it go faster."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def in_processes(work, arg, n: int, cpus: list[int] | None = None) -> float:
    """Fork `n` children that each run work(arg), child i pinned to cpus[i] where given; return
    the wall time until the last has exited, in s."""
    t0 = time.perf_counter()
    pids = []
    try:
        for i in range(n):
            pid = os.fork()
            if pid == 0:  # ---- the child: work, then exit without Python's cleanup
                try:
                    if cpus:
                        os.sched_setaffinity(0, {cpus[i]})
                    work(arg)
                finally:
                    os._exit(0)
            pids.append(pid)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
    return time.perf_counter() - t0


def in_fresh_interpreter(target, *args, timeout_s: float = 60.0):
    """Run ``target(conn, *args)`` in a new interpreter (multiprocessing "spawn": nothing inherited
    from this one, no memory freed by an earlier experiment to reuse) and return the one object it
    sends through ``conn``. TimeoutError if it sends nothing within ``timeout_s``, EOFError if it
    dies first; the child is reaped, or killed by its pid, before this returns."""
    import multiprocessing
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(target=target, args=(child_end, *args), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(timeout_s):
            raise TimeoutError(f"the fresh interpreter sent nothing in {timeout_s:.0f} s")
        return parent_end.recv()
    finally:
        process.join(timeout_s)
        if process.is_alive():
            process.kill()
            process.join()
        parent_end.close()
