"""The same CPU-bound work run several ways at once, here or under another interpreter.

    serially(work, arg, n)           n calls of work(arg), one after another, in this thread: wall s
    in_threads(work, arg, n)         n threads of this interpreter, each running work(arg)
    in_subinterpreters(iterations, n)  n subinterpreters, each in a thread of its own, running
                                     lessons.spawn.cpu_work(iterations) (Python 3.12+: each has its
                                     own GIL, PEP 684; created before the clock starts)
    best_of(repeats, runs, work, arg, n)   the shortest run of each way, interleaved
    newer_python()                   a CPython 3.12+ with a GIL, for subinterpreters: (python, why not)
    free_threaded_python()           a free-threaded CPython (3.13t+), base interpreter: (python, why not)
    elsewhere(python, ways, iterations, n, repeats)   best_of in a child of `python`: its answer

Lesson 05 runs under the lab's venv (Python 3.11, one GIL per process). What a GIL per
subinterpreter or no GIL at all does to the same work needs another interpreter: the lesson asks
servers/interpreters.py for one (a 3.12+ and its venv, built at first use; a free-threaded build
needs no venv: the work is the standard library's) and runs this module in a child of it:

    .venv-3.13/bin/python -m lessons.parallel --ways serial,threads,processes,subinterpreters \
        --iterations 6000000 --tasks 2 --repeats 5     # prints one JSON line

The child measures every way of its own interleaved, so each speed-up is a ratio of two runs of one
interpreter taken side by side; the speed-ups of two interpreters compare, their seconds do not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.micro.subinterp import interpreters_module
from lessons.spawn import cpu_work, in_processes

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_S = 300
# How to get a free-threaded CPython (the spellings checked against each tool's documentation and
# trackers: pyenv resolves "3.14t" to its newest 3.14.Nt; uv's request format takes "3.14t").
FREE_THREADED_HINT = ("to get one: `uv python install 3.14t` or `pyenv install 3.14t` (Fedora "
                      "packages python3.13-freethreading, Ubuntu's deadsnakes PPA python3.13-nogil; "
                      "Debian 13 ships none)")


def serially(work, arg, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        work(arg)
    return time.perf_counter() - t0


def started_and_joined(threads: list[threading.Thread]) -> float:
    """Seconds from starting every thread until the last has finished."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def in_threads(work, arg, n: int) -> float:
    return started_and_joined([threading.Thread(target=work, args=(arg,)) for _ in range(n)])


def in_subinterpreters(work, iterations: int, n: int) -> float:
    """n subinterpreters, each running cpu_work(iterations) in a thread of its own. Each
    interpreter has its own GIL (3.12+), its own modules and heap: it imports lessons.spawn for
    itself, and only the number crosses. ``work`` must be cpu_work: it is run by name in there."""
    assert work is cpu_work, "a subinterpreter runs lessons.spawn.cpu_work by name"
    interpreters = interpreters_module()
    workers = []
    try:
        for _ in range(n):  # created and set up before the clock: lesson 06 times creation
            interp = interpreters.create()
            workers.append(interp)
            interp.prepare_main(root=str(ROOT), iterations=iterations)
            interp.exec("import sys; sys.path.insert(0, root); from lessons.spawn import cpu_work")
        return started_and_joined([threading.Thread(target=interp.exec, args=("cpu_work(iterations)",))
                                   for interp in workers])
    finally:
        for interp in workers:
            interp.close()


WAYS = {"serial": serially, "threads": in_threads, "processes": in_processes,
        "subinterpreters": in_subinterpreters}


def best_of(repeats: int, runs: dict, work, arg, n: int) -> dict[str, float]:
    """The shortest of `repeats` runs of each way in `runs` (name -> run), interleaved (A, B, C, A,
    B, C, ...) so that a burst of load from other programs hits every way alike, not just one; the
    shortest, because other programs on the machine can only make a run longer."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], run(work, arg, n))
    return best


# -- another interpreter -------------------------------------------------------------------------


def newer_python() -> tuple[str | None, str]:
    """(the venv python of the newest CPython 3.12+ here, "") or (None, why not and the fix).
    The venv (.venv-3.13) is built at first use; it brings backports.interpreters on 3.12/3.13."""
    from servers import interpreters
    try:
        interp = interpreters.newest((3, 12))
    except interpreters.Unavailable as exc:
        return None, str(exc)
    if (why := interp.why_missing("concurrent.interpreters")) is None:
        return interp.python, ""
    if (why_backport := interp.why_missing("backports.interpreters")) is None:
        return interp.python, ""
    return None, f"{why}; {why_backport}"


def free_threaded_python() -> tuple[str | None, str]:
    """(a free-threaded CPython 3.13t or newer, the newest here, "") or (None, why not and how to
    install one). The base interpreter, no venv: what runs in it needs only the standard library."""
    from servers import interpreters
    for minor in range(20, 12, -1):
        try:
            return interpreters.find(f"3.{minor}t"), ""
        except interpreters.Unavailable:
            continue
    return None, f"no free-threaded CPython (3.13t or newer) here: {FREE_THREADED_HINT}"


def shown_path(python: str) -> str:
    """An interpreter's path as the output shows it: relative to the checkout where it is inside
    (the lab's .venv-3.13), so a recording names no one's home directory."""
    path = Path(python)
    return str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else python


def run_child(python: str, module: str, args: list[str], timeout_s: float = CHILD_TIMEOUT_S) -> dict:
    """``python -m module args`` from the checkout; the last line it prints, as JSON. A child
    that fails raises RuntimeError with its last words (the caller turns it into a skip)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run([python, "-m", module, *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout_s, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{python} -m {module} gave no answer within {timeout_s:.0f} s") from None
    except OSError as exc:
        raise RuntimeError(f"{python} cannot run: {exc.strerror}") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{python} -m {module} exited {done.returncode}: {tail}")
    return json.loads(lines[-1])


def elsewhere(python: str, ways: list[str], iterations: int, n: int, repeats: int) -> dict:
    """best_of over ``ways`` in a child of ``python``: {"best_s": {way: s}, "version", "gil"}."""
    return run_child(python, "lessons.parallel", ["--ways", ",".join(ways), "--iterations",
                                                  str(iterations), "--tasks", str(n),
                                                  "--repeats", str(repeats)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lessons.parallel",
        description="Time lessons.spawn.cpu_work run several ways at once; print one JSON line.")
    parser.add_argument("--ways", default="serial,threads",
                        help=f"comma-separated, of: {', '.join(WAYS)} (default: serial,threads)")
    parser.add_argument("--iterations", type=int, default=2_000_000)
    parser.add_argument("--tasks", type=int, default=2, help="how many at once (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="best of how many (default 3)")
    args = parser.parse_args(argv)
    ways = args.ways.split(",")
    if unknown := [w for w in ways if w not in WAYS]:
        parser.error(f"--ways: no way {', '.join(unknown)}; give some of {', '.join(WAYS)}")
    if min(args.iterations, args.tasks, args.repeats) < 1:
        parser.error("--iterations, --tasks and --repeats must be at least 1")
    gil = getattr(sys, "_is_gil_enabled", lambda: True)  # before anything could turn it on
    best = best_of(args.repeats, {w: WAYS[w] for w in ways}, cpu_work, args.iterations, args.tasks)
    import platform
    import sysconfig
    print(json.dumps({"best_s": best, "version": platform.python_version(),
                      "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                      "gil": gil()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
