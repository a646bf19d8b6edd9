"""Sample a server's whole process tree while the load runs: CPU, memory, threads, fds, switches.

The bench's second stage (generate load -> **sample the server** -> record JSON -> plot). A
background thread reads the tree every ``INTERVAL_S``, timestamped on CLOCK_MONOTONIC, so the
runner can take the difference between the samples that bracket the load generator's measured
window and charge the server exactly the CPU it spent in that window.

What is read, and where from (Linux; psutil elsewhere gives what the OS has):
- CPU: the time every thread of every live process in the tree spent on a CPU, in nanoseconds
  (/proc/PID/task/TID/schedstat), plus the children_* times of the root (children it forked and
  already reaped, as the `fork` server does once per connection). Not user + system from
  /proc/PID/stat: those count in 10 ms ticks per process, and 1,000 `fork` children that each run
  a few ms in the window would all read 0. psutil's user + system where schedstat is missing.
- context switches of every *thread* (/proc/PID/task/TID/status): /proc/PID/status counts only the
  main thread, which in a thread-per-connection server does almost nothing.
- memory: USS (pages only this process has: what it would free by exiting), PSS (shared pages
  split among sharers) and RSS (every resident page, shared ones counted once per process).
- with each full reading, the whole machine's CPU counters and the runner's own CPU
  (bench/run/noise.py), so that the runner can tell how much of the window went to other
  processes.

The process tree itself is read by servers.launch.tree, the one helper for it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil

from bench.run.noise import MachineCpu, machine_cpu
from servers import launch

INTERVAL_S = 0.2  # light readings: peaks, and a server that grows out of bounds


@dataclass
class Sample:
    t_ns: int
    cpu_s: float
    ctx_voluntary: int
    ctx_involuntary: int
    processes: int
    threads: int
    fds: int
    rss_bytes: int | None = None
    uss_bytes: int | None = None
    pss_bytes: int | None = None
    anon_pss_bytes: int | None = None  # anonymous memory (heap, stacks, buffers), split among sharers
    machine: MachineCpu | None = None  # the whole machine's CPU counters, at full readings


def _pss_anon(pid: int) -> int | None:
    """Pss_Anon from /proc/PID/smaps_rollup (Linux 5.9+): the process's share of anonymous pages.

    Summed over a process tree, it is what the tree's heap, stacks and buffers cost, counted
    once: anonymous pages are shared only with relatives through fork's copy-on-write. Plain PSS
    also splits file pages (libpython, uvloop's .so) with every unrelated process that maps
    them, so it drops when the load generator starts: useless for growth per connection.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _schedstat_works() -> bool:
    """schedstat's first field is the ns on CPU; a kernel without CONFIG_SCHED_INFO prints 0."""
    try:
        with open(f"/proc/{os.getpid()}/schedstat") as f:
            return int(f.read().split()[0]) > 0
    except (OSError, ValueError, IndexError):
        return False


SCHEDSTAT = _schedstat_works()


def _tasks(pid: int, seen: dict | None = None) -> tuple[int, int, float | None] | None:
    """(voluntary, involuntary switches, CPU seconds or None) summed over the process's threads.

    CPU: each live thread's schedstat (ns). A thread that exits takes its counter with it, so a
    thread-per-connection server whose connection closed between two readings would read as
    having spent negative CPU. ``seen`` (one dict per sampler, kept across readings) remembers each
    thread's last reading; a thread gone since keeps counting with that value. Never negative;
    what an exited thread ran after its last reading is missed (a closed-loop window has no such
    churn). (The process's utime + stime would include exited threads, but in 10 ms ticks,
    truncated per thread: over 100 threads that is an error of a second.) Switches of exited
    threads are not kept anywhere readable, so they are not counted."""
    vol = invol = cpu_ns = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    live: dict[str, int] = {}
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
            if SCHEDSTAT:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    live[tid] = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # the thread exited meanwhile
            continue
    if not SCHEDSTAT:
        return vol, invol, None
    cpu_ns = sum(live.values())
    if seen is not None:
        known = seen.setdefault(pid, {})
        cpu_ns += sum(ns for tid, ns in known.items() if tid not in live)
        known.update(live)
    return vol, invol, cpu_ns / 1e9


def sample_tree(root_pid: int, *, memory: bool, light: bool = False,
                seen: dict | None = None) -> Sample | None:
    """One reading of the tree rooted at ``root_pid``; None if the root is gone.
    ``light``: only process and thread counts and RSS (cheap: no per-thread files)."""
    procs = launch.tree(root_pid)
    if not procs:
        return None
    t_ns = time.monotonic_ns()
    cpu = 0.0
    vol = invol = threads = fds = 0
    rss = uss = pss = anon = 0
    have_uss = have_pss = have_anon = memory
    for i, proc in enumerate(procs):
        if light:
            try:
                with proc.oneshot():
                    threads += proc.num_threads()
                    rss += proc.memory_info().rss
            except psutil.Error:
                pass
            continue
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                if i == 0:
                    cpu += times.children_user + times.children_system
                threads += proc.num_threads()
                try:
                    fds += proc.num_fds()
                except (psutil.AccessDenied, AttributeError):
                    pass
                tasks = _tasks(proc.pid, seen) if os.path.isdir("/proc") else None
                if tasks is None:
                    c = proc.num_ctx_switches()
                    tasks = (c.voluntary, c.involuntary, None)
                vol += tasks[0]
                invol += tasks[1]
                cpu += times.user + times.system if tasks[2] is None else tasks[2]
                if memory:
                    try:
                        full = proc.memory_full_info()
                        rss += full.rss
                        uss += getattr(full, "uss", 0)
                        have_uss &= hasattr(full, "uss")
                        anon_value = _pss_anon(proc.pid)
                        if anon_value is None:
                            have_anon = False
                        else:
                            anon += anon_value
                        pss_value = getattr(full, "pss", None)
                        if pss_value is None:
                            have_pss = False
                        else:
                            pss += pss_value
                    except psutil.AccessDenied:
                        rss += proc.memory_info().rss
                        have_uss = have_pss = have_anon = False
        except psutil.Error:  # a child exited while we read it
            continue
    if light:
        return Sample(t_ns, 0.0, 0, 0, len(procs), threads, 0, rss)
    return Sample(t_ns, cpu, vol, invol, len(procs), threads, fds,
                  rss if memory else None, uss if have_uss else None, pss if have_pss else None,
                  anon if have_anon else None)


class TreeSampler:
    """Samples a process tree from a background thread until ``stop()``.

    Two kinds of reading. Light ones (process count, threads, RSS) every ``interval_s``, for the
    peaks and so that the runner can watch a server that grows. Full ones (CPU, every thread's
    context switches, fds, USS/PSS) exactly twice, at the edges of the measured window once
    ``mark_window`` has told the sampler where it is: a full reading of a server with 10,000
    threads or processes reads 10,000 files, too slow to repeat every few milliseconds.
    """

    def __init__(self, root_pid: int, interval_s: float = INTERVAL_S):
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.samples: list[Sample] = []  # light readings, for peaks
        self.first: Sample | None = None  # full reading at the window's start
        self.last: Sample | None = None  # full reading just before the window's end
        self._window: tuple[int, int] | None = None
        self._full_ns = 0  # how long the first full reading took
        self._seen: dict = {}  # each thread's last CPU reading, so an exited one keeps counting
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def mark_window(self, start_ns: int, end_ns: int) -> None:
        self._window = (start_ns, end_ns)
        self._wake.set()

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)
        return self.samples

    def _next_mark_ns(self) -> int | None:
        if not self._window or self.last is not None:
            return None
        start_ns, end_ns = self._window
        # The closing reading starts a little before the end, and ends before it: once the
        # generator closes its connections, a process per connection server's children exit, and
        # a reading still under way would miss them. Reading 1,000 processes takes ~1 s.
        lead_ns = max(min(100_000_000, (end_ns - start_ns) // 10), int(1.5 * self._full_ns))
        return start_ns if self.first is None else max(start_ns, end_ns - lead_ns)

    def _run(self) -> None:
        while not self._stop.is_set():
            mark = self._next_mark_ns()
            if mark is not None and time.monotonic_ns() >= mark:
                full = self._full()
                if full is None:
                    return
                if self.first is None:
                    self.first = full
                else:
                    self.last = full
                continue
            light = sample_tree(self.root_pid, memory=False, light=True)
            if light is None:
                return
            self.samples.append(light)
            wait_s = self.interval_s
            if mark is not None:
                wait_s = max(0.0, min(wait_s, (mark - time.monotonic_ns()) / 1e9))
            self._wake.wait(wait_s)
            self._wake.clear()

    def _full(self) -> Sample | None:
        """A full reading, timed at its middle (reading 10,000 tasks takes a while)."""
        t0 = time.monotonic_ns()
        before = machine_cpu()
        s = sample_tree(self.root_pid, memory=True, seen=self._seen)
        if s is not None:
            t1 = time.monotonic_ns()
            s.t_ns = (t0 + t1) // 2
            s.machine = before
            self._full_ns = self._full_ns or t1 - t0
            self.samples.append(s)
        return s

    def peaks(self) -> dict:
        """The most processes, threads and RSS any reading saw (the light ones included)."""
        if not self.samples:
            return {}
        return {"processes": max(s.processes for s in self.samples),
                "threads": max(s.threads for s in self.samples),
                "rss_bytes": max(s.rss_bytes or 0 for s in self.samples) or None}

    def window(self) -> dict:
        """Differences between the two full readings, and the peaks between them."""
        first, last = self.first, self.last
        if first is None or last is None or last.t_ns <= first.t_ns:
            return {}
        inside = [s for s in self.samples if first.t_ns <= s.t_ns <= last.t_ns]
        return {
            "span_s": (last.t_ns - first.t_ns) / 1e9,
            "cpu_s": last.cpu_s - first.cpu_s,
            "ctx_voluntary": last.ctx_voluntary - first.ctx_voluntary,
            "ctx_involuntary": last.ctx_involuntary - first.ctx_involuntary,
            "processes": max(s.processes for s in inside),
            "threads": max(s.threads for s in inside),
            "fds": last.fds,
            "rss_bytes": max(s.rss_bytes for s in inside if s.rss_bytes is not None),
            "uss_bytes": last.uss_bytes,
            "pss_bytes": last.pss_bytes,
            "anon_pss_bytes": last.anon_pss_bytes,
            **_machine_delta(first.machine, last.machine),
        }


def _machine_delta(first: MachineCpu | None, last: MachineCpu | None) -> dict:
    if first is None or last is None:
        return {}
    return {"machine_busy_s": last.busy_s - first.busy_s,
            "machine_steal_s": last.steal_s - first.steal_s,
            "machine_total_s": last.total_s - first.total_s,
            "runner_cpu_s": last.runner_cpu_s - first.runner_cpu_s}
