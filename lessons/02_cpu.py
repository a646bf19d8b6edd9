"""Lesson 02, the CPU (and 2.1, Hyper-Threading): what the cores are, and how work scales on them.

What it shows:
- the machine as the kernel describes it in /sys/devices/system/cpu: logical CPUs, the physical
  cores they belong to, SMT siblings (Intel calls SMT Hyper-Threading: two hardware threads sharing
  one core's execution units and caches), and the caches each CPU sees and shares with whom;
- CPU-bound work in 1, then several processes at once: it scales with physical cores, gains less
  from SMT siblings, and not at all past the number of logical CPUs (the scheduler then time-slices,
  lesson 01);
- an echo server (`reuseport`: one event loop per worker process, each with its own listening
  socket bound with SO_REUSEPORT so the kernel spreads connections over them) with 1 worker, then 2.

The OS mechanism: the topology files (Documentation/ABI/stable/sysfs-devices-system-cpu, and
Documentation/admin-guide/cputopology.rst), /sys/devices/system/cpu/smt/control, the cache
descriptions under cpuN/cache/indexM/, and fork(2) to run work in parallel processes.

In a virtual machine the guest sees vCPUs: the hypervisor may present no SMT siblings at all even
when the host's cores have them, and some hide the caches. The lesson prints what it sees and says so.

Linux-only: the /sys topology and pinning; elsewhere those parts are skipped. The scaling part runs
on any POSIX system.

    python -m lessons.02_cpu [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import servers
import servers.launch
from bench.load import run_load
from lessons.common import Lesson, linux_only, parse_args

SYS_CPU = Path("/sys/devices/system/cpu")
CACHES = ("L1d", "L1i", "L2", "L3")  # the caches this lesson reports, by the names lscpu uses
SIZE_UNITS_KIB = {"K": 1, "M": 1024, "G": 1024 * 1024}  # cache sizes in /sys read "32K", "1024K"...

# The echo-server load: enough connections for the kernel to spread them over two workers.
LOAD_CONNS = 32
LOAD_SIZE_BYTES = 64


# -- The machine, as /sys describes it -----------------------------------------------------------------


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_list(text: str) -> list[int]:
    """Parse the kernel's CPU list format, e.g. "0-3,8-11"."""
    cpus = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def topology(cpus: list[int]) -> dict:
    """Physical cores and SMT siblings of the given logical CPUs."""
    cores = set()
    siblings_per_core = 1
    for cpu in cpus:
        top = SYS_CPU / f"cpu{cpu}" / "topology"
        package, die, core = (read(top / name) for name in ("physical_package_id", "die_id", "core_id"))
        cores.add((package, die, core))
        siblings = read(top / "thread_siblings_list") or str(cpu)  # CPUs sharing this core
        siblings_per_core = max(siblings_per_core, len(cpu_list(siblings)))
    packages = {package for package, _, _ in cores}
    return {"physical_cores": len(cores), "smt_per_core": siblings_per_core, "packages": len(packages)}


def caches(cpu: int) -> dict:
    """The caches `cpu` sees: {"L2": (size in KiB, number of logical CPUs sharing it)}."""
    found = {}
    for index in sorted((SYS_CPU / f"cpu{cpu}" / "cache").glob("index*")):
        level, kind, size = (read(index / name) for name in ("level", "type", "size"))
        if not (level and kind and size):
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        kib = int(size[:-1]) * SIZE_UNITS_KIB[size[-1]] if size[-1] in SIZE_UNITS_KIB else int(size) // 1024
        shared = read(index / "shared_cpu_list")
        found[name] = (kib, len(cpu_list(shared)) if shared else 1)
    return found


def under_hypervisor() -> bool:
    """The CPU sets the "hypervisor" flag in a virtual machine."""
    flags = ""
    for line in (read(Path("/proc/cpuinfo")) or "").splitlines():
        if line.startswith("flags"):
            flags = line
            break
    return " hypervisor" in flags


# -- CPU-bound work in several processes ------------------------------------------------------------


def cpu_work(iterations: int) -> int:
    """Pure Python arithmetic: it never waits, so only a CPU can make it go faster."""
    total = 0
    for i in range(iterations):
        total += i * i % 7
    return total


def run_in_processes(n: int, iterations: int) -> float:
    """Fork `n` children that each do `cpu_work(iterations)`; return the wall time for all, in s."""
    t0 = time.perf_counter()
    pids = []
    try:
        for _ in range(n):
            pid = os.fork()
            if pid == 0:  # ---- the child: work, then exit without Python's cleanup
                try:
                    cpu_work(iterations)
                finally:
                    os._exit(0)
            pids.append(pid)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
    return time.perf_counter() - t0


def work_rate(n: int, iterations: int, repeats: int) -> float:
    """Iterations per second done by `n` processes together: the best of `repeats` runs, since
    other programs running meanwhile can only slow a run down, never speed it up."""
    return max(n * iterations / run_in_processes(n, iterations) for _ in range(repeats))


# -- An echo server with 1 and 2 worker processes --------------------------------------------------


def load_server(name: str, workers: int, server_cpus, client_cpus, seconds: float) -> dict:
    """Start `name` with --workers, load it with bench.load (closed loop), stop it."""
    server = servers.launch.start(servers.get(name), ["--workers", str(workers)], cpus=server_cpus)
    try:
        return run_load(server.host, server.port, conns=LOAD_CONNS, size=LOAD_SIZE_BYTES,
                        duration=seconds, warmup=min(1.0, seconds / 2), cpus=client_cpus)
    finally:
        server.stop()


def server_unavailable(name: str) -> str | None:
    if name not in servers.BY_NAME:
        return f"no {name!r} server in the registry (python -m servers lists them)"
    ok, reason = servers.get(name).availability()
    return None if ok else reason


# -- The lesson -------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("02", "The CPU and Hyper-Threading", args)
    quick = lesson.quick

    lesson.section("the CPUs, from /sys/devices/system/cpu")
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))  # the CPUs this process may run on
    else:
        allowed = list(range(os.cpu_count() or 1))
    lesson.measure("logical cpus this process may use", len(allowed), "")
    why_not = linux_only("/sys/devices/system/cpu") or (
        None if (SYS_CPU / f"cpu{allowed[0]}" / "topology").is_dir() else "no /sys CPU topology here")
    top = None
    if why_not:
        for label in ("physical cores", "smt threads per core", "cpu packages (sockets)", "smt control",
                      "running under a hypervisor", *(f"{c} cache" for c in CACHES),
                      "cpus sharing each L2", "cpus sharing the L3"):
            lesson.skip(label, why_not)
    else:
        top = topology(allowed)
        lesson.measure("physical cores", top["physical_cores"], "")
        lesson.measure("smt threads per core", top["smt_per_core"], "")
        lesson.measure("cpu packages (sockets)", top["packages"], "")
        smt = read(SYS_CPU / "smt" / "control")
        if smt is None:
            lesson.skip("smt control", "no /sys/devices/system/cpu/smt/control (kernel without SMT support)")
        else:
            lesson.measure("smt control", smt)
        lesson.measure("running under a hypervisor", "yes" if under_hypervisor() else "no")
        seen = caches(allowed[0])
        for name in CACHES:
            if name in seen:
                lesson.measure(f"{name} cache", seen[name][0], "KiB")
            else:
                lesson.skip(f"{name} cache", f"CPU {allowed[0]} lists no {name} cache in /sys")
        for name, label in (("L2", "cpus sharing each L2"), ("L3", "cpus sharing the L3")):
            if name in seen:
                lesson.measure(label, seen[name][1], "")
            else:
                lesson.skip(label, f"CPU {allowed[0]} lists no {name} cache in /sys")

    iterations = 2_000_000 if quick else 6_000_000
    repeats = 2 if quick else 3
    n_logical = len(allowed)
    n_physical = top["physical_cores"] if top else n_logical
    lesson.section(f"CPU-bound work in 1 to {2 * n_logical} processes ({iterations:,} iterations each, "
                   f"best of {repeats})")
    rate_1 = lesson.measure("work rate, 1 process", work_rate(1, iterations, repeats) / 1e6,
                            "M iterations/s")
    speedup, rate_of = {}, {1: rate_1}  # rate_of[n]: measured once per process count
    for key, n in (("1 per physical core", n_physical), ("1 per logical cpu", n_logical),
                   ("2 per logical cpu", 2 * n_logical)):
        if n not in rate_of:
            rate_of[n] = work_rate(n, iterations, repeats) / 1e6
        speedup[key] = lesson.measure(f"speedup, {key}", rate_of[n] / rate_1, f"x  ({n} processes)")

    name = "reuseport"
    seconds = 2.0 if quick else 5.0
    labels = [f"{name} {what}, {w}" for w in ("1 worker", "2 workers")
              for what in ("requests per second", "p99 latency")]
    if n_logical >= 4:
        server_cpus, client_cpus = allowed[:n_logical // 2], allowed[n_logical // 2:]
        where = f"server on CPUs {server_cpus}, load generator on {client_cpus}"
    else:
        server_cpus = client_cpus = None
        where = f"server and load generator share all {n_logical} CPUs"
    lesson.section(f"the {name} echo server with 1 and 2 workers ({LOAD_CONNS} connections, "
                   f"{LOAD_SIZE_BYTES} B messages, {seconds:g} s; {where})")
    why_not = server_unavailable(name)
    results = {}
    if why_not:
        for label in labels:
            lesson.skip(label, why_not)
    else:
        for workers, tag in ((1, "1 worker"), (2, "2 workers")):
            r = results[workers] = load_server(name, workers, server_cpus, client_cpus, seconds)
            lesson.measure(f"{name} requests per second, {tag}", r["rps"], "req/s")
            lesson.measure(f"{name} p99 latency, {tag}", r["latency_us"]["p99"], "µs")

    # -- what to notice, computed
    if top:
        if top["smt_per_core"] > 1:
            lesson.notice(f"each physical core runs {top['smt_per_core']} hardware threads (SMT): "
                          f"{n_logical} logical CPUs on {n_physical} cores")
        else:
            lesson.notice("no SMT siblings are visible: each logical CPU is its own core"
                          + (" as far as this virtual machine can tell; the hypervisor may still "
                             "run two vCPUs on one host core's hardware threads"
                             if under_hypervisor() else " (SMT is absent or switched off)"))
    lesson.notice(f"{n_logical} processes did {speedup['1 per logical cpu']:.2g}x the work of one; "
                  f"{2 * n_logical} processes did {speedup['2 per logical cpu']:.2g}x: past one "
                  "process per CPU, they only take turns")
    if n_physical < n_logical:
        lesson.notice(f"one process per physical core gave {speedup['1 per physical core']:.2g}x; "
                      f"filling the SMT siblings too gave {speedup['1 per logical cpu']:.2g}x")
    if results:
        one, two = results[1], results[2]
        gain = two["rps"] / one["rps"]
        lesson.notice(f"{name}: 2 workers served {gain:.2g}x the requests per second of 1 worker, "
                      f"p99 latency {one['latency_us']['p99']:,.0f} µs -> {two['latency_us']['p99']:,.0f} µs")
        if server_cpus is None and gain < 1.3:
            lesson.notice(f"here the server and the load generator share {n_logical} CPUs: a second "
                          "worker mostly takes CPU time from the load generator; with 4 or more CPUs "
                          "this lesson gives each its own half")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
