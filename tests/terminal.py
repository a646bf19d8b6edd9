"""Run a command at a terminal of a given width, as a person would: a pseudo-terminal (pty) whose
window the command reads (TIOCGWINSZ, tput cols, shutil.get_terminal_size), and keys typed once
some text appeared (Ctrl-C is b"\\x03": the terminal turns it into SIGINT for its foreground
process group). Every wait is bounded; the command's process is killed by PID."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def at_terminal(argv: list[str], *, columns: int = 80, rows: int = 50,
                typing: list[tuple[bytes, bytes]] = (), timeout_s: float = 60.0,
                ) -> tuple[int | None, str]:
    """Run ``argv`` at a terminal; ``typing`` is (text to wait for, keys to type then), in order.
    Returns (exit code, or -N if killed by signal N, or None if it did not end in time;
    everything it wrote to the terminal, \\r\\n turned into \\n)."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["TERM"] = env.get("TERM", "xterm") if env.get("TERM") not in (None, "dumb") else "xterm"
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session of its own, the pty its controlling terminal
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(ROOT)
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    output, status, typing, typed_at = b"", None, list(typing), 0
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if typing and typing[0][0] in output[typed_at:]:
                typed_at = len(output)  # the next step waits for text written after this one
                os.write(fd, typing.pop(0)[1])
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal has closed it
                    chunk = b""
                output += chunk
                if chunk:
                    continue
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                while select.select([fd], [], [], 0.1)[0]:  # what it wrote just before exiting
                    try:
                        chunk = os.read(fd, 65536)
                    except OSError:
                        break
                    if not chunk:
                        break
                    output += chunk
                break
            status = None
    finally:
        if status is None:  # say what still runs, and in which state, before killing it
            output += _session_processes(pid).encode()
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        os.close(fd)
    code = None if status is None else os.waitstatus_to_exitcode(status)
    return code, output.decode(errors="replace").replace("\r\n", "\n")


def _session_processes(sid: int) -> str:
    """The processes of session ``sid`` (the command and what it started) with their state, group,
    the terminal's foreground group, and the signals they ignore, catch and have pending."""
    lines = ["\n--- still running after the timeout ---"]
    for entry in os.listdir("/proc"):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[3]) != sid:
            continue
        signals = " ".join(line.replace("\t", "") for line in status.splitlines()
                           if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))
        lines.append(f"pid {entry} state {fields[0]} pgrp {fields[2]} tpgid {fields[5]} "
                     f"{signals} {cmdline.decode(errors='replace')[:80]}")
    return "\n".join(lines) + "\n"


def visible_width(line: str) -> int:
    """Columns a line takes, without its colour codes (ESC [ ... m)."""
    import re
    return len(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", line))
