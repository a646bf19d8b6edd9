"""What every microbenchmark shares: which CPUs to run on, pinning to them, labelling a result.

Pinning. ``os.sched_setaffinity(0, {cpu})`` asks the Linux scheduler to run the *calling thread*
only on that CPU (pid 0 means "me", and on Linux "me" is a thread). Threads and processes created
afterwards inherit the mask, so pinning the main thread before a fork or a ``Thread.start()`` pins
the child too. A switch between two threads or processes on one core is a plain context switch: one
task blocks, the scheduler picks the other from the same run queue. Across two cores the waker must
also send an inter-processor interrupt to wake the other CPU, which may have gone idle (and into a
power-saving state) meanwhile; that is why the two numbers differ. Units that never leave their OS
thread (greenlets, generators, asyncio and trio tasks) switch in user space: which core they run on
makes no difference, so they are measured on one core only.

Labels. Each benchmark records in ``benchmark.extra_info`` what one call of the benchmarked
function does, so that ``report.py`` can turn pytest-benchmark's seconds per call into nanoseconds
per operation: ``ops_per_call`` creations, or switches (a ping-pong of K round trips is 2K
switches), plus the unit, its kind (one colour per kind in the chart) and the CPUs it ran on.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.micro.hold import reap  # noqa: F401  (one reaper: hold.py's, standard library only)

# The kinds of unit, in the order the report lists and colours them.
KINDS = ("process", "subinterpreter", "thread", "greenlet", "generator", "asyncio", "trio")

# The operations, in the order the report lists them.
OPERATIONS = ("create", "switch same-core", "switch cross-core", "memory")

# The repository's root: subprocesses run from here so that `python -m bench.micro...` resolves.
REPO_ROOT_DIR = str(Path(__file__).resolve().parents[2])

CAN_PIN = sys.platform.startswith("linux") and hasattr(os, "sched_setaffinity")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask, not the machine's core count)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _physical_core(cpu: int) -> tuple[str, str]:
    """(package, core) of a logical CPU from /sys; SMT siblings share both."""
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        package = (topology / "physical_package_id").read_text().strip()
        core = (topology / "core_id").read_text().strip()
    except OSError:
        return ("?", str(cpu))  # no topology: treat every CPU as its own core
    return (package, core)


def require_pinning() -> None:
    """Skip the calling test where CPU affinity cannot be set."""
    if not CAN_PIN:
        pytest.skip(f"pinning needs Linux os.sched_setaffinity; this is {sys.platform}")


def one_cpu() -> int:
    """The CPU the same-core benchmarks run on: the first one we are allowed."""
    require_pinning()
    return allowed_cpus()[0]


def two_cpus() -> tuple[int, int]:
    """Two CPUs for a cross-core benchmark, on different physical cores when there are any.

    Two SMT siblings (hyper-threads of one core) share the core's caches, so a switch between them
    is not what "cross-core" means; we take them only when nothing else is allowed.
    """
    require_pinning()
    cpus = allowed_cpus()
    if len(cpus) < 2:
        pytest.skip(
            f"a cross-core switch needs 2 CPUs; this process may use only {cpus} "
            "(check `taskset -p $$` or the container's CPU limit)"
        )
    first = cpus[0]
    for other in cpus[1:]:
        if _physical_core(other) != _physical_core(first):
            return first, other
    return first, cpus[1]


def smt_siblings(cpu_a: int, cpu_b: int) -> bool:
    """True if the two logical CPUs are hyper-threads of the same physical core."""
    return _physical_core(cpu_a) == _physical_core(cpu_b)


def pin_this_thread(cpu: int) -> None:
    """Pin the calling thread (and whatever it creates from now on) to one CPU."""
    os.sched_setaffinity(0, {cpu})


@contextmanager
def pinned_to(cpu: int) -> Iterator[None]:
    """Run the block with the calling thread pinned to ``cpu``; restore its mask afterwards."""
    require_pinning()
    saved_mask = os.sched_getaffinity(0)
    pin_this_thread(cpu)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved_mask)


def label(
    benchmark,
    *,
    unit: str,
    kind: str,
    operation: str,
    ops_per_call: int,
    what_one_op_is: str,
    cpus: list[int] | None = None,
    **more,
) -> None:
    """Record what one call of the benchmarked function does, for ``report.py``."""
    assert kind in KINDS, kind
    assert operation in OPERATIONS, operation
    benchmark.extra_info.update(
        unit=unit,
        kind=kind,
        operation=operation,
        ops_per_call=ops_per_call,
        what_one_op_is=what_one_op_is,
        cpus=cpus if cpus is not None else "any",
        **more,
    )


def newer_python():
    """The newest CPython 3.12+ here with its venv (servers/interpreters.py builds it at first
    use), for the subinterpreter's measurements; skips the calling test, saying why and the fix,
    where there is none or it cannot import the interpreters module."""
    from servers import interpreters
    try:
        interp = interpreters.newest((3, 12))
    except interpreters.Unavailable as exc:
        pytest.skip(f"a subinterpreter with its own GIL needs Python 3.12+: {exc}")
    if interp.why_missing("concurrent.interpreters") and (why := interp.why_missing("backports.interpreters")):
        pytest.skip(why)
    return interp
