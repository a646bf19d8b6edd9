"""Lesson 11, part 2: priorities. Who runs is not always who matters most.

- Priority inversion among ordinary tasks: a nice-19 task holds a lock (a POSIX semaphore) for
  20 ms of CPU, a nice-0 task waits for it, and a nice-5 CPU hog, all on one CPU, keeps the holder
  from running. The kernel shares a CPU by weight (sched(7)), and a sleeping waiter claims none.
- The textbook case with SCHED_FIFO threads (lessons/native/prio_inherit.c), on a plain mutex and
  on a PTHREAD_PRIO_INHERIT one, where the kernel lends the holder the waiter's priority.
- SCHED_DEADLINE (lessons/native/deadline.c): a periodic job next to a SCHED_FIFO hog on every CPU,
  as an ordinary task and as a deadline task, whose runtime the kernel reserves.

The real-time parts need CAP_SYS_NICE; without it they are skipped with that reason.
lessons/11_preemptive_vs_cooperative.py runs ``priorities(lesson, cpu)``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

from lessons.common import Lesson
from servers import build

PRIORITY_HOLD_CPU_S = 0.020  # CPU the nice-19 task needs while it holds the lock
PRIORITY_HOG_NICE = 5  # the hog: below the waiter (nice 0), above the holder (nice 19)
PRIORITY_HOG_MAX_S = 5.0  # the hog gives up after this long, whatever happens
PRIORITY_FIFO_HOLD_S = 0.005  # real-time version: CPU the low thread needs while it holds the mutex
PRIORITY_FIFO_MEDIUM_S = 0.200  # and how long the medium real-time thread spins (wall time)
DEADLINE_PERIOD_US, DEADLINE_RUNTIME_US, DEADLINE_WORK_US = 10_000, 2_000, 1_000

def priority_inversion(cpu: int, hold_cpu_s: float, with_hog: bool) -> float:
    """How long a nice-0 task waits for a lock that a nice-19 task holds for ``hold_cpu_s`` of CPU,
    all pinned to ``cpu``; with ``with_hog`` a nice-5 CPU hog runs meanwhile. Seconds.

    The kernel gives runnable tasks CPU in proportion to their weights (sched(7): nice 0 weighs
    1024, nice 5 weighs 335, nice 19 weighs 15). While the nice-0 task sleeps on the lock, the hog
    and the holder share the CPU 335:15, so the holder crawls and the nice-0 task waits for a task
    below its own priority: inversion.
    """
    import multiprocessing

    lock = multiprocessing.Lock()  # a POSIX semaphore in shared memory: no priority inheritance
    held, start_hog = os.pipe(), os.pipe()

    def child(body):
        pid = os.fork()
        if pid == 0:
            try:
                os.sched_setaffinity(0, {cpu})
                body()
            finally:
                os._exit(0)
        return pid

    def low():
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # the lowest weight a normal task can have
        with lock:
            os.write(held[1], b"x")
            from servers.common import burn_cpu
            burn_cpu(int(hold_cpu_s * 1e6))  # CPU time, however long the kernel makes it take

    def hog():
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY_HOG_NICE)
        os.read(start_hog[0], 1)
        deadline = time.monotonic() + PRIORITY_HOG_MAX_S  # bounded: never hog forever
        while time.monotonic() < deadline:
            pass

    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    pids = []
    try:
        pids.append(child(low))
        os.read(held[0], 1)  # the low task holds the lock now
        if with_hog:
            pids.append(child(hog))
            os.write(start_hog[1], b"x")
        t0 = time.perf_counter()
        with lock:  # the nice-0 task: sleeps in sem_wait (a futex) until low releases
            waited = time.perf_counter() - t0
        return waited
    finally:
        for pid in pids[1:]:
            os.kill(pid, signal.SIGKILL)  # the hog, by its pid
        for pid in pids:
            os.waitpid(pid, 0)
        for fd in (*held, *start_hog):
            os.close(fd)
        os.sched_setaffinity(0, original)


def run_realtime(source: str, args: list[str], refused_fix: str) -> dict:
    """Build and run one of lessons/native's real-time programs; its JSON. Raises build.Unavailable
    (no compiler; or exit 3, the kernel refused the policy: its reason, then ``refused_fix``)."""
    cmd = [str(build.build(source, flags=("-pthread",))), *args]
    name = os.path.basename(source).split(".")[0]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise build.Unavailable(f"{name} did not finish within 30 s") from None
    if done.returncode == 3:
        raise build.Unavailable(f"{json.loads(done.stdout)['error']}: {refused_fix}")
    if done.returncode != 0:
        raise build.Unavailable(f"{name} exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout)


def priority_inheritance(cpu: int, protocol: str, medium_s: float) -> float:
    """lessons/native/prio_inherit.c: three SCHED_FIFO threads on ``cpu``, the mutex plain
    ("none") or priority-inheriting ("inherit"); the high thread's wait in ms. Raises
    build.Unavailable (no compiler, or no permission for SCHED_FIFO) with the fix."""
    return run_realtime("lessons/native/prio_inherit.c",
                        [str(cpu), f"{PRIORITY_FIFO_HOLD_S * 1000:g}", f"{medium_s * 1000:g}", protocol],
                        "SCHED_FIFO needs CAP_SYS_NICE (run as root) or a real-time limit (ulimit -r 30)")["wait_ms"]


def deadline_jobs(policy: str, jobs: int) -> dict:
    """lessons/native/deadline.c: a job released every DEADLINE_PERIOD_US that needs
    DEADLINE_WORK_US of CPU, next to a SCHED_FIFO hog on every CPU of this process; the job an
    ordinary task ("other") or a SCHED_DEADLINE one ("deadline"). Returns its JSON. Raises
    build.Unavailable (no compiler, or no permission) with the fix."""
    return run_realtime("lessons/native/deadline.c",
                        [policy, str(DEADLINE_RUNTIME_US), str(DEADLINE_PERIOD_US), str(DEADLINE_WORK_US), str(jobs)],
                        "run as root (or with CAP_SYS_NICE), without taskset")


def priorities(lesson: Lesson, cpu: int | None) -> None:
    """Part 2: priority inversion among nice levels, then with SCHED_FIFO and priority
    inheritance, then SCHED_DEADLINE next to real-time hogs."""
    hold_s = PRIORITY_HOLD_CPU_S / 4 if lesson.quick else PRIORITY_HOLD_CPU_S
    lesson.section(f"priority inversion: a nice-0 task waits for a lock that a nice-19 task holds for "
                   f"{hold_s * 1000:.0f} ms of CPU" + (f", all on CPU {cpu}" if cpu is not None else ""))
    waits = {}
    why_not = None if (hasattr(os, "fork") and cpu is not None and hasattr(os, "setpriority")) else \
        "needs fork, setpriority and sched_setaffinity (Linux)"
    for key, label, with_hog in (("alone", "high task's wait, nothing else running", False),
                                 ("hog", f"high task's wait, a nice-{PRIORITY_HOG_NICE} CPU hog running", True)):
        if why_not:
            lesson.skip(label, why_not)
        else:
            waits[key] = lesson.measure(label, priority_inversion(cpu, hold_s, with_hog) * 1000, "ms")
    medium_s = PRIORITY_FIFO_MEDIUM_S / 2 if lesson.quick else PRIORITY_FIFO_MEDIUM_S
    lesson.section(f"the same with SCHED_FIFO threads (lessons/native/prio_inherit.c): low (10) holds a "
                   f"mutex for {PRIORITY_FIFO_HOLD_S * 1000:g} ms of CPU, medium (20) spins "
                   f"{medium_s * 1000:g} ms, high (30) waits for the mutex")
    for key, label, protocol in (("fifo_none", "high thread's wait, plain mutex", "none"),
                                 ("fifo_inherit", "high thread's wait, PTHREAD_PRIO_INHERIT mutex", "inherit")):
        try:
            if why_not:
                raise build.Unavailable(why_not)
            waits[key] = lesson.measure(label, priority_inheritance(cpu, protocol, medium_s), "ms")
        except build.Unavailable as exc:
            lesson.skip(label, str(exc))
    jobs = 10 if lesson.quick else 20
    lesson.section(f"SCHED_DEADLINE (lessons/native/deadline.c): a job needs {DEADLINE_WORK_US / 1000:g} ms of "
                   f"CPU every {DEADLINE_PERIOD_US / 1000:g} ms for {jobs} periods, while a SCHED_FIFO hog spins "
                   "on every CPU")
    deadline = {}
    for policy, name in (("other", "ordinary job"), ("deadline", "SCHED_DEADLINE job")):
        labels = (f"{name}: deadlines missed", f"{name}: worst response")
        try:
            if why_not:
                raise build.Unavailable(why_not)
            r = deadline[policy] = deadline_jobs(policy, jobs)
        except build.Unavailable as exc:
            lesson.skip_all(labels, str(exc))
            continue
        lesson.measure(labels[0], 100 * r["missed"] / r["jobs"], "%")
        lesson.measure(labels[1], r["worst_response_ms"], "ms")

    if "alone" in waits and "hog" in waits:
        lesson.notice(f"priority inversion: the nice-0 task waited {waits['hog']:,.0f} ms with a nice-"
                      f"{PRIORITY_HOG_NICE} hog running, {waits['hog'] / waits['alone']:.0f}x the "
                      f"{waits['alone']:.0f} ms without: the hog, below it, outweighs the lock's nice-19 holder")
    if "fifo_none" in waits and "fifo_inherit" in waits:
        lesson.notice(f"with real-time threads the high one waited {waits['fifo_none']:.0f} ms behind the "
                      f"medium spinner on a plain mutex, {waits['fifo_inherit']:.1f} ms on a "
                      "priority-inheriting one: the kernel lent the holder the waiter's priority")
    if len(deadline) == 2:
        other, dl = deadline["other"], deadline["deadline"]
        lesson.notice(f"next to real-time hogs the ordinary job missed {other['missed']} of {jobs} deadlines "
                      f"(worst {other['worst_response_ms']:.0f} ms), the SCHED_DEADLINE job {dl['missed']} "
                      f"(worst {dl['worst_response_ms']:.1f} ms): a reservation beats every priority")
