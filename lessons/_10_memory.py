"""Lesson 10, part 2: what holding many units costs, each kind parked in a fresh interpreter.

Each unit is parked waiting (a generator suspended at yield, an asyncio task and a gevent greenlet
waiting on an Event, a trio task in a nursery, a thread blocked on a lock, a forked process and a
fresh interpreter blocked in read()), and the growth of the private memory (USS, from
/proc/PID/smaps_rollup) is divided by the count. For threads also the address space reserved
(VmSize: the stack) and the kernel stacks (KernelStack in /proc/meminfo, memory no user-space
counter shows). Each kind is measured in a fresh interpreter (multiprocessing "spawn"), so memory
freed by an earlier kind cannot be reused and hide a cost.

lessons/10_fibers.py calls ``hold_in_child(kind, count)`` for each of MEMORY_KINDS. Linux-only.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time

from lessons import procfs
from lessons.spawn import in_fresh_interpreter

MEMORY_KINDS = ("generator", "asyncio task", "trio task", "gevent greenlet", "thread",
                "process (fork)", "process (new interpreter)")


def private_kib(pid: int | str = "self") -> int:
    """USS: resident memory no other process shares (Private_Clean + Private_Dirty), in KiB."""
    return procfs.smaps_rollup(pid)["uss"]


def hold(conn, kind: str, count: int) -> None:
    """Run in a spawned child: park ``count`` units of ``kind``, report memory growth per unit."""
    try:
        conn.send(_hold(kind, count))
    except Exception as exc:  # report, do not hang the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        conn.close()


def _hold(kind: str, count: int) -> dict:
    import asyncio  # imported before the baseline, so that importing is not counted

    import gevent
    import gevent.event

    def snapshot():
        gc.collect()
        return {"uss": private_kib(), "vm": procfs.kib(procfs.status()["VmSize"]),
                "kstack": procfs.meminfo()["KernelStack"]}

    result: dict = {}

    if kind == "generator":
        def parked(i):
            local = i  # a connection's state would live here, in the frame
            yield
            return local

        base = snapshot()
        units = [parked(i) for i in range(count)]
        for g in units:
            next(g)  # run to the yield: suspended, its frame on the heap
        after = snapshot()
        for g in units:
            g.close()

    elif kind == "asyncio task":
        async def main():
            event = asyncio.Event()

            async def parked():
                await event.wait()

            await asyncio.sleep(0)
            base = snapshot()
            tasks = [asyncio.create_task(parked()) for _ in range(count)]
            await asyncio.sleep(0)  # every task runs to its await and parks
            after = snapshot()
            event.set()
            await asyncio.gather(*tasks)
            return base, after

        base, after = asyncio.run(main())

    elif kind == "trio task":
        import trio
        import trio.testing

        async def main():
            event = trio.Event()
            await trio.sleep(0)
            async with trio.open_nursery() as nursery:
                base = snapshot()
                for _ in range(count):
                    nursery.start_soon(event.wait)
                await trio.testing.wait_all_tasks_blocked()  # every task parked in wait()
                after = snapshot()
                event.set()
            return base, after

        base, after = trio.run(main)

    elif kind == "gevent greenlet":
        event = gevent.event.Event()
        gevent.sleep(0)
        base = snapshot()
        units = [gevent.spawn(event.wait) for _ in range(count)]
        gevent.sleep(0)  # the hub runs every greenlet to its wait
        after = snapshot()
        event.set()
        gevent.joinall(units)

    elif kind == "thread":
        release = threading.Event()
        base = snapshot()
        units = []
        for _ in range(count):
            t = threading.Thread(target=release.wait, daemon=True)
            t.start()
            units.append(t)
        after = snapshot()
        result["vm_kib"] = (after["vm"] - base["vm"]) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        release.set()
        for t in units:
            t.join()

    elif kind == "process (fork)":
        rfd, wfd = os.pipe()
        base = snapshot()
        pids = []
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(wfd)  # only the parent holds the write end: its close (or death) is EOF
                    os.read(rfd, 1)  # parked until then
                finally:
                    os._exit(0)
            pids.append(pid)
        time.sleep(0.3)  # let every child reach its read()
        after = snapshot()
        result["uss_kib"] = sum(private_kib(p) for p in pids) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        os.close(wfd)
        for pid in pids:
            os.waitpid(pid, 0)
        os.close(rfd)
        return result

    elif kind == "process (new interpreter)":
        base = snapshot()
        procs = [subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                  stdin=subprocess.PIPE) for _ in range(count)]
        time.sleep(0.5 + 0.02 * count)  # let every interpreter start and park in read()
        after = snapshot()
        result["uss_kib"] = sum(private_kib(p.pid) for p in procs) / count
        result["kstack_kib"] = (after["kstack"] - base["kstack"]) / count
        for p in procs:
            p.stdin.close()
            p.wait(10)
        return result

    else:
        raise ValueError(kind)

    result["uss_kib"] = (after["uss"] - base["uss"]) / count
    return result


def hold_in_child(kind: str, count: int, timeout_s: float = 60.0) -> dict:
    """hold(kind, count) in a fresh interpreter: its report, or {"error": why}."""
    try:
        return in_fresh_interpreter(hold, kind, count, timeout_s=timeout_s)
    except TimeoutError:
        return {"error": f"no answer within {timeout_s:.0f} s"}
    except EOFError:
        return {"error": "the child died without an answer"}
