"""The load generator: a fast echo client that measures throughput and latency of any echo server,
closed loop or open loop, with two engines behind one interface.

    python -m bench.load --target 127.0.0.1:9000 --conns 64 --size 1024 --duration 5
    python -m bench.load --target 127.0.0.1:9000 --rate 20000 --json
    run_load("127.0.0.1", 9000, conns=64, size=1024, duration=5.0)     # the summary, a dict

One file, one purpose (python_engine.py's docstring is the design essay; read it first):

    __init__.py           run_load: checks the arguments, picks the engine, returns its summary
    contract.py           what both engines share: the tunables (passed to engine.c as -D flags),
                          the error kinds, the stall limit, the open-loop schedule, the plan of a
                          run, a worker's result and the summary built from them
    handshake.py          ready, start, the window, the results: one driver for both engines
    python_engine.py      the Python engine (worker processes, one uvloop loop each), the essay
    python_connection.py  its connections: the messages, the byte check, closed and open loop
    python_ticker.py      its open-loop timer (a Linux timerfd)
    c_engine.py           the C engine: build engine.c, run it, read what it prints
    engine.c, hdr.c/.h    the C engine itself (threads, one epoll loop each) and its
                          HdrHistogram_c port
    minimal_client.c      the yardstick for the engines (bench/headroom.py)
    limits.py             open files and local ports: what the machine allows, and the fix
    cli.py                python -m bench.load (and python -m bench load)

Scripts that call `run_load` must guard their top level with `if __name__ == "__main__":`, as for
any "spawn" multiprocessing: each worker of the Python engine starts a fresh interpreter that
re-imports the main module.
"""

from __future__ import annotations

import math
import os
import warnings

from bench.load import c_engine, python_engine
from bench.load.cli import main, parse_cpu_list, parse_target
from bench.load.contract import (
    ALT_SLICE_S,
    ENGINES,
    ERROR_KINDS,
    MAX_RATE_PER_S,
    STALL_FAIR_SHARES,
    STALL_TIMEOUT_S,
    WRAPUP_BUDGET_S,
    alt_slice,
    available_cpus,
    cpu_list_text,
    open_loop_schedule,
    stall_limit_s,
    worker_count,
)
from bench.load.limits import fd_hard_limit, fd_shortfall, port_shortfall
from bench.load.python_engine import SPAWN_BUDGET_S

__all__ = [
    "ALT_SLICE_S", "ENGINES", "ERROR_KINDS", "SPAWN_BUDGET_S", "STALL_FAIR_SHARES",
    "STALL_TIMEOUT_S", "WRAPUP_BUDGET_S", "alt_slice", "available_cpus", "check_arguments",
    "default_engine", "fd_hard_limit", "fd_shortfall", "main", "open_loop_schedule",
    "parse_cpu_list", "parse_target", "port_shortfall", "resolve_engine", "run_load",
    "stall_limit_s", "worker_count",
]


# -- Which engine ----------------------------------------------------------------------------------


def default_engine() -> tuple[str, str | None]:
    """("c", None) where the C engine builds and runs, else ("python", why not and the fix)."""
    ok, why = c_engine.available()
    return ("c", None) if ok else ("python", why)


_fallback_noticed = False


def resolve_engine(engine: str | None) -> str:
    """The engine to use: `engine`, or the default (with a one-time RuntimeWarning when the C
    engine is unavailable). Raises ValueError when "c" is asked for and cannot run here."""
    global _fallback_noticed
    if engine is None:
        name, why = default_engine()
        if why is not None and not _fallback_noticed:
            _fallback_noticed = True
            warnings.warn(f"using the Python load engine: {why}", RuntimeWarning, stacklevel=3)
        return name
    if engine == "c":
        ok, why = c_engine.available()
        if not ok:
            raise ValueError(f"engine 'c' is not available here: {why} (or use engine 'python')")
    return engine


# -- The one entry point ---------------------------------------------------------------------------


def _check_positive(name: str, value, *, integer: bool, zero_ok: bool = False) -> None:
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (integer and not isinstance(value, int)) or not math.isfinite(value)
           or value < 0 or (value == 0 and not zero_ok))
    if bad:
        what = "a whole number" if integer else "a number"
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")


def check_arguments(host: str, port: int, *, conns: int, size: int, duration: float,
                    warmup: float = 1.0, rate: float | None = None, workers: int | None = None,
                    cpus: list[int] | None = None, connect_timeout: float = 5.0,
                    ramp_batch: int = 64, engine: str | None = None) -> None:
    """Raise ValueError naming the first bad argument of run_load (which calls this first)."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _check_positive("conns", conns, integer=True)
    _check_positive("size", size, integer=True)
    _check_positive("duration", duration, integer=False)
    _check_positive("warmup", warmup, integer=False, zero_ok=True)
    _check_positive("connect_timeout", connect_timeout, integer=False)
    _check_positive("ramp_batch", ramp_batch, integer=True)
    if rate is not None:
        _check_positive("rate", rate, integer=False)
        if rate > MAX_RATE_PER_S:
            raise ValueError(f"rate must be at most {MAX_RATE_PER_S:,}/s (one worker sends in the "
                             f"order of 100,000/s), got {rate!r}")
    if workers is not None:
        _check_positive("workers", workers, integer=True)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port!r}")
    if not host:
        raise ValueError("host must be a name or an address, e.g. 127.0.0.1")
    if cpus is not None and hasattr(os, "sched_getaffinity"):
        missing = sorted(set(cpus) - set(available_cpus()))
        if not cpus or missing:
            raise ValueError(f"cpus {cpu_list_text(missing or cpus) or '(none)'}: not available "
                             f"to this process, which may run on {cpu_list_text(available_cpus())}"
                             "; pick CPUs from that list")


def run_load(host: str, port: int, *, conns: int, size: int, duration: float, warmup: float = 1.0,
             rate: float | None = None, workers: int | None = None, cpus: list[int] | None = None,
             connect_timeout: float = 5.0, ramp_batch: int = 64,
             on_window=None, engine: str | None = None, alt: tuple[str, int] | None = None,
             slice_s: float = ALT_SLICE_S) -> dict:
    """Run the load against an echo server at host:port and return the summary dict
    (contract.summarize says what it holds).

    ``on_window(window_start_ns, window_end_ns)``, if given, is called (in this thread) as soon as
    the measured window is fixed, before it begins: the bench runner uses it to sample the server
    exactly at the window's edges.

    `conns` connections of `size`-byte messages, `warmup` seconds not measured, then `duration`
    seconds measured. `rate` (total requests/s) switches to open loop. `workers` processes
    (default: one per CPU in `cpus`, or in this process's affinity mask), each pinned to one CPU of
    `cpus` in turn if given (Linux only; ignored with a warning elsewhere). Raises ValueError on bad
    arguments; a server that is absent, broken or hanging gives a result with errors, not an
    exception. Call it under `if __name__ == "__main__":` (the workers are "spawn" processes).

    `engine`: "c" (c_engine.py, threads instead of worker processes), "python"
    (python_engine.py), or None for the default (c where it builds, else python with a
    RuntimeWarning saying why). The summary says which one measured it in "engine".

    `alt` (host, port): a second server measured in the same window, in alternating slices of
    about `slice_s` (the C engine, closed loop; see engine.c): `conns` connections to each, the
    window's time split between them. The summary's figures are the target's, over the time it
    was active; its "alt" holds the second server's.
    """
    check_arguments(host, port, conns=conns, size=size, duration=duration, warmup=warmup,
                    rate=rate, workers=workers, cpus=cpus, connect_timeout=connect_timeout,
                    ramp_batch=ramp_batch, engine=engine)
    if alt is not None and (rate is not None or resolve_engine(engine) != "c"):
        raise ValueError("alt (a second server in alternating slices) needs the C engine and "
                         "a closed loop (no rate)")
    plan = {"conns": conns, "size": size, "duration": duration, "warmup": warmup, "rate": rate,
            "workers": workers, "cpus": cpus, "connect_timeout": connect_timeout,
            "ramp_batch": ramp_batch, "on_window": on_window}
    if resolve_engine(engine) == "c":
        return c_engine.run_load(host, port, **plan, alt=alt, slice_s=slice_s)
    return python_engine.run_load(host, port, **plan)
