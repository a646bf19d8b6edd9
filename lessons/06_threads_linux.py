"""Lesson 06, threads in Linux: a thread is a task, with its own stack, and there is a limit.

What it shows:
- to the Linux kernel a thread is a task like a process, made by clone(2) (clone3 in newer glibc)
  with CLONE_VM (share the memory), CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD (join the
  caller's thread group), CLONE_SYSVSEM, CLONE_SETTLS (its own thread-local storage),
  CLONE_PARENT_SETTID and CLONE_CHILD_CLEARTID (the TID word that pthread_join waits on). strace
  records the call when a Python thread starts. Every task has its own TID (gettid); getpid()
  returns the thread group's ID, the TID of the first thread, for all of them. /proc/PID/task/
  lists one directory per thread;
- the futex under a lock: two threads lock and unlock a mutex each (no contention) or one shared
  mutex (contention), in a small C program (lessons/native/06_futex.c) under `strace -f -e futex`: the
  free lock is taken in user space, only a contended one makes futex(2) calls. And pthread_join()
  sleeping in futex(FUTEX_WAIT) on the very address clone3 was given as child_tid, which the kernel
  clears and wakes when the thread exits (CLONE_CHILD_CLEARTID);
- each thread gets a stack: a mapping of its own plus a guard page. The whole stack is reserved
  virtual memory (8 MiB by default: glibc takes RLIMIT_STACK), but only the pages the thread touches
  become resident. threading.stack_size() asks for less;
- how many threads one process can start, up to a bound this lesson sets (5,000; 1,000 in --quick),
  with a 64 KiB stack, what each costs in memory, the user's and the kernel's (its kernel stack,
  KernelStack in /proc/meminfo, and its task_struct, from the slab allocator), and the limits that
  would stop it: kernel.threads-max, RLIMIT_NPROC (tasks per user: the lesson counts the user's),
  kernel.pid_max (TIDs are PIDs), vm.max_map_count (two mappings per thread), the cgroup's
  pids.max, and memory;
- signals and threads (lessons/_06_signals.py): each thread's own mask, a signal sent to one thread
  (tgkill) or to the process (kill), where each waits while blocked, and which thread the kernel
  hands a process-directed one to;
- what creating a thread costs next to creating a process; and, in a child of a CPython 3.12+
  (servers/interpreters.py finds or builds one), what a subinterpreter with its own GIL costs to
  create and in memory beside a thread and a forked process of that same interpreter.

The OS mechanism: clone(2), gettid(2), futex(2), pthreads(7), pthread_attr_setstacksize(3),
proc(5) for /proc/PID/task, /proc/PID/status and /proc/PID/maps, getrlimit(2), signal(7), tgkill(2).

Linux-only: /proc, strace and the limits; elsewhere those parts are skipped, as are the strace parts
where strace is missing (apt-get install strace) or ptrace is not allowed, and the futex program
where there is no C compiler. Thread and process creation costs run on any Unix.

    python -m lessons.06_threads_linux [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import re
import resource
import sys
import threading
import time
from pathlib import Path

from lessons import procfs, trace
from lessons._06_pictures import draw_memory
from lessons._06_signals import signals_section
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spawn import fork_exit_wait, in_fresh_interpreter, median_us

KiB = 1024
SMALL_STACK_BYTES = 256 * KiB  # what the `threads` server asks for
TINY_STACK_BYTES = 64 * KiB  # for the count: enough for a thread that only waits on an Event
START_TIMEOUT_S = 5.0  # a thread that has not said hello by then is counted as failed
CHILD_TIMEOUT_S = 60.0  # the fresh process that starts the threads must report within this
FUTEX_PROGRAM = "lessons/native/06_futex.c"
LOCK_ITERATIONS = 200_000  # lock/unlock pairs per thread: a fraction of a second, even under strace
JOIN_SLEEP_MS = 100  # long enough that pthread_join() finds the thread alive and has to sleep
# what glibc's pthread_create passes (nptl/pthread_create.c, create_thread's clone_flags)
THREAD_FLAGS = ("CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SIGHAND", "CLONE_THREAD", "CLONE_SYSVSEM",
                "CLONE_SETTLS", "CLONE_PARENT_SETTID", "CLONE_CHILD_CLEARTID")
THREAD_START = "import threading; t = threading.Thread(target=int); t.start(); t.join()"


# -- reading /proc/self --------------------------------------------------------------------------------


def memory_kib() -> dict[str, int]:
    """VmSize (reserved address space) and VmRSS (resident) of this process, and KernelStack (every
    task's kernel stack, machine-wide, /proc/meminfo), in KiB."""
    s = procfs.status()
    return {"virtual": procfs.kib(s["VmSize"]), "resident": procfs.kib(s["VmRSS"]),
            "kernel_stacks": procfs.meminfo()["KernelStack"]}


def task_struct_kib() -> float | None:
    """The size of task_struct, the kernel's record of one task, from the slab allocator:
    /sys/kernel/slab/task_struct/object_size (SLUB) or /proc/slabinfo (root only). None if hidden."""
    size = procfs.read("/sys/kernel/slab/task_struct/object_size")
    if size is None:
        for line in (procfs.read("/proc/slabinfo") or "").splitlines():
            if line.startswith("task_struct "):
                size = line.split()[3]  # name, active objects, objects, object size
    return int(size) / KiB if size else None


def tasks_of_user(uid: int) -> int:
    """Threads of every process whose real UID is ``uid``: what RLIMIT_NPROC counts against."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = procfs.status(entry)
            except OSError:  # gone meanwhile
                continue
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
    return total


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
        tgids = {procfs.status("self", tid)["Tgid"] for tid in tasks}
        threads_field = int(procfs.status()["Threads"])
    finally:
        release.set()
        for t in threads:
            t.join()
    return {"tasks": tasks, "threads_field": threads_field, "pids": {p for p, _ in seen},
            "tids": {t for _, t in seen}, "tgids": tgids}



# -- clone flags and futexes, as strace sees them ---------------------------------------------------


def thread_clone_line() -> str:
    """The clone/clone3 call with which this Python starts a thread, as strace prints it."""
    lines, _ = trace.run([sys.executable, "-c", THREAD_START], "clone,clone3")
    for line in lines:
        if "CLONE_THREAD" in line:
            return trace.without_pid(line)
    raise trace.StraceUnavailable("strace showed no clone with CLONE_THREAD")


def clone_flags(line: str) -> list[str]:
    found = re.search(r"flags=([A-Z0-9_|]+)", line)
    return found.group(1).split("|") if found else []


def futex_program() -> Path:
    from servers.build import Unavailable, build
    try:
        return build(FUTEX_PROGRAM, flags=("-pthread",))
    except Unavailable as exc:
        raise trace.StraceUnavailable(str(exc)) from None


def mutex_futex_calls(mode: str) -> int:
    """futex(2) calls the mutex loops of lessons/native/06_futex.c make in ``mode`` (private: a mutex per
    thread; shared: one mutex for both). glibc's mutex uses FUTEX_WAIT_PRIVATE/FUTEX_WAKE_PRIVATE;
    pthread_join's wait on the TID word is a shared futex, so it is not counted here."""
    lines, _ = trace.run([str(futex_program()), mode, str(LOCK_ITERATIONS)], "futex")
    return sum(1 for line in lines
               if re.match(r"^\d+\s+futex\(0x[0-9a-f]+, FUTEX_(WAIT|WAKE)_PRIVATE", line))


def join_futex() -> dict:
    """clone3's child_tid and the futex pthread_join() sleeps in, from one strace of `06_futex join`."""
    lines, stdout = trace.run([str(futex_program()), "join", str(JOIN_SLEEP_MS)], "clone,clone3,futex")
    found = re.search(r"joined tid (\d+)", stdout)
    tid = found.group(1) if found else None
    child_tid = next((m.group(1) for line in lines if (m := re.search(r"child_tid=(0x[0-9a-f]+)", line))), None)
    wait = next((re.sub(r"^\d+\s+", "", line) for line in lines
                 if child_tid and re.search(rf"futex\({child_tid}, FUTEX_WAIT", line)), None)
    waited_for = re.search(r"FUTEX_WAIT[A-Z_|]*, (\d+)", wait).group(1) if wait else None
    return {"tid": tid, "child_tid": child_tid, "wait": wait,
            "same_address": bool(wait), "waited_for_tid": waited_for is not None and waited_for == tid}


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
    # A stack is the rw-p mapping right above a guard page (glibc mprotects the bottom of the stack's
    # mmap to PROT_NONE). Other new rw-p mappings, such as the 16 KiB data-stack chunk CPython 3.11
    # gives each thread state, sit elsewhere.
    guard_ends = {span.split("-")[1] for span, _, perms in new_maps if perms == "---p"}
    sizes = [size for span, size, perms in new_maps if perms == "rw-p" and span.split("-")[0] in guard_ends]
    stack_kib = max(set(sizes), key=sizes.count) if sizes else 0  # the size most stacks have
    return {
        "count": len(started), "stopped_by": stopped_by, "start_us": elapsed / count * 1e6,
        "virtual_kib": (during_memory["virtual"] - before_memory["virtual"]) / count,
        "resident_kib": (during_memory["resident"] - before_memory["resident"]) / count,
        "kernel_stack_kib": (during_memory["kernel_stacks"] - before_memory["kernel_stacks"]) / count,
        "stack_kib": stack_kib,
        "guard_pages": sum(1 for _, size, perms in new_maps if perms == "---p" and size < 1024),
        # glibc gives threads malloc arenas of their own (up to 8 per core), each reserving 64 MiB
        "malloc_arenas": sum(1 for _, size, perms in new_maps if perms == "---p" and size >= 1024),
    }


def _child(conn, n: int, stack_bytes: int) -> None:
    conn.send(start_waiting_threads(n, stack_bytes))
    conn.close()


def in_fresh_process(n: int, stack_bytes: int) -> dict:
    """start_waiting_threads in a new interpreter, so that each experiment starts from a clean
    process; nothing it starts outlives it."""
    return in_fresh_interpreter(_child, n, stack_bytes, timeout_s=CHILD_TIMEOUT_S)


# -- creation cost ------------------------------------------------------------------------------------------


def thread_start_join() -> None:
    thread = threading.Thread(target=int)
    thread.start()
    thread.join()


# How far a reader's figure may be from the recorded one before it is named (lessons.common): the
# strace lines hold addresses, the limits and counts belong to the machine and the bound chosen, and
# how often two threads collide on one mutex under strace depends on the load.
TOLERANCE = {label: None for label in (
    "clone call that started a thread (strace)", "child_tid given to clone (CLONE_CHILD_CLEARTID)",
    "futex pthread_join slept in (strace)", "futex calls, one shared mutex (contended)",
    "kernel.threads-max (tasks, whole system)", "kernel.pid_max (highest pid or tid)",
    "vm.max_map_count (mappings per process)", "RLIMIT_NPROC (tasks per user)", "threads started",
    "stopped by", "malloc arenas created", "virtual memory per thread, default stack (with arenas)",
    "virtual memory per thread, many", "tasks your user runs now (RLIMIT_NPROC counts them all)",
    "task_struct, the kernel's record of a task", "thread the kernel gave SIGUSR2 to",
    "memory of this machine (MemTotal)", "3.12+: python")}


# -- Pictures, from the recorded run (lessons/_06_pictures.py, lessons/figures.py) ---------------------------------------------

PICTURES = {"memory": draw_memory}

# The page's comparative sentences, checked against the recorded run (tests/test_claims.py).
CLAIMS = [
    Claim("*thread flags strace did not show* says none of the nine is missing",
          lambda m: m["thread flags strace did not show"] == "none",
          "strace showed all nine clone flags of glibc's pthread_create"),
    Claim("Only the shared one made futex calls",
          lambda m: m["futex calls, a mutex per thread (uncontended)"] == 0
          and m["futex calls, one shared mutex (contended)"] > 0,
          "no futex call with a mutex per thread, some with one shared mutex"),
    Claim("pthread_join slept in a futex wait on exactly the `child_tid` address",
          lambda m: m["join slept on the child_tid address"] == "yes"
          and m["join waited while that word held the thread's TID"] == "yes",
          "the join's futex address is clone's child_tid, and the value it waited on is the TID"),
    Claim("megabytes reserved, kilobytes used",
          lambda m: m["stack mapping per thread, default"] * 1024 > 100 * m["resident memory per thread, default stack"],
          "the default stack mapping is over 100x the resident memory per thread"),
    Claim("Shrinking the stack to 256 KiB changes the\n  reservation, hardly the resident memory",
          lambda m: m["stack mapping per thread, 256 KiB"] == 256
          and abs(m["resident memory per thread, 256 KiB stack"] / m["resident memory per thread, default stack"] - 1)
          < 0.3,
          "the 256 KiB stack is a 256 KiB mapping, and resident memory is within 30 % of the default stack's"),
    Claim("One guard page per thread sits below each stack",
          lambda m: m["guard pages per thread"] == 1,
          "one guard page per thread"),
    Claim("the difference is mostly glibc's malloc arenas",
          lambda m: m["malloc arenas created"] > 0
          and m["virtual memory per thread, default stack (with arenas)"] > m["stack mapping per thread, default"],
          "arenas were created, and virtual memory per thread exceeds the stack mapping"),
    Claim("count what the kernel keeps for each thread besides the memory `VmRSS` shows",
          lambda m: m["kernel stack per thread, many"] >= 8 and (
              m["resident memory per thread, many"] + m["kernel stack per thread, many"]
              + m["task_struct, the kernel's record of a task"]) >= 1.5 * m["resident memory per thread, many"],
          "a kernel stack of 8 KiB or more per thread, and resident + kernel stack + task_struct is 1.5x the "
          "resident memory or more"),
    Claim("here `pid_max` and `RLIMIT_NPROC` would stop a process long before memory ran out",
          lambda m: max(m["kernel.pid_max (highest pid or tid)"], m["RLIMIT_NPROC (tasks per user)"])
          * m["memory per thread with its kernel stack, many"] < m["memory of this machine (MemTotal)"] * KiB * KiB / 2,
          "the larger of pid_max and RLIMIT_NPROC, times the memory per thread with its kernel stack, is under "
          "half the machine's memory"),
    Claim("the kernel's record of the task (`task_struct`, several KiB)",
          lambda m: 2 <= m["task_struct, the kernel's record of a task"] <= 16,
          "task_struct is 2 to 16 KiB"),
    Claim("The threads' masks differ",
          lambda m: "pauser 1: SIGUSR1;" in m["signals each thread blocks (SigBlk)"]
          and "main: SIGUSR1 SIGUSR2" in m["signals each thread blocks (SigBlk)"],
          "the pausers block SIGUSR1 only, the main thread both"),
    Claim("SIGUSR1 sent to the waiter alone waited in that\n  thread's own pending set and in no other thread's",
          lambda m: m["SIGUSR1 sent to one thread (tgkill), it blocking it: pending in"] == "the thread's own"
          and m["the same, pending in the main thread"] == "none"
          and m["SIGUSR1 sent to the process (kill), all blocking it: pending in"] == "the process's shared"
          and m["taken by sigwait() in"] == "waiter, waiter",
          "tgkill: pending in the waiter's own set only; kill: in the shared set; sigwait took both"),
    Claim("went to one of the two threads that accept it",
          lambda m: m["threads woken by one SIGUSR2 to the process, two accepting it"] == 1
          and m["thread the kernel gave SIGUSR2 to"].startswith("pauser")
          and m["thread the Python handler ran in"] == "MainThread",
          "one SIGUSR2 woke one pauser, and the Python handler ran in the main thread"),
    Claim("a subinterpreter took longer\n  to create than a process to fork",
          lambda m: m[SUBINTERPRETER_LABELS["subinterpreter"]] > m[SUBINTERPRETER_LABELS["fork"]],
          "under 3.12+, create + run pass + close of a subinterpreter took longer than fork + exit + wait"),
    Claim("many times a thread's time",
          lambda m: m[SUBINTERPRETER_LABELS["subinterpreter"]] > 5 * m[SUBINTERPRETER_LABELS["thread"]],
          "a subinterpreter took over 5x a thread's start + join"),
    Claim("each held more private memory\n  than a forked child, megabytes against a thread's few KiB",
          lambda m: m[SUBINTERPRETER_LABELS["subinterpreter_uss"]] > 3 * m[SUBINTERPRETER_LABELS["fork_uss"]]
          and m[SUBINTERPRETER_LABELS["subinterpreter_uss"]] >= 1024 and m[SUBINTERPRETER_LABELS["thread_uss"]] < 64,
          "a subinterpreter's USS over 3x a forked child's and at least 1 MiB, a thread's under 64 KiB"),
    Claim.unmeasured("writes its own copy of every module it sets up",
                     "what Py_NewInterpreterFromConfig does (PEP 684): the USS line measures the result"),
    Claim("a thread is created and torn down many times faster than a process",
          lambda m: m["fork + exit + wait"] > 3 * m["thread start + join"],
          "fork + exit + wait takes over 3x thread start + join"),
]


# -- The lesson ------------------------------------------------------------------------------------------------


LIMITS = (
    ("kernel.threads-max (tasks, whole system)", "/proc/sys/kernel/threads-max"),
    ("kernel.pid_max (highest pid or tid)", "/proc/sys/kernel/pid_max"),
    ("vm.max_map_count (mappings per process)", "/proc/sys/vm/max_map_count"),
)


# -- The lesson's sections, each printing what it measured and what to notice ----------------------


def tasks_section(lesson: Lesson, no_proc: str | None) -> None:
    n = 4
    lesson.section(f"{n} threads, as the kernel lists them")
    labels = ("tasks under /proc/PID/task", "Threads in /proc/PID/status",
              "distinct pids the threads saw (getpid)", "distinct tids the threads saw (gettid)",
              "thread group id of every task (Tgid) is the pid", "main thread's tid is the pid")
    if no_proc:
        lesson.skip_all(labels, no_proc)
        return
    tasks = threads_as_tasks(n)
    for label, value in zip(labels, (len(tasks["tasks"]), tasks["threads_field"], len(tasks["pids"]), len(tasks["tids"]),
                                     "yes" if tasks["tgids"] == {str(os.getpid())} else f"no: {sorted(tasks['tgids'])}",
                                     "yes" if threading.main_thread().native_id == os.getpid() else "no"), strict=True):
        lesson.measure(label, value)
    lesson.notice(f"{n} threads and the main one are {len(tasks['tasks'])} tasks under /proc/PID/task; the "
                  f"{n} threads got {len(tasks['tids'])} different TIDs from gettid() and "
                  f"{len(tasks['pids'])} pid from getpid(): a process is a group of threads")


def clone_section(lesson: Lesson) -> None:
    lesson.section("clone(2) flags of a thread: strace of a Python thread start")
    labels = ("clone call that started a thread (strace)", "thread flags strace did not show")
    try:
        clone = thread_clone_line()
    except trace.StraceUnavailable as exc:
        lesson.skip_all(labels, str(exc))
        return
    lesson.measure(labels[0], clone)
    missing = [flag for flag in THREAD_FLAGS if flag not in clone_flags(clone)]
    lesson.measure(labels[1], ", ".join(missing) or "none")
    lesson.notice(f"pthread_create called {clone.split('(')[0]} with {len(clone_flags(clone))} flags"
                  + (f"; of glibc's nine, {', '.join(missing)} did not show" if missing else
                     ": shared memory, files, fs info, signal handlers and SysV semaphore undo, one "
                     "thread group, its own TLS, and the TID word written at start and cleared at exit"))


def stacks_section(lesson: Lesson, no_proc: str | None) -> None:
    k = 50 if lesson.quick else 200
    small_kib = SMALL_STACK_BYTES // KiB
    soft_stack, _ = resource.getrlimit(resource.RLIMIT_STACK)
    lesson.section(f"stacks: {k} waiting threads in a fresh process, default stack, then {small_kib} KiB")
    if soft_stack == resource.RLIM_INFINITY:
        lesson.measure("RLIMIT_STACK (glibc's default thread stack)", "unlimited (glibc then uses its built-in default, 2 MiB on x86-64)")
    else:
        lesson.measure("RLIMIT_STACK (glibc's default thread stack)", soft_stack / KiB / KiB, "MiB")
    labels = ("stack mapping per thread, default", "guard pages per thread",
              "resident memory per thread, default stack", "malloc arenas created",
              "virtual memory per thread, default stack (with arenas)",
              f"stack mapping per thread, {small_kib} KiB", f"resident memory per thread, {small_kib} KiB stack")
    if no_proc:
        lesson.skip_all(labels, no_proc)
        return
    default = in_fresh_process(k, 0)  # 0: the platform's default
    small = in_fresh_process(k, SMALL_STACK_BYTES)
    for label, value, unit in zip(labels, (default["stack_kib"] / KiB, default["guard_pages"] / max(default["count"], 1),
                                           default["resident_kib"], default["malloc_arenas"], default["virtual_kib"] / KiB,
                                           small["stack_kib"], small["resident_kib"]),
                                  ("MiB", "", "KiB", "", "MiB", "KiB", "KiB"), strict=True):
        lesson.measure(label, value, unit)
    lesson.notice(f"each thread got a stack mapping of {default['stack_kib'] / KiB:,.0f} MiB but made only "
                  f"{default['resident_kib']:,.0f} KiB resident: stack pages exist once touched; with "
                  f"{small_kib} KiB stacks, {small['resident_kib']:,.0f} KiB resident")
    if default["malloc_arenas"]:
        other_mib = (default["virtual_kib"] - default["stack_kib"]) / KiB
        lesson.notice(f"glibc also gave the threads {default['malloc_arenas']} malloc arenas of their own "
                      "(64 MiB of address space each, up to 8 per core), so that they do not contend "
                      f"for one heap: of the {default['virtual_kib'] / KiB:,.1f} MiB of virtual memory per "
                      f"thread, {other_mib:,.1f} MiB is not its stack")


MANY_LABELS = ("threads started", "stopped by", "time to start one thread, among many",
               "virtual memory per thread, many", "stack mapping per thread, many", "resident memory per thread, many",
               "kernel stack per thread, many", "memory per thread with its kernel stack, many",
               "task_struct, the kernel's record of a task")


def limits_section(lesson: Lesson, no_proc: str | None) -> None:
    bound = 1_000 if lesson.quick else 5_000
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
    if no_proc:
        lesson.skip("tasks your user runs now (RLIMIT_NPROC counts them all)", no_proc)
    else:
        lesson.measure("tasks your user runs now (RLIMIT_NPROC counts them all)", tasks_of_user(os.getuid()))
    if no_proc:
        lesson.skip("memory of this machine (MemTotal)", no_proc)
    else:
        lesson.measure("memory of this machine (MemTotal)", procfs.meminfo()["MemTotal"] / KiB / KiB, "GiB")
    pids_max = None if no_proc else cgroup_pids_max()
    if pids_max is None:
        lesson.skip("cgroup pids.max (tasks in this cgroup)", no_proc or "this cgroup sets no pids limit")
    else:
        lesson.measure("cgroup pids.max (tasks in this cgroup)", pids_max)
    if no_proc:
        lesson.skip_all(MANY_LABELS, no_proc)
        return
    many = in_fresh_process(bound, TINY_STACK_BYTES)
    task_struct = task_struct_kib()
    total = many["resident_kib"] + many["kernel_stack_kib"]
    for label, value in zip(MANY_LABELS[:8], (many["count"], many["stopped_by"], many["start_us"], many["virtual_kib"],
                                              many["stack_kib"], many["resident_kib"], many["kernel_stack_kib"], total),
                            strict=True):
        lesson.measure(label, value, {"time to start one thread, among many": "µs"}.get(
            label, "" if label in MANY_LABELS[:2] else "KiB"))
    if task_struct is None:
        lesson.skip(MANY_LABELS[8], "the slab allocator's sizes are root's here (/sys/kernel/slab/task_struct, "
                    "/proc/slabinfo): sudo grep task_struct /proc/slabinfo")
    else:
        lesson.measure(MANY_LABELS[8], task_struct, "KiB")
    lesson.notice(f"{many['count']:,} threads started, {many['start_us']:,.0f} µs each and "
                  f"{many['resident_kib']:,.0f} KiB resident each, {total:,.0f} KiB with the kernel stack"
                  + (f", {total + task_struct:,.0f} KiB with the task_struct too" if task_struct else "")
                  + f"; stopped by {many['stopped_by']}")


def futex_section(lesson: Lesson) -> None:
    lesson.section(f"futex(2): 2 threads x {LOCK_ITERATIONS:,} lock/unlock, under strace -f -e futex")
    labels = ("futex calls, a mutex per thread (uncontended)", "futex calls, one shared mutex (contended)")
    futexes = {}
    try:
        for mode, label in zip(("private", "shared"), labels, strict=True):
            futexes[mode] = lesson.measure(label, mutex_futex_calls(mode))
    except trace.StraceUnavailable as exc:
        lesson.skip_all(labels[len(futexes):], str(exc))
    if len(futexes) == 2:
        lesson.notice(f"{2 * LOCK_ITERATIONS:,} lock/unlock pairs made {futexes['private']:,} futex calls when each "
                      f"thread had its own mutex and {futexes['shared']:,} when they shared one: a free lock is "
                      "one atomic instruction in user space, only a contended one asks the kernel to sleep or wake")


def join_section(lesson: Lesson) -> None:
    lesson.section(f"pthread_join: a thread sleeps {JOIN_SLEEP_MS} ms, main joins it (strace, lessons/native/06_futex.c)")
    labels = ("child_tid given to clone (CLONE_CHILD_CLEARTID)", "futex pthread_join slept in (strace)",
              "join slept on the child_tid address", "join waited while that word held the thread's TID")
    try:
        join = join_futex()
    except trace.StraceUnavailable as exc:
        lesson.skip_all(labels, str(exc))
        return
    lesson.measure(labels[0], join["child_tid"] or "not seen")
    lesson.measure(labels[1], join["wait"] or "none seen (the thread had already exited?)")
    lesson.measure(labels[2], "yes" if join["same_address"] else "no")
    lesson.measure(labels[3], "yes" if join["waited_for_tid"] else "no")
    if join["same_address"]:
        lesson.notice(f"pthread_join slept in futex(FUTEX_WAIT) on {join['child_tid']}, the child_tid word clone "
                      f"was given, while it held TID {join['tid']}: at the thread's exit the kernel zeroed it and "
                      "woke the joiner (CLONE_CHILD_CLEARTID); no signal, no manager thread")


def creation_section(lesson: Lesson) -> None:
    repeats = 200 if lesson.quick else 1000
    lesson.section(f"creating a thread vs a process (medians of {repeats} and {repeats // 4})")
    thread_us = lesson.measure("thread start + join", median_us(thread_start_join, repeats), "µs")
    fork_us = lesson.measure("fork + exit + wait", median_us(fork_exit_wait, repeats // 4), "µs")
    lesson.notice(f"a thread started and joined in {thread_us:,.0f} µs, a process forked and reaped in "
                  f"{fork_us:,.0f} µs: {fork_us / thread_us:.1f}x as long, since fork copies the "
                  "page tables and a thread shares them")


# -- a subinterpreter beside a thread and a process ------------------------------------------------------

SUBINTERPRETER_LABELS = {
    "python": "3.12+: python",
    "subinterpreter": "3.12+: subinterpreter create + run pass + close",
    "thread": "3.12+: thread start + join",
    "fork": "3.12+: fork + exit + wait",
    "subinterpreter_uss": "3.12+: private memory (USS) per subinterpreter",
    "subinterpreter_rss": "3.12+: resident memory (RSS) per subinterpreter",
    "thread_uss": "3.12+: private memory (USS) per thread",
    "fork_uss": "3.12+: private memory (USS) per forked process",
}
HOLD_TIMEOUT_S = 120.0


def hold(python: str, unit: str, count: int) -> dict:
    """``python -m bench.micro.hold UNIT COUNT`` in a fresh child of ``python``: what holding
    ``count`` of them alive at once took, per unit (its JSON line)."""
    import json
    import subprocess
    from lessons.parallel import ROOT
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([python, "-m", "bench.micro.hold", unit, str(count)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HOLD_TIMEOUT_S, stdin=subprocess.DEVNULL)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{python} -m bench.micro.hold {unit} {count} exited {done.returncode}: {tail}")
    return json.loads(lines[-1])


def subinterpreter_costs(python: str, batches: int, per_batch: int, held: dict[str, int]) -> dict:
    """In children of ``python`` (a CPython 3.12+): the median µs to create, run ``pass`` in and
    close one subinterpreter, beside a thread's start + join and a fork's fork + exit + wait (batches
    interleaved, each timed inside the child: bench/micro/subinterp.py), and the memory each holds
    when ``held[unit]`` of them are alive at once (bench/micro/hold.py)."""
    import statistics
    from bench.micro.subinterp import Child
    times: dict[str, list[float]] = {op: [] for op in ("subinterpreter", "thread", "fork")}
    with Child(python) as child:
        for _ in range(batches):
            for op in times:
                times[op].append(child.batch(op, per_batch) / per_batch / 1e3)
    out = {op: statistics.median(us) for op, us in times.items()}
    for unit, count in held.items():
        got = hold(python, unit, count)
        out[f"{unit}_uss"] = got["uss_bytes_per_unit"] / KiB
        out[f"{unit}_rss"] = got["rss_bytes_per_unit"] / KiB
    return out


def subinterpreter_section(lesson: Lesson) -> None:
    batches, per_batch = (3, 5) if lesson.quick else (7, 10)
    held = {"subinterpreter": 10, "thread": 200, "fork": 20} if lesson.quick else \
        {"subinterpreter": 20, "thread": 1_000, "fork": 50}
    lesson.section(f"a subinterpreter beside a thread and a process, in a CPython 3.12+: creation (median "
                   f"of {batches} batches of {per_batch}), memory ({held['subinterpreter']}, "
                   f"{held['thread']:,} and {held['fork']} held at once)")
    from lessons.parallel import newer_python, shown_path
    python, why = newer_python()
    got = None
    if python:
        try:
            got = subinterpreter_costs(python, batches, per_batch, held)
        except (RuntimeError, OSError, ValueError, KeyError) as exc:
            why = str(exc)
        except Exception as exc:  # noqa: BLE001 (a child that timed out: a reason, not a traceback)
            why = f"{type(exc).__name__}: {exc}"
    if not got:
        lesson.skip(SUBINTERPRETER_LABELS["python"], why)
        for key, label in SUBINTERPRETER_LABELS.items():
            if key != "python":
                lesson.skip(label, "no CPython 3.12+: see '3.12+: python'")
        return
    import subprocess
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    lesson.measure(SUBINTERPRETER_LABELS["python"], f"{version} ({shown_path(python)})")
    for key in ("subinterpreter", "thread", "fork"):
        lesson.measure(SUBINTERPRETER_LABELS[key], got[key], "µs")
    for key in ("subinterpreter_uss", "subinterpreter_rss", "thread_uss", "fork_uss"):
        lesson.measure(SUBINTERPRETER_LABELS[key], got[key], "KiB")
    lesson.notice(f"under Python {version} a subinterpreter took {got['subinterpreter']:,.0f} µs to create, run "
                  f"`pass` in and close: {got['subinterpreter'] / got['thread']:,.0f}x a thread's "
                  f"{got['thread']:,.0f} µs and {got['subinterpreter'] / got['fork']:.1f}x a fork's "
                  f"{got['fork']:,.0f} µs; each held {got['subinterpreter_uss'] / KiB:,.2f} MiB of private "
                  f"memory, a thread {got['thread_uss']:,.1f} KiB and a forked process "
                  f"{got['fork_uss']:,.0f} KiB: it sets up and keeps its own copy of every built-in module, "
                  "sys and the import system, where fork shares the parent's pages until written")


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("06", "Threads in Linux", args)
    no_proc = linux_only("/proc/self/task and /proc/self/status")
    tasks_section(lesson, no_proc)
    clone_section(lesson)
    stacks_section(lesson, no_proc)
    limits_section(lesson, no_proc)
    signals_section(lesson, no_proc)
    futex_section(lesson)
    join_section(lesson)
    creation_section(lesson)
    subinterpreter_section(lesson)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
