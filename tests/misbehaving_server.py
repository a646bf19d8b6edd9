"""Echo servers that break the contract on purpose, so the bench is seen to catch them.

    python -m tests.misbehaving_server corrupt   echoes, but flips one bit in every 1000th byte
    python -m tests.misbehaving_server crash     prints its readiness line, then dies on the first client
    python -m tests.misbehaving_server silent    never prints a readiness line
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time


def serve(mode: str) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    if mode == "silent":
        time.sleep(60)
        return
    print(f"serving {mode} on 127.0.0.1:{listener.getsockname()[1]} (pid {os.getpid()})", flush=True)
    while True:
        conn, _ = listener.accept()
        if mode == "crash":
            os._exit(3)
        threading.Thread(target=corrupt_echo, args=(conn,), daemon=True).start()


def corrupt_echo(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    position = 0
    with conn:
        while data := conn.recv(65536):
            out = bytearray(data)
            for i in range(-position % 1000, len(out), 1000):
                out[i] ^= 0x01
            position += len(out)
            conn.sendall(out)


if __name__ == "__main__":
    serve(sys.argv[1])
