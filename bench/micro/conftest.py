"""Shared fixtures for the microbenchmarks, and the machine facts saved with every run."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from importlib import metadata

import psutil
import pytest

# `bench.micro.*` imports must work whatever directory pytest was started from.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(autouse=True)
def leaves_no_children_or_threads():
    """Every benchmark must reap each process and join each thread it started, even on failure."""
    me = psutil.Process()
    children_before = {child.pid for child in me.children(recursive=True)}
    threads_before = set(threading.enumerate())
    yield
    children_left = [
        child for child in me.children(recursive=True) if child.pid not in children_before
    ]
    threads_left = [thread for thread in threading.enumerate() if thread not in threads_before]
    assert not children_left, f"child processes left behind: {children_left}"
    assert not threads_left, f"threads left running: {threads_left}"


@pytest.fixture(params=["asyncio", "uvloop"])
def asyncio_loop(request):
    """A fresh event loop, the standard one or uvloop's, closed afterwards."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (Linux/macOS only)")
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add what a reader needs to compare two runs: cores, SMT, allowed CPUs, load, versions.

    (pytest-benchmark already records the CPU model, the kernel release and Python's version.)
    """
    logical = psutil.cpu_count(logical=True)
    physical = psutil.cpu_count(logical=False)
    machine_info["cores_logical"] = logical
    machine_info["cores_physical"] = physical
    machine_info["smt"] = bool(logical and physical and logical > physical)
    if hasattr(os, "sched_getaffinity"):
        machine_info["cpus_allowed"] = sorted(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        # Other work on the machine makes the numbers noisy; the 1-minute load says how busy it was.
        machine_info["load_average_1m"] = round(os.getloadavg()[0], 2)
    machine_info["packages"] = {
        name: _version(name)
        for name in ("greenlet", "gevent", "trio", "uvloop", "psutil", "pytest-benchmark")
    }
