"""threadpool: a fixed pool of --workers threads serving a queue of connections (lesson 05).

The model: the main thread blocks in accept() and puts each connection on a queue; --workers
threads, started once, each take one connection at a time off the queue and serve it with
blocking recv()/send() until the client leaves. Thread creation is paid once, not per client,
and the thread count (memory, kernel tasks) is bounded however many clients come.

The lesson is what that bound costs. With every worker busy, client N+1 is accepted (its connect
succeeds, it may send) but no thread reads from it: it waits in the queue, getting no reply,
until some client leaves. Long-lived or idle connections starve the rest: head-of-line waiting
again, now per pool instead of per process. Servers that need both a bound and fairness use a
multiplexer per thread instead (lesson 08).

Syscalls: accept4, recvfrom, sendto, futex (the queue's lock and condition, and the GIL).
Limits: at most --workers clients are served at once; the others wait in order of arrival.

Run it:  make serve SERVER=threadpool ARGS="--workers 2"   then three nc 127.0.0.1 PORT:
the third gets its echo only when one of the first two quits.
"""

from __future__ import annotations

import queue
import socket
import threading

from servers.common import (
    CHUNK_BYTES, accept_blocking, announce, burn_cpu, default_workers, listen, log, parse_args,
    run,
)

# 16, or a thread per CPU it may run on where it may run on more: with a GIL the pool's threads
# take turns on one core whatever their number; on a free-threaded build (3.14t) they can each
# have a core, as many as prefork's processes get, so that the bench can show it scale.
DEFAULT_WORKERS = max(16, default_workers())
THREAD_STACK_BYTES = 256 * 1024

waiting: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()  # accepted, not yet served
serving: set[socket.socket] = set()  # being served now, so shutdown can wake their threads
serving_lock = threading.Lock()


def handle_connection(conn: socket.socket, work_us: int) -> None:
    """Echo until the client closes its side, then close ours."""
    try:
        while True:
            data = conn.recv(CHUNK_BYTES)
            if not data:
                return
            burn_cpu(work_us)
            conn.sendall(data)
    except OSError as exc:
        log(f"connection dropped: {exc.strerror}", every_s=5)
    finally:
        with serving_lock:
            serving.discard(conn)
        conn.close()


def worker(work_us: int) -> None:
    """One pool thread: serve queued connections one after another, forever."""
    while True:
        conn = waiting.get()  # sleeps until the main thread queues a connection
        with serving_lock:
            serving.add(conn)
        handle_connection(conn, work_us)


def serve(args) -> None:
    threading.stack_size(THREAD_STACK_BYTES)
    for _ in range(args.workers):
        threading.Thread(target=worker, args=(args.work_us,), daemon=True).start()
    listener = listen(args)
    announce(listener, f"{args.workers} workers")
    try:
        while True:
            conn = accept_blocking(listener)  # sleeps until a client connects
            waiting.put(conn)  # a free worker takes it; with none free, it waits its turn
    finally:
        listener.close()
        with serving_lock:
            for conn in serving:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


if __name__ == "__main__":
    run(serve, parse_args("threadpool", __doc__, workers=DEFAULT_WORKERS,
                          workers_help="threads in the pool, i.e. clients served at once"))
