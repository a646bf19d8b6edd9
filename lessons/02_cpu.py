"""Lesson 02, the CPU (and 2.1, Hyper-Threading): what the cores are, and how work scales on them.

What it shows, one section (a function below, beside the helpers only it uses) each:
1. the machine as the kernel describes it in /sys/devices/system/cpu (lessons/cpus.py): logical
   CPUs, the physical cores they belong to, SMT siblings (Intel calls SMT Hyper-Threading: two
   hardware threads sharing one core's execution units and caches), performance and efficiency
   cores on a hybrid CPU, and the caches each CPU sees and shares with whom;
2. the timer tick and the interrupts, counted in /proc/interrupts;
3. user mode and kernel mode: how the kernel charges a process's time, and what a system call
   costs, in Python and in C (lessons/native/02_kernel.c), where the vDSO avoids the kernel;
4. a context switch, timed in C: two processes, then two threads, handing a byte back and forth
   on one CPU;
5. memory latency by working-set size and false sharing, in C (lessons/02_cache.c);
6. SMT measured where siblings exist: the same work on two siblings of one core, then on two cores;
7. CPU-bound work in 1, then several processes at once: it scales with physical cores, gains less
   from SMT siblings, and not at all past the number of logical CPUs (the scheduler then
   time-slices, lesson 01); where it falls short, the run says what it saw (other programs, the
   hypervisor's steal, efficiency cores, a clock that fell);
8. an echo server (`reuseport`: one event loop per worker process, each with its own listening
   socket bound with SO_REUSEPORT so the kernel spreads connections over them) with 1 worker, then
   2, with the server and the load generator on CPUs that share no physical core.

The OS mechanism: the topology files (Documentation/ABI/stable/sysfs-devices-system-cpu, and
Documentation/admin-guide/cputopology.rst), /sys/devices/system/cpu/smt/control, the cache
descriptions under cpuN/cache/indexM/, /proc/interrupts, /proc/stat, getrusage(2), fork(2).

In a virtual machine the guest sees vCPUs: the hypervisor may present no SMT siblings at all even
when the host's cores have them, and some hide the caches. The lesson prints what it sees and says so.

Linux-only: the /sys topology and pinning; elsewhere those parts are skipped. The scaling part runs
on any POSIX system.

    python -m lessons.02_cpu [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lessons import cpus, loadgen, procfs
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spawn import cpu_work, in_processes

CACHES = ("L1d", "L1i", "L2", "L3")  # the caches this lesson reports, by the names lscpu uses
CACHE_PROGRAM = Path(__file__).with_name("02_cache.c")  # pointer chase and false sharing, in C
KERNEL_PROGRAM = Path(__file__).parent / "native" / "02_kernel.c"  # system calls, context switches
SEPARATE_LINES_OFFSET = 128  # bytes between the two counters: separate lines (and line pairs)
SAME_LINE_OFFSET = 8  # bytes between the two counters: one 64-byte cache line


def built(source: Path) -> tuple[Path | None, str | None]:
    """The C program built (servers/build.py), or None and why not, with the fix."""
    from servers.build import Unavailable, build
    try:
        return build(source, flags=("-pthread",)), None
    except Unavailable as e:
        return None, str(e)


def run_c(program: Path, *args) -> dict[str, float]:
    """Run a lesson's C program; its output is "name value" lines."""
    out = subprocess.run([str(program), *map(str, args)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line.strip()}


# -- 1. the machine, as /sys describes it --------------------------------------------------------------

MACHINE_LABELS = ("physical cores", "smt threads per core", "cpu packages (sockets)", "smt control",
                  "core types", "running under a hypervisor", *(f"{c} cache" for c in CACHES),
                  "cpus sharing each L2", "cpus sharing the L3")


def machine(lesson: Lesson, allowed: list[int]) -> tuple[cpus.Topology | None, dict, list[str]]:
    """Section 1: cores, SMT siblings, core types and caches. (topology, caches, notices)."""
    lesson.section("the CPUs, from /sys/devices/system/cpu")
    lesson.measure("logical cpus this process may use", len(allowed), "")
    system = cpus.SYS / "devices" / "system" / "cpu"
    why_not = linux_only("/sys/devices/system/cpu") or (
        None if (system / f"cpu{allowed[0]}" / "topology").is_dir() else "no /sys CPU topology here")
    if why_not:
        lesson.skip_all(MACHINE_LABELS, why_not)
        return None, {}, []
    top = cpus.topology(allowed)
    lesson.measure("physical cores", top.physical_cores, "")
    lesson.measure("smt threads per core", top.smt_per_core, "")
    lesson.measure("cpu packages (sockets)", top.packages, "")
    smt = cpus.read(system / "smt" / "control")
    if smt is None:
        lesson.skip("smt control", "no /sys/devices/system/cpu/smt/control (kernel without SMT support)")
    else:
        lesson.measure("smt control", smt)
    kinds = [top.kind_of.get(core[0], "") for core in top.cores]
    lesson.measure("core types", f"{kinds.count('P')} performance, {kinds.count('E')} efficiency"
                   if top.hybrid else "all alike")
    hypervisor = cpus.under_hypervisor()
    lesson.measure("running under a hypervisor", "yes" if hypervisor else "no")
    seen = cpus.caches(allowed[0])
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
    if top.smt_per_core > 1:
        notice = (f"each physical core runs {top.smt_per_core} hardware threads (SMT): "
                  f"{len(allowed)} logical CPUs on {top.physical_cores} cores")
    else:
        notice = ("no SMT siblings are visible: each logical CPU is its own core"
                  + (" as far as this virtual machine can tell; the hypervisor may still run two vCPUs "
                     "on one host core's hardware threads" if hypervisor else " (SMT is absent or switched off)"))
    return top, seen, [notice]


# -- 2. interrupts and the timer tick --------------------------------------------------------------------

TICK_LABELS = ("timer interrupts per second, busy cpu", "timer interrupts per second, other cpus",
               "jiffies per second (/proc/timer_list)", "CONFIG_HZ in the kernel's config",
               "rescheduling interrupts per second, all cpus", "device interrupts per second, all cpus")


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
        before, jiffies_before, t0 = procfs.interrupts(), procfs.jiffies(), time.monotonic()
        time.sleep(seconds)
        after, jiffies_after, t1 = procfs.interrupts(), procfs.jiffies(), time.monotonic()
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


def tick(lesson: Lesson, allowed: list[int], quick: bool) -> list[str]:
    """Section 2: the local timer's interrupts on a busy CPU, and the others."""
    busy_cpu = allowed[-1]
    tick_s = 1.0 if quick else 2.0
    lesson.section(f"interrupts per second from /proc/interrupts, a spinner busy on CPU {busy_cpu} "
                   f"({tick_s:g} s)")
    why_not = linux_only("/proc/interrupts") or (
        None if os.path.exists("/proc/interrupts") else "no /proc/interrupts here")
    if why_not:
        lesson.skip_all(TICK_LABELS, why_not)
        return []
    ticks = tick_rates(busy_cpu, tick_s)
    loc = ticks["LOC"]
    busy_rate = lesson.measure(TICK_LABELS[0], loc[busy_cpu], "/s")
    others = [rate for cpu, rate in loc.items() if cpu != busy_cpu and cpu in allowed]
    if others:
        lesson.measure(TICK_LABELS[1], statistics.fmean(others), "/s")
    else:
        lesson.skip(TICK_LABELS[1], "this process may use one CPU only")
    if ticks["jiffies"] is None:
        lesson.skip(TICK_LABELS[2], "/proc/timer_list is readable by root only")
    else:
        lesson.measure(TICK_LABELS[2], ticks["jiffies"], "/s")
    hz = procfs.config_hz()
    if hz is None:
        lesson.skip(TICK_LABELS[3], "neither /proc/config.gz nor /boot/config-$(uname -r) is readable")
    else:
        lesson.measure(TICK_LABELS[3], hz, "Hz")
    lesson.measure(TICK_LABELS[4], sum(ticks["RES"].values()), "/s")
    lesson.measure(TICK_LABELS[5], ticks["devices"], "/s")
    return [f"CPU {busy_cpu}, kept busy, took {busy_rate:,.0f} timer interrupts a second"
            + (f"; the tick counter (jiffies) advanced {ticks['jiffies']:,.0f} times a second"
               if ticks["jiffies"] else "")
            + (f", CONFIG_HZ = {hz}" if hz else "")
            + ": one local-timer interrupt per tick, plus one for each high-resolution timer "
            "(a sleep, a timeout) that expired between ticks"]


# -- 3. user mode and kernel mode, and what a system call costs --------------------------------------

C_CALL_LABELS = {"getppid": "getppid(2) in C: a bare round trip into the kernel",
                 "write": "write(2) of 1 byte to /dev/null, in C",
                 "clock_syscall": "clock_gettime as a real system call, in C",
                 "clock_vdso": "clock_gettime through the vDSO (no kernel entry), in C"}


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


def modes(lesson: Lesson, quick: bool) -> list[str]:
    """Section 3: getrusage's user/kernel split of two loops; a system call timed in C."""
    mode_s = 0.5 if quick else 1.5
    lesson.section(f"user mode and kernel mode: CPU time as getrusage charges it ({mode_s:g} s each), "
                   "and a system call timed in C")
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        compute = mode_split(lambda: cpu_work(1_000), mode_s)
        syscalls = mode_split(lambda: os.write(devnull, b"x"), mode_s)
    finally:
        os.close(devnull)
    lesson.measure("kernel share of cpu time, compute loop", compute["kernel_pct"], "%")
    lesson.measure("kernel share of cpu time, write(2) to /dev/null loop", syscalls["kernel_pct"], "%")
    lesson.measure("write(2) calls per second", syscalls["calls_per_s"], "/s")
    python_us = lesson.measure("one write(2) round trip, user + kernel", 1e6 / syscalls["calls_per_s"], "µs")
    program, why_not = built(KERNEL_PROGRAM)
    why_not = why_not or linux_only("the raw system calls of lessons/native/02_kernel.c")
    in_c = {}
    if not why_not:
        try:
            in_c = run_c(program, "syscall", 100_000 if quick else 1_000_000)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            why_not = f"{KERNEL_PROGRAM.name} failed: {e}"
    for key, label in C_CALL_LABELS.items():
        if why_not:
            lesson.skip(label, why_not)
        else:
            lesson.measure(label, in_c[key], "ns")
    notices = [f"a pure-Python loop spent {compute['kernel_pct']:.1f}% of its CPU time in the kernel; "
               f"a loop of write(2) to /dev/null spent {syscalls['kernel_pct']:.0f}%: each call enters "
               f"the kernel and returns, {syscalls['calls_per_s']:,.0f} times a second"]
    if in_c:
        notices.append(f"in C the same write(2) took {in_c['write']:,.0f} ns and a bare getppid(2) "
                       f"{in_c['getppid']:,.0f} ns, against {python_us * 1000:,.0f} ns for write(2) from "
                       f"Python; clock_gettime took {in_c['clock_vdso']:,.0f} ns through the vDSO, "
                       f"{in_c['clock_syscall']:,.0f} ns as a system call: the entry and exit are the cost")
    return notices


# -- 4. a context switch, timed in C -----------------------------------------------------------------------

SWITCH_LABELS = ("context switch between two processes, one CPU (pipe ping-pong, in C)",
                 "context switch between two threads of one process, one CPU (in C)")


def context_switches(lesson: Lesson, allowed: list[int], quick: bool) -> list[str]:
    """Section 4: a byte handed back and forth between two tasks on one CPU."""
    round_trips = 20_000 if quick else 100_000
    lesson.section(f"a context switch: two tasks on CPU {allowed[-1]} hand a byte back and forth "
                   f"({round_trips:,} round trips, two switches each, in C)")
    program, why_not = built(KERNEL_PROGRAM)
    why_not = why_not or linux_only("pinning with sched_setaffinity in lessons/native/02_kernel.c")
    if not why_not:
        try:
            switch_ns = run_c(program, "switch", round_trips, allowed[-1])
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            why_not = f"{KERNEL_PROGRAM.name} failed: {e}"
    if why_not:
        lesson.skip_all(SWITCH_LABELS, why_not)
        return []
    processes = lesson.measure(SWITCH_LABELS[0], switch_ns["processes"], "ns")
    threads = lesson.measure(SWITCH_LABELS[1], switch_ns["threads"], "ns")
    return [f"a hand-off between two processes on one CPU took {processes / 1000:.2g} µs per switch, "
            f"between two threads {threads / 1000:.2g} µs: the kernel saves one task's registers and "
            "loads the other's either way; only between processes does it also load another set of "
            "page tables"]


# -- 5. caches and false sharing, in C (lessons/02_cache.c) --------------------------------------------


def false_sharing(program: Path, pair: list[int], increments: int, repeats: int) -> dict:
    """ns per increment: one thread alone; two threads on two CPUs with counters on one cache
    line; the same with counters on separate lines. Interleaved, best of `repeats` for each (other
    programs on the machine can only slow a run down)."""
    runs = {"alone": [], "same line": [], "separate lines": []}
    for _ in range(repeats):
        runs["alone"].append(run_c(program, "share", SEPARATE_LINES_OFFSET, increments, pair[0])["ns_per_increment"])
        runs["same line"].append(run_c(program, "share", SAME_LINE_OFFSET, increments, *pair[:2])["ns_per_increment"])
        runs["separate lines"].append(
            run_c(program, "share", SEPARATE_LINES_OFFSET, increments, *pair[:2])["ns_per_increment"])
    return {name: min(times) for name, times in runs.items()}


SHARE_LABELS = ("one thread alone, per atomic add", "two threads, counters on one cache line",
                "two threads, counters on separate lines", "false sharing slowdown")


def caches(lesson: Lesson, allowed: list[int], sizes_kib: dict, quick: bool) -> list[str]:
    """Section 5: a random pointer chase through growing working sets; false sharing."""
    program, why_not = built(CACHE_PROGRAM)
    why_not = why_not or linux_only("pinning threads with pthread_setaffinity_np")
    chase_sizes = [1 << k for k in range(13, 27 if quick else 29)]  # 8 KiB .. 64 MiB (256 MiB full)
    loads = 1_000_000 if quick else 3_000_000
    lesson.section(f"memory latency: a random pointer chase through 8 KiB to "
                   f"{chase_sizes[-1] // (1 << 20)} MiB ({loads:,} dependent loads each, in C)")
    chase_labels = {1 << 14: "load latency, 16 KiB working set", 1 << 19: "load latency, 512 KiB working set",
                    1 << 23: "load latency, 8 MiB working set",
                    chase_sizes[-1]: "load latency, largest working set"}
    latencies = {}
    if not why_not:
        try:
            latencies = {size: run_c(program, "chase", size, loads)["ns_per_load"] for size in chase_sizes}
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            why_not = f"{CACHE_PROGRAM.name} failed: {e}"  # and the false-sharing part is skipped too
    for size, label in chase_labels.items():
        if latencies:
            lesson.measure(label, latencies[size], "ns")
        else:
            lesson.skip(label, why_not)
    if latencies:
        lesson.series("load_latency_ns", [{"bytes": b, "ns": ns} for b, ns in latencies.items()])
        lesson.series("cache_kib", {name: sizes_kib[name][0] for name in CACHES if name in sizes_kib})

    increments = 10_000_000 if quick else 30_000_000
    share_repeats = 3 if quick else 5
    lesson.section(f"false sharing: two threads, each atomically adding 1 to its own counter "
                   f"{increments:,} times (in C; CPU time per add, best of {share_repeats}, interleaved)")
    sharing = None
    if not why_not and len(allowed) >= 2:
        try:
            sharing = false_sharing(program, allowed, increments, share_repeats)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, ValueError, IndexError) as e:
            why_not = f"{CACHE_PROGRAM.name} failed: {e}"
    if not sharing:
        lesson.skip_all(SHARE_LABELS, why_not or "needs two CPUs; this process may use one")
    else:
        lesson.measure(SHARE_LABELS[0], sharing["alone"], "ns")
        lesson.measure(SHARE_LABELS[1], sharing["same line"], "ns")
        lesson.measure(SHARE_LABELS[2], sharing["separate lines"], "ns")
        lesson.measure(SHARE_LABELS[3], sharing["same line"] / sharing["separate lines"], "x")
        lesson.series("false_sharing_ns", sharing)
    notices = []
    if latencies:
        notices.append(f"a dependent load took {latencies[1 << 14]:.2g} ns through 16 KiB and "
                       f"{latencies[chase_sizes[-1]]:,.0f} ns through {chase_sizes[-1] >> 20} MiB (past the "
                       "caches: DRAM, and TLB misses): each level of the hierarchy is a step")
    if sharing:
        notices.append(f"two threads adding to counters on one cache line took {sharing['same line']:.2g} ns "
                       f"per add, on separate lines {sharing['separate lines']:.2g} ns (alone: "
                       f"{sharing['alone']:.2g} ns): {sharing['same line'] / sharing['separate lines']:.2g}x slower "
                       "on one line, which bounced between the cores although the threads shared no "
                       "variable (and only while both ran at once: on a busy machine they overlap less)")
    return notices


# -- 6. SMT siblings, measured where they exist ----------------------------------------------------------

SMT_LABEL = "smt: two processes on sibling threads, against two separate cores"


def smt(lesson: Lesson, top: cpus.Topology | None, quick: bool) -> list[str]:
    """Section 6: the same two interpreter loops on two SMT siblings, then on two separate cores."""
    lesson.section("SMT: the same work on two sibling threads of one core, then on two cores")
    siblings, separate = cpus.sibling_pairs(top) if top else (None, None)
    if not top:
        lesson.skip(SMT_LABEL, "no CPU topology here")
        return []
    if siblings is None:
        lesson.skip(SMT_LABEL, "no SMT siblings among the CPUs this process may use (each cpuN/topology/"
                    "core_cpus_list names only cpuN)" + (": this virtual machine's hypervisor declares none"
                                                           if cpus.under_hypervisor() else "")
                    + "; on a machine with SMT (`lscpu -e`: two CPUs per CORE) the lesson measures it here, "
                    "and try-this 1 does it by hand")
        return []
    if separate is None:
        lesson.skip(SMT_LABEL, f"one physical core only (CPUs {siblings}): nothing to compare the siblings with")
        return []
    iterations, repeats = (1_000_000, 2) if quick else (3_000_000, 3)
    pairs = {"siblings": [], "separate": []}
    for _ in range(repeats):  # interleaved: a burst of other load hits both alike
        pairs["siblings"].append(2 * iterations / in_processes(cpu_work, iterations, 2, list(siblings)))
        pairs["separate"].append(2 * iterations / in_processes(cpu_work, iterations, 2, list(separate)))
    ratio = lesson.measure(SMT_LABEL, max(pairs["siblings"]) / max(pairs["separate"]),
                           f"x  (CPUs {siblings} vs {separate}, best of {repeats})")
    return [f"two interpreter loops on SMT siblings did {ratio:.2g}x the work of the same two on "
            "separate cores: the siblings share one core's execution units"]


# -- 7. CPU-bound work in several processes ------------------------------------------------------------

def work_rates(counts: list[int], iterations: int, repeats: int, clocks=None) -> dict[int, float]:
    """Iterations per second done by n processes together, for each n of `counts`: the best of
    `repeats` rounds, interleaved (1, 2, 4, 1, 2, 4...) so that a burst of other load hits every n
    alike; the best, since other programs can only slow a run down, never speed it up."""
    best = dict.fromkeys(counts, 0.0)
    for _ in range(repeats):
        for n in counts:
            if clocks:
                clocks.phase = n  # the clock sampler files its samples under this n
            best[n] = max(best[n], n * iterations / in_processes(cpu_work, iterations, n))
    return best


SCALING_LABELS = ("work rate, 1 process", "speedup, 1 per physical core", "speedup, 1 per logical cpu",
                  "speedup, 2 per logical cpu", "cpu time other programs used meanwhile",
                  "cpu time the hypervisor stole meanwhile", "clock of the busiest cpu, 1 process",
                  "clock of the busiest cpu, 1 process per core")


def scaling(lesson: Lesson, allowed: list[int], top: cpus.Topology | None, quick: bool) -> list[str]:
    """Section 7: the same loop in 1, n_physical, n_logical and 2 x n_logical processes; and what
    else ran, what the hypervisor took and what the clock did meanwhile."""
    iterations, repeats = (2_000_000, 2) if quick else (6_000_000, 3)
    n_logical = len(allowed)
    n_physical = top.physical_cores if top else n_logical
    lesson.section(f"CPU-bound work in 1 to {2 * n_logical} processes ({iterations:,} iterations each, "
                   f"best of {repeats}, interleaved)")
    clocks = cpus.ClockSampler(allowed)
    clocks.start()
    before, ours_before = procfs.cpu_busy_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    try:
        rate_of = work_rates(sorted({1, n_physical, n_logical, 2 * n_logical}), iterations, repeats, clocks)
        rate_1 = lesson.measure(SCALING_LABELS[0], rate_of[1] / 1e6, "M iterations/s")
        speedup = {}
        for label, n in ((SCALING_LABELS[1], n_physical), (SCALING_LABELS[2], n_logical),
                         (SCALING_LABELS[3], 2 * n_logical)):
            speedup[label] = lesson.measure(label, rate_of[n] / 1e6 / rate_1, f"x  ({n} processes)")
    finally:
        clocks.done.set()
        clocks.join()
    after, ours_after, elapsed = procfs.cpu_busy_ticks(), resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
    others = stolen = None
    if before and after:
        ticks = os.sysconf("SC_CLK_TCK")
        ours_s = (ours_after.ru_utime + ours_after.ru_stime) - (ours_before.ru_utime + ours_before.ru_stime)
        others = lesson.measure(SCALING_LABELS[4], max(0.0, 100 * ((after[0] - before[0]) / ticks - ours_s) / elapsed),
                                "% of a cpu")
        stolen = lesson.measure(SCALING_LABELS[5], 100 * (after[1] - before[1]) / ticks / elapsed, "% of a cpu")
    else:
        lesson.skip_all(SCALING_LABELS[4:6], linux_only("/proc/stat") or "no /proc/stat here")
    clock_1, clock_n = clocks.mean(1), clocks.mean(n_physical)
    if clock_1 is None or clock_n is None:
        lesson.skip_all(SCALING_LABELS[6:], "no cpufreq here (/sys/devices/system/cpu/cpuN/cpufreq): the "
                        "kernel does not drive the clock, as in most virtual machines, so a change of "
                        "clock cannot be seen")
    else:
        lesson.measure(SCALING_LABELS[6], clock_1, "MHz")
        lesson.measure(SCALING_LABELS[7], clock_n, "MHz")

    notices = [f"{n_logical} processes did {speedup[SCALING_LABELS[2]]:.2g}x the work of one; "
               f"{2 * n_logical} processes did {speedup[SCALING_LABELS[3]]:.2g}x: past one process per "
               "CPU, they only take turns"]
    if n_physical < n_logical:
        notices.append(f"one process per physical core gave {speedup[SCALING_LABELS[1]]:.2g}x; filling the "
                       f"SMT siblings too gave {speedup[SCALING_LABELS[2]]:.2g}x")
    short = speedup[SCALING_LABELS[1]] < 0.9 * n_physical
    if short:
        seen = []
        if others is not None and others > 10:
            seen.append(f"other programs used {others:.0f}% of a CPU meanwhile")
        if stolen is not None and stolen > 2:
            seen.append(f"the hypervisor took {stolen:.0f}% of a CPU for other guests")
        if top and top.hybrid:
            seen.append("some of the cores are efficiency cores, slower at this loop")
        if clock_1 and clock_n and clock_n < 0.95 * clock_1:
            seen.append(f"the clock fell from {clock_1:,.0f} MHz with one busy core to {clock_n:,.0f} MHz "
                        "with all of them (turbo runs one core faster than many)")
        notices.append(f"one process per physical core gave {speedup[SCALING_LABELS[1]]:.2g}x, short of "
                       f"{n_physical}: " + ("; ".join(seen) if seen else
                                            "no cause this run could see (in a virtual machine the host's "
                                            "turbo, power limits and SMT are out of sight)"))
    return notices


# -- 8. an echo server with 1 and 2 worker processes -----------------------------------------------

def reuseport(lesson: Lesson, allowed: list[int], top: cpus.Topology | None, quick: bool) -> list[str]:
    """Section 8: the reuseport server with 1, then 2 workers, under the same load."""
    name = "reuseport"
    seconds = 1.5 if quick else 5.0
    labels = [f"{name} {what}, {w}" for w in ("1 worker", "2 workers") for what in ("requests per second", "p99 latency")]
    halves = cpus.split_by_core(top) if top else (None, None)
    where = (f"server on CPUs {halves[0]}, load generator on {halves[1]}, no physical core shared"
             if halves[0] else f"server and load generator share all {len(allowed)} CPUs")
    lesson.section(f"the {name} echo server with 1 and 2 workers ({loadgen.LOAD_CONNS} connections, "
                   f"{loadgen.LOAD_SIZE_BYTES} B messages, {seconds:g} s; {where})")
    why_not = loadgen.unavailable(name)
    if why_not:
        lesson.skip_all(labels, why_not)
        return []
    results = {}
    for workers, tag in ((1, "1 worker"), (2, "2 workers")):
        r = results[workers] = loadgen.loaded(name, ["--workers", str(workers)], halves, seconds)
        lesson.measure(f"{name} requests per second, {tag}", r["rps"], "req/s")
        lesson.measure(f"{name} p99 latency, {tag}", r["latency_us"]["p99"], "µs")
    one, two = results[1], results[2]
    gain = two["rps"] / one["rps"]
    notices = [f"{name}: 2 workers served {gain:.2g}x the requests per second of 1 worker, "
               f"p99 latency {one['latency_us']['p99']:,.0f} µs -> {two['latency_us']['p99']:,.0f} µs"]
    if halves[0] is None and gain < 1.3:
        notices.append(f"here the server and the load generator share {len(allowed)} CPUs: a second "
                       "worker mostly takes CPU time from the load generator; with 4 or more physical "
                       "cores this lesson gives each its own cores")
    return notices


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
    marks = [(name, kib) for name, kib in series.get("cache_kib", {}).items() if name != "L1i"]  # data only
    for i, (_name, kib) in enumerate(marks):
        left.axvline(kib, color=COLOURS[1 + i % 4], linestyle="--", linewidth=1)
    if marks:  # the cache sizes name their lines above the plot, where no point can hide them
        top = left.secondary_xaxis("top")
        top.set_xticks([kib for _, kib in marks],
                       [f"{name}\n{kib:,} KiB" if kib < 1024 else f"{name}\n{kib // 1024:,} MiB" for name, kib in marks])
        top.tick_params(labelsize=8, length=0)
        for label, i in zip(top.get_xticklabels(), range(len(marks)), strict=True):
            label.set_color(COLOURS[1 + i % 4])
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
    Claim("a `write(2)` to `/dev/null` and a\n  bare `getppid(2)` cost about the same",
          lambda m: 0.5 < m[C_CALL_LABELS["write"]] / m[C_CALL_LABELS["getppid"]] < 2
          and m["one write(2) round trip, user + kernel"] * 1000 > 1.3 * m[C_CALL_LABELS["write"]],
          "C's write within 0.5-2x of getppid; Python's write over 1.3x C's"),
    Claim("`clock_gettime` through the vDSO costs several times less",
          lambda m: 3 * m[C_CALL_LABELS["clock_vdso"]] < m[C_CALL_LABELS["clock_syscall"]],
          "the vDSO clock_gettime under a third of the system call's"),
    Claim("each a few microseconds here",
          lambda m: all(1000 < m[label] < 10_000 for label in SWITCH_LABELS),
          "both switches between 1 and 10 µs"),
    Claim("CPUs with less to do take fewer",
          lambda m: m["timer interrupts per second, other cpus"] < m["timer interrupts per second, busy cpu"],
          "the other CPUs took fewer timer interrupts than the busy one"),
    Claim("Memory is far slower than a core",
          lambda m: m["load latency, largest working set"] > 50 * m["load latency, 16 KiB working set"],
          "a load past the caches over 50x one from L1"),
    Claim("Between them sit L2 and L3, each larger and slower",
          lambda m: m["L1d cache"] < m["L2 cache"] < m["L3 cache"]
          and m["load latency, 16 KiB working set"] < m["load latency, 512 KiB working set"]
          < m["load latency, 8 MiB working set"],
          "L1d < L2 < L3 in size, and 16 KiB < 512 KiB < 8 MiB in latency"),
    Claim("whose interpreter spends at least as long\non each step of a loop as a line transfer takes",
          lambda m: 1000 / m["work rate, 1 process"] >= m["two threads, counters on one cache line"],
          "one iteration of the Python loop takes at least as long as a contended atomic add"),
    Claim("More workers help only if there are idle cores for them",
          lambda m: m["reuseport requests per second, 2 workers"] < 1.6 * m["reuseport requests per second, 1 worker"],
          "with the CPUs shared, 2 workers under 1.6x the requests of 1 (two free cores would give 2x)"),
    Claim("the total grows far less than twice, and can even go down",
          lambda m: m["reuseport requests per second, 2 workers"] < 1.6 * m["reuseport requests per second, 1 worker"],
          "with the CPUs shared, 2 workers under 1.6x the requests of 1"),
    Claim.unmeasured("The round trip costs more than the instruction pair",
                     "the kernel's work on entry and exit (Documentation/admin-guide/hw-vuln/); the bare "
                     "instructions are not timed apart"),
    Claim.unmeasured("How much slower depends on how often both threads ran at the same moment",
                     "why the figure varies between runs, not a figure"),
    Claim.unmeasured("So two threads on one core usually do more than one thread alone",
                     "SMT's gain (Intel's optimization manual); measured by the SMT section where "
                     "siblings exist, not on the recording's VM"),
    Claim.unmeasured("Latency-bound or branchy code gains much more",
                     "SMT's gain by kind of code (Intel's optimization manual), not measured on a VM without siblings"),
    Claim.unmeasured("how many cores there really are", "the lesson's plan, not a figure"),
    Claim.unmeasured("where no interpreter stands around the call", "a figure of speech, not a figure"),
    Claim.unmeasured("64 bytes on x86-64 and most ARM cores", "the architectures' line size (Drepper, section 3.1)"),
    Claim.unmeasured("smaller efficiency cores", "what a hybrid CPU is; the recording's machine has none"),
    Claim.unmeasured("the lists with more than one CPU", "how to read the lists, not a figure"),
    Claim.unmeasured("look for what the cores did besides",
                     "the causes the lesson reads; which of them a run saw is in its notice lines"),
    Claim.unmeasured("halves that share\nno core", "how the lesson places them (lessons/cpus.py, split_by_core), "
                     "tested on fake /sys trees"),
    Claim.unmeasured("Two halves that share no physical core", "how the lesson places them, tested on fake /sys trees"),
    Claim.unmeasured("where the server and the load\n   generator get halves", "the reader's own exercise, not recorded"),
    Claim.unmeasured("that says nothing about the host's hardware threads", "what the hypervisor flag means, not a figure"),
    Claim.unmeasured("the notice\n  lines name what the run saw", "the notice words it from the run's data"),
    Claim.unmeasured("see which rows grow", "the reader's own exercise, not recorded"),
    Claim.unmeasured("shows the clock fall as\n   more cores get busy", "the reader's exercise on a laptop"),
]


# -- The lesson -------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("02", "The CPU and Hyper-Threading", args)
    quick = lesson.quick
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))  # the CPUs this process may run on
    else:
        allowed = list(range(os.cpu_count() or 1))
    top, sizes_kib, notices = machine(lesson, allowed)
    notices += tick(lesson, allowed, quick)
    notices += modes(lesson, quick)
    notices += context_switches(lesson, allowed, quick)
    notices += caches(lesson, allowed, sizes_kib, quick)
    notices += smt(lesson, top, quick)
    notices += scaling(lesson, allowed, top, quick)
    notices += reuseport(lesson, allowed, top, quick)
    for text in notices:  # what to notice, computed: after every section, as the page reads them
        lesson.notice(text)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
