"""Child processes that spin or sleep on chosen CPUs, started together and watched from outside.

    out = run_together({"A": spin, "B": spin}, seconds=2.0, cpus={1})
    out["A"]["cpu_share_pct"], out["A"]["involuntary_per_s"], out["A"]["seen"]["runs_ns"]

Each child is forked, pinned to `cpus` (sched_setaffinity(2)), and blocks on a pipe until every
child exists; then all start at once. While they run, the parent reads the kernel's counters for
each from outside, as `top` or `pidstat` would (/proc/PID/status and /proc/PID/schedstat), once
when they start and once at the end of the window. Each child also reports what it saw itself
(``spin`` notes every jump of its own clock: the times it was not running).

A ``setups`` entry (name -> function(pid)) runs in the parent after the fork and before the start:
it may set the child's nice value or scheduling policy. The children end by themselves a little
after the window (CHILD_EXTRA_S), whatever happens to the parent, so a real-time spinner cannot
outlive the lesson; the parent kills and reaps them in any case.

Lessons 01 (time slices, load balancing) and 04 (nice weights, real-time policies) use it.
Linux-only: /proc and sched_setaffinity.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from dataclasses import dataclass

from lessons import procfs

# A jump in the monotonic clock longer than this means the spinner was not running. An interrupt
# or a hypervisor's hiccup costs a few to a hundred microseconds; another process's time slice costs
# milliseconds. 250 µs lies between the two.
GAP_NS = 250_000
MAX_GAPS = 100_000  # bounds the spinner's memory: far more than a few seconds of slices
MAX_SPANS = 2_000  # (start, end) of the first runs, for a timeline picture
SLEEP_S = 0.001  # the sleeper sleeps 1 ms at a time: up to 1,000 voluntary switches a second
CHILD_EXTRA_S = 0.5  # children run a little longer than the parent measures, so they are alive
# at the parent's second reading of /proc


# -- What the children do -----------------------------------------------------------------------------


def spin(seconds: float) -> dict:
    """Burn CPU for `seconds`, noting every jump of the clock: the times we were not running."""
    now = time.monotonic_ns
    start = last = run_start = now()
    end = start + int(seconds * 1e9)
    runs, gaps = [], []  # ns on the CPU between two gaps; ns of each gap
    spans = []  # [start, end] of each run on the CPU, on the machine-wide monotonic clock
    while last < end:
        t = now()
        if t - last > GAP_NS and len(gaps) < MAX_GAPS:
            gaps.append(t - last)  # someone else had the CPU for this long
            runs.append(last - run_start)  # we had it for this long before that
            if len(spans) < MAX_SPANS:
                spans.append([run_start, last])
            run_start = t
        last = t
    # the first run began before the other started
    return {"runs_ns": runs[1:], "gaps_ns": gaps, "spans_ns": spans[1:]}


def sleep_often(seconds: float) -> dict:
    """Sleep 1 ms at a time: each sleep hands the CPU back to the scheduler voluntarily."""
    end = time.monotonic() + seconds
    wakeups = 0
    while time.monotonic() < end:
        time.sleep(SLEEP_S)
        wakeups += 1
    return {"wakeups": wakeups}


# -- Reading the kernel's counters from outside the process ------------------------------------------


@dataclass
class Counters:
    voluntary: int  # switches because the task blocked or slept
    involuntary: int  # switches because the scheduler preempted it
    run_ns: int  # time on a CPU
    wait_ns: int  # time runnable, waiting in the run queue for a CPU
    slices: int  # times the task was put on a CPU
    at_ns: int  # when we read them


def read_counters(pid: int) -> Counters:
    """What the kernel counts for a process: /proc/PID/status and /proc/PID/schedstat."""
    status = procfs.status(pid)  # named fields, one per line
    run_ns, wait_ns, slices = procfs.schedstat(pid)  # three numbers
    return Counters(int(status["voluntary_ctxt_switches"]), int(status["nonvoluntary_ctxt_switches"]),
                    run_ns, wait_ns, slices, time.monotonic_ns())


# -- Running children together ------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    pid: int
    go_fd: int  # the parent writes one byte here to start it
    result_fd: int  # the child writes its result here, as JSON, and exits


def start_child(name: str, cpus: set[int] | None, work, seconds: float) -> Child:
    go_r, go_w = os.pipe()
    result_r, result_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # ---- the child
        status = 1
        try:
            os.close(go_w)
            os.close(result_r)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, seconds + 5.0)  # dies by itself, come what may
            if cpus is not None:
                os.sched_setaffinity(0, cpus)  # this process may run on `cpus` only
            os.read(go_r, 1)  # block until the parent says go
            result = work(seconds)
            os.write(result_w, json.dumps(result).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(go_r)
    os.close(result_w)
    return Child(name, pid, go_w, result_r)


def read_result(child: Child, timeout_s: float) -> dict:
    data = b""
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0 and select.select([child.result_fd], [], [], left)[0]:
        chunk = os.read(child.result_fd, 1 << 20)
        if not chunk:
            return json.loads(data)
        data += chunk
    raise TimeoutError(f"{child.name} sent no result within {timeout_s:.0f} s")


def run_together(works: dict, seconds: float, cpus: set[int] | None, setups: dict | None = None,
                 watch=None) -> dict:
    """Start one child per entry of `works` (name -> work(seconds)) on `cpus` (None: wherever the
    scheduler puts them), let them run `seconds`, and return, per child, the kernel's counters over
    that window and what the child itself saw. `setups[name](pid)` runs before the start (it may
    raise PermissionError: that propagates, the children killed). `watch(pids, seconds)`, where
    given, spends the window watching the children (pids: name -> pid); what it returns is under
    the key None."""
    children = []
    try:
        for name, work in works.items():
            children.append(start_child(name, cpus, work, seconds + CHILD_EXTRA_S))
            if setups and name in setups:
                setups[name](children[-1].pid)
        for child in children:
            os.write(child.go_fd, b"g")
        before = {c.name: read_counters(c.pid) for c in children}
        if watch:
            watched = watch({c.name: c.pid for c in children}, seconds)
        else:
            time.sleep(seconds)
        after = {c.name: read_counters(c.pid) for c in children}
        seen = {c.name: read_result(c, seconds + 10) for c in children}
    finally:
        for child in children:
            try:
                os.kill(child.pid, signal.SIGKILL)  # a no-op for a child that already exited
            except ProcessLookupError:
                pass
            os.waitpid(child.pid, 0)
            os.close(child.go_fd)
            os.close(child.result_fd)
    out = {}
    for name in works:
        b, a = before[name], after[name]
        elapsed_s = (a.at_ns - b.at_ns) / 1e9
        slices = a.slices - b.slices
        out[name] = {
            "cpu_share_pct": 100 * (a.run_ns - b.run_ns) / (a.at_ns - b.at_ns),
            "waiting_pct": 100 * (a.wait_ns - b.wait_ns) / (a.at_ns - b.at_ns),
            "voluntary_per_s": (a.voluntary - b.voluntary) / elapsed_s,
            "involuntary_per_s": (a.involuntary - b.involuntary) / elapsed_s,
            "ms_per_slice": (a.run_ns - b.run_ns) / slices / 1e6 if slices else float("nan"),
            "seen": seen[name],
        }
    if watch:
        out[None] = watched
    return out
