"""Lesson 04, processes in Linux: /proc, the ways to create a process, and pre-forking.

What it shows:
- a live process as the kernel describes it: /proc/PID/status (named fields) and /proc/PID/stat
  (the same and more, as space-separated numbers), read field by field on a child we started;
- what it costs to create a process, by every road Python offers: fork(2) (clone(2) underneath),
  fork + execve(2), posix_spawn(3) (glibc uses clone3 or clone with CLONE_VM | CLONE_VFORK: the
  child borrows the parent's memory until it execs, so no page tables are copied), subprocess
  (CPython 3.10+'s _posixsubprocess calls vfork(2)), and multiprocessing's three start methods
  (fork, forkserver, spawn), with strace showing which system call each uses. Also with a parent
  holding 512 MiB, where fork has to copy page tables and posix_spawn does not;
- the task as the scheduler sees it (/proc/PID/sched), this kernel's fair scheduler (EEVDF or
  CFS), nice weights measured against the kernel's table, SCHED_FIFO and SCHED_RR measured where
  permitted; a task in the D state (a vfork parent waiting for its child to exec); the
  namespaces and cgroups the lesson runs in;
- the `fork` server (a process per connection) against the `prefork` server (workers forked once,
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
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import servers
import servers.launch
from lessons import procfs, trace
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spawn import fork_exec_wait, fork_exit_wait, median_us, posix_spawn_wait

MiB = 1024 * 1024
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

LOAD_CONNS = 32
LOAD_SIZE_BYTES = 64

# glibc reserves each extra malloc arena as one 64 MiB region (HEAP_MAX_SIZE, 2 x the largest mmap
# threshold on 64-bit), aligned to its size, and makes only the part in use readable and writable.
ARENA_BYTES = 64 * MiB

# kernel/sched/core.c, sched_prio_to_weight[]: the weight of each nice level, nice 0 = 1024; each
# step is about 1.25x, so one nice level apart is about 10 % of the CPU between two tasks.
NICE_WEIGHT = {0: 1024, 1: 820, 2: 655, 3: 526, 4: 423, 5: 335, 10: 110, 19: 15}
NICED = 5  # the second spinner's nice value

# A vfork parent, held in D state: its posix_spawn child (sharing its memory, CLONE_VM|CLONE_VFORK)
# blocks opening a FIFO for reading until we open it for writing. The child has every signal
# blocked (glibc blocks them until exec), so only SIGKILL or the FIFO ends it.
VFORK_HELD = """
import os, sys
pid = os.posix_spawn("{true}", ["true"], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 0, sys.argv[1], os.O_RDONLY, 0)])
os.waitpid(pid, 0)
"""


# -- a live process in /proc ------------------------------------------------------------------------


def _mib(text: str) -> float:
    """ "16384 kB" -> MiB"""
    return procfs.kib(text) / 1024


# -- creating processes ----------------------------------------------------------------------------------


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


# -- the task as the scheduler sees it -------------------------------------------------------------------


def kernel_scheduler() -> tuple[str, str]:
    """(name, why we think so): EEVDF replaced CFS as the fair class's policy in Linux 6.6."""
    release = platform.release()
    numbers = re.match(r"(\d+)\.(\d+)", release)
    version = (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)
    has_slice = "se.slice" in procfs.sched(os.getpid())
    name = "EEVDF" if version >= (6, 6) or has_slice else "CFS"
    return name, (f"Linux {release}" + (", /proc/PID/sched has se.slice" if has_slice else ""))


def pinned_spinner(cpu: int, lifetime_s: float) -> tuple[int, int]:
    """A child that waits for a byte on a pipe, then spins on `cpu`. It dies by SIGALRM after
    `lifetime_s` whatever happens to us, so a real-time spinner can never outlive the lesson."""
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(go_w)
            os.sched_setaffinity(0, {cpu})
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.setitimer(signal.ITIMER_REAL, lifetime_s)
            os.read(go_r, 1)
            while True:
                pass
        finally:
            os._exit(0)
    os.close(go_r)
    return pid, go_w


def _ran(pid: int) -> tuple[int, int]:
    """(ns on a CPU, times put on a CPU), from /proc/PID/schedstat."""
    run_ns, _wait_ns, slices = procfs.schedstat(pid)
    return run_ns, slices


def share_one_cpu(cpu: int, setups: dict, seconds: float) -> dict:
    """One spinner per entry of `setups` (name -> function(pid) that sets its nice or policy), all
    on `cpu`; returns, per spinner, its share of the CPU's time, its slices and its
    /proc/PID/sched weight. A setup may raise PermissionError: that propagates, spinners killed."""
    spinners = {}
    try:
        for name, setup in setups.items():
            spinners[name] = pinned_spinner(cpu, seconds + 2.0)
            setup(spinners[name][0])
        for _pid, go in spinners.values():
            os.write(go, b"g")
        time.sleep(0.1)  # all of them are running
        before, t0 = {n: _ran(p) for n, (p, _) in spinners.items()}, time.monotonic_ns()
        time.sleep(seconds)
        after, t1 = {n: _ran(p) for n, (p, _) in spinners.items()}, time.monotonic_ns()
        weights = {n: procfs.sched(p).get("se.load.weight") for n, (p, _) in spinners.items()}
    finally:
        for pid, go in spinners.values():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(go)
    out = {}
    for name in setups:
        ran_ns = after[name][0] - before[name][0]
        slices = after[name][1] - before[name][1]
        out[name] = {"share_pct": 100 * ran_ns / (t1 - t0),
                     "ms_per_slice": ran_ns / slices / 1e6 if slices else float("nan"),
                     "weight": weights[name]}
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


# -- the D state -----------------------------------------------------------------------------------------


def hold_in_d_state(true: str) -> dict:
    """Start a Python child that posix_spawns `true` with a file action that blocks; while its
    vfork child waits, read the Python child's state. Then open the FIFO to let everything finish."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "fifo")
        os.mkfifo(fifo)
        child = subprocess.Popen([sys.executable, "-c", VFORK_HELD.format(true=true), fifo],
                                 stdin=subprocess.DEVNULL)
        seen = {"state": None, "wchan": None}
        try:
            deadline = time.monotonic() + 5.0
            # Wait until its vfork child exists (a Python starting up can be in D for a moment
            # too, reading its files: that is not the D we want to show).
            while time.monotonic() < deadline and child.poll() is None and not procfs.children(child.pid):
                time.sleep(0.002)
            time.sleep(0.05)  # the vfork child is now blocked opening the FIFO
            seen["state"] = procfs.stat(child.pid)[3] if child.poll() is None else None
            try:
                with open(f"/proc/{child.pid}/wchan") as f:
                    wchan = f.read().strip()
                seen["wchan"] = wchan if wchan not in ("", "0") else None
            except OSError:
                pass
            # Let the vfork child go: open the FIFO's other end (O_NONBLOCK: ENXIO while no reader).
            while time.monotonic() < deadline:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    break
                except OSError:
                    time.sleep(0.002)
            child.wait(timeout=5)
        finally:
            if child.poll() is None:  # never released: kill the held child and its vfork child
                kids = procfs.children(child.pid)
                child.kill()
                for kid in kids:
                    os.kill(kid, signal.SIGKILL)  # its signals are blocked: only SIGKILL ends it
                child.wait()
    return seen


# -- VmSize, mapping by mapping ----------------------------------------------------------------------------


def address_space(pid: int) -> dict[str, float]:
    """What the address space (VmSize) is made of, from /proc/PID/maps, in MiB: malloc arenas,
    thread stacks, the untouched mapping, mapped files and the rest (heap, Python's own memory)."""
    stack_bytes = resource_stack_bytes()
    regions = procfs.maps(pid)
    parts = dict.fromkeys(("malloc arenas", "thread stacks", "untouched mapping", "files", "rest"), 0)
    arenas = 0
    i = 0
    while i < len(regions):
        start, end, perms, path = regions[i]
        size = end - start
        if not path and start % ARENA_BYTES == 0:  # an arena: its regions, contiguous, add to 64 MiB
            j, total = i, 0
            while j < len(regions) and not regions[j][3] and total < ARENA_BYTES and (
                    j == i or regions[j][0] == regions[j - 1][1]):
                total += regions[j][1] - regions[j][0]
                j += 1
            if total == ARENA_BYTES:
                parts["malloc arenas"] += total
                arenas += 1
                i = j
                continue
        if path == "/dev/zero (deleted)" or path.startswith("/dev/zero"):
            parts["untouched mapping"] += size  # mmap.mmap(-1, ...): shared anonymous memory
        elif path.startswith("/"):
            parts["files"] += size
        elif not path and perms.startswith("rw") and size == stack_bytes:
            parts["thread stacks"] += size  # glibc's default thread stack: RLIMIT_STACK
        elif not path and perms == "---p" and size == 4096 and i + 1 < len(regions) and (
                regions[i + 1][1] - regions[i + 1][0] == stack_bytes):
            parts["thread stacks"] += size  # the guard page below a thread stack
        else:
            parts["rest"] += size
        i += 1
    out = {name: size / MiB for name, size in parts.items()}
    out["arena count"] = arenas
    return out


def resource_stack_bytes() -> int:
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_STACK)
    return soft if soft != resource.RLIM_INFINITY else 2 * MiB  # glibc's default when unlimited


# -- namespaces and cgroups ---------------------------------------------------------------------------------


def namespaces() -> tuple[list[str], list[str] | str]:
    """(this process's namespace kinds, the kinds it shares with PID 1, or why we may not look)."""
    kinds = sorted(os.listdir("/proc/self/ns"))
    try:
        shared = [k for k in kinds if os.readlink(f"/proc/self/ns/{k}") == os.readlink(f"/proc/1/ns/{k}")]
    except OSError as e:
        shared = f"{type(e).__name__}: {e.strerror}"
    return kinds, shared


def cgroup() -> dict:
    """Our cgroup, its version, and the CPU and memory limits it sets where they are readable."""
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
    v2 = [path for hier, ctrl, path in lines if hier == "0" and ctrl == ""]
    v1 = {c: path for _hier, ctrls, path in lines for c in ctrls.split(",") if c}
    out = {"version": "v2" if v2 and len(lines) == 1 else ("hybrid v1 + v2" if v2 else "v1")}
    if out["version"] == "v2":
        base = Path("/sys/fs/cgroup") / v2[0].lstrip("/")
        out["path"] = v2[0]
        out["cpu"] = _read(base / "cpu.max")
        out["memory"] = _read(base / "memory.max")
    else:
        out["path"] = v1.get("cpu", "?")
        quota = _read(Path("/sys/fs/cgroup/cpu") / v1.get("cpu", "/").lstrip("/") / "cpu.cfs_quota_us")
        period = _read(Path("/sys/fs/cgroup/cpu") / v1.get("cpu", "/").lstrip("/") / "cpu.cfs_period_us")
        out["cpu"] = None if quota is None else ("max (no quota)" if quota == "-1" else f"{quota} {period}")
        limit = _read(Path("/sys/fs/cgroup/memory") / v1.get("memory", "/").lstrip("/")
                      / "memory.limit_in_bytes")
        out["memory"] = None if limit is None else (
            "max (no limit)" if int(limit) >= 1 << 62 else f"{int(limit) / MiB:,.0f} MiB")
        out["memory path"] = v1.get("memory")
    return out


def _read(path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


# -- what strace sees -----------------------------------------------------------------------------------------


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


# -- the fork and prefork servers -------------------------------------------------------------------------


def connection_per_request(address, seconds: float, max_requests: int) -> tuple[float, float]:
    """connect, send 64 bytes, read the echo, close; again and again for `seconds` (at most
    `max_requests` times). Returns (connections per second, median µs per connection)."""
    payload = b"x" * LOAD_SIZE_BYTES
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end and len(times) < max_requests:
        t0 = time.perf_counter()
        with socket.create_connection(address, timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(payload)
            received = 0
            while received < len(payload):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection before echoing")
                received += len(chunk)
        times.append((time.perf_counter() - t0) * 1e6)
    return len(times) / sum(times) * 1e6, statistics.median(times)


def measure_server(name: str, seconds: float, server_cpus, client_cpus, max_requests: int) -> dict:
    from bench.load import run_load  # imported here: multiprocessing's spawn children re-import
    # this module, and need not pay for the load generator's imports

    server = servers.launch.start(servers.get(name), cpus=server_cpus)
    try:
        load = run_load(server.host, server.port, conns=LOAD_CONNS, size=LOAD_SIZE_BYTES,
                        duration=seconds, warmup=min(1.0, seconds / 2), cpus=client_cpus)
        per_s, median = connection_per_request(server.address, seconds, max_requests)
        return {"rps": load["rps"], "p99_us": load["latency_us"]["p99"], "errors": sum(load["errors"].values()),
                "conn_per_s": per_s, "conn_us": median}
    finally:
        server.stop()


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
    Claim("turns of about the round-robin quantum",
          lambda m: 0.5 < m["time slice, SCHED_RR (cpu time / times scheduled)"]
          / m["SCHED_RR quantum (sched_rr_get_interval)"] < 1.2,
          "RR slices within 50-120 % of sched_rr_get_interval"),
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
    quick = lesson.quick

    lesson.section("a live child process, read from /proc/PID/status and /proc/PID/stat")
    status_labels = ("state (status State)", "its parent is this lesson (status PPid)",
                     "threads (status Threads)", "virtual memory (status VmSize)",
                     "resident memory (status VmRSS)", "anonymous resident (status RssAnon)",
                     "file-backed resident (status RssFile)", "voluntary switches (status)",
                     "minor page faults (stat field 10)", "user cpu time (stat field 14)",
                     "system cpu time (stat field 15)", "started, seconds after boot (stat field 22)",
                     "last ran on cpu (stat field 39)", "open file descriptors (ls /proc/PID/fd)")
    why_not = linux_only("/proc/PID/status and /proc/PID/stat")
    if why_not:
        for label in status_labels:
            lesson.skip(label, why_not)
    else:
        child = subprocess.Popen([sys.executable, "-c", INSPECTED_CHILD], stdout=subprocess.PIPE,
                                 stdin=subprocess.DEVNULL, text=True)
        try:
            child.stdout.readline()  # "ready": its memory and threads are in place
            time.sleep(0.05)  # let it fall asleep
            status, stat = procfs.status(child.pid), procfs.stat(child.pid)
            sched, space = procfs.sched(child.pid), address_space(child.pid)
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
        sched_labels = ("scheduling policy (sched policy)", "priority (sched prio)",
                        "load weight (sched se.load.weight)", "times switched in (sched nr_switches)",
                        "cpu time (sched se.sum_exec_runtime)")
        if not sched:
            for label in sched_labels:
                lesson.skip(label, "no /proc/PID/sched (a kernel without CONFIG_SCHED_DEBUG)")
        else:
            policy = int(sched.get("policy", -1))
            lesson.measure(sched_labels[0], {0: "0 (SCHED_OTHER)", 1: "1 (SCHED_FIFO)", 2: "2 (SCHED_RR)",
                                             3: "3 (SCHED_BATCH)", 5: "5 (SCHED_IDLE)"}.get(policy, str(policy)))
            lesson.measure(sched_labels[1], int(sched["prio"]), "(120 = nice 0)")
            lesson.measure(sched_labels[2], load_weight(sched.get("se.load.weight")), "(nice 0 = 1024)")
            lesson.measure(sched_labels[3], int(sched["nr_switches"]))
            lesson.measure(sched_labels[4], float(sched["se.sum_exec_runtime"]), "ms")

    # -- this kernel's scheduler: weights and nice, real-time policies
    name, why = kernel_scheduler()
    lesson.section(f"the scheduler: weights, nice and the real-time policies ({name}: {why})")
    lesson.measure("fair scheduler of this kernel", name)
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    cpu = allowed[-1] if allowed else 0
    spin_s = 1.0 if quick else 2.0
    nice_labels = ("cpu share of the pair, nice 0 spinner", "predicted by the weights (1024 : 335)",
                   f"load weight of the nice {NICED} spinner (se.load.weight)")
    nice = None
    base_nice = os.getpriority(os.PRIO_PROCESS, 0) if not why_not else 0
    nice_why = why_not or (None if base_nice == 0 else
                           f"the lesson runs at nice {base_nice}: run it at nice 0, so that its two "
                           f"spinners are at nice 0 and {NICED} as the weights below assume")
    if nice_why:
        for label in nice_labels:
            lesson.skip(label, nice_why)
    else:
        nice = share_one_cpu(cpu, {"nice 0": keep_nice, f"nice {NICED}": set_nice(NICED)}, spin_s)
        a, b = nice["nice 0"]["share_pct"], nice[f"nice {NICED}"]["share_pct"]
        lesson.measure(nice_labels[0], 100 * a / (a + b), "%")
        predicted = 100 * NICE_WEIGHT[0] / (NICE_WEIGHT[0] + NICE_WEIGHT[NICED])
        lesson.measure(nice_labels[1], predicted, "%")
        weight = load_weight(nice[f"nice {NICED}"]["weight"])
        if weight is None:
            lesson.skip(nice_labels[2], "no se.load.weight in /proc/PID/sched")
        else:
            lesson.measure(nice_labels[2], weight)
        lesson.series("nice_share_pct", {"measured": 100 * a / (a + b), "predicted": predicted})

    rt_labels = ("cpu share, SCHED_FIFO spinner", "cpu share, SCHED_OTHER spinner beside it",
                 "cpu share, SCHED_RR spinner A", "cpu share, SCHED_RR spinner B",
                 "time slice, SCHED_RR (cpu time / times scheduled)", "SCHED_RR quantum (sched_rr_get_interval)")
    rt_runtime = _read(Path("/proc/sys/kernel/sched_rt_runtime_us"))
    rt_why = why_not or (
        "needs two CPUs: a real-time spinner must not take the only one" if len(allowed) < 2 else
        "real-time throttling is off (sched_rt_runtime_us = -1): a real-time spinner would take its "
        "CPU entirely, so the lesson does not start one" if rt_runtime == "-1" else None)
    fifo = rr = None
    if not rt_why:
        try:
            fifo = share_one_cpu(cpu, {"fifo": set_policy(os.SCHED_FIFO, 1), "other": keep_nice}, spin_s / 2)
            rr = share_one_cpu(cpu, {"A": set_policy(os.SCHED_RR, 1), "B": set_policy(os.SCHED_RR, 1)}, spin_s / 2)
        except PermissionError as e:
            rt_why = (f"not permitted ({e.strerror}): a real-time policy needs CAP_SYS_NICE or an "
                      "RLIMIT_RTPRIO above 0 (ulimit -r)")
    if rt_why:
        for label in rt_labels:
            lesson.skip(label, rt_why)
    else:
        lesson.measure(rt_labels[0], fifo["fifo"]["share_pct"], "%")
        lesson.measure(rt_labels[1], fifo["other"]["share_pct"], "%")
        lesson.measure(rt_labels[2], rr["A"]["share_pct"], "%")
        lesson.measure(rt_labels[3], rr["B"]["share_pct"], "%")
        lesson.measure(rt_labels[4], statistics.fmean([rr["A"]["ms_per_slice"], rr["B"]["ms_per_slice"]]), "ms")
        probe = pinned_spinner(cpu, 1.0)
        try:
            os.sched_setscheduler(probe[0], os.SCHED_RR, os.sched_param(1))
            lesson.measure(rt_labels[5], os.sched_rr_get_interval(probe[0]) * 1000, "ms")
        finally:
            os.kill(probe[0], signal.SIGKILL)
            os.waitpid(probe[0], 0)
            os.close(probe[1])
        lesson.series("rt_share_pct", {"SCHED_FIFO": fifo["fifo"]["share_pct"],
                                       "SCHED_OTHER beside it": fifo["other"]["share_pct"]})

    # -- the D state
    true = shutil.which("true") or "/bin/true"
    lesson.section("the D state: a vfork parent waiting for its child to exec")
    d_labels = ("state of the waiting parent (stat field 3)", "where it waits in the kernel (wchan)")
    if why_not:
        for label in d_labels:
            lesson.skip(label, why_not)
    else:
        held = hold_in_d_state(true)
        lesson.measure(d_labels[0], held["state"] or "not seen in D")
        if held["wchan"]:
            lesson.measure(d_labels[1], held["wchan"])
        else:
            lesson.skip(d_labels[1], "/proc/PID/wchan reads 0 here (restricted to root, or the state "
                        "was not seen)")

    # -- namespaces and cgroups
    lesson.section("namespaces and cgroups (/proc/self/ns, /proc/self/cgroup)")
    ns_labels = ("namespaces of this process", "namespaces shared with PID 1", "cgroup version",
                 "cgroup of this process (cpu controller)", "cpu limit of its cgroup",
                 "memory limit of its cgroup")
    if why_not:
        for label in ns_labels:
            lesson.skip(label, why_not)
        groups = None
    else:
        kinds, shared = namespaces()
        lesson.measure(ns_labels[0], len(kinds), f"({', '.join(kinds)})")
        if isinstance(shared, str):
            lesson.skip(ns_labels[1], f"may not read /proc/1/ns ({shared}): PID 1 is outside this "
                        "process's reach, as it is from inside a container")
        else:
            lesson.measure(ns_labels[1], len(shared), f"of {len(kinds)}")
        groups = cgroup()
        lesson.measure(ns_labels[2], groups["version"])
        lesson.measure(ns_labels[3], groups["path"])
        for label, key in ((ns_labels[4], "cpu"), (ns_labels[5], "memory")):
            if groups.get(key) is None:
                lesson.skip(label, "its cgroup files are not readable here")
            else:
                lesson.measure(label, groups[key])

    repeats = 30 if quick else 200
    slow_repeats = 3 if quick else 10
    lesson.section(f"creating a process (median of {repeats}; multiprocessing: of {slow_repeats})")
    cost = {}

    def creation(label: str, action, n: int, unit: str = "µs") -> None:
        value = median_us(action, n)
        cost[label] = lesson.measure(label, value / 1000 if unit == "ms" else value, unit)

    creation("fork + exit + wait", fork_exit_wait, repeats)
    creation("fork + exec true + wait", lambda: fork_exec_wait(true), repeats)
    creation("posix_spawn true + wait", lambda: posix_spawn_wait(true), repeats)
    creation("subprocess.run true", lambda: subprocess.run([true], check=True), repeats)
    for method in ("fork", "forkserver", "spawn"):
        label = f"multiprocessing {method}: start + join"
        if method not in multiprocessing.get_all_start_methods():
            lesson.skip(label, f"the {method!r} start method does not exist on {sys.platform}")
            continue
        context = multiprocessing.get_context(method)
        multiprocessing_start_join(context)  # forkserver: the first start launches the server
        creation(label, lambda c=context: multiprocessing_start_join(c), slow_repeats, "ms")
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

    ballast = b"\x01" * (512 * MiB)  # the parent now has 512 MiB more resident memory
    creation("fork + exec true + wait, parent +512 MiB", lambda: fork_exec_wait(true), repeats // 2)
    creation("posix_spawn true + wait, parent +512 MiB", lambda: posix_spawn_wait(true), repeats // 2)
    del ballast

    seconds = 1.5 if quick else 4.0
    max_requests = 3_000 if quick else 10_000  # each leaves a socket in TIME_WAIT for 60 s
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if allowed and len(allowed) >= 4:
        server_cpus, client_cpus = allowed[:len(allowed) // 2], allowed[len(allowed) // 2:]
    else:
        server_cpus = client_cpus = None
    lesson.section(f"fork vs prefork: {LOAD_CONNS} long-lived connections ({LOAD_SIZE_BYTES} B messages, "
                   f"{seconds:g} s), then a new connection per request ({seconds:g} s, one client)")
    results = {}
    for name in ("fork", "prefork"):
        labels = (f"{name} server, requests per second", f"{name} server, p99 latency",
                  f"{name} server, connections per second (one per request)",
                  f"{name} server, connect + echo + close")
        ok, reason = servers.get(name).availability()
        if not ok:
            for label in labels:
                lesson.skip(label, reason)
            continue
        r = results[name] = measure_server(name, seconds, server_cpus, client_cpus, max_requests)
        lesson.measure(labels[0], r["rps"], "req/s")
        lesson.measure(labels[1], r["p99_us"], "µs")
        lesson.measure(labels[2], r["conn_per_s"], "conn/s")
        lesson.measure(labels[3], r["conn_us"], "µs")

    lesson.series("creation_us", {label: (value * 1000 if label.startswith("multiprocessing") else value)
                                  for label, value in cost.items()})

    # -- what to notice, computed
    if not why_not:
        lesson.notice(f"the child's virtual memory was {vm_size:,.0f} MiB but only {vm_rss:,.0f} MiB resident: "
                      f"{space['malloc arenas']:,.0f} MiB of it are {space['arena count']} malloc arenas "
                      f"glibc reserved for its threads, {space['thread stacks']:,.0f} MiB their stacks, "
                      f"{space['untouched mapping']:,.0f} MiB the mapping it never wrote; it started "
                      f"{read_at_s - started:,.2f} s before we read it (start time and uptime both count "
                      "from boot)")
    if nice:
        lesson.notice(f"pinned to one CPU, the nice 0 spinner got {100 * a / (a + b):.0f}% of "
                      f"the pair's CPU time and the nice {NICED} one the rest; the weights "
                      f"{NICE_WEIGHT[0]} : {NICE_WEIGHT[NICED]} predict {predicted:.0f}%")
    if fifo and rr:
        lesson.notice(f"a SCHED_FIFO spinner took {fifo['fifo']['share_pct']:.0f}% of its CPU and left the "
                      f"SCHED_OTHER one beside it {fifo['other']['share_pct']:.1f}%: a real-time task runs "
                      "until it blocks or a higher priority wakes; what keeps a little back for ordinary "
                      "tasks is real-time throttling (sched_rt_runtime_us per sched_rt_period_us) and, "
                      "since Linux 6.12, the fair server, a deadline reservation for them")
        lesson.notice(f"two SCHED_RR spinners of equal priority took turns of "
                      f"{statistics.fmean([rr['A']['ms_per_slice'], rr['B']['ms_per_slice']]):.0f} ms each, "
                      "the round-robin quantum, against the few ms of the fair scheduler (lesson 01)")
    if not why_not and held["state"] == "D":
        lesson.notice("the Python child waiting in posix_spawn was in state D"
                      + (f" at {held['wchan']}" if held["wchan"] else "")
                      + ": a vfork parent sleeps uninterruptibly (killable only) until its child execs or "
                      "exits; a D task counts in the load average though it uses no CPU")
    if created_by:
        lesson.notice("strace: " + "; ".join(f"{what} -> {call}" for what, call in created_by.items()))
    lesson.notice(f"posix_spawn took {cost['posix_spawn true + wait']:,.0f} µs against "
                  f"{cost['fork + exec true + wait']:,.0f} µs for fork + exec; with 512 MiB more in the parent "
                  f"{cost['posix_spawn true + wait, parent +512 MiB']:,.0f} µs against "
                  f"{cost['fork + exec true + wait, parent +512 MiB']:,.0f} µs: vfork-style creation "
                  "copies no page tables")
    spawn = cost.get("multiprocessing spawn: start + join")
    mp_fork = cost.get("multiprocessing fork: start + join")
    if spawn and mp_fork:
        lesson.notice(f"multiprocessing spawn took {spawn:,.0f} ms per process against {mp_fork:,.1f} ms for "
                      "fork: spawn starts a fresh interpreter and re-imports the main module")
    if len(results) == 2:
        f, p = results["fork"], results["prefork"]
        lesson.notice(f"with long-lived connections prefork did {p['rps'] / f['rps']:.2g}x the requests per "
                      f"second of fork; with a connection per request, {p['conn_per_s'] / f['conn_per_s']:.2g}x "
                      f"the connections ({f['conn_us']:,.0f} µs vs {p['conn_us']:,.0f} µs each): "
                      "the fork server pays a fork per connection")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
