"""fork: a process per connection (lesson 03, processes).

The model: the parent blocks in accept(); for each connection it calls fork(), and the child, a
copy of the parent (its memory shared copy-on-write, its descriptors duplicated), serves that one
client with blocking recv()/send() and exits. The parent closes its copy of the connection and
goes back to accept(); the child closes its copy of the listening socket. Each side must close
the descriptor it does not use: a connection is only really closed when every process holding it
has closed it, so a parent that forgot would keep every client's connection open forever.

A child that exits becomes a zombie (state Z in /proc/PID/status) until its parent collects its
exit status with waitpid(). The kernel tells the parent with SIGCHLD; our handler reaps every
child that has exited, so no zombie outlives its client by more than a moment.

Syscalls: accept4, rt_sigprocmask (around fork), clone (fork), close, recvfrom, sendto, exit_group,
wait4, kill.
Limits: a process per client: fork copies page tables (slower as the parent grows, lesson 04),
each child costs memory and a PID, and RLIMIT_NPROC or kernel.pid_max stop it. fork failing is
logged and that client closed; the server goes on.

Run it:  make serve SERVER=fork     then a few nc 127.0.0.1 PORT, and watch: ps --forest -g PGID
"""

from __future__ import annotations

import os
import signal
import socket

from servers.common import (
    CHUNK_BYTES, accept_blocking, announce, burn_cpu, fork_tracked, listen, log, parse_args, run,
    terminate_children,
)

children: set[int] = set()  # PIDs of children still running (or not yet reaped)


def handle_connection(conn: socket.socket, work_us: int) -> None:
    """Echo until the client closes its side, then close ours. Runs in the child."""
    with conn:
        while True:
            data = conn.recv(CHUNK_BYTES)
            if not data:
                return
            burn_cpu(work_us)
            conn.sendall(data)


def reap_children(signum=None, frame=None) -> None:
    """SIGCHLD handler: collect every child that has exited, so none stays a zombie."""
    while children:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return  # children remain, none has exited
        children.discard(pid)


def serve(args) -> None:
    listener = listen(args)
    signal.signal(signal.SIGCHLD, reap_children)
    announce(listener)
    try:
        while True:
            conn = accept_blocking(listener)  # sleeps until a client connects
            try:
                pid = fork_tracked(children)  # recorded before a SIGTERM can stop the parent
            except OSError as exc:  # EAGAIN (process limit) or ENOMEM: refuse this client only
                log(f"fork failed: {exc.strerror}; closing the connection", every_s=5)
                conn.close()
                continue
            if pid == 0:  # ---- the child: serve this one client, then exit
                status = 0
                try:
                    listener.close()  # the parent keeps accepting; the child never does
                    handle_connection(conn, args.work_us)
                except OSError:
                    status = 1  # reset or broken pipe: this client only
                finally:
                    os._exit(status)  # skip the parent's cleanup handlers and buffered output
            # ---- the parent: forget this connection, accept the next
            conn.close()
    finally:
        listener.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        terminate_children(children)  # SIGTERM, reap; SIGKILL what lingers


if __name__ == "__main__":
    run(serve, parse_args("fork", __doc__))
