"""A child process held in each state of proc(5)'s state letter, safely, to read it from outside.

    with states.sleeping() as pid:          # S: blocked in read(2) on a pipe nobody writes
        procfs.state(pid)                   # "S (sleeping)"

    running()       R   spinning on a CPU (it may show S for an instant while it starts)
    sleeping()      S   interruptible sleep: read(2) on an empty pipe; a signal would wake it
    disk_sleep(t)   D   the parent of a vfork: posix_spawn(t) whose child blocks opening a FIFO
    stopped()       T   stopped by SIGSTOP; waitpid(WUNTRACED) reports it
    (Z, a zombie: lesson 03's watch_a_zombie, a child that exited and was not waited for)

    job_stopped_and_continued()  T by job control: SIGTSTP to a job's process group, then SIGCONT
    background_read()            T by SIGTTIN: a background job reads its (pseudo-)terminal

Each yields the PID once the state is reached (or after STATE_TIMEOUT_S, reading whatever it is)
and ends the child on leaving, whatever happened: every child is killed and reaped. Lessons 03
(the process state model) and 04 (the D state, the T state and job control) use them.
Linux-only: the states are read from /proc/PID/stat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lessons import procfs

STATE_TIMEOUT_S = 5.0
LIFETIME_S = 30.0  # a held child dies by SIGALRM after this, whatever happens to the lesson

# A vfork parent, held in D state: its posix_spawn child (sharing its memory, CLONE_VM|CLONE_VFORK)
# blocks opening a FIFO for reading until we open it for writing. The child has every signal
# blocked (glibc blocks them until exec), so only SIGKILL or the FIFO ends it.
VFORK_HELD = """
import os, sys
pid = os.posix_spawn("{true}", ["true"], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 0, sys.argv[1], os.O_RDONLY, 0)])
os.waitpid(pid, 0)
"""


def wait_for_state(pid: int, letter: str, timeout_s: float = STATE_TIMEOUT_S) -> str | None:
    """Poll /proc/PID/stat until its state letter is `letter` (or time is up): the state seen."""
    deadline = time.monotonic() + timeout_s
    while (seen := procfs.state(pid)) and not seen.startswith(letter) and time.monotonic() < deadline:
        time.sleep(0.001)
    return seen


def wchan(pid: int) -> str | None:
    """The kernel function a sleeping task waits in (/proc/PID/wchan; "0" where hidden or running)."""
    text = procfs.read(f"/proc/{pid}/wchan")
    return text if text not in (None, "", "0") else None


@contextmanager
def _forked(body) -> Iterator[int]:
    """Fork a child that runs body() (bounded by LIFETIME_S); kill and reap it on leaving."""
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(LIFETIME_S))
            body()
        finally:
            os._exit(0)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGKILL)  # also ends a stopped child: SIGKILL needs no SIGCONT
        os.waitpid(pid, 0)


def _spin() -> None:
    while True:
        pass


@contextmanager
def running() -> Iterator[int]:
    with _forked(_spin) as pid:
        wait_for_state(pid, "R")
        yield pid


@contextmanager
def sleeping() -> Iterator[int]:
    r, w = os.pipe()
    try:
        with _forked(lambda: os.read(r, 1)) as pid:  # nobody writes: it sleeps until killed
            wait_for_state(pid, "S")
            yield pid
    finally:
        os.close(r)
        os.close(w)


@contextmanager
def stopped() -> Iterator[int]:
    """T: a child stopped by SIGSTOP (what Ctrl-Z's SIGTSTP does to a job, unless it is caught)."""
    r, w = os.pipe()
    try:
        with _forked(lambda: os.read(r, 1)) as pid:
            os.kill(pid, signal.SIGSTOP)
            os.waitpid(pid, os.WUNTRACED)  # the parent learns of the stop, as a shell does
            yield pid
    finally:
        os.close(r)
        os.close(w)


@contextmanager
def disk_sleep(true: str) -> Iterator[int]:
    """D: a Python child that posix_spawns `true` with a file action that blocks (opening a FIFO);
    while its vfork child waits, it waits for the child to exec, uninterruptibly. Yields the
    Python child's PID; on leaving, opens the FIFO to let everything finish (or kills both)."""
    with tempfile.TemporaryDirectory() as tmp:
        fifo = os.path.join(tmp, "fifo")
        os.mkfifo(fifo)
        child = subprocess.Popen([sys.executable, "-c", VFORK_HELD.format(true=true), fifo],
                                 stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + STATE_TIMEOUT_S
            # Wait until its vfork child exists (a Python starting up can be in D for a moment
            # too, reading its files: that is not the D we want to show).
            while time.monotonic() < deadline and child.poll() is None and not procfs.children(child.pid):
                time.sleep(0.002)
            time.sleep(0.05)  # the vfork child is now blocked opening the FIFO
            yield child.pid
            # Let the vfork child go: open the FIFO's other end (O_NONBLOCK: ENXIO while no reader).
            deadline = time.monotonic() + STATE_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    break
                except OSError:
                    time.sleep(0.002)
            child.wait(timeout=STATE_TIMEOUT_S)
        finally:
            if child.poll() is None:  # never released: kill the held child and its vfork child
                kids = procfs.children(child.pid)
                child.kill()
                for kid in kids:
                    os.kill(kid, signal.SIGKILL)  # its signals are blocked: only SIGKILL ends it
                child.wait()


# -- T by job control: what a shell does with Ctrl-Z, fg and bg -----------------------------------------


def _how(status: int) -> str:
    """waitpid's status in words, as a shell reads it."""
    if os.WIFSTOPPED(status):
        return f"stopped by {signal.Signals(os.WSTOPSIG(status)).name}"
    if os.WIFCONTINUED(status):
        return "continued (SIGCONT)"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited {os.WEXITSTATUS(status)}"


def job_stopped_and_continued(stopped_s: float = 0.3) -> dict:
    """A spinning job in a process group of its own, as a shell starts one: SIGTSTP to the group
    (what the terminal sends on Ctrl-Z), then SIGCONT (fg, bg). What waitpid reported each time,
    the state, and the CPU time the job got while stopped."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)  # a job: its own process group
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(LIFETIME_S))
            _spin()
        finally:
            os._exit(0)
    seen = {}
    try:
        try:
            os.setpgid(pid, pid)  # the shell does it too, whichever of the two runs first
        except OSError:
            pass
        wait_for_state(pid, "R")
        os.killpg(pid, signal.SIGTSTP)
        seen["stop"] = _how(os.waitpid(pid, os.WUNTRACED)[1])
        seen["state"] = procfs.state(pid)
        ran_before = procfs.schedstat(pid)[0]
        time.sleep(stopped_s)
        seen["ran_ms_stopped"] = (procfs.schedstat(pid)[0] - ran_before) / 1e6
        os.killpg(pid, signal.SIGCONT)
        seen["continue"] = _how(os.waitpid(pid, os.WCONTINUED)[1])
        seen["state_after"] = wait_for_state(pid, "R")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return seen


def background_read() -> dict:
    """A session on a pseudo-terminal of its own, as a terminal emulator gives a shell: the "shell"
    (a child that calls setsid and takes the terminal) starts a job in another process group, the
    background, and the job reads the terminal. The kernel stops it with SIGTTIN. Returns what the
    shell's waitpid reported and the job's state, or {"error": why}."""
    import fcntl
    import json
    import termios

    report_r, report_w = os.pipe()
    shell = os.fork()
    if shell == 0:
        try:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(STATE_TIMEOUT_S) + 5)
            os.close(report_r)
            os.setsid()  # a new session, with no controlling terminal yet
            master, terminal = os.openpty()
            fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)  # now this session's terminal; we are in front
            job = os.fork()
            if job == 0:
                os.setpgid(0, 0)  # a process group of its own, not the terminal's foreground one
                os.read(terminal, 1)  # a background read: SIGTTIN stops us here
                os._exit(0)
            os.setpgid(job, job)
            seen = {"job": _how(os.waitpid(job, os.WUNTRACED)[1]), "state": procfs.state(job)}
            os.write(report_w, json.dumps(seen).encode())
            os.kill(job, signal.SIGKILL)
            os.waitpid(job, 0)
        except BaseException as e:  # noqa: BLE001  (said to the parent, never raised in a fork)
            os.write(report_w, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        finally:
            os._exit(0)
    os.close(report_w)
    try:
        data = b""
        deadline = time.monotonic() + STATE_TIMEOUT_S
        while time.monotonic() < deadline and (chunk := os.read(report_r, 4096)):
            data += chunk
        return json.loads(data) if data else {"error": "the shell said nothing"}
    finally:
        os.close(report_r)
        try:
            os.kill(shell, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(shell, 0)
