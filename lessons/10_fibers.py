"""Lesson 10, fibers: stackless (generators, async/await) and stackful (greenlets) switch in user space.

What it shows, on this machine:

1. The cost of one switch, for each kind of unit, measured as a ping-pong (one round trip is two
   switches): a generator (send/yield: resume a frame that lives on the heap), a greenlet (copy a
   slice of the C stack out and another in), a task hop through the asyncio, trio and gevent loops
   (each side yields to its scheduler, which runs the other), a thread and a process (a pipe
   ping-pong: write() wakes the other task in the kernel, our read() blocks, the scheduler
   switches). Threads and processes are pinned to one CPU, so that a switch is a plain context
   switch and not a wake-up of another core.
2. What holding many of them costs: each unit is parked waiting (a generator suspended at yield,
   an asyncio task and a gevent greenlet waiting on an Event, a thread blocked on a lock, a forked
   process and a fresh interpreter blocked in read()), and the growth of the private memory
   (USS, from /proc/PID/smaps_rollup) is divided by the count. For threads also the address space
   reserved (VmSize: the stack) and the kernel stacks (KernelStack in /proc/meminfo, memory no
   user-space counter shows). Each kind is measured in a fresh interpreter, so memory freed by
   an earlier kind cannot be reused and hide a cost (lessons/_10_memory.py).
3. The cost of creating one: start a unit and run it to its first wait (a generator to its yield,
   a greenlet to its first switch back, an asyncio task to its await, a thread to its blocking
   wait, a forked child to its read()).
4. The same three costs for the M:N runtimes, measured by small programs built at first use by
   servers/build.py: a goroutine (lessons/native/mn_go.go), an Erlang process
   (lessons/native/mn_erlang.erl) and a Java virtual thread (lessons/native/mn_java.java, Java
   21+), with one scheduler thread each (GOMAXPROCS=1, erl +S 1, one carrier), and how many OS
   threads carry 10,000 (quick) or 100,000 of them parked. Skipped, with what to install, where
   go, erl or a Java 21+ runtime is missing.
5. A stackful switch in C with nothing else in the way (lessons/native/cswitch.c): swapcontext(3),
   and a bare register swap in assembly (x86-64 only).

The OS mechanism: a thread or process switch goes through the kernel's scheduler (sched(7));
generators, coroutines and greenlets switch without a syscall, in the interpreter. PEP 255
(generators), PEP 342 (send), PEP 492 (async/await); the greenlet docs ("How greenlets work").
Linux-only parts: pinning (sched_setaffinity), /proc memory counters.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

from lessons._10_memory import MEMORY_KINDS, hold_in_child
from lessons.common import Claim, Lesson, linux_only, parse_args
from servers import build

SWITCH_KINDS = ("generator", "greenlet", "asyncio task", "trio task", "gevent greenlet", "thread",
                "process")
CREATE_KINDS = ("generator", "greenlet", "asyncio task", "thread", "process (fork)")


# -- 1. switch cost: ping-pongs ---------------------------------------------------------------------


def generator_pingpong(n: int) -> float:
    def echo():
        value = None
        while True:
            value = yield value  # suspend: the frame stays on the heap, control returns to send()

    g = echo()
    next(g)
    t0 = time.perf_counter()
    for i in range(n):
        assert g.send(i) == i
    return time.perf_counter() - t0


def greenlet_pingpong(n: int) -> float:
    import greenlet

    main = greenlet.getcurrent()

    def echo(value):
        while True:
            value = main.switch(value)  # swap C stacks back to main

    g = greenlet.greenlet(echo)
    t0 = time.perf_counter()
    for i in range(n):
        assert g.switch(i) == i
    elapsed = time.perf_counter() - t0
    g.throw(greenlet.GreenletExit)
    return elapsed


def asyncio_pingpong(n: int) -> float:
    import asyncio

    async def hopper():
        for _ in range(n):
            await asyncio.sleep(0)  # back to the loop, which runs the other task

    async def both():
        t0 = time.perf_counter()
        await asyncio.gather(hopper(), hopper())
        return time.perf_counter() - t0

    return asyncio.run(both())


def trio_pingpong(n: int) -> float:
    import trio

    async def hopper():
        for _ in range(n):
            await trio.lowlevel.checkpoint()  # back to trio's scheduler, which runs the other

    async def both():
        t0 = time.perf_counter()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hopper)
            nursery.start_soon(hopper)
        return time.perf_counter() - t0

    return trio.run(both)


def gevent_pingpong(n: int) -> float:
    import gevent

    def hopper():
        for _ in range(n):
            gevent.sleep(0)  # switch to the hub, which switches to the other greenlet

    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(hopper), gevent.spawn(hopper)])
    return time.perf_counter() - t0


def pipe_echo(rfd: int, wfd: int, n: int) -> None:
    for _ in range(n):
        os.write(wfd, os.read(rfd, 1))  # read() blocks: the scheduler runs the other side


def pipe_pingpong(n: int, rfd: int, wfd: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(wfd, b"x")
        os.read(rfd, 1)
    return time.perf_counter() - t0


def thread_pingpong(n: int) -> float:
    to_thread, from_thread = os.pipe(), os.pipe()
    thread = threading.Thread(target=pipe_echo, args=(to_thread[0], from_thread[1], n))
    thread.start()
    try:
        return pipe_pingpong(n, from_thread[0], to_thread[1])
    finally:
        thread.join()
        for fd in (*to_thread, *from_thread):
            os.close(fd)


def process_pingpong(n: int) -> float:
    to_child, from_child = os.pipe(), os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: echo n bytes, then leave without running any Python cleanup
        try:
            pipe_echo(to_child[0], from_child[1], n)
        finally:
            os._exit(0)
    try:
        return pipe_pingpong(n, from_child[0], to_child[1])
    finally:
        os.waitpid(pid, 0)
        for fd in (*to_child, *from_child):
            os.close(fd)


PINGPONGS = {"generator": generator_pingpong, "greenlet": greenlet_pingpong,
             "asyncio task": asyncio_pingpong, "trio task": trio_pingpong,
             "gevent greenlet": gevent_pingpong, "thread": thread_pingpong,
             "process": process_pingpong}


def switch_ns(kind: str, round_trips: int, repeats: int) -> float:
    """Median over ``repeats`` of the time of one switch (half a round trip), in ns."""
    runs = [PINGPONGS[kind](round_trips) / (2 * round_trips) for _ in range(repeats)]
    return statistics.median(runs) * 1e9


# -- 1b. create cost: start a unit and run it to its first wait ---------------------------------------


def create_generators(count: int) -> float:
    def parked():
        yield

    t0 = time.perf_counter()
    units = [parked() for _ in range(count)]
    for g in units:
        next(g)  # run it to its yield: a frame on the heap, suspended
    return time.perf_counter() - t0


def create_greenlets(count: int) -> float:
    import greenlet

    main = greenlet.getcurrent()
    t0 = time.perf_counter()
    units = [greenlet.greenlet(main.switch) for _ in range(count)]
    for g in units:
        g.switch()  # start it on the C stack; it switches straight back, parked
    elapsed = time.perf_counter() - t0
    for g in units:
        g.throw(greenlet.GreenletExit)
    return elapsed


def create_asyncio_tasks(count: int) -> float:
    import asyncio

    async def main():
        event = asyncio.Event()
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(event.wait()) for _ in range(count)]
        await asyncio.sleep(0)  # one turn of the loop: every task runs to its await and parks
        elapsed = time.perf_counter() - t0
        event.set()
        await asyncio.gather(*tasks)
        return elapsed

    return asyncio.run(main())


def create_threads(count: int) -> float:
    release = threading.Event()
    t0 = time.perf_counter()
    units = [threading.Thread(target=release.wait) for _ in range(count)]
    for t in units:
        t.start()  # clone(); start() returns once the new thread has run and signalled it started
    elapsed = time.perf_counter() - t0
    release.set()
    for t in units:
        t.join()
    return elapsed


def create_processes(count: int) -> float:
    """fork() ``count`` children that each say they run, then block in read() until released."""
    ready, release = os.pipe(), os.pipe()
    t0 = time.perf_counter()
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(release[1])  # only the parent keeps the write end: its close is our EOF
                os.write(ready[1], b"x")
                os.read(release[0], 1)  # parked until then
            finally:
                os._exit(0)
        pids.append(pid)
    got = 0
    while got < count:
        got += len(os.read(ready[0], count - got))
    elapsed = time.perf_counter() - t0
    os.close(release[1])
    for pid in pids:
        os.waitpid(pid, 0)
    for fd in (*ready, release[0]):
        os.close(fd)
    return elapsed


CREATORS = {"generator": create_generators, "greenlet": create_greenlets,
            "asyncio task": create_asyncio_tasks, "thread": create_threads,
            "process (fork)": create_processes}


def create_ns(kind: str, count: int, repeats: int) -> float:
    """Median over ``repeats`` of the time to create one unit and run it to its first wait, in ns."""
    return statistics.median(CREATORS[kind](count) / count for _ in range(repeats)) * 1e9


# -- 1c. the same three costs in Go and Erlang (M:N runtimes) -----------------------------------------


def c_switch(round_trips: int, repeats: int) -> dict:
    """lessons/native/cswitch.c: a stackful ping-pong in C, through swapcontext(3) and through a
    bare register swap (x86-64). Returns its JSON. Raises build.Unavailable with the fix."""
    cmd = [str(build.build("lessons/native/cswitch.c")), str(round_trips), str(repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise build.Unavailable(f"cswitch exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout)


MN_RUNTIMES = (("go", "goroutine"), ("erlang", "Erlang process"), ("java", "Java virtual thread"))


def mn_runtime(kind: str, count: int, round_trips: int, repeats: int) -> dict:
    """Run lessons/native/mn_go.go, mn_erlang.erl or mn_java.java (built by servers/build.py) with
    one scheduler thread (GOMAXPROCS=1, erl +S 1, one carrier); returns its JSON. Raises
    build.Unavailable with the fix."""
    args = [str(count), str(round_trips), str(repeats)]
    if kind == "go":
        cmd = [str(build.build("lessons/native/mn_go.go")), *args]
    elif kind == "java":
        classes = build.build("lessons/native/mn_java.java")
        cmd = [build.java_runtime(), "-XX:+UseSerialGC", "-Djdk.virtualThreadScheduler.parallelism=1",
               "-cp", str(classes), "mn_java", *args]
    else:
        beam_dir = build.build("lessons/native/mn_erlang.erl")
        erl = shutil.which("erl")
        if not erl:
            raise build.Unavailable("no Erlang runtime (erl) on PATH: apt-get install erlang-base")
        cmd = [erl, "+S", "1", "-noshell", "-pa", str(beam_dir), "-s", "mn_erlang", "main", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise build.Unavailable(f"{kind}: no answer within 60 s") from None
    if done.returncode != 0:
        raise build.Unavailable(f"{kind} exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-300:]}")
    return json.loads(done.stdout)


# -- the picture, drawn from a recorded run ----------------------------------------------------------

FAMILY_COLOURS = {"Python fiber": "#0072B2", "M:N runtime": "#009E73", "C fiber": "#CC79A7",
                  "kernel": "#D55E00"}


def draw_costs(record: dict, fig) -> None:
    """Switch cost and memory per unit, log scale, one bar per unit, coloured by who schedules it."""
    from lessons.figures import not_measured

    rows = record.get("series", {}).get("units")
    if not rows:
        not_measured(fig, "this run has no per-unit series (recorded before it existed)")
        return
    left, right = fig.subplots(1, 2, sharey=True)
    names = [r["unit"] for r in rows][::-1]
    for ax, key, title, unit in ((left, "switch_ns", "one switch", "ns"),
                                 (right, "memory_bytes", "memory per parked unit", "bytes")):
        values = [r.get(key) for r in rows][::-1]
        colours = [FAMILY_COLOURS[r["family"]] for r in rows][::-1]
        ys = [i for i, v in enumerate(values) if v]
        low = min(values[i] for i in ys) / 3
        ax.barh(ys, [values[i] for i in ys], color=[colours[i] for i in ys])
        for i, v in enumerate(values):
            ax.text(v * 1.15 if v else low * 1.2, i, f"{v:,.0f}" if v else "not measured", va="center",
                    fontsize=8, color="black" if v else "#777777")
        ax.set_xscale("log")
        ax.set_title(f"{title} ({unit}, log scale)")
        ax.set_xlim(low, max(values[i] for i in ys) * 8)
        ax.grid(axis="y", visible=False)
    left.set_yticks(range(len(names)), names)
    handles = [matplotlib_patch(c, f) for f, c in FAMILY_COLOURS.items()]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles))
    fig.suptitle("Lesson 10: what a unit of concurrency costs (threads and processes with their kernel stack)")


def matplotlib_patch(colour: str, label: str):
    from matplotlib.patches import Patch
    return Patch(color=colour, label=label)


PICTURES = {"costs": draw_costs}


# Yours against recorded: these follow the mode and the machine, not the effect.
TOLERANCE = {
    "M:N units parked at once": None,  # 10,000 in --quick, 100,000 in a full run
    "OS threads under the parked Erlang processes": None,  # the BEAM starts threads per core
    "OS threads under the parked Java virtual threads": None,  # so does the JVM (GC, JIT)
    "kernel stack per process": None,  # KernelStack in /proc/meminfo is machine-wide: others move it
}


def _kib_with_kstack(m, kind: str) -> float:
    return m[f"memory per {kind}"] + m[f"kernel stack per {kind}"]


# The page's comparative sentences (docs/10-fibers.md), checked against the recorded run by
# tests/test_claims.py. Bounds are wide on purpose: they must hold on a quiet machine and a busy one.
CLAIMS = [
    Claim("the user-space switches are cheaper by one or two orders of magnitude",
          lambda m: min(m["switch: thread"], m["switch: process"]) >= 5 * m["switch: greenlet"]
          and min(m["switch: thread"], m["switch: process"]) >= 30 * m["switch: generator"],
          "a thread or process switch costs at least 5x a greenlet's and 30x a generator's"),
    Claim("both are tasks to the scheduler (lesson 06) and take the same path through it",
          lambda m: 0.5 <= m["switch: process"] / m["switch: thread"] <= 3,
          "a process switch costs within 3x of a thread switch (the same path, plus page tables)"),
    Claim("because of how greenlet makes a stack for Python",
          lambda m: m["switch: greenlet"] > 2 * m["switch: generator"],
          "a greenlet switch costs more than twice a generator's"),
    Claim("does exactly that, in fifteen instructions of x86-64",
          lambda m: 5 * m["switch: C fiber, register swap"] < m["switch: greenlet"]
          and m["switch: C fiber, register swap"] < m["switch: C fiber, swapcontext"],
          "a bare register swap costs under a fifth of a greenlet switch, and less than swapcontext"),
    Claim("A hop through a loop costs more than the switch",
          lambda m: min(m["switch: asyncio task"], m["switch: trio task"]) > 2 * m["switch: generator"]
          and m["switch: gevent greenlet"] > m["switch: greenlet"],
          "a hop through asyncio/trio costs more than a generator switch, through gevent's hub more "
          "than a bare greenlet switch"),
    Claim("allocates a G with a 2 KiB stack",
          lambda m: 1.5 <= m["goroutine stack (runtime.MemStats)"] <= 3,
          "runtime.MemStats gives a parked goroutine's stack as 1.5 to 3 KiB"),
    Claim("What the loop buys is not a cheaper switch",
          lambda m: all(0.1 <= m[f"switch: {k}"] / m["switch: thread"] <= 10
                        for k in ("asyncio task", "trio task", "gevent greenlet")),
          "asyncio, trio and gevent hops are within 10x of a thread switch"),
    Claim.unmeasured("steals half of another P's",
                     "runqsteal in Go's runtime/proc.go and Vyukov's scheduler design doc"),
    Claim.unmeasured("a budget of about 4,000 function calls",
                     "CONTEXT_REDS (4,000) in erts/emulator/beam/erl_vm.h"),
    Claim("a hop through a Python scheduler lands in the same range",
          lambda m: all(0.1 <= m[f"switch: {k}"] / m["switch: thread"] <= 10
                        for k in ("asyncio task", "trio task", "gevent greenlet")),
          "asyncio, trio and gevent hops are within 10x of a thread switch"),
    Claim("a parked generator is a few hundred bytes",
          lambda m: 0.05 <= m["memory per generator"] <= 1, "a generator takes 50 bytes to 1 KiB"),
    Claim("an asyncio or trio task a kilobyte or two",
          lambda m: all(0.5 <= m[f"memory per {k}"] <= 3 for k in ("asyncio task", "trio task")),
          "an asyncio or trio task takes 0.5 to 3 KiB"),
    Claim("a goroutine, an Erlang process or a Java virtual thread two or three kilobytes",
          lambda m: all(1.5 <= m[f"memory per {u}"] <= 4 for _, u in MN_RUNTIMES),
          "a goroutine, an Erlang process and a Java virtual thread take 1.5 to 4 KiB"),
    Claim("a gevent greenlet several kilobytes",
          lambda m: 3 <= m["memory per gevent greenlet"] <= 20, "a gevent greenlet takes 3 to 20 KiB"),
    Claim("a thread tens of kilobytes with its kernel stack",
          lambda m: 10 <= _kib_with_kstack(m, "thread") <= 100,
          "a thread takes 10 to 100 KiB with its kernel stack"),
    Claim("a forked process hundreds",
          lambda m: 100 <= m["memory per process (fork)"] <= 2000, "a forked process takes 100 KiB to 2 MiB"),
    Claim("a new interpreter, megabytes",
          lambda m: m["memory per process (new interpreter)"] >= 1000, "a new interpreter takes over 1 MiB"),
    Claim("What a stack of its own costs is memory",
          lambda m: min(m["memory per gevent greenlet"], m["memory per goroutine"])
          > 4 * m["memory per generator"],
          "a stackful unit (greenlet, goroutine) takes over 4x a generator's memory"),
    Claim("A goroutine, an Erlang process and a Java virtual\n  thread cost what a fiber does, not what a thread does",
          lambda m: all(3 * m[f"create: {u}"] < m["create: thread"]
                        and 3 * m[f"memory per {u}"] < _kib_with_kstack(m, "thread")
                        and 3 * m[f"switch: {u}"] < m["switch: thread"]
                        for _, u in MN_RUNTIMES),
          "goroutines, Erlang processes and Java virtual threads cost under a third of a thread to create, "
          "switch and keep"),
]


# -- The lesson's sections, each printing what it measured and what to notice ----------------------


def switch_costs(lesson: Lesson, round_trips: dict, repeats: int, pinned: int | None) -> dict[str, float]:
    lesson.section("one switch, from a ping-pong (a round trip is two switches)"
                   + (f"; pinned to CPU {pinned}" if pinned is not None else ""))
    switch = {kind: lesson.measure(f"switch: {kind}", switch_ns(kind, round_trips[kind], repeats), "ns")
              for kind in SWITCH_KINDS}
    fastest = min(switch, key=switch.get)
    lesson.notice(f"a {fastest} switch took {switch[fastest]:,.0f} ns, a thread switch "
                  f"{switch['thread']:,.0f} ns ({switch['thread'] / switch[fastest]:,.0f}x), a "
                  f"process switch {switch['process']:,.0f} ns: user-space switches skip the kernel")
    lesson.notice(f"stackful greenlet {switch['greenlet']:,.0f} ns vs stackless generator "
                  f"{switch['generator']:,.0f} ns; a hop through a loop adds the scheduler: asyncio "
                  f"{switch['asyncio task']:,.0f} ns, trio {switch['trio task']:,.0f} ns, gevent "
                  f"{switch['gevent greenlet']:,.0f} ns")
    return switch


def create_costs(lesson: Lesson, quick: bool, repeats: int) -> dict[str, float]:
    counts = {"generator": 10_000, "greenlet": 10_000, "asyncio task": 10_000,
              "thread": 500 if quick else 2_000, "process (fork)": 20 if quick else 50}
    lesson.section("create one unit and run it to its first wait (median per unit; "
                   + ", ".join(f"{counts[k]:,} of {k}" for k in CREATE_KINDS) + ")")
    return {kind: lesson.measure(f"create: {kind}", create_ns(kind, counts[kind], repeats), "ns")
            for kind in CREATE_KINDS}


def mn_runtimes(lesson: Lesson, count: int, round_trips: int, repeats: int) -> dict[str, dict]:
    """Go, Erlang and Java run many units on few threads (M:N); each measured with one scheduler
    thread, on the lesson's pinned CPU, so the switch compares with the fibers' and the create
    with the rest."""
    lesson.section(f"M:N runtimes, one scheduler thread (GOMAXPROCS=1, erl +S 1, one carrier): {count:,} "
                   "parked at once, the same ping-pong")
    lesson.measure("M:N units parked at once", count, "")
    mn = {}
    for kind, unit in MN_RUNTIMES:
        own = {"go": ("goroutine stack (runtime.MemStats)", "stack_bytes"),
               "erlang": ("Erlang process (erlang:memory(processes))", "proc_bytes"),
               "java": ("Java virtual thread (heap in use after a full GC)", "heap_bytes")}[kind]
        labels = (f"create: {unit}", f"switch: {unit}", f"memory per {unit}",
                  f"OS threads under the parked {unit}{'es' if unit.endswith('process') else 's'}", own[0])
        try:
            r = mn[kind] = mn_runtime(kind, count, round_trips, repeats)
        except build.Unavailable as exc:
            lesson.skip_all(labels, str(exc))
            continue
        for label, value, unit_name in zip(labels, (r["create_ns"], r["switch_ns"], r["mem_bytes"] / 1024,
                                                    r["os_threads"], r[own[1]] / 1024),
                                           ("ns", "ns", "KiB", "", "KiB"), strict=True):
            lesson.measure(label, value, unit_name)
    return mn


def c_switches(lesson: Lesson, round_trips: int, repeats: int) -> dict:
    """The stackful switch with nothing else in the way: C, one fiber and main, no scheduler."""
    lesson.section("a stackful switch in C (lessons/native/cswitch.c): swapcontext(3), and a "
                   "register swap in a few lines of assembly")
    labels = ("switch: C fiber, swapcontext", "switch: C fiber, register swap")
    try:
        c = c_switch(round_trips, repeats)
    except build.Unavailable as exc:
        lesson.skip_all(labels, str(exc))
        return {}
    lesson.measure(labels[0], c["swapcontext_ns"], "ns")
    if c["register_swap_ns"] is None:
        lesson.skip(labels[1], f"the assembly is written for x86-64; this is {c['arch']}")
    else:
        lesson.measure(labels[1], c["register_swap_ns"], "ns")
    return c


def memory_costs(lesson: Lesson, quick: bool) -> dict[str, dict]:
    counts = {"generator": 10_000, "asyncio task": 10_000, "trio task": 10_000, "gevent greenlet": 10_000,
              "thread": 2_000 if quick else 10_000, "process (fork)": 20 if quick else 50,
              "process (new interpreter)": 10 if quick else 20}
    lesson.section(f"memory per unit, each kind parked in a fresh interpreter ({counts['generator']:,} "
                   f"of each fiber, {counts['thread']:,} threads, {counts['process (fork)']} forked "
                   f"processes, {counts['process (new interpreter)']} new interpreters)")
    why_not = linux_only("/proc/PID/smaps_rollup and /proc/meminfo")
    memory = {}
    for kind in MEMORY_KINDS:
        label = f"memory per {kind}"
        extra = {"thread": ("address space per thread", "kernel stack per thread"),
                 "process (fork)": ("kernel stack per process",)}.get(kind, ())
        r = {"error": why_not} if why_not else hold_in_child(kind, counts[kind])
        if "error" in r:
            lesson.skip_all((label, *extra), r["error"])
            continue
        memory[kind] = r
        lesson.measure(label, r["uss_kib"], "KiB")
        if kind == "thread":
            lesson.measure("address space per thread", r["vm_kib"] / 1024, "MiB")
            lesson.measure("kernel stack per thread", r["kstack_kib"], "KiB")
        if kind == "process (fork)":
            lesson.measure("kernel stack per process", r["kstack_kib"], "KiB")
    if "thread" in memory and "generator" in memory:
        t = memory["thread"]
        lesson.notice(f"a parked thread cost {t['uss_kib']:.0f} KiB of private memory, plus "
                      f"{t['kstack_kib']:.0f} KiB of kernel stack, and reserved "
                      f"{t['vm_kib'] / 1024:.1f} MiB of address space for its stack; a generator cost "
                      f"{memory['generator']['uss_kib'] * 1024:.0f} bytes")
    fibers = [k for k in ("generator", "asyncio task", "trio task", "gevent greenlet") if k in memory]
    procs = [k for k in ("process (fork)", "process (new interpreter)") if k in memory]
    if fibers and procs:
        lesson.notice("per unit: " + ", ".join(f"{k} {memory[k]['uss_kib']:,.1f} KiB"
                                               for k in (*fibers, "thread", *procs) if k in memory))
    return memory


def units_series(switch: dict, memory: dict, mn: dict, cswitch: dict) -> list[dict]:
    """What the picture draws: one row per unit, its switch (ns) and its memory (bytes) where measured."""
    rows = []
    for unit, switch_kind, memory_kind in (
            ("generator", "generator", "generator"), ("greenlet", "greenlet", "gevent greenlet"),
            ("asyncio task", "asyncio task", "asyncio task"), ("trio task", "trio task", "trio task"),
            ("goroutine", None, None), ("Erlang process", None, None), ("Java virtual thread", None, None),
            ("C fiber, register swap", None, None), ("C fiber, swapcontext", None, None),
            ("thread", "thread", "thread"), ("process", "process", "process (fork)")):
        if unit.startswith("C fiber"):
            key = "register_swap_ns" if "register" in unit else "swapcontext_ns"
            if cswitch.get(key):
                rows.append({"unit": unit, "family": "C fiber", "switch_ns": cswitch[key]})
            continue
        mn_kind = {u: k for k, u in MN_RUNTIMES}.get(unit)
        if mn_kind:
            if mn_kind in mn:
                rows.append({"unit": unit, "family": "M:N runtime", "switch_ns": mn[mn_kind]["switch_ns"],
                             "memory_bytes": mn[mn_kind]["mem_bytes"]})
            continue
        row = {"unit": unit, "family": "kernel" if unit in ("thread", "process") else "Python fiber",
               "switch_ns": switch.get(switch_kind)}
        if memory_kind in memory:
            m = memory[memory_kind]
            row["memory_bytes"] = (m["uss_kib"] + m.get("kstack_kib", 0)) * 1024  # with its kernel stack
        rows.append(row)
    return rows


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("10", "Fibers", args)
    quick = lesson.quick
    round_trips = {"generator": 100_000, "greenlet": 100_000, "asyncio task": 10_000,
                   "trio task": 10_000, "gevent greenlet": 20_000, "thread": 5_000, "process": 5_000}
    if quick:
        round_trips = {k: v // 4 for k, v in round_trips.items()}
    repeats = 3 if quick else 5

    # Pin to one CPU: threads and processes then switch through one run queue, and the M:N
    # runtimes' one scheduler thread runs there too. The fibers never leave this thread, so
    # pinning changes nothing for them.
    pinned = original = None
    if hasattr(os, "sched_setaffinity"):
        original = os.sched_getaffinity(0)
        pinned = min(original)
        os.sched_setaffinity(0, {pinned})
    try:
        switch = switch_costs(lesson, round_trips, repeats, pinned)
        created = create_costs(lesson, quick, repeats)
        mn = mn_runtimes(lesson, 10_000 if quick else 100_000, round_trips["generator"], repeats)
        cswitch = c_switches(lesson, round_trips["generator"] * 4, repeats)
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, original)
    memory = memory_costs(lesson, quick)

    for kind, unit in MN_RUNTIMES:
        if kind in mn and "thread" in memory:
            r = mn[kind]
            lesson.notice(f"{'an' if unit[0] in 'AEIOU' else 'a'} {unit}: created in {r['create_ns']:,.0f} ns, "
                          f"switched in {r['switch_ns']:,.0f} ns (a thread: {created['thread']:,.0f} and "
                          f"{switch['thread']:,.0f} ns), {r['mem_bytes'] / 1024:.1f} KiB each (a thread: "
                          f"{memory['thread']['uss_kib']:.1f} KiB + {memory['thread']['kstack_kib']:.0f} KiB "
                          f"kernel stack); {r['count']:,} of them on {r['os_threads']} OS threads")
    lesson.series("units", units_series(switch, memory, mn, cswitch))
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
