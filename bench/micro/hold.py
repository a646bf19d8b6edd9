"""Hold N units of concurrency alive at once and measure how much memory they take.

    python -m bench.micro.hold thread 1000      # prints one JSON line, then lets them all go

Run in a fresh interpreter, so that memory freed by earlier work (pymalloc arenas, glibc's cache of
thread stacks) cannot be reused by the units and hide their cost. The measurement:

- units in this process (threads, subinterpreters, greenlets, generators, asyncio and trio tasks,
  the subinterpreters under a Python 3.12+ that the caller starts this module with): the growth of
  this process's USS (memory no other process shares) between "runtime ready, no units yet" and
  "N units parked", divided by N. RSS and VMS growth are recorded too: for threads the difference
  is the lesson (8 MiB of stack reserved per thread, only the pages it touched resident);
- processes (fork, multiprocessing spawn): the sum of the children's USS, divided by N. A forked
  child shares every page with its parent until someone writes to it (copy-on-write), so its USS
  is only what it touched since fork; a spawned child is a whole new interpreter.

Not counted anywhere: kernel memory (a task_struct and a 16 KiB kernel stack per thread or
process, page tables), which no user-space counter sees.

Each unit waits on one shared release signal, so all N are alive and parked when measured; the
JSON says how many were alive then and how many finished cleanly after release. Top-level imports
are kept to the standard minimum because spawned children import this module too.
"""

from __future__ import annotations

import os
import sys
import time

# The N that test_memory.py uses for each unit: enough that the per-unit figure is stable, few
# enough that holding them takes a second or two.
DEFAULT_COUNTS = {
    "fork": 50,
    "spawn": 50,
    "thread": 1_000,
    "subinterpreter": 20,
    "greenlet": 10_000,
    "gevent": 10_000,
    "generator": 100_000,
    "asyncio": 100_000,
    "uvloop": 100_000,
    "trio": 100_000,
}

RELEASE_TIMEOUT_S = 30.0


class Memory:
    """A memory reading, in bytes: rss (resident), uss (resident and private), vms (reserved)."""

    def __init__(self, rss: int = 0, uss: int = 0, vms: int = 0) -> None:
        self.rss, self.uss, self.vms = rss, uss, vms

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.rss + other.rss, self.uss + other.uss, self.vms + other.vms)

    def __sub__(self, other: Memory) -> Memory:
        return Memory(self.rss - other.rss, self.uss - other.uss, self.vms - other.vms)


def memory_of(pid: int | None = None) -> Memory:
    import psutil  # imported here: spawned children import this module and should not pay for it

    info = psutil.Process(pid).memory_full_info()  # reads /proc/PID/smaps for USS
    return Memory(rss=info.rss, uss=info.uss, vms=info.vms)


def memory_of_children(pids: list[int]) -> Memory:
    total = Memory()
    for pid in pids:
        total = total + memory_of(pid)
    return total


class Holding:
    """What a holder saw: memory before and while holding, units alive, units finished."""

    def __init__(self, before: Memory, held: Memory, alive: int, finished: int, where: str):
        self.before, self.held, self.alive, self.finished = before, held, alive, finished
        self.where = where  # "this process" or "children"


# --- processes -------------------------------------------------------------------------------


def hold_forked_processes(count: int) -> Holding:
    """Fork ``count`` children that each report ready, then block in read() until EOF."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pids: list[int] = []
    alive = 0
    held = Memory()
    try:
        for _ in range(count):
            pid = os.fork()
            if pid == 0:  # the child
                exit_code = 1
                try:
                    os.close(hold_w)  # so that EOF comes once the parent closes its copy
                    os.close(ready_r)
                    os.write(ready_w, b"!")
                    os.read(hold_r, 1)  # parked here, in the kernel, until EOF
                    exit_code = 0
                finally:
                    os._exit(exit_code)
            pids.append(pid)
        os.close(ready_w)
        ready_w = -1
        alive = _read_ready_bytes(ready_r, count)
        held = memory_of_children(pids)
    finally:
        os.close(hold_w)  # every child's read() returns EOF and it exits 0
        for fd in (ready_r, ready_w, hold_r):
            if fd >= 0:
                os.close(fd)
        exit_codes = [reap(pid, RELEASE_TIMEOUT_S) for pid in pids]
    return Holding(Memory(), held, alive, exit_codes.count(0), "children")


def _read_ready_bytes(fd: int, count: int) -> int:
    import select

    received = 0
    deadline = time.monotonic() + RELEASE_TIMEOUT_S
    while received < count and time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], deadline - time.monotonic())
        if not readable:
            break
        chunk = os.read(fd, count - received)
        if not chunk:
            break  # every child closed its end: some died before reporting
        received += len(chunk)
    return received


def reap(pid: int, timeout_s: float = 5.0) -> int:
    """Wait for child ``pid`` and return its exit code; SIGKILL it if it overstays ``timeout_s``.

    Until waitpid() collects it, an exited child is a zombie: an entry in the process table that
    holds its exit status and nothing else.
    """
    import signal

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reaped_pid, status = os.waitpid(pid, os.WNOHANG)
        if reaped_pid == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.001)
    os.kill(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def spawned_child(ready, release) -> None:
    """The body of each spawned interpreter: say it is up, then wait to be released."""
    ready.release()
    release.wait(RELEASE_TIMEOUT_S)


def hold_spawned_processes(count: int) -> Holding:
    """Start ``count`` fresh interpreters with multiprocessing's spawn method and park them."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    ready, release = spawn.Semaphore(0), spawn.Event()
    processes = []
    alive = 0
    held = Memory()
    try:
        for _ in range(count):
            process = spawn.Process(target=spawned_child, args=(ready, release), daemon=True)
            process.start()
            processes.append(process)
        deadline = time.monotonic() + RELEASE_TIMEOUT_S
        while alive < count and ready.acquire(timeout=max(0.0, deadline - time.monotonic())):
            alive += 1
        held = memory_of_children([process.pid for process in processes])
    finally:
        release.set()
        for process in processes:
            process.join(RELEASE_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
    finished = sum(process.exitcode == 0 for process in processes)
    return Holding(Memory(), held, alive, finished, "children")


# --- threads ---------------------------------------------------------------------------------


def hold_threads(count: int) -> Holding:
    """Start ``count`` threads (default stack size) that all wait on one Event."""
    import threading

    release = threading.Event()
    threads = []
    before = memory_of()
    try:
        for _ in range(count):
            thread = threading.Thread(target=release.wait, daemon=True)
            thread.start()
            threads.append(thread)
        held = memory_of()
        alive = sum(thread.is_alive() for thread in threads)
    finally:
        release.set()
        for thread in threads:
            thread.join(RELEASE_TIMEOUT_S)
    finished = sum(not thread.is_alive() for thread in threads)
    return Holding(before, held, alive, finished, "this process")


def hold_subinterpreters(count: int) -> Holding:
    """Create ``count`` subinterpreters (Python 3.12+: each with its own GIL) and keep them all.

    Run under a 3.12+ (test_memory.py and lesson 06 start this module with one). An interpreter
    waits without a thread: it is a state that any thread may enter, so what it holds is its
    own copy of the built-in modules, its sys, its import system and its allocator's arenas."""
    from bench.micro.subinterp import interpreters_module

    interpreters = interpreters_module()
    held_interpreters = []
    before = memory_of()
    finished = 0
    try:
        for _ in range(count):
            interp = interpreters.create()
            held_interpreters.append(interp)
            interp.exec("pass")  # a fresh one has run nothing: make it as ready as a started thread
        held = memory_of()
        alive = len(held_interpreters)
    finally:
        for interp in held_interpreters:
            interp.close()
            finished += 1
    return Holding(before, held, alive, finished, "this process")


# --- greenlets and generators ----------------------------------------------------------------


def hold_greenlets(count: int) -> Holding:
    """Start ``count`` greenlets, each of which switches straight back and stays suspended."""
    from greenlet import getcurrent, greenlet

    main = getcurrent()

    def body() -> bool:
        main.switch()  # parked here: its slice of C stack saved to the heap
        return True

    greenlets = []
    before = memory_of()
    try:
        for _ in range(count):
            parked = greenlet(body)
            parked.switch()
            greenlets.append(parked)
        held = memory_of()
        alive = sum(bool(parked) for parked in greenlets)  # True while started and not dead
    finally:
        finished = sum(parked.switch() is True for parked in greenlets if parked)
    return Holding(before, held, alive, finished, "this process")


def hold_gevent_greenlets(count: int) -> Holding:
    """Spawn ``count`` gevent greenlets that all wait on one gevent Event."""
    import gevent
    from gevent.event import Event

    release = Event()
    started = []

    def body() -> bool:
        started.append(1)
        return release.wait(RELEASE_TIMEOUT_S)

    gevent.sleep(0)  # create the hub and its loop before the baseline
    before = memory_of()
    greenlets = [gevent.spawn(body) for _ in range(count)]
    try:
        gevent.sleep(0)  # one pass of the hub: every greenlet runs up to its wait()
        held = memory_of()
        alive = len(started)  # each body counted itself in, and none can end before release
    finally:
        release.set()
        gevent.joinall(greenlets, timeout=RELEASE_TIMEOUT_S)
        gevent.killall([parked for parked in greenlets if not parked.dead])
    finished = sum(parked.successful() and parked.value is True for parked in greenlets)
    return Holding(before, held, alive, finished, "this process")


def hold_generators(count: int) -> Holding:
    """Create ``count`` generators and advance each to its first yield."""

    def body():
        yield  # parked here: a suspended frame on the heap

    generators = []
    before = memory_of()
    try:
        for _ in range(count):
            parked = body()
            next(parked)
            generators.append(parked)
        held = memory_of()
        alive = sum(parked.gi_suspended for parked in generators)
    finally:
        for parked in generators:
            next(parked, None)  # runs it to the end
    finished = sum(parked.gi_frame is None for parked in generators)
    return Holding(before, held, alive, finished, "this process")


# --- asyncio and trio tasks ------------------------------------------------------------------


def hold_asyncio_tasks(count: int, loop_name: str = "asyncio") -> Holding:
    """Create ``count`` tasks that all wait on one asyncio.Event, on asyncio's loop or uvloop's."""
    import asyncio

    async def hold() -> Holding:
        release = asyncio.Event()
        before = memory_of()
        tasks = [asyncio.create_task(release.wait()) for _ in range(count)]
        try:
            await asyncio.sleep(0)  # one loop iteration: every task runs up to its await
            held = memory_of()
            alive = sum(not task.done() for task in tasks)
        finally:
            release.set()
            results = await asyncio.wait_for(
                asyncio.gather(*tasks, return_exceptions=True), RELEASE_TIMEOUT_S
            )
        finished = sum(result is True for result in results)
        return Holding(before, held, alive, finished, "this process")

    loop_factory = None
    if loop_name == "uvloop":
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(hold())


def hold_trio_tasks(count: int) -> Holding:
    """Start ``count`` trio tasks in one nursery, all waiting on one trio.Event."""
    import trio
    import trio.testing

    async def hold() -> Holding:
        release = trio.Event()
        finished = 0

        async def body() -> None:
            nonlocal finished
            await release.wait()  # parked here
            finished += 1

        async with trio.open_nursery() as nursery:
            before = memory_of()
            for _ in range(count):
                nursery.start_soon(body)
            await trio.testing.wait_all_tasks_blocked()  # every task is parked in wait()
            held = memory_of()
            alive = len(nursery.child_tasks)
            release.set()
        # Leaving the nursery waited for every task (an error would have cancelled them all).
        return Holding(before, held, alive, finished, "this process")

    return trio.run(hold)


HOLDERS = {
    "fork": hold_forked_processes,
    "spawn": hold_spawned_processes,
    "thread": hold_threads,
    "subinterpreter": hold_subinterpreters,
    "greenlet": hold_greenlets,
    "gevent": hold_gevent_greenlets,
    "generator": hold_generators,
    "asyncio": hold_asyncio_tasks,
    "uvloop": lambda count: hold_asyncio_tasks(count, loop_name="uvloop"),
    "trio": hold_trio_tasks,
}


def measure(unit: str, count: int) -> dict:
    """Hold ``count`` units of kind ``unit``; return the result as a JSON-ready dict."""
    started_s = time.perf_counter()
    holding = HOLDERS[unit](count)
    growth = holding.held - holding.before
    return {
        "unit": unit,
        "count": count,
        "alive": holding.alive,
        "finished": holding.finished,
        "measured_in": holding.where,
        "metric": "sum of children's USS" if holding.where == "children" else "USS growth",
        "bytes_per_unit": round(growth.uss / count),
        "uss_bytes_per_unit": round(growth.uss / count),
        "rss_bytes_per_unit": round(growth.rss / count),
        "vms_bytes_per_unit": round(growth.vms / count),
        "hold_and_release_s": round(time.perf_counter() - started_s, 3),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m bench.micro.hold",
        description="Hold N units of concurrency alive at once; print memory per unit as JSON.",
    )
    parser.add_argument("unit", choices=sorted(HOLDERS))
    parser.add_argument("count", type=int, nargs="?", help="how many to hold (default: per unit)")
    args = parser.parse_args(argv)
    count = args.count if args.count is not None else DEFAULT_COUNTS[args.unit]
    if count < 1:
        parser.error("count must be at least 1")
    if args.unit == "subinterpreter" and sys.version_info < (3, 12):
        parser.error("a subinterpreter with its own GIL needs Python 3.12+ (this is "
                     f"{sys.version.split()[0]}): run it with one, e.g. .venv-3.13/bin/python "
                     "(python -m servers.interpreters 3.13 builds that venv)")
    result = measure(args.unit, count)
    print(json.dumps(result), flush=True)
    all_held_and_finished = result["alive"] == count and result["finished"] == count
    return 0 if all_held_and_finished else 1


if __name__ == "__main__":
    sys.exit(main())
