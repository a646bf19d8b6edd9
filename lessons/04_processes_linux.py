"""Lesson 04, processes in Linux: /proc, the ways to create a process, and pre-forking.

What it shows, one section (a function below, beside the helpers only it uses) each:
1. a live process as the kernel describes it: /proc/PID/status (named fields) and /proc/PID/stat
   (the same and more, as space-separated numbers), read field by field on a child we started,
   its VmSize mapping by mapping, and the same child as the scheduler sees it (/proc/PID/sched);
2. this kernel's fair scheduler (EEVDF or CFS), nice weights measured against the kernel's table,
   SCHED_FIFO and SCHED_RR measured where permitted;
3. a task in the D state (a vfork parent waiting for its child to exec);
4. the namespaces and cgroups the lesson runs in;
5. what it costs to create a process, by every road Python offers: fork(2) (clone(2) underneath),
   fork + execve(2), posix_spawn(3) (glibc uses clone3 or clone with CLONE_VM | CLONE_VFORK: the
   child borrows the parent's memory until it execs, so no page tables are copied), subprocess
   (CPython 3.10+'s _posixsubprocess calls vfork(2)), and multiprocessing's three start methods
   (fork, forkserver, spawn), with strace showing which system call each uses. Also with a parent
   holding 512 MiB, where fork has to copy page tables and posix_spawn does not;
6. the `fork` server (a process per connection) against the `prefork` server (workers forked once,
   up front) under the same load: long-lived connections, where the fork server pays fork once per
   client, and a connection per request, where it pays fork every time.

The OS mechanism: proc(5), clone(2), fork(2), execve(2), posix_spawn(3), vfork(2); the
multiprocessing docs' "Contexts and start methods".

Linux-only: /proc. The creation costs and the server comparison run on any Unix.

    python -m lessons.04_processes_linux [--quick] [--json PATH]
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

from lessons import cpus, loadgen, procfs, states, trace
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spinners import run_together, spin
from lessons.spawn import ballast, fork_exec_wait, fork_exit_wait, median_us, posix_spawn_wait

MiB = 1024 * 1024


# -- 1. a live process in /proc -----------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/PID/stat's time unit

# The child we inspect: 16 MiB written (resident), 64 MiB allocated but never touched (virtual
# only), two extra threads, then asleep. It says "ready" once all that is done.
INSPECTED_CHILD = """
import mmap, sys, threading, time
touched = b"x" * (16 << 20)
untouched = mmap.mmap(-1, 64 << 20)  # anonymous memory: a page exists only once it is touched
for _ in range(2):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""

STATUS_LABELS = ("state (status State)", "its parent is this lesson (status PPid)",
                 "threads (status Threads)", "virtual memory (status VmSize)",
                 "resident memory (status VmRSS)", "anonymous resident (status RssAnon)",
                 "file-backed resident (status RssFile)", "voluntary switches (status)",
                 "minor page faults (stat field 10)", "user cpu time (stat field 14)",
                 "system cpu time (stat field 15)", "started, seconds after boot (stat field 22)",
                 "last ran on cpu (stat field 39)", "open file descriptors (ls /proc/PID/fd)")
SCHED_LABELS = ("scheduling policy (sched policy)", "priority (sched prio)",
                "load weight (sched se.load.weight)", "times switched in (sched nr_switches)",
                "cpu time (sched se.sum_exec_runtime)")
POLICIES = {0: "0 (SCHED_OTHER)", 1: "1 (SCHED_FIFO)", 2: "2 (SCHED_RR)", 3: "3 (SCHED_BATCH)",
            5: "5 (SCHED_IDLE)", 6: "6 (SCHED_DEADLINE)"}


def _mib(text: str) -> float:
    """ "16384 kB" -> MiB"""
    return procfs.kib(text) / 1024


def live_process(lesson: Lesson, why_not: str | None) -> list[str]:
    """Section 1: a child we started, read from /proc while it sleeps. Returns its notices."""
    lesson.section("a live child process, read from /proc/PID/status and /proc/PID/stat")
    if why_not:
        lesson.skip_all(STATUS_LABELS, why_not)
        return []
    child = subprocess.Popen([sys.executable, "-c", INSPECTED_CHILD], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
    try:
        child.stdout.readline()  # "ready": its memory and threads are in place
        time.sleep(0.05)  # let it fall asleep
        status, stat = procfs.status(child.pid), procfs.stat(child.pid)
        sched, space = procfs.sched(child.pid), procfs.vmsize_parts(child.pid)
        tasks = len(os.listdir(f"/proc/{child.pid}/task"))
        fds = len(os.listdir(f"/proc/{child.pid}/fd"))
        read_at_s = procfs.uptime_s()
    finally:
        child.kill()
        child.wait()
    lesson.measure("state (status State)", status["State"])
    lesson.measure("its parent is this lesson (status PPid)",
                   "yes" if int(status["PPid"]) == os.getpid() else f"no ({status['PPid']})")
    lesson.measure("threads (status Threads)", int(status["Threads"]))
    vm_size = lesson.measure("virtual memory (status VmSize)", _mib(status["VmSize"]), "MiB")
    vm_rss = lesson.measure("resident memory (status VmRSS)", _mib(status["VmRSS"]), "MiB")
    lesson.measure("anonymous resident (status RssAnon)", _mib(status["RssAnon"]), "MiB")
    lesson.measure("file-backed resident (status RssFile)", _mib(status["RssFile"]), "MiB")
    lesson.measure("voluntary switches (status)", int(status["voluntary_ctxt_switches"]))
    lesson.measure("minor page faults (stat field 10)", int(stat[10]))
    lesson.measure("user cpu time (stat field 14)", int(stat[14]) * 1000 / CLK_TCK, "ms")
    lesson.measure("system cpu time (stat field 15)", int(stat[15]) * 1000 / CLK_TCK, "ms")
    started = lesson.measure("started, seconds after boot (stat field 22)", int(stat[22]) / CLK_TCK, "s")
    lesson.measure("last ran on cpu (stat field 39)", int(stat[39]))
    lesson.measure("open file descriptors (ls /proc/PID/fd)", fds)
    lesson.measure("tasks, one per thread (ls /proc/PID/task)", tasks)
    lesson.measure("thread group id is its pid (status Tgid)", "yes" if status["Tgid"] == str(child.pid) else "no")
    lesson.measure("its pid in each pid namespace (status NSpid)", status.get("NSpid", "?"))
    lesson.measure("cpus it may run on (status Cpus_allowed_list)", status.get("Cpus_allowed_list", "?"))

    lesson.section("its VmSize, mapping by mapping (/proc/PID/maps)")
    for part in ("malloc arenas", "thread stacks", "untouched mapping", "files", "rest"):
        lesson.measure(f"VmSize part: {part}", space[part], "MiB")
    lesson.measure("malloc arenas reserved (64 MiB each)", space["arena count"])
    lesson.series("vmsize_parts_mib", {k: v for k, v in space.items() if k != "arena count"})

    lesson.section("the same child as the scheduler sees it (/proc/PID/sched)")
    if not sched:
        lesson.skip_all(SCHED_LABELS, "no /proc/PID/sched (a kernel before 6.15 built without CONFIG_SCHED_DEBUG)")
    else:
        policy = int(sched.get("policy", -1))
        lesson.measure(SCHED_LABELS[0], POLICIES.get(policy, str(policy)))
        lesson.measure(SCHED_LABELS[1], int(sched["prio"]), "(120 = nice 0)")
        lesson.measure(SCHED_LABELS[2], load_weight(sched.get("se.load.weight")), "(nice 0 = 1024)")
        lesson.measure(SCHED_LABELS[3], int(sched["nr_switches"]))
        lesson.measure(SCHED_LABELS[4], float(sched["se.sum_exec_runtime"]), "ms")
    return [f"the child's virtual memory was {vm_size:,.0f} MiB but only {vm_rss:,.0f} MiB resident: "
            f"{space['malloc arenas']:,.0f} MiB of it are {space['arena count']} malloc arenas "
            f"glibc reserved for its threads, {space['thread stacks']:,.0f} MiB their stacks, "
            f"{space['untouched mapping']:,.0f} MiB the mapping it never wrote; it started "
            f"{read_at_s - started:,.2f} s before we read it (start time and uptime both count "
            "from boot)"]


# -- 2. the scheduler: weights, nice, the real-time policies --------------------------------------------

# kernel/sched/core.c, sched_prio_to_weight[]: the weight of each nice level, nice 0 = 1024; each
# step is about 1.25x, so one nice level apart is about 10 % of the CPU between two tasks.
NICE_WEIGHT = {0: 1024, 1: 820, 2: 655, 3: 526, 4: 423, 5: 335, 10: 110, 19: 15}
NICED = 5  # the second spinner's nice value
NICE_LABELS = ("cpu share of the pair, nice 0 spinner", "predicted by the weights (1024 : 335)",
               f"load weight of the nice {NICED} spinner (se.load.weight)")
RT_LABELS = ("cpu share, SCHED_FIFO spinner", "cpu share, SCHED_OTHER spinner beside it",
             "cpu share, SCHED_RR spinner A", "cpu share, SCHED_RR spinner B",
             "time slice, SCHED_RR (cpu time / times scheduled)", "SCHED_RR quantum (sched_rr_get_interval)",
             "SCHED_RR turn, the spinners' own clocks (median)", "SCHED_RR turns cut short (under 90 % of the quantum)",
             "real-time share per period (sched_rt_runtime_us / sched_rt_period_us)")


def kernel_scheduler() -> tuple[str, str]:
    """(name, why we think so): EEVDF replaced CFS as the fair class's policy in Linux 6.6."""
    release = platform.release()
    numbers = re.match(r"(\d+)\.(\d+)", release)
    version = (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)
    has_slice = "se.slice" in procfs.sched(os.getpid())
    name = "EEVDF" if version >= (6, 6) or has_slice else "CFS"
    return name, (f"Linux {release}" + (", /proc/PID/sched has se.slice" if has_slice else ""))


def share_one_cpu(cpu: int, setups: dict, seconds: float) -> dict:
    """One spinner per entry of `setups` (name -> function(pid) that sets its nice or policy), all
    on `cpu` (lessons/spinners.py); per spinner: its share of the CPU's time, its turns on the CPU
    by its own clock and by schedstat, and its /proc/PID/sched weight. A setup may raise
    PermissionError: that propagates, the spinners killed."""
    def weights(pids: dict, window_s: float) -> dict:
        time.sleep(window_s)
        return {name: procfs.sched(pid).get("se.load.weight") for name, pid in pids.items()}

    out = run_together(dict.fromkeys(setups, spin), seconds, {cpu}, setups, weights)
    for name in setups:
        out[name]["weight"] = out[None][name]
    del out[None]
    return out


def keep_nice(pid: int) -> None:
    """The spinner keeps the nice value and policy it inherited (SCHED_OTHER, nice 0 here)."""


def set_nice(value: int):
    return lambda pid: os.setpriority(os.PRIO_PROCESS, pid, value)


def set_policy(policy: int, priority: int = 0):
    return lambda pid: os.sched_setscheduler(pid, policy, os.sched_param(priority))


def load_weight(text: str | None) -> float | None:
    """se.load.weight is scaled by 1024 on 64-bit kernels (SCHED_FIXEDPOINT_SHIFT): show nice 0 as 1024."""
    if not text:
        return None
    value = int(text)
    return value / 1024 if value >= 1 << 16 else value


def scheduler(lesson: Lesson, why_not: str | None, quick: bool) -> list[str]:
    """Section 2: spinners sharing one CPU by nice weight, then by real-time policy."""
    name, why = kernel_scheduler()
    lesson.section(f"the scheduler: weights, nice and the real-time policies ({name}: {why})")
    lesson.measure("fair scheduler of this kernel", name)
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = allowed[-1] if allowed else 0
    spin_s = 0.6 if quick else 2.0
    notices = []
    base_nice = os.getpriority(os.PRIO_PROCESS, 0) if not why_not else 0
    nice_why = why_not or (None if base_nice == 0 else
                           f"the lesson runs at nice {base_nice}: run it at nice 0, so that its two "
                           f"spinners are at nice 0 and {NICED} as the weights below assume")
    if nice_why:
        lesson.skip_all(NICE_LABELS, nice_why)
    else:
        nice = share_one_cpu(cpu, {"nice 0": keep_nice, f"nice {NICED}": set_nice(NICED)}, spin_s)
        a, b = nice["nice 0"]["cpu_share_pct"], nice[f"nice {NICED}"]["cpu_share_pct"]
        lesson.measure(NICE_LABELS[0], 100 * a / (a + b), "%")
        predicted = 100 * NICE_WEIGHT[0] / (NICE_WEIGHT[0] + NICE_WEIGHT[NICED])
        lesson.measure(NICE_LABELS[1], predicted, "%")
        weight = load_weight(nice[f"nice {NICED}"]["weight"])
        if weight is None:
            lesson.skip(NICE_LABELS[2], "no se.load.weight in /proc/PID/sched")
        else:
            lesson.measure(NICE_LABELS[2], weight)
        lesson.series("nice_share_pct", {"measured": 100 * a / (a + b), "predicted": predicted})
        notices.append(f"pinned to one CPU, the nice 0 spinner got {100 * a / (a + b):.0f}% of "
                       f"the pair's CPU time and the nice {NICED} one the rest; the weights "
                       f"{NICE_WEIGHT[0]} : {NICE_WEIGHT[NICED]} predict {predicted:.0f}%")

    rt_runtime = procfs.read("/proc/sys/kernel/sched_rt_runtime_us")
    rt_why = why_not or (
        "needs two CPUs: a real-time spinner must not take the only one" if len(allowed) < 2 else
        "real-time throttling is off (sched_rt_runtime_us = -1): a real-time spinner would take its "
        "CPU entirely, so the lesson does not start one" if rt_runtime == "-1" else None)
    if not rt_why:
        try:
            fifo = share_one_cpu(cpu, {"fifo": set_policy(os.SCHED_FIFO, 1), "other": keep_nice}, spin_s / 2)
            quantum_ms = []

            def round_robin(pid: int) -> None:
                set_policy(os.SCHED_RR, 1)(pid)
                quantum_ms.append(os.sched_rr_get_interval(pid) * 1000)

            rr = share_one_cpu(cpu, {"A": round_robin, "B": round_robin},  # full: 2 s, two throttled periods
                               spin_s / 2 if quick else spin_s)
        except PermissionError as e:
            rt_why = (f"not permitted ({e.strerror}): a real-time policy needs CAP_SYS_NICE or an "
                      "RLIMIT_RTPRIO above 0 (ulimit -r)")
    if rt_why:
        lesson.skip_all(RT_LABELS, rt_why)
        return notices
    turn_ms = statistics.fmean([rr["A"]["ms_per_slice"], rr["B"]["ms_per_slice"]])
    turns = [ns / 1e6 for name in "AB" for ns in rr[name]["seen"]["runs_ns"]]
    own_ms = statistics.median(turns) if turns else float("nan")
    rt_period = procfs.read("/proc/sys/kernel/sched_rt_period_us")
    allowed_pct = 100 * int(rt_runtime) / int(rt_period) if rt_runtime and rt_period else float("nan")
    pair_pct = rr["A"]["cpu_share_pct"] + rr["B"]["cpu_share_pct"]
    lesson.measure(RT_LABELS[0], fifo["fifo"]["cpu_share_pct"], "%")
    lesson.measure(RT_LABELS[1], fifo["other"]["cpu_share_pct"], "%")
    lesson.measure(RT_LABELS[2], rr["A"]["cpu_share_pct"], "%")
    lesson.measure(RT_LABELS[3], rr["B"]["cpu_share_pct"], "%")
    lesson.measure(RT_LABELS[4], turn_ms, "ms")
    lesson.measure(RT_LABELS[5], quantum_ms[0], "ms")
    lesson.measure(RT_LABELS[6], own_ms, "ms")
    lesson.measure(RT_LABELS[7], sum(1 for t in turns if t < 0.9 * quantum_ms[0]), f"of {len(turns)}")
    lesson.measure(RT_LABELS[8], allowed_pct, "%")
    lesson.series("rt_share_pct", {"SCHED_FIFO": fifo["fifo"]["cpu_share_pct"],
                                   "SCHED_OTHER beside it": fifo["other"]["cpu_share_pct"]})
    notices.append(f"a SCHED_FIFO spinner took {fifo['fifo']['cpu_share_pct']:.0f}% of its CPU and left the "
                   f"SCHED_OTHER one beside it {fifo['other']['cpu_share_pct']:.1f}%: a real-time task runs "
                   "until it blocks or a higher priority wakes; what keeps a little back for ordinary "
                   "tasks is real-time throttling (sched_rt_runtime_us per sched_rt_period_us) and, "
                   "since Linux 6.12, the fair server, a deadline reservation for them")
    notices.append(f"two SCHED_RR spinners of equal priority took turns of {own_ms:.0f} ms by their own "
                   f"clocks, the round-robin quantum ({quantum_ms[0]:.0f} ms), against the few ms of the fair "
                   f"scheduler (lesson 01); schedstat's average turn, {turn_ms:.0f} ms, is shorter because the "
                   f"pair got {pair_pct:.1f}% of the CPU, not 100%: real-time tasks may use "
                   f"{allowed_pct:.0f}% of each period, and the pause for ordinary tasks cuts a turn in two")
    return notices


# -- 3. the D and T states -------------------------------------------------------------------------------

D_LABELS = ("state of the waiting parent (stat field 3)", "where it waits in the kernel (wchan)")
T_LABELS = ("a job sent SIGTSTP (Ctrl-Z): waitpid(WUNTRACED) saw", "the job's state while stopped",
            "cpu time the stopped job got in 0.3 s", "after SIGCONT (fg or bg): waitpid(WCONTINUED) saw",
            "the job's state after SIGCONT", "a background job reading its terminal")


def d_and_t_states(lesson: Lesson, why_not: str | None, true: str) -> list[str]:
    """Section 3: the parent of a vfork, held while its child cannot exec; a job stopped and
    continued as a shell does it; a background job stopped for reading its terminal."""
    lesson.section("the D state: a vfork parent waiting for its child to exec")
    notices = []
    if why_not:
        lesson.skip_all(D_LABELS, why_not)
    else:
        with states.disk_sleep(true) as pid:
            seen, where = procfs.state(pid), states.wchan(pid)
        letter = seen.split()[0] if seen else None
        lesson.measure(D_LABELS[0], letter or "not seen in D")
        if where:
            lesson.measure(D_LABELS[1], where)
        else:
            lesson.skip(D_LABELS[1], "/proc/PID/wchan reads 0 here (restricted to root, or the state "
                        "was not seen)")
        if letter == "D":
            notices.append("the Python child waiting in posix_spawn was in state D" + (f" at {where}" if where else "")
                           + ": a vfork parent sleeps uninterruptibly (killable only) until its child execs or "
                           "exits; a D task counts in the load average though it uses no CPU")

    lesson.section("the T state and job control: a job stopped and continued, a background read")
    if why_not:
        lesson.skip_all(T_LABELS, why_not)
        return notices
    job = states.job_stopped_and_continued(0.3)
    for label, key in zip(T_LABELS, ("stop", "state", "ran_ms_stopped", "continue", "state_after"), strict=False):
        lesson.measure(label, job[key], "ms" if key == "ran_ms_stopped" else "")
    background = states.background_read()
    if "error" in background:
        lesson.skip(T_LABELS[5], f"no pseudo-terminal session here ({background['error']})")
    else:
        lesson.measure(T_LABELS[5], f"{background['job']}, state {background['state']}")
    notices.append(f"Ctrl-Z's SIGTSTP left the job {job['state']}: it got {job['ran_ms_stopped']:.1f} ms of "
                   "CPU in 0.3 s, and ran again after SIGCONT; the shell learns both from waitpid "
                   "(WUNTRACED, WCONTINUED)")
    return notices


# -- 4. namespaces and cgroups ---------------------------------------------------------------------------


def namespaces_hidden(error: OSError) -> str:
    """Why PID 1's namespace links were not readable, for this user, and what to try instead."""
    why = f"may not read /proc/1/ns ({error.strerror})"
    if os.geteuid() != 0:  # any non-root user: PID 1 belongs to root, and needs ptrace access
        return (f"{why}: reading another user's /proc/PID/ns links needs ptrace access to that "
                "process, which a non-root user does not have to PID 1; compare with "
                "`sudo ls -l /proc/1/ns` and `ls -l /proc/self/ns`")
    return (f"{why} even as root: ptrace access to PID 1 is refused (no CAP_SYS_PTRACE, a "
            "Yama or LSM policy, or PID 1 outside this user namespace, as in many containers)")


def containment(lesson: Lesson, why_not: str | None) -> list[str]:
    """Section 4: the namespaces and the cgroup this lesson runs in."""
    lesson.section("namespaces and cgroups (/proc/self/ns, /proc/self/cgroup)")
    ns_labels = ("namespaces of this process", "namespaces shared with PID 1", "cgroup version",
                 "cgroup of this process (cpu controller)", "cpu limit of its cgroup",
                 "memory limit of its cgroup")
    if why_not:
        lesson.skip_all(ns_labels, why_not)
        return []
    kinds, shared = procfs.namespaces()
    lesson.measure(ns_labels[0], len(kinds), f"({', '.join(kinds)})")
    if isinstance(shared, OSError):
        lesson.skip(ns_labels[1], namespaces_hidden(shared))
    else:
        lesson.measure(ns_labels[1], len(shared), f"of {len(kinds)}")
    groups = procfs.cgroup()
    lesson.measure(ns_labels[2], groups["version"])
    lesson.measure(ns_labels[3], groups["path"])
    for label, key in ((ns_labels[4], "cpu"), (ns_labels[5], "memory")):
        if groups.get(key) is None:
            lesson.skip(label, "its cgroup files are not readable here")
        else:
            lesson.measure(label, groups[key])
    return []


# -- 5. creating a process ---------------------------------------------------------------------------------


def nothing() -> None:
    pass


def multiprocessing_start_join(context) -> None:
    process = context.Process(target=nothing)
    process.start()
    process.join()


def start_unpicklable(context) -> str:
    """Start a Process whose target is a lambda, which pickle cannot serialise. With fork the child
    is a copy of the parent and the target is already in its memory; spawn and forkserver pickle
    the Process object to send it to the new interpreter, and fail before any child runs."""
    try:
        process = context.Process(target=lambda: None)
        process.start()
        process.join(timeout=30)
        return "ran" if process.exitcode == 0 else f"child exit code {process.exitcode}"
    except Exception as e:  # noqa: BLE001  (pickle raises PicklingError, AttributeError or TypeError)
        return f"failed to pickle it ({type(e).__name__})"


STRACED = {
    "os.fork()": "import os\npid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0)",
    "os.posix_spawn()": "import os\nos.waitpid(os.posix_spawn('{true}', ['true'], os.environ), 0)",
    "subprocess.run()": "import subprocess\nsubprocess.run(['{true}'])",
}


def creating_syscall(code: str) -> str:
    """The system call (and clone flags) that created the child, as strace -f shows it."""
    lines, _ = trace.run([sys.executable, "-c", code], "clone,clone3,vfork,fork")
    calls = [found.groups() for line in lines if (found := re.search(r"\b(vfork|fork|clone3?)\((.*)", line))]
    if not calls:
        raise trace.StraceUnavailable("strace showed no clone or vfork")
    name, rest = calls[-1]  # the last one: the child running `true`
    flags = re.search(r"flags=([A-Z_|]+)", rest)
    return f"{name}(" + (flags[1].replace("|SIGCHLD", "") if flags else "") + ")"


def creation(lesson: Lesson, quick: bool, true: str) -> list[str]:
    """Section 5: every road to a new process, timed, and the system call strace sees for each."""
    repeats = 30 if quick else 200
    slow_repeats = 3 if quick else 10
    lesson.section(f"creating a process (median of {repeats}; multiprocessing: of {slow_repeats})")
    cost = {}

    def timed(label: str, action, n: int, unit: str = "µs") -> None:
        value = median_us(action, n)
        cost[label] = lesson.measure(label, value / 1000 if unit == "ms" else value, unit)

    timed("fork + exit + wait", fork_exit_wait, repeats)
    timed("fork + exec true + wait", lambda: fork_exec_wait(true), repeats)
    timed("posix_spawn true + wait", lambda: posix_spawn_wait(true), repeats)
    timed("subprocess.run true", lambda: subprocess.run([true], check=True), repeats)
    for method in ("fork", "forkserver", "spawn"):
        label = f"multiprocessing {method}: start + join"
        if method not in multiprocessing.get_all_start_methods():
            lesson.skip(label, f"the {method!r} start method does not exist on {sys.platform}")
            continue
        context = multiprocessing.get_context(method)
        multiprocessing_start_join(context)  # forkserver: the first start launches the server
        timed(label, lambda c=context: multiprocessing_start_join(c), slow_repeats, "ms")
    lesson.measure("default start method of this Python", multiprocessing.get_start_method(allow_none=False))
    for method in ("fork", "forkserver", "spawn"):
        label = f"a lambda as the target, {method}"
        if method in multiprocessing.get_all_start_methods():
            lesson.measure(label, start_unpicklable(multiprocessing.get_context(method)))
        else:
            lesson.skip(label, f"the {method!r} start method does not exist on {sys.platform}")

    lesson.section("which system call creates the child (strace -f)")
    why_no_strace = trace.unavailable()
    created_by = {}
    for what, code in STRACED.items():
        label = f"{what} creates the child with"
        if why_no_strace:
            lesson.skip(label, why_no_strace)
            continue
        try:
            created_by[what] = lesson.measure(label, creating_syscall(code.format(true=true)))
        except trace.StraceUnavailable as e:
            lesson.skip(label, str(e))

    memory = ballast(512)  # the parent now has 512 MiB more populated, in 4 KiB pages (lesson 03)
    try:
        timed("fork + exec true + wait, parent +512 MiB", lambda: fork_exec_wait(true), repeats // 2)
        timed("posix_spawn true + wait, parent +512 MiB", lambda: posix_spawn_wait(true), repeats // 2)
    finally:
        memory.close()
    lesson.series("creation_us", {label: (value * 1000 if label.startswith("multiprocessing") else value)
                                  for label, value in cost.items()})

    notices = []
    if created_by:
        notices.append("strace: " + "; ".join(f"{what} -> {call}" for what, call in created_by.items()))
    notices.append(f"posix_spawn took {cost['posix_spawn true + wait']:,.0f} µs against "
                   f"{cost['fork + exec true + wait']:,.0f} µs for fork + exec; with 512 MiB more in the parent "
                   f"{cost['posix_spawn true + wait, parent +512 MiB']:,.0f} µs against "
                   f"{cost['fork + exec true + wait, parent +512 MiB']:,.0f} µs: vfork-style creation "
                   "copies no page tables")
    spawn, mp_fork = cost.get("multiprocessing spawn: start + join"), cost.get("multiprocessing fork: start + join")
    if spawn and mp_fork:
        notices.append(f"multiprocessing spawn took {spawn:,.0f} ms per process against {mp_fork:,.1f} ms for "
                       "fork: spawn starts a fresh interpreter and re-imports the main module")
    return notices


# -- 6. the fork and prefork servers -------------------------------------------------------------------------


def fork_vs_prefork(lesson: Lesson, quick: bool) -> list[str]:
    """Section 6: both servers under long-lived connections, then a connection per request."""
    seconds = 1.0 if quick else 4.0
    max_requests = 3_000 if quick else 10_000  # each leaves a socket in TIME_WAIT for 60 s
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    halves = cpus.split_by_core(cpus.topology(allowed)) if allowed else (None, None)
    lesson.section(f"fork vs prefork: {loadgen.LOAD_CONNS} long-lived connections ({loadgen.LOAD_SIZE_BYTES} B messages, "
                   f"{seconds:g} s), then a new connection per request ({seconds:g} s, one client)")
    results = {}
    for name in ("fork", "prefork"):
        labels = (f"{name} server, requests per second", f"{name} server, p99 latency",
                  f"{name} server, connections per second (one per request)",
                  f"{name} server, connect + echo + close")
        reason = loadgen.unavailable(name)
        if reason:
            lesson.skip_all(labels, reason)
            continue
        r = results[name] = loadgen.loaded(name, cpus=halves, seconds=seconds, then=lambda server: (
            loadgen.connection_per_request(server.address, seconds, max_requests)))
        r["conn_per_s"], r["conn_us"] = r["then"]
        lesson.measure(labels[0], r["rps"], "req/s")
        lesson.measure(labels[1], r["latency_us"]["p99"], "µs")
        lesson.measure(labels[2], r["conn_per_s"], "conn/s")
        lesson.measure(labels[3], r["conn_us"], "µs")
    if len(results) < 2:
        return []
    f, p = results["fork"], results["prefork"]
    return [f"with long-lived connections prefork did {p['rps'] / f['rps']:.2g}x the requests per "
            f"second of fork; with a connection per request, {p['conn_per_s'] / f['conn_per_s']:.2g}x "
            f"the connections ({f['conn_us']:,.0f} µs vs {p['conn_us']:,.0f} µs each): "
            "the fork server pays a fork per connection"]


# -- Pictures and claims, from the recorded run (lessons/figures.py, tests/test_claims.py) ------------


def draw_creation(record: dict, fig) -> None:
    """What creating a process costs by each road, and how the CPU is shared by weight and policy."""
    from lessons.figures import COLOURS, not_measured
    series = record.get("series", {})
    costs = series.get("creation_us")
    if not costs:
        return not_measured(fig, "this run recorded no creation costs")
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    labels = list(costs)
    colours = [COLOURS[1] if "512 MiB" in label else COLOURS[0] for label in labels]
    left.barh(labels, [costs[label] for label in labels], color=colours)
    left.set_xscale("log")
    left.invert_yaxis()
    left.set_xlabel("µs to create a process and wait for it (median, log scale)")
    left.set_title("Creating a process (orange: parent holds 512 MiB more)")
    left.tick_params(axis="y", labelsize=8)
    nice, rt = series.get("nice_share_pct"), series.get("rt_share_pct")
    if not nice:
        right.text(0.5, 0.5, "scheduler shares: not measured", ha="center", transform=right.transAxes)
        right.set_axis_off()
        return
    bars = {f"nice 0 : {NICED}\nmeasured": nice["measured"], f"nice 0 : {NICED}\npredicted": nice["predicted"]}
    if rt:
        bars["FIFO :\nOTHER"] = rt["SCHED_FIFO"] / (rt["SCHED_FIFO"] + rt["SCHED_OTHER beside it"]) * 100
    right.bar(list(bars), list(bars.values()), color=[COLOURS[2], COLOURS[4], COLOURS[3]][:len(bars)])
    right.axhline(50, color="#999999", linewidth=1, linestyle=":")
    right.set_ylim(0, 100)
    right.set_ylabel("% of the pair's CPU time the first got")
    right.set_title("Sharing one CPU")
    right.tick_params(axis="x", labelsize=8)


PICTURES = {"creation": draw_creation}

CLAIMS = [
    Claim("reserved far more address space (`VmSize`) than it had in memory (`VmRSS`)",
          lambda m: m["virtual memory (status VmSize)"] > 3 * m["resident memory (status VmRSS)"],
          "VmSize over 3x VmRSS"),
    Claim("Forking and exec-ing costs more than forking alone",
          lambda m: m["fork + exec true + wait"] > m["fork + exit + wait"],
          "fork + exec + wait slower than fork + exit + wait"),
    Claim("`posix_spawn` and `subprocess.run` avoid the copy of the page tables",
          lambda m: m["posix_spawn true + wait"] < m["fork + exec true + wait"]
          and m["subprocess.run true"] < m["fork + exec true + wait"],
          "posix_spawn and subprocess.run both faster than fork + exec"),
    Claim("fork + exec grew with the parent",
          lambda m: m["fork + exec true + wait, parent +512 MiB"] > 3 * m["fork + exec true + wait"],
          "fork + exec over 3x slower with 512 MiB more in the parent"),
    Claim("posix_spawn did not",
          lambda m: m["posix_spawn true + wait, parent +512 MiB"] - m["posix_spawn true + wait"]
          < 0.1 * (m["fork + exec true + wait, parent +512 MiB"] - m["fork + exec true + wait"]),
          "512 MiB more in the parent adds under a tenth as much to posix_spawn as to fork + exec"),
    Claim("`spawn` also starts a whole new interpreter for every process",
          lambda m: m["multiprocessing spawn: start + join"] > 5 * m["multiprocessing fork: start + join"],
          "multiprocessing spawn over 5x the cost of fork"),
    Claim("the fork server adds a fork and an exit to every connection, prefork adds only a thread",
          lambda m: m["fork server, connect + echo + close"] > m["prefork server, connect + echo + close"],
          "a connection per request takes longer on fork than on prefork"),
    Claim("an ordinary policy, priority 120 (nice 0), and the weight 1024 of the kernel's table",
          lambda m: m["scheduling policy (sched policy)"].endswith("(SCHED_OTHER)")
          and m["priority (sched prio)"] == 120 and m["load weight (sched se.load.weight)"] == 1024,
          "the inspected child: SCHED_OTHER, prio 120, weight 1024"),
    Claim("The Python child that called posix_spawn was in state `D` while its vfork child was held, in "
          "the kernel's clone code (`wchan`)",
          lambda m: m["state of the waiting parent (stat field 3)"] == "D"
          and "clone" in m["where it waits in the kernel (wchan)"],
          "the vfork parent was in D, waiting in kernel_clone"),
    Claim("the share follows the weights",
          lambda m: abs(m["cpu share of the pair, nice 0 spinner"]
                        - m["predicted by the weights (1024 : 335)"]) < 8,
          "the nice 0 spinner's share within 8 points of the weights' 75 %"),
    Claim("the SCHED_FIFO spinner took nearly all of its CPU",
          lambda m: m["cpu share, SCHED_FIFO spinner"] > 80
          and m["cpu share, SCHED_OTHER spinner beside it"] < 10,
          "FIFO over 80 %, the SCHED_OTHER one beside it under 10 %"),
    Claim("alternated in turns of the\n  round-robin quantum by their own clocks",
          lambda m: abs(m["SCHED_RR turn, the spinners' own clocks (median)"]
                        / m["SCHED_RR quantum (sched_rr_get_interval)"] - 1) < 0.1,
          "the median RR turn by the spinners' clocks within 10 % of sched_rr_get_interval"),
    Claim("The kernel's own average, CPU time divided by times scheduled, comes out shorter\n  than the quantum",
          lambda m: m["time slice, SCHED_RR (cpu time / times scheduled)"]
          < m["SCHED_RR quantum (sched_rr_get_interval)"]
          and m["SCHED_RR turns cut short (under 90 % of the quantum)"] > 0,
          "schedstat's average RR turn below the quantum, and some turns cut short"),
    Claim("Together the pair got less than the whole CPU, close to that share",
          lambda m: m["real-time share per period (sched_rt_runtime_us / sched_rt_period_us)"] - 2
          < m["cpu share, SCHED_RR spinner A"] + m["cpu share, SCHED_RR spinner B"] < 99,
          "the two RR spinners' shares add up to under 99 % and over the real-time share minus 2 points "
          "(a 2 s window holds one or two of the pauses)"),
    Claim("was in state `T` and got no CPU at all until\n  `SIGCONT`",
          lambda m: m["the job's state while stopped"].startswith("T")
          and m["cpu time the stopped job got in 0.3 s"] == 0
          and m["a job sent SIGTSTP (Ctrl-Z): waitpid(WUNTRACED) saw"] == "stopped by SIGTSTP"
          and m["after SIGCONT (fg or bg): waitpid(WCONTINUED) saw"].startswith("continued")
          and m["the job's state after SIGCONT"].startswith("R"),
          "stopped (T) by SIGTSTP with 0 ms of CPU, then continued and running"),
    Claim.unmeasured("Two files hold most of what tools show", "where ps and top read (procps' sources), not a figure"),
    Claim.unmeasured("the same and more as one line of numbers", "a description of the fields (proc(5)), not a figure"),
    Claim.unmeasured("the memory and more (a thread, lesson 06)", "what clone's flags share (clone(2)), not a figure"),
    Claim.unmeasured("as most distributions' were", "kernel configuration history (CONFIG_SCHED_DEBUG, removed in 6.15)"),
    Claim("share the CPU in proportion to their *weights*",
          lambda m: abs(m["cpu share of the pair, nice 0 spinner"] - m["predicted by the weights (1024 : 335)"]) < 8,
          "the nice 0 spinner's share within 8 points of the weights' 75 %"),
    Claim("nice 5 weighs 335",
          lambda m: m[f"load weight of the nice {NICED} spinner (se.load.weight)"] == NICE_WEIGHT[NICED],
          "the nice 5 spinner's se.load.weight is the table's 335"),
    Claim.unmeasured("running the task with the least *virtual runtime*",
                     "how CFS and EEVDF choose (Documentation/scheduler/sched-eevdf.rst), not measured here"),
    Claim("100 ms by default",
          lambda m: m["SCHED_RR quantum (sched_rr_get_interval)"] == 100,
          "sched_rr_get_interval gave the default 100 ms"),
    Claim.unmeasured("get halves that share no core",
                     "how the lesson places them (lessons/cpus.py, split_by_core), tested on fake /sys trees"),
    Claim("while posix_spawn stays flat",
          lambda m: m["posix_spawn true + wait, parent +512 MiB"] - m["posix_spawn true + wait"]
          < 0.1 * (m["fork + exec true + wait, parent +512 MiB"] - m["fork + exec true + wait"]),
          "512 MiB more in the parent adds under a tenth as much to posix_spawn as to fork + exec"),
    Claim("a few threads add a multiple of 64 MiB to `VmSize` while adding almost nothing to `VmRSS`",
          lambda m: m["malloc arenas reserved (64 MiB each)"] >= 1
          and m["VmSize part: malloc arenas"] == 64 * m["malloc arenas reserved (64 MiB each)"]
          and m["resident memory (status VmRSS)"] < m["VmSize part: malloc arenas"],
          "at least one 64 MiB arena reserved, and all of VmRSS smaller than the arenas' reservation"),
    Claim("it gives it a smaller share",
          lambda m: 50 < m["cpu share of the pair, nice 0 spinner"] < 95,
          "the nice 5 spinner got between 5 % and 50 % of the pair's time"),
    Claim.unmeasured("512 times fewer entries", "arithmetic: 2 MiB / 4 KiB; lesson 03 measures the fork"),
    Claim.unmeasured("against a few workers with several threads each",
                     "the servers' configuration (servers/prefork.py's --workers, a thread per connection)"),
    Claim.unmeasured("&` twice, renice one", "an instruction (start the spinner twice), not a comparison"),
    Claim("was stopped by `SIGTTIN` before it could read a byte",
          lambda m: m["a background job reading its terminal"].startswith("stopped by SIGTTIN"),
          "the background reader was stopped by SIGTTIN"),
    Claim("With `fork` the lambda ran; with `spawn` and `forkserver` starting it failed",
          lambda m: m["a lambda as the target, fork"] == "ran"
          and m["a lambda as the target, spawn"].startswith("failed")
          and m["a lambda as the target, forkserver"].startswith("failed"),
          "fork runs an unpicklable target, spawn and forkserver fail to pickle it"),
]


# -- The lesson --------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("04", "Processes in Linux", args)
    why_not = linux_only("/proc/PID/status and /proc/PID/stat")
    true = shutil.which("true") or "/bin/true"
    notices = [*live_process(lesson, why_not),
               *scheduler(lesson, why_not, lesson.quick),
               *d_and_t_states(lesson, why_not, true),
               *containment(lesson, why_not),
               *creation(lesson, lesson.quick, true),
               *fork_vs_prefork(lesson, lesson.quick)]
    for text in notices:  # what to notice, computed: after every section, as the page reads them
        lesson.notice(text)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
