"""What else the machine is doing: the noise figures of a bench run (see docs/bench.md).

The runner reads these at the two edges of every measured window (through bench/run/sample.py's
full readings) and once before the run:

- /proc/stat's first line: the whole machine's CPU time by state, so the runner can tell how
  much of the CPUs went to processes other than the server's tree, the load generator and itself
  (``foreign``), and how much the hypervisor stole (``steal``: a virtual CPU ready to run while
  the host ran someone else);
- the CPU frequency and governor, where /sys/devices/system/cpu/cpu*/cpufreq exists (most VMs
  have none);
- at the start, every process's CPU share over half a second (psutil), to warn that the machine
  is busy and name who keeps it busy.

The figures per window, and whether a window was noisy, are computed in bench/window.py
(window_noise, noise_verdict; read through bench/results.py): like every derived figure, once.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass

from bench import results
from bench.stats import number
from servers import launch


@dataclass
class MachineCpu:
    """The whole machine's CPU time since boot (/proc/stat's first line, all CPUs together) and
    this process's own (the runner: its main thread and the sampler), in seconds."""

    busy_s: float  # user + nice + system: time some process ran (guest time is inside user)
    steal_s: float  # time a virtual CPU wanted to run but the hypervisor ran someone else
    total_s: float  # every state: busy, idle, iowait, irq, softirq, steal
    runner_cpu_s: float


TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu() -> MachineCpu | None:
    """Interrupt and softirq time are left out of busy_s: on loopback the kernel moves our own
    packets in softirq context, which is charged to no process, so it would look foreign."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]] + [0] * (9 - len(fields))
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = ticks[:8]
    usage = os.times()
    return MachineCpu((user + nice + system) / TICKS_PER_S, steal / TICKS_PER_S,
                      sum(ticks[:8]) / TICKS_PER_S, usage.user + usage.system)


def cpu_frequency() -> tuple[float | None, str | None]:
    """(mean current frequency of the CPUs in MHz, cpu0's governor) where cpufreq is readable
    (most VMs have none: (None, None))."""
    freqs = []
    for cpu in range(os.cpu_count() or 1):
        try:
            with open(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_cur_freq") as f:
                freqs.append(int(f.read()) / 1000)
        except (OSError, ValueError):
            continue
    try:
        with open("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor") as f:
            governor = f.read().strip() or None
    except OSError:
        governor = None
    return (round(sum(freqs) / len(freqs), 1) if freqs else None), governor


def busy_at_start(sample_s: float = 0.5, top: int = 3) -> dict:
    """What other processes use of the machine's CPUs right now, and the top users by name."""
    import psutil
    mine = {os.getpid(), *(p.pid for p in launch.tree(os.getpid()))}
    procs = [p for p in psutil.process_iter(["name"]) if p.pid not in mine]
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(sample_s)
    usage: dict[str, float] = {}
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct > 0:
            usage[p.info["name"] or str(p.pid)] = usage.get(p.info["name"] or str(p.pid), 0) + pct
    cpus = os.cpu_count() or 1
    total = sum(usage.values()) / cpus
    ranked = sorted(usage.items(), key=lambda kv: -kv[1])[:top]
    return {"foreign_cpu_pct": round(total, 1), "cpus": cpus,
            "top": [[name, round(pct / cpus, 1)] for name, pct in ranked],  # % of all CPUs
            "busy": total > results.BUSY_AT_START_PCT}


def noise_summary(records: Iterable[dict], busy_at_start: dict | None) -> dict:
    """meta.json's machine-noise summary over the run's windows."""
    noises = [r["noise"] for r in records if isinstance(r.get("noise"), dict)]

    def agg(key):
        values = [n[key] for n in noises if number(n.get(key)) is not None]
        return ({"median": round(statistics.median(values), 2), "max": round(max(values), 2)}
                if values else None)

    return {"windows": len(noises), "noisy_windows": sum(1 for n in noises if n.get("noisy")),
            "steal_pct": agg("steal_pct"), "foreign_cpu_pct": agg("foreign_cpu_pct"),
            "loadavg_1m": agg("loadavg_1m"), "busy_at_start": busy_at_start,
            "thresholds": {"foreign_cpu_pct": results.FOREIGN_NOISY_PCT,
                           "steal_pct": results.STEAL_NOISY_PCT}}
