"""The C load engine: build it, run it, turn what it prints into worker results.

    python -m bench.load --engine c --target 127.0.0.1:9000 --conns 64

python_engine.py holds the readable Python/uvloop engine and its design essay (closed and open
loop, coordinated omission, error kinds); engine.c in this directory does the same in C, as one
epoll loop per thread, each thread pinned to a CPU, so that the generator costs less CPU per
request than any server it measures and is never the bottleneck. This module is the glue:

- `available()` builds engine.c (and hdr.c, its HdrHistogram port) at first use with
  servers/build.py, with contract.py's constants as -D flags, cached by the hash of the sources
  and the flags; then runs it once in a subprocess: a missing compiler or a crash is a reason,
  never an exception.
- `run_load(...)` plans the run as contract.py says (threads for workers), starts the engine
  process(es) and takes them through handshake.py's handshake: "ready <established>
  <connect_s>" on its stdout, "start <ns>" (or "stop") on its stdin, then the result lines.
  Latencies arrive as (value, count) pairs, one per non-zero bucket of the engine's histograms;
  they are recorded into `hdrh` histograms at the bucket's lowest value, which lands in the same
  bucket, so merging, encoding and percentiles stay exactly those of bench/hist.py.
- `parse_result` makes each process's lines one worker result (contract.worker_result), so both
  engines' summaries come from contract.summarize, with the same keys.

Past CONNS_PER_SOURCE connections to a loopback server, the engine spreads its connections over
several source addresses (127.0.0.1, 127.0.0.2, ...): one (source, destination) pair has only
net.ipv4.ip_local_port_range's ephemeral ports (about 28,000 by default).
"""

from __future__ import annotations

import ipaddress
import math
import os
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench import hist
from bench.load import handshake, limits
from bench.load.contract import (
    ERROR_KINDS,
    FD_HEADROOM,
    RAMP_PAUSE_S,
    alt_slice,
    c_defines,
    connect_plan,
    cpu_plan,
    summarize,
    worker_count,
    worker_result,
)
from servers import build

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "engine.c"
EXTRA_SOURCES = (HERE / "hdr.c", HERE / "hdr.h")
# Connections per loopback source address. One source has ~28,000 ephemeral ports toward one
# server, but connect() gets slower as they fill: the kernel searches the range for a free port
# (__inet_hash_connect). Measured on a 2-core VM: 15,000 connections to c-epoll took 11.3 s to
# open from one source (2.2 s of system time), 5.7 s (0.6 s) from five; 100,000 to reuseport
# (6 workers) took 185 s from 5 sources of 20,000 (the p99 at 10,000 req/s: 878 ms), 32 s from
# 20 sources of 5,000 (p99 9 ms), which is the pace of the ramp itself.
CONNS_PER_SOURCE = 5_000
MAX_SOURCES = 254  # 127.0.0.1 .. 127.0.0.254
SPAWN_BUDGET_S = 5.0  # to exec a C program; generous, for slow CI machines
MAX_PROCESSES = 64  # engine processes at most, when the fd limit splits the connections
PROBE_TIMEOUT_S = 30.0

_availability: tuple[bool, str | None] | None = None


class EngineError(RuntimeError):
    """The engine could not run at all (it printed why, e.g. too few file descriptors)."""


def binary() -> Path:
    """The built engine; raises build.Unavailable with the reason and the fix."""
    return build.build(SOURCE, flags=("-pthread", *c_defines()), extra_sources=EXTRA_SOURCES)


def available() -> tuple[bool, str | None]:
    """(True, None) if the engine builds and runs here, else (False, why and how to fix it).

    The check runs the built program once, in a subprocess, on a few values: a compiler that
    produces a program this machine cannot run (a crash, SIGILL) is a reason, not a crash here.
    Cached for the life of the process.
    """
    global _availability
    if _availability is None:
        try:
            path = binary()
            done = subprocess.run([str(path), "--hist-selftest"], input="1 2 3\n", text=True,
                                  capture_output=True, timeout=PROBE_TIMEOUT_S)
            if done.returncode != 0 or "latency 1 1 2 1 3 1" not in done.stdout:
                why = (f"exit {done.returncode}" if done.returncode >= 0
                       else f"killed by signal {-done.returncode}")
                _availability = (False, f"the built engine does not run here ({why}): check "
                                        f"the C compiler (CC), then remove {path.parent} to "
                                        "build it again")
            else:
                _availability = (True, None)
        except build.Unavailable as exc:
            _availability = (False, f"the C engine cannot be built: {exc}")
        except (OSError, subprocess.TimeoutExpired) as exc:
            _availability = (False, f"the C engine did not run: {exc}")
    return _availability


def sources_for(host: str, conns: int) -> int:
    """How many loopback source addresses `conns` connections to `host` are spread over."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback and ":" not in host
    except ValueError:
        loopback = host == "localhost"
    if not loopback or conns <= CONNS_PER_SOURCE:
        return 1
    return min(MAX_SOURCES, math.ceil(conns / CONNS_PER_SOURCE))


def processes_for(conns: int) -> int:
    """How many engine processes `conns` connections need: RLIMIT_NOFILE is per process, and
    an administrator may not let even root raise the hard limit (no CAP_SYS_RESOURCE, as in
    many containers). Below the limit: one process, its workers threads."""
    per_process = per_process_conns()
    return max(1, math.ceil(conns / per_process)) if per_process else MAX_PROCESSES + 1


def per_process_conns() -> int:
    """Connections one engine process can hold under the hard fd limit (0: hardly any)."""
    hard = limits.fd_hard_limit()
    return 1 << 30 if hard is None else max(0, hard - FD_HEADROOM)


def fd_shortfall(conns: int) -> str | None:
    """Why the engine cannot open files for `conns` connections here (with the fix), or None.

    Each engine process raises its soft limit to the hard one (and the hard one too where it
    may); past the hard limit the connections are spread over several processes, at most
    MAX_PROCESSES. The probe asks the engine itself about one process's share.
    """
    processes = processes_for(conns)
    if processes > MAX_PROCESSES:
        return limits.too_few_files(conns, math.ceil(conns / MAX_PROCESSES) + FD_HEADROOM,
                                    per_process_conns() + FD_HEADROOM,
                                    f"in each of {MAX_PROCESSES} engine processes")
    try:
        done = subprocess.run([str(binary()), "--probe-fds", str(math.ceil(conns / processes))],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (build.Unavailable, OSError, subprocess.TimeoutExpired):
        return None  # the engine is unavailable: the caller falls back, and checks for Python
    if done.returncode:
        return done.stderr.strip() or f"the engine's fd probe failed (exit {done.returncode})"
    return None


# -- What the engine prints ------------------------------------------------------------------------


def _histogram(fields: list[str]) -> str:
    """Encode the engine's (value, count) pairs as an hdrh histogram."""
    histogram = hist.new_histogram()
    record_value = histogram.record_value
    for i in range(0, len(fields) - 1, 2):
        record_value(int(fields[i]), int(fields[i + 1]))
    return hist.encode(histogram)


def parse_result(lines: list[str]) -> dict:
    """The engine's result lines -> a worker result (contract.worker_result), with the second
    server's figures beside it under alt_* keys when it alternated (--alt)."""
    result = worker_result()
    for line in lines:
        key, _, rest = line.partition(" ")
        if key in ("conns_established", "conns_open_at_end", "offered", "latency_out_of_range",
                   "alt_established", "alt_errors"):
            result[key] = int(rest)
        elif key == "active_ns":
            result["active_ns"] = [int(v) for v in rest.split()]
        elif key == "alt_latency":
            result["alt_hist"] = _histogram(rest.split())
        elif key in ("stall_limit_s", "cpu_user_s", "cpu_sys_s"):
            result[key] = float(rest)
        elif key == "error":
            kind, _, count = rest.partition(" ")
            result["errors"][kind] = int(count)
        elif key == "example":
            kind, _, text = rest.partition(" ")
            result["error_examples"][kind] = text
        elif key == "latency":
            result["hist"] = _histogram(rest.split())
        elif key == "send_lag":
            result["send_lag_hist"] = _histogram(rest.split())
    return result


class _Lines:
    """Lines from a pipe, each read with a deadline (a hung engine must not hang the caller)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = b""
        self.eof = False
        self.poller = select.poll()
        self.poller.register(fd, select.POLLIN)

    def next(self, deadline: float) -> str | None:
        """The next line, or None at EOF or when `deadline` (time.monotonic) passes."""
        while b"\n" not in self.buffer:
            left_s = deadline - time.monotonic()
            if self.eof or left_s <= 0:
                return None
            # poll, not select: a caller holding thousands of sockets (a test's in-process
            # server) gets fds past select()'s FD_SETSIZE of 1024
            if self.poller.poll(max(1, math.ceil(left_s * 1000))):
                chunk = os.read(self.fd, 1 << 16)
                if not chunk:
                    self.eof = True
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("utf-8", "replace")


# -- Running it ------------------------------------------------------------------------------------


class _EngineProcess:
    """One engine process as the handshake sees it (a handshake.Worker): "ready" and the result
    come on its stdout, "start" and "stop" go to its stdin. It stops by itself if this process
    dies: its stdin reads EOF, and PR_SET_PDEATHSIG sends it SIGTERM."""

    def __init__(self, argv: list[str], index: int, count: int, closed_loop: bool) -> None:
        self.name = f"C engine process {index + 1} of {count}"
        self.closed_loop = closed_loop
        self.stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr)
        self.lines = _Lines(self.process.stdout.fileno())

    def ready(self, deadline: float) -> dict:
        line = self.lines.next(deadline)
        if line is not None and line.startswith("ready "):
            _, established, connect_s = line.split()
            return {"conns_established": int(established), "connect_s": float(connect_s)}
        self.process.kill()
        self.process.wait()
        self.stderr.seek(0)
        said = self.stderr.read().decode("utf-8", "replace").strip()
        if self.process.returncode == 2 and said:
            raise EngineError(said)  # it refused to start, e.g. too few file descriptors
        why = ("was not ready in time" if self.process.returncode == -signal.SIGKILL
               else f"exited (code {self.process.returncode}) before it was ready")
        raise handshake.Lost(why + (f": {said}" if said else ""))

    def start(self, start_ns: int) -> None:
        self._write(f"start {start_ns}\n")

    def stop(self) -> None:
        self._write("stop\n")

    def result(self, deadline: float) -> dict:
        got: list[str] = []
        while (line := self.lines.next(deadline)) is not None and line != "done":
            got.append(line)
        if line != "done":
            raise handshake.Lost("exited before its result was complete" if self.lines.eof
                                 else "sent no complete result in time")
        result = parse_result(got)
        if self.closed_loop:
            result["send_lag_hist"] = None
        return result

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        try:
            self.process.stdin.close()
        except OSError:
            pass  # a "stop" still buffered for an engine that had exited: nobody to read it
        self.process.stdout.close()
        self.stderr.close()

    def _write(self, text: str) -> None:
        try:
            self.process.stdin.write(text.encode())
            self.process.stdin.flush()
        except OSError:
            pass  # it is gone already; its missing result says so


def run_load(host: str, port: int, *, conns, size, duration, warmup, rate, workers, cpus,
             connect_timeout, ramp_batch, on_window, alt=None, slice_s=None) -> dict:
    """bench.load.run_load with the C engine (which checked the arguments): the plan of
    contract.py with threads for workers, the handshake of handshake.py, the summary of
    contract.summarize.

    Usually one process with `workers` threads. Past the per-process fd limit, several processes
    (processes_for), connection g in process g % P, all started at the same time with the same
    schedule, as if they were one. No engine outlives this call: all are killed on any exception
    here (Ctrl-C included).

    `alt` (host, port): a second server measured in the same window, in alternating slices of
    about `slice_s` (engine.c's header says how); closed loop, one engine process.
    """
    pin, cpu_pool, result_warnings = cpu_plan(cpus)
    threads = worker_count(conns, workers, cpus)
    n_procs = min(processes_for(conns * (2 if alt else 1)), conns)
    if alt is not None and (n_procs > 1 or rate is not None):
        raise ValueError("an alternate server (alt) takes a closed loop and connections that fit "
                         "one engine process")
    slice_s = alt_slice(duration, slice_s) if alt is not None else None
    _, connect_budget_s = connect_plan(conns, threads * n_procs, ramp_batch, connect_timeout)
    ready_budget_s = SPAWN_BUDGET_S + connect_budget_s
    sources = sources_for(host, conns)
    procs: list[_EngineProcess] = []
    total_threads = 0
    try:
        for p in range(n_procs):
            share = len(range(p, conns, n_procs))
            proc_threads = min(threads, share)
            ramp, _ = connect_plan(conns, n_procs * proc_threads, ramp_batch, connect_timeout)
            argv = [str(binary()), "--host", host, "--port", str(port), "--conns", str(share),
                    "--first", str(p), "--step", str(n_procs), "--total-conns", str(conns),
                    "--size", str(size), "--warmup", repr(float(warmup)),
                    "--duration", repr(float(duration)), "--threads", str(proc_threads),
                    "--connect-timeout", repr(float(connect_timeout)),
                    "--connect-budget", repr(float(connect_budget_s)),
                    "--ramp-batch", str(ramp), "--ramp-pause", repr(float(RAMP_PAUSE_S)),
                    "--start-wait", repr(ready_budget_s + handshake.START_WAIT_MARGIN_S),
                    "--sources", str(sources)]
            if rate is not None:
                argv += ["--rate", repr(float(rate))]
            if alt is not None:
                argv += ["--alt", f"{alt[0]}:{alt[1]}", "--slice-ms", repr(slice_s * 1000)]
            if pin:
                # process p's threads continue the round of CPUs where process p - 1's ended
                offset = total_threads % len(cpu_pool)
                argv += ["--cpus", ",".join(map(str, cpu_pool[offset:] + cpu_pool[:offset]))]
            total_threads += proc_threads
            procs.append(_EngineProcess(argv, p, n_procs, closed_loop=rate is None))
        results, start_ns, notes = handshake.drive(
            procs, ready_by=time.monotonic() + ready_budget_s, warmup=warmup, duration=duration,
            on_window=on_window)
    except EngineError as exc:  # e.g. too few file descriptors: nothing was attempted
        results, start_ns = [worker_result(errors={**dict.fromkeys(ERROR_KINDS, 0),
                                                   "connect": conns})], None
        notes = [str(exc), "no connection could be established; nothing was measured"]
    finally:
        for proc in procs:
            proc.close()
    summary = summarize(
        results, host=host, port=port, conns=conns, size=size, rate=rate,
        duration=duration if start_ns is not None else 0.0, warmup=warmup,
        n_workers=total_threads, cpus=(cpu_pool if pin else None),
        cores=min(total_threads, len(cpu_pool)), loop_name="epoll (C engine)",
        result_warnings=result_warnings + notes, start_ns=start_ns, engine="c")
    if alt is not None:
        _alternated(summary, results, alt, slice_s, size)
    return summary


def _alternated(summary: dict, results: list[dict], alt: tuple[str, int], slice_s: float,
                size: int) -> None:
    """The target's rates over the time it was active; the alternate's figures in "alt"."""
    active = [r.get("active_ns") or [0, 0] for r in results]
    target_s, alt_s = (sum(a[k] for a in active) / 1e9 for k in (0, 1))
    latency = hist.merge([r["alt_hist"] for r in results if r.get("alt_hist")])
    alt_requests = latency.get_total_count()
    requests = summary["requests"]
    summary["rps"] = requests / target_s if target_s else 0.0
    summary["bytes_per_s"] = summary["rps"] * size
    summary["active_s"] = round(target_s, 6)
    summary["slice_s"] = round(slice_s, 6)
    if requests + alt_requests:
        summary["client_cpu_us_per_request"] = round(
            summary["client_cpu_s"] * 1e6 / (requests + alt_requests), 2)
    summary["alt"] = {
        "target": f"{alt[0]}:{alt[1]}",
        "conns_established": sum(r.get("alt_established", 0) for r in results),
        "requests": alt_requests, "active_s": round(alt_s, 6),
        "rps": alt_requests / alt_s if alt_s else 0.0,
        "errors": sum(r.get("alt_errors", 0) for r in results),
        "latency_us": hist.summarize(latency), "hist": hist.encode(latency),
    }
