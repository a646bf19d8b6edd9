"""prefork: --workers processes forked up front, all accepting on one socket (lesson 04).

The model: the parent opens the listening socket, then forks --workers children before any client
arrives, so no client pays for a fork. Every child inherited the same listening socket and blocks
in accept() on it; when a connection arrives the kernel wakes one of them (accept waits are
exclusive on Linux, so there is no thundering herd). The parent serves nobody: it supervises,
replacing a worker that dies, and on SIGTERM stops them all.

Each worker serves its clients with a thread per connection: it runs the `threads` server's own
accept loop (servers/threads.py). Why threads and not one client at a time per worker: with
serial workers, --workers slow or idle clients would stall the whole server (the `iterative`
server's head-of-line blocking, --workers times over). Apache's "worker" MPM makes the same
choice: processes for isolation and to use several cores despite the GIL, threads for concurrency.

Syscalls: clone (fork, --workers times), accept4 (in every worker), wait4, kill; then as `threads`.
Limits: CPU-bound work scales to --workers cores (one GIL per process); memory is --workers copies
of the interpreter, shared copy-on-write until touched.

Run it:  make serve SERVER=prefork ARGS="--workers 4"   and see the workers: ps --forest -g PGID
"""

from __future__ import annotations

import os
import threading
import time

from servers import threads
from servers.common import (
    announce, default_workers, fork_tracked, listen, log, parse_args, run,
    terminate_children,
)

workers: set[int] = set()  # PIDs of running workers
RESPAWN_PAUSE_S = 0.5  # a worker that dies at once must not turn the parent into a fork loop


def start_worker(listener, work_us: int) -> int:
    pid = fork_tracked(workers)  # recorded before a SIGTERM can stop the parent
    if pid == 0:  # ---- the worker: the threads server on the inherited listening socket
        status = 0
        try:
            threading.stack_size(threads.THREAD_STACK_BYTES)
            threads.accept_loop(listener, work_us)
        except BaseException as exc:
            log(f"worker failed: {exc!r}")
            status = 1
        finally:
            os._exit(status)
    return pid


def serve(args) -> None:
    listener = listen(args)
    try:
        for _ in range(args.workers):
            start_worker(listener, args.work_us)
        announce(listener, f"{args.workers} workers")
        while True:  # supervise: sleep in wait() until a worker dies, then replace it
            pid, status = os.wait()
            workers.discard(pid)
            log(f"worker {pid} exited ({os.waitstatus_to_exitcode(status)}); starting another")
            time.sleep(RESPAWN_PAUSE_S)
            start_worker(listener, args.work_us)
    finally:
        listener.close()
        terminate_children(workers)  # SIGTERM, reap; SIGKILL what lingers


if __name__ == "__main__":
    run(serve, parse_args("prefork", __doc__, workers=default_workers(),
                          workers_help="worker processes"))
