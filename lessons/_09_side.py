"""Lesson 09's side-by-side part: readiness against completion, in C and in Python, on one core.

c-epoll, c-uring, epoll and io_uring (registry names) run at once, each pinned to the same one
server CPU; bench.load (its C engine where it builds) drives one of them at a time from the
other CPUs, in interleaved rounds: every round measures each server once, in an order rotated
from round to round, so a burst of other load on this shared machine hits every server alike
rather than one. Per server and round: req/s, the server's CPU per request (its process tree's
CPU time over the measured window, bench/run/sample.py's TreeSampler, divided by the requests)
and the generator's CPU per request (bench.load's own). Each server's req/s is then a ratio to
c-epoll's in the same round; the ratios' geometric mean and its 95 % interval (bench/stats.py)
say "tie" when the interval holds 1 or the change is under 2 % (bench/compare.py's noise
floor), and when the generator was 90 % busy or more against both servers: never a win.

The generator is part of the result: an echo of 64 bytes costs the client about as much as the
server, so on a 2-core machine a one-core generator can be the limit for every C server, and the
ratios of the C servers then measure the generator, not them (generator CPU use near 100 %).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import servers
from servers import launch

if TYPE_CHECKING:
    from lessons.common import Lesson

SIDE_SERVERS = ("c-epoll", "c-uring", "epoll", "io_uring")
REFERENCE = "c-epoll"
SIDE_CONNS, SIDE_SIZE = 16, 64
MAX_GENERATOR_CPUS = 4
# The generator this busy against both servers was their limit: neither was pushed to its own.
GENERATOR_BOUND = 0.9
NOISE_FLOOR_PCT = 2.0  # as bench/compare.py: a significant change smaller than this is not one


def cpu_plan() -> tuple[list[int], list[int]] | str:
    """(the server's one CPU, the generator's CPUs), or why there are not two CPUs to split.
    The server gets the last CPU; the generator the others, without the server CPU's SMT
    sibling where there are enough without it."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return f"one CPU here ({cpus}): a server core and a generator core need two"
    server = cpus[-1]
    siblings = set()
    try:
        with open(f"/sys/devices/system/cpu/cpu{server}/topology/thread_siblings_list") as f:
            from lessons.cpus import cpu_list
            siblings = set(cpu_list(f.read().strip()))
    except OSError:
        pass
    others = [c for c in cpus if c != server]
    apart = [c for c in others if c not in siblings]
    return [server], (apart or others)[:MAX_GENERATOR_CPUS]


def unavailable() -> dict[str, str]:
    """{server: why it cannot run here} for the side-by-side servers that cannot."""
    why = {}
    for name in SIDE_SERVERS:
        ok, reason = servers.get(name).availability()
        if not ok:
            why[name] = reason
    return why


def measure_once(server: launch.RunningServer, client_cpus: list[int], window_s: float,
                 warmup_s: float) -> dict:
    """One window of load on one running server: req/s, server and generator CPU µs per request."""
    from bench.load import run_load
    from bench.run.sample import TreeSampler
    sampler = TreeSampler(server.pid).start()
    try:
        load = run_load(server.host, server.port, conns=SIDE_CONNS, size=SIDE_SIZE,
                        duration=window_s, warmup=warmup_s, cpus=client_cpus,
                        on_window=sampler.mark_window)
    finally:
        sampler.stop()
    errors = sum(load["errors"].values())
    if errors or not load["requests"]:
        raise RuntimeError(f"{errors} errors, {load['requests']} requests: "
                           + "; ".join(load["error_examples"].values()))
    w = sampler.window()
    server_us = (w["cpu_s"] / w["span_s"] / load["rps"] * 1e6) if w.get("span_s") else None
    return {"rps": load["rps"], "server_us": server_us,
            "client_us": load["client_cpu_us_per_request"],
            "client_util": load["client_cpu_util"], "engine": load["engine"]}


def side_by_side(rounds: int, window_s: float, warmup_s: float, names=SIDE_SERVERS) -> dict:
    """Every server of ``names`` started once on the server CPU, then ``rounds`` interleaved
    rounds. Returns {"cpus": (server, generator), "rounds": [{name: measure_once(...)}...]}."""
    plan = cpu_plan()
    if isinstance(plan, str):
        raise RuntimeError(plan)
    server_cpus, client_cpus = plan
    running: dict[str, launch.RunningServer] = {}
    try:
        for name in names:
            running[name] = launch.start(servers.get(name), cpus=server_cpus)
        results = []
        for r in range(rounds):
            order = list(names[r % len(names):]) + list(names[:r % len(names)])
            results.append({name: measure_once(running[name], client_cpus, window_s, warmup_s)
                            for name in order})
        return {"cpus": (server_cpus, client_cpus), "rounds": results}
    finally:
        for server in running.values():
            server.stop()


def summary(run: dict, names=SIDE_SERVERS) -> dict:
    """Per server: req/s (median), the ratio to REFERENCE (geometric mean of the rounds' ratios,
    its 95 % interval, and "tie", "faster" or "slower"), server and generator CPU µs per request
    (medians), and the generator's CPU use (the highest of the rounds, 0-1)."""
    import statistics

    from bench.stats import ratio_stat
    out = {}
    for name in names:
        rows = [rnd[name] for rnd in run["rounds"]]
        ratio = ratio_stat(rnd[name]["rps"] / rnd[REFERENCE]["rps"] for rnd in run["rounds"])
        ci = ratio.ci95 if ratio else None
        bound = min(max(r["client_util"] for r in rows),
                    max(rnd[REFERENCE]["client_util"] for rnd in run["rounds"])) >= GENERATOR_BOUND
        if name == REFERENCE or ci is None:
            verdict = None
        elif bound:
            verdict = "tie, generator-bound"
        elif ci[0] <= 1.0 <= ci[1] or abs(ratio.value - 1) * 100 < NOISE_FLOOR_PCT:
            verdict = "tie"
        else:
            verdict = "faster" if ci[0] > 1.0 else "slower"
        server_us = [r["server_us"] for r in rows if r["server_us"] is not None]
        out[name] = {
            "rps": statistics.median(r["rps"] for r in rows),
            "ratio": ratio.value if ratio else None,
            "ci": list(ci) if ci else None,
            "verdict": verdict,
            "server_us": statistics.median(server_us) if server_us else None,
            "client_us": statistics.median(r["client_us"] for r in rows),
            "client_util": max(r["client_util"] for r in rows),
        }
    return out


# -- the lesson's section (lessons/09_async_io.py runs it) -------------------------------------------


def side_section(lesson: Lesson) -> None:
    """c-epoll, c-uring, epoll, io_uring on one server core, in interleaved rounds (_09_side.py)."""
    lesson.section("readiness against completion, in C and in Python, one server core")
    labels = ["side-by-side CPUs", "generator CPUs"] + [
        f"{what}, {name}" for name in SIDE_SERVERS for what in SIDE_WHAT
        if not (name == REFERENCE and "against" in what)]
    why = unavailable()
    plan = cpu_plan()
    reason = plan if isinstance(plan, str) else (
        "; ".join(f"{n}: {w}" for n, w in why.items()) if why else None)
    if reason:
        lesson.skip_all(labels, reason)
        return
    rounds, window_s, warmup_s = (2, 0.4, 0.2) if lesson.quick else (5, 1.0, 0.3)
    try:
        run = side_by_side(rounds, window_s, warmup_s)
    except (RuntimeError, launch.StartError, OSError) as exc:
        lesson.skip_all(labels, str(exc).splitlines()[0])
        return
    server_cpus, client_cpus = run["cpus"]
    engine = run["rounds"][0][REFERENCE]["engine"]
    lesson.measure("side-by-side CPUs", f"server {server_cpus}, generator {client_cpus} "
                   f"({engine} engine), {rounds} x {window_s:g} s")
    lesson.measure("generator CPUs", len(client_cpus))
    summed = summary(run)
    for name, s in summed.items():
        lesson.measure(f"req/s, {name}", s["rps"], fmt=",.0f")
        if name != REFERENCE:
            lesson.measure(f"req/s against {REFERENCE}, {name}", s["ratio"], "x", fmt=".2f")
            ci = s["ci"]
            lesson.measure(f"verdict against {REFERENCE}, {name}",
                           f"{s['verdict'] or 'one round: no interval'}"
                           + (f" (interval {ci[0]:.2f}-{ci[1]:.2f})" if ci else ""))
        lesson.measure(f"server CPU per request, {name}", s["server_us"], "µs", fmt=".2f")
        lesson.measure(f"generator CPU per request, {name}", s["client_us"], "µs", fmt=".2f")
        lesson.measure(f"generator CPU use, {name}", s["client_util"] * 100, "%", fmt=".0f")
    lesson.series("side_by_side", summed)
    busy = [n for n, s in summed.items() if s["client_util"] >= 0.9]
    if busy:
        lesson.notice(f"generator 90 %+ busy against {', '.join(busy)}: it is the limit there")


SIDE_WHAT = ("req/s", "req/s against c-epoll", "verdict against c-epoll", "server CPU per request",
             "generator CPU per request", "generator CPU use")
