"""The handshake between run_load and the processes that generate the load, one driver for both
engines: ready, start, the window, the results.

    workers ──▶ "ready" (connections established, how long connecting took)
    run_load picks a common start time a little ahead (START_DELAY_S)
    workers ◀── "start" start_ns        (or "stop": nothing to measure, or a worker is missing)
    run_load calls on_window(window_start_ns, window_end_ns) right away, before the window opens
    workers     warm up for `warmup` s, measure for `duration` s
    workers ──▶ their result (contract.worker_result)

An engine brings the channel to each of its processes, a `Worker` (python_engine.py: a "spawn"
process and its pipe; c_engine.py: the engine's process, its stdin and stdout). Every wait has a
deadline: a worker that does not answer in time, or exits, is named in the warnings and its
connections are missing from the result; it never hangs run_load. Start times are on
time.monotonic_ns()'s clock (CLOCK_MONOTONIC), which every process of the machine shares, so the
workers and the sampler of the server agree on the window's edges to the nanosecond.
"""

from __future__ import annotations

import time
from typing import Protocol

from bench.load.contract import START_DELAY_S, WRAPUP_BUDGET_S

# A worker told to wait for "start" gives up by itself this long after the parent's deadline for
# "ready" (the parent may be gone, or have given up on another worker).
START_WAIT_MARGIN_S = 5.0


class Lost(Exception):
    """A worker did not answer in time, or exited; the text says which (e.g. "exited (code 1)
    before it was ready")."""


class Worker(Protocol):
    name: str  # for people: "bench.load worker 0", "C engine process 1 of 2"

    def ready(self, deadline: float) -> dict:
        """Wait until time.monotonic() reaches `deadline` for the worker to have connected:
        {"conns_established": N, "connect_s": S}. Raises Lost."""

    def start(self, start_ns: int) -> None:
        """Warm up from `start_ns` on, then measure (never raises: a worker gone is found out
        when its result is missing)."""

    def stop(self) -> None:
        """Close the connections and send an empty result: nothing is to be measured."""

    def result(self, deadline: float) -> dict:
        """Wait until `deadline` for the worker's result (contract.worker_result). Raises Lost."""


def drive(workers: list[Worker], *, ready_by: float, warmup: float, duration: float,
          on_window=None) -> tuple[list[dict], int | None, list[str]]:
    """Take the workers through the handshake: (their results, start_ns or None when nothing was
    measured, warnings). `ready_by`: when the last worker must have connected (time.monotonic)."""
    notes: list[str] = []
    ready: dict = {}  # worker -> its "ready"
    lost: dict = {}  # worker -> why it is missing
    for worker in workers:
        try:
            ready[worker] = worker.ready(ready_by)
        except Lost as exc:
            lost[worker] = str(exc)
    established = sum(r["conns_established"] for r in ready.values())
    start_ns = None
    if established and not lost:
        start_ns = time.monotonic_ns() + int(START_DELAY_S * 1e9)
        for worker in workers:
            worker.start(start_ns)
        if on_window is not None:
            window_start_ns = start_ns + int(warmup * 1e9)
            on_window(window_start_ns, window_start_ns + int(duration * 1e9))
        results_by = time.monotonic() + START_DELAY_S + warmup + duration + WRAPUP_BUDGET_S
    else:
        for worker in workers:
            worker.stop()
        results_by = time.monotonic() + WRAPUP_BUDGET_S
        notes.append("no connection could be established; nothing was measured" if not established
                     else "a worker failed to get ready; nothing was measured")
    results = []
    for worker, said in ready.items():
        try:
            result = worker.result(results_by)
        except Lost as exc:
            lost[worker] = str(exc)
            continue
        result["connect_s"] = said["connect_s"]
        results.append(result)
    notes += [f"{worker.name} {why}; its connections are missing from the result"
              for worker, why in lost.items()]
    return results, start_ns, notes
