"""threads: a thread per connection (lesson 05, threads).

The model: the main thread blocks in accept(); each accepted connection gets a new thread that
blocks in recv()/send() exactly as the iterative server does, so one slow client stalls only its
own thread. The kernel schedules the threads (each is a task with its own TID, lesson 06); the
GIL lets one of them run Python at a time, but it is released around every blocking syscall, so
threads waiting for I/O cost nothing but their memory.

Syscalls: accept4, clone (one per connection), recvfrom, sendto, futex (GIL hand-offs).
Limits: each thread has its own stack (reserved virtual memory; we ask for 256 KiB instead of the
8 MiB default so that thousands fit), a kernel task, and a share of the GIL. CPU-bound work
(--work-us) does not run in parallel: the GIL serialises it (lesson 05, lesson 11).

Run it:  make serve SERVER=threads      then: nc 127.0.0.1 PORT  (from several terminals at once)
Watch the threads come and go:  ls /proc/PID/task
"""

from __future__ import annotations

import socket
import threading

from servers.common import (
    CHUNK_BYTES, accept_blocking, announce, burn_cpu, listen, log, parse_args, run,
)

THREAD_STACK_BYTES = 256 * 1024  # ample for this handler; the kernel commits only pages touched

connections: set[socket.socket] = set()  # open connections, so shutdown can wake their threads
connections_lock = threading.Lock()


def handle_connection(conn: socket.socket, work_us: int) -> None:
    """Echo until the client closes its side, then close ours. Runs in its own thread."""
    try:
        while True:
            data = conn.recv(CHUNK_BYTES)  # this thread sleeps here; the others run
            if not data:
                return
            burn_cpu(work_us)
            conn.sendall(data)
    except OSError as exc:  # reset or broken pipe: end this connection only
        log(f"connection dropped: {exc.strerror}", every_s=5)
    finally:
        with connections_lock:
            connections.discard(conn)
        conn.close()


def accept_loop(listener: socket.socket, work_us: int) -> None:
    """Accept forever, one new thread per connection. (prefork runs this loop in each worker.)"""
    try:
        while True:
            conn = accept_blocking(listener)  # sleeps until a client connects
            with connections_lock:
                connections.add(conn)
            # daemon: a thread stuck in recv() must not keep the process alive after shutdown
            thread = threading.Thread(target=handle_connection, args=(conn, work_us), daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": memory or RLIMIT_NPROC
                log(f"cannot start a thread ({exc}); closing the connection", every_s=5)
                with connections_lock:
                    connections.discard(conn)
                conn.close()
    finally:
        listener.close()  # stop accepting
        with connections_lock:
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in recv()
                except OSError:
                    pass


def serve(args) -> None:
    threading.stack_size(THREAD_STACK_BYTES)
    listener = listen(args)
    announce(listener)
    accept_loop(listener, args.work_us)


if __name__ == "__main__":
    run(serve, parse_args("threads", __doc__))
