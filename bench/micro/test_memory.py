"""Memory per unit: hold N units alive at once, divide the memory they took by N.

Each case runs ``python -m bench.micro.hold UNIT N`` in a fresh interpreter (see hold.py for why,
and for what is and is not counted) and checks what it reports: all N units were alive while
measured, all N finished cleanly once released, and the holder exited 0 (it reaps every child and
joins every thread it started, even on failure).

What one unit holds on to while it waits:

- process (fork): its own copies of the pages it wrote since fork (copy-on-write); everything else
  is still shared with the parent. Plus kernel page tables, which USS does not show.
- process (mp spawn): a whole Python interpreter of its own.
- subinterpreter (in a Python 3.12+): its own copy of the built-in modules, sys, the import system
  and its allocator's state; no thread and no stack (any thread may enter it).
- thread: a stack (8 MiB reserved by default, of which only touched pages are resident), a Python
  thread state, and glibc's per-thread bookkeeping. VMS per thread shows the reservation.
- greenlet: a greenlet object, the slice of C stack saved when it switched away, and (CPython
  3.11+) a 16 KiB chunk for its Python frames, of which only touched pages count.
- generator: one suspended frame object on the heap; no stack of its own.
- asyncio task: a Task, its coroutine frame, and the future it waits on.
- trio task: a Task, its coroutine frame, and trio's bookkeeping for cancellation scopes.

Timed once (pedantic, one round): the time is the holder's whole run and is not a result; the
numbers that matter are in ``extra_info`` (``bytes_per_unit`` and friends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.micro.common import REPO_ROOT_DIR, label
from bench.micro.hold import DEFAULT_COUNTS

# hold.py's unit name -> (name in the report, kind, the module the unit needs)
UNITS = {
    "fork": ("process (fork)", "process", None),
    "spawn": ("process (mp spawn)", "process", None),
    "thread": ("thread", "thread", None),
    "subinterpreter": ("subinterpreter", "subinterpreter", None),  # under a Python 3.12+
    "greenlet": ("greenlet", "greenlet", "greenlet"),
    "gevent": ("greenlet (gevent)", "greenlet", "gevent"),
    "generator": ("generator", "generator", None),
    "asyncio": ("asyncio task", "asyncio", None),
    "uvloop": ("asyncio task (uvloop)", "asyncio", "uvloop"),
    "trio": ("trio task", "trio", "trio"),
}

# What a reader of the chart needs beside the number.
NOTES = {
    "thread": "+ {vms_mib:.1f} MiB virtual (stack reserve)",
    "fork": "only pages written since fork",
}

HOLDER_TIMEOUT_S = 60


@pytest.mark.parametrize("unit", list(UNITS))
def test_memory_per_unit(benchmark, unit):
    report_name, kind, needs = UNITS[unit]
    if needs:
        pytest.importorskip(needs)
    if unit == "fork" and not hasattr(os, "fork"):
        pytest.skip("os.fork needs a POSIX system")
    python = sys.executable
    if unit == "subinterpreter":
        from bench.micro.common import newer_python
        interp = newer_python()
        python = interp.python
        benchmark.extra_info["note"] = f"Python {interp.label}"
    count = DEFAULT_COUNTS[unit]
    label(
        benchmark,
        unit=report_name,
        kind=kind,
        operation="memory",
        ops_per_call=count,
        what_one_op_is=f"one {report_name} held alive among {count}",
    )

    def hold() -> subprocess.CompletedProcess:
        # A fresh interpreter per measurement; subprocess.run kills it if it overstays.
        return subprocess.run(
            [python, "-m", "bench.micro.hold", unit, str(count)],
            cwd=REPO_ROOT_DIR,
            capture_output=True,
            text=True,
            timeout=HOLDER_TIMEOUT_S,
        )

    finished = benchmark.pedantic(hold, rounds=1, iterations=1)
    assert finished.returncode in (0, 1), (
        f"the holder crashed (exit {finished.returncode}):\n{finished.stderr}"
    )
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    assert result["alive"] == count, f"only {result['alive']} of {count} {unit} units were alive"
    assert result["finished"] == count, f"only {result['finished']} of {count} finished cleanly"
    assert finished.returncode == 0, finished.stderr
    assert result["bytes_per_unit"] > 0, f"holding {count} {unit} units took no memory: {result}"

    benchmark.extra_info.update(
        units_held=count,
        memory_metric=result["metric"],
        bytes_per_unit=result["bytes_per_unit"],
        uss_bytes_per_unit=result["uss_bytes_per_unit"],
        rss_bytes_per_unit=result["rss_bytes_per_unit"],
        vms_bytes_per_unit=result["vms_bytes_per_unit"],
    )
    if unit in NOTES:
        benchmark.extra_info["note"] = NOTES[unit].format(
            vms_mib=result["vms_bytes_per_unit"] / 2**20
        )
