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
   - the burn spent inside the kernel, in long read()s of /dev/zero: the kernel's own preemption
     model (none, voluntary, full, lazy; read from debugfs, the boot log, the command line or the
     build's config) decides where kernel code may be preempted, and read() offers cond_resched();
   - a C function called through ctypes (lessons/native/gil_spin.c): with ctypes.PyDLL the GIL
     stays held for the whole call and no switch interval can interrupt it; with ctypes.CDLL
     ctypes releases it around the call;
   - a burn in a thread of the free-threaded build (3.13t+, PEP 703), where there is one, and in a
     subinterpreter with its own GIL (PEP 684) run by another thread of a CPython 3.12+ (both
     found by servers/interpreters.py, in a child of theirs);
   - a goroutine in a loop without calls (lessons/native/preempt_go.go, GOMAXPROCS=1): Go 1.14+
     preempts it asynchronously, with a signal; GODEBUG=asyncpreemptoff=1 shows the old,
     cooperative scheduler;
   - an Erlang process in a tight loop (lessons/native/preempt_erlang.erl, erl +S 1): preempted
     when it has used its reductions; its timer's own grain is measured before the burn;
   - a callback on Node's loop (lessons/native/preempt_node.js), cooperative like asyncio, and
     the same burn in a worker thread.
   Each tick's lateness is kept as a series for the picture.
2. Priorities. A nice-19 task holds a lock (a POSIX semaphore) for 20 ms of CPU, a nice-0 task
   waits for it, and a nice-5 CPU hog, all on one CPU, keeps the holder from running: inversion.
   Then the textbook case with SCHED_FIFO threads (lessons/native/prio_inherit.c), on a plain
   mutex and on a PTHREAD_PRIO_INHERIT one, where the kernel lends the holder the waiter's
   priority. And SCHED_DEADLINE (lessons/native/deadline.c): a periodic job next to a SCHED_FIFO
   hog on every CPU, as an ordinary task and as a deadline task. Both real-time parts are skipped
   without permission (CAP_SYS_NICE).
3. The same contrast on the servers (lessons/_11_servers.py): every server burning 20 ms of CPU
   per message for 8 heavy connections, and beside them a light echo and a zero-work probe (the
   subinterpreters server under the newest CPython 3.12+, which gives each interpreter its GIL).

The OS mechanism: the kernel preempts a task when its time slice ends or a task that should run
sooner wakes (sched(7); EEVDF wake-up preemption); inside the kernel only where its preemption
model allows; CPython's eval loop drops the GIL when another thread has waited longer than the
switch interval (sys.setswitchinterval). An event loop has no such mechanism: a callback or a
coroutine step runs until it returns or awaits. sched_setattr(2) and sched(7) for SCHED_DEADLINE.
Linux-only parts: pinning (sched_setaffinity), the kernel's model, the real-time policies, and the
servers that need epoll or io_uring.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from lessons import procfs
from lessons._11_priorities import (DEADLINE_PERIOD_US, PRIORITY_FIFO_HOLD_S, PRIORITY_FIFO_MEDIUM_S,
                                    PRIORITY_HOLD_CPU_S, priorities)
from lessons._11_servers import WORK_US, by_switcher, servers_under_load
from lessons.common import Claim, Lesson, parse_args
from lessons.parallel import free_threaded_python, newer_python
from servers import build

TICK_S = 0.010  # the heartbeat's period
BURN_S = 0.300  # how long the CPU burn runs without waiting
TICKS = round((BURN_S + 0.2) / TICK_S)  # the heartbeat's ticks: the burn starts after five
BURN_STARTS_S = 5 * TICK_S
ZERO_READ_BYTES = 256 << 20  # one read() of /dev/zero: tens of ms inside the kernel


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


# -- 1b. the burn in another process, and inside the kernel --------------------------------------


def process_burn(cpu: int, work=burn, report: dict | None = None) -> Samples:
    """Heartbeat here, ``work`` (the burn by default) in a forked process; both pinned to ``cpu``:
    only the kernel decides. ``report`` receives what ``work`` returned (a dict) and the child's
    user and system CPU time."""
    original = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    rfd, wfd = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                os.close(rfd)
                time.sleep(BURN_STARTS_S)
                os.write(wfd, json.dumps(work(BURN_S) or {}).encode())
            finally:
                os._exit(0)
        os.close(wfd)
        try:
            return thread_heartbeat(TICKS)
        finally:
            _, _, usage = os.wait4(pid, 0)
            with os.fdopen(rfd, "rb") as child:
                got = child.read()
            if report is not None:
                report.update(json.loads(got or b"{}"), user_s=usage.ru_utime, system_s=usage.ru_stime)
    finally:
        os.sched_setaffinity(0, original)


def burn_in_kernel(seconds: float) -> dict:
    """The burn, spent inside the kernel: read() ZERO_READ_BYTES of /dev/zero into one buffer,
    again and again, for ``seconds``. Returns the median time of one read(), in ms."""
    buffer = bytearray(ZERO_READ_BYTES)
    reads = []
    deadline = time.perf_counter() + seconds
    with open("/dev/zero", "rb", buffering=0) as zero:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            zero.readinto(buffer)  # one system call: the kernel zeroes 256 MiB, page by page
            reads.append((time.perf_counter() - t0) * 1000)
    return {"read_ms": sorted(reads)[len(reads) // 2]}


PREEMPT_MODELS = {"CONFIG_PREEMPT_NONE": "none", "CONFIG_PREEMPT_VOLUNTARY": "voluntary",
                  "CONFIG_PREEMPT": "full", "CONFIG_PREEMPT_LAZY": "lazy", "CONFIG_PREEMPT_RT": "full (PREEMPT_RT)"}


def kernel_preemption_model() -> tuple[str, str]:
    """(model, where it was read): how the running kernel preempts its own code, from the first
    source that answers. debugfs has the live setting (root, debugfs mounted); the boot log says
    "Dynamic Preempt: MODEL" (root, or kernel.dmesg_restrict=0); preempt= on the command line is the
    boot's choice; the build's config (/proc/config.gz, /boot/config-RELEASE) its default; uname -v
    at least says PREEMPT_DYNAMIC, PREEMPT or PREEMPT_RT."""
    for path, pattern, where in (
            ("/sys/kernel/debug/sched/preempt", r"\((\w+)\)", "/sys/kernel/debug/sched/preempt"),  # "none (full) lazy"
            ("/proc/cmdline", r"(?:^|\s)preempt=(\w+)", "preempt= on the kernel command line (/proc/cmdline)")):
        try:
            if found := re.search(pattern, Path(path).read_text()):
                return found.group(1), where
        except OSError:
            pass
    try:
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        if found := re.search(r"Dynamic Preempt: (\w+)", log):
            return found.group(1), "the boot log (dmesg: \"Dynamic Preempt\")"
    except (OSError, subprocess.TimeoutExpired):
        pass
    chosen = [model for option, model in PREEMPT_MODELS.items() if procfs.kernel_config(option) == "y"]
    if chosen:
        dynamic = procfs.kernel_config("CONFIG_PREEMPT_DYNAMIC") == "y"
        return chosen[-1], "the build's default (its config" + (
            "; PREEMPT_DYNAMIC: preempt= at boot can change it)" if dynamic else ")")
    version = platform.version()
    for word, model in (("PREEMPT_RT", "full (PREEMPT_RT)"), ("PREEMPT_DYNAMIC", "dynamic: not readable here"),
                        ("PREEMPT", "full")):
        if word in version.split():
            return model, "uname -v"
    return "none or voluntary (no PREEMPT in uname -v)", "uname -v"


# -- 1c. a C call that holds the GIL ----------------------------------------------------------------


def c_spin(hold_gil: bool):
    """lessons/native/gil_spin.c's spin_ms(), through ctypes.PyDLL (the GIL stays held for the
    whole call) or ctypes.CDLL (ctypes releases it around the call). Raises build.Unavailable."""
    import ctypes

    path = build.build("lessons/native/gil_spin.c", flags=("-shared", "-fPIC"))
    lib = (ctypes.PyDLL if hold_gil else ctypes.CDLL)(str(path))
    lib.spin_ms.argtypes, lib.spin_ms.restype = [ctypes.c_double], ctypes.c_long
    return lambda seconds: lib.spin_ms(seconds * 1000)


# -- 1d. the same heartbeat in Go, Erlang and Node --------------------------------------------------


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


# -- 1e. the free-threaded build, and a subinterpreter with its own GIL ---------------------------------


def _heartbeat_source(*setup: str) -> str:
    """This module's burn() and thread_heartbeat() as source for ``python -c`` (they need only the
    standard library), after ``setup`` lines that define ``start_burn()``, which starts the burn in
    a thread and returns it; prints the GIL's state and the heartbeat's samples as JSON."""
    return "\n".join([
        "from __future__ import annotations",  # the functions' annotations name this module's types
        "import json, sys, threading, time",
        f"TICK_S, BURN_S, TICKS = {TICK_S!r}, {BURN_S!r}, {TICKS!r}",
        inspect.getsource(burn), inspect.getsource(thread_heartbeat), *setup,
        "burner = start_burn()",
        "samples = thread_heartbeat(TICKS); burner.join()",
        "print(json.dumps({'gil': getattr(sys, '_is_gil_enabled', lambda: True)(), 'series': samples}))"])


def _run_heartbeat(python: str, code: str, *flags: str) -> dict:
    """``python [flags] -c code`` from the checkout (so that it can import bench.micro): its JSON."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([python, *flags, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{python} exited {done.returncode}: {done.stderr.strip()[-300:]}")
    return json.loads(done.stdout)


def free_threaded_heartbeat(python: str) -> dict:
    """The thread heartbeat next to a burn thread, run by the free-threaded interpreter."""
    return _run_heartbeat(python, _heartbeat_source(
        "def start_burn():",
        "    t = threading.Timer(5 * TICK_S, burn, args=(BURN_S,)); t.start(); return t"), "-X", "gil=0")


def subinterpreter_heartbeat(python: str) -> dict:
    """The thread heartbeat in the main interpreter of a CPython 3.12+, the burn in a thread that
    runs a subinterpreter (its own GIL, PEP 684): the two threads share no GIL, only the CPU."""
    return _run_heartbeat(python, _heartbeat_source(
        "from bench.micro.subinterp import interpreters_module",
        "interp = interpreters_module().create()  # its own GIL, modules and heap",
        "interp.exec('import time\\n' + " + repr(inspect.getsource(burn)) + ")",
        "def start_burn():",
        "    t = threading.Timer(5 * TICK_S, interp.exec, args=(f'burn({BURN_S!r})',)); t.start(); return t"))


# -- the sections ---------------------------------------------------------------------------------

KERNEL_ROW = "burn in read() of /dev/zero, in another process"
FREE_THREADED_ROW = "free-threaded Python: burn in another thread"
SUBINTERPRETER_ROW = "3.12+: burn in a subinterpreter, in another thread"
ERLANG_ROW = "Erlang: burn in a process (+S 1)"


def heartbeats(lesson: Lesson, cpu: int | None) -> dict[str, float]:
    """Part 1: the heartbeat next to the burn, wherever the burn can run, all on ``cpu``; then the
    kernel's own preemption model. Returns each row's worst lateness in ms, by key."""
    lesson.section(f"a heartbeat every {TICK_S * 1000:.0f} ms next to a {BURN_S * 1000:.0f} ms CPU burn "
                   f"(its worst lateness)" + (f"; everything on CPU {cpu}" if cpu is not None else ""))
    switch_ms = lesson.measure("CPython switch interval", sys.getswitchinterval() * 1000, "ms")
    late: dict[str, float] = {}
    beats: dict[str, Samples] = {}
    in_kernel: dict = {}

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
        for key, label, work in (("process", "burn in another process, same CPU", burn),
                                 ("kernel", KERNEL_ROW, burn_in_kernel)):
            if hasattr(os, "fork") and cpu is not None:
                row(key, label, lambda work=work: process_burn(cpu, work, in_kernel if work is burn_in_kernel else None))
            else:
                lesson.skip(label, "needs fork and sched_setaffinity (Linux)")
        row("c_held", "burn in a C call holding the GIL (ctypes.PyDLL)",
            lambda: threads_burn(c_spin(hold_gil=True), BURN_S))
        row("c_released", "burn in a C call releasing the GIL (ctypes.CDLL)",
            lambda: threads_burn(c_spin(hold_gil=False), BURN_S))
        ft, why = free_threaded_python()
        if ft:
            def ft_run():
                got = free_threaded_heartbeat(ft)
                if got["gil"]:
                    raise RuntimeError(f"{ft} runs with the GIL enabled (an extension re-enabled it?)")
                return got["series"]
            row("free_threaded", FREE_THREADED_ROW, ft_run)
        else:
            lesson.skip(FREE_THREADED_ROW, why)
        newer, why = newer_python()
        if newer:
            row("subinterpreter", SUBINTERPRETER_ROW, lambda: subinterpreter_heartbeat(newer)["series"])
        else:
            lesson.skip(SUBINTERPRETER_ROW, why)
        native = lambda kind, variant="": lambda: native_heartbeat(kind, variant)["series"]  # noqa: E731
        row("go", "Go: burn in a goroutine (GOMAXPROCS=1)", native("go"))
        row("go_off", "Go: the same, GODEBUG=asyncpreemptoff=1", native("go", "asyncpreemptoff"))
        row("erlang", ERLANG_ROW, native("erlang"))
        if ERLANG_ROW in beats:  # its timer's own grain: the ticks due before the burn began
            late["erlang_before"] = lesson.measure("Erlang: the same heartbeat, before the burn began", max(
                ms for t, ms in beats[ERLANG_ROW] if t <= BURN_STARTS_S * 1000), "ms")
        else:
            lesson.skip("Erlang: the same heartbeat, before the burn began", lesson.skipped[ERLANG_ROW])
        row("node", "Node: burn in a callback on the loop", native("node", "inline"))
        row("node_worker", "Node: burn in a worker thread", native("node", "worker"))
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    lesson.series("heartbeat", beats)

    lesson.section("the kernel's own preemption model, and the burn inside read()")
    kernel_labels = ("kernel preemption model", "kernel preemption model, read from",
                     f"one read() of {ZERO_READ_BYTES >> 20} MiB from /dev/zero", "share of that burn spent in the kernel")
    model = None
    if sys.platform.startswith("linux"):
        model, source = kernel_preemption_model()
        lesson.measure(kernel_labels[0], model)
        lesson.measure(kernel_labels[1], source)
    if "kernel" in late:
        lesson.measure(kernel_labels[2], in_kernel["read_ms"], "ms")
        kernel_pct = lesson.measure(kernel_labels[3], 100 * in_kernel["system_s"]
                                    / max(in_kernel["system_s"] + in_kernel["user_s"], 1e-9), "%")
    for label in kernel_labels:
        if label not in lesson.measurements:
            lesson.skip(label, lesson.skipped.get(KERNEL_ROW, "Linux only"))

    # -- what to notice
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
    if "kernel" in late and model:
        where = ("anywhere preemption is not disabled" if model.startswith(("full", "lazy"))
                 else "at one of the cond_resched() calls read() makes between pages")
        lesson.notice(f"with the burn inside read()s of /dev/zero ({in_kernel['read_ms']:.0f} ms each, "
                      f"{kernel_pct:.0f} % of the burn in the kernel) it was {late['kernel']:.1f} ms late: "
                      + (f"the kernel (model: {model}) preempted the read() in the middle, {where}"
                         if late["kernel"] < in_kernel["read_ms"] / 2 else
                         f"the heartbeat waited for a read() to return (model: {model})"))
    if "subinterpreter" in late and "threads" in late:
        lesson.notice(f"in a subinterpreter (its own GIL), in another thread, the burn delayed it "
                      f"{late['subinterpreter']:.1f} ms, against {late['threads']:.1f} ms in a thread of "
                      "one interpreter: only the kernel takes the CPU from it, no GIL in between")
    if "c_held" in late and "c_released" in late:
        lesson.notice(f"the same C function delayed it {late['c_held']:.0f} ms holding the GIL and "
                      f"{late['c_released']:.1f} ms releasing it: the switch interval cannot interrupt C code")
    if "go" in late and "go_off" in late:
        lesson.notice(f"a goroutine's tight loop delayed it {late['go']:.1f} ms (Go preempts after 10 ms), "
                      f"{late['go_off']:.0f} ms with asynchronous preemption off")
    if "erlang" in late and "erlang_before" in late:
        lesson.notice(f"next to an Erlang process's loop the heartbeat was {late['erlang']:.1f} ms late at worst, "
                      f"and {late['erlang_before']:.1f} ms before the loop began: that is the timer's grain; "
                      "reductions swapped the burner out too often for the heartbeat to notice it")
    if "node" in late:
        lesson.notice(f"Node's loop was {late['node']:.0f} ms late, like asyncio's"
                      + (f"; {late['node_worker']:.1f} ms with the burn in a worker thread"
                         if "node_worker" in late else ""))
    return late



# -- the picture, drawn from a recorded run ----------------------------------------------------------

# Which panel each heartbeat goes to: Python's models, then the other runtimes.
PYTHON_ROWS = ("burn in an asyncio task", "burn in asyncio.to_thread", "burn in another thread",
               "burn in another process, same CPU", KERNEL_ROW,
               "burn in a C call holding the GIL (ctypes.PyDLL)",
               "burn in a C call releasing the GIL (ctypes.CDLL)",
               FREE_THREADED_ROW, SUBINTERPRETER_ROW)


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
        ax.axvspan(BURN_STARTS_S * 1000, (BURN_STARTS_S + BURN_S) * 1000, color="#999999", alpha=0.12,
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

# How far a reader's figure may be from the recorded one before it is named (lessons.common): the
# kernel's model and where it was read are the machine's; so is the speed of zeroing memory, and
# how long an ordinary task starves depends on how the kernel shares CPU under real-time load.
TOLERANCE = {"kernel preemption model": None, "kernel preemption model, read from": None,
             f"one read() of {ZERO_READ_BYTES >> 20} MiB from /dev/zero": None,
             "ordinary job: worst response": None}


def _echo_over_probe(m) -> dict[str, float]:
    """light echo / zero-work probe, on each server the GIL or the kernel preempts."""
    echo, probe = by_switcher(m, "echo"), by_switcher(m, "probe")
    return {n: echo[k][n] / probe[k][n] for k in ("GIL", "kernel") for n in echo.get(k, {})
            if n in probe.get(k, {})}


def _probe_gap(m) -> tuple[float, float]:
    """(the fastest event loop's probe, the slowest GIL- or kernel-preempted server's probe)."""
    probe = by_switcher(m, "probe")
    return (min(probe["event loop"].values()),
            max(v for k in ("GIL", "kernel") for v in probe.get(k, {}).values()))


def _overdue_steps_ms(samples: list) -> list[float]:
    """How much less late each of the first five ticks after the worst one is, to 0.5 ms."""
    worst = max(range(len(samples)), key=lambda i: samples[i][1])
    late = [ms for _, ms in samples[worst:worst + 6]]
    return [round((a - b) * 2) / 2 for a, b in zip(late, late[1:], strict=False)]


BURN_MS = BURN_S * 1000
WORK_MS = WORK_US / 1000
READ_LABEL = f"one read() of {ZERO_READ_BYTES >> 20} MiB from /dev/zero"
HOLD_MS = PRIORITY_HOLD_CPU_S * 1000

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
    Claim("So the kernel's grain is at most about one tick",
          lambda m: m["burn in another process, same CPU"] <= 10,
          "with the burn in another process the heartbeat is late by 10 ms at most (a tick at HZ=100, "
          "less at a higher HZ)"),
    Claim("stayed inside the kernel for several milliseconds",
          lambda m: m[READ_LABEL] >= 5 and m["share of that burn spent in the kernel"] >= 80,
          "one read() of /dev/zero takes 5 ms or more, and 80 % or more of that burn is kernel time"),
    Claim("the heartbeat was late by about as much as next to the burn in user space",
          lambda m: m[KERNEL_ROW] <= m["burn in another process, same CPU"] + 4 and m[KERNEL_ROW] < 0.6 * m[READ_LABEL],
          "next to the burn inside read() the heartbeat is late by at most 4 ms more than next to the burn "
          "in user space, and by under 0.6 of one read()"),
    Claim("the lateness falls by 10 ms with each tick",
          lambda m: _overdue_steps_ms(m.series["heartbeat"]["burn in an asyncio task"]) == [TICK_S * 1000] * 5,
          "in the asyncio heartbeat the first five overdue ticks after the burn are each 10 ms less late"),
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
    Claim("Go 1.14's signal cuts it to\n  a few tens of milliseconds",
          lambda m: 10 <= m["Go: burn in a goroutine (GOMAXPROCS=1)"] <= 50,
          "with asynchronous preemption Go's heartbeat is late by 10 to 50 ms"),
    Claim("The BEAM's reductions switch processes after about 4,000 calls, far\n  more often than every 10 ms",
          lambda m: m[ERLANG_ROW] < TICK_S * 1000 / 2 and m[ERLANG_ROW] < m["Go: burn in a goroutine (GOMAXPROCS=1)"],
          "Erlang's heartbeat is late by under half a tick, and by less than Go's"),
    Claim("no later during the burn than before it began",
          lambda m: m[ERLANG_ROW] <= m["Erlang: the same heartbeat, before the burn began"] + 1
          and m[ERLANG_ROW] < m["Go: burn in a goroutine (GOMAXPROCS=1)"],
          "Erlang's worst lateness is within 1 ms of its lateness before the burn, and under Go's"),
    Claim("Node's loop, like asyncio's, was late by the whole burn",
          lambda m: m["Node: burn in a callback on the loop"] >= 0.8 * BURN_MS
          and m["Node: burn in a worker thread"] <= BURN_MS / 5,
          "Node's heartbeat is late by about the burn on the loop, under a fifth of it with a worker"),
    Claim("The `asyncio.to_thread` row above shows the heartbeat survives",
          lambda m: m["burn in asyncio.to_thread"] <= BURN_MS / 5,
          "with asyncio.to_thread the heartbeat is late by under a fifth of the burn"),
    Claim("With nothing else running, the nice-0 task waited about as long as the holder's 20 ms of CPU",
          lambda m: HOLD_MS <= m["high task's wait, nothing else running"] <= 2 * HOLD_MS,
          "alone, the wait is between 1x and 2x the holder's 20 ms of CPU"),
    Claim("with a nice-5 hog beside them it waited",
          lambda m: m["high task's wait, a nice-5 CPU hog running"]
          >= 5 * m["high task's wait, nothing else running"],
          "with a hog the nice-0 task waits at least 5x longer for the lock"),
    Claim("On the plain mutex the high thread waited for the whole spin of a thread of lower priority",
          lambda m: m["high thread's wait, plain mutex"] >= 0.8 * PRIORITY_FIFO_MEDIUM_S * 1000 / 2
          and m["high thread's wait, plain mutex"] >= 10 * m["high thread's wait, PTHREAD_PRIO_INHERIT mutex"],
          "on a plain mutex the high SCHED_FIFO thread waits about the medium thread's spin, over 10x "
          "its wait on a priority-inheriting mutex"),
    Claim("with inheritance only for the holder's 5 ms",
          lambda m: m["high thread's wait, PTHREAD_PRIO_INHERIT mutex"] <= 3 * PRIORITY_FIFO_HOLD_S * 1000,
          "on a priority-inheriting mutex the high thread waits at most 3x the holder's hold time"),
    Claim("The deadline job met every deadline; the ordinary one missed",
          lambda m: m["SCHED_DEADLINE job: deadlines missed"] == 0
          and m["SCHED_DEADLINE job: worst response"] < DEADLINE_PERIOD_US / 1000
          and m["ordinary job: deadlines missed"] >= 50,
          "SCHED_DEADLINE: no deadline missed; the ordinary job: half of them or more"),
    Claim("it took longer than its server's probe",
          lambda m: len(_echo_over_probe(m)) >= 2 and min(_echo_over_probe(m).values()) >= 1.2,
          "on every GIL- or kernel-preempted server the light echo takes at least 1.2x the probe"),
    Claim("when about nine equal shares of the CPU would have",
          lambda m: all(0.6 * 9 * WORK_MS <= m[f"light echo on {n}"] <= 1.5 * 9 * WORK_MS for n in _echo_over_probe(m)),
          "on every GIL- or kernel-preempted server the light echo takes 0.6x to 1.5x of 9 x 20 ms"),
    Claim("On `fork` the probe is answered at\n  once, so there the ratio is largest",
          lambda m: max(_echo_over_probe(m), key=_echo_over_probe(m).get) == "fork",
          "the light echo over the probe is largest on fork"),
    Claim("one turn when its socket came up with the heavy ones, two when it just missed one",
          lambda m: max(by_switcher(m, "echo")["event loop"].values())
          >= 1.5 * min(by_switcher(m, "echo")["event loop"].values()),
          "on the event loops the slowest light echo takes at least 1.5x the fastest"),
    Claim("with a process per connection the kernel runs it almost at once",
          lambda m: m["zero-work probe on fork"] < m["zero-work probe on threads"]
          and 5 * m["zero-work probe on fork"] < _probe_gap(m)[0],
          "the probe on fork is answered faster than on threads, and in under a fifth of the time of "
          "the fastest event loop"),
    Claim("with a grain of a few milliseconds",
          lambda m: 1 <= m["burn in another thread"] <= 20,
          "with the burn in another thread the heartbeat is late by 1 to 20 ms"),
    Claim("each one system call of several milliseconds",
          lambda m: m[READ_LABEL] >= 5, "one read() of /dev/zero takes 5 ms or more"),
    Claim("each request finishes later than if it had run whole",
          lambda m: all(m[f"light echo on {n}"] >= 0.6 * 9 * WORK_MS for n in _echo_over_probe(m)),
          "where the GIL or the kernel slices, the light echo takes 0.6 x 9 x 20 ms or more, not its own 20 ms"),
    Claim("So the hog takes almost all of it",
          lambda m: m["high task's wait, a nice-5 CPU hog running"] >= 5 * m["high task's wait, nothing else running"],
          "with the hog the holder's 20 ms take 5x longer or more to finish"),
    Claim("while a task holds a lock that a higher-priority task waits for, it runs at the waiter's priority",
          lambda m: m["high thread's wait, PTHREAD_PRIO_INHERIT mutex"] <= 3 * PRIORITY_FIFO_HOLD_S * 1000,
          "on a priority-inheriting mutex the high thread waits at most 3x the holder's hold time"),
    Claim("wait longer or shorter depending on where in a turn their socket comes up",
          lambda m: max(by_switcher(m, "echo")["event loop"].values())
          >= 1.5 * min(by_switcher(m, "echo")["event loop"].values()),
          "on the event loops the slowest light echo takes at least 1.5x the fastest"),
    Claim.unmeasured("notices a goroutine that has run for more than 10 ms",
                     "Go's forcePreemptNS (10 ms) in runtime/proc.go and the Go 1.14 release notes"),
    Claim.unmeasured("after about 4,000 of them the scheduler switches",
                     "the BEAM's CONTEXT_REDS (4,000) in erts/emulator/beam/erl_vm.h"),
    Claim.unmeasured("so a reservation cannot take more than it asked",
                     "the constant bandwidth server of Documentation/scheduler/sched-deadline.rst"),
    Claim.unmeasured("asyncio's debug mode logs every callback slower than 100 ms",
                     "asyncio's slow_callback_duration default (0.1 s) in its documentation"),
    Claim.unmeasured("a step that holds the loop longer than 100 ms is logged",
                     "asyncio's slow_callback_duration default (0.1 s) in its documentation"),
    Claim.unmeasured("connections get almost free",
                     "lesson 10's recorded memory per fiber and per thread, quoted in the table above"),
    Claim("On `java` the probe waited\n  for the whole run",
          lambda m: m["zero-work probe on java"] >= 2000,
          "the probe on java takes 2 s or more, most of the 3.5 s the heavy load ran"),
    Claim("delayed the heartbeat by no more than\n  the kernel's grain, as the burn in another process did",
          lambda m: m[SUBINTERPRETER_ROW] <= 10 and m["burn in another process, same CPU"] <= 10,
          "the burn in a subinterpreter (3.12+) and the burn in another process each delayed the heartbeat "
          "by 10 ms at most (about a tick)"),
    Claim("the burn in another thread of one interpreter stayed within a few switch intervals",
          lambda m: m["burn in another thread"] <= 4 * m["CPython switch interval"],
          "the burn in another thread delayed the heartbeat by at most 4 switch intervals"),
    Claim.unmeasured("with a longer switch interval, or a kernel that hands over sooner, they part",
                     "sys.setswitchinterval and the kernel's tick (lesson 02): not varied here"),
    Claim("its probe waited longer than on `threads`, as on the other loops",
          lambda m: m["zero-work probe on subinterpreters"] > m["zero-work probe on threads"]
          and m["zero-work probe on subinterpreters"] >= _probe_gap(m)[0],
          "the probe on subinterpreters took longer than on threads, and was no faster than the fastest "
          "event loop's"),
    Claim.unmeasured("holds up every other thread of its\n  interpreter until the switch interval has passed",
                     "the GIL's hand-off (the idea above); the thread rows measure it"),
    Claim("Compare the zero-work probe on the event-loop servers",
          lambda m: _probe_gap(m)[0] > _probe_gap(m)[1],
          "the probe waits longer on every event loop than on any GIL- or kernel-preempted server"),
]


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("11", "Preemptive vs cooperative", args)
    # Parts 1 and 2 run on one CPU, so that every model shares it with its burner: the kernel must
    # choose, and the only question is who takes the CPU from the burn.
    cpu = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    heartbeats(lesson, cpu)
    priorities(lesson, cpu)
    servers_under_load(lesson)
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
