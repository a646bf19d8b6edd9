"""Start a registry server as a child process, wait for its readiness line, stop it cleanly.

The one harness the tests and the bench share. A server runs in its own session (so its whole
process tree is one process group, and nothing it forks can outlive the harness: ``kill()`` signals
the group by its id, never anything by name). Its stdout is read only for the readiness line; its
stderr goes to a temporary file, so a chatty server can never block on a full pipe, and the tail
of it is kept for error reports.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from servers import Server, interpreters

READY_RE = re.compile(r"^serving (?P<name>\S+) on \[?(?P<host>[^\]\s]+?)\]?:(?P<port>\d+) \(pid (?P<pid>\d+)")
READY_TIMEOUT_S = 15.0
# The last fact of a readiness line on a free-threaded build (servers/common.gil_fact).
READY_GIL_RE = re.compile(r", GIL (enabled|disabled)\)$")


def ready_gil(line: str | None) -> bool | None:
    """Whether a server's readiness line says its GIL is enabled; None where it says nothing
    (a build with a GIL, or a server that is not Python)."""
    match = READY_GIL_RE.search((line or "").strip())
    return None if match is None else match[1] == "enabled"


class StartError(RuntimeError):
    """The server exited, or printed no readiness line in time. ``stderr`` holds its last words."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message + (f"\n--- server stderr (tail) ---\n{stderr}" if stderr else ""))
        self.reason = message
        self.stderr = stderr


@dataclass
class RunningServer:
    name: str
    proc: subprocess.Popen
    host: str
    port: int
    ready_line: str
    stderr_file: object = field(repr=False)
    start_s: float = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def stderr_tail(self, max_bytes: int = 4000) -> str:
        try:
            self.stderr_file.flush()
            with open(self.stderr_file.name, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - max_bytes))
                return f.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def group_pids(self, *, zombies: bool = False) -> list[int]:
        """Every process in the server's process group (the server and what it forked);
        zombies (exited, not yet reaped) only if asked for."""
        return group_pids(self.proc.pid, zombies=zombies)

    def signal_and_wait(self, sig: int = signal.SIGTERM,
                        timeout_s: float = 5.0) -> tuple[int | None, float]:
        """Send ``sig`` to the server (its main process only, as a user's kill would) and wait.
        Returns (exit code or None if it did not exit in time, seconds it took). Kills nothing,
        so what it left behind (group_pids) and its stderr can still be read; kill() follows."""
        t0 = time.monotonic()
        try:
            self.proc.send_signal(sig)
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - t0

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 5.0) -> tuple[int | None, float]:
        """signal_and_wait, then kill(): always leaves nothing running."""
        code, elapsed = self.signal_and_wait(sig, timeout_s)
        self.kill()
        return code, elapsed

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the main process. Idempotent."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdout,):
            if stream:
                stream.close()
        try:
            self.stderr_file.close()
            os.unlink(self.stderr_file.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()


# -- The process tree: the one place it is read (the bench's sampler, its settle wait, the tests) --


def _proc_stats():
    """(pid, state, ppid, pgrp) of every process (Linux: from /proc/PID/stat); none elsewhere."""
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the command name, which is in parentheses and may contain spaces
        rest = stat[stat.rfind(b")") + 2:].split()
        yield int(entry), rest[0], int(rest[1]), int(rest[2])


def group_pids(pgid: int, *, zombies: bool = False) -> list[int]:
    """Every process in process group ``pgid`` (Linux: from /proc). A server runs in its own
    session, so this finds what it forked even after a child was re-parented to init, which a
    walk of the parent-child tree would miss."""
    return [pid for pid, state, _ppid, pgrp in _proc_stats()
            if pgrp == pgid and (zombies or state != b"Z")]


def kill_own_groups() -> list[int]:
    """SIGKILL every process group led by a child of this process, and reap those children;
    returns their PIDs. start() puts each server in a group of its own, so this reaches every
    server this process launched, even one whose RunningServer it never got back: a signal that
    lands as Popen returns raises before the caller holds anything it could kill. For the clean-up
    after an interrupt (bench run calls it); the normal path is RunningServer.kill()."""
    me = os.getpid()
    leaders = [pid for pid, _state, ppid, pgrp in _proc_stats() if ppid == me and pgrp == pid]
    for pid in leaders:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in leaders:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # reaped already (a Popen's wait)
            pass
    return leaders


def tree(pid: int) -> list:
    """The process ``pid`` and all its descendants (psutil.Process objects); [] if it is gone."""
    import psutil
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of ``pid``'s tree, with the children its processes already
    reaped (a fork server's finished children); None if ``pid`` is gone. Counted in clock ticks
    (10 ms): for totals and idle checks, not for per-request costs (bench/run/sample.py reads
    schedstat for those)."""
    import psutil
    procs = tree(pid)
    if not procs:
        return None
    total = 0.0
    for proc in procs:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited while we read the tree
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def _preexec(cpus, nofile):
    def setup():
        if nofile is not None:
            import resource
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        if cpus:
            os.sched_setaffinity(0, cpus)
    return setup


def start(
    server: Server | list[str],
    extra_args: list[str] | tuple[str, ...] = (),
    *,
    cpus: list[int] | None = None,
    nofile: int | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
    env: dict | None = None,
) -> RunningServer:
    """Start ``server`` (a registry entry, or an argv after the Python executable) on a free
    loopback port unless ``extra_args`` says otherwise; return once it printed its readiness line.
    A registry entry runs under its own interpreter (``entry.under("3.13")``), else this one.

    ``cpus`` pins it (Linux); ``nofile`` sets its soft and hard fd limit before it starts.
    Raises StartError with the server's stderr if it exits or stays silent.
    """
    try:
        command = server.command if isinstance(server, Server) else [sys.executable, *server]
    except interpreters.Unavailable as exc:  # bound to an interpreter that is not here
        raise StartError(str(exc)) from None
    name = server.name if isinstance(server, Server) else " ".join(server)
    if not any(a == "--port" or a.startswith("--port=") for a in extra_args):
        extra_args = [*extra_args, "--port", "0"]
    stderr_file = tempfile.NamedTemporaryFile(prefix="lab-server-", suffix=".stderr", delete=False)
    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [*command, *extra_args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        start_new_session=True,  # its own process group: killpg reaches everything it forks
        preexec_fn=_preexec(cpus, nofile) if (cpus or nofile is not None) else None,
        env=run_env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    running = RunningServer(name, proc, "", 0, "", stderr_file, t0)
    try:
        line = _read_ready_line(proc, ready_timeout_s)
    except StartError as exc:
        tail = running.stderr_tail()
        running.kill()
        raise StartError(exc.reason, tail) from None
    except BaseException:  # a signal or Ctrl-C while waiting: leave nothing running
        running.kill()
        raise
    match = READY_RE.match(line)
    running.ready_line = line
    running.host, running.port = match["host"], int(match["port"])
    return running


def _read_ready_line(proc: subprocess.Popen, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise StartError(f"no readiness line within {timeout_s:.0f} s")
            if not sel.select(remaining):
                continue
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                code = proc.wait(timeout=5)
                raise StartError(f"exited with code {code} before its readiness line"
                                 + (f" (stdout: {buf.decode(errors='replace')!r})" if buf else ""))
            buf += chunk
            for raw in buf.split(b"\n")[:-1]:
                line = raw.decode(errors="replace").strip()
                if READY_RE.match(line):
                    return line
            if len(buf) > 65536:
                raise StartError(f"no readiness line in its first 64 KiB of stdout: {buf[:200]!r}")


def start_command(
    name: str,
    argv: list[str],
    *,
    port: int | None = None,
    cpus: list[int] | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> RunningServer:
    """Start any command as an echo server (``bench run --server NAME='CMD'``): in its own
    session like a registry server, stdout and stderr both into the log file (a chatty server
    never blocks on a pipe nobody reads). Ready when it prints the readiness line, or, given
    ``port``, as soon as 127.0.0.1:``port`` accepts a connection (for servers that print no such
    line, e.g. vmbench's); the ready_line is then made up, saying so."""
    log = tempfile.NamedTemporaryFile(prefix="lab-server-", suffix=".log", delete=False)
    t0 = time.monotonic()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True,
                                preexec_fn=_preexec(cpus, None) if cpus else None)
    except OSError as exc:
        log.close()
        os.unlink(log.name)
        raise StartError(f"could not run {argv[0]!r}: {exc.strerror}") from None
    running = RunningServer(name, proc, "", 0, "", log, t0)
    try:
        return _wait_ready(running, name, port, ready_timeout_s)
    except BaseException:  # StartError, or a signal while waiting: leave nothing running
        running.kill()
        raise


def _wait_ready(running: RunningServer, name: str, port: int | None,
                ready_timeout_s: float) -> RunningServer:
    import socket
    proc = running.proc
    deadline = running.start_s + ready_timeout_s
    while True:
        text = running.stderr_tail(65536)
        for line in text.splitlines():
            if (match := READY_RE.match(line.strip())):
                running.ready_line = line.strip()
                running.host, running.port = match["host"], int(match["port"])
                return running
        if port is not None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                pass
            else:
                running.host, running.port = "127.0.0.1", port
                running.ready_line = (f"(made up by the harness: {name} printed no readiness "
                                      f"line; 127.0.0.1:{port} accepted a connection)")
                return running
        if (code := proc.poll()) is not None:
            raise StartError(f"exited with code {code} before it was ready", running.stderr_tail())
        if time.monotonic() > deadline:
            tail = running.stderr_tail()
            what = f"nor accepted on port {port}" if port is not None else \
                "(give the port it listens on: NAME='CMD ... {port} ...')"
            raise StartError(f"printed no readiness line within {ready_timeout_s:.0f} s {what}",
                             tail)
        time.sleep(0.05)
