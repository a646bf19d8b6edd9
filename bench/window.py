"""What a measurement window was worth: the noise the machine made besides the bench, judged once.

The runner samples the machine's CPU counters at a window's edges (bench/run/sample.py,
bench/run/noise.py); window_noise turns them into the record's ``noise`` field (steal, foreign CPU,
load, clock, and the verdict with its reason), and noise_verdict is the one rule that calls a
window noisy. bench/results.py re-exports these names: the record is read through it.
"""

from __future__ import annotations

# A window is noisy when, during it, other processes used more than FOREIGN_NOISY_PCT % of all the
# CPUs' time, or the hypervisor stole more than STEAL_NOISY_PCT % of it. On a 2-core machine 10 %
# is a fifth of a core: enough to take a server's core for a scheduler slice now and then.
FOREIGN_NOISY_PCT = 10.0
STEAL_NOISY_PCT = 5.0

# The machine is busy at the start when other processes use more than this share of all CPUs.
BUSY_AT_START_PCT = 10.0


def noise_verdict(steal_pct: float | None, foreign_cpu_pct: float | None) -> tuple[bool, str | None]:
    """(noisy, why): a window is noisy past FOREIGN_NOISY_PCT or STEAL_NOISY_PCT."""
    why = []
    if foreign_cpu_pct is not None and foreign_cpu_pct > FOREIGN_NOISY_PCT:
        why.append(f"other processes used {foreign_cpu_pct:.0f} % of the CPUs "
                   f"(threshold {FOREIGN_NOISY_PCT:.0f} %)")
    if steal_pct is not None and steal_pct > STEAL_NOISY_PCT:
        why.append(f"the hypervisor stole {steal_pct:.1f} % of CPU time "
                   f"(threshold {STEAL_NOISY_PCT:.0f} %)")
    return bool(why), "; ".join(why) or None


def window_noise(w: dict, *, client_cpu_s: float | None, client_duration_s: float | None,
                 cpus: int, loadavg_1m: float | None, freq_mhz: float | None,
                 governor: str | None) -> dict:
    """The record's noise figures for one window, from the sampler's window (bench/run/sample.py:
    the machine's CPU counters and the runner's own CPU at the window's edges, the server tree's
    CPU between them) and the generator's own CPU over its window. Foreign CPU is what the
    machine ran besides the server's tree, the generator's workers and the runner itself."""
    steal_pct = foreign_pct = None
    span = w.get("span_s")
    total = w.get("machine_total_s")
    if span and total:
        steal_pct = round(100.0 * w["machine_steal_s"] / total, 2)
        client = (client_cpu_s or 0.0) * (span / client_duration_s if client_duration_s else 1.0)
        foreign_s = w["machine_busy_s"] - w.get("cpu_s", 0.0) - client - w.get("runner_cpu_s", 0.0)
        # the counters tick at 100 Hz: a small negative figure is rounding, not negative work
        foreign_pct = round(max(0.0, 100.0 * foreign_s / (span * cpus)), 1)
    noisy, why = noise_verdict(steal_pct, foreign_pct)
    return {"steal_pct": steal_pct, "foreign_cpu_pct": foreign_pct,
            "loadavg_1m": None if loadavg_1m is None else round(loadavg_1m, 2),
            "freq_mhz": freq_mhz, "governor": governor, "noisy": noisy, "why": why}


# The noise of a measurement that never had a window (skipped, or the server did not start).
NOT_MEASURED_NOISE = window_noise({}, client_cpu_s=None, client_duration_s=None, cpus=1,
                                  loadavg_1m=None, freq_mhz=None, governor=None)
