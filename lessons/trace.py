"""strace for the lessons: which system calls a program makes, and how many a running server makes.

    why = unavailable()                      # None, or why strace cannot run here and the fix
    lines, stdout = run(argv, "clone,clone3")  # argv under strace -f -e trace=...: its lines
    method, how = counting_method()          # "strace", "perf" or None for a server's counts
    counter = Counter(method, pid); ...; calls = counter.stop()   # syscall -> count

strace rests on ptrace(2): it may be missing (apt-get install strace), or ptrace may be forbidden
(a container without CAP_SYS_PTRACE, /proc/sys/kernel/yama/ptrace_scope). Every entry point says
which, so a lesson skips the measurement with a reason a reader can act on instead of failing.

Linux-only (strace and perf are Linux tools).
"""

from __future__ import annotations

import functools
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from lessons.common import linux_only

RUN_TIMEOUT_S = 60.0  # one traced program, start to exit
ATTACH_TIMEOUT_S = 10.0  # strace -p says "attached" within this
PTRACE_FIX = ("ptrace may be forbidden here (containers: --cap-add SYS_PTRACE; "
              "/proc/sys/kernel/yama/ptrace_scope)")


class StraceUnavailable(Exception):
    """strace cannot show this here; the text says why and what fixes it."""


@functools.cache
def unavailable() -> str | None:
    """None if strace runs and may trace here, else why not (probed once, on `true`)."""
    why = linux_only("strace")
    if why:
        return why
    if not shutil.which("strace"):
        return "strace is not installed: apt-get install strace"
    try:
        probe = subprocess.run(["strace", "-qq", "-e", "trace=none", "true"], capture_output=True,
                               text=True, timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"strace did not run: {e}"
    if probe.returncode != 0:
        return f"strace cannot trace here ({probe.stderr.strip()[-120:]}): {PTRACE_FIX}"
    return None


def run(argv: list[str], trace: str, timeout_s: float = RUN_TIMEOUT_S) -> tuple[list[str], str]:
    """Run ``argv`` under ``strace -f -qq -e trace=TRACE``; return (strace's lines, each starting
    with the PID of the task that made the call, and the program's stdout). Raises
    StraceUnavailable with the reason and the fix."""
    why = unavailable()
    if why:
        raise StraceUnavailable(why)
    with tempfile.TemporaryDirectory(prefix="lesson-strace-") as tmp:
        out = Path(tmp) / "trace"
        try:
            done = subprocess.run(["strace", "-f", "-qq", "-o", str(out), "-e", f"trace={trace}", *argv],
                                  capture_output=True, text=True, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise StraceUnavailable(f"strace of {Path(argv[0]).name} took over {timeout_s:.0f} s") from None
        lines = out.read_text().splitlines() if out.exists() else []
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise StraceUnavailable(f"strace failed ({tail}); {PTRACE_FIX}")
    return lines, done.stdout


def without_pid(line: str) -> str:
    """A line of ``run`` without the PID column strace -f puts first."""
    return re.sub(r"^\d+\s+", "", line)


# -- counting a running server's system calls ---------------------------------------------------------


def counting_method() -> tuple[str | None, str]:
    """("strace" | "perf" | None, how it is described, or why nothing can count here)."""
    why_not = linux_only("counting a server's syscalls (strace, perf)")
    if why_not:
        return None, why_not
    if shutil.which("strace"):
        return "strace", "strace -c -f -p PID (attached to the server)"
    if shutil.which("perf"):
        return "perf", "perf stat -e raw_syscalls:sys_enter -p PID (totals only)"
    return None, "neither strace nor perf is installed (apt install strace)"


class Counter:
    """strace or perf attached to ``pid`` until ``stop()``; then ``calls`` maps syscall -> count."""

    def __init__(self, method: str, pid: int):
        self.method = method
        self.out = tempfile.NamedTemporaryFile(prefix="lesson-count-", suffix=".txt", delete=False)
        self.out.close()
        if method == "strace":
            argv = ["strace", "-c", "-f", "-o", self.out.name, "-p", str(pid)]
        else:
            argv = ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o", self.out.name,
                    "-p", str(pid)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        if method == "strace":  # it says "Process N attached" once it traces
            ready, _, _ = select.select([self.proc.stderr], [], [], ATTACH_TIMEOUT_S)
            line = self.proc.stderr.readline().decode(errors="replace") if ready else ""
            if "attached" not in line:
                self.kill()
                raise RuntimeError(f"strace could not attach: {line.strip() or 'no answer'} "
                                   "(ptrace not allowed here? see /proc/sys/kernel/yama/ptrace_scope)")
        else:
            time.sleep(0.5)  # perf says nothing when it starts counting; give it time
        self.calls: dict[str, int] = {}

    def stop(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)  # both write their summary on SIGINT
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with open(self.out.name) as f:
            text = f.read()
        self.kill()
        if self.method == "strace":
            for line in text.splitlines():
                fields = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(fields) >= 5 and re.fullmatch(r"[\d.]+", fields[0]) and fields[-1] != "total":
                    self.calls[fields[-1]] = int(fields[3])
        else:
            for line in text.splitlines():
                fields = line.split(",")
                if len(fields) > 2 and "raw_syscalls:sys_enter" in line and fields[0].isdigit():
                    self.calls["all syscalls"] = int(fields[0])
        return self.calls

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        try:
            os.unlink(self.out.name)
        except OSError:
            pass
