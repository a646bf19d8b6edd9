"""The C load engine: build it, run it, turn what it prints into bench.load's worker results.

    python -m bench.load --engine c --target 127.0.0.1:9000 --conns 64

bench/load/__init__.py holds the readable Python/uvloop engine and its design essay (closed and open loop,
coordinated omission, error kinds); engine.c in this directory does the same in C, as one epoll
loop per thread, each thread pinned to a CPU, so that the generator costs less CPU per request
than any server it measures and is never the bottleneck. This module is the glue:

- `available()` builds engine.c at first use with servers/build.py (cached by source hash) and
  runs it once in a subprocess; a missing compiler or a crash is a reason, never an exception.
- `run(...)` starts the engine, waits for "ready <established>", sends "start <ns>", calls the
  runner's `on_window(window_start_ns, window_end_ns)` right then (as the Python engine does), and
  reads the result lines. Latencies arrive as (value, count) pairs, one per non-zero bucket of the
  engine's HdrHistogram port; they are recorded into `hdrh` histograms at the bucket's lowest
  value, which lands in the same bucket, so merging, encoding and percentiles stay exactly those
  of bench/hist.py.
- The result is one "worker result" in the format bench.load's `_summarize` reads, so both engines
  produce the same summary keys.

Past CONNS_PER_SOURCE connections to a loopback server, the engine spreads its connections over
several source addresses (127.0.0.1, 127.0.0.2, ...): one (source, destination) pair has only
net.ipv4.ip_local_port_range's ephemeral ports (about 28,000 by default).
"""

from __future__ import annotations

import ipaddress
import math
import os
import select
import subprocess
import tempfile
import time
from pathlib import Path

from bench import hist
from servers import build

SOURCE = Path(__file__).resolve().with_name("engine.c")
FLAGS = ("-pthread",)
# Connections per loopback source address. One source has ~28,000 ephemeral ports toward one
# server, but connect() gets slower as they fill: the kernel searches the range for a free port
# (__inet_hash_connect). Measured on a 2-core VM: 15,000 connections to c-epoll took 11.3 s to
# open from one source (2.2 s of system time), 5.7 s (0.6 s) from five; 100,000 to reuseport
# (6 workers) took 185 s from 5 sources of 20,000 (the p99 at 10,000 req/s: 878 ms), 32 s from
# 20 sources of 5,000 (p99 9 ms), which is the pace of the ramp itself.
CONNS_PER_SOURCE = 5_000
MAX_SOURCES = 254  # 127.0.0.1 .. 127.0.0.254
SPAWN_BUDGET_S = 5.0  # to exec a C program; generous, for slow CI machines
FD_HEADROOM = 64  # files an engine process needs besides its connections (engine.c: the same)
MAX_PROCESSES = 64  # engine processes at most, when the fd limit splits the connections
PROBE_TIMEOUT_S = 30.0

ERROR_KINDS = ("connect", "reset", "mismatch", "unserved", "timeout")

_availability: tuple[bool, str | None] | None = None


class EngineError(RuntimeError):
    """The engine could not run at all (it printed why, e.g. too few file descriptors)."""


def binary() -> Path:
    """The built engine; raises build.Unavailable with the reason and the fix."""
    return build.build(SOURCE, flags=FLAGS)


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
                _availability = (False, f"the built engine does not run here ({why}); rebuild "
                                        f"with `python -m servers.build {SOURCE.relative_to(build.ROOT)}`")
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


def _histogram(fields: list[str]) -> str:
    """Encode the engine's (value, count) pairs as an hdrh histogram."""
    histogram = hist.new_histogram()
    record_value = histogram.record_value
    for i in range(0, len(fields) - 1, 2):
        record_value(int(fields[i]), int(fields[i + 1]))
    return hist.encode(histogram)


def parse_result(lines: list[str]) -> dict:
    """The engine's result lines -> a worker result as bench.load's _summarize reads it."""
    result = {"conns_established": 0, "conns_open_at_end": 0, "stall_limit_s": 1.0,
              "connect_s": 0.0,
              "hist": hist.encode(hist.new_histogram()), "send_lag_hist": None,
              "latency_out_of_range": 0, "offered": 0, "errors": dict.fromkeys(ERROR_KINDS, 0),
              "error_examples": {}, "cpu_user_s": 0.0, "cpu_sys_s": 0.0, "warnings": []}
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


def processes_for(conns: int) -> int:
    """How many engine processes `conns` connections need: RLIMIT_NOFILE is per process, and
    an administrator may not let even root raise the hard limit (no CAP_SYS_RESOURCE, as in
    many containers). Below the limit: one process, its workers threads."""
    per_process = per_process_conns()
    return max(1, math.ceil(conns / per_process)) if per_process else MAX_PROCESSES + 1


def per_process_conns() -> int:
    """Connections one engine process can hold under the hard fd limit (0: hardly any)."""
    try:
        import resource
    except ImportError:
        return 1 << 30
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        return 1 << 30
    return max(0, hard - FD_HEADROOM)


def fd_shortfall(conns: int) -> str | None:
    """Why the engine cannot open files for `conns` connections here (with the fix), or None.

    Each engine process raises its soft limit to the hard one (and the hard one too where it
    may); past the hard limit the connections are spread over several processes, at most
    MAX_PROCESSES. The probe asks the engine itself about one process's share.
    """
    processes = processes_for(conns)
    if processes > MAX_PROCESSES:
        hard = per_process_conns() + FD_HEADROOM
        wanted = math.ceil(conns / MAX_PROCESSES) + FD_HEADROOM
        return (f"{conns:,} connections need about {wanted:,} open files in each of "
                f"{MAX_PROCESSES} engine processes, but the hard limit (ulimit -Hn) is {hard:,}: "
                f"raise it, e.g. `ulimit -n {max(wanted, 20000)}` as root or in "
                "/etc/security/limits.conf, then run again")
    try:
        done = subprocess.run([str(binary()), "--probe-fds", str(math.ceil(conns / processes))],
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (build.Unavailable, OSError, subprocess.TimeoutExpired):
        return None  # the engine is unavailable: the caller falls back, and checks for Python
    if done.returncode:
        return done.stderr.strip() or f"the engine's fd probe failed (exit {done.returncode})"
    return None


def run(host: str, port: int, *, conns: int, size: int, duration: float, warmup: float,
        rate: float | None, threads: int, cpus: list[int] | None, connect_timeout: float,
        connect_budget_s: float, ramp_batch: int, ramp_pause_s: float,
        start_delay_s: float, wrapup_budget_s: float,
        on_window=None, alt: tuple[str, int] | None = None,
        slice_s: float | None = None) -> tuple[list[dict], int | None, int]:
    """Run the engine: (one worker result per engine process, start_ns or None if nothing was
    measured, threads in all).

    Usually one process with `threads` threads. Past the per-process fd limit, several processes
    (processes_for), connection g in process g % P, all started at the same time with the same
    schedule, as if they were one. Every phase is bounded: exec + connect phase, then warm-up +
    window + wrap-up; an engine that misses a deadline is killed and named in the warnings. No
    engine outlives this call: all are killed on any exception here (Ctrl-C included), and each
    stops by itself if this process dies (its stdin reads EOF; PR_SET_PDEATHSIG sends SIGTERM).

    `alt` (host, port) and `slice_s`: a second server measured in the same window, in alternating
    slices (engine.c's header says how); closed loop, one engine process.
    """
    n_procs = min(processes_for(conns * (2 if alt else 1)), conns)
    if alt is not None and (n_procs > 1 or rate is not None or not slice_s or slice_s <= 0):
        raise ValueError("an alternate server (alt) takes a slice, closed loop and connections "
                         "that fit one engine process")
    start_wait_s = SPAWN_BUDGET_S + connect_budget_s + 5.0
    sources = sources_for(host, conns)
    procs: list[subprocess.Popen] = []
    stderrs = []
    total_threads = 0
    try:
        for p in range(n_procs):
            share = len(range(p, conns, n_procs))
            proc_threads = min(threads, share)
            ramp = max(1, math.ceil(ramp_batch / (n_procs * proc_threads)))
            argv = [str(binary()), "--host", host, "--port", str(port), "--conns", str(share),
                    "--first", str(p), "--step", str(n_procs), "--total-conns", str(conns),
                    "--size", str(size), "--warmup", repr(float(warmup)),
                    "--duration", repr(float(duration)), "--threads", str(proc_threads),
                    "--connect-timeout", repr(float(connect_timeout)),
                    "--connect-budget", repr(float(connect_budget_s)),
                    "--ramp-batch", str(ramp), "--ramp-pause", repr(float(ramp_pause_s)),
                    "--start-wait", repr(float(start_wait_s)), "--sources", str(sources)]
            if rate is not None:
                argv += ["--rate", repr(float(rate))]
            if alt is not None:
                argv += ["--alt", f"{alt[0]}:{alt[1]}", "--slice-ms", repr(slice_s * 1000)]
            if cpus:
                # process p's threads continue the round of CPUs where process p - 1's ended
                offset = (total_threads) % len(cpus)
                argv += ["--cpus", ",".join(map(str, cpus[offset:] + cpus[:offset]))]
            total_threads += proc_threads
            stderrs.append(tempfile.TemporaryFile())
            procs.append(subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=stderrs[-1]))
        results, start_ns = _talk(procs, stderrs, warmup=warmup, duration=duration, rate=rate,
                                  start_delay_s=start_delay_s, wrapup_budget_s=wrapup_budget_s,
                                  ready_budget_s=SPAWN_BUDGET_S + connect_budget_s,
                                  on_window=on_window)
        return results, start_ns, total_threads
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdin.close()
            proc.stdout.close()
        for f in stderrs:
            f.close()


def _said(proc, stderr) -> str:
    stderr.seek(0)
    return stderr.read().decode("utf-8", "replace").strip()


def _talk(procs, stderrs, *, warmup, duration, rate, start_delay_s, wrapup_budget_s,
          ready_budget_s, on_window) -> tuple[list[dict], int | None]:
    lines = [_Lines(proc.stdout.fileno()) for proc in procs]
    deadline = time.monotonic() + ready_budget_s
    established, not_ready, connect_s = 0, [], 0.0
    for i, (proc, reader) in enumerate(zip(procs, lines, strict=True)):
        ready = reader.next(deadline)
        if ready is not None and ready.startswith("ready "):
            fields = ready.split()
            established += int(fields[1])
            connect_s = max(connect_s, float(fields[2]))
            continue
        proc.kill()
        proc.wait()
        said = _said(proc, stderrs[i])
        if proc.returncode == 2 and said:
            raise EngineError(said)
        not_ready.append(f"C engine process {i + 1} of {len(procs)} "
                         + (f"was not ready in {ready_budget_s:.0f} s" if proc.returncode == -9
                            else f"exited (code {proc.returncode}) before it was ready")
                         + (f": {said}" if said else ""))
    live = [(proc, reader) for proc, reader in zip(procs, lines, strict=True)
            if proc.poll() is None]
    start_ns = None
    if established and not not_ready:
        start_ns = time.monotonic_ns() + int(start_delay_s * 1e9)
        for proc, _ in live:
            _write_quietly(proc, f"start {start_ns}\n")
        if on_window is not None:
            window_start_ns = start_ns + int(warmup * 1e9)
            on_window(window_start_ns, window_start_ns + int(duration * 1e9))
        deadline = time.monotonic() + start_delay_s + warmup + duration + wrapup_budget_s
    else:
        for proc, _ in live:
            _write_quietly(proc, "stop\n")
        deadline = time.monotonic() + wrapup_budget_s
    results = []
    for _proc, reader in live:
        got: list[str] = []
        while (line := reader.next(deadline)) is not None and line != "done":
            got.append(line)
        result = parse_result(got)
        if line != "done":
            result["warnings"].append("a C engine process sent no complete result in time; it "
                                      "was killed and its connections are missing from the "
                                      "result")
        if rate is None:
            result["send_lag_hist"] = None
        result["connect_s"] = connect_s
        results.append(result)
    if not_ready:  # as the Python engine does for a worker lost before "ready"
        lost = parse_result([])
        lost["warnings"] = [*not_ready, "an engine process failed to get ready; nothing was "
                                        "measured; its connections are missing from the result"]
        if rate is None:
            lost["send_lag_hist"] = None
        results.append(lost)
    return results, start_ns


def _write_quietly(proc, text: str) -> None:
    try:
        proc.stdin.write(text.encode())
        proc.stdin.flush()
    except OSError:
        pass  # it is gone already; its missing result says so
