"""The lab's servers written outside Python (C, Go, Node, Erlang, Java): build at first use, then exec.

    python -m servers.native NAME [server options]     e.g.  python -m servers.native go --procs 2

NAME is a registry entry whose ``source`` is a file under ``servers/`` (``servers/go/echo.go``).
This module builds that source through ``servers/build.py`` (cached by source hash, so only the
first start compiles) and then replaces itself with the program by ``os.execv``: the pid that
printed ``serving NAME on ...`` is the pid the harness started, and SIGINT/SIGTERM reach the
server directly, with no Python process in between. So ``python -m servers serve go``,
``make serve SERVER=go``, ``servers.launch.start`` and any tool that reads ``python -m servers
--json`` start these servers exactly as they start the Python ones.

The program gets the options unchanged and parses them itself: every server keeps the contract
on its own, also when run without this launcher.

A missing toolchain is not an error of the lab: ``probe_*`` (run by the registry in a child
process) answers "no Go toolchain (go) on PATH: apt-get install golang-go", the server is listed
as unavailable with that reason, and its tests skip with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

from servers import build

# The Erlang runtime, told to sleep when idle: by default BEAM's schedulers spin a little before
# they sleep (busy wait, +sbwt), which shows as CPU use on an idle server.
ERL_FLAGS = ("-noshell", "-noinput", "+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none")
# The JVM with the serial collector: no GC worker threads beside the carriers (G1 starts several),
# for a heap that an echo server keeps small.
JAVA_FLAGS = ("-XX:+UseSerialGC",)


def command(name: str, options: list[str]) -> list[str]:
    """The argv that runs registry entry ``name`` (building it if needed); Unavailable if not."""
    from servers import get
    entry = get(name)
    if not entry.source:
        raise ValueError(f"{name} is a Python server: run python -m {entry.module}")
    kind = build.KIND_BY_SUFFIX[os.path.splitext(entry.source)[1]]
    artefact = build.build(entry.source)
    if kind in ("c", "go"):
        return [str(artefact), *options]
    if kind == "node":
        return [build.tool("node"), str(artefact), *options]
    if kind == "java":
        main_class = os.path.splitext(os.path.basename(entry.source))[0]
        return [build.java_runtime(), *JAVA_FLAGS, "-cp", str(artefact), main_class, *options]
    erl = shutil.which("erl")
    if not erl:
        raise build.Unavailable("no Erlang runtime (erl) on PATH: apt-get install erlang-base")
    module = os.path.splitext(os.path.basename(entry.source))[0]
    # -s MODULE main calls MODULE:main(); it reads what follows -extra with init:get_plain_arguments
    return [erl, *ERL_FLAGS, "-pa", str(artefact), "-s", module, "main", "-extra", *options]


def why_not(name: str) -> str | None:
    """None if ``name`` builds and its runtime is here, else the reason with the fix."""
    try:
        command(name, [])
    except build.Unavailable as exc:
        return str(exc)
    return None


# One probe per entry: the registry's probes are "module:function" with no arguments.
def probe_c_epoll() -> str | None:
    return why_not("c-epoll")


def probe_c_uring() -> str | None:
    """Built, and can io_uring run here as c-uring needs it (Linux 6.0+, not refused by seccomp
    or kernel.io_uring_disabled)? The program answers for itself: ``echo_uring --probe``."""
    why = why_not("c-uring")
    if why:
        return why
    try:
        done = subprocess.run(command("c-uring", ["--probe"]), capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"echo_uring --probe did not run: {exc}"
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1].removeprefix("c-uring: ")
    return None


def probe_go() -> str | None:
    return why_not("go")


def probe_node() -> str | None:
    return why_not("node")


def probe_erlang() -> str | None:
    return why_not("erlang")


def probe_java() -> str | None:
    return why_not("java")


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: python -m servers.native NAME [server options]")
        sys.exit(0 if argv else 2)
    name, options = argv[0], argv[1:]
    try:
        argv_exec = command(name, options)
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        sys.exit(2)
    except (ValueError, build.Unavailable) as exc:
        sys.stderr.write(f"server {name!r} is not available here: {exc}\n")
        sys.exit(2)
    # Python ignores SIGPIPE, and an ignored signal stays ignored across exec: give the program the
    # default disposition, as a shell would; each runtime then sets up SIGPIPE as it expects.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if argv_exec[0].endswith("erl"):
        # a crashing runtime writes erl_crash.dump into the current directory: not into the lab's
        os.environ.setdefault("ERL_CRASH_DUMP_SECONDS", "0")
        # BEAM's SIGINT handler (its BREAK menu) reads the choice from stdin: at end of file it
        # halts with status 0 at once, which is the contract's SIGINT; a terminal would wait.
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
    sys.stdout.flush()
    os.execv(argv_exec[0], argv_exec)


if __name__ == "__main__":
    main(sys.argv[1:])
