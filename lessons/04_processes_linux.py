"""Lesson 04, processes in Linux: /proc, the ways to create a process, and pre-forking.

What it shows:
- a live process as the kernel describes it: /proc/PID/status (named fields) and /proc/PID/stat
  (the same and more, as space-separated numbers), read field by field on a child we started;
- what it costs to create a process, by every road Python offers: fork(2) (clone(2) underneath),
  fork + execve(2), posix_spawn(3) (glibc uses clone with CLONE_VM | CLONE_VFORK: the child borrows
  the parent's memory until it execs, so no page tables are copied), subprocess, and
  multiprocessing's three start methods (fork, forkserver, spawn). Also with a parent holding
  512 MiB, where fork has to copy page tables and posix_spawn does not;
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
import shutil
import socket
import statistics
import subprocess
import sys
import time

import servers
import servers.launch
from lessons.common import Lesson, linux_only, parse_args

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


# -- a live process in /proc ------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    """/proc/PID/status: one "Name:<tab>value" per line."""
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return fields


def proc_stat(pid: int) -> list[str]:
    """/proc/PID/stat as a list numbered like proc(5): stat[1] is the pid, stat[2] the command in
    parentheses (it may contain spaces, so split after the last ")"), stat[3] the state..."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    head, _, rest = text.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    return ["", pid_text, comm, *rest.split()]


def uptime_s() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def kib(text: str) -> float:
    """ "16384 kB" -> MiB"""
    return int(text.split()[0]) / 1024


# -- creating processes ----------------------------------------------------------------------------------


def fork_exit_wait() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def fork_exec_wait(program: str) -> None:
    pid = os.fork()  # copies the page tables of the whole parent...
    if pid == 0:
        try:
            os.execv(program, [program])  # ...which exec throws away at once
        finally:
            os._exit(127)
    os.waitpid(pid, 0)


def posix_spawn_wait(program: str) -> None:
    pid = os.posix_spawn(program, [program], os.environ)  # glibc: clone(CLONE_VM|CLONE_VFORK) + exec
    os.waitpid(pid, 0)


def nothing() -> None:
    pass


def multiprocessing_start_join(context) -> None:
    process = context.Process(target=nothing)
    process.start()
    process.join()


def median_us(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        action()
        times.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(times)


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
            status, stat = proc_status(child.pid), proc_stat(child.pid)
            fds = len(os.listdir(f"/proc/{child.pid}/fd"))
            read_at_s = uptime_s()
        finally:
            child.kill()
            child.wait()
        lesson.measure("state (status State)", status["State"])
        lesson.measure("its parent is this lesson (status PPid)",
                       "yes" if int(status["PPid"]) == os.getpid() else f"no ({status['PPid']})")
        lesson.measure("threads (status Threads)", int(status["Threads"]))
        vm_size = lesson.measure("virtual memory (status VmSize)", kib(status["VmSize"]), "MiB")
        vm_rss = lesson.measure("resident memory (status VmRSS)", kib(status["VmRSS"]), "MiB")
        lesson.measure("anonymous resident (status RssAnon)", kib(status["RssAnon"]), "MiB")
        lesson.measure("file-backed resident (status RssFile)", kib(status["RssFile"]), "MiB")
        lesson.measure("voluntary switches (status)", int(status["voluntary_ctxt_switches"]))
        lesson.measure("minor page faults (stat field 10)", int(stat[10]))
        lesson.measure("user cpu time (stat field 14)", int(stat[14]) * 1000 / CLK_TCK, "ms")
        lesson.measure("system cpu time (stat field 15)", int(stat[15]) * 1000 / CLK_TCK, "ms")
        started = lesson.measure("started, seconds after boot (stat field 22)", int(stat[22]) / CLK_TCK, "s")
        lesson.measure("last ran on cpu (stat field 39)", int(stat[39]))
        lesson.measure("open file descriptors (ls /proc/PID/fd)", fds)

    repeats = 30 if quick else 200
    slow_repeats = 3 if quick else 10
    true = shutil.which("true") or "/bin/true"
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

    # -- what to notice, computed
    if not why_not:
        lesson.notice(f"the child's virtual memory was {vm_size:,.0f} MiB but only {vm_rss:,.0f} MiB resident: "
                      "the 64 MiB it allocated and never wrote has no pages yet; it started "
                      f"{read_at_s - started:,.2f} s before we read it (start time and uptime both count "
                      "from boot)")
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
