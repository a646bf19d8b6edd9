"""Lesson 11, preemptive vs cooperative: who takes the CPU away from code that does not give it up.

What it shows, on this machine:

1. A heartbeat that should tick every 10 ms, next to a CPU burn that never waits. Inside one
   asyncio loop the burn is just another task: the loop runs one task at a time until it awaits,
   so the heartbeat is late by the whole burn (cooperative). Move the burn to a thread
   (asyncio.to_thread) or run both as threads, and CPython's GIL hands over after the switch
   interval (sys.getswitchinterval(), 5 ms by default): the interpreter preempts the burning thread.
   Run the burn in another process on the same CPU, and the kernel's scheduler preempts it
   within a few milliseconds of the heartbeat waking up: no GIL in between. Everything in this
   section runs pinned to one CPU, so that the heartbeat and the burn always compete for it.
   The same heartbeat next to:
   - a C function called through ctypes (lessons/native/gil_spin.c): with ctypes.PyDLL the GIL
     stays held for the whole call and no switch interval can interrupt it; with ctypes.CDLL
     ctypes releases it around the call;
   - a burn in a thread of the free-threaded build (3.13t+, PEP 703), where one is on PATH;
   - a goroutine in a loop without calls (lessons/native/preempt_go.go, GOMAXPROCS=1): Go 1.14+
     preempts it asynchronously, with a signal; GODEBUG=asyncpreemptoff=1 shows the old,
     cooperative scheduler;
   - an Erlang process in a tight loop (lessons/native/preempt_erlang.erl, erl +S 1): preempted
     when it has used its reductions;
   - a callback on Node's loop (lessons/native/preempt_node.js), cooperative like asyncio, and
     the same burn in a worker thread.
   Each tick's lateness is kept as a series for the picture.
1b. Priority inversion: a nice-19 task holds a lock (a POSIX semaphore) for a few ms of CPU, a
   nice-0 task waits for it, and a nice-0 CPU hog, all on one CPU, keeps the holder from running.
   Then the textbook case with SCHED_FIFO threads (lessons/native/prio_inherit.c), on a plain
   mutex and on a PTHREAD_PRIO_INHERIT one, where the kernel lends the holder the waiter's
   priority; skipped without permission for SCHED_FIFO.
2. The same contrast on the servers. Each server is started with `--work-us 20000` (it burns 20 ms
   of CPU per chunk it receives) and pinned to one CPU; bench.load drives 8 heavy connections at
   it, and beside them two light clients keep their own time:
   - a light echo: one connection, a small message every 20 ms, its round trip timed. Its message
     costs the server the same 20 ms of work as a heavy one;
   - a zero-work probe: connect, half-close at once without sending a byte, wait for the server to
     close. The server's code runs for it but burns nothing, so its round trip is the time until
     the server gets around to a new client: pure scheduling delay, the heartbeat of section 1.
   On an event loop (select, epoll, asyncio, uvloop, trio, gevent, generators, io_uring) the probe
   waits for every heavy chunk ahead of it in the one thread, and it needs two turns of the loop
   (accept, then the end of stream); with a thread per connection the GIL is handed over every
   switch interval; with a process per connection the kernel preempts the burners. The light echo
   shows the other side: when every message costs the same, preemption does not make it faster,
   it only shares the CPU in slices instead of whole messages. Quick mode measures a
   representative subset; full mode every server available here (the serial `iterative` server is
   left out: it would serve the light clients only after every heavy one left, lesson 07).

The OS mechanism: the kernel preempts a task when its time slice ends or a task that should run
sooner wakes (sched(7); CFS/EEVDF wake-up preemption); CPython's eval loop drops the GIL when
another thread has waited longer than the switch interval (sys.setswitchinterval). An event loop
has no such mechanism: a callback or a coroutine step runs until it returns or awaits.
Linux-only parts: pinning (sched_setaffinity) and the servers that need epoll or io_uring.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import servers
from bench.load import run_load
from lessons.common import Claim, Lesson, parse_args
from servers import build, launch

TICK_S = 0.010  # the heartbeat's period
BURN_S = 0.300  # how long the CPU burn runs without waiting
TICKS = round((BURN_S + 0.2) / TICK_S)  # the heartbeat's ticks: the burn starts after five
PRIORITY_HOLD_CPU_S = 0.020  # CPU the low-priority task needs while it holds the lock
PRIORITY_MEDIUM_MAX_S = 5.0  # the hog gives up after this long, whatever happens
PRIORITY_FIFO_HOLD_S = 0.005  # real-time version: CPU the low thread needs while it holds the mutex
PRIORITY_FIFO_MEDIUM_S = 0.200  # and how long the medium real-time thread spins (wall time)
WORK_US = 20_000  # --work-us: CPU burned by the server per chunk it receives
HEAVY_CONNS = 8
LIGHT_GAP_S = 0.020  # the light client's pause between two messages
LIGHT_TIMEOUT_S = 10.0
MESSAGE = b"light" * 12 + b"\n"
QUICK_SERVERS = ("threads", "epoll", "asyncio-protocol", "gevent", "trio")
PROBE_GAP_S = 0.020  # the probe's pause between two connections

# Who takes the CPU from a connection's code that burns it, by server: its scheduler.
SWITCHERS = {"threads": "GIL", "threadpool": "GIL", "prefork": "GIL", "fork": "kernel",
             "go": "runtime", "erlang": "runtime"}


def switcher(name: str) -> str:
    """ "kernel" (a process per connection), "GIL" (threads), "runtime" (Go's scheduler, the
    BEAM's) or "event loop" (everything else, Node's and the C reference's included)."""
    return SWITCHERS.get(name, "event loop")


def burn(seconds: float) -> None:
    """Pure Python work that never waits for anything: no syscall, no await."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


# -- 1. a heartbeat next to a burn -----------------------------------------------------------------


Samples = list[list[float]]  # one [ms since the heartbeat started, ms late] per tick


async def asyncio_heartbeat(ticks: int) -> Samples:
    """Tick every TICK_S on the running loop; return every tick's (time, lateness) in ms."""
    start, samples = time.perf_counter(), []
    for k in range(1, ticks + 1):
        due = start + k * TICK_S
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        samples.append([k * TICK_S * 1000, (time.perf_counter() - due) * 1000])
    return samples


async def asyncio_burn_inside() -> Samples:
    """The burn is a coroutine on the same loop: it never awaits while it burns."""
    async def burner():
        await asyncio.sleep(5 * TICK_S)
        burn(BURN_S)  # the loop cannot run anything else until this returns

    heartbeat = asyncio.create_task(asyncio_heartbeat(TICKS))
    await burner()
    return await heartbeat


async def asyncio_burn_in_thread() -> Samples:
    """The same burn handed to a thread: the loop stays free, the GIL is shared by preemption."""
    async def burner():
        await asyncio.sleep(5 * TICK_S)
        await asyncio.to_thread(burn, BURN_S)

    heartbeat = asyncio.create_task(asyncio_heartbeat(TICKS))
    await burner()
    return await heartbeat


def thread_heartbeat(ticks: int) -> Samples:
    start, samples = time.perf_counter(), []
    for k in range(1, ticks + 1):
        due = start + k * TICK_S
        time.sleep(max(0.0, due - time.perf_counter()))  # releases the GIL while it sleeps
        samples.append([k * TICK_S * 1000, (time.perf_counter() - due) * 1000])
    return samples


def threads_burn(work=burn, *args) -> Samples:
    """Heartbeat in the main thread, ``work`` (the burn by default) in another thread."""
    burner = threading.Timer(5 * TICK_S, work, args=args or (BURN_S,))
    burner.start()
    try:
        return thread_heartbeat(TICKS)
    finally:
        burner.join()


def process_burn(cpu: int) -> Samples:
    """Heartbeat here, burn in a forked process; both pinned to ``cpu``: only the kernel decides."""
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        pid = os.fork()
        if pid == 0:
            try:
                time.sleep(5 * TICK_S)
                burn(BURN_S)
            finally:
                os._exit(0)
        try:
            return thread_heartbeat(TICKS)
        finally:
            os.waitpid(pid, 0)
    finally:
        os.sched_setaffinity(0, original)


# -- 1b. a C call that holds the GIL ----------------------------------------------------------------


def c_spin(hold_gil: bool):
    """lessons/native/gil_spin.c's spin_ms(), through ctypes.PyDLL (the GIL stays held for the
    whole call) or ctypes.CDLL (ctypes releases it around the call). Raises build.Unavailable."""
    import ctypes

    path = build.build("lessons/native/gil_spin.c", flags=("-shared", "-fPIC"))
    lib = (ctypes.PyDLL if hold_gil else ctypes.CDLL)(str(path))
    lib.spin_ms.argtypes, lib.spin_ms.restype = [ctypes.c_double], ctypes.c_long
    return lambda seconds: lib.spin_ms(seconds * 1000)


# -- 1c. the same heartbeat in Go, Erlang and Node --------------------------------------------------


def native_heartbeat(kind: str, variant: str = "") -> dict:
    """Run lessons/native/preempt_* (built by servers/build.py): the same heartbeat next to the
    same burn, one scheduler thread. Returns its JSON (worst_ms, series). Raises build.Unavailable."""
    args = [str(round(TICK_S * 1000)), str(round(BURN_S * 1000)), str(round(TICKS * TICK_S * 1000))]
    env = dict(os.environ)
    if kind == "go":
        cmd = [str(build.build("lessons/native/preempt_go.go")), *args]
        if variant == "asyncpreemptoff":
            env["GODEBUG"] = "asyncpreemptoff=1"  # the scheduler of Go 1.13 and before
    elif kind == "erlang":
        beam_dir = build.build("lessons/native/preempt_erlang.erl")
        erl = shutil.which("erl")
        if not erl:
            raise build.Unavailable("no Erlang runtime (erl) on PATH: apt-get install erlang-base")
        cmd = [erl, "+S", "1", "-noshell", "-pa", str(beam_dir), "-s", "preempt_erlang", "main", *args]
    elif kind == "node":
        cmd = [build.tool("node"), str(build.build("lessons/native/preempt_node.js")), *args,
               variant or "inline"]
    else:
        raise ValueError(kind)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=env)
    except subprocess.TimeoutExpired:
        raise build.Unavailable(f"{Path(cmd[0]).name} did not finish within 30 s") from None
    if done.returncode != 0:
        raise build.Unavailable(f"{Path(cmd[0]).name} exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout)


# -- 1d. the free-threaded build ---------------------------------------------------------------------

FREE_THREADED_NAMES = ("python3.14t", "python3.13t", "python3t")


def free_threaded_python() -> str | None:
    """The first free-threaded CPython (3.13t+, PEP 703) on PATH, if any."""
    for name in FREE_THREADED_NAMES:
        if found := shutil.which(name):
            return found
    return None


def free_threaded_heartbeat(python: str) -> dict:
    """The thread heartbeat next to a burn thread, run by the free-threaded interpreter: this
    module's own burn() and thread_heartbeat(), sent as source (they need only the stdlib)."""
    code = "\n".join([
        "from __future__ import annotations",  # the functions' annotations name this module's types
        "import json, sys, threading, time",
        f"TICK_S, BURN_S, TICKS = {TICK_S!r}, {BURN_S!r}, {TICKS!r}",
        inspect.getsource(burn), inspect.getsource(thread_heartbeat),
        "burner = threading.Timer(5 * TICK_S, burn, args=(BURN_S,)); burner.start()",
        "samples = thread_heartbeat(TICKS); burner.join()",
        "print(json.dumps({'gil': getattr(sys, '_is_gil_enabled', lambda: True)(), 'series': samples}))"])
    done = subprocess.run([python, "-X", "gil=0", "-c", code], capture_output=True, text=True,
                          timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{python} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def priority_inheritance(cpu: int, protocol: str, medium_s: float) -> float:
    """lessons/native/prio_inherit.c: three SCHED_FIFO threads on ``cpu``, the mutex plain
    ("none") or priority-inheriting ("inherit"); the high thread's wait in ms. Raises
    build.Unavailable (no compiler, or no permission for SCHED_FIFO) with the fix."""
    cmd = [str(build.build("lessons/native/prio_inherit.c", flags=("-pthread",))), str(cpu),
           f"{PRIORITY_FIFO_HOLD_S * 1000:g}", f"{medium_s * 1000:g}", protocol]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise build.Unavailable("prio_inherit did not finish within 30 s") from None
    if done.returncode == 3:
        raise build.Unavailable(f"{json.loads(done.stdout)['error']}: SCHED_FIFO needs CAP_SYS_NICE "
                                "(run as root) or a real-time limit (ulimit -r 30)")
    if done.returncode != 0:
        raise build.Unavailable(f"prio_inherit exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout)["wait_ms"]


# -- 1e. priority inversion --------------------------------------------------------------------------


def priority_inversion(cpu: int, hold_cpu_s: float, with_medium: bool) -> float:
    """How long a nice-0 task waits for a lock that a nice-19 task holds for ``hold_cpu_s`` of CPU,
    all pinned to ``cpu``; with ``with_medium`` a nice-0 CPU hog runs meanwhile. Seconds.

    The kernel gives runnable tasks CPU in proportion to their weights (sched(7): nice 0 weighs
    1024, nice 19 weighs 15). While the high task sleeps on the lock, the hog and the low task
    share the CPU 1024:15, so the lock's holder crawls and the high task waits for it: inversion.
    """
    import multiprocessing

    lock = multiprocessing.Lock()  # a POSIX semaphore in shared memory: no priority inheritance
    held, start_medium = os.pipe(), os.pipe()

    def child(body):
        pid = os.fork()
        if pid == 0:
            try:
                os.sched_setaffinity(0, {cpu})
                body()
            finally:
                os._exit(0)
        return pid

    def low():
        os.setpriority(os.PRIO_PROCESS, 0, 19)  # the lowest weight a normal task can have
        with lock:
            os.write(held[1], b"x")
            from servers.common import burn_cpu
            burn_cpu(int(hold_cpu_s * 1e6))  # CPU time, however long the kernel makes it take

    def medium():
        os.read(start_medium[0], 1)
        deadline = time.monotonic() + PRIORITY_MEDIUM_MAX_S  # bounded: never hog forever
        while time.monotonic() < deadline:
            pass

    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    pids = []
    try:
        pids.append(child(low))
        os.read(held[0], 1)  # the low task holds the lock now
        if with_medium:
            pids.append(child(medium))
            os.write(start_medium[1], b"x")
        t0 = time.perf_counter()
        with lock:  # the high task: sleeps in sem_wait (a futex) until low releases
            waited = time.perf_counter() - t0
        return waited
    finally:
        for pid in pids[1:]:
            os.kill(pid, signal.SIGKILL)  # the hog, by its pid
        for pid in pids:
            os.waitpid(pid, 0)
        for fd in (*held, *start_medium):
            os.close(fd)
        os.sched_setaffinity(0, original)


# -- 2. light clients next to heavy ones -----------------------------------------------------------


def light_client(address, stop: threading.Event) -> list[tuple[int, float]]:
    """One connection: send MESSAGE, time the whole echo, pause LIGHT_GAP_S; until ``stop``.
    Its message costs the server the same --work-us as a heavy one. Returns (send time in
    monotonic ns, round trip in s) per message; a timeout ends the run, recorded as LIGHT_TIMEOUT_S."""
    samples = []
    with socket.create_connection(address, timeout=LIGHT_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not stop.is_set():
            sent_ns, t0 = time.monotonic_ns(), time.perf_counter()
            sock.sendall(MESSAGE)
            got = 0
            try:
                while got < len(MESSAGE):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the server closed the light client's connection")
                    got += len(chunk)
            except TimeoutError:
                samples.append((sent_ns, LIGHT_TIMEOUT_S))
                break
            samples.append((sent_ns, time.perf_counter() - t0))
            stop.wait(LIGHT_GAP_S)
    return samples


def zero_work_probe(address, stop: threading.Event) -> list[tuple[int, float]]:
    """A client that costs the server no CPU: connect, half-close at once (no byte sent, so no
    --work-us burned), wait for the server to close its side. The time it takes is the time until
    the server's code gets to run for a new client: pure scheduling delay."""
    samples = []
    while not stop.is_set():
        sent_ns, t0 = time.monotonic_ns(), time.perf_counter()
        try:
            with socket.create_connection(address, timeout=LIGHT_TIMEOUT_S) as sock:
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1):  # b"": the server saw our FIN and closed
                    raise ConnectionError("the server echoed bytes nobody sent")
        except TimeoutError:
            samples.append((sent_ns, LIGHT_TIMEOUT_S))
            break
        samples.append((sent_ns, time.perf_counter() - t0))
        stop.wait(PROBE_GAP_S)
    return samples


def cpu_plan() -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, client CPUs): disjoint when there are two CPUs or more."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return [cpus[-1]], [cpus[0]]


def light_under_load(name: str, warmup_s: float, duration_s: float) -> dict:
    """Heavy load from bench.load, and the two light clients beside it, in threads of their own."""
    server_cpus, client_cpus = cpu_plan()
    server = launch.start(servers.get(name), ["--work-us", str(WORK_US)], cpus=server_cpus)
    heavy: dict = {}
    samples: dict[str, list] = {}
    stop = threading.Event()

    def drive():
        try:
            heavy.update(run_load(server.host, server.port, conns=HEAVY_CONNS, size=64,
                                  duration=duration_s, warmup=warmup_s, workers=1, cpus=client_cpus))
        finally:
            stop.set()

    def light(kind, client):
        try:
            samples[kind] = client(server.address, stop)
        except OSError as exc:
            samples[kind] = exc

    threads = [threading.Thread(target=drive, daemon=True),
               threading.Thread(target=light, args=("echo", light_client), daemon=True),
               threading.Thread(target=light, args=("probe", zero_work_probe), daemon=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration_s + warmup_s + 30)
    finally:
        stop.set()
        server.stop()
    start, end = heavy.get("window_start_ns"), heavy.get("window_end_ns")
    if not start:
        return {"error": "the heavy load did not run: " + "; ".join(heavy.get("warnings", []))}
    result = {"heavy_rps": heavy["rps"]}
    for kind in ("echo", "probe"):
        got = samples.get(kind)
        if isinstance(got, Exception) or got is None:
            result[kind] = f"the {kind} client failed: {got}"
        elif got and got[-1][1] >= LIGHT_TIMEOUT_S:
            result[kind] = f"no answer within {LIGHT_TIMEOUT_S:.0f} s"
        else:
            inside = [rtt for sent, rtt in got if start <= sent < end]
            result[kind] = statistics.median(inside) * 1000 if inside else \
                "nothing sent during the measured window"
    return result


def by_switcher(values: dict, kind: str) -> dict[str, dict[str, float]]:
    """{switcher: {server: value}} of the recorded "light echo on NAME" or "zero-work probe on NAME"
    figures (``values``: label -> number, e.g. a Claim's ``m``). For the page and its claims."""
    prefix = {"echo": "light echo on ", "probe": "zero-work probe on "}[kind]
    out: dict[str, dict[str, float]] = {}
    for label, value in values.items():
        if label.startswith(prefix):
            name = label[len(prefix):]
            out.setdefault(switcher(name), {})[name] = value
    return out


def echo_summary(values: dict) -> dict:
    """The light echo on event loops against the servers someone preempts: ranges and medians."""
    groups = by_switcher(values, "echo")
    loops = sorted(groups.get("event loop", {}).values())
    preempted = sorted(v for k, g in groups.items() if k != "event loop" for v in g.values())
    if not loops or not preempted:
        return {}
    return {"loop_min": loops[0], "loop_max": loops[-1], "loop_median": statistics.median(loops),
            "preempted_min": preempted[0], "preempted_max": preempted[-1],
            "preempted_median": statistics.median(preempted)}


# -- the picture, drawn from a recorded run ----------------------------------------------------------

# Which panel each heartbeat goes to: Python's models, then the other runtimes.
PYTHON_ROWS = ("burn in an asyncio task", "burn in asyncio.to_thread", "burn in another thread",
               "burn in another process, same CPU", "burn in a C call holding the GIL (ctypes.PyDLL)",
               "burn in a C call releasing the GIL (ctypes.CDLL)",
               "free-threaded Python: burn in another thread")


def draw_heartbeat(record: dict, fig) -> None:
    """Every tick's lateness over time, one line per model, log scale: who takes the CPU back."""
    from lessons.figures import not_measured

    beats = record.get("series", {}).get("heartbeat")
    if not beats:
        not_measured(fig, "this run has no heartbeat series (recorded before it existed)")
        return
    fig.set_size_inches(9.0, 6.0)  # taller than the default: the legends go under the curves
    panels = fig.subplots(1, 2, sharey=True)
    groups = ([k for k in beats if k in PYTHON_ROWS], [k for k in beats if k not in PYTHON_ROWS])
    styles = ("-", "--", ":", "-.")
    for ax, names, title in zip(panels, groups, ("Python", "Go, Erlang, Node"), strict=True):
        for i, name in enumerate(names):
            t, late = [s[0] for s in beats[name]], [s[1] for s in beats[name]]
            ax.plot(t, [max(ms, 0.05) for ms in late], styles[i // 4 % len(styles)], label=name,
                    linewidth=1.4)
        ax.axvspan(5 * TICK_S * 1000, (5 * TICK_S + BURN_S) * 1000, color="#999999", alpha=0.12,
                   label=f"the {BURN_S * 1000:.0f} ms burn (planned)")
        ax.set_yscale("log")
        ax.set_xlabel("time since the heartbeat started (ms)")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=1, frameon=False)
        if not names:
            ax.text(0.5, 0.5, "not measured here", transform=ax.transAxes, ha="center")
    panels[0].set_ylabel(f"lateness of each {TICK_S * 1000:.0f} ms tick (ms, log)")
    fig.suptitle("Lesson 11: a heartbeat next to a CPU burn on one CPU")


PICTURES = {"heartbeat": draw_heartbeat}


def _ratio_echo_probe(m) -> float:
    """Median over the GIL and kernel servers of light echo / zero-work probe."""
    echo, probe = by_switcher(m, "echo"), by_switcher(m, "probe")
    return statistics.median(echo[k][n] / probe[k][n] for k in ("GIL", "kernel")
                             for n in echo.get(k, {}) if n in probe.get(k, {}))


def _probe_gap(m) -> tuple[float, float]:
    """(the fastest event loop's probe, the slowest GIL- or kernel-preempted server's probe)."""
    probe = by_switcher(m, "probe")
    return (min(probe["event loop"].values()),
            max(v for k in ("GIL", "kernel") for v in probe.get(k, {}).values()))


BURN_MS = BURN_S * 1000

# The page's comparative sentences (docs/11-preemptive-vs-cooperative.md), checked against the
# recorded run by tests/test_claims.py. The bounds are wide: they must hold on a quiet machine and
# a busy one, and they are about effects of 10x and more, or about one tick.
CLAIMS = [
    Claim("In the same asyncio loop the heartbeat was late by about the whole 300 ms burn",
          lambda m: 0.8 * BURN_MS <= m["burn in an asyncio task"] <= 2 * BURN_MS,
          "the asyncio heartbeat is late by 0.8x to 2x the burn"),
    Claim("the lateness drops to a few switch intervals (threads) or less",
          lambda m: max(m["burn in another thread"], m["burn in asyncio.to_thread"])
          <= 6 * m["CPython switch interval"]
          and m["burn in another process, same CPU"] <= 6 * m["CPython switch interval"],
          "with the burn in a thread or a process the heartbeat is late by at most 6 switch intervals"),
    Claim("A few milliseconds, about one tick, is the kernel's grain.",
          lambda m: 0.5 <= m["burn in another process, same CPU"] <= 15,
          "with the burn in another process the heartbeat is late by 0.5 to 15 ms"),
    Claim("A C call is one long bytecode.",
          lambda m: m["burn in a C call holding the GIL (ctypes.PyDLL)"] >= 0.8 * BURN_MS
          and m["burn in a C call holding the GIL (ctypes.PyDLL)"]
          >= 10 * m["burn in a C call releasing the GIL (ctypes.CDLL)"],
          "a C call holding the GIL delays the heartbeat by about the whole burn, 10x the same call "
          "releasing it"),
    Claim("Go 1.13's scheduler was as cooperative as asyncio for such a loop",
          lambda m: m["Go: the same, GODEBUG=asyncpreemptoff=1"] >= 0.8 * BURN_MS
          and 3 * m["Go: burn in a goroutine (GOMAXPROCS=1)"] < m["Go: the same, GODEBUG=asyncpreemptoff=1"],
          "without async preemption Go's heartbeat is late by about the burn, with it under a third of that"),
    Claim("The BEAM's reductions switch processes far more often than that",
          lambda m: m["Erlang: burn in a process (+S 1)"] < m["Go: burn in a goroutine (GOMAXPROCS=1)"]
          and m["Erlang: burn in a process (+S 1)"] <= BURN_MS / 10,
          "Erlang's heartbeat is late by under a tenth of the burn, less than Go's"),
    Claim("Node's loop, like asyncio's, was late by the whole burn",
          lambda m: m["Node: burn in a callback on the loop"] >= 0.8 * BURN_MS
          and m["Node: burn in a worker thread"] <= BURN_MS / 5,
          "Node's heartbeat is late by about the burn on the loop, under a fifth of it with a worker"),
    Claim("The `asyncio.to_thread` row above shows the heartbeat survives",
          lambda m: m["burn in asyncio.to_thread"] <= BURN_MS / 5,
          "with asyncio.to_thread the heartbeat is late by under a fifth of the burn"),
    Claim("with a CPU hog beside them it waited",
          lambda m: m["high task's wait, a nice-0 CPU hog running"]
          >= 5 * m["high task's wait, nothing else running"],
          "with a hog the high-priority task waits at least 5x longer for the lock"),
    Claim("On the plain mutex the high thread waited for the whole spin of a thread of lower priority",
          lambda m: m["high thread's wait, plain mutex"] >= 0.8 * PRIORITY_FIFO_MEDIUM_S * 1000 / 2
          and m["high thread's wait, plain mutex"] >= 10 * m["high thread's wait, PTHREAD_PRIO_INHERIT mutex"],
          "on a plain mutex the high SCHED_FIFO thread waits about the medium thread's spin, over 10x "
          "its wait on a priority-inheriting mutex"),
    Claim("with inheritance only for the holder's few milliseconds",
          lambda m: m["high thread's wait, PTHREAD_PRIO_INHERIT mutex"] <= 3 * PRIORITY_FIFO_HOLD_S * 1000,
          "on a priority-inheriting mutex the high thread waits at most 3x the holder's hold time"),
    Claim("it took several times its server's probe",
          lambda m: _ratio_echo_probe(m) >= 1.5,
          "on the GIL and kernel servers the light echo takes at least 1.5x the probe (median)"),
    Claim("one turn when its socket came up with the heavy ones, two when it just missed one",
          lambda m: max(by_switcher(m, "echo")["event loop"].values())
          >= 1.5 * min(by_switcher(m, "echo")["event loop"].values()),
          "on the event loops the slowest light echo takes at least 1.5x the fastest"),
    Claim("with a process per connection the kernel runs it almost at once",
          lambda m: m["zero-work probe on fork"] < m["zero-work probe on threads"]
          and 5 * m["zero-work probe on fork"] < _probe_gap(m)[0],
          "the probe on fork is answered faster than on threads, and in under a fifth of the time of "
          "the fastest event loop"),
    Claim("Compare the zero-work probe on the event-loop servers",
          lambda m: _probe_gap(m)[0] > _probe_gap(m)[1],
          "the probe waits longer on every event loop than on any GIL- or kernel-preempted server"),
]


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("11", "Preemptive vs cooperative", args)
    warmup_s, duration_s = (0.5, 2.0) if lesson.quick else (0.5, 3.0)

    # Everything in this section runs on one CPU, so that every model shares one CPU with its
    # burner: the kernel must choose, and the only question is who takes the CPU from the burn.
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    lesson.section(f"a heartbeat every {TICK_S * 1000:.0f} ms next to a {BURN_S * 1000:.0f} ms CPU burn "
                   f"(its worst lateness)" + (f"; everything on CPU {cpu}" if cpu is not None else ""))
    switch_ms = lesson.measure("CPython switch interval", sys.getswitchinterval() * 1000, "ms")
    late: dict[str, float] = {}
    beats: dict[str, Samples] = {}

    def row(key: str, label: str, run) -> None:
        """Run one heartbeat; keep its worst lateness (measured) and its ticks (series)."""
        try:
            samples = run()
        except (build.Unavailable, RuntimeError, OSError, ValueError) as exc:
            lesson.skip(label, str(exc))
            return
        beats[label] = [[round(t, 3), round(ms, 3)] for t, ms in samples]
        late[key] = lesson.measure(label, max(ms for _, ms in samples), "ms")

    original = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # threads and children started from here inherit it
    try:
        row("asyncio", "burn in an asyncio task", lambda: asyncio.run(asyncio_burn_inside()))
        row("to_thread", "burn in asyncio.to_thread", lambda: asyncio.run(asyncio_burn_in_thread()))
        row("threads", "burn in another thread", threads_burn)
        if hasattr(os, "fork") and cpu is not None:
            row("process", "burn in another process, same CPU", lambda: process_burn(cpu))
        else:
            lesson.skip("burn in another process, same CPU", "needs fork and sched_setaffinity (Linux)")
        row("c_held", "burn in a C call holding the GIL (ctypes.PyDLL)",
            lambda: threads_burn(c_spin(hold_gil=True), BURN_S))
        row("c_released", "burn in a C call releasing the GIL (ctypes.CDLL)",
            lambda: threads_burn(c_spin(hold_gil=False), BURN_S))
        ft = free_threaded_python()
        if ft:
            def ft_run():
                got = free_threaded_heartbeat(ft)
                if got["gil"]:
                    raise RuntimeError(f"{ft} runs with the GIL enabled (an extension re-enabled it?)")
                return got["series"]
            row("free_threaded", "free-threaded Python: burn in another thread", ft_run)
        else:
            lesson.skip("free-threaded Python: burn in another thread",
                        f"no free-threaded CPython ({', '.join(FREE_THREADED_NAMES)}) on PATH: install "
                        "3.13t or later, e.g. `uv python install 3.14t`, and put it on PATH")
        native = lambda kind, variant="": lambda: native_heartbeat(kind, variant)["series"]  # noqa: E731
        row("go", "Go: burn in a goroutine (GOMAXPROCS=1)", native("go"))
        row("go_off", "Go: the same, GODEBUG=asyncpreemptoff=1", native("go", "asyncpreemptoff"))
        row("erlang", "Erlang: burn in a process (+S 1)", native("erlang"))
        row("node", "Node: burn in a callback on the loop", native("node", "inline"))
        row("node_worker", "Node: burn in a worker thread", native("node", "worker"))
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    lesson.series("heartbeat", beats)

    hold_s = PRIORITY_HOLD_CPU_S / 4 if lesson.quick else PRIORITY_HOLD_CPU_S
    lesson.section(f"priority inversion: a nice-0 task waits for a lock that a nice-19 task holds for "
                   f"{hold_s * 1000:.0f} ms of CPU" + (f", all on CPU {cpu}" if cpu is not None else ""))
    inversion = {}
    why_not = None if (hasattr(os, "fork") and cpu is not None and hasattr(os, "setpriority")) else \
        "needs fork, setpriority and sched_setaffinity (Linux)"
    for key, label, medium in (("alone", "high task's wait, nothing else running", False),
                               ("medium", "high task's wait, a nice-0 CPU hog running", True)):
        if why_not:
            lesson.skip(label, why_not)
            continue
        inversion[key] = lesson.measure(label, priority_inversion(cpu, hold_s, medium) * 1000, "ms")
    medium_s = PRIORITY_FIFO_MEDIUM_S / 2 if lesson.quick else PRIORITY_FIFO_MEDIUM_S
    lesson.section(f"the same with SCHED_FIFO threads (lessons/native/prio_inherit.c): low (10) holds a "
                   f"mutex for {PRIORITY_FIFO_HOLD_S * 1000:g} ms of CPU, medium (20) spins "
                   f"{medium_s * 1000:g} ms, high (30) waits for the mutex")
    for key, label, protocol in (("fifo_none", "high thread's wait, plain mutex", "none"),
                                 ("fifo_inherit", "high thread's wait, PTHREAD_PRIO_INHERIT mutex", "inherit")):
        if why_not:
            lesson.skip(label, why_not)
            continue
        try:
            inversion[key] = lesson.measure(label, priority_inheritance(cpu, protocol, medium_s), "ms")
        except build.Unavailable as exc:
            lesson.skip(label, str(exc))

    lesson.section(f"while {HEAVY_CONNS} heavy connections make the server burn {WORK_US // 1000} ms per "
                   f"message (--work-us {WORK_US}): a light client's echo, and a zero-work probe "
                   "(median round trip)")
    light: dict[str, dict] = {}
    for server in servers.SERVERS:
        name = server.name
        labels = {"echo": f"light echo on {name}", "probe": f"zero-work probe on {name}"}
        available, reason = server.availability()
        if server.serial:
            available, reason = False, "serial: it would serve the light clients only after every heavy one left"
        elif available and lesson.quick and name not in QUICK_SERVERS:
            available, reason = False, "measured in full mode only (make lesson N=11)"
        if available:
            try:
                r = light_under_load(name, warmup_s, duration_s)
            except launch.StartError as exc:
                r = {"error": f"did not start: {exc.reason}"}
            if "error" in r:
                available, reason = False, r["error"]
        if not available:
            for label in labels.values():
                lesson.skip(label, reason)
            continue
        for kind, label in labels.items():
            if isinstance(r[kind], str):
                lesson.skip(label, r[kind])
            else:
                light.setdefault(name, {})[kind] = lesson.measure(label, r[kind], "ms")

    # -- what to notice, computed from the numbers above
    if "asyncio" in late:
        lesson.notice(f"inside one asyncio loop the heartbeat was {late['asyncio']:.0f} ms late, about the "
                      f"whole {BURN_S * 1000:.0f} ms burn: nothing can interrupt a task that does not await")
    if "threads" in late and "to_thread" in late:
        lesson.notice(f"in a thread the same burn delayed it {late['threads']:.1f} ms (to_thread: "
                      f"{late['to_thread']:.1f} ms), {late['threads'] / switch_ms:.1f} switch intervals of "
                      f"{switch_ms:g} ms: the GIL is taken away from the burning thread")
    if "process" in late:
        lesson.notice(f"in another process on the same CPU it was {late['process']:.1f} ms late: the "
                      "kernel preempted the burner, no GIL in between")
    if "c_held" in late and "c_released" in late:
        lesson.notice(f"the same C function delayed it {late['c_held']:.0f} ms holding the GIL and "
                      f"{late['c_released']:.1f} ms releasing it: the switch interval cannot interrupt C code")
    if "go" in late and "go_off" in late:
        lesson.notice(f"a goroutine's tight loop delayed it {late['go']:.1f} ms (Go preempts after 10 ms), "
                      f"{late['go_off']:.0f} ms with asynchronous preemption off")
    if "erlang" in late:
        lesson.notice(f"an Erlang process's loop delayed it {late['erlang']:.1f} ms: reductions swap it out")
    if "node" in late:
        lesson.notice(f"Node's loop was {late['node']:.0f} ms late, like asyncio's"
                      + (f"; {late['node_worker']:.1f} ms with the burn in a worker thread"
                         if "node_worker" in late else ""))
    if inversion.get("alone") and "medium" in inversion:
        lesson.notice(f"priority inversion: the high task waited {inversion['medium']:,.0f} ms with a hog "
                      f"running, {inversion['medium'] / inversion['alone']:.0f}x the {inversion['alone']:.0f} ms "
                      "without: the hog outweighs the lock's low-priority holder")
    if "fifo_none" in inversion and "fifo_inherit" in inversion:
        lesson.notice(f"with real-time threads the high one waited {inversion['fifo_none']:.0f} ms behind the "
                      f"medium spinner on a plain mutex, {inversion['fifo_inherit']:.1f} ms on a "
                      "priority-inheriting one: the kernel lent the holder the waiter's priority")
    for kind, what in (("probe", "zero-work probe"), ("echo", "light echo")):
        ranked = sorted((n for n in light if kind in light[n]), key=lambda n: light[n][kind])
        if ranked:
            lesson.notice(f"{what}, fastest to slowest: "
                          + ", ".join(f"{n} {light[n][kind]:,.1f} ms" for n in ranked))
    loops = [n for n in light if "probe" in light[n] and switcher(n) == "event loop"]
    others = [n for n in light if "probe" in light[n] and switcher(n) != "event loop"]
    if loops and others:
        best_loop = min(loops, key=lambda n: light[n]["probe"])
        worst_other = max(others, key=lambda n: light[n]["probe"])
        if light[best_loop]["probe"] > light[worst_other]["probe"]:
            lesson.notice(f"the probe waited longer on every event loop (at best {best_loop}, "
                          f"{light[best_loop]['probe']:,.1f} ms) than on any server the GIL, the "
                          f"kernel or a runtime preempts (at worst {worst_other}, "
                          f"{light[worst_other]['probe']:,.1f} ms)")
        else:
            lesson.notice(f"the probe on {best_loop} ({light[best_loop]['probe']:,.1f} ms) beat "
                          f"{worst_other} ({light[worst_other]['probe']:,.1f} ms) this time")
    echoes = [n for n in light if "echo" in light[n] and "probe" in light[n]]
    if echoes:
        sliced = [n for n in echoes if switcher(n) in ("GIL", "kernel")]
        ratio = statistics.median(light[n]["echo"] / light[n]["probe"] for n in sliced) if sliced else None
        if ratio:
            lesson.notice(f"where the GIL or the kernel preempts, the light echo took {ratio:.1f}x its "
                          f"probe (median): the light message's own {WORK_US // 1000} ms of work is "
                          "shared out in slices with the heavy ones'")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
