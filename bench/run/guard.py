"""At scale, a measurement must not take the machine down.

Before a cell, `preflight` checks that the fd limits and the ephemeral port range allow its
connections (if not: skipped, with the fix); `fd_limit_cell` gives a sweep cut short by the fd
limit a cell at the machine's own ceiling. While a measurement runs, the `Guard` watches available
memory and the server's task count: a `fork` server at 10,000 clients would otherwise use up the
memory (or the PIDs) of the whole machine. Past the floor, the guard kills the server's process
group and the result is failed, saying where it stopped.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace

from bench import load as load_gen
from bench.run import sample
from bench.run.machine import read_proc
from bench.results import CellKey
from bench.run.profiles import Profile
from servers import launch

# The guard. The memory floor: this share of the machine's memory, or
# 2 GiB, whichever is smaller, must stay available; the task ceiling: half of kernel.pid_max.
MEMORY_FLOOR_FRACTION = 0.15
MEMORY_FLOOR_MAX_BYTES = 2 << 30
TASKS_CEILING_FRACTION = 0.5
GUARD_INTERVAL_S = 0.1

SERVER_FD_HEADROOM = 32  # files a server has open besides its connections: listener, stdio, pipes
GiB = 1 << 30


def fd_limit_cell(profile: Profile) -> CellKey | None:
    """A cell at the most connections this machine's fd hard limit lets one server process hold
    (rounded down to a thousand), when some of the profile's cells need more and it lies above
    every cell that fits: so a sweep cut short by the limit still finds where each model stands
    at the machine's own ceiling. None when every cell fits, or the limit is unknown."""
    hard = load_gen.fd_hard_limit()
    if hard is None:
        return None
    most = (hard - SERVER_FD_HEADROOM) // 1000 * 1000
    fits = [c for c in profile.cells if c.conns + SERVER_FD_HEADROOM <= hard]
    if len(fits) == len(profile.cells) or most <= max((c.conns for c in fits), default=0):
        return None
    model = max(profile.cells, key=lambda c: c.conns)
    return replace(model, conns=most)


def preflight(cell: CellKey, client_cpus: list[int] | None) -> str | None:
    """Why this machine cannot open the cell's connections at all, with the fix; None if it can."""
    workers = load_gen.worker_count(cell.conns, None, client_cpus)
    if (why := load_gen.fd_shortfall(cell.conns, workers)) is not None:
        return why
    hard = load_gen.fd_hard_limit()
    if hard is not None and cell.conns + SERVER_FD_HEADROOM > hard:
        return (f"the server needs about {cell.conns + SERVER_FD_HEADROOM:,} open files, but the "
                f"hard limit (ulimit -Hn) is {hard:,}: raise it as root (ulimit -n "
                f"{cell.conns + SERVER_FD_HEADROOM}, or LimitNOFILE / limits.conf), then run again")
    return load_gen.port_shortfall("127.0.0.1", cell.conns)


class Guard:
    """Watches the machine while a measurement runs, and stops the server before it takes the
    machine down: when available memory falls below the floor, or the server's tasks (threads,
    summed over its processes) pass the ceiling. It then SIGKILLs the server's process group and
    says where it stopped in `stopped`; the load generator sees its connections reset and returns.
    """

    def __init__(self, server: launch.RunningServer, sampler: sample.TreeSampler):
        import psutil
        self.server = server
        self.sampler = sampler  # its light readings count the server's processes and threads
        memory = psutil.virtual_memory()
        self.available_at_start = memory.available
        self.floor_bytes = min(MEMORY_FLOOR_MAX_BYTES, MEMORY_FLOOR_FRACTION * memory.total)
        pid_max = read_proc("/proc/sys/kernel/pid_max")
        self.pid_max = int(pid_max) if pid_max else None
        self.stopped: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="guard", daemon=True)

    def start(self) -> Guard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)

    def _run(self) -> None:
        import psutil
        while not self._done.wait(GUARD_INTERVAL_S):
            available = psutil.virtual_memory().available
            latest = self.sampler.samples[-1] if self.sampler.samples else None
            tasks = latest.threads if latest else 0
            if available < self.floor_bytes:
                why = (f"memory would run out (available memory fell from "
                       f"{self.available_at_start / GiB:.1f} to {available / GiB:.1f} GiB; the "
                       f"guard keeps {self.floor_bytes / GiB:.1f} GiB free)")
            elif self.pid_max and tasks > TASKS_CEILING_FRACTION * self.pid_max:
                why = (f"the machine would run out of process IDs ({tasks:,} threads; "
                       f"kernel.pid_max is {self.pid_max:,})")
            else:
                continue
            processes = len(self.server.group_pids())
            try:
                os.killpg(self.server.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            used = max(0, self.available_at_start - available)
            self.stopped = (f"stopped by the bench at {processes:,} processes, {used / GiB:.1f} GiB "
                            f"of memory used since the start: {why}")
            return

