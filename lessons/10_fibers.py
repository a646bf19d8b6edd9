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
   an earlier kind cannot be reused and hide a cost.

The OS mechanism: a thread or process switch goes through the kernel's scheduler (sched(7));
generators, coroutines and greenlets switch without a syscall, in the interpreter. PEP 255
(generators), PEP 342 (send), PEP 492 (async/await); the greenlet docs ("How greenlets work").
Linux-only parts: pinning (sched_setaffinity), /proc memory counters.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time

from lessons.common import Lesson, linux_only, parse_args

SWITCH_KINDS = ("generator", "greenlet", "asyncio task", "trio task", "gevent greenlet", "thread",
                "process")
MEMORY_KINDS = ("generator", "asyncio task", "trio task", "gevent greenlet", "thread",
                "process (fork)", "process (new interpreter)")


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


# -- 2. memory per unit, measured in a fresh interpreter -------------------------------------------


def private_kib(pid: int | str = "self") -> int:
    """USS: resident memory no other process shares (Private_Clean + Private_Dirty), in KiB."""
    total = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    return total


def status_kib(field: str, path: str = "/proc/self/status") -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(field)


def hold(kind: str, count: int, conn) -> None:
    """Run in a spawned child: park ``count`` units of ``kind``, report memory growth per unit."""
    try:
        conn.send(_hold(kind, count))
    except Exception as exc:  # report, do not hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def _hold(kind: str, count: int) -> dict:
    import asyncio  # imported before the baseline, so that importing is not counted

    import gevent
    import gevent.event

    def snapshot():
        gc.collect()
        return {"uss": private_kib(), "vm": status_kib("VmSize"),
                "kstack": status_kib("KernelStack", "/proc/meminfo")}

    result: dict = {}

    if kind == "generator":
        def parked(i):
            local = i  # a connection's state would live here, in the frame
            yield
            return local

        base = snapshot()
        units = [parked(i) for i in range(count)]
        for g in units:
            next(g)  # run to the yield: suspended, its frame on the heap
        after = snapshot()
        for g in units:
            g.close()

    elif kind == "asyncio task":
        async def main():
            event = asyncio.Event()

            async def parked():
                await event.wait()

            await asyncio.sleep(0)
            base = snapshot()
            tasks = [asyncio.create_task(parked()) for _ in range(count)]
            await asyncio.sleep(0)  # every task runs to its await and parks
            after = snapshot()
            event.set()
            await asyncio.gather(*tasks)
            return base, after

        base, after = asyncio.run(main())

    elif kind == "trio task":
        import trio
        import trio.testing

        async def main():
            event = trio.Event()
            await trio.sleep(0)
            async with trio.open_nursery() as nursery:
                base = snapshot()
                for _ in range(count):
                    nursery.start_soon(event.wait)
                await trio.testing.wait_all_tasks_blocked()  # every task parked in wait()
                after = snapshot()
                event.set()
            return base, after

        base, after = trio.run(main)

    elif kind == "gevent greenlet":
        event = gevent.event.Event()
        gevent.sleep(0)
        base = snapshot()
        units = [gevent.spawn(event.wait) for _ in range(count)]
        gevent.sleep(0)  # the hub runs every greenlet to its wait
        after = snapshot()
        event.set()
        gevent.joinall(units)

    elif kind == "thread":
        release = threading.Event()
        base = snapshot()
        units = []
        for _ in range(count):
            t = threading.Thread(target=release.wait, daemon=True)
            t.start()
            units.append(t)
        after = snapshot()
        result["vm_kib"] = (after["vm"] - base["vm"]) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        release.set()
        for t in units:
            t.join()

    elif kind == "process (fork)":
        rfd, wfd = os.pipe()
        base = snapshot()
        pids = []
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(wfd)  # only the parent holds the write end: its close (or death) is EOF
                    os.read(rfd, 1)  # parked until then
                finally:
                    os._exit(0)
            pids.append(pid)
        time.sleep(0.3)  # let every child reach its read()
        after = snapshot()
        result["uss_kib"] = sum(private_kib(p) for p in pids) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        os.close(wfd)
        for pid in pids:
            os.waitpid(pid, 0)
        os.close(rfd)
        return result

    elif kind == "process (new interpreter)":
        base = snapshot()
        procs = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE) for _ in range(count)]
        time.sleep(0.5 + 0.02 * count)  # let every interpreter start and park in read()
        after = snapshot()
        result["uss_kib"] = sum(private_kib(p.pid) for p in procs) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        for p in procs:
            p.stdin.close()
            p.wait(10)
        return result

    else:
        raise ValueError(kind)

    result["uss_kib"] = (after["uss"] - base["uss"]) / count
    return result


def hold_in_child(kind: str, count: int, timeout_s: float = 60.0) -> dict:
    ctx = multiprocessing.get_context("spawn")
    parent_end, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=hold, args=(kind, count, child_end), daemon=True)
    proc.start()
    child_end.close()
    try:
        if not parent_end.poll(timeout_s):
            return {"error": f"no answer within {timeout_s:.0f} s"}
        return parent_end.recv()
    except EOFError:
        return {"error": "the child died without an answer"}
    finally:
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent_end.close()


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("10", "Fibers", args)
    quick = lesson.quick
    round_trips = {"generator": 100_000, "greenlet": 100_000, "asyncio task": 10_000,
                   "trio task": 10_000, "gevent greenlet": 20_000, "thread": 5_000, "process": 5_000}
    if quick:
        round_trips = {k: v // 4 for k, v in round_trips.items()}
    repeats = 3 if quick else 5
    counts = {"generator": 10_000, "asyncio task": 10_000, "trio task": 10_000, "gevent greenlet": 10_000,
              "thread": 2_000 if quick else 10_000, "process (fork)": 20 if quick else 50,
              "process (new interpreter)": 10 if quick else 20}

    # Pin to one CPU: threads and processes then switch through one run queue. The fibers never
    # leave this thread, so pinning changes nothing for them.
    pinned = None
    if hasattr(os, "sched_setaffinity"):
        original = os.sched_getaffinity(0)
        pinned = min(original)
        os.sched_setaffinity(0, {pinned})
    switch = {}
    try:
        lesson.section("one switch, from a ping-pong (a round trip is two switches)"
                       + (f"; pinned to CPU {pinned}" if pinned is not None else ""))
        for kind in SWITCH_KINDS:
            switch[kind] = lesson.measure(f"switch: {kind}", switch_ns(kind, round_trips[kind], repeats), "ns")
    finally:
        if pinned is not None:
            os.sched_setaffinity(0, original)

    lesson.section(f"memory per unit, each kind parked in a fresh interpreter ({counts['generator']:,} "
                   f"of each fiber, {counts['thread']:,} threads, {counts['process (fork)']} forked "
                   f"processes, {counts['process (new interpreter)']} new interpreters)")
    why_not = linux_only("/proc/PID/smaps_rollup and /proc/meminfo")
    memory = {}
    for kind in MEMORY_KINDS:
        label = f"memory per {kind}"
        extra = {"thread": ("address space per thread", "kernel stack per thread"),
                 "process (fork)": ("kernel stack per process",)}.get(kind, ())
        if why_not:
            for lab in (label, *extra):
                lesson.skip(lab, why_not)
            continue
        r = hold_in_child(kind, counts[kind])
        if "error" in r:
            for lab in (label, *extra):
                lesson.skip(lab, r["error"])
            continue
        memory[kind] = r
        lesson.measure(label, r["uss_kib"], "KiB")
        if kind == "thread":
            lesson.measure("address space per thread", r["vm_kib"] / 1024, "MiB")
            lesson.measure("kernel stack per thread", r["kstack_kib"], "KiB")
        if kind == "process (fork)":
            lesson.measure("kernel stack per process", r["kstack_kib"], "KiB")

    # -- what to notice, computed from the numbers above
    if switch:
        fastest = min(switch, key=switch.get)
        lesson.notice(f"a {fastest} switch took {switch[fastest]:,.0f} ns, a thread switch "
                      f"{switch['thread']:,.0f} ns ({switch['thread'] / switch[fastest]:,.0f}x), a "
                      f"process switch {switch['process']:,.0f} ns: user-space switches skip the kernel")
        lesson.notice(f"stackful greenlet {switch['greenlet']:,.0f} ns vs stackless generator "
                      f"{switch['generator']:,.0f} ns; a hop through a loop adds the scheduler: asyncio "
                      f"{switch['asyncio task']:,.0f} ns, trio {switch['trio task']:,.0f} ns, gevent "
                      f"{switch['gevent greenlet']:,.0f} ns")
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
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
