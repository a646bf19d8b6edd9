"""Creating a unit of concurrency, running a trivial body in it to the end, and reaping it.

One operation here is the whole life of one unit: create it, let it run a body that does nothing,
collect it. What the OS and the runtime do meanwhile:

- process, fork + waitpid: fork() is clone() without CLONE_VM: the kernel copies the parent's page
  tables (not its pages; those stay shared, copy-on-write, until someone writes to them), its file
  descriptor table and signal handlers, and makes a new task for the scheduler. The child calls
  _exit(0), which tears the address space down; until the parent's waitpid() collects the exit
  status the child is a zombie. The copy of page tables grows with the parent's mapped memory, so
  the parent's RSS is recorded beside the number (lesson 04).
- process, fork + exec: the same, then execve() throws the copied address space away and loads a
  new program (/bin/true). Fork copies page tables only for exec to discard them.
- process, posix_spawn: glibc creates the child with clone(CLONE_VM | CLONE_VFORK): the child runs
  on the parent's memory, without copying page tables, until it execs /bin/true.
- process, multiprocessing spawn: starts a fresh Python interpreter (fork+exec of sys.executable),
  which imports multiprocessing, unpickles the target, runs it and exits. Interpreter start-up is
  almost all of it; it is what every ProcessPoolExecutor worker pays on macOS and Windows.
- subinterpreter (Python 3.12+, in a child of one: subinterp.py): a new interpreter in this
  process, with its own GIL, its own copy of every built-in module, sys and the import system,
  run once (`pass`) and finalised. No fork, no new address space, no new task: milliseconds of
  interpreter start-up, which is what a process spends starting Python too.
- thread: pthread_create() is clone(CLONE_VM | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD ...): a
  new kernel task sharing our address space, plus an mmap'ed stack (8 MiB reserved, a few pages
  touched) and a Python thread state; join() waits on a lock the thread releases as it exits.
- greenlet: a Python object; the first switch() starts the function on a slice of the C stack, in
  user space, without the kernel. When the function returns, control switches back to the parent.
  On CPython 3.11+ there is a catch: each greenlet keeps its own chunk of memory for Python frames
  (16 KiB), which the interpreter gets from mmap() when the greenlet first runs Python code and
  gives back with munmap() when it dies. That system-call pair, not the stack switch, is most of
  what this costs; the switch itself (test_switch.py) is much cheaper.
- greenlet (gevent): a greenlet plus a trip through gevent's hub, which runs the new greenlet from
  its event loop; joinall() parks the caller in the hub until they are all done.
- generator: calling a generator function allocates a frame; next() resumes it in the same
  interpreter loop, like a function call that can pause. Nothing leaves the interpreter.
- asyncio task: create_task() wraps the coroutine (a frame) in a Task and puts a call to its
  step() on the loop's ready queue; the loop runs it on its next iteration; awaiting the task adds a
  done-callback that wakes the awaiter.
- trio task: nursery.start_soon() creates a task and puts it on trio's run queue; leaving the
  nursery waits for every child. One call here includes one trio.run() start-up (a few hundred
  microseconds), shared by CREATIONS_PER_CALL tasks: a few percent of the figure.

The cheap units are created CREATIONS_PER_CALL at a time per call of the benchmarked function, so
the timer's own overhead does not swamp them; ``ops_per_call`` in extra_info says how many.
Each test also checks what it timed: every body ran, every child exited 0 and was reaped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading

import psutil
import pytest

from bench.micro.common import label, reap

# Processes are timed one per round, with a fixed number of rounds (pedantic mode), so that a slow
# machine cannot turn "repeat until 1 s has passed" into thousands of forks.
FORK_ROUNDS = 300
SPAWN_INTERPRETER_ROUNDS = 10

# Cheap units are created this many times per call of the benchmarked function.
CREATIONS_PER_CALL = 1000

TRUE_PROGRAM = shutil.which("true")

# Why a greenlet costs more to create than a task: on CPython 3.11+ each greenlet gets its own
# chunk of memory for Python frames, allocated with mmap() when it starts and returned with
# munmap() when it dies (`strace -c` shows one pair per greenlet).
GREENLET_FRAME_CHUNK_NOTE = "mmap+munmap of a 16 KiB frame chunk"


def _parent_memory() -> dict[str, int]:
    memory = psutil.Process().memory_info()
    return {"parent_rss_bytes": memory.rss, "parent_vms_bytes": memory.vms}


# --- processes -------------------------------------------------------------------------------


def fork_and_wait() -> int:
    """fork(); the child exits at once; the parent reaps it. Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the child: never return into pytest, never run its atexit handlers
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def fork_exec_and_wait() -> int:
    """fork(), then execv(/bin/true) in the child; the parent reaps it."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(TRUE_PROGRAM, [TRUE_PROGRAM])
        finally:
            os._exit(127)  # only reached if exec failed
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def posix_spawn_and_wait() -> int:
    """posix_spawn(/bin/true); the parent reaps it."""
    pid = os.posix_spawn(TRUE_PROGRAM, [TRUE_PROGRAM], os.environ)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _checked_exit_codes(benchmark, run_one) -> list[int]:
    """Time ``run_one`` in pedantic mode, keeping every exit code; reap stragglers on failure."""
    exit_codes = []
    children_before = {child.pid for child in psutil.Process().children()}

    def one_round():
        exit_codes.append(run_one())

    try:
        benchmark.pedantic(one_round, rounds=FORK_ROUNDS, warmup_rounds=5, iterations=1)
    finally:
        for child in psutil.Process().children():
            if child.pid not in children_before:
                reap(child.pid, timeout_s=1.0)
    return exit_codes


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork needs a POSIX system")
def test_create_process_fork(benchmark):
    label(
        benchmark,
        unit="process (fork)",
        kind="process",
        operation="create",
        ops_per_call=1,
        what_one_op_is="fork(); child _exit(0); parent waitpid()",
        **_parent_memory(),
    )
    exit_codes = _checked_exit_codes(benchmark, fork_and_wait)
    assert exit_codes and set(exit_codes) == {0}, f"a forked child failed: {set(exit_codes)}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork needs a POSIX system")
@pytest.mark.skipif(TRUE_PROGRAM is None, reason="no `true` program on PATH to exec")
def test_create_process_fork_exec(benchmark):
    label(
        benchmark,
        unit="process (fork+exec)",
        kind="process",
        operation="create",
        ops_per_call=1,
        what_one_op_is=f"fork(); child execv({TRUE_PROGRAM}); parent waitpid()",
        **_parent_memory(),
    )
    exit_codes = _checked_exit_codes(benchmark, fork_exec_and_wait)
    assert exit_codes and set(exit_codes) == {0}, (
        f"exec of {TRUE_PROGRAM} failed: {set(exit_codes)}"
    )


@pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="os.posix_spawn needs a POSIX system")
@pytest.mark.skipif(TRUE_PROGRAM is None, reason="no `true` program on PATH to spawn")
def test_create_process_posix_spawn(benchmark):
    label(
        benchmark,
        unit="process (posix_spawn)",
        kind="process",
        operation="create",
        ops_per_call=1,
        what_one_op_is=f"posix_spawn({TRUE_PROGRAM}); parent waitpid()",
        **_parent_memory(),
    )
    exit_codes = _checked_exit_codes(benchmark, posix_spawn_and_wait)
    assert exit_codes and set(exit_codes) == {0}, (
        f"spawn of {TRUE_PROGRAM} failed: {set(exit_codes)}"
    )


def test_create_process_multiprocessing_spawn(benchmark):
    import multiprocessing
    from multiprocessing import resource_tracker

    label(
        benchmark,
        unit="process (mp spawn)",
        kind="process",
        operation="create",
        ops_per_call=1,
        what_one_op_is="multiprocessing spawn Process(target=os.getpid): start(); join()",
    )
    spawn = multiprocessing.get_context("spawn")
    # Starting a spawn Process also starts multiprocessing's resource tracker (one helper process
    # per parent). We stop it afterwards if we were the ones who started it.
    tracker_was_running = resource_tracker._resource_tracker._pid is not None
    processes = []

    def spawn_and_join() -> int:
        # os.getpid is a builtin, so the child unpickles it without importing any of our code:
        # what we time is the interpreter starting, running nothing, and exiting.
        process = spawn.Process(target=os.getpid)
        processes.append(process)
        process.start()
        process.join()
        return process.exitcode

    try:
        benchmark.pedantic(spawn_and_join, rounds=SPAWN_INTERPRETER_ROUNDS, warmup_rounds=1)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
            process.join()
        if not tracker_was_running:
            resource_tracker._resource_tracker._stop()
    exit_codes = {process.exitcode for process in processes}
    assert processes and exit_codes == {0}, f"a spawned interpreter failed: {exit_codes}"


# --- subinterpreters ------------------------------------------------------------------------

# A subinterpreter takes milliseconds to create: a few per call keep the pipe's round trip to the
# child (tens of µs) a rounding error; a fixed number of rounds keeps `make micro` short.
SUBINTERPRETER_BATCH = 5
SUBINTERPRETER_ROUNDS = 10


def test_create_subinterpreter(benchmark):
    from bench.micro.common import newer_python
    from bench.micro.subinterp import Child

    interp = newer_python()
    label(
        benchmark,
        unit="subinterpreter",
        kind="subinterpreter",
        operation="create",
        ops_per_call=SUBINTERPRETER_BATCH,
        what_one_op_is="interpreters.create(); exec('pass'); close(), in a child of Python "
        f"{interp.label}",
        python=interp.label,
        note=f"Python {interp.label}",
    )
    child_ns = []
    with Child(interp.python) as child:
        benchmark.pedantic(
            lambda: child_ns.append(child.batch("subinterpreter", SUBINTERPRETER_BATCH)),
            rounds=SUBINTERPRETER_ROUNDS,
            warmup_rounds=1,
        )
    assert child_ns and all(ns > 0 for ns in child_ns), child_ns
    # what the child itself measured, without the pipe: the report's figure should be within a
    # few percent of it
    benchmark.extra_info["child_ns_per_op"] = sorted(child_ns)[len(child_ns) // 2] / SUBINTERPRETER_BATCH


# --- threads ---------------------------------------------------------------------------------


def test_create_thread(benchmark):
    label(
        benchmark,
        unit="thread",
        kind="thread",
        operation="create",
        ops_per_call=1,
        what_one_op_is="threading.Thread(target=...).start(); join()",
    )
    threads_started = []
    bodies_run = []

    def start_and_join() -> None:
        thread = threading.Thread(target=bodies_run.append, args=(1,))
        threads_started.append(thread)
        thread.start()
        thread.join()

    try:
        benchmark(start_and_join)
    finally:
        for thread in threads_started:
            thread.join(timeout=5)
    assert threads_started and len(bodies_run) == len(threads_started)
    assert not any(thread.is_alive() for thread in threads_started)


# --- greenlets and generators ----------------------------------------------------------------


def _returns_one() -> int:
    return 1


def test_create_greenlet(benchmark):
    from greenlet import greenlet

    label(
        benchmark,
        unit="greenlet",
        kind="greenlet",
        operation="create",
        ops_per_call=CREATIONS_PER_CALL,
        what_one_op_is="greenlet(fn).switch() until fn returns",
        note=GREENLET_FRAME_CHUNK_NOTE,
    )

    def create_and_run(count: int) -> int:
        finished = 0
        for _ in range(count):
            # switch() starts fn on its own slice of C stack; fn's return value comes back here
            # when it finishes and the greenlet dies.
            finished += greenlet(_returns_one).switch()
        return finished

    assert benchmark(create_and_run, CREATIONS_PER_CALL) == CREATIONS_PER_CALL


def test_create_gevent_greenlet(benchmark):
    gevent = pytest.importorskip("gevent")

    label(
        benchmark,
        unit="greenlet (gevent)",
        kind="greenlet",
        operation="create",
        ops_per_call=CREATIONS_PER_CALL,
        what_one_op_is="gevent.spawn(fn), run by the hub; joinall()",
        note=GREENLET_FRAME_CHUNK_NOTE,
    )

    def spawn_and_join(count: int) -> int:
        greenlets = [gevent.spawn(_returns_one) for _ in range(count)]
        gevent.joinall(greenlets, raise_error=True)
        return sum(g.value for g in greenlets)

    assert benchmark(spawn_and_join, CREATIONS_PER_CALL) == CREATIONS_PER_CALL


def _yields_one():
    yield 1


def test_create_generator(benchmark):
    label(
        benchmark,
        unit="generator",
        kind="generator",
        operation="create",
        ops_per_call=CREATIONS_PER_CALL,
        what_one_op_is="gen(); next() to its yield; next() to StopIteration",
    )

    def create_and_run(count: int) -> int:
        finished = 0
        for _ in range(count):
            for value in _yields_one():  # the for loop catches the StopIteration at the end
                finished += value
        return finished

    assert benchmark(create_and_run, CREATIONS_PER_CALL) == CREATIONS_PER_CALL


# --- asyncio and trio tasks ------------------------------------------------------------------


async def _async_returns_one() -> int:
    return 1


async def _create_and_await_tasks(count: int) -> int:
    tasks = [asyncio.create_task(_async_returns_one()) for _ in range(count)]
    finished = 0
    for task in tasks:
        finished += await task
    return finished


def test_create_asyncio_task(benchmark, asyncio_loop):
    uvloop = "uvloop" in type(asyncio_loop).__module__
    label(
        benchmark,
        unit="asyncio task (uvloop)" if uvloop else "asyncio task",
        kind="asyncio",
        operation="create",
        ops_per_call=CREATIONS_PER_CALL,
        what_one_op_is="create_task(coro()); the loop steps it; await it",
    )
    # A new coroutine object per call: a coroutine can be run only once.
    finished = benchmark(
        lambda: asyncio_loop.run_until_complete(_create_and_await_tasks(CREATIONS_PER_CALL))
    )
    assert finished == CREATIONS_PER_CALL


def test_create_trio_task(benchmark):
    trio = pytest.importorskip("trio")

    label(
        benchmark,
        unit="trio task",
        kind="trio",
        operation="create",
        ops_per_call=CREATIONS_PER_CALL,
        what_one_op_is="nursery.start_soon(fn); nursery exit waits for it",
        note=f"incl. one trio.run() per {CREATIONS_PER_CALL} tasks",
    )

    async def start_and_wait(count: int) -> int:
        finished = []

        async def body() -> None:
            finished.append(1)

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(body)
        return len(finished)

    assert benchmark(trio.run, start_and_wait, CREATIONS_PER_CALL) == CREATIONS_PER_CALL
