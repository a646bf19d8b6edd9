"""What the two load engines share, written once: the Python engine (python_engine.py) and the C
engine (engine.c, run by c_engine.py) follow this module, and the summary of a run is built here
from either engine's worker results.

- The tunables, each with the reason for its value. Those engine.c needs reach it as `-D` flags
  (`c_defines()`), generated from this module when the engine is built: servers/build.py hashes
  the flags into its cache key, so a changed value rebuilds the engine at its next use, and the two
  engines cannot drift apart.
- The error kinds (python_engine.py's docstring says what each means), the stall limit and the
  open-loop schedule. engine.c carries its own copies of these two formulas, in C, and
  `tests/test_engine.py` runs them against the ones here (`--contract-selftest`).
- The plan of a run, whichever engine runs it: how many workers, on which CPUs, how many
  connections each opens per batch and how long the connect phase may take.
- A worker's result (what each worker process, or each C engine process, hands back at the end)
  and `summarize`, which merges them into the summary `run_load` returns; RECORD_FIELDS, what
  of a summary a `bench run` record keeps.
"""

from __future__ import annotations

import math
import os

from bench import hist

# -- Tunables, each with the reason for its value --------------------------------------------------

STALL_TIMEOUT_S = 1.0  # an unanswered request older than this at the end of the window is a timeout
STALL_FAIR_SHARES = 10  # ...or, in closed loop, older than this many times connections / throughput
RAMP_PAUSE_S = 0.02  # pause between connect batches, so the server can drain its accept queue
CONNECT_BUDGET_PER_BATCH_S = 0.1  # the connect phase may take connect_timeout + this per batch
START_DELAY_S = 0.05  # the common start time is this far ahead, so all workers begin together
WRAPUP_BUDGET_S = 5.0  # after the window: closing connections, encoding and sending the histograms
OFFSET_SPAN_BYTES = 4093  # messages start anywhere in the first 4093 bytes of the random buffer
MESSAGES_PER_WORKER = 1021  # distinct messages (offsets) each worker cycles through, at most...
MESSAGE_MEMORY_BYTES = 256 << 10  # ...as many as fit in 256 KiB, to stay in a core's cache
MIN_TICK_NS = 100_000  # open loop: ticks of the send timer are at least 0.1 ms apart
MAX_RATE_PER_S = 10_000_000  # far above what Python can send; keeps the schedule's interval >= 1 ns
FD_HEADROOM = 64  # open files a worker needs besides its connections: pipes, the loop, imports

# Alternating with a second server (run_load's alt): each server's slices last about this long.
# Short enough that the machine's drift (a VM's neighbours come and go over tenths of a second
# and more) is shared by both servers' slices; long enough that a switch (the other server's
# few in-flight echoes coming back, a Python server waking up) is a small part of a slice.
ALT_SLICE_S = 0.025

ERROR_KINDS = ("connect", "reset", "mismatch", "unserved", "timeout")
ENGINES = ("c", "python")

# The tunables engine.c is compiled with, under the same names (c_defines).
C_TUNABLES = ("STALL_TIMEOUT_S", "STALL_FAIR_SHARES", "OFFSET_SPAN_BYTES", "MESSAGES_PER_WORKER",
              "MESSAGE_MEMORY_BYTES", "MIN_TICK_NS", "FD_HEADROOM")


def c_defines() -> tuple[str, ...]:
    """The `-D` flags that give engine.c this module's values, and bench/hist.py's histogram.

    The error kinds become E_CONNECT=0, E_RESET=1, ... (E_KINDS of them) and ERROR_KIND_NAMES,
    their names in that order. The histogram's range and precision are bench/hist.py's; its bucket
    layout is the one the `hdrh` package computes from them (hdr_calculate_bucket_config), which
    engine.c's port of HdrHistogram_c's index arithmetic (hdr.c) needs as constants.
    """
    flags = [f"-D{name}={globals()[name]!r}" for name in C_TUNABLES]
    flags += [f"-DE_{kind.upper()}={i}" for i, kind in enumerate(ERROR_KINDS)]
    flags += [f"-DE_KINDS={len(ERROR_KINDS)}",
              "-DERROR_KIND_NAMES=" + ",".join(f'"{kind}"' for kind in ERROR_KINDS)]
    layout = hist.new_histogram()
    flags += [f"-DHDR_LOWEST_US={hist.LOWEST_US}", f"-DHDR_HIGHEST_US={hist.HIGHEST_US}"]
    flags += [f"-DHDR_{field.upper()}={getattr(layout, field)}"
              for field in ("unit_magnitude", "sub_bucket_half_count_magnitude",
                            "sub_bucket_half_count", "sub_bucket_mask", "bucket_count")]
    return tuple(flags)


# -- The formulas both engines follow --------------------------------------------------------------


def stall_limit_s(open_conns: int, completed: int, window_s: float, rate: float | None) -> float:
    """How long a request may wait before it counts as a timeout (see python_engine.py's
    docstring): STALL_TIMEOUT_S, or in closed loop STALL_FAIR_SHARES x the wait of perfect
    turn-taking, which is connections / throughput (Little's law), whichever is longer."""
    if rate is not None or window_s <= 0 or not completed or not open_conns:
        return STALL_TIMEOUT_S
    fair_wait_s = open_conns / (completed / window_s)
    return max(STALL_TIMEOUT_S, STALL_FAIR_SHARES * fair_wait_s)


def open_loop_schedule(global_index: int, total_conns: int, rate_per_s: float,
                       start_ns: int) -> tuple[int, int]:
    """(first send time, interval) in ns of connection `global_index` under a total `rate_per_s`.

    Every connection sends at rate/conns, i.e. every conns/rate seconds; connection g starts g/rate
    seconds after `start_ns`. Together the connections' sends are evenly spaced, 1/rate apart, which
    is the arrival pattern of a steady stream of independent requests.
    """
    interval_ns = round(total_conns * 1e9 / rate_per_s)
    first_send_ns = start_ns + round(global_index * 1e9 / rate_per_s)
    return first_send_ns, interval_ns


# -- The plan of a run -----------------------------------------------------------------------------


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), or all CPUs where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def cpu_list_text(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def worker_count(conns: int, workers: int | None = None, cpus: list[int] | None = None) -> int:
    """How many workers run_load starts (processes of the Python engine, threads of the C one):
    `workers`, or one per CPU of `cpus` (or of this process's affinity mask), and never more than
    there are connections."""
    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    return min(workers or len(set(cpus) if pin else available_cpus()), conns)


def cpu_plan(cpus: list[int] | None) -> tuple[bool, list[int], list[str]]:
    """(whether the workers are pinned, the CPUs they run on, warnings): `cpus` where pinning
    exists (Linux's sched_setaffinity), else every CPU this process may use."""
    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    notes = ["--cpus ignored: pinning (sched_setaffinity) is Linux-only"] \
        if cpus is not None and not pin else []
    return pin, sorted(set(cpus)) if pin else available_cpus(), notes


def connect_plan(conns: int, workers: int, ramp_batch: int,
                 connect_timeout: float) -> tuple[int, float]:
    """(connections each worker opens per batch, the connect phase's time budget in seconds).

    `ramp_batch` connections in all are opened per batch, shared by the workers, with a pause of
    RAMP_PAUSE_S between batches; the phase may take `connect_timeout` plus
    CONNECT_BUDGET_PER_BATCH_S and the pause per batch of the largest worker's share.
    """
    per_worker = max(1, math.ceil(ramp_batch / workers))
    batches = math.ceil(math.ceil(conns / workers) / per_worker)
    return per_worker, connect_timeout + (CONNECT_BUDGET_PER_BATCH_S + RAMP_PAUSE_S) * batches


def alt_slice(duration: float, slice_s: float | None = None) -> float:
    """The slice for alternating over a window of `duration`: near `slice_s` (ALT_SLICE_S), and an
    even number of them in the window, so that each server gets the same share of it."""
    pairs = max(1, round(duration / (2 * (slice_s or ALT_SLICE_S))))
    return duration / (2 * pairs)


# -- What a worker hands back, and the summary of a run ----------------------------------------------


def worker_result(**measured) -> dict:
    """A worker's result: the fields `summarize` reads, each at its value for a worker that
    measured nothing, replaced by `measured`.

    conns_established, conns_open_at_end; connect_s (how long its connect phase took);
    stall_limit_s; hist and send_lag_hist (encoded HdrHistograms, µs; send_lag_hist None in
    closed loop); latency_out_of_range (values clamped into the histogram's range); offered
    (scheduled sends due in the window, open loop); errors (count per kind of ERROR_KINDS) and
    error_examples (the first message of each kind seen); cpu_user_s and cpu_sys_s (its CPU time
    in the window); warnings (for people).
    """
    result = {"conns_established": 0, "conns_open_at_end": 0, "connect_s": 0.0,
              "stall_limit_s": STALL_TIMEOUT_S, "hist": hist.encode(hist.new_histogram()),
              "send_lag_hist": None, "latency_out_of_range": 0, "offered": 0,
              "errors": dict.fromkeys(ERROR_KINDS, 0), "error_examples": {}, "cpu_user_s": 0.0,
              "cpu_sys_s": 0.0, "warnings": []}
    unknown = measured.keys() - result.keys()
    if unknown:
        raise TypeError(f"not fields of a worker result: {', '.join(sorted(unknown))}")
    result.update(measured)
    return result


# The fields of a summary that a bench record keeps (bench/results.py's fill_load copies them into
# each measurement of `bench run`): the figures. Not the target, mode and cell, which the record
# says its own way, nor the run's plumbing (its window on the clock, workers, CPUs, loop); the
# last two are set beside the alternate's figures when a run alternates (c_engine.py).
RECORD_FIELDS = ("rps", "bytes_per_s", "requests", "duration_s", "latency_us", "hist", "errors",
                 "conns_established", "client_cpu_s", "client_cpu_util",
                 "client_cpu_us_per_request", "offered_rps", "send_lag_us", "latency_out_of_range",
                 "warnings", "error_examples", "stall_limit_s", "warmup_s", "engine", "connect_s",
                 "active_s", "slice_s")


def summarize(results: list[dict], *, host, port, conns, size, rate, duration, warmup, n_workers,
              cpus, cores, loop_name, result_warnings, start_ns, engine: str) -> dict:
    """The summary of a run (what run_load returns) from its workers' results."""
    latency = hist.merge([r["hist"] for r in results])
    requests = latency.get_total_count()
    errors = dict.fromkeys(ERROR_KINDS, 0)
    examples: dict[str, str] = {}
    for r in results:
        for kind, count in r["errors"].items():
            errors[kind] += count
        for kind, text in r["error_examples"].items():
            examples.setdefault(kind, text)
        for note in r["warnings"]:
            if note not in result_warnings:
                result_warnings.append(note)
    window_start_ns = None if start_ns is None else start_ns + int(warmup * 1e9)
    cpu_user_s = sum(r["cpu_user_s"] for r in results)
    cpu_sys_s = sum(r["cpu_sys_s"] for r in results)
    cpu_s = cpu_user_s + cpu_sys_s
    summary = {
        "target": f"{host}:{port}",
        "mode": "closed" if rate is None else "open",
        "conns": conns,
        "conns_established": sum(r["conns_established"] for r in results),
        "conns_open_at_end": sum(r["conns_open_at_end"] for r in results),
        # how long the connect phase (the ramp) took, in the slowest worker: with
        # conns_established, the rate at which the server accepted (C100K)
        "connect_s": round(max((r["connect_s"] for r in results), default=0.0), 3),
        # how long a request could wait before it counted as a timeout (see stall_limit_s)
        "stall_limit_s": round(max((r["stall_limit_s"] for r in results),
                                   default=STALL_TIMEOUT_S), 3),
        "size_bytes": size,
        "warmup_s": warmup,
        "duration_s": duration,
        # The measured window on time.monotonic_ns()'s clock (shared by all processes of this
        # machine), so a sampler of the server can line its own readings up with it.
        "window_start_ns": window_start_ns,
        "window_end_ns": None if start_ns is None else window_start_ns + int(duration * 1e9),
        "requests": requests,
        "rps": requests / duration if duration else 0.0,
        "bytes_per_s": requests * size / duration if duration else 0.0,
        "latency_us": hist.summarize(latency),
        "hist": hist.encode(latency),
        "latency_out_of_range": sum(r["latency_out_of_range"] for r in results),
        "errors": errors,
        "error_examples": examples,
        "client_cpu_s": round(cpu_s, 4),
        "client_cpu_user_s": round(cpu_user_s, 4),  # the engine's own work (Python, the loop)
        "client_cpu_sys_s": round(cpu_sys_s, 4),  # the kernel: syscalls, TCP, wake-ups
        # A worker is one thread, so the generator can use at most min(workers, cpus) cores. The
        # CPU readings bracket the window to within a timer tick: clamp the ratio to 1.
        "client_cpu_util": round(min(1.0, cpu_s / (duration * cores)), 4) if duration else 0.0,
        "client_cpu_us_per_request": round(cpu_s * 1e6 / requests, 2) if requests else None,
        "client_workers": n_workers,
        "client_cpus": cpus,
        "client_cores": cores,
        "client_loop": loop_name,
        "engine": engine,  # which load engine measured it: "c" or "python"
        "warnings": result_warnings,
    }
    if rate is not None:
        lag = hist.summarize(hist.merge([r["send_lag_hist"] for r in results]))
        summary["rate"] = rate
        summary["offered_rps"] = sum(r["offered"] for r in results) / duration if duration else 0.0
        summary["send_lag_us"] = {k: lag[k] for k in ("p50", "p99", "max")}
    return summary
