"""One measurement: start the server pinned to its cores (servers.launch), wait for its readiness
line, run the load generator (bench.load) pinned to the other cores (warm-up, then the measured
window), sample the server's process tree and the machine's noise meanwhile (bench/run/sample.py),
wait for it to go idle once the clients have left, SIGTERM it and check that it exited 0 within
2 s. With the reference beside (beside_ref), both servers share one window, in alternating slices.

A server that fails to start, crashes, refuses connections, hangs, leaves clients unserved or
corrupts bytes is a result (status failed or degraded, with the reason, the server's own log
lines and the tail of its stderr: bench/run/verdict.py), never a crash of the run. Every phase is
bounded in time.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import servers
from bench import load as load_gen
from bench import results
from bench.results import CellKey
from bench.load import run_load
from bench.run import noise, sample
from bench.run.figures import beside_figures, fill_server
from bench.run.guard import Guard, preflight
from bench.run.profiles import Profile, warmup_for
from bench.run.subject import Subject, start
from bench.run.verdict import judge
from servers import launch

CLEAN_EXIT_S = 2.0  # the contract: SIGTERM -> exit 0 within 2 s
CONNECT_TIMEOUT_S = 10.0

# After the load the clients are gone, and the server reacts: 10,000 threads unwind, 10,000
# children exit. SIGTERM waits until the server is idle (under SETTLE_CPU_SHARE of a core over
# SETTLE_SPAN_S), at most SETTLE_MAX_S, and that wait is recorded as settle_s: the exit check is
# about shutting down, not about the clients' departure.
SETTLE_SPAN_S = 0.05
SETTLE_CPU_SHARE = 0.05
SETTLE_MAX_S = 20.0


def beside_possible(subject: Subject, cell: CellKey, rate: float | None,
                    beside: Subject | None) -> bool:
    """Can `beside` (the reference) be measured in the same window as `subject`, alternating?
    Closed loop, the C engine, both servers' connections in one engine process."""
    if beside is None or subject.is_reference or subject.kind == "running" or cell.is_open \
            or rate is not None or load_gen.default_engine()[0] != "c":
        return False
    from bench.load import c_engine
    return c_engine.processes_for(2 * cell.conns) == 1


def measure(entry: servers.Server | Subject, cell: CellKey, repeat: int, profile: Profile,
            server_cpus: list[int] | None, client_cpus: list[int] | None,
            rate: float | None = None, measure_s: float | None = None,
            beside: Subject | None = None) -> dict:
    """One measurement of `entry` at `cell` in round `repeat`; `rate` is the open-loop rate of a
    cell given as a share of the server's peak (the caller works it out), else the cell's own
    rate; `measure_s` a longer window than the profile's (see Runner.window_check). `beside`:
    the reference, started beside the server and measured in the same window in alternating
    slices where beside_possible (the record's beside_ref), the window twice as long."""
    subject = entry if isinstance(entry, Subject) else Subject.registry(entry)
    rate = cell.rate if rate is None else rate
    window_s = profile.measure_s if measure_s is None else measure_s
    if not beside_possible(subject, cell, rate, beside):
        beside = None
    if beside is not None:
        window_s *= 2
    record = results.record(
        subject.name, cell, repeat, family=subject.family, lesson=subject.lesson, rate=rate,
        is_reference=subject.is_reference, stderr_tail=None,
        started_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), window_s=window_s,
        target=subject.target(),  # its noise: none measured, until there is a window
        interpreter=dict(subject.interpreter) if subject.interpreter else None)
    if subject.serial and cell.conns > 1:
        return results.skipped(record, "serial server: serves one client at a time, so more "
                               "connections only queue (see its 1-connection cell, and lesson 07)")
    if (why := preflight(cell, client_cpus)) is not None:
        return results.skipped(record, why)
    if cell.is_open and not rate:
        return results.skipped(record, "no peak to take a share of: no closed-loop cell of this "
                               "server at this message size was measured ok before this one")
    t0 = time.monotonic()
    try:
        server, port = start(subject, server_cpus)
    except launch.StartError as exc:
        return results.failed(record, f"did not start: {exc.reason}", stderr_tail=exc.stderr,
                              elapsed_s=round(time.monotonic() - t0, 2))
    if port is not None:
        record["target"] = subject.target(port)
    if record.get("interpreter") and (gil := launch.ready_gil(getattr(server, "ready_line", None))) is not None:
        record["interpreter"]["gil_enabled"] = gil  # the server's own word, after its imports
    attached = getattr(server, "attached", False)
    ref_server = ref_sampler = None
    try:
        if beside is not None:
            try:
                ref_server, _ = start(beside, server_cpus)
            except launch.StartError as exc:
                record["beside_note"] = (f"the reference beside did not start ({exc.reason}): "
                                         f"paired by round instead")
                window_s /= 2
        record["window_s"] = window_s
        if not attached:
            time.sleep(0.05)  # let the server finish start-up work before the idle baseline
        idle = sample.sample_tree(server.pid, memory=True)
        sampler = sample.TreeSampler(server.pid).start()
        ref_sampler = sample.TreeSampler(ref_server.pid).start() if ref_server else None
        # The guard kills by process group: never a server the bench did not start.
        guard = Guard(server, sampler).start() if not attached else None

        def on_window(start_ns: int, end_ns: int) -> None:
            sampler.mark_window(start_ns, end_ns)
            if ref_sampler is not None:
                ref_sampler.mark_window(start_ns, end_ns)
        try:
            load = run_load(server.host, server.port, conns=cell.conns, size=cell.size_bytes,
                            duration=window_s, warmup=warmup_for(cell, profile),
                            rate=rate, cpus=client_cpus, connect_timeout=CONNECT_TIMEOUT_S,
                            on_window=on_window,
                            alt=(ref_server.host, ref_server.port) if ref_server else None)
        finally:
            if guard:
                guard.stop()
            sampler.stop()
            if ref_sampler is not None:
                ref_sampler.stop()
        if attached:
            crashed = None if server.alive() else -1
            code, elapsed = 0, 0.0
            if crashed is None:
                record["settle_s"] = round(settle(server.pid), 2)
        else:
            crashed = server.proc.poll()
            if crashed is None:
                record["settle_s"] = round(settle(server.pid), 2)
            code, elapsed = server.signal_and_wait(signal.SIGTERM, CLEAN_EXIT_S + 3)
            record["stderr_tail"] = server.stderr_tail(2000) or None  # before kill() deletes it
    except Exception as exc:  # a bug in the bench itself must not lose the other measurements
        server.kill()
        return results.failed(record, f"bench error: {type(exc).__name__}: {exc}")
    finally:
        server.kill()  # also on a signal (Interrupted): the whole process group goes
        if ref_server is not None:
            ref_server.kill()

    results.fill_load(record, load)
    w = sampler.window()
    fill_server(record, load, w, idle, cell, server_cpus, sampler.peaks())
    ref_w = ref_sampler.window() if ref_sampler is not None else {}
    if ref_server is not None and load.get("alt"):
        record["beside_ref"] = beside_figures(beside.name, load, ref_w)
    freq, governor = noise.cpu_frequency()
    # the reference beside is the bench's own load, not foreign CPU
    w_all = dict(w, cpu_s=w.get("cpu_s", 0.0) + ref_w.get("cpu_s", 0.0)) if w else w
    record["noise"] = results.window_noise(
        w_all, client_cpu_s=load.get("client_cpu_s"), client_duration_s=load.get("duration_s"),
        cpus=os.cpu_count() or 1, loadavg_1m=os.getloadavg()[0] if hasattr(os, "getloadavg")
        else None, freq_mhz=freq, governor=governor)
    if attached:
        record["exit"] = {"code": None, "elapsed_s": 0.0, "clean": crashed is None,
                          "note": "not stopped by the bench (--target): it was running before"}
    else:
        # The lab's contract is exit 0 on SIGTERM; a server from outside the lab that simply
        # dies of SIGTERM's default action, in time, stopped cleanly as far as a user can tell.
        fine = (0, -signal.SIGTERM) if subject.kind == "command" else (0,)
        record["exit"] = {"code": code if crashed is None else crashed,
                          "elapsed_s": round(elapsed, 3),
                          "clean": crashed is None and code in fine and elapsed <= CLEAN_EXIT_S}
    judge(record, load, crashed, guard.stopped if guard else None)
    record["elapsed_s"] = round(time.monotonic() - t0, 2)
    return record


def settle(pid: int) -> float:
    """Wait until the server's process tree is idle (see SETTLE_CPU_SHARE); return the wait."""
    t0 = time.monotonic()

    def tree_cpu_s() -> float | None:
        return launch.tree_cpu_s(pid)

    before = tree_cpu_s()
    while before is not None and time.monotonic() - t0 < SETTLE_MAX_S:
        time.sleep(SETTLE_SPAN_S)
        after = tree_cpu_s()
        if after is None or after - before < SETTLE_CPU_SHARE * SETTLE_SPAN_S:
            break
        before = after
    return time.monotonic() - t0

