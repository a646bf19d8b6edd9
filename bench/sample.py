"""Sample a server's whole process tree while the load runs: CPU, memory, threads, fds, switches.

The bench's second stage (generate load -> **sample the server** -> record JSON -> plot). A
background thread reads the tree every ``INTERVAL_S``, timestamped on CLOCK_MONOTONIC, so the
runner can take the difference between the samples that bracket the load generator's measured
window and charge the server exactly the CPU it spent in that window.

What is read, and where from (Linux; psutil elsewhere gives what the OS has):
- CPU: user + system of every live process in the tree, plus the children_* times of the root
  (children it forked and already reaped, as the `fork` server does once per connection).
- context switches of every *thread* (/proc/PID/task/TID/status): /proc/PID/status counts only the
  main thread, which in a thread-per-connection server does almost nothing.
- memory: USS (pages only this process has: what it would free by exiting), PSS (shared pages
  split among sharers) and RSS (every resident page, shared ones counted once per process).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import psutil

INTERVAL_S = 0.05
MEMORY_EVERY = 4  # smaps_rollup is slower to read than stat: memory every 4th sample


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


def _thread_switches(pid: int) -> tuple[int, int] | None:
    vol = invol = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        invol += int(line.split()[1])
        except OSError:  # the thread exited meanwhile
            continue
    return vol, invol


def sample_tree(root_pid: int, *, memory: bool) -> Sample | None:
    """One reading of the tree rooted at ``root_pid``; None if the root is gone."""
    try:
        root = psutil.Process(root_pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    t_ns = time.monotonic_ns()
    cpu = 0.0
    vol = invol = threads = fds = 0
    rss = uss = pss = 0
    have_uss = have_pss = memory
    for i, proc in enumerate(procs):
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                cpu += times.user + times.system
                if i == 0:
                    cpu += times.children_user + times.children_system
                threads += proc.num_threads()
                try:
                    fds += proc.num_fds()
                except (psutil.AccessDenied, AttributeError):
                    pass
                switches = _thread_switches(proc.pid) if os.path.isdir("/proc") else None
                if switches is None:
                    c = proc.num_ctx_switches()
                    switches = (c.voluntary, c.involuntary)
                vol += switches[0]
                invol += switches[1]
                if memory:
                    try:
                        full = proc.memory_full_info()
                        rss += full.rss
                        uss += getattr(full, "uss", 0)
                        have_uss &= hasattr(full, "uss")
                        pss_value = getattr(full, "pss", None)
                        if pss_value is None:
                            have_pss = False
                        else:
                            pss += pss_value
                    except psutil.AccessDenied:
                        rss += proc.memory_info().rss
                        have_uss = have_pss = False
        except psutil.Error:  # a child exited while we read it
            continue
    return Sample(t_ns, cpu, vol, invol, len(procs), threads, fds,
                  rss if memory else None, uss if have_uss else None, pss if have_pss else None)


class TreeSampler:
    """Samples a process tree in a background thread until ``stop()``."""

    def __init__(self, root_pid: int, interval_s: float = INTERVAL_S):
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-sampler", daemon=True)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join(5)
        return self.samples

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            s = sample_tree(self.root_pid, memory=(n % MEMORY_EVERY == 0))
            if s is None:
                return
            self.samples.append(s)
            n += 1
            self._stop.wait(self.interval_s)


def nearest(samples: list[Sample], t_ns: int) -> Sample | None:
    return min(samples, key=lambda s: abs(s.t_ns - t_ns)) if samples else None


def window(samples: list[Sample], start_ns: int, end_ns: int) -> dict:
    """Differences between the samples nearest the window's ends, and the peaks inside it."""
    # The last sample before the window ends, not the nearest: once the generator closes its
    # connections, a thread-per-connection server's threads exit and take their counters along.
    inside = [s for s in samples if start_ns <= s.t_ns <= end_ns]
    first = inside[0] if inside else nearest(samples, start_ns)
    last = inside[-1] if len(inside) > 1 else nearest(samples, end_ns)
    if first is None or last is None or last.t_ns <= first.t_ns:
        return {}
    inside = inside or [first, last]
    with_mem = [s for s in inside if s.rss_bytes is not None] or \
        [s for s in samples if s.rss_bytes is not None]

    def peak(attr):
        values = [getattr(s, attr) for s in with_mem if getattr(s, attr) is not None]
        return max(values) if values else None

    return {
        "span_s": (last.t_ns - first.t_ns) / 1e9,
        "cpu_s": last.cpu_s - first.cpu_s,
        "ctx_voluntary": last.ctx_voluntary - first.ctx_voluntary,
        "ctx_involuntary": last.ctx_involuntary - first.ctx_involuntary,
        "processes": max(s.processes for s in inside),
        "threads": max(s.threads for s in inside),
        "fds": max(s.fds for s in inside),
        "rss_bytes": peak("rss_bytes"),
        "uss_bytes": peak("uss_bytes"),
        "pss_bytes": peak("pss_bytes"),
    }
