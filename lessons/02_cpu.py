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

import gzip
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import servers
import servers.launch
from bench.load import run_load
from lessons.common import Claim, Lesson, linux_only, parse_args

SYS_CPU = Path("/sys/devices/system/cpu")
CACHES = ("L1d", "L1i", "L2", "L3")  # the caches this lesson reports, by the names lscpu uses
SIZE_UNITS_KIB = {"K": 1, "M": 1024, "G": 1024 * 1024}  # cache sizes in /sys read "32K", "1024K"...

CACHE_PROGRAM = Path(__file__).with_name("02_cache.c")  # pointer chase and false sharing, in C
SEPARATE_LINES_OFFSET = 128  # bytes between the two counters: separate lines (and line pairs)
SAME_LINE_OFFSET = 8  # bytes between the two counters: one 64-byte cache line

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


# -- Interrupts and the timer tick --------------------------------------------------------------------


def interrupts() -> dict[str, dict[int, int]]:
    """/proc/interrupts: per row (an IRQ number, or LOC, RES... for the CPU's own), the count on
    each online CPU, by CPU number (the header names the columns: CPU0 CPU1 ...)."""
    with open("/proc/interrupts") as f:
        cpus = [int(name[3:]) for name in f.readline().split()]
        rows = {}
        for line in f:
            name, _, rest = line.partition(":")
            counts = rest.split()[:len(cpus)]
            if len(counts) == len(cpus) and all(c.isdigit() for c in counts):
                rows[name.strip()] = dict(zip(cpus, map(int, counts), strict=True))
    return rows


def config_hz() -> int | None:
    """CONFIG_HZ from the kernel's own config, where the kernel exposes it (/proc/config.gz) or the
    distribution installed it (/boot/config-VERSION)."""
    for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
        try:
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=")[1])
        except OSError:
            continue
    return None


def jiffies() -> int | None:
    """The kernel's tick counter, which advances CONFIG_HZ times a second (from /proc/timer_list,
    readable by root only), or None."""
    try:
        with open("/proc/timer_list") as f:
            for line in f:
                if line.startswith("jiffies:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def spinner(cpu: int, seconds: float) -> int:
    """A child process that burns CPU on `cpu` for `seconds` (user mode only), then exits."""
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setaffinity(0, {cpu})
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                pass
        finally:
            os._exit(0)
    return pid


def tick_rates(busy_cpu: int, seconds: float) -> dict:
    """Interrupts per second on each CPU while one spinner keeps `busy_cpu` busy."""
    pid = spinner(busy_cpu, seconds + 0.5)
    try:
        time.sleep(0.2)  # the spinner is running on its CPU
        before, jiffies_before, t0 = interrupts(), jiffies(), time.monotonic()
        time.sleep(seconds)
        after, jiffies_after, t1 = interrupts(), jiffies(), time.monotonic()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    elapsed = t1 - t0

    def per_s(row: str) -> dict[int, float]:
        return {cpu: (count - before.get(row, {}).get(cpu, 0)) / elapsed
                for cpu, count in after.get(row, {}).items()}

    devices = [name for name in after if name.isdigit()]  # numbered rows: device IRQs
    return {"LOC": per_s("LOC"), "RES": per_s("RES"),
            "devices": sum(sum(per_s(name).values()) for name in devices),
            "jiffies": None if jiffies_before is None or jiffies_after is None
            else (jiffies_after - jiffies_before) / elapsed}


# -- User mode and kernel mode ---------------------------------------------------------------------------


def mode_split(work, seconds: float) -> dict:
    """Run `work` repeatedly for `seconds`; the share of its CPU time the kernel charged to user
    mode and to kernel mode (getrusage: ru_utime, ru_stime), and the calls per second."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    calls, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        work()
        calls += 1
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = after.ru_utime - before.ru_utime
    system = after.ru_stime - before.ru_stime
    return {"kernel_pct": 100 * system / (user + system) if user + system else float("nan"),
            "calls_per_s": calls / seconds}


# -- Caches and false sharing, in C (lessons/02_cache.c) ---------------------------------------------


def cache_program() -> tuple[Path | None, str | None]:
    """The built C program, or None and why not (servers/build.py names the fix)."""
    from servers.build import Unavailable, build
    try:
        return build(CACHE_PROGRAM, flags=("-pthread",)), None
    except Unavailable as e:
        return None, str(e)


def run_c(program: Path, *args) -> float:
    out = subprocess.run([str(program), *map(str, args)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return float(out.split()[1])


def false_sharing(program: Path, cpus: list[int], increments: int, repeats: int) -> dict:
    """ns per increment: one thread alone; two threads on two CPUs with counters on one cache
    line; the same with counters on separate lines. Interleaved, best of `repeats` for each (other
    programs on the machine can only slow a run down)."""
    runs = {"alone": [], "same line": [], "separate lines": []}
    for _ in range(repeats):
        runs["alone"].append(run_c(program, "share", SEPARATE_LINES_OFFSET, increments, cpus[0]))
        runs["same line"].append(run_c(program, "share", SAME_LINE_OFFSET, increments, *cpus[:2]))
        runs["separate lines"].append(run_c(program, "share", SEPARATE_LINES_OFFSET, increments, *cpus[:2]))
    return {name: min(times) for name, times in runs.items()}


# -- SMT siblings ------------------------------------------------------------------------------------------


def sibling_pairs(cpus: list[int]) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(two SMT siblings of one core, two CPUs on different cores), among `cpus`, where they exist."""
    core_of, siblings = {}, None
    for cpu in cpus:
        listed = read(SYS_CPU / f"cpu{cpu}" / "topology" / "thread_siblings_list")
        mates = [c for c in cpu_list(listed) if c in cpus] if listed else [cpu]
        core_of[cpu] = min(mates)
        if len(mates) > 1 and siblings is None:
            siblings = (mates[0], mates[1])
    separate = None
    for a in cpus:
        for b in cpus:
            if core_of[a] != core_of[b] and separate is None:
                separate = (a, b)
    return siblings, separate


def pinned_pair_rate(pair: tuple[int, int], iterations: int) -> float:
    """Iterations per second of two processes doing cpu_work, pinned one to each CPU of `pair`."""
    t0 = time.perf_counter()
    pids = []
    try:
        for cpu in pair:
            pid = os.fork()
            if pid == 0:
                try:
                    os.sched_setaffinity(0, {cpu})
                    cpu_work(iterations)
                finally:
                    os._exit(0)
            pids.append(pid)
    finally:
        for pid in pids:
            os.waitpid(pid, 0)
    return 2 * iterations / (time.perf_counter() - t0)


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


# -- Pictures and claims, from the recorded run (lessons/figures.py, tests/test_claims.py) ------------


def draw_caches(record: dict, fig) -> None:
    """Load latency against working-set size with the caches /sys lists, and false sharing."""
    from lessons.figures import COLOURS, not_measured
    series = record.get("series", {})
    chase, sharing = series.get("load_latency_ns"), series.get("false_sharing_ns")
    if not chase:
        why = record.get("skipped", {}).get("load latency, 16 KiB working set", "not in this run")
        return not_measured(fig, f"the pointer chase did not run: {why}")
    left, right = fig.subplots(1, 2, width_ratios=[2.2, 1])
    left.plot([p["bytes"] / 1024 for p in chase], [p["ns"] for p in chase], "o-", color=COLOURS[0])
    left.set_xscale("log", base=2)
    left.set_yscale("log")
    ticks = [p["bytes"] / 1024 for p in chase][::2]
    left.set_xticks(ticks, [f"{t:g} KiB" if t < 1024 else f"{t / 1024:g} MiB" for t in ticks],
                    rotation=45, ha="right")
    for i, (name, kib) in enumerate(series.get("cache_kib", {}).items()):
        if name == "L1i":
            continue  # instructions: the chase reads data
        left.axvline(kib, color=COLOURS[1 + i % 4], linestyle="--", linewidth=1)
        left.text(kib, left.get_ylim()[1], f" {name} {kib:,} KiB", rotation=90, va="top",
                  ha="right", fontsize=8, color=COLOURS[1 + i % 4])
    left.set_xlabel("working set of the random pointer chase")
    left.set_ylabel("ns per dependent load")
    left.set_title("Memory latency: each cache level is a step")
    if not sharing:
        right.text(0.5, 0.5, "false sharing: not measured", ha="center", transform=right.transAxes)
        right.set_axis_off()
        return
    names = ["alone", "separate lines", "same line"]
    right.bar(["one thread", "two threads,\nseparate lines", "two threads,\none line"],
              [sharing[n] for n in names], color=[COLOURS[2], COLOURS[0], COLOURS[1]])
    right.set_ylabel("CPU ns per atomic add")
    right.set_title("False sharing")
    right.tick_params(axis="x", labelsize=8)


PICTURES = {"caches": draw_caches}

CLAIMS = [
    Claim("Past one process per logical CPU there is nothing left to gain",
          lambda m: m["speedup, 2 per logical cpu"] <= m["speedup, 1 per logical cpu"] * 1.1,
          "twice as many processes as CPUs gain at most 10 % over one per CPU"),
    Claim("twice as many processes as CPUs gives nothing more",
          lambda m: m["speedup, 2 per logical cpu"] <= m["speedup, 1 per logical cpu"] * 1.1,
          "twice as many processes as CPUs gain at most 10 % over one per CPU"),
    Claim("the share of CPU time charged to the kernel is small for the interpreter's arithmetic and "
          "large for the loop of system calls",
          lambda m: m["kernel share of cpu time, compute loop"] < 10
          and m["kernel share of cpu time, write(2) to /dev/null loop"]
          > 3 * m["kernel share of cpu time, compute loop"],
          "compute loop under 10 % kernel time; the write(2) loop over 3x that"),
    Claim("a busy CPU takes at least one timer interrupt per tick",
          lambda m: m["timer interrupts per second, busy cpu"] >= 0.9 * m["CONFIG_HZ in the kernel's config"]
          and abs(m["jiffies per second (/proc/timer_list)"] / m["CONFIG_HZ in the kernel's config"] - 1) < 0.05,
          "busy CPU's timer interrupts >= 90 % of CONFIG_HZ; jiffies/s within 5 % of CONFIG_HZ"),
    Claim("A load that hits the L1 cache takes about a nanosecond; one that must go to DRAM takes "
          "around a hundred, and more",
          lambda m: 0.3 < m["load latency, 16 KiB working set"] < 3
          and m["load latency, largest working set"] > 60,
          "the 16 KiB chase is 0.3-3 ns per load; the largest over 60 ns"),
    Claim("the latency climbs in steps as the working set outgrows each cache",
          lambda m: m["load latency, 16 KiB working set"] < m["load latency, 512 KiB working set"]
          < m["load latency, largest working set"]
          and m["load latency, largest working set"] > 10 * m["load latency, 16 KiB working set"],
          "16 KiB < 512 KiB < largest, and largest over 10x the 16 KiB latency"),
    Claim("the two threads are slower when their counters share a cache line",
          lambda m: m["false sharing slowdown"] > 1.2,
          "one line is over 1.2x slower than separate lines"),
]


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

    # -- interrupts and the timer tick
    busy_cpu = allowed[-1]
    tick_s = 1.0 if quick else 2.0
    lesson.section(f"interrupts per second from /proc/interrupts, a spinner busy on CPU {busy_cpu} "
                   f"({tick_s:g} s)")
    tick_labels = ("timer interrupts per second, busy cpu", "timer interrupts per second, other cpus",
                   "jiffies per second (/proc/timer_list)", "CONFIG_HZ in the kernel's config",
                   "rescheduling interrupts per second, all cpus", "device interrupts per second, all cpus")
    why_not = linux_only("/proc/interrupts") or (
        None if os.path.exists("/proc/interrupts") else "no /proc/interrupts here")
    ticks = None
    if why_not:
        for label in tick_labels:
            lesson.skip(label, why_not)
    else:
        ticks = tick_rates(busy_cpu, tick_s)
        loc = ticks["LOC"]
        busy_rate = lesson.measure(tick_labels[0], loc[busy_cpu], "/s")
        others = [rate for cpu, rate in loc.items() if cpu != busy_cpu and cpu in allowed]
        if others:
            lesson.measure(tick_labels[1], statistics.fmean(others), "/s")
        else:
            lesson.skip(tick_labels[1], "this process may use one CPU only")
        if ticks["jiffies"] is None:
            lesson.skip(tick_labels[2], "/proc/timer_list is readable by root only")
        else:
            lesson.measure(tick_labels[2], ticks["jiffies"], "/s")
        hz = config_hz()
        if hz is None:
            lesson.skip(tick_labels[3], "neither /proc/config.gz nor /boot/config-$(uname -r) is readable")
        else:
            lesson.measure(tick_labels[3], hz, "Hz")
        lesson.measure(tick_labels[4], sum(ticks["RES"].values()), "/s")
        lesson.measure(tick_labels[5], ticks["devices"], "/s")

    # -- user mode and kernel mode
    mode_s = 0.5 if quick else 1.5
    lesson.section(f"user mode and kernel mode: CPU time as getrusage charges it ({mode_s:g} s each)")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        compute = mode_split(lambda: cpu_work(1_000), mode_s)
        syscalls = mode_split(lambda: os.write(devnull, b"x"), mode_s)
    finally:
        os.close(devnull)
    lesson.measure("kernel share of cpu time, compute loop", compute["kernel_pct"], "%")
    lesson.measure("kernel share of cpu time, write(2) to /dev/null loop", syscalls["kernel_pct"], "%")
    lesson.measure("write(2) calls per second", syscalls["calls_per_s"], "/s")
    lesson.measure("one write(2) round trip, user + kernel", 1e6 / syscalls["calls_per_s"], "µs")

    # -- caches: latency by working-set size, and false sharing
    program, why_not = cache_program()
    why_not = why_not or linux_only("pinning threads with pthread_setaffinity_np")
    chase_sizes = [1 << k for k in range(13, 27 if quick else 29)]  # 8 KiB .. 64 MiB (256 MiB full)
    loads = 1_000_000 if quick else 3_000_000
    lesson.section(f"memory latency: a random pointer chase through 8 KiB to "
                   f"{chase_sizes[-1] // (1 << 20)} MiB ({loads:,} dependent loads each, in C)")
    chase_labels = {1 << 14: "load latency, 16 KiB working set", 1 << 19: "load latency, 512 KiB working set",
                    1 << 23: "load latency, 8 MiB working set",
                    chase_sizes[-1]: "load latency, largest working set"}
    latencies = {}
    if why_not:
        for label in chase_labels.values():
            lesson.skip(label, why_not)
    else:
        try:
            for size in chase_sizes:
                latencies[size] = run_c(program, "chase", size, loads)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            why_not = f"{CACHE_PROGRAM.name} failed: {e}"  # and the false-sharing part is skipped too
            latencies = {}
            for label in chase_labels.values():
                lesson.skip(label, why_not)
    if latencies:
        for size, label in chase_labels.items():
            lesson.measure(label, latencies[size], "ns")
        lesson.series("load_latency_ns", [{"bytes": b, "ns": ns} for b, ns in latencies.items()])
        lesson.series("cache_kib", {name: seen[name][0] for name in CACHES if name in seen} if top else {})

    increments = 10_000_000 if quick else 30_000_000
    share_repeats = 3 if quick else 5
    lesson.section(f"false sharing: two threads, each atomically adding 1 to its own counter "
                   f"{increments:,} times (in C; CPU time per add, best of {share_repeats}, interleaved)")
    share_labels = ("one thread alone, per atomic add", "two threads, counters on one cache line",
                    "two threads, counters on separate lines", "false sharing slowdown")
    sharing = None
    if why_not or len(allowed) < 2:
        for label in share_labels:
            lesson.skip(label, why_not or "needs two CPUs; this process may use one")
    else:
        try:
            sharing = false_sharing(program, allowed, increments, share_repeats)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            for label in share_labels:
                lesson.skip(label, f"{CACHE_PROGRAM.name} failed: {e}")
    if sharing:
        lesson.measure(share_labels[0], sharing["alone"], "ns")
        lesson.measure(share_labels[1], sharing["same line"], "ns")
        lesson.measure(share_labels[2], sharing["separate lines"], "ns")
        lesson.measure(share_labels[3], sharing["same line"] / sharing["separate lines"], "x")
        lesson.series("false_sharing_ns", sharing)

    # -- SMT siblings, measured where they exist
    smt_label = "smt: two processes on sibling threads, against two separate cores"
    siblings, separate = sibling_pairs(allowed) if top else (None, None)
    smt_iterations = 1_000_000 if quick else 3_000_000
    lesson.section("SMT: the same work on two sibling threads of one core, then on two cores")
    smt_ratio = None
    if not top:
        lesson.skip(smt_label, "no CPU topology here")
    elif siblings is None or separate is None:
        lesson.skip(smt_label, "no SMT siblings among the CPUs this process may use "
                    "(each cpuN/topology/thread_siblings_list names only cpuN)")
    else:
        pairs = {"siblings": [], "separate": []}
        for _ in range(repeats_smt := (2 if quick else 3)):
            pairs["siblings"].append(pinned_pair_rate(siblings, smt_iterations))
            pairs["separate"].append(pinned_pair_rate(separate, smt_iterations))
        smt_ratio = lesson.measure(smt_label, max(pairs["siblings"]) / max(pairs["separate"]),
                                   f"x  (CPUs {siblings} vs {separate}, best of {repeats_smt})")

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
    if ticks:
        lesson.notice(f"CPU {busy_cpu}, kept busy, took {busy_rate:,.0f} timer interrupts a second"
                      + (f"; the tick counter (jiffies) advanced {ticks['jiffies']:,.0f} times a second"
                         if ticks["jiffies"] else "")
                      + (f", CONFIG_HZ = {hz}" if hz else "")
                      + ": one local-timer interrupt per tick, plus one for each high-resolution timer "
                      "(a sleep, a timeout) that expired between ticks")
    lesson.notice(f"a pure-Python loop spent {compute['kernel_pct']:.1f}% of its CPU time in the kernel; "
                  f"a loop of write(2) to /dev/null spent {syscalls['kernel_pct']:.0f}%: each call enters "
                  f"the kernel and returns, {syscalls['calls_per_s']:,.0f} times a second")
    if latencies:
        lesson.notice(f"a dependent load took {latencies[1 << 14]:.2g} ns through 16 KiB and "
                      f"{latencies[chase_sizes[-1]]:,.0f} ns through {chase_sizes[-1] >> 20} MiB (past the "
                      "caches: DRAM, and TLB misses): each level of the hierarchy is a step")
    if sharing:
        lesson.notice(f"two threads adding to counters on one cache line took {sharing['same line']:.2g} ns "
                      f"per add, on separate lines {sharing['separate lines']:.2g} ns (alone: "
                      f"{sharing['alone']:.2g} ns): {sharing['same line'] / sharing['separate lines']:.2g}x slower "
                      "on one line, which bounced between the cores although the threads shared no "
                      "variable (and only while both ran at once: on a busy machine they overlap less)")
    if smt_ratio:
        lesson.notice(f"two interpreter loops on SMT siblings did {smt_ratio:.2g}x the work of the same "
                      "two on separate cores")
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
