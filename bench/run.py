"""The bench runner: every server x cell x repeat, measured the same way, recorded as JSON lines.

    python -m bench run                         # the quick profile, every available server
    python -m bench run --profile full          # up to 10,000 connections
    python -m bench run --servers epoll,threads --conns 1,64 --sizes 1024 --repeats 2

One measurement: start the server pinned to its cores (servers.launch), wait for its readiness
line, run the load generator (bench.load) pinned to the other cores (warm-up, then the measured
window), sample the server's process tree meanwhile (bench.sample), SIGTERM it and check that it
exited 0 within 2 s. The order is interleaved (repeat, then cell, then server in a shuffled order)
so that slow drift of the machine (thermal throttling, a background job) spreads over all servers
instead of hurting whichever ran last.

A server that fails to start, crashes, refuses connections, hangs or corrupts bytes is a result
(status failed or degraded, with the reason and the tail of its stderr), never a crash of the run.

Output, in results/<run_id>/: meta.json (the machine, versions, pinning, limits, the plan) and
results.jsonl (one line per measurement). bench.report turns them into charts and report.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import servers
from bench import sample
from bench.load import run_load
from servers import launch

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "results"

CLEAN_EXIT_S = 2.0  # the contract: SIGTERM -> exit 0 within 2 s
CLIENT_SATURATED = 0.85  # client CPU utilisation above this, with the server below it: client-bound


@dataclass(frozen=True)
class Cell:
    conns: int
    size_bytes: int
    rate: float | None = None  # open loop at this many requests/s in total; None = closed loop

    @property
    def label(self) -> str:
        size = f"{self.size_bytes // 1024} KiB" if self.size_bytes % 1024 == 0 else f"{self.size_bytes} B"
        rate = f" @ {self.rate:,.0f}/s" if self.rate else ""
        return f"{self.conns} conn x {size}{rate}"


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


def _closed(conns, sizes):
    return [Cell(c, s) for s in sizes for c in conns]


PROFILES = {
    # A few seconds: proves the pipeline end to end (the test suite runs it).
    "smoke": Profile("smoke", _closed([1, 8], [1024]), repeats=1, warmup_s=0.2, measure_s=0.5,
                     description="two tiny cells, one repeat: checks the pipeline, measures nothing",
                     default_servers=["threads", "select"]),
    # `make bench`: every model at a glance on a 2-core laptop, in about five minutes.
    "quick": Profile("quick", _closed([1, 16, 128], [1024]) + [Cell(16, 64 * 1024)],
                     repeats=3, warmup_s=0.25, measure_s=0.75,
                     description="1, 16 and 128 connections x 1 KiB, 16 x 64 KiB, 3 repeats"),
    # `make bench-full`: the C10K sweep, and open-loop cells for the latency-vs-load curve.
    "full": Profile("full",
                    _closed([1, 16, 128, 1000, 10000], [1024]) + [Cell(16, 64 * 1024), Cell(128, 64 * 1024)]
                    + [Cell(64, 1024, r) for r in (2000, 5000, 10000, 20000, 40000)],
                    repeats=3, warmup_s=1.0, measure_s=3.0,
                    description="1 to 10,000 connections, 64 KiB cells, open loop 2k-40k req/s"),
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
    for name in ("uvloop", "trio", "gevent", "greenlet", "psutil", "hdrhistogram", "liburing",
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
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
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


def measure(entry: servers.Server, cell: Cell, repeat: int, profile: Profile,
            server_cpus: list[int] | None, client_cpus: list[int] | None) -> dict:
    record: dict = {
        "server": entry.name, "family": entry.family, "lesson": entry.lesson,
        "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": cell.rate,
        "mode": "open" if cell.rate else "closed", "repeat": repeat,
        "status": "ok", "reason": None, "stderr_tail": None,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if entry.serial and cell.conns > 1:
        record.update(status="skipped", reason="serial server: serves one client at a time, so "
                      "more connections only queue (see its 1-connection cell, and lesson 07)")
        return record
    try:
        server = launch.start(entry, cpus=server_cpus)
    except launch.StartError as exc:
        record.update(status="failed", reason=f"did not start: {exc.reason}", stderr_tail=exc.stderr)
        return record
    try:
        time.sleep(0.1)  # let the server finish start-up work before the idle baseline
        idle = sample.sample_tree(server.pid, memory=True)
        sampler = sample.TreeSampler(server.pid).start()
        try:
            load = run_load(server.host, server.port, conns=cell.conns, size=cell.size_bytes,
                            duration=profile.measure_s, warmup=profile.warmup_s, rate=cell.rate,
                            cpus=client_cpus, connect_timeout=10.0,
                            on_window=sampler.mark_window)
        finally:
            sampler.stop()
        crashed = server.proc.poll()
        code, elapsed = server.stop(signal.SIGTERM, timeout_s=CLEAN_EXIT_S + 3)
        record["stderr_tail"] = server.stderr_tail(2000) or None
    except Exception as exc:  # a bug in the bench itself must not lose the other measurements
        server.kill()
        record.update(status="failed", reason=f"bench error: {type(exc).__name__}: {exc}")
        return record
    finally:
        server.kill()

    _fill_load(record, load)
    _fill_server(record, load, sampler.window(), idle, cell, server_cpus)
    record["exit"] = {"code": code if crashed is None else crashed, "elapsed_s": round(elapsed, 3),
                      "clean": crashed is None and code == 0 and elapsed <= CLEAN_EXIT_S}
    _judge(record, load, crashed)
    return record


def _fill_load(record: dict, load: dict) -> None:
    for key in ("rps", "bytes_per_s", "requests", "duration_s", "latency_us", "hist", "errors",
                "conns_established", "client_cpu_s", "client_cpu_util", "client_cpu_us_per_request",
                "offered_rps", "send_lag_us", "latency_out_of_range", "warnings"):
        if key in load:
            record[key] = load[key]


def _fill_server(record, load, w: dict, idle, cell, server_cpus) -> None:
    requests = load.get("requests") or 0
    if not w:
        record["reason"] = "server could not be sampled at both edges of the window"
        return
    cores = len(server_cpus) if server_cpus else (os.cpu_count() or 1)
    record["server_cpu_s"] = round(w["cpu_s"], 4)
    record["server_cpu_util"] = round(w["cpu_s"] / (w["span_s"] * cores), 4) if w["span_s"] else None
    # Per request: the CPU the window cost, over the round trips the window completed, scaled to
    # the sampled span (which brackets the window to within one sampling interval).
    per_s = requests / load["duration_s"] if load.get("duration_s") else 0
    req_in_span = per_s * w["span_s"]
    record["server_cpu_us_per_request"] = round(w["cpu_s"] * 1e6 / req_in_span, 2) if req_in_span else None
    switches = w["ctx_voluntary"] + w["ctx_involuntary"]
    record["server_ctx_voluntary"] = w["ctx_voluntary"]
    record["server_ctx_involuntary"] = w["ctx_involuntary"]
    record["ctx_switches_per_request"] = round(switches / req_in_span, 3) if req_in_span else None
    record["server_processes"] = w["processes"]
    record["server_threads"] = w["threads"]
    record["server_fds"] = w["fds"]
    record["server_rss_bytes"] = w["rss_bytes"]
    record["server_uss_bytes"] = w["uss_bytes"]
    record["server_pss_bytes"] = w["pss_bytes"]
    # Memory per connection from the tree's PSS: after fork, parent and child share pages, so
    # each one's USS drops while the tree's PSS (shared pages split between sharers) adds up
    # right. USS, then RSS, where the OS has no PSS.
    idle_mem = busy_mem = None
    for attr in ("pss_bytes", "uss_bytes", "rss_bytes"):
        if idle is not None and getattr(idle, attr) is not None and w.get(attr) is not None:
            idle_mem, busy_mem = getattr(idle, attr), w[attr]
            record["server_mem_basis"] = attr.removesuffix("_bytes").upper()
            break
    record["server_mem_idle_bytes"] = idle_mem
    established = load.get("conns_established") or cell.conns
    # With a handful of connections, the growth is lost in the interpreter's own noise (a few
    # hundred KiB either way): per-connection memory is reported from 10 connections up.
    record["server_mem_per_conn_bytes"] = (
        round((busy_mem - idle_mem) / established, 1)
        if idle_mem is not None and busy_mem is not None and established >= 10 else None)
    client_util = load.get("client_cpu_util") or 0
    server_util = record["server_cpu_util"] or 0
    record["client_bound"] = bool(client_util >= CLIENT_SATURATED and server_util < client_util)


def _judge(record: dict, load: dict, crashed: int | None) -> None:
    errors = load.get("errors", {})
    reasons = []
    status = "ok"
    if crashed is not None:
        status, reasons = "failed", [f"server exited during the load (code {crashed})"]
    elif errors.get("mismatch"):
        status = "failed"
        reasons.append(f"corrupted bytes: {errors['mismatch']} connections got back what they did not send")
    elif not load.get("requests"):
        status = "failed"
        reasons.append("no round trip completed" + (
            f" ({errors.get('connect')} connect errors)" if errors.get("connect") else ""))
    else:
        if errors.get("connect"):
            status = "degraded"
            reasons.append(f"{errors['connect']} of {record['conns']} connections failed to connect")
        if errors.get("reset"):
            status = "degraded"
            reasons.append(f"{errors['reset']} connections reset")
        if errors.get("timeout"):
            status = "degraded"
            reasons.append(f"{errors['timeout']} requests unanswered for over 1 s")
    if status != "failed" and not record.get("exit", {}).get("clean", True):
        status = "degraded" if status == "ok" else status
        ex = record["exit"]
        reasons.append(f"did not exit cleanly on SIGTERM (code {ex['code']}, {ex['elapsed_s']} s)")
    if reasons:
        record["reason"] = "; ".join(reasons)
    record["status"] = status
    if status == "ok":
        record["stderr_tail"] = None  # keep the file small; stderr matters only when it went wrong


# ---------------------------------------------------------------------------------------------
# The run


def plan(profile: Profile, names: list[str], seed: int) -> list[tuple[int, Cell, str]]:
    """(repeat, cell, server) in interleaved order: each repeat visits every cell, and within a
    cell the servers run in a fresh random order, so drift does not line up with one server."""
    rng = random.Random(seed)
    order = []
    for repeat in range(profile.repeats):
        for cell in profile.cells:
            shuffled = list(names)
            rng.shuffle(shuffled)
            order += [(repeat, cell, name) for name in shuffled]
    return order


def new_run_dir(profile: str, out_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"{stamp}-{profile}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_dir / f"{stamp}-{profile}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


def run(profile: Profile, names: list[str], skipped: dict[str, str], out_dir: Path,
        seed: int = 0, progress: bool = True) -> Path:
    server_cpus, client_cpus, pin_note = split_cpus()
    run_dir = new_run_dir(profile.name, out_dir)
    commit, dirty = git_state()
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
        "servers": names,
        "skipped_servers": skipped,
        "cells": [{"conns": c.conns, "size_bytes": c.size_bytes, "rate": c.rate} for c in profile.cells],
        "repeats": profile.repeats, "warmup_s": profile.warmup_s, "measure_s": profile.measure_s,
        "seed": seed,
    }
    meta_path = run_dir / "meta.json"
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # the runner and its sampler stay off the server's core

    entries = {name: servers.get(name) for name in names}
    order = plan(profile, names, seed)
    t0 = time.monotonic()
    results_path = run_dir / "results.jsonl"
    with results_path.open("w") as out, _Progress(len(order), enabled=progress) as bar:
        for name, why in skipped.items():
            entry = servers.BY_NAME.get(name)
            for cell in profile.cells:
                out.write(json.dumps({
                    "server": name, "family": entry.family if entry else None,
                    "lesson": entry.lesson if entry else None,
                    "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": cell.rate,
                    "mode": "open" if cell.rate else "closed", "repeat": 0,
                    "status": "skipped", "reason": why}) + "\n")
        for repeat, cell, name in order:
            bar.update(f"{name:16} {cell.label}  (repeat {repeat + 1}/{profile.repeats})")
            record = measure(entries[name], cell, repeat, profile, server_cpus, client_cpus)
            out.write(json.dumps(record) + "\n")
            out.flush()
            bar.advance()
    meta["duration_s"] = round(time.monotonic() - t0, 1)
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return run_dir


def _io_uring_state() -> dict:
    entry = servers.BY_NAME.get("io_uring")
    if entry is None:
        return {"available": False, "reason": "no io_uring server in the registry"}
    ok, reason = entry.availability()
    return {"available": ok, "reason": reason}


class _Progress:
    """A rich progress bar with ETA; plain lines when rich is missing or output is not a tty."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled
        self._rich = None
        if enabled:
            try:
                from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                           TimeElapsedColumn, TimeRemainingColumn)
                self._rich = Progress(TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      TextColumn("ETA"), TimeRemainingColumn())
            except ImportError:
                pass

    def __enter__(self):
        if self._rich:
            self._rich.start()
            self._task = self._rich.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc):
        if self._rich:
            self._rich.stop()

    def update(self, text: str) -> None:
        if self._rich:
            self._rich.update(self._task, description=text)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {text}", flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._rich:
            self._rich.advance(self._task)


# ---------------------------------------------------------------------------------------------
# Summary


def load_results(run_dir: Path) -> list[dict]:
    with (run_dir / "results.jsonl").open() as f:
        return [json.loads(line) for line in f if line.strip()]


def summarize(records: list[dict]) -> list[dict]:
    """Per (cell, server): median rps over repeats, spread (max-min)/median, worst status."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["conns"], r["size_bytes"], r.get("rate"), r["server"]), []).append(r)
    rank = {"ok": 0, "skipped": 1, "degraded": 2, "failed": 3}
    rows = []
    for (conns, size, rate, name), group in groups.items():
        measured = [r for r in group if r["status"] in ("ok", "degraded") and r.get("rps")]
        rps = [r["rps"] for r in measured]
        p99 = [r["latency_us"]["p99"] for r in measured if r.get("latency_us")]
        cpu = [r["server_cpu_us_per_request"] for r in measured if r.get("server_cpu_us_per_request")]
        worst = max(group, key=lambda r: rank.get(r["status"], 0))
        med = statistics.median(rps) if rps else None
        rows.append({
            "conns": conns, "size_bytes": size, "rate": rate, "server": name,
            "rps_median": med, "rps_min": min(rps) if rps else None, "rps_max": max(rps) if rps else None,
            "spread": (max(rps) - min(rps)) / med if med else None,
            "p99_us_median": statistics.median(p99) if p99 else None,
            "server_cpu_us_per_request": statistics.median(cpu) if cpu else None,
            "client_bound": any(r.get("client_bound") for r in measured),
            "status": worst["status"], "reason": worst.get("reason"), "repeats": len(measured),
        })
    rows.sort(key=lambda r: (r["rate"] or 0, r["size_bytes"], r["conns"], -(r["rps_median"] or -1)))
    return rows


def print_summary(run_dir: Path) -> None:
    rows = summarize(load_results(run_dir))
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        Console = None
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["conns"], row["size_bytes"], row["rate"]), []).append(row)
    for (conns, size, rate), group in cells.items():
        title = Cell(conns, size, rate).label
        lines = []
        for i, row in enumerate(group, 1):
            if row["rps_median"] is None:
                lines.append((str(i), row["server"], "-", "-", "-", "-", f"{row['status']}: {row['reason'] or ''}"))
                continue
            flags = [row["status"]] if row["status"] != "ok" else []
            if row["client_bound"]:
                flags.append("client-bound")
            lines.append((str(i), row["server"], f"{row['rps_median']:,.0f}",
                          f"±{row['spread'] * 50:.1f}%" if row["spread"] is not None else "-",
                          f"{row['p99_us_median'] / 1000:.2f}" if row["p99_us_median"] else "-",
                          f"{row['server_cpu_us_per_request']:.1f}" if row["server_cpu_us_per_request"] else "-",
                          ", ".join(flags)))
        header = ("#", "server", "req/s (median)", "spread", "p99 ms", "server CPU µs/req", "flags")
        if Console:
            table = Table(title=title, title_justify="left")
            for h in header:
                table.add_column(h, justify="right" if h not in ("server", "flags") else "left")
            for line in lines:
                table.add_row(*line)
            Console().print(table)
        else:
            print(f"\n{title}")
            print("  ".join(header))
            for line in lines:
                print("  ".join(line))
    print("spread: half the range (max - min) of the repeats, as a share of the median")


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench run", description=__doc__.splitlines()[0],
                                     epilog="Profiles: " + "; ".join(
                                         f"{p.name}: {p.description}" for p in PROFILES.values()))
    parser.add_argument("--profile", choices=list(PROFILES), default="quick")
    parser.add_argument("--servers", help="comma-separated registry names (default: every available "
                        "server; `python -m servers` lists them)")
    parser.add_argument("--conns", type=_int_list, help="connection counts, e.g. 1,16,128 (replaces the profile's cells)")
    parser.add_argument("--sizes", type=_int_list, help="message sizes in bytes, e.g. 1024,65536")
    parser.add_argument("--rates", type=_int_list, help="open-loop total request rates, e.g. 1000,5000 (with --conns)")
    parser.add_argument("--repeats", type=int, help="repeats per cell (default: the profile's)")
    parser.add_argument("--measure-s", type=float, help="measured window per cell, seconds")
    parser.add_argument("--warmup-s", type=float, help="warm-up per cell, seconds")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where run directories go (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the interleaved order")
    parser.add_argument("--no-progress", action="store_true", help="plain output, no progress bar")
    parser.add_argument("--no-report", action="store_true", help="do not draw charts and report.md at the end")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    if args.conns or args.sizes or args.rates:
        conns = args.conns or sorted({c.conns for c in profile.cells})
        sizes = args.sizes or [1024]
        cells = _closed(conns, sizes)
        if args.rates:
            cells += [Cell(c, sizes[0], r) for c in conns for r in args.rates]
        profile = Profile(f"{profile.name}-custom", cells, profile.repeats, profile.warmup_s,
                          profile.measure_s, "custom cells from the command line",
                          profile.default_servers)
    for attr, value in (("repeats", args.repeats), ("measure_s", args.measure_s), ("warmup_s", args.warmup_s)):
        if value is not None:
            if value <= 0 and attr != "warmup_s" or value < 0:
                parser.error(f"--{attr.replace('_', '-')} must be positive")
            setattr(profile, attr, value)

    if args.servers:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in servers.BY_NAME]
        if unknown:
            parser.error(f"unknown server(s) {', '.join(unknown)}; pick from: {', '.join(servers.BY_NAME)}")
    else:
        names = profile.default_servers or [s.name for s in servers.SERVERS]
        names = [n for n in names if n in servers.BY_NAME]
    skipped = {}
    for name in list(names):
        ok, why = servers.get(name).availability()
        if not ok:
            skipped[name] = why
            names.remove(name)
    if not names:
        parser.error("none of the chosen servers is available here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))

    run_dir = run(profile, names, skipped, args.out, seed=args.seed,
                  progress=not args.no_progress)
    print_summary(run_dir)
    if not args.no_report:
        try:
            from bench import report
        except ImportError as exc:
            print(f"(no report: {exc})")
        else:
            path = report.build_report(run_dir)
            print(f"report: {path}")
    print(f"results: {run_dir}")
    return 0
