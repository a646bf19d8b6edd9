"""Talk to an echo server: what you type is sent, what comes back is printed. A stand-in for
`nc 127.0.0.1 PORT` on a machine without netcat (a slim image has none).

    make talk PORT=8000                  # after `make serve SERVER=epoll PORT=8000`
    python -m servers talk 8000          # the same
    printf 'one\\ntwo\\n' | python -m servers talk 8000    # piped: sends it all, prints the echo

Two flows, as in any TCP client: this thread reads your lines and send()s them; a second thread
recv()s whatever the server writes back and prints it as it arrives (an echo server may return
one line in several pieces, or several in one). At the end of input (Ctrl-D, or the end of a pipe)
the client half-closes its side, shutdown(SHUT_WR): the server sees EOF after the last byte, echoes
what is left and closes, and the client exits once it has printed everything. Ctrl-C leaves at
once (exit code 130).

Under make (make talk), the client is in make's process group, the terminal's foreground group, so
Ctrl-C would signal make as well, which then reports the client's end as an error. So at a
terminal the client moves into a process group of its own and makes it the foreground one, as a
shell does for each job: Ctrl-C reaches the client alone. It hands the terminal back on its way out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import threading

DRAIN_S = 5.0  # after our EOF, how long to wait for the rest of the echo before giving up


def _receive(sock: socket.socket, out) -> None:
    """Print what the server sends until it closes the connection."""
    while True:
        try:
            data = sock.recv(65536)
        except OSError:  # reset by the server, or our own socket closed on the way out
            return
        if not data:  # the server closed its side: nothing more will come
            return
        out.write(data)
        out.flush()


@contextlib.contextmanager
def own_foreground_group():
    """At a terminal, in a process group that is not ours (make's): run in a group of our own,
    the terminal's foreground group, so that Ctrl-C signals us and not our parent; hand the
    terminal back to the old group on the way out. Elsewhere (a pipe, a group of our own already,
    as a shell gives each command), nothing changes."""
    try:
        tty = sys.stdin.fileno()
        theirs = os.getpgrp()
        ours_already = theirs == os.getpid() or not os.isatty(tty) or os.tcgetpgrp(tty) != theirs
    except (OSError, ValueError):
        ours_already = True
    if ours_already:
        yield
        return
    # tcsetpgrp() from what is now a background group stops us with SIGTTOU unless it is ignored
    ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    try:
        os.setpgid(0, 0)
        os.tcsetpgrp(tty, os.getpgrp())
    except OSError:  # a session leader, or no job control: stay where we are
        signal.signal(signal.SIGTTOU, ttou)
        yield
        return
    try:
        yield
    finally:
        try:
            os.tcsetpgrp(tty, theirs)  # make's group has the terminal again
        except OSError:
            pass
        signal.signal(signal.SIGTTOU, ttou)


def talk(host: str, port: int, stdin=None, stdout=None) -> int:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except ConnectionRefusedError:
        print(f"talk: nothing listens on {host}:{port} (connection refused). Start a server "
              f"first, e.g. `make serve SERVER=epoll PORT={port}`, then try again.",
              file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"talk: cannot connect to {host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    sock.settimeout(None)  # from here on, block: the receiver waits for as long as it takes
    if sys.stdin.isatty():
        print(f"connected to {host}:{port}; type a line and press Enter to send it, Ctrl-D to "
              f"finish, Ctrl-C to quit", file=sys.stderr)
    receiver = threading.Thread(target=_receive, args=(sock, stdout), daemon=True)
    # Ctrl-C must reach this (main) thread, the one blocked reading the terminal: a SIGINT the
    # kernel hands to the receiver thread would run Python's handler only once the main thread
    # next runs Python, i.e. after the next Enter. The receiver inherits this mask: it never
    # takes SIGINT. (Without it, a Ctrl-C typed as the receiver started hung the client in 3 of
    # 40 runs of test_ctrl_c_in_make_talk_ends_quietly here; with it, in none of 60.)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        receiver.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    try:
        for line in iter(stdin.readline, b""):
            sock.sendall(line)
        sock.shutdown(socket.SHUT_WR)  # EOF for the server; it still sends back what it has
        receiver.join(DRAIN_S)
        if receiver.is_alive():
            print(f"talk: the server sent nothing more for {DRAIN_S:g} s after the end of input "
                  f"and did not close; leaving", file=sys.stderr)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except (BrokenPipeError, ConnectionResetError):
        receiver.join(1.0)
        print(f"talk: {host}:{port} closed the connection", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port: give 1-65535, the one the "
                                         f"server printed in its 'serving ... on HOST:PORT' line")
    return port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servers talk",
                                     description="Send what you type to an echo server and print "
                                                 "what comes back (netcat's job, in Python).")
    parser.add_argument("port", type=_port, metavar="PORT", help="the server's port")
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    args = parser.parse_args(argv)
    with own_foreground_group():
        return talk(args.host, args.port)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C before the connection was up
        sys.exit(130)
