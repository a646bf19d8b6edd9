"""Lesson 05, threads: shared memory, a real race and its lock, and what the GIL allows in parallel.

What it shows:
- threads of one process share its memory: a value one thread stores, another reads. A forked
  child has a copy instead, and its stores stay its own;
- a lost-update race on a shared counter, made to happen: each thread reads the counter, calls a
  function, writes the result back. A thread switch between the read and the write lets two threads
  read the same value, and one increment is lost. sys.setswitchinterval(1e-6) makes CPython hand
  the GIL over every microsecond instead of every 5 ms, so switches land there often. A Lock around
  the read-modify-write loses nothing;
- the GIL (global interpreter lock): one thread at a time runs Python bytecode, so CPU-bound Python
  in threads takes as long as running it serially, while processes (one GIL each) run in parallel.
  C code that releases the GIL (hashlib on large buffers) runs in parallel in threads, and so does
  waiting: a thread blocked in recv() or sleep() holds no GIL;
- whether this interpreter is a free-threaded build (PEP 703, Python 3.13+ `python3.13t`), where the
  GIL can be off and the CPU-bound threads would scale;
- deadlock: two threads that take two locks in opposite orders each hold one and wait for the other
  (bounded here by a timeout), where the same order never waits;
- a condition variable (threading.Condition): a consumer that sleeps until the producer notifies it,
  against one that polls, in wake-up time and CPU time;
- memory visibility, in C (lessons/native/05_visibility.c): a flag the compiler reads once and a
  store the CPU's store buffer holds back, and what an atomic load and a fence change.

The OS mechanism: threads are kernel tasks sharing one address space (pthreads(7), clone(2) with
CLONE_VM | CLONE_THREAD, lesson 06); a lock that is taken blocks its waiter on a futex(2). The GIL
is CPython's own mutex + condition variable: a thread that waits for it longer than the switch
interval (sys.getswitchinterval) asks for it, and the holder hands it over at its next eval-breaker
check (function calls, backward jumps), so a long C call that keeps the GIL holds everyone up.

Runs on any OS with threads and fork (the process part uses fork).

    python -m lessons.05_threads [--quick] [--json PATH]
"""

from __future__ import annotations

import hashlib
import os
import socket
import statistics
import subprocess
import sys
import sysconfig
import threading
import time

from lessons import procfs
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.parallel import (best_of, elsewhere, free_threaded_python, in_threads,
                              newer_python, serially, shown_path)
from lessons.spawn import cpu_work, in_processes

N_THREADS = 4
RACE_SWITCH_INTERVAL_S = 1e-6  # CPython's default is 0.005 (5 ms)
IO_WAIT_S = 0.1
IO_TASKS = 8
HASH_BUFFER_BYTES = 4 * 1024 * 1024  # hashlib releases the GIL for buffers over 2047 bytes

counter = 0  # the shared counter of the race
counter_lock = threading.Lock()


# -- shared memory ---------------------------------------------------------------------------------------


def value_after_thread_sets_it() -> int:
    box = {"value": 0}
    thread = threading.Thread(target=box.__setitem__, args=("value", 42))  # same dict, same memory
    thread.start()
    thread.join()
    return box["value"]


def value_after_child_sets_it() -> int:
    box = {"value": 0}
    pid = os.fork()
    if pid == 0:
        box["value"] = 42  # the child's own copy of the dict (copy-on-write, lesson 03)
        os._exit(0)
    os.waitpid(pid, 0)
    return box["value"]


# -- the race ------------------------------------------------------------------------------------------------


def add_one(value: int) -> int:
    return value + 1


def increment_unsafely(times: int) -> None:
    global counter
    for _ in range(times):
        value = counter  # read
        value = add_one(value)  # a call: CPython may hand the GIL to another thread here...
        counter = value  # ...which may have written a newer value that this overwrites


def increment_with_lock(times: int) -> None:
    global counter
    for _ in range(times):
        with counter_lock:  # only one thread at a time between read and write
            value = counter
            value = add_one(value)
            counter = value


def increment_in_place(times: int) -> None:
    global counter
    for _ in range(times):
        counter += 1  # one line, but still a read, an add and a write


def run_race(increment, times: int) -> tuple[int, float]:
    """N_THREADS threads each call increment(times). Returns (increments lost, seconds)."""
    global counter
    counter = 0
    threads = [threading.Thread(target=increment, args=(times,)) for _ in range(N_THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return N_THREADS * times - counter, time.perf_counter() - t0


# -- the GIL ----------------------------------------------------------------------------------------------------


def hash_work(rounds: int) -> None:
    data = bytes(HASH_BUFFER_BYTES)
    for _ in range(rounds):
        hashlib.sha256(data).digest()  # C code, GIL released while it hashes


def io_work(_: int) -> None:
    """Block in the kernel waiting for data that does not come, for IO_WAIT_S."""
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(IO_WAIT_S)
        try:
            a.recv(1)  # the thread sleeps in poll(); the GIL is released
        except TimeoutError:
            pass


def gil_state() -> tuple[str, str]:
    """(free-threaded build?, GIL enabled now?)"""
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    if hasattr(sys, "_is_gil_enabled"):  # Python 3.13+
        enabled = "yes" if sys._is_gil_enabled() else "no"
    else:
        enabled = f"yes (Python {sys.version_info.major}.{sys.version_info.minor} always has one)"
    return ("yes" if free_threaded else "no"), enabled


# -- the same work under other interpreters ------------------------------------------------------------

# What each other interpreter runs, and the labels of its figures: with a GIL per subinterpreter (a
# CPython 3.12+), every way the lesson compares; free-threaded (3.13t+), one thread and threads.
NEWER_WAYS = ("serial", "threads", "processes", "subinterpreters")
FREE_THREADED_WAYS = ("serial", "threads")
NEWER_LABELS = {"serial": "3.12+: cpu-bound, one thread", "threads": "3.12+: cpu-bound, threads",
                "processes": "3.12+: cpu-bound, processes",
                "subinterpreters": "3.12+: cpu-bound, subinterpreters"}
FREE_THREADED_LABELS = {"serial": "free-threaded: cpu-bound, one thread",
                        "threads": "free-threaded: cpu-bound, threads"}
SPEEDUP_LABELS = {"threads": "speedup, threads (3.12+)", "processes": "speedup, processes (3.12+)",
                  "subinterpreters": "speedup, subinterpreters (3.12+)",
                  "free-threaded": "speedup, free-threaded threads"}


def interpreters_section(lesson: Lesson, n: int, iterations: int, repeats: int) -> dict:
    """The CPU-bound work again, in a child of a CPython 3.12+ (a GIL per subinterpreter) and of a
    free-threaded build, each way of one child interleaved with its own one-thread run; skipped,
    with the command that installs one, where the machine has no such interpreter."""
    lesson.section(f"the same work under other interpreters: {n} subinterpreters, each with its own "
                   f"GIL (3.12+), and {n} threads with no GIL (free-threaded) (best of {repeats})")
    out: dict = {}
    python, why = newer_python()
    got = None
    if python:
        try:
            got = elsewhere(python, list(NEWER_WAYS), iterations, n, repeats)
        except RuntimeError as exc:
            why = str(exc)
    if got:
        lesson.measure("3.12+: python", f"{got['version']} ({shown_path(python)})")
        for way, label in NEWER_LABELS.items():
            lesson.measure(label, got["best_s"][way], "s")
        for way in ("threads", "processes", "subinterpreters"):
            out[way] = lesson.measure(SPEEDUP_LABELS[way], got["best_s"]["serial"] / got["best_s"][way], "x")
        out["newer"] = got["version"]
    else:
        lesson.skip("3.12+: python", why)
        for label in (*NEWER_LABELS.values(),
                      *(SPEEDUP_LABELS[w] for w in ("threads", "processes", "subinterpreters"))):
            lesson.skip(label, "no CPython 3.12+: see '3.12+: python'")
    python, why = free_threaded_python()
    got = None
    if python:
        try:
            got = elsewhere(python, list(FREE_THREADED_WAYS), iterations, n, repeats)
            if got["gil"]:  # the GIL came back (PYTHON_GIL=1, or -X gil=1): not what is measured
                why, got = f"{python} ran with its GIL enabled (PYTHON_GIL=1 in the environment?)", None
        except RuntimeError as exc:
            why = str(exc)
    if got:
        lesson.measure("free-threaded: python", f"{got['version']}t ({shown_path(python)})")
        for way, label in FREE_THREADED_LABELS.items():
            lesson.measure(label, got["best_s"][way], "s")
        out["free-threaded"] = lesson.measure(
            SPEEDUP_LABELS["free-threaded"], got["best_s"]["serial"] / got["best_s"]["threads"], "x")
        out["free_threaded_version"] = got["version"] + "t"
    else:  # the reason and its fix once; the figures that needed it point there
        lesson.skip("free-threaded: python", why)
        lesson.skip_all((*FREE_THREADED_LABELS.values(), SPEEDUP_LABELS["free-threaded"]), "no free-threaded CPython: see 'free-threaded: python'")
    return out


# How far a reader's figure may be from the recorded one before it is named (lessons.common): how many
# updates a race loses, and how long the lock makes it, follow the scheduler and the load.
TOLERANCE = {"lost updates, read-call-write without a lock": None, "time with the lock": None,
             "3.12+: python": None, "free-threaded: python": None}


# -- deadlock -------------------------------------------------------------------------------------------

DEADLOCK_WAIT_S = 0.3  # how long each thread waits for its second lock before it gives up
ORDERED_ROUNDS = 20_000
DEADLOCK_LABELS = ("opposite order: threads stuck, each waiting for the lock the other holds",
                   "opposite order: the waiting threads' state (/proc/self/task)",
                   f"same order: rounds of both locks, {ORDERED_ROUNDS:,} per thread, waits that gave up")


def take_both(first: threading.Lock, second: threading.Lock, met: threading.Barrier, got: list) -> None:
    """Take `first`, wait until the other thread holds its own first lock, then try `second`."""
    with first:
        met.wait()  # both now hold one lock each
        if second.acquire(timeout=DEADLOCK_WAIT_S):  # a deadlock waits forever; this one gives up
            got.append(threading.get_native_id())  # (only once the other gave up and let go)
            second.release()


def deadlock() -> dict:
    """Two threads, two locks, opposite orders; then the same two threads in one order."""
    a, b = threading.Lock(), threading.Lock()
    met, got = threading.Barrier(2), []
    threads = [threading.Thread(target=take_both, args=(a, b, met, got)),
               threading.Thread(target=take_both, args=(b, a, met, got))]
    for t in threads:
        t.start()
    time.sleep(DEADLOCK_WAIT_S / 2)  # both are waiting now: read their state as the kernel sees it
    stuck = 2 - len(got)
    waiting = (sorted({procfs.state("self", t.native_id) or "gone" for t in threads})
               if not linux_only("/proc/self/task") else ["not read (no /proc here)"])
    for t in threads:
        t.join()
    gave_up = []

    def in_order() -> None:
        for _ in range(ORDERED_ROUNDS):
            with a:
                if b.acquire(timeout=DEADLOCK_WAIT_S):
                    b.release()
                else:
                    gave_up.append(1)

    threads = [threading.Thread(target=in_order) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"opposite": stuck, "waiting": ", ".join(waiting), "same_order": len(gave_up)}


# -- condition variables ------------------------------------------------------------------------------

ITEMS, ITEM_EVERY_S, POLL_S = 20, 0.01, 0.001


def consume(wait_for_item) -> dict:
    """A producer puts ITEMS items, one every ITEM_EVERY_S, noting when; a consumer thread waits for
    each with `wait_for_item(box)`. The consumer's wake-up delays (µs) and its CPU time (ms)."""
    box = {"items": [], "cond": threading.Condition(), "delays": []}

    def consumer() -> None:
        cpu0 = time.thread_time()
        for _ in range(ITEMS):
            put_at = wait_for_item(box)
            box["delays"].append((time.perf_counter() - put_at) * 1e6)
        box["cpu_ms"] = (time.thread_time() - cpu0) * 1e3

    thread = threading.Thread(target=consumer)
    thread.start()
    for _ in range(ITEMS):
        time.sleep(ITEM_EVERY_S)
        with box["cond"]:
            box["items"].append(time.perf_counter())
            box["cond"].notify()  # wakes the waiting consumer, if it is waiting on the condition
    thread.join()
    return {"delay_us": statistics.median(box["delays"]), "cpu_ms": box["cpu_ms"]}


def by_condition(box) -> float:
    with box["cond"]:
        while not box["items"]:  # the predicate, checked again after every wake-up
            box["cond"].wait()  # releases the lock and sleeps; notify() wakes it with the lock back
        return box["items"].pop(0)


def by_polling(box) -> float:
    while True:
        with box["cond"]:
            if box["items"]:
                return box["items"].pop(0)
        time.sleep(POLL_S)  # look again in 1 ms


# -- memory visibility, in C -----------------------------------------------------------------------------

VISIBILITY_PROGRAM = "lessons/native/05_visibility.c"
VISIBILITY_LABELS = ("a plain int flag: the spinner saw the store after", "an atomic flag: the spinner saw the store after",
                     "store buffering: rounds where both loads saw 0, relaxed",
                     "store buffering: rounds where both loads saw 0, with a fence")


def visibility(rounds: int, pair: list[int]) -> dict:
    """05_visibility flag, then sb on two CPUs: what its lines say (lessons/native/05_visibility.c)."""
    from servers.build import build
    program = str(build(VISIBILITY_PROGRAM, flags=("-pthread",)))
    out = {}
    for args in (["flag", "plain", "10"], ["flag", "atomic", "10"], ["sb", str(rounds), str(pair[0]), str(pair[1])]):
        done = subprocess.run([program, *args], capture_output=True, text=True, timeout=60, check=True)
        out.update({line.split()[0]: float(line.split()[1]) for line in done.stdout.splitlines() if line.strip()})
    return out


# -- Pictures, from the recorded run (lessons/figures.py) ---------------------------------------------

SPEEDUPS = (("CPU-bound Python,\nthreads", "speedup, threads"),
            ("CPU-bound Python,\nprocesses", "speedup, processes"),
            ("hashing (GIL released),\nthreads", "speedup, hashing in threads"),
            ("blocked in recv(),\nthreads", "speedup, i/o-bound threads"))


def draw_speedups(record: dict, fig) -> None:
    """What running the tasks side by side bought over running them one after another."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})
    bars = [(name, m[label]["value"]) for name, label in SPEEDUPS if label in m]
    if not bars:
        return not_measured(fig, "this run recorded no speedups")
    ax = fig.subplots()
    colours = [COLOURS[1], COLOURS[2], COLOURS[0], COLOURS[3]][:len(bars)]
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color=colours)
    for x, (_, value) in enumerate(bars):
        ax.text(x, value * 1.03, f"{value:.2f}x", ha="center", va="bottom", zorder=3,  # above any line
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    ax.axhline(1, color=COLOURS[7], linewidth=1, label="1x: no faster than one after another")
    tasks = record.get("series", {}).get("tasks")
    if tasks:  # named in the legend, out of the way of the bars' own figures
        ax.axhline(tasks, color=COLOURS[7], linestyle="--", linewidth=1,
                   label=f"{tasks}x: {tasks} tasks on {tasks} free cores, perfectly parallel")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(0.5, max(b[1] for b in bars) * 1.8)
    ax.set_ylabel("speedup over running them serially (log scale)")
    ax.set_title("What running the tasks side by side bought, by kind of work (the GIL in CPython)")
    ax.grid(axis="x", visible=False)


def draw_interpreters(record: dict, fig) -> None:
    """The CPU-bound work's speed-up over one thread, each way, under each interpreter."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})

    def version(label: str, fallback: str) -> str:
        return str(m[label]["value"]).split()[0] if label in m else fallback
    here = record.get("machine", {}).get("python", "3.11")
    groups = [(f"Python {here}\n(one GIL)", [("threads", "speedup, threads"), ("processes", "speedup, processes")]),
              (f"Python {version('3.12+: python', '3.12+')}\n(a GIL per interpreter)",
               [("threads", SPEEDUP_LABELS["threads"]), ("processes", SPEEDUP_LABELS["processes"]),
                ("subinterpreters", SPEEDUP_LABELS["subinterpreters"])]),
              (f"Python {version('free-threaded: python', '3.13t+')}\n(no GIL)",
               [("threads", SPEEDUP_LABELS["free-threaded"])])]
    colours = {"threads": COLOURS[1], "processes": COLOURS[2], "subinterpreters": COLOURS[0]}
    if not any(label in m for _, bars in groups for _, label in bars):
        return not_measured(fig, "this run recorded no speed-ups")
    fig.set_size_inches(8.0, 4.6)
    ax = fig.subplots()
    x, ticks, names, drawn = 0.0, [], [], set()
    for name, bars in groups:
        start = x
        for way, label in bars:
            if label in m:
                value = m[label]["value"]
                ax.bar(x, value, color=colours[way], label=None if way in drawn else way)
                drawn.add(way)
                ax.text(x, value - 0.04, f"{value:.2f}x", ha="center", va="top", fontsize=8,
                        color="white", fontweight="bold")  # inside the bar: clear of the lines
            else:
                ax.text(x, 0.05, "not\nmeasured", ha="center", va="bottom", fontsize=7, color=COLOURS[7])
            x += 1
        ticks.append((start + x - 1) / 2)
        names.append(name)
        x += 0.8
    tasks = record.get("series", {}).get("tasks")
    ax.axhline(1, color=COLOURS[7], linewidth=1, label="1x: no faster than one thread")
    if tasks:
        ax.axhline(tasks, color=COLOURS[7], linestyle="--", linewidth=1,
                   label=f"{tasks}x: {tasks} tasks on {tasks} free cores")
    ax.set_xticks(ticks, names, fontsize=8)
    ax.set_ylim(0, max(tasks or 2, *(m[label]["value"] for _, bars in groups for _, label in bars
                                     if label in m)) * 1.3)
    ax.set_ylabel("speed-up over one thread")
    ax.legend(loc="upper left", fontsize=8, ncols=2)
    ax.set_title("The same CPU-bound Python, in parallel, under each interpreter")
    ax.grid(axis="x", visible=False)


PICTURES = {"speedups": draw_speedups, "interpreters": draw_interpreters}

# The page's comparative sentences, checked against the recorded run (tests/test_claims.py). What
# processes and hashing threads gain needs free cores, so the page words those from the data (cog).
CLAIMS = [
    Claim("The thread's store was seen by the main thread; the forked child's store\n  was not",
          lambda m: m["value seen after a thread stored 42"] == 42
          and m["value seen after a forked child stored 42"] == 0,
          "the thread's 42 is seen, the child's is not"),
    Claim("a\n  large share of the increments vanished",
          lambda m: m["lost updates, read-call-write without a lock"] > 0.05 * m["increments made"],
          "over 5 % of the increments were lost without a lock"),
    Claim("With the lock,\n  none.",
          lambda m: m["lost updates, read-call-write with a lock"] == 0,
          "no increment lost with the lock"),
    Claim("The lock is not free",
          lambda m: m["time with the lock"] > m["time without the lock"],
          "the run with the lock took longer than the one without"),
    Claim("the threads gave no real speedup",
          lambda m: m["speedup, threads"] < 1.25,
          "CPU-bound threads under 1.25x the serial speed"),
    Claim(f"{IO_TASKS}\n  waits of {IO_WAIT_S * 1e3:.0f} ms took little more than one",
          lambda m: m["i/o-bound, threads"] < 2 * IO_WAIT_S,
          "the overlapped waits took under two single waits"),
    Claim("With the locks taken in opposite orders both threads were stuck",
          lambda m: m[DEADLOCK_LABELS[0]] == 2 and m[DEADLOCK_LABELS[1]].startswith("S"),
          "both threads timed out waiting for the other's lock, asleep (S)"),
    Claim("took both locks tens of thousands of times and no wait gave up",
          lambda m: m[DEADLOCK_LABELS[2]] == 0, "no wait gave up with the locks in one order"),
    Claim("woke sooner after each item\n  than the one polling every millisecond, and used less CPU",
          lambda m: m["condition variable: wake-up after the item was put (median)"]
          < m[f"polling every {POLL_S * 1e3:g} ms: wake-up after the item was put (median)"]
          and m["condition variable: the consumer's cpu time"] < m[f"polling every {POLL_S * 1e3:g} ms: the consumer's cpu time"],
          "the condition variable's wake-up and CPU time both below polling's"),
    Claim("The spinner on a plain `int` never saw the store",
          lambda m: m[VISIBILITY_LABELS[0]].startswith("never"), "the plain-int spinner never left its loop"),
    Claim("On an atomic it saw the store within microseconds",
          lambda m: float(m[VISIBILITY_LABELS[1]].split()[0].replace(",", "")) < 1000,
          "the atomic spinner left its loop within 1 ms of the store"),
    Claim("With a fence, never", lambda m: m[VISIBILITY_LABELS[3]] == 0, "no round with both loads 0 once fenced"),
    Claim.unmeasured("each core puts its stores in a *store buffer* and carries on",
                     "the processors' memory-ordering rules (Intel SDM vol. 3, 9.2); the test below "
                     "catches it where the two threads run at once"),
    Claim("CPU-bound Python in several threads takes as long as running it one after another",
          lambda m: m["speedup, threads"] < 1.25, "CPU-bound threads under 1.25x the serial speed"),
    Claim("Hashing large buffers in threads can run faster than serially, when\n  there are free cores",
          lambda m: m["speedup, hashing in threads"] > 1.3, "hashing in threads over 1.3x serial on free cores"),
    Claim("Under Python 3.12+ the threads still gave no\n  real speedup",
          lambda m: m[SPEEDUP_LABELS["threads"]] < 1.25, "CPU-bound threads under 3.12+ under 1.25x one thread"),
    Claim("The\n  subinterpreters sped the work up as processes did",
          lambda m: 0.75 < m[SPEEDUP_LABELS["subinterpreters"]] / m[SPEEDUP_LABELS["processes"]] < 1.33
          and m[SPEEDUP_LABELS["subinterpreters"]] > 1.25 * m[SPEEDUP_LABELS["threads"]],
          "under 3.12+, subinterpreters' speed-up within a third of processes', and over 1.25x threads'"),
    Claim.unmeasured("taken\naround the read-modify-write", "a figure of speech, not a figure"),
    Claim.unmeasured("races like the one here become *more* likely, not less",
                     "the free-threading HOWTO; this interpreter has the GIL (the last lines say)"),
    Claim.unmeasured("`make lesson N=05 ARGS=--quick` a few times", "the reader's own exercise, not recorded"),
]


# -- The lesson ---------------------------------------------------------------------------------------------------


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("05", "Threads", args)
    quick = lesson.quick

    lesson.section("shared memory: a thread's store vs a forked child's store")
    lesson.measure("value seen after a thread stored 42", value_after_thread_sets_it())
    lesson.measure("value seen after a forked child stored 42", value_after_child_sets_it())

    times = 50_000 if quick else 200_000
    lesson.section(f"a race: {N_THREADS} threads x {times:,} increments of one counter, "
                   f"switch interval {RACE_SWITCH_INTERVAL_S * 1e6:g} µs")
    default_interval = sys.getswitchinterval()
    sys.setswitchinterval(RACE_SWITCH_INTERVAL_S)
    try:
        lost_unsafe, t_unsafe = run_race(increment_unsafely, times)
        lost_locked, t_locked = run_race(increment_with_lock, times)
        lost_in_place, _ = run_race(increment_in_place, times)
    finally:
        sys.setswitchinterval(default_interval)
    total = lesson.measure("increments made", N_THREADS * times)
    lesson.measure("lost updates, read-call-write without a lock", lost_unsafe)
    lesson.measure("lost updates, read-call-write with a lock", lost_locked)
    lesson.measure("lost updates, counter += 1 without a lock", lost_in_place)
    lesson.measure("time without the lock", t_unsafe * 1e3, "ms")
    lesson.measure("time with the lock", t_locked * 1e3, "ms")

    lesson.section(f"deadlock: two threads, two locks; each waits {DEADLOCK_WAIT_S:g} s for its second lock")
    locked = deadlock()
    lesson.measure(DEADLOCK_LABELS[0], locked["opposite"], "of 2")
    lesson.measure(DEADLOCK_LABELS[1], locked["waiting"])
    lesson.measure(DEADLOCK_LABELS[2], locked["same_order"])

    n = max(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 2)
    iterations = 2_000_000 if quick else 6_000_000
    repeats = 2 if quick else 5
    lesson.section(f"CPU-bound Python: {n} tasks of {iterations:,} iterations (best of {repeats}, interleaved)")
    cpu = best_of(repeats, {"serial": serially, "threads": in_threads, "processes": in_processes},
                  cpu_work, iterations, n)
    for how, seconds in cpu.items():
        lesson.measure(f"cpu-bound, {how}", seconds, "s")
    lesson.measure("speedup, threads", cpu["serial"] / cpu["threads"], "x")
    lesson.measure("speedup, processes", cpu["serial"] / cpu["processes"], "x")
    lesson.series("tasks", n)

    other = interpreters_section(lesson, n, iterations, repeats)

    rounds = 8 if quick else 24
    lesson.section(f"C code that releases the GIL: {n} tasks hashing {HASH_BUFFER_BYTES >> 20} MiB x {rounds} "
                   f"(best of {repeats}, interleaved)")
    hashing = best_of(repeats, {"serial": serially, "threads": in_threads}, hash_work, rounds, n)
    hash_serial = lesson.measure("hashing, serial", hashing["serial"], "s")
    hash_threads = lesson.measure("hashing, threads", hashing["threads"], "s")
    lesson.measure("speedup, hashing in threads", hash_serial / hash_threads, "x")

    lesson.section(f"waiting: {IO_TASKS} tasks each blocked {IO_WAIT_S * 1e3:g} ms in recv()")
    io_serial = lesson.measure("i/o-bound, serial", serially(io_work, 0, IO_TASKS), "s")
    io_threads = lesson.measure("i/o-bound, threads", in_threads(io_work, 0, IO_TASKS), "s")
    lesson.measure("speedup, i/o-bound threads", io_serial / io_threads, "x")

    lesson.section(f"a condition variable: a consumer waits for {ITEMS} items, one every {ITEM_EVERY_S * 1e3:g} ms")
    cond, poll = consume(by_condition), consume(by_polling)
    lesson.measure("condition variable: wake-up after the item was put (median)", cond["delay_us"], "µs")
    lesson.measure("condition variable: the consumer's cpu time", cond["cpu_ms"], "ms")
    lesson.measure(f"polling every {POLL_S * 1e3:g} ms: wake-up after the item was put (median)", poll["delay_us"], "µs")
    lesson.measure(f"polling every {POLL_S * 1e3:g} ms: the consumer's cpu time", poll["cpu_ms"], "ms")

    rounds = 200_000 if quick else 1_000_000
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    lesson.section(f"memory visibility, in C: a flag, then the store-buffering test ({rounds:,} rounds on two CPUs)")
    why_not = linux_only("pinning threads in lessons/native/05_visibility.c") or (
        None if len(allowed) >= 2 else "needs two CPUs: the two threads must run at the same moment")
    seen = {}
    if not why_not:
        from servers.build import Unavailable
        try:
            seen = visibility(rounds, allowed)
        except (Unavailable, subprocess.SubprocessError, OSError, ValueError, IndexError) as e:
            why_not = str(e).splitlines()[0]
    if why_not:
        lesson.skip_all(VISIBILITY_LABELS, why_not)
    else:
        for label, key in zip(VISIBILITY_LABELS[:2], ("plain_seen_us", "atomic_seen_us"), strict=True):
            lesson.measure(label, "never (within 200 ms)" if seen[key] < 0 else f"{seen[key]:,.1f} µs")
        lesson.measure(VISIBILITY_LABELS[2], int(seen["relaxed_both_zero"]), f"of {rounds:,}")
        lesson.measure(VISIBILITY_LABELS[3], int(seen["fenced_both_zero"]), f"of {rounds:,}")

    lesson.section("this interpreter")
    free_threaded, gil_enabled = gil_state()
    lesson.measure("free-threaded build", free_threaded)
    lesson.measure("gil enabled", gil_enabled)

    # -- what to notice, computed
    lesson.notice(f"{lost_unsafe:,} of {total:,} increments ({100 * lost_unsafe / total:.0f}%) were lost "
                  f"without a lock, {lost_locked:,} with it")
    lesson.notice(f"the lock made the run {t_locked / t_unsafe:.1f}x as long"
                  + (": with a 1 µs switch interval a thread often loses the GIL while it holds the "
                     "lock, and the others, woken to run, find the lock taken and sleep again"
                     if t_locked > 2 * t_unsafe else ""))
    if lost_in_place == 0:
        lesson.notice("`counter += 1` lost nothing here: this CPython only switches threads at calls and "
                      "loop jumps, never inside that line. That is an accident of the interpreter, not a "
                      "promise: other versions, and free-threaded builds, can lose those updates too")
    else:
        lesson.notice(f"even `counter += 1` lost {lost_in_place:,} updates: one line is still a read, "
                      "an add and a write")
    lesson.notice(f"with the locks taken in opposite orders, {locked['opposite']} of 2 threads were stuck "
                  f"{DEADLOCK_WAIT_S / 2:g} s on, each holding the lock the other waited for ({locked['waiting']}), "
                  f"until the first gave up at {DEADLOCK_WAIT_S:g} s; in one order, {locked['same_order']} of "
                  f"{2 * ORDERED_ROUNDS:,} waits gave up")
    lesson.notice(f"a consumer asleep on a condition variable woke {cond['delay_us']:,.0f} µs after the item was "
                  f"put and used {cond['cpu_ms']:.1f} ms of CPU; polling every {POLL_S * 1e3:g} ms it woke "
                  f"{poll['delay_us']:,.0f} µs after and used {poll['cpu_ms']:.1f} ms")
    if seen:
        lesson.notice("in C, a spinner on a plain int saw the store "
                      + ("never: the compiler had read the flag once, before the loop"
                         if seen["plain_seen_us"] < 0 else f"after {seen['plain_seen_us']:,.0f} µs")
                      + f", on an atomic after {seen['atomic_seen_us']:,.1f} µs; in the store-buffering test both "
                      + (f"loads saw 0 in {int(seen['relaxed_both_zero']):,} of {rounds:,} rounds without a fence"
                         if seen["relaxed_both_zero"] else "loads never saw 0 without a fence: the two threads "
                         "never ran the test at the same moment (a virtual machine's vCPUs need not run at once)")
                      + f", in {int(seen['fenced_both_zero'])} with one")
    threads_ratio = cpu["threads"] / cpu["serial"]
    if not gil_enabled.startswith("yes"):
        why = " (no GIL: the threads ran Python in parallel)"
    elif threads_ratio >= 0.9:
        why = " (the GIL: one thread runs Python at a time)"
    else:
        why = (": with the GIL on, threads cannot run Python in parallel, so other programs on this "
               "machine must have slowed the serial run; run the lesson again on an idle machine")
    lesson.notice(f"CPU-bound Python in {n} threads took {threads_ratio:.2g}x the serial time{why}; "
                  f"in {n} processes, {cpu['processes'] / cpu['serial']:.2g}x")
    if "subinterpreters" in other:
        lesson.notice(f"under Python {other['newer']} the same work ran {other['subinterpreters']:.2g}x as fast as "
                      f"one thread in {n} subinterpreters, {other['processes']:.2g}x in {n} processes, "
                      f"{other['threads']:.2g}x in {n} threads: a GIL per interpreter lets them run at once, "
                      "in one process")
    if "free-threaded" in other:
        lesson.notice(f"under the free-threaded Python {other['free_threaded_version']} (no GIL), {n} threads ran "
                      f"it {other['free-threaded']:.2g}x as fast as one thread")
    lesson.notice(f"hashing in threads ran {hash_serial / hash_threads:.2g}x as fast as serially, and "
                  f"{IO_TASKS} blocked waits overlapped to {io_serial / io_threads:.2g}x: a thread in C code "
                  "that released the GIL, or blocked in the kernel, lets the others run")
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
