"""The machine a run measures on, as meta.json records it (pyperf's _collect_metadata): the CPU,
cores, SMT, kernel and memory, the Python and package versions, gevent's backend, io_uring's
state, the git commit, the split of CPUs between server and client, and the limits that decide
which cells can run (open files, the accept queue)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import servers

ROOT = Path(__file__).resolve().parents[2]


def read_proc(path: str) -> str | None:
    """A /proc or /sys file's text, stripped; None where it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    text = read_proc("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith(("model name", "hardware", "cpu model")):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info() -> dict:
    import psutil
    smt = read_proc("/sys/devices/system/cpu/smt/active")
    return {
        "cpu_model": cpu_model(),
        "cores_logical": os.cpu_count(),
        "cores_physical": psutil.cpu_count(logical=False),
        "smt": None if smt is None else smt == "1",
        "kernel": platform.release(),
        "os": f"{platform.system()} {platform.machine()}",
        "memory_bytes": psutil.virtual_memory().total,
        "hostname": platform.node(),
    }


def package_versions() -> dict:
    versions = {}
    for name in ("uvloop", "trio", "gevent", "greenlet", "psutil", "hdrhistogram", "plotly",
                 "matplotlib"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def gevent_backend() -> str | None:
    try:
        out = subprocess.run([sys.executable, "-c",
                              "import gevent; print(type(gevent.get_hub().loop).__module__)"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    module = out.stdout.strip()
    return {"gevent.libev.corecext": "libev-cext", "gevent.libev.corecffi": "libev-cffi",
            "gevent.libuv.loop": "libuv-cffi"}.get(module, module or None)


def git_state() -> tuple[str | None, bool]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
        # dirty: the code differs from the commit. Recorded results (docs/results) are not code:
        # re-recording one reference must not mark the next as measured by uncommitted code.
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                     ".", ":(exclude)docs/results"],
                                    cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    return commit, dirty


def split_cpus() -> tuple[list[int] | None, list[int] | None, str]:
    """Disjoint halves of the CPUs this process may use: the client gets the first half, the
    server the second (on 2 cores: client on CPU 0, server on CPU 1)."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None, "no pinning: sched_setaffinity is Linux-only; client and server share cores"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None, f"no pinning: only CPU {cpus} available; client and server share it"
    half = len(cpus) // 2
    client, server = cpus[:half], cpus[half:]
    return server, client, f"server on CPUs {server}, client (load generator) on CPUs {client}"


def limits() -> dict:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    somaxconn = read_proc("/proc/sys/net/core/somaxconn")
    return {"nofile_soft": soft, "nofile_hard": hard,
            "somaxconn": int(somaxconn) if somaxconn else None}


def io_uring_state() -> dict:
    entry = servers.BY_NAME.get("io_uring")
    if entry is None:
        return {"available": False, "reason": "no io_uring server in the registry"}
    ok, reason = entry.availability()
    return {"available": ok, "reason": reason}


def describe(server_cpus: list[int] | None, client_cpus: list[int] | None,
             pin_note: str) -> dict:
    """meta.json's account of the machine and the code, in its order: git state, machine,
    Python, packages, gevent's backend, io_uring, pinning, limits."""
    commit, dirty = git_state()
    return {
        "git_commit": commit, "git_dirty": dirty,
        "machine": machine_info(),
        "python": {"version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "packages": package_versions(),
        "gevent_backend": gevent_backend(),
        "io_uring": io_uring_state(),
        "pinning": {"server_cpus": server_cpus, "client_cpus": client_cpus, "note": pin_note},
        "limits": limits(),
    }
