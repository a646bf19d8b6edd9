"""iterative: one client at a time, in one loop of blocking calls (lesson 07, blocking I/O).

The model: accept() blocks until a client connects; then recv() blocks until that client sends,
send() blocks until the kernel has room in the socket's send buffer; only when the client closes
does the loop go back to accept(). While it serves one client, every other client waits in the
kernel's listen queue (its connect() already succeeded: the kernel finished the handshake), so a
client that stays connected but silent stalls everyone behind it: head-of-line blocking.

Syscalls: accept4, recvfrom, sendto, close. While it waits the one thread sleeps in the kernel
(a voluntary context switch), using no CPU.
Limits: one client at a time, whatever the CPU count. Memory is one 64 KiB buffer.

Run it:  make serve SERVER=iterative     then, in two other terminals: nc 127.0.0.1 PORT
The second nc gets no echo until the first one quits (Ctrl-D or Ctrl-C).
"""

from __future__ import annotations

import socket

from servers.common import (
    CHUNK_BYTES, accept_blocking, announce, burn_cpu, listen, log, parse_args, run,
)


def handle_connection(conn: socket.socket, work_us: int) -> None:
    """Echo until the client closes its side, then close ours."""
    with conn:
        while True:
            data = conn.recv(CHUNK_BYTES)  # blocks until bytes arrive, or b"" at end of stream
            if not data:
                return  # the client half-closed: everything it sent has been echoed
            burn_cpu(work_us)
            conn.sendall(data)  # blocks while the client's receive window is full


def serve(args) -> None:
    listener = listen(args)
    announce(listener)
    with listener:
        while True:
            conn = accept_blocking(listener)  # sleeps until a client connects
            try:
                handle_connection(conn, args.work_us)
            except OSError as exc:  # reset, broken pipe: that client's problem, not the server's
                log(f"connection dropped: {exc.strerror}", every_s=5)


if __name__ == "__main__":
    run(serve, parse_args("iterative", __doc__))
