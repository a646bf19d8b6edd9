"""Lesson 06, threads in Linux: a thread is a task, with its own stack, and there is a limit.

What it shows:
- to the Linux kernel a thread is a task like a process, made by clone(2) with CLONE_VM (share
  the memory), CLONE_FILES, CLONE_SIGHAND and CLONE_THREAD (join the caller's thread group). Every
  task has its own TID (gettid); getpid() returns the thread group's ID, the TID of the first thread,
  for all of them. /proc/PID/task/ lists one directory per thread;
- each thread gets a stack: a mapping of its own plus a guard page. The whole stack is reserved
  virtual memory (8 MiB by default: glibc takes RLIMIT_STACK), but only the pages the thread touches
  become resident. threading.stack_size() asks for less;
- how many threads one process can start, up to a bound this lesson sets (5,000; 1,000 in --quick),
  with a 64 KiB stack, what each costs in memory, and the limits that would stop it: kernel.threads-max,
  RLIMIT_NPROC (tasks per user), kernel.pid_max (TIDs are PIDs), vm.max_map_count (two mappings
  per thread), the cgroup's pids.max, and memory;
- what creating a thread costs next to creating a process.

The OS mechanism: clone(2), gettid(2), pthreads(7), pthread_attr_setstacksize(3), proc(5) for
/proc/PID/task, /proc/PID/status and /proc/PID/maps, getrlimit(2).

Linux-only: /proc and the limits; elsewhere those parts are skipped. Thread and process creation
costs run on any Unix.

    python -m lessons.06_threads_linux [--quick] [--json PATH]
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

from lessons.common import Lesson, linux_only, parse_args

KiB = 1024
SMALL_STACK_BYTES = 256 * KiB  # what the `threads` server asks for
TINY_STACK_BYTES = 64 * KiB  # for the count: enough for a thread that only waits on an Event
START_TIMEOUT_S = 5.0  # a thread that has not said hello by then is counted as failed
CHILD_TIMEOUT_S = 60.0  # the fresh process that starts the threads must report within this


# -- reading /proc/self --------------------------------------------------------------------------------


def status() -> dict[str, str]:
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def memory_kib() -> dict[str, int]:
    """VmSize (reserved address space) and VmRSS (resident), in KiB."""
    s = status()
    return {"virtual": int(s["VmSize"].split()[0]), "resident": int(s["VmRSS"].split()[0])}


def read_limit(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return None if text == "max" else int(text)


def cgroup_pids_max() -> int | None:
    """pids.max of this process's cgroup (v2, or the v1 pids controller), if it sets one."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for candidate in ((f"/sys/fs/cgroup{path}/pids.max",) if controllers == "" else
                          (f"/sys/fs/cgroup/pids{path}/pids.max",) if "pids" in controllers.split(",") else ()):
            limit = read_limit(candidate)
            if limit is not None:
                return limit
    return None


# -- threads as tasks ----------------------------------------------------------------------------------


def threads_as_tasks(n: int) -> dict:
    """Start `n` threads; each notes getpid() and gettid(); look at /proc/self/task meanwhile."""
    release = threading.Event()
    seen = []  # (pid, tid) from inside each thread; list.append is safe across threads

    def note_ids():
        seen.append((os.getpid(), threading.get_native_id()))  # get_native_id() is gettid(2)
        release.wait()

    threads = [threading.Thread(target=note_ids) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while len(seen) < n and time.monotonic() < deadline:
            time.sleep(0.001)
        tasks = sorted(int(tid) for tid in os.listdir("/proc/self/task"))
        tgids = {status_of_task(tid)["Tgid"] for tid in tasks}
        threads_field = int(status()["Threads"])
    finally:
        release.set()
        for t in threads:
            t.join()
    return {"tasks": tasks, "threads_field": threads_field, "pids": {p for p, _ in seen},
            "tids": {t for _, t in seen}, "tgids": tgids}


def status_of_task(tid: int) -> dict[str, str]:
    fields = {}
    with open(f"/proc/self/task/{tid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


# -- stacks and counting ---------------------------------------------------------------------------------


def mappings() -> set[tuple[str, int, str]]:
    """/proc/self/maps as a set of (address range, size in KiB, permissions)."""
    found = set()
    with open("/proc/self/maps") as f:
        for line in f:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            found.add((span, (end - start) // KiB, perms))
    return found


def start_waiting_threads(n: int, stack_bytes: int) -> dict:
    """Start up to `n` threads with `stack_bytes` stacks (0: the default) that all wait on one
    Event; note what the process's memory and mappings became; stop them. Stops early at the first
    thread that fails to start. Run it in a fresh interpreter (see in_fresh_process), so nothing
    a previous experiment left behind (glibc caches freed stacks, and keeps its malloc arenas)
    colours the result."""
    release = threading.Event()
    started = []
    stopped_by = f"the lesson's bound of {n:,}"
    threading.stack_size(stack_bytes)  # applies to threads started from now on
    before_memory, before_maps = memory_kib(), mappings()
    t0 = time.perf_counter()
    try:
        for _ in range(n):
            thread = threading.Thread(target=release.wait, daemon=True)
            try:
                thread.start()  # pthread_create: mmap the stack, clone the task
            except (RuntimeError, MemoryError) as exc:  # "can't start new thread": EAGAIN or ENOMEM
                stopped_by = f"{type(exc).__name__}: {exc}"
                break
            started.append(thread)
        elapsed = time.perf_counter() - t0
        during_memory, new_maps = memory_kib(), mappings() - before_maps
    finally:
        release.set()
        for thread in started:
            thread.join()
    count = max(len(started), 1)
    sizes = [size for _, size, perms in new_maps if perms == "rw-p"]
    stack_kib = max(set(sizes), key=sizes.count) if sizes else 0  # the size most new mappings have
    return {
        "count": len(started), "stopped_by": stopped_by, "start_us": elapsed / count * 1e6,
        "virtual_kib": (during_memory["virtual"] - before_memory["virtual"]) / count,
        "resident_kib": (during_memory["resident"] - before_memory["resident"]) / count,
        "stack_kib": stack_kib,
        "guard_pages": sum(1 for _, size, perms in new_maps if perms == "---p" and size < 1024),
        # glibc gives threads malloc arenas of their own (up to 8 per core), each reserving 64 MiB
        "malloc_arenas": sum(1 for _, size, perms in new_maps if perms == "---p" and size >= 1024),
    }


def _child(conn, n: int, stack_bytes: int) -> None:
    conn.send(start_waiting_threads(n, stack_bytes))
    conn.close()


def in_fresh_process(n: int, stack_bytes: int) -> dict:
    """start_waiting_threads in a new interpreter (multiprocessing "spawn"), so that each
    experiment starts from a clean process; nothing it starts outlives it."""
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(child_end, n, stack_bytes), daemon=True)
    process.start()
    child_end.close()
    try:
        if not parent_end.poll(CHILD_TIMEOUT_S):
            raise TimeoutError(f"the thread-counting process sent nothing in {CHILD_TIMEOUT_S:.0f} s")
        return parent_end.recv()
    finally:
        process.join(CHILD_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()
        parent_end.close()


# -- creation cost ------------------------------------------------------------------------------------------


def thread_start_join() -> None:
    thread = threading.Thread(target=int)
    thread.start()
    thread.join()


def fork_exit_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def median_us(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        action()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


# -- The lesson ------------------------------------------------------------------------------------------------


LIMITS = (
    ("kernel.threads-max (tasks, whole system)", "/proc/sys/kernel/threads-max"),
    ("kernel.pid_max (highest pid or tid)", "/proc/sys/kernel/pid_max"),
    ("vm.max_map_count (mappings per process)", "/proc/sys/vm/max_map_count"),
)


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("06", "Threads in Linux", args)
    quick = lesson.quick
    no_proc = linux_only("/proc/self/task and /proc/self/status")

    n = 4
    lesson.section(f"{n} threads, as the kernel lists them")
    task_labels = ("tasks under /proc/PID/task", "Threads in /proc/PID/status",
                   "distinct pids the threads saw (getpid)", "distinct tids the threads saw (gettid)",
                   "thread group id of every task (Tgid) is the pid", "main thread's tid is the pid")
    if no_proc:
        for label in task_labels:
            lesson.skip(label, no_proc)
        tasks = None
    else:
        tasks = threads_as_tasks(n)
        lesson.measure("tasks under /proc/PID/task", len(tasks["tasks"]))
        lesson.measure("Threads in /proc/PID/status", tasks["threads_field"])
        lesson.measure("distinct pids the threads saw (getpid)", len(tasks["pids"]))
        lesson.measure("distinct tids the threads saw (gettid)", len(tasks["tids"]))
        lesson.measure("thread group id of every task (Tgid) is the pid",
                       "yes" if tasks["tgids"] == {str(os.getpid())} else f"no: {sorted(tasks['tgids'])}")
        lesson.measure("main thread's tid is the pid",
                       "yes" if threading.main_thread().native_id == os.getpid() else "no")

    k = 50 if quick else 200
    small_kib = SMALL_STACK_BYTES // KiB
    soft_stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    lesson.section(f"stacks: {k} waiting threads in a fresh process, default stack, then {small_kib} KiB")
    if soft_stack == resource.RLIM_INFINITY:
        lesson.measure("RLIMIT_STACK (glibc's default thread stack)", "unlimited (glibc then uses its built-in default, 2 MiB on x86-64)")
    else:
        lesson.measure("RLIMIT_STACK (glibc's default thread stack)", soft_stack / KiB / KiB, "MiB")
    stack_labels = ("stack mapping per thread, default", "guard pages per thread",
                    "resident memory per thread, default stack", "malloc arenas created",
                    "virtual memory per thread, default stack (with arenas)",
                    f"stack mapping per thread, {small_kib} KiB", f"resident memory per thread, {small_kib} KiB stack")
    if no_proc:
        for label in stack_labels:
            lesson.skip(label, no_proc)
        default = small = None
    else:
        default = in_fresh_process(k, 0)  # 0: the platform's default
        small = in_fresh_process(k, SMALL_STACK_BYTES)
        lesson.measure("stack mapping per thread, default", default["stack_kib"] / KiB, "MiB")
        lesson.measure("guard pages per thread", default["guard_pages"] / max(default["count"], 1))
        lesson.measure("resident memory per thread, default stack", default["resident_kib"], "KiB")
        lesson.measure("malloc arenas created", default["malloc_arenas"])
        lesson.measure("virtual memory per thread, default stack (with arenas)", default["virtual_kib"] / KiB, "MiB")
        lesson.measure(f"stack mapping per thread, {small_kib} KiB", small["stack_kib"], "KiB")
        lesson.measure(f"resident memory per thread, {small_kib} KiB stack", small["resident_kib"], "KiB")

    bound = 1_000 if quick else 5_000
    lesson.section(f"how many threads start: up to {bound:,} in a fresh process, {TINY_STACK_BYTES // KiB} KiB stacks")
    for label, path in LIMITS:
        value = read_limit(path)
        if value is None:
            lesson.skip(label, no_proc or f"no {path}")
        else:
            lesson.measure(label, value)
    nproc_soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    lesson.measure("RLIMIT_NPROC (tasks per user)",
                   "unlimited" if nproc_soft == resource.RLIM_INFINITY else nproc_soft)
    pids_max = None if no_proc else cgroup_pids_max()
    if pids_max is None:
        lesson.skip("cgroup pids.max (tasks in this cgroup)", no_proc or "this cgroup sets no pids limit")
    else:
        lesson.measure("cgroup pids.max (tasks in this cgroup)", pids_max)
    many_labels = ("threads started", "stopped by", "time to start one thread, among many",
                   "virtual memory per thread, many", "resident memory per thread, many")
    if no_proc:
        for label in many_labels:
            lesson.skip(label, no_proc)
        many = None
    else:
        many = in_fresh_process(bound, TINY_STACK_BYTES)
        lesson.measure("threads started", many["count"])
        lesson.measure("stopped by", many["stopped_by"])
        lesson.measure("time to start one thread, among many", many["start_us"], "µs")
        lesson.measure("virtual memory per thread, many", many["virtual_kib"], "KiB")
        lesson.measure("resident memory per thread, many", many["resident_kib"], "KiB")

    repeats = 200 if quick else 1000
    lesson.section(f"creating a thread vs a process (medians of {repeats} and {repeats // 4})")
    thread_us = lesson.measure("thread start + join", median_us(thread_start_join, repeats), "µs")
    fork_us = lesson.measure("fork + exit + wait", median_us(fork_exit_wait, repeats // 4), "µs")

    # -- what to notice, computed
    if tasks:
        lesson.notice(f"{n} threads and the main one are {len(tasks['tasks'])} tasks under /proc/PID/task; the "
                      f"{n} threads got {len(tasks['tids'])} different TIDs from gettid() and "
                      f"{len(tasks['pids'])} pid from getpid(): a process is a group of threads")
    if default and small:
        lesson.notice(f"each thread got a stack mapping of {default['stack_kib'] / KiB:,.0f} MiB but made only "
                      f"{default['resident_kib']:,.0f} KiB resident: stack pages exist once touched; with "
                      f"{small_kib} KiB stacks, {small['resident_kib']:,.0f} KiB resident")
        if default["malloc_arenas"]:
            other_mib = (default["virtual_kib"] - default["stack_kib"]) / KiB
            lesson.notice(f"glibc also gave the threads {default['malloc_arenas']} malloc arenas of their own "
                          "(64 MiB of address space each, up to 8 per core), so that they do not contend "
                          f"for one heap: of the {default['virtual_kib'] / KiB:,.1f} MiB of virtual memory per "
                          f"thread, {other_mib:,.1f} MiB is not its stack")
    if many:
        lesson.notice(f"{many['count']:,} threads started, {many['start_us']:,.0f} µs each and "
                      f"{many['resident_kib']:,.0f} KiB resident each; stopped by {many['stopped_by']}")
    lesson.notice(f"a thread started and joined in {thread_us:,.0f} µs, a process forked and reaped in "
                  f"{fork_us:,.0f} µs: {fork_us / thread_us:.1f}x as long, since fork copies the "
                  "page tables and a thread shares them")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
