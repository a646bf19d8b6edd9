"""`python -m servers talk PORT` (make talk): the netcat stand-in, against a real server.

Every process started here is killed by PID (the server by process group); every wait is bounded.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

import servers
from servers import launch
from tests.terminal import at_terminal

ROOT = Path(__file__).resolve().parent.parent
TALK = [sys.executable, "-m", "servers", "talk"]


@pytest.fixture(scope="module")
def epoll():
    entry = servers.BY_NAME["epoll"] if servers.BY_NAME["epoll"].available \
        else servers.BY_NAME["threads"]
    running = launch.start(entry)
    try:
        yield running
    finally:
        running.kill()


def test_piped_lines_come_back_in_order_and_it_exits_0(epoll):
    lines = b"".join(f"line {i} of the piped input\n".encode() for i in range(200))
    done = subprocess.run([*TALK, str(epoll.address[1])], input=lines, capture_output=True,
                          cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == lines
    assert b"Traceback" not in done.stderr


def test_nothing_listening_is_a_clear_message_not_a_traceback():
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = subprocess.run([*TALK, str(port)], input=b"hi\n", capture_output=True, cwd=ROOT,
                          timeout=30)
    assert done.returncode == 1
    assert b"nothing listens on 127.0.0.1:" in done.stderr and b"make serve" in done.stderr
    assert b"Traceback" not in done.stderr


def test_a_bad_port_exits_2_naming_the_range():
    done = subprocess.run([*TALK, "99999"], capture_output=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2 and b"1-65535" in done.stderr


def test_at_a_terminal_it_echoes_each_line_and_ctrl_c_leaves_cleanly(epoll):
    """Typed at a terminal (a pty): a line comes back as soon as Enter sends it; Ctrl-C ends the
    client at once, with exit code 130 and no traceback."""
    line = b"hello from a terminal"
    code, out = at_terminal([*TALK, str(epoll.address[1])], timeout_s=30, typing=[
        (b"Ctrl-C to quit", line + b"\n"),
        (line + b"\r\n" + line, b"\x03"),  # the terminal's echo of the line, then the server's
    ])
    assert "connected to 127.0.0.1" in out
    assert out.count(line.decode()) >= 2, out
    assert code == 130, out
    assert "Traceback" not in out


def test_ctrl_c_in_make_talk_ends_quietly(epoll):
    """Under make, the client takes the terminal's foreground, so Ctrl-C reaches it and not make:
    make exits 0 with no 'make: *** [talk] Error 130' (nor 'Interrupt')."""
    code, out = at_terminal(["make", "--no-print-directory", "-o", ".venv/.installed", "talk",
                             f"PORT={epoll.address[1]}"], typing=[(b"Ctrl-C to quit", b"\x03")],
                            timeout_s=30)
    assert "Ctrl-C to quit" in out, out
    assert code == 0, out
    assert "***" not in out and "Error" not in out and "Traceback" not in out, out
