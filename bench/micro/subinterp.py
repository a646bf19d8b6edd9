"""Creating subinterpreters, timed inside a child of a Python 3.12+ that the caller talks to.

The microbenchmarks run under the lab's Python 3.11, whose subinterpreters all share one GIL; a
subinterpreter with a GIL of its own (PEP 684) needs 3.12 or newer, and the `concurrent.interpreters`
API (the standard library from 3.14, PyPI's backports.interpreters on 3.12 and 3.13). So
test_create.py starts this module in a child of such an interpreter (servers/interpreters.py finds
it and its venv) and asks it, one line at a time, to do some creations:

    subinterpreter 10     create an interpreter, run `pass` in it, close it; 10 times
    thread 10             threading.Thread(target=int).start(); join(); 10 times (its neighbour)
    fork 10               fork(); the child _exit(0)s; waitpid(); 10 times

and it answers each line with the nanoseconds the whole batch took, measured in there. The caller
(pytest-benchmark) times its own round trip through the pipes too; a batch of creations that each
take milliseconds makes the pipe's tens of microseconds a rounding error. Lesson 06 reads the
child's own figure instead.

What creating one costs: a new PyInterpreterState with its own GIL, its own obmalloc state and
every built-in and `sys` module initialised again for it, the import system set up, `pass`
compiled and run; closing it finalises all of that. Nothing of the process is copied: no fork,
no second address space.

    .venv-3.13/bin/python -m bench.micro.subinterp    # then type: subinterpreter 5
"""

from __future__ import annotations

import os
import sys
import threading
import time


def interpreters_module():
    """PEP 734's module: the standard library's from 3.14, PyPI's backport on 3.12 and 3.13."""
    try:
        from concurrent import interpreters
    except ImportError:
        from backports import interpreters
    return interpreters


def create_subinterpreter() -> None:
    interp = interpreters_module().create()  # its own GIL (3.12+), modules, sys, heap
    try:
        interp.exec("pass")
    finally:
        interp.close()


def create_thread() -> None:
    thread = threading.Thread(target=int)
    thread.start()
    thread.join()


def create_process() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


OPERATIONS = {"subinterpreter": create_subinterpreter, "thread": create_thread,
              "fork": create_process}


def main() -> int:
    """Answer each "OPERATION COUNT" line of stdin with the batch's nanoseconds, until EOF."""
    interpreters_module()  # fail at start, with the reason on stderr, not at the first request
    print("ready", flush=True)
    for line in sys.stdin:
        operation, count = line.split()
        run = OPERATIONS[operation]
        t0 = time.perf_counter_ns()
        for _ in range(int(count)):
            run()
        print(time.perf_counter_ns() - t0, flush=True)
    return 0


class Child:
    """This module in a child of ``python``: ``child.batch("subinterpreter", 10)`` returns the ns
    the child measured. A context manager: leaving it ends and reaps the child."""

    def __init__(self, python: str, timeout_s: float = 60.0):
        import subprocess
        from pathlib import Path
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        self.proc = subprocess.Popen(
            [python, "-m", "bench.micro.subinterp"], cwd=Path(__file__).resolve().parents[2],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env)
        self.timeout_s = timeout_s
        if self._answer() != "ready":
            raise RuntimeError(f"{python} -m bench.micro.subinterp did not start: {self._stderr()}")

    def _answer(self) -> str:
        import select
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout_s)
        return self.proc.stdout.readline().strip() if ready else ""

    def _stderr(self) -> str:
        self.close()
        return (self.proc.stderr.read().strip().splitlines() or ["no output"])[-1]

    def batch(self, operation: str, count: int) -> int:
        self.proc.stdin.write(f"{operation} {count}\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if not answer.isdigit():
            raise RuntimeError(f"the child failed on {operation} x {count}: {self._stderr()}")
        return int(answer)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(self.timeout_s)
            except Exception:  # noqa: BLE001 (it hangs: it must not outlive us)
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(main())
