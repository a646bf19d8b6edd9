"""The bench runner: every server x cell x round, measured the same way, recorded as JSON lines.

    python -m bench run                         # the quick profile, every available server
    python -m bench run --profile full          # up to 10,000 connections
    python -m bench run --servers epoll,threads --conns 1,64 --sizes 1024 --repeats 2
    python -m bench run --server 'mine=python my_echo.py --port {port}'     # your own server too
    python -m bench run --resume results/20261201-221500-quick             # finish a stopped run

One measurement: start the server pinned to its cores (servers.launch), wait for its readiness
line, run the load generator (bench.load) pinned to the other cores (warm-up, then the measured
window), sample the server's process tree and the machine's noise meanwhile (bench.sample), wait
for it to go idle once the clients have left, SIGTERM it and check that it exited 0 within 2 s.

The C reference (c-epoll) is measured in every cell of every round, so every record gets vs_ref
and cpu_vs_ref, ratios that survive a noisy machine (see docs/bench.md). The order is interleaved
(round, then cell, then the servers and the reference in a shuffled order) so that slow drift of
the machine (thermal throttling, a background job) spreads over all servers instead of hurting
whichever ran last. After the profile's first rounds, more rounds go to the servers whose 95 %
CI of the median vs_ref is still wider than the tolerance, within the profile's budget (Runner).
Open-loop cells at a share of each server's peak run after the closed-loop cells of their round,
whose best median req/s (at the same message size, ok results only) is that peak.

A server that fails to start, crashes, refuses connections, hangs, leaves clients unserved or
corrupts bytes is a result (status failed or degraded, with the reason, the server's own log
lines and the tail of its stderr), never a crash of the run. A verdict that connections starved
is checked against the window: see window_check (WINDOW_SERVES).

At scale, a measurement must not take the machine down. Before a cell, the runner checks that the
fd limits and the ephemeral port range allow its connections (if not: skipped, with the fix).
While it runs, a guard watches available memory and the server's task count: a `fork` server at
10,000 clients would otherwise use up the memory (or the PIDs) of the whole machine. Past the
floor, the guard kills the server's process group and the result is failed, saying where it
stopped. Every phase is bounded in time. SIGINT, SIGTERM and SIGHUP stop the run cleanly (the
server's process group killed, what was measured written, report.md marked interrupted, exit
128 + the signal); --resume measures what the plan still lacks.

Output, in results/<run_id>/: meta.json (the machine, versions, pinning, limits, the plan, the
reference, the noise summary, whether it was interrupted) and results.jsonl, one JSON object per
measurement in the record of bench/results.py (schema 2): the server and the cell (conns,
size_bytes, rate; for a share of the peak also rate_fraction_of_peak, peak_rps and peak_conns),
round, status and reason (with stderr_tail when not ok), what the generator measured (rps,
latency_us, errors by kind, conns_established, client CPU, engine), what the server cost
(server_cpu_us_per_request, server_mem_per_conn_bytes, server_processes/threads/fds, context
switches), vs_ref, cpu_vs_ref, vs_ref_ci95, converged, noise, window_s, target, settle_s, exit
and elapsed_s. bench.report turns them into charts and report.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import random
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import servers
from bench import load as load_gen
from bench import noise, results, sample
from bench.load import run_load
from servers import launch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "results"

CLEAN_EXIT_S = 2.0  # the contract: SIGTERM -> exit 0 within 2 s
CLIENT_SATURATED = 0.85  # client CPU utilisation above this, with the server below it: client-bound
SERVER_SATURATED = 0.90  # a server busy this share of its window was saturated too (client_bound())

# Big cells need time for every connection to get going before the window opens: the warm-up is at
# least this long per 10,000 connections (a thread per connection server takes ~0.5 s to give
# each of 10,000 threads its first turn).
WARMUP_S_PER_10K_CONNS = 1.0
CONNECT_TIMEOUT_S = 10.0

# The guard (see the module docstring). The memory floor: this share of the machine's memory, or
# 2 GiB, whichever is smaller, must stay available; the task ceiling: half of kernel.pid_max.
MEMORY_FLOOR_FRACTION = 0.15
MEMORY_FLOOR_MAX_BYTES = 2 << 30
TASKS_CEILING_FRACTION = 0.5
GUARD_INTERVAL_S = 0.1

# After the load the clients are gone, and the server reacts: 10,000 threads unwind, 10,000
# children exit. SIGTERM waits until the server is idle (under SETTLE_CPU_SHARE of a core over
# SETTLE_SPAN_S), at most SETTLE_MAX_S, and that wait is recorded as settle_s: the exit check is
# about shutting down, not about the clients' departure.
SETTLE_SPAN_S = 0.05
SETTLE_CPU_SHARE = 0.05
SETTLE_MAX_S = 20.0

SERVER_FD_HEADROOM = 32  # files a server has open besides its connections: listener, stdio, pipes
GiB = 1 << 30


@dataclass(frozen=True)
class Cell:
    conns: int
    size_bytes: int
    rate: float | None = None  # open loop at this many requests/s in total; None = closed loop
    fraction: float | None = None  # open loop at this share of the server's closed-loop peak

    @property
    def is_open(self) -> bool:
        return self.rate is not None or self.fraction is not None

    @property
    def label(self) -> str:
        size = f"{self.size_bytes // 1024} KiB" if self.size_bytes % 1024 == 0 else f"{self.size_bytes} B"
        rate = (f" @ {self.rate:,.0f}/s" if self.rate else
                f" @ {self.fraction:.0%} of peak" if self.fraction else "")
        return f"{self.conns:,} conn x {size}{rate}"


@dataclass
class Profile:
    name: str
    cells: list[Cell]
    repeats: int
    warmup_s: float
    measure_s: float
    description: str
    default_servers: list[str] | None = None  # None = every available server
    notes: list[str] = field(default_factory=list)
    # Repeat until stable (see run()): `repeats` rounds of every cell at least, then more rounds,
    # up to rounds_max, for the servers whose 95 % CI of the median vs_ref is still wider than
    # ±tolerance, while the cell's share of budget_s lasts. weights: a cell's share of the budget
    # ({(conns, size_bytes): weight}, default 1). budget_s None: exactly `repeats` rounds.
    rounds_max: int | None = None
    budget_s: float | None = None
    tolerance: float = results.TOLERANCE
    weights: dict = field(default_factory=dict)
    # The reference beside every closed-loop measurement, in the same window, alternating with the
    # server in slices (bench.load's alt): the window is twice measure_s, half of it each's.
    beside_ref: bool = False

    def first_for_extra_rounds(self) -> list[Cell] | None:
        """The cells the extra rounds go to before any other (weight above 0), or None when
        every cell has a share."""
        first = [c for c in self.cells if self.weights.get((c.conns, c.size_bytes), 1.0) > 0]
        return first if len(first) < len(self.cells) else None


def _closed(conns, sizes):
    return [Cell(c, s) for s in sizes for c in conns]


OPEN_LOOP_CONNS = 100  # connections of the open-loop cells given as a share of the peak


PROFILES = {
    # A few seconds: proves the pipeline end to end (the test suite runs it).
    "smoke": Profile("smoke", _closed([1, 8], [1024]), repeats=1, warmup_s=0.2, measure_s=0.5,
                     description="two tiny cells, one repeat: checks the pipeline, measures nothing",
                     default_servers=["threads", "select"]),
    # `make bench`: every model at a glance on a 2-core laptop, in about six minutes. Each server
    # is measured beside the reference (beside_ref): one 0.6 s window, 0.3 s of it each's in
    # alternating slices, so that the ratio shares the machine's drift even within a window (on
    # a 2-vCPU VM one 0.3 s window of the same server differs from the next by a sixth). ~1 s a
    # measurement with start, warm-up and stop: 3 rounds of ~22 servers take ~4.5 min; what the
    # budget leaves goes to more rounds of 16 x 1 KiB, the cell where runs are compared, up to 14
    # while a CI is still wide (a CI of the median takes 6, bench/results.py). The other cells
    # get extra rounds only once that cell is done.
    "quick": Profile("quick", _closed([1, 16, 128], [1024]) + [Cell(16, 64 * 1024)],
                     repeats=3, warmup_s=0.1, measure_s=0.3,
                     description="1, 16 and 128 connections x 1 KiB, 16 x 64 KiB, 3 rounds, "
                                 "and up to 14 at 16 x 1 KiB until the CI of each median vs ref "
                                 "is within ±5 %",
                     rounds_max=14, budget_s=360.0,
                     weights={(16, 1024): 1.0, (1, 1024): 0.0, (128, 1024): 0.0,
                              (16, 64 * 1024): 0.0}, beside_ref=True),
    # `make bench-full`: the C10K sweep (log-spaced up to 10,000 connections), a 64 KiB cell, and
    # open loop at 8 shares of each server's own peak, from 10 % to 120 %: every server is offered
    # loads it carries easily, loads near its limit and loads past it, whatever its speed, so the
    # latency knee shows. About 50 minutes for 21 servers on a 2-core machine (the
    # 10,000-connection cells and the open-loop sweep take most).
    "full": Profile("full",
                    _closed([1, 10, 100, 1000, 10000], [1024]) + [Cell(100, 64 * 1024)]
                    + [Cell(OPEN_LOOP_CONNS, 1024, fraction=f)
                       for f in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2)],
                    repeats=3, warmup_s=0.5, measure_s=1.5,
                    description="1 to 10,000 connections x 1 KiB, 100 x 64 KiB, open loop at "
                                "8 shares of each server's peak (10 % to 120 %), 3 repeats"),
    # `make bench-c100k`: past C10K, to 100,000 connections, mostly idle, as real C10K traffic
    # is: a fixed 10,000 requests/s in total spread over all of them in open loop (each
    # connection sends every conns / 10,000 s, and the warm-up, 1 s per 10,000 connections, lets
    # every one send before the window), to the event-driven servers. It records where each model
    # breaks: memory per connection, accept rate (conns_established / connect_s), p99 at that
    # rate, fds; the guard stops a cell before memory runs short. The C engine spreads 5,000+
    # connections over several source addresses and, past its fd limit, over several processes;
    # each server needs `ulimit -Hn` above the cell, else the cell is skipped with the fix.
    # About 30 minutes for 17 servers on a 2-core machine (the 100,000 cells take most; the plan
    # line states the estimate), far more where servers break at 30,000 and the ramp times out.
    "c100k": Profile("c100k", [Cell(c, 1024, rate=10_000.0)
                               for c in (1_000, 10_000, 30_000, 100_000)],
                     repeats=1, warmup_s=1.0, measure_s=3.0,
                     description="1,000, 10,000, 30,000 and 100,000 connections x 1 KiB, mostly "
                                 "idle: open loop at 10,000 req/s in total, event-driven servers, "
                                 "1 round",
                     default_servers=[s.name for s in servers.SERVERS
                                      if s.family in ("multiplexed", "async", "fibers")
                                      or s.name == "reuseport"]),
}


# ---------------------------------------------------------------------------------------------
# Machine metadata


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import psutil
    smt = _read("/sys/devices/system/cpu/smt/active")
    return {
        "cpu_model": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "smt": None if smt is None else smt == "1",
        "kernel": platform.release(),
        "os": f"{platform.system()} {platform.machine()}",
        "memory_bytes": psutil.virtual_memory().total,
        "hostname": platform.node(),
    }


def package_versions() -> dict:
    versions = {}
    for name in ("uvloop", "trio", "gevent", "greenlet", "psutil", "hdrhistogram", "plotly",
                 "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gevent_backend() -> str | None:
    try:
        out = subprocess.run([sys.executable, "-c",
                              "import gevent; print(type(gevent.get_hub().loop).__module__)"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    module = out.stdout.strip()
    return {"gevent.libev.corecext": "libev-cext", "gevent.libev.corecffi": "libev-cffi",
            "gevent.libuv.loop": "libuv-cffi"}.get(module, module or None)


def git_state() -> tuple[str | None, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
        # dirty: the code differs from the commit. Recorded results (docs/results) are not code:
        # re-recording one reference must not mark the next as measured by uncommitted code.
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                     ".", ":(exclude)docs/results"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return commit, dirty


def split_cpus() -> tuple[list[int] | None, list[int] | None, str]:
    """Disjoint halves of the CPUs this process may use: the client gets the first half, the
    server the second (on 2 cores: client on CPU 0, server on CPU 1)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None, "no pinning: sched_setaffinity is Linux-only; client and server share cores"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"no pinning: only CPU {cpus} available; client and server share it"
    half = len(cpus) // 2
    client, server = cpus[:half], cpus[half:]
    return server, client, f"server on CPUs {server}, client (load generator) on CPUs {client}"


def limits() -> dict:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    somaxconn = _read("/proc/sys/net/core/somaxconn")
    return {"nofile_soft": soft, "nofile_hard": hard,
            "somaxconn": int(somaxconn) if somaxconn else None}


# ---------------------------------------------------------------------------------------------
# One measurement


def warmup_for(cell: Cell, profile: Profile) -> float:
    return max(profile.warmup_s, WARMUP_S_PER_10K_CONNS * cell.conns / 10_000)


@dataclass(frozen=True)
class Subject:
    """What a measurement measures: a registry server, a command the user gave (``--server
    NAME='CMD'``, started and stopped like a registry server), or a server already running
    (``--target NAME=HOST:PORT --pid PID``: sampled by its pid, never started, signalled or
    pinned by the bench). The reference is a registry server with ``is_reference``."""

    name: str
    family: str | None = None
    lesson: str | None = None
    serial: bool = False
    entry: servers.Server | None = None
    command: tuple[str, ...] | None = None
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    is_reference: bool = False

    @classmethod
    def registry(cls, entry: servers.Server, is_reference: bool = False) -> Subject:
        return cls(entry.name, entry.family, entry.lesson, entry.serial, entry,
                   is_reference=is_reference)

    @property
    def kind(self) -> str:
        return "running" if self.pid is not None else "command" if self.command else "registry"

    def target(self, port: int | None = None) -> dict:
        return {"kind": self.kind, "command": shlex.join(self.command) if self.command else None,
                "host": self.host, "port": port if port is not None else self.port, "pid": self.pid}

    def as_meta(self) -> dict:
        """What --resume needs to measure it again."""
        return {"name": self.name, "kind": self.kind, "family": self.family,
                "command": list(self.command) if self.command else None, "host": self.host,
                "port": self.port, "pid": self.pid}

    @classmethod
    def from_meta(cls, d: dict) -> Subject:
        if d.get("kind") == "registry":
            return cls.registry(servers.get(d["name"]))
        return cls(d["name"], d.get("family") or "yours", None, False, None,
                   tuple(d["command"]) if d.get("command") else None, d.get("host"),
                   d.get("port"), d.get("pid"))


class _Attached:
    """A server the bench did not start: read by its pid, never signalled."""

    attached = True
    proc = None

    def __init__(self, subject: Subject):
        self.pid, self.host, self.port = subject.pid, subject.host, subject.port

    def alive(self) -> bool:
        import psutil
        return psutil.pid_exists(self.pid)

    def stderr_tail(self, max_bytes: int = 0) -> str:
        return ""

    def group_pids(self) -> list[int]:
        return [self.pid] if self.alive() else []

    def kill(self) -> None:
        pass


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(subject: Subject, server_cpus: list[int] | None):
    """(the running server, the port a command was given) for any kind of subject."""
    if subject.kind == "running":
        attached = _Attached(subject)
        if not attached.alive():
            raise launch.StartError(f"no process {subject.pid} (--pid): start your server first")
        return attached, subject.port
    if subject.kind == "command":
        port = _free_port() if any("{port}" in a for a in subject.command) else None
        argv = [a.replace("{port}", str(port)) for a in subject.command]
        return launch.start_command(subject.name, argv, port=port, cpus=server_cpus), port
    return launch.start(subject.entry, cpus=server_cpus), None


# The noise of a measurement that never had a window (skipped, or the server did not start).
NOT_MEASURED_NOISE = results.window_noise({}, client_cpu_s=None, client_duration_s=None, cpus=1,
                                          loadavg_1m=None, freq_mhz=None, governor=None)


def beside_possible(subject: Subject, cell: Cell, rate: float | None,
                    beside: Subject | None) -> bool:
    """Can `beside` (the reference) be measured in the same window as `subject`, alternating?
    Closed loop, the C engine, both servers' connections in one engine process."""
    if beside is None or subject.is_reference or subject.kind == "running" or cell.is_open \
            or rate is not None or load_gen.default_engine()[0] != "c":
        return False
    from bench.load import c_engine
    return c_engine.processes_for(2 * cell.conns) == 1


def measure(entry: servers.Server | Subject, cell: Cell, repeat: int, profile: Profile,
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
    record: dict = {
        "server": subject.name, "family": subject.family, "lesson": subject.lesson,
        "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": rate,
        "rate_fraction_of_peak": cell.fraction,
        "mode": "open" if cell.is_open else "closed", "repeat": repeat,
        "status": "ok", "reason": None, "stderr_tail": None,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "schema": results.SCHEMA_VERSION, "round": repeat, "is_reference": subject.is_reference,
        "window_s": window_s, "target": subject.target(),
        "noise": dict(NOT_MEASURED_NOISE),  # replaced by the window's figures once there is a window
    }
    if subject.serial and cell.conns > 1:
        record.update(status="skipped", reason="serial server: serves one client at a time, so "
                      "more connections only queue (see its 1-connection cell, and lesson 07)")
        return record
    if (why := preflight(cell, client_cpus)) is not None:
        record.update(status="skipped", reason=why)
        return record
    if cell.is_open and not rate:
        record.update(status="skipped", reason="no peak to take a share of: no closed-loop "
                      "cell of this server at this message size was measured ok before this one")
        return record
    t0 = time.monotonic()
    try:
        server, port = _start(subject, server_cpus)
    except launch.StartError as exc:
        record.update(status="failed", reason=f"did not start: {exc.reason}", stderr_tail=exc.stderr,
                      elapsed_s=round(time.monotonic() - t0, 2))
        return record
    if port is not None:
        record["target"] = subject.target(port)
    attached = getattr(server, "attached", False)
    ref_server = ref_sampler = None
    try:
        if beside is not None:
            try:
                ref_server, _ = _start(beside, server_cpus)
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
        record.update(status="failed", reason=f"bench error: {type(exc).__name__}: {exc}")
        return record
    finally:
        server.kill()  # also on a signal (Interrupted): the whole process group goes
        if ref_server is not None:
            ref_server.kill()

    _fill_load(record, load)
    w = sampler.window()
    _fill_server(record, load, w, idle, cell, server_cpus, sampler.peaks())
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
    _judge(record, load, crashed, guard.stopped if guard else None)
    record["elapsed_s"] = round(time.monotonic() - t0, 2)
    return record


def beside_figures(name: str, load: dict, ref_w: dict) -> dict:
    """The reference's figures from its slices of the window (bench.load's "alt"), for vs_ref:
    its rate over the time it was active, its CPU per request, its errors (any: no pairing)."""
    alt = load["alt"]
    cpu_us = (results.cpu_us_per_request(ref_w["cpu_s"], ref_w["span_s"], alt["requests"],
                                         load.get("duration_s")) if ref_w else None)
    return {"server": name, "rps": round(alt["rps"], 1), "requests": alt["requests"],
            "active_s": alt["active_s"], "slice_s": load.get("slice_s"), "errors": alt["errors"],
            "conns_established": alt["conns_established"],
            "latency_us": {k: alt["latency_us"][k] for k in ("p50", "p99", "p99.9")
                           if k in alt["latency_us"]},
            "server_cpu_us_per_request": round(cpu_us, 2) if cpu_us is not None else None,
            "ok": alt["errors"] == 0 and alt["requests"] > 0}


# A verdict that a model does not hold N connections must be the model's, not the window's: the
# window has to be long enough to serve every connection WINDOW_SERVES times at the server's own
# measured CPU cost per request. If it was not, the cell is measured again with a window that is,
# up to MAX_WINDOW_S (and the record says when even that was too short).
WINDOW_SERVES = 3
MAX_WINDOW_S = 20.0


def window_needed_s(record: dict, cost_us: float | None) -> float | None:
    """Seconds of window in which the server, at ``cost_us`` of its own CPU per request, could
    serve every one of the cell's connections WINDOW_SERVES times; None without a cost."""
    if not cost_us:
        return None
    return record["conns"] * WINDOW_SERVES * cost_us / 1e6


def starved(record: dict) -> bool:
    """Closed loop, and some connections got nothing or waited too long: the verdict this check
    is about."""
    errors = record.get("errors") or {}
    return (record.get("mode") == "closed" and record["status"] in ("degraded", "failed")
            and bool(errors.get("unserved") or errors.get("timeout")))


def window_note(record: dict, cost_us: float | None) -> str | None:
    """The sentence the reason gets about the window; None if nothing can be said."""
    needed = window_needed_s(record, cost_us)
    if needed is None:
        return None
    used = (record.get("warmup_s") or 0) + (record.get("duration_s") or record["window_s"])
    if used >= needed:
        return (f"the {used:.1f} s of load were long enough to serve every connection "
                f"{WINDOW_SERVES} times at this server's own cost ({cost_us:.0f} µs of CPU per "
                f"request): a fact of the model, not of the window")
    return (f"the {used:.1f} s of load were shorter than the {needed:.1f} s needed to serve every "
            f"connection {WINDOW_SERVES} times at this server's own cost ({cost_us:.0f} µs per "
            f"request), even after lengthening the window to at most {MAX_WINDOW_S:g} s: this "
            f"verdict may be the window's")


def fd_limit_cell(profile: Profile) -> Cell | None:
    """A cell at the most connections this machine's fd hard limit lets one server process hold
    (rounded down to a thousand), when some of the profile's cells need more and it lies above
    every cell that fits: so a sweep cut short by the limit still finds where each model stands
    at the machine's own ceiling. None when every cell fits, or the limit is unknown."""
    hard = load_gen.fd_hard_limit()
    if hard is None:
        return None
    most = (hard - SERVER_FD_HEADROOM) // 1000 * 1000
    fits = [c for c in profile.cells if c.conns + SERVER_FD_HEADROOM <= hard]
    if len(fits) == len(profile.cells) or most <= max((c.conns for c in fits), default=0):
        return None
    model = max(profile.cells, key=lambda c: c.conns)
    return replace(model, conns=most)


def preflight(cell: Cell, client_cpus: list[int] | None) -> str | None:
    """Why this machine cannot open the cell's connections at all, with the fix; None if it can."""
    workers = load_gen.worker_count(cell.conns, None, client_cpus)
    if (why := load_gen.fd_shortfall(cell.conns, workers)) is not None:
        return why
    hard = load_gen.fd_hard_limit()
    if hard is not None and cell.conns + SERVER_FD_HEADROOM > hard:
        return (f"the server needs about {cell.conns + SERVER_FD_HEADROOM:,} open files, but the "
                f"hard limit (ulimit -Hn) is {hard:,}: raise it as root (ulimit -n "
                f"{cell.conns + SERVER_FD_HEADROOM}, or LimitNOFILE / limits.conf), then run again")
    return load_gen.port_shortfall("127.0.0.1", cell.conns)


class Guard:
    """Watches the machine while a measurement runs, and stops the server before it takes the
    machine down: when available memory falls below the floor, or the server's tasks (threads,
    summed over its processes) pass the ceiling. It then SIGKILLs the server's process group and
    says where it stopped in `stopped`; the load generator sees its connections reset and returns.
    """

    def __init__(self, server: launch.RunningServer, sampler: sample.TreeSampler):
        import psutil
        self.server = server
        self.sampler = sampler  # its light readings count the server's processes and threads
        memory = psutil.virtual_memory()
        self.available_at_start = memory.available
        self.floor_bytes = min(MEMORY_FLOOR_MAX_BYTES, MEMORY_FLOOR_FRACTION * memory.total)
        pid_max = _read("/proc/sys/kernel/pid_max")
        self.pid_max = int(pid_max) if pid_max else None
        self.stopped: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard", daemon=True)

    def start(self) -> Guard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psutil
        while not self._done.wait(GUARD_INTERVAL_S):
            available = psutil.virtual_memory().available
            latest = self.sampler.samples[-1] if self.sampler.samples else None
            tasks = latest.threads if latest else 0
            if available < self.floor_bytes:
                why = (f"memory would run out (available memory fell from "
                       f"{self.available_at_start / GiB:.1f} to {available / GiB:.1f} GiB; the "
                       f"guard keeps {self.floor_bytes / GiB:.1f} GiB free)")
            elif self.pid_max and tasks > TASKS_CEILING_FRACTION * self.pid_max:
                why = (f"the machine would run out of process IDs ({tasks:,} threads; "
                       f"kernel.pid_max is {self.pid_max:,})")
            else:
                continue
            processes = len(self.server.group_pids())
            try:
                os.killpg(self.server.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            used = max(0, self.available_at_start - available)
            self.stopped = (f"stopped by the bench at {processes:,} processes, {used / GiB:.1f} GiB "
                            f"of memory used since the start: {why}")
            return


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


def _fill_load(record: dict, load: dict) -> None:
    for key in ("rps", "bytes_per_s", "requests", "duration_s", "latency_us", "hist", "errors",
                "conns_established", "client_cpu_s", "client_cpu_util", "client_cpu_us_per_request",
                "offered_rps", "send_lag_us", "latency_out_of_range", "warnings", "error_examples",
                "stall_limit_s", "warmup_s", "engine", "connect_s", "active_s", "slice_s"):
        if key in load:
            record[key] = load[key]


def _fill_server(record, load, w: dict, idle, cell, server_cpus, peaks: dict | None = None) -> None:
    requests = load.get("requests") or 0
    if not w:
        # No CPU or memory figures (a tree of 10,000 processes takes longer to read than the
        # window lasts), but the light readings still tell how big the server grew.
        for key, value in (peaks or {}).items():
            record[f"server_{key}"] = value
        record["reason"] = record["sampling_note"] = (
            "the server could not be read at both edges of the window (too many processes to "
            "read in time): no CPU or memory figures")
        return
    cores = len(server_cpus) if server_cpus else (os.cpu_count() or 1)
    # Alternating with the reference (beside_ref), the server had load in its own slices only:
    # its utilisation is over that share of the window.
    share = (load["active_s"] / load["duration_s"]) if load.get("active_s") and \
        load.get("duration_s") else 1.0
    record["server_cpu_s"] = round(w["cpu_s"], 4)
    record["server_cpu_util"] = (round(min(1.0, w["cpu_s"] / (w["span_s"] * cores * share)), 4)
                                 if w["span_s"] else None)
    # Per request: the CPU the window cost, over the round trips the window completed, scaled to
    # the sampled span (which brackets the window to within one sampling interval).
    cpu_us = results.cpu_us_per_request(w["cpu_s"], w["span_s"], requests, load.get("duration_s"))
    record["server_cpu_us_per_request"] = round(cpu_us, 2) if cpu_us is not None else None
    switches = w["ctx_voluntary"] + w["ctx_involuntary"]
    record["server_ctx_voluntary"] = w["ctx_voluntary"]
    record["server_ctx_involuntary"] = w["ctx_involuntary"]
    ctx = results.per_request(switches, w["span_s"], requests, load.get("duration_s"))
    record["ctx_switches_per_request"] = round(ctx, 3) if ctx is not None else None
    record["server_processes"] = w["processes"]
    record["server_threads"] = w["threads"]
    record["server_fds"] = w["fds"]
    record["server_rss_bytes"] = w["rss_bytes"]
    record["server_uss_bytes"] = w["uss_bytes"]
    record["server_pss_bytes"] = w["pss_bytes"]
    # Memory per connection from the tree's anonymous PSS (heap, stacks, buffers). USS would be
    # wrong for fork's children: after fork the pages are shared, so each process's USS drops.
    # Plain PSS would be wrong for everyone: it splits libraries' file pages with the load
    # generator's processes too, so it falls as the generator starts. Then PSS, USS, RSS where
    # the kernel has no Pss_Anon (before Linux 5.9) or the OS no smaps.
    idle_mem = busy_mem = None
    for attr in ("anon_pss_bytes", "pss_bytes", "uss_bytes", "rss_bytes"):
        if idle is not None and getattr(idle, attr) is not None and w.get(attr) is not None:
            idle_mem, busy_mem = getattr(idle, attr), w[attr]
            record["server_mem_basis"] = attr.removesuffix("_bytes").upper().replace("ANON_PSS", "PSS_ANON")
            break
    record["server_mem_idle_bytes"] = idle_mem
    established = load.get("conns_established") or cell.conns
    # With a handful of connections, the growth is lost in the interpreter's own noise (a few
    # hundred KiB either way): per-connection memory is reported from 10 connections up.
    per_conn = results.mem_per_conn(idle_mem, busy_mem, established)
    record["server_mem_per_conn_bytes"] = round(per_conn, 1) if per_conn is not None else None
    client_util = load.get("client_cpu_util") or 0
    server_util = record["server_cpu_util"] or 0
    record["client_bound"] = client_bound(client_util, server_util)


def client_bound(client_util: float, server_util: float) -> bool:
    """The generator, not the server, set the pace: the generator's CPU was saturated while the
    server's was not. Not saturated: less busy than the generator, and idle more than
    1 - SERVER_SATURATED of the window. A server busy 90 % of the window or more was saturated
    too; both sides were then at their limit, and its figure is its own (with a faster generator
    it could fill at most the last tenth of its window, which is within this machine's noise)."""
    return bool(client_util >= CLIENT_SATURATED
                and server_util < min(client_util, SERVER_SATURATED))


def _judge(record: dict, load: dict, crashed: int | None, stopped: str | None = None) -> None:
    """Status and reason from what the generator counted, the server's tree and its own log."""
    errors = load.get("errors", {})
    examples = load.get("error_examples") or {}
    conns = record["conns"]
    reasons = []
    status = "ok"
    if stopped:
        status, reasons = "failed", [stopped]
    elif crashed is not None:
        status, reasons = "failed", [f"server exited during the load (code {crashed})"]
    elif errors.get("mismatch"):
        status = "failed"
        reasons.append(f"corrupted bytes: {errors['mismatch']} connections got back what they did not send")
    elif not load.get("requests"):
        status = "failed"
        counted = [f"{errors[kind]:,} {kind}" for kind in ("connect", "reset", "unserved")
                   if errors.get(kind)]
        reasons.append("no round trip completed" + (f" ({', '.join(counted)})" if counted else ""))
    else:
        if errors.get("connect"):
            status = "degraded"
            example = f" ({examples['connect']})" if examples.get("connect") else ""
            reasons.append(f"{errors['connect']:,} of {conns:,} connections failed to "
                           f"connect{example}")
        if errors.get("reset"):
            status = "degraded"
            reasons.append(f"{errors['reset']:,} of {conns:,} connections were reset or closed "
                           f"by the server")
        if errors.get("unserved"):
            status = "degraded"
            reasons.append(_unserved_reason(record, load))
        if errors.get("timeout"):
            status = "degraded"
            reasons.append(f"{errors['timeout']:,} requests unanswered for over "
                           f"{load.get('stall_limit_s', 1.0):g} s")
    if status != "ok" and not stopped and (said := server_said(record.get("stderr_tail"))):
        reasons.append("the server logged: " + "; ".join(f"“{line}”" for line in said))
    if status != "failed" and not record.get("exit", {}).get("clean", True):
        status = "degraded" if status == "ok" else status
        ex = record["exit"]
        reasons.append(f"did not exit cleanly on SIGTERM (code {ex['code']}, {ex['elapsed_s']} s)")
    if reasons:
        record["reason"] = "; ".join(reasons)
    record["status"] = status
    if status == "ok":
        record["stderr_tail"] = None  # keep the file small; stderr matters only when it went wrong


def _unserved_reason(record: dict, load: dict) -> str:
    """'N of M connections got no echo at all ...', and what the server's tree says about why."""
    unserved, conns = load["errors"]["unserved"], record["conns"]
    run_s = (load.get("warmup_s") or 0) + (load.get("duration_s") or 0)
    text = (f"{unserved:,} of {conns:,} connections got no echo at all in {run_s:g} s "
            f"(connected, never served)")
    threads, processes = record.get("server_threads"), record.get("server_processes")
    established = load.get("conns_established") or conns
    if threads and threads >= established:
        # Every connection had its thread, and the thread had data to read: what it waited for
        # is the GIL, which goes to threads back from I/O first, not in turn (a convoy).
        text += (f", though the server ran a thread for each ({threads:,} threads): the ones "
                 f"left out waited for the GIL")
    elif threads:
        text += (f": the server had {threads:,} thread{'s' if threads != 1 else ''} in "
                 f"{processes or 1:,} process{'es' if (processes or 1) != 1 else ''} "
                 f"for {established:,} connections")
    return text


LOG_LINE = re.compile(r"^\[\S+ \d+\] (?P<message>.+)$")


def server_said(stderr: str | None, limit: int = 2) -> list[str]:
    """The first distinct things the server logged (its own lines, `[name pid] message`), not its
    shutdown nor the dropped connections of the clients leaving at the end: the first problem a
    server notices is usually the cause. Else the last line of a traceback."""
    if not stderr:
        return []
    said: list[str] = []
    for line in stderr.splitlines():
        match = LOG_LINE.match(line.strip())
        if match and match["message"] not in said and not match["message"].endswith("shut down") \
                and not match["message"].startswith("connection dropped"):  # the clients leaving
            said.append(match["message"])
    if not said:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        said = lines[-1:] if lines and "Error" in lines[-1] else []
    return said[:limit]


# ---------------------------------------------------------------------------------------------
# The run


def plan(profile: Profile, names: list[str], seed: int) -> list[tuple[int, Cell, str]]:
    """(round, cell, server) of the first `repeats` rounds, in interleaved order: each round
    visits every cell, and within a cell the servers (the reference among them) run in a fresh
    random order, so drift does not line up with one server. Cells at a share of the peak come
    last in each round, after the cells that measure it. More rounds may follow (see run())."""
    rng = random.Random(seed)
    order = []
    for repeat in range(profile.repeats):
        for cell in _cell_order(profile):
            order += [(repeat, cell, name) for name in _shuffled(rng, names)]
    return order


def _cell_order(profile: Profile) -> list[Cell]:
    return sorted(profile.cells, key=lambda c: c.fraction is not None)  # stable: keeps the rest


def _shuffled(rng: random.Random, names: list[str]) -> list[str]:
    shuffled = list(names)
    rng.shuffle(shuffled)
    return shuffled


# What a measurement costs besides its warm-up and window, measured on a 2-core machine: starting
# the server and the generator's workers, sampling, settling and stopping (0.29 s, the median over
# two quick runs' 1,000-odd measurements), and opening
# the connections in batches and tearing them down (~0.5 ms each: 5 s for 10,000). For the plan
# and the ETA; a model that breaks at 10,000 (fork: ~30 s) takes longer, and the ETA catches up.
OVERHEAD_S = 0.3
CONNECT_S_PER_CONN = 0.0005


def expected_s(entry: servers.Server | Subject, cell: Cell, profile: Profile) -> float:
    """About how long measuring `entry` at `cell` takes (a skip takes next to nothing)."""
    if entry.serial and cell.conns > 1:
        return 0.01
    hard = load_gen.fd_hard_limit()
    if hard is not None and cell.conns + SERVER_FD_HEADROOM > hard:
        return 0.01  # skipped by the preflight, with the fix
    beside = profile.beside_ref and not cell.is_open and not getattr(entry, "is_reference", False)
    return (OVERHEAD_S + CONNECT_S_PER_CONN * cell.conns * (2 if beside else 1)
            + warmup_for(cell, profile) + profile.measure_s * (2 if beside else 1))


def peak_rps(closed: dict[tuple[str, int], dict[int, list[float]]], name: str,
             size_bytes: int) -> tuple[float, int] | None:
    """(req/s, connections): the best median of the server's ok closed-loop cells so far."""
    medians = [(statistics.median(values), conns)
               for conns, values in closed.get((name, size_bytes), {}).items() if values]
    return max(medians) if medians else None


def new_run_dir(profile: str, out_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"{stamp}-{profile}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_dir / f"{stamp}-{profile}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: raised in the main thread wherever it was, so the
    measurement in progress stops (the load generator's workers are stopped, the server's process
    group killed by the `finally` blocks on the way out) and run() writes what it has."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _install_stop_handlers() -> dict:
    fired: list[int] = []

    def handler(signum, frame):
        if fired:  # already stopping: a second Ctrl-C must not cut the clean-up short
            return
        fired.append(signum)
        raise Interrupted(signum)

    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


class Runner:
    """One run: the plan, the records so far, and what to do when it ends or is stopped.

    Rounds: the first `profile.repeats` rounds measure every server and the reference in every
    cell. Then, while rounds remain (profile.rounds_max) and a cell's share of profile.budget_s
    lasts, another round of that cell measures the reference and the servers not yet converged
    (their 95 % CI of the median vs_ref wider than ±tolerance; without a reference, the CI of
    the median req/s). A server that failed or was skipped in a cell gets no more rounds there.
    After every (round, cell) the records get their ratios and results.jsonl is rewritten whole,
    atomically; in between, each record is appended as it comes, so a run killed with SIGKILL
    still keeps every measurement but the one in progress.
    """

    def __init__(self, profile: Profile, subjects: list[Subject], reference: Subject | None,
                 skipped: dict[str, str], run_dir: Path, meta: dict, records: list[dict],
                 seed: int, progress: bool, server_cpus, client_cpus):
        self.profile, self.subjects, self.reference = profile, subjects, reference
        self.skipped, self.run_dir, self.meta, self.records = skipped, run_dir, meta, records
        self.seed, self.progress = seed, progress
        self.server_cpus, self.client_cpus = server_cpus, client_cpus
        self.by_name = {s.name: s for s in subjects + ([reference] if reference else [])}
        self.names = list(self.by_name)
        self.done = {self._key(r) for r in records if r.get("round") is not None}
        self.closed: dict[tuple[str, int], dict[int, list[float]]] = {}
        for r in records:
            self._note_peak(r)
        self.planned = len(plan(profile, self.names, seed))

    @staticmethod
    def _key(r: dict) -> tuple:
        return (r.get("round"), results.CellKey.of(r), r["server"])

    def _cell_key(self, cell: Cell) -> results.CellKey:
        return results.CellKey(cell.conns, cell.size_bytes,
                               None if cell.fraction is not None else cell.rate, cell.fraction)

    def _note_peak(self, r: dict) -> None:
        if r.get("mode") == "closed" and r.get("status") == "ok" and r.get("rps") \
                and not r.get("rate"):
            self.closed.setdefault((r["server"], r["size_bytes"]), {}).setdefault(
                r["conns"], []).append(r["rps"])

    # -- the budget: what the first rounds leave of profile.budget_s goes to more rounds, each
    # cell's share by its weight; a share nobody else can use any more is open to every cell.

    def _weight(self, cell: Cell) -> float:
        return self.profile.weights.get((cell.conns, cell.size_bytes), 1.0)

    def _spent_s(self, cell: Cell | None, extra: bool) -> float:
        key = None if cell is None else self._cell_key(cell)
        return sum(r.get("elapsed_s") or 0.0 for r in self.records
                   if r.get("round") is not None
                   and (r["round"] >= self.profile.repeats) == extra
                   and (key is None or results.CellKey.of(r) == key))

    def extra_pool_s(self) -> float:
        return max(0.0, (self.profile.budget_s or 0.0) - self._spent_s(None, extra=False))

    def extra_share_s(self, cell: Cell) -> float:
        total = sum(self._weight(c) for c in self.profile.cells)
        return self.extra_pool_s() * self._weight(cell) / total

    def round_fits(self, cell: Cell, cost_s: float, wanting: dict[Cell, float]) -> bool:
        """Another round of `cell` (about `cost_s`) fits the pool, and its share, or no other
        cell that wants a round still fits its own share."""
        if self._spent_s(None, extra=True) + cost_s > self.extra_pool_s():
            return False
        if self._spent_s(cell, extra=True) + cost_s <= self.extra_share_s(cell):
            return True
        return not any(self._spent_s(c, extra=True) + cost <= self.extra_share_s(c)
                       for c, cost in wanting.items() if c != cell)

    def stable(self, name: str, cell: Cell) -> bool:
        key = self._cell_key(cell)
        rs = [r for r in self.records if r["server"] == name and results.CellKey.of(r) == key]
        if self.reference is not None:
            return bool(rs) and all(r.get("converged") for r in rs)
        st = results.stat(r.get("rps") for r in rs if r.get("status") in ("ok", "degraded"))
        return bool(st and results.converged(st.ci95, st.median, self.profile.tolerance))

    def wants_more(self, name: str, cell: Cell) -> bool:
        key = self._cell_key(cell)
        rs = [r for r in self.records if r["server"] == name and results.CellKey.of(r) == key]
        return bool(rs) and all(r["status"] in ("ok", "degraded") for r in rs) \
            and not self.stable(name, cell)

    # -- measuring

    def measure_one(self, rnd: int, cell: Cell, name: str, bar) -> None:
        subject = self.by_name[name]
        bar.update(f"{name:16} {cell.label}  (round {rnd + 1})")
        peak, rate = None, None
        if cell.fraction is not None and (peak := peak_rps(self.closed, name, cell.size_bytes)):
            rate = round(peak[0] * cell.fraction)
        record = measure(subject, cell, rnd, self.profile, self.server_cpus, self.client_cpus,
                         rate=rate, beside=self.reference if self.profile.beside_ref else None)
        if starved(record):
            record = self.window_check(subject, cell, rnd, rate, record)
        if peak:
            record["peak_rps"] = round(peak[0], 1)
            record["peak_conns"] = peak[1]
        self._note_peak(record)
        self.records.append(record)
        self.done.add(self._key(record))
        results.append_record(self.run_dir, record)
        bar.advance()

    def own_cost_us(self, name: str, record: dict) -> float | None:
        """The server's CPU per request: from this window, else its cheapest ok cell so far."""
        costs = [r["server_cpu_us_per_request"] for r in self.records
                 if r["server"] == name and r.get("status") == "ok"
                 and r.get("server_cpu_us_per_request")]
        return record.get("server_cpu_us_per_request") or (min(costs) if costs else None)

    def window_check(self, subject: Subject, cell: Cell, rnd: int, rate, record: dict) -> dict:
        """See WINDOW_SERVES: measure again with a longer window if this one was too short."""
        cost = self.own_cost_us(subject.name, record)
        needed = window_needed_s(record, cost)
        used = (record.get("warmup_s") or 0) + (record.get("duration_s") or record["window_s"])
        if needed is not None and used < needed:
            longer = min(MAX_WINDOW_S, needed)
            print(f"  {subject.name} at {cell.label}: {record['reason']}; the window was too "
                  f"short to tell, measuring again with a {longer:.1f} s window", flush=True)
            again = measure(subject, cell, rnd, self.profile, self.server_cpus, self.client_cpus,
                            rate=rate, measure_s=longer)
            again["window_first_s"] = record["window_s"]
            record = again
            cost = self.own_cost_us(subject.name, record) or cost
        if starved(record) and (note := window_note(record, cost)):
            record["reason"] = f"{record['reason']}; {note}"
        return record

    def finish_block(self) -> None:
        """Ratios, CIs and convergence from every record so far; results.jsonl rewritten."""
        results.annotate(self.records, self.profile.tolerance)
        results.write_records(self.run_dir, self.records)

    def run(self) -> None:
        profile = self.profile
        order = plan(profile, self.names, self.seed)
        costs = [expected_s(self.by_name[n], c, profile) for r, c, n in order
                 if (r, self._cell_key(c), n) not in self.done]
        with _Progress(costs, enabled=self.progress) as bar:
            for i, (rnd, cell, name) in enumerate(order):
                if (rnd, self._cell_key(cell), name) not in self.done:
                    self.measure_one(rnd, cell, name, bar)
                last_of_block = i + 1 == len(order) or order[i + 1][:2] != (rnd, cell)
                if last_of_block:
                    self.finish_block()
            if profile.budget_s is None:
                return
            rng = random.Random(self.seed + 1)
            cells = sorted(_cell_order(profile), key=lambda c: -self._weight(c))  # stable
            for rnd in range(profile.repeats, profile.rounds_max or profile.repeats):
                wanting: dict[Cell, float] = {}
                chosen: dict[Cell, list[str]] = {}
                for cell in cells:
                    names = [s.name for s in self.subjects if self.wants_more(s.name, cell)]
                    if names:
                        chosen[cell] = names + ([self.reference.name] if self.reference else [])
                        wanting[cell] = sum(expected_s(self.by_name[n], cell, profile)
                                            for n in chosen[cell])
                measured_any = False
                for cell, names in chosen.items():
                    if not self.round_fits(cell, wanting[cell], wanting):
                        continue
                    bar.extend([expected_s(self.by_name[n], cell, profile) for n in names])
                    for name in _shuffled(rng, names):
                        if (rnd, self._cell_key(cell), name) not in self.done:
                            self.measure_one(rnd, cell, name, bar)
                    self.finish_block()
                    measured_any = True
                if not measured_any:
                    break


def run(profile: Profile, names: list[str], skipped: dict[str, str], out_dir: Path,
        seed: int = 0, progress: bool = True, *, subjects: list[Subject] | None = None,
        reference: Subject | None = None, reference_state: dict | None = None,
        resume: Path | None = None) -> tuple[Path, int]:
    """Measure the plan; returns (the run directory, the exit code: 0, or 128 + the signal that
    stopped it). With `resume`, measures what that run's plan still lacks."""
    server_cpus, client_cpus, pin_note = split_cpus()
    subjects = subjects if subjects is not None else [Subject.registry(servers.get(n)) for n in names]
    busy = noise.busy_at_start()
    if busy["busy"]:
        top = ", ".join(f"{name} {pct:.0f} %" for name, pct in busy["top"])
        compare = ("the ratios to the reference (vs ref) are what to compare" if reference
                   else "compare servers within this run only")
        print(f"warning: this machine is busy: other processes use {busy['foreign_cpu_pct']:.0f} % "
              f"of its {busy['cpus']} CPUs' time (top users by name: {top}). Absolute figures will be low and noisy; "
              f"{compare}.", flush=True)
    if resume is not None:
        run_dir = resume
        previous = results.read_run(run_dir)
        records = [m.to_dict() for m in previous.measurements]
        meta = previous.meta
        meta.setdefault("resumed", []).append(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        meta["interrupted"] = None
        meta.setdefault("noise", {})["busy_at_start_resumed"] = busy if busy["busy"] else None
        results.write_records(run_dir, records)  # drops a cut last line for good
    else:
        run_dir = new_run_dir(profile.name, out_dir)
        records = []
        commit, dirty = git_state()
        everyone = subjects + ([reference] if reference else [])
        meta = {
            "run_id": run_dir.name,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "profile": profile.name,
            "profile_description": profile.description,
            "git_commit": commit, "git_dirty": dirty,
            "machine": machine_info(),
            "python": {"version": platform.python_version(),
                       "implementation": platform.python_implementation(),
                       "executable": sys.executable},
            "packages": package_versions(),
            "gevent_backend": gevent_backend(),
            "io_uring": _io_uring_state(),
            "pinning": {"server_cpus": server_cpus, "client_cpus": client_cpus, "note": pin_note},
            "limits": limits(),
            "servers": [s.name for s in everyone],
            "skipped_servers": skipped,
            "families": {s.name: s.family for s in everyone},
            "subjects": [s.as_meta() for s in subjects],
            "cells": [{"conns": c.conns, "size_bytes": c.size_bytes, "rate": c.rate,
                       "rate_fraction_of_peak": c.fraction} for c in profile.cells],
            "repeats": profile.repeats, "warmup_s": profile.warmup_s,
            "measure_s": profile.measure_s,
            "rounds_max": profile.rounds_max or profile.repeats, "budget_s": profile.budget_s,
            "beside_ref": profile.beside_ref,
            "tolerance": profile.tolerance,
            "weights": [[c, s, w] for (c, s), w in profile.weights.items()],
            "seed": seed,
            "schema": results.SCHEMA_VERSION,
            "reference": reference_state or {"name": results.REFERENCE, "available": False,
                                             "reason": "not asked for"},
            "engine": None,
            "noise": {"busy_at_start": busy if busy["busy"] else None},
            "interrupted": None,
        }
        for name, why in skipped.items():
            entry = servers.BY_NAME.get(name)
            for cell in profile.cells:
                records.append({
                    "server": name, "family": entry.family if entry else None,
                    "lesson": entry.lesson if entry else None,
                    "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": cell.rate,
                    "rate_fraction_of_peak": cell.fraction,
                    "mode": "open" if cell.is_open else "closed", "repeat": 0,
                    "status": "skipped", "reason": why, "schema": results.SCHEMA_VERSION,
                    "noise": dict(NOT_MEASURED_NOISE)})
        results.write_records(run_dir, records)
    results.write_meta(run_dir, meta)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # the runner and its sampler stay off the server's core

    runner = Runner(profile, subjects, reference, skipped, run_dir, meta, records, seed,
                    progress, server_cpus, client_cpus)
    order = plan(profile, runner.names, seed)
    left = [(r, c, n) for r, c, n in order if (r, runner._cell_key(c), n) not in runner.done]
    planned_s = sum(expected_s(runner.by_name[n], c, profile) for _, c, n in left)
    meta["planned_s"] = round(planned_s)
    meta["planned_measurements"] = len(order)
    ref_text = f" + the reference {reference.name}" if reference else ", no reference"
    default_engine, why_python = load_gen.default_engine()
    if why_python:  # said once here, not warned at every measurement
        print(f"note: the load generator runs its {default_engine} engine: {why_python}",
              flush=True)
        warnings.filterwarnings("ignore", "using the Python load engine", RuntimeWarning)
    print(f"plan: {len(left)} measurements ({_plural(len(subjects), 'server')}{ref_text} x "
          f"{_plural(len(profile.cells), 'cell')} x {_plural(profile.repeats, 'round')}"
          + (f", {len(order) - len(left)} already measured" if len(left) < len(order) else "")
          + f"), about {_duration_text(planned_s)}", flush=True)
    if profile.beside_ref and reference is not None:
        print(f"      closed loop: each server measured beside {reference.name} in one window of "
              f"{2 * profile.measure_s:g} s, alternating in slices of about "
              f"{load_gen.ALT_SLICE_S * 1000:.0f} ms (vs_ref from the same window)", flush=True)
    if profile.budget_s is not None:
        finish = dt.datetime.now() + dt.timedelta(seconds=max(planned_s, profile.budget_s))
        first = profile.first_for_extra_rounds()
        where = f" (at {', '.join(c.label for c in first)} first)" if first else ""
        print(f"      then up to round {profile.rounds_max}{where} for the servers whose 95 % CI of "
              f"the median vs ref is wider than ±{profile.tolerance * 100:.0f} %, within a budget of "
              f"{_duration_text(profile.budget_s)} for the whole run (the first rounds included), "
              f"done by about {finish:%H:%M}", flush=True)

    t0 = time.monotonic()
    code = 0
    try:
        runner.run()
    except Interrupted as stop:
        code = 128 + stop.signum  # measure()'s finally blocks killed the server on the way out
        launch.kill_own_groups()  # and one the signal caught between its Popen and its kill()
        meta["interrupted"] = {"signal": signal.Signals(stop.signum).name,
                               "measured": sum(1 for r in runner.records if r.get("round") is not None),
                               "planned": max(runner.planned, len(runner.done))}
        print(f"\n{meta['interrupted']['signal']}: stopped; the server under test and its "
              f"process group were killed. interrupted: {meta['interrupted']['measured']} of "
              f"{meta['interrupted']['planned']} measurements; resume with "
              f"`python -m bench run --resume {run_dir}`", flush=True)
    finally:  # also on a bench error: what was measured is kept
        runner.finish_block()
        default, why = load_gen.default_engine()  # why: the reason it is not the C engine
        meta["engine"] = {"default": default, "reason": why,
                          "used": sorted({r["engine"] for r in runner.records if r.get("engine")})}
        summary = results.noise_summary(runner.records, meta.get("noise", {}).get("busy_at_start"))
        meta["noise"] = {**meta.get("noise", {}), **summary}
        meta["duration_s"] = round((meta.get("duration_s") or 0) + time.monotonic() - t0, 1)
        results.write_meta(run_dir, meta)
    return run_dir, code


def _io_uring_state() -> dict:
    entry = servers.BY_NAME.get("io_uring")
    if entry is None:
        return {"available": False, "reason": "no io_uring server in the registry"}
    ok, reason = entry.availability()
    return {"available": ok, "reason": reason}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _duration_text(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes \
        else f"{secs} s"


class _Progress:
    """A rich progress bar with an ETA; plain lines with an ETA when rich is missing.

    Measurements differ a lot in length (a 10,000-connection cell takes ten times a 1-connection
    one), so progress counts expected seconds, not measurements: the bar advances by each one's
    expected cost, and the ETA is the expected seconds left at the pace seen so far.
    """

    def __init__(self, costs: list[float], enabled: bool):
        self.costs, self.total, self.enabled = costs, sum(costs), enabled
        self.done = 0  # measurements finished
        self.done_s = 0.0  # their expected cost
        self.t0 = time.monotonic()
        self._rich = None
        if enabled:
            try:
                from rich.progress import (BarColumn, Progress, TextColumn, TimeElapsedColumn,
                                           TimeRemainingColumn)
                self._rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn())
            except ImportError:
                pass

    def __enter__(self):
        if self._rich:
            self._rich.start()
            self._task = self._rich.add_task("starting", total=self.total,
                                             count=f"0/{len(self.costs)}")
        return self

    def __exit__(self, *exc):
        if self._rich:
            self._rich.stop()

    def eta_s(self) -> float:
        """Expected seconds left, scaled by how the measurements so far compared with theirs."""
        left = self.total - self.done_s
        if not self.done_s:
            return left
        return left * (time.monotonic() - self.t0) / self.done_s

    def update(self, text: str) -> None:
        if self._rich:
            self._rich.update(self._task, description=text)
        elif self.enabled:
            print(f"[{self.done + 1}/{len(self.costs)}] {text}  (ETA {_duration_text(self.eta_s())})",
                  flush=True)

    def extend(self, costs: list[float]) -> None:
        """More measurements than planned: another round for the cells not yet stable."""
        self.costs = self.costs + costs
        self.total += sum(costs)
        if self._rich:
            self._rich.update(self._task, total=self.total)

    def advance(self) -> None:
        self.done_s += self.costs[self.done]
        self.done += 1
        if self._rich:
            self._rich.update(self._task, completed=self.done_s,
                              count=f"{self.done}/{len(self.costs)}")


# ---------------------------------------------------------------------------------------------
# Summary


def _pct(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio is not None else "-"


def _ci_text(s: results.CellSummary) -> str:
    """'±3.1 % ✓' (the CI of the median vs_ref, converged), '±12 %', or 'n=3' without a CI."""
    st = s.vs_ref_stat
    if st is None:
        return "-"
    half = st.ci_half_width
    if half is None:
        return f"n={st.n}"
    return f"±{half * 100:.1f} %" + (" ✓" if s.converged else "")


def summary_rows(run: results.Run) -> dict[results.CellKey, list[tuple]]:
    """Per cell, one row per server, best vs_ref (else req/s) first: the ratios to the reference
    lead, the absolute figures follow."""
    cells: dict[results.CellKey, list[results.CellSummary]] = {}
    for s in run.summaries():
        cells.setdefault(s.cell, []).append(s)
    out = {}
    for cell, group in cells.items():
        group.sort(key=lambda s: (-(s.vs_ref or 0), -(s.rps.median if s.rps else -1)))
        rows = []
        for i, s in enumerate(group, 1):
            name = s.server + (" (ref)" if s.is_reference else "")
            if s.rps is None:
                rows.append((str(i), name, "-", "-", "-", "-", "-", "-", "-",
                             f"{s.status}: {results_one_line(s.reasons[0]) if s.reasons else ''}"))
                continue
            flags = [s.verdict] if s.verdict != "ok" else []
            if s.noisy and s.verdict != "noisy":
                flags.append(f"noisy {s.noisy_count}/{len(s.measured)}")
            cpu = s.cpu_us_per_request
            p99 = s.p99_us
            rows.append((str(i), name, _pct(s.vs_ref), _ci_text(s), _pct(s.cpu_vs_ref),
                         f"{s.rps.median:,.0f}", f"±{s.rps.relative_width * 50:.1f}%",
                         f"{p99.median / 1000:.2f}" if p99 else "-",
                         f"{cpu.median:.1f}" if cpu else "-", ", ".join(flags)))
        out[cell] = rows
    return out


def results_one_line(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


SUMMARY_HEADER = ("#", "server", "vs ref", "CI95", "CPU vs ref", "req/s", "spread", "p99 ms",
                  "CPU µs/req", "flags")


def print_summary(run_dir: Path) -> None:
    run = results.read_run(run_dir)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    console = None
    if Console:
        console = Console()
        if console.width < 120:  # not a terminal (a pipe, CI): wide enough for every column
            console = Console(width=120)
    for cell, lines in summary_rows(run).items():
        if console:
            table = Table(title=cell.label, title_justify="left")
            for h in SUMMARY_HEADER:
                table.add_column(h, justify="left" if h in ("server", "flags") else "right")
            for line in lines:
                table.add_row(*line)
            console.print(table)
        else:
            print(f"\n{cell.label}")
            print("  ".join(SUMMARY_HEADER))
            for line in lines:
                print("  ".join(line))
    noise_meta = run.meta.get("noise") or {}
    if noise_meta.get("windows"):
        foreign, steal = noise_meta.get("foreign_cpu_pct") or {}, noise_meta.get("steal_pct") or {}
        print(f"noise: {noise_meta['noisy_windows']} of {noise_meta['windows']} windows noisy "
              f"(other processes' CPU: median {foreign.get('median', 0):.0f} %, max "
              f"{foreign.get('max', 0):.0f} %; steal: median {steal.get('median', 0):.1f} %, max "
              f"{steal.get('max', 0):.1f} %; thresholds in bench/results.py)")
    ref = run.reference
    if ref.get("available"):
        beside = any((m.get("ref_basis") == "beside") for m in run.measurements)
        where = ("measured beside it in the same window, alternating" if beside
                 else "in the same cell and round")
        print(f"vs ref: req/s over the reference's ({ref['name']}) {where}; CPU vs "
              f"ref: server CPU µs per request over the reference's; CI95: the 95 % interval of "
              f"the median vs ref (✓: within ±{results.TOLERANCE * 100:.0f} %; n=3: too few rounds for one, "
              f"it takes {results.CI_MIN_N}); spread: half the range of "
              f"the repeats, as a share of the median")
    else:
        print(f"no reference in this run ({ref.get('reason')}): no ratios; spread: half the "
              f"range of the repeats, as a share of the median")


# ---------------------------------------------------------------------------------------------
# Command line


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, e.g. 1,16,128") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers, e.g. 1,16,128")
    return values


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = None
    if values == [0.0]:
        return []
    if not values or any(not 0 < v <= 2 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give shares of the peak between 0 and 2, "
                                         "e.g. 0.5,0.9 (or 0 for no such cells)")
    return values


def choose_available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the names that run here, {name: why not} for the rest). Probes run in subprocesses, so a
    server whose native code crashes its probe is skipped with the reason, not a dead runner."""
    chosen, skipped = [], {}
    for name in names:
        ok, why = servers.get(name).availability()
        if ok:
            chosen.append(name)
        else:
            skipped[name] = why
    return chosen, skipped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench run", description=__doc__.splitlines()[0],
                                     epilog="Profiles: " + "; ".join(
                                         f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("--profile", choices=list(PROFILES), default="quick")
    parser.add_argument("--servers", help="comma-separated registry names (default: every available "
                        "server; `python -m servers` lists them)")
    parser.add_argument("--conns", type=_int_list, help="connection counts, e.g. 1,16,128 (replaces the profile's closed-loop cells)")
    parser.add_argument("--sizes", type=_int_list, help="message sizes in bytes, e.g. 1024,65536")
    parser.add_argument("--rates", type=_int_list, help="open-loop total request rates, e.g. 1000,5000 (with --conns)")
    parser.add_argument("--fractions", type=_fraction_list,
                        help=f"open loop at these shares of each server's own closed-loop peak, "
                             f"at {OPEN_LOOP_CONNS} connections, e.g. 0.5,0.9; 0 for none "
                             f"(default: the profile's; kept when --conns replaces its other cells)")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default: the profile's)")
    parser.add_argument("--measure-s", type=float, help="measured window per cell, seconds")
    parser.add_argument("--warmup-s", type=float, help="warm-up per cell, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where run directories go (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the interleaved order")
    parser.add_argument("--no-progress", action="store_true", help="plain output, no progress bar")
    parser.add_argument("--no-report", action="store_true", help="do not draw charts and report.md at the end")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run, the first rounds "
                        "included, after which no cell gets another round (0: exactly --repeats "
                        "rounds; default: the profile's)")
    parser.add_argument("--rounds-max", type=int, help="at most this many rounds of a cell")
    parser.add_argument("--server", action="append", default=[], metavar="NAME='CMD ...'",
                        help="also measure your own server: started from CMD like a lab server; "
                             "it prints the readiness line ('serving NAME on HOST:PORT (pid N)'), "
                             "or CMD contains {port}: the bench picks a free port, puts it there "
                             "and waits until 127.0.0.1:PORT accepts (repeatable)")
    parser.add_argument("--target", action="append", default=[], metavar="NAME=HOST:PORT",
                        help="also measure a server that is already running (with --pid PID, "
                             "one per --target, in the same order): sampled by its pid, never "
                             "started, stopped or pinned by the bench (repeatable)")
    parser.add_argument("--pid", action="append", default=[], type=int,
                        help="the pid of the process serving the --target before it")
    parser.add_argument("--no-reference", action="store_true",
                        help=f"do not measure the C reference ({results.REFERENCE}): no vs_ref")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="measure what the plan of an interrupted run still lacks, in its "
                             "directory, with its profile, servers and seed")
    return parser


def _own_servers(parser, args) -> list[Subject]:
    """--server and --target/--pid as subjects; bad ones exit 2 naming the fix."""
    subjects = []
    taken = set(servers.BY_NAME)
    for spec in args.server:
        name, sep, command = spec.partition("=")
        argv = shlex.split(command) if sep else []
        if not name.strip() or not argv:
            parser.error(f"--server {spec!r}: give NAME='CMD ...', e.g. --server "
                         f"'mine=python my_echo.py --port {{port}}'")
        if name in taken:
            parser.error(f"--server {name}: the name is taken; pick another")
        taken.add(name)
        subjects.append(Subject(name, "yours", None, command=tuple(argv)))
    if len(args.pid) != len(args.target):
        parser.error(f"{len(args.target)} --target but {len(args.pid)} --pid: give each "
                     f"--target NAME=HOST:PORT a --pid PID (the process that serves it, "
                     f"e.g. from `ss -ltnp`)")
    for spec, pid in zip(args.target, args.pid, strict=True):
        name, sep, address = spec.partition("=")
        try:
            host, port = load_gen.parse_target(address) if sep else (None, None)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"--target {spec!r}: {exc}")
        if not name.strip() or host is None:
            parser.error(f"--target {spec!r}: give NAME=HOST:PORT, e.g. --target "
                         f"mine=127.0.0.1:25000 --pid 4242")
        if name in taken:
            parser.error(f"--target {name}: the name is taken; pick another")
        taken.add(name)
        import psutil
        if not psutil.pid_exists(pid):
            parser.error(f"--pid {pid}: no such process; start your server first and give its pid")
        subjects.append(Subject(name, "yours", None, host=host, port=port, pid=pid))
    return subjects


def reference_subject(enabled: bool) -> tuple[Subject | None, dict]:
    """The C reference and meta.json's entry for it: available, or why not with the fix."""
    name = results.REFERENCE
    if not enabled:
        return None, {"name": name, "available": False, "reason": "--no-reference"}
    entry = servers.BY_NAME.get(name)
    if entry is None:
        return None, {"name": name, "available": False,
                      "reason": f"no {name} in this checkout's registry (servers/__init__.py)"}
    ok, why = entry.availability()
    if not ok:
        return None, {"name": name, "available": False, "reason": why}
    return Subject.registry(entry, is_reference=True), {"name": name, "available": True,
                                                          "reason": None}


def _profile_from_meta(meta: dict) -> Profile:
    cells = [Cell(c["conns"], c["size_bytes"], c.get("rate"), c.get("rate_fraction_of_peak"))
             for c in meta["cells"]]
    return Profile(meta["profile"], cells, meta["repeats"], meta["warmup_s"], meta["measure_s"],
                   meta.get("profile_description") or "", rounds_max=meta.get("rounds_max"),
                   budget_s=meta.get("budget_s"), tolerance=meta.get("tolerance") or
                   results.TOLERANCE, weights={(c, s): w for c, s, w in meta.get("weights") or []},
                   beside_ref=bool(meta.get("beside_ref")))


def write_report(run_dir: Path) -> Path | None:
    """report.md through the report builder; for an interrupted run, marked as such even if the
    builder does not say it, and a short one of our own if the builder fails."""
    meta = results.read_run(run_dir).meta
    stop = meta.get("interrupted")
    mark = (f"interrupted: {stop['measured']} of {stop['planned']} measurements "
            f"({stop['signal']}); `python -m bench run --resume {run_dir}` measures the rest"
            if stop else None)
    path = run_dir / "report.md"
    try:
        from bench.report import build as report
        path = Path(report.build_report(run_dir))
    except Exception as exc:  # the report must not turn a finished run into a crash
        print(f"(the report builder failed: {type(exc).__name__}: {exc})", file=sys.stderr)
        if not stop:
            return None
        path.write_text(f"# Bench run {run_dir.name}\n\n**{mark}**\n\nThe report builder "
                        f"failed ({type(exc).__name__}: {exc}); the measurements are in "
                        f"results.jsonl.\n")
        return path
    if mark and "interrupted" not in path.read_text():
        path.write_text(f"**{mark}**\n\n" + path.read_text())
    return path


def main(argv: list[str] | None = None) -> int:
    """SIGINT, SIGTERM and SIGHUP raise Interrupted from here on (see run() for what a run does
    with it); a second one, while the first is being handled, is ignored."""
    old = _install_stop_handlers()
    try:
        return _main(argv)
    except Interrupted as stop:  # before the first measurement, or while writing the report
        print(f"\n{signal.Signals(stop.signum).name}: stopped", file=sys.stderr)
        return 128 + stop.signum
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        if not (args.resume / "meta.json").is_file():
            parser.error(f"--resume {args.resume}: no meta.json there; give a run directory "
                         f"written by `python -m bench run` (ls results/)")
        meta = results.read_run(args.resume).meta
        profile = _profile_from_meta(meta)
        subjects = [Subject.from_meta(d) for d in meta.get("subjects") or []]
        reference, ref_state = reference_subject(bool((meta.get("reference") or {}).get("available")))
        code = _run_and_report(args, profile, subjects, meta.get("skipped_servers") or {},
                               reference, ref_state, resume=args.resume, seed=meta.get("seed", 0))
        return code
    profile = PROFILES[args.profile]
    if args.conns or args.sizes or args.rates or args.fractions is not None:
        conns = args.conns or sorted({c.conns for c in profile.cells if not c.is_open})
        sizes = args.sizes or [1024]
        cells = _closed(conns, sizes)
        if args.rates:
            cells += [Cell(c, sizes[0], r) for c in conns for r in args.rates]
        fractions = (args.fractions if args.fractions is not None else
                     [c.fraction for c in profile.cells if c.fraction is not None])
        cells += [Cell(OPEN_LOOP_CONNS, sizes[0], fraction=f) for f in fractions]
        profile = replace(profile, name=f"{profile.name}-custom", cells=cells,
                          description="custom cells from the command line")
    profile = replace(profile)  # never change PROFILES itself
    if profile.name == "c100k" and (cell := fd_limit_cell(profile)) is not None:
        profile.cells = sorted(profile.cells + [cell], key=lambda c: c.conns)
        print(f"note: this machine's open-files hard limit (ulimit -Hn) is "
              f"{load_gen.fd_hard_limit():,}, so larger cells are skipped with the fix; added a "
              f"{cell.conns:,}-connection cell, the most it allows", flush=True)
    for attr, value in (("repeats", args.repeats), ("measure_s", args.measure_s),
                        ("warmup_s", args.warmup_s), ("rounds_max", args.rounds_max)):
        if value is not None:
            if value <= 0 and attr != "warmup_s" or value < 0:
                parser.error(f"--{attr.replace('_', '-')} must be positive")
            setattr(profile, attr, value)
    if args.budget_s is not None:
        if args.budget_s < 0:
            parser.error("--budget-s must be 0 (no extra rounds) or positive")
        profile.budget_s = args.budget_s or None
    own = _own_servers(parser, args)

    if args.servers:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in servers.BY_NAME]
        if unknown:
            parser.error(f"unknown server(s) {', '.join(unknown)}; pick from: {', '.join(servers.BY_NAME)}")
    elif own:
        names = []  # only yours (and the reference), unless --servers names lab servers too
    else:
        names = profile.default_servers or [s.name for s in servers.SERVERS]
        names = [n for n in names if n in servers.BY_NAME]
    names = [n for n in names if n != results.REFERENCE]  # measured as the reference anyway
    names, skipped = choose_available(names)
    reference, ref_state = reference_subject(not args.no_reference)
    if reference is None and not args.no_reference:
        print(f"note: no reference this run: {ref_state['reason']}. The run goes on without "
              f"vs_ref ratios.", flush=True)
    subjects = [Subject.registry(servers.get(n)) for n in names] + own
    if not subjects and reference is None:
        parser.error("none of the chosen servers is available here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return _run_and_report(args, profile, subjects, skipped, reference, ref_state,
                           resume=None, seed=args.seed)


def _run_and_report(args, profile, subjects, skipped, reference, ref_state, *, resume,
                    seed) -> int:
    run_dir, code = run(profile, [s.name for s in subjects], skipped, args.out, seed=seed,
                        progress=not args.no_progress, subjects=subjects, reference=reference,
                        reference_state=ref_state, resume=resume)
    # A stopped run writes its summary and report undisturbed (the handler ignores a second
    # signal); a finished one stops at a signal here too, quietly: its measurements are saved.
    try:
        try:
            print_summary(run_dir)
        except Exception as exc:  # an interrupted run may have nothing to summarise
            print(f"(no summary: {type(exc).__name__}: {exc})")
        if not args.no_report or code:
            path = write_report(run_dir)
            if path:
                print(f"report: {path}")
    except Interrupted as late:
        print(f"\n{signal.Signals(late.signum).name}: stopped while writing the report; the "
              f"measurements are saved (make report RUN={run_dir})")
        code = 128 + late.signum
    print(f"results: {run_dir}")
    if hint := compare_hint(profile.name, Path(run_dir)):
        print(hint)
    return code


def compare_hint(profile_name: str, run_dir: Path) -> str | None:
    """The command that compares this run with the recorded run of its profile, if one is in
    docs/results (quick, full, c100k; a custom choice of servers or cells compares with its
    profile's on the cells both have)."""
    recorded = ROOT / "docs" / "results" / profile_name.removesuffix("-custom")
    if not (recorded / "results.jsonl").is_file() or run_dir.resolve() == recorded.resolve():
        return None
    return (f"against the recorded {recorded.name} run: make compare "
            f"A={_shown(recorded)} B={_shown(run_dir)}")


def _shown(path: Path) -> str:
    """path relative to the working directory where it lies under it (what make is run from)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
