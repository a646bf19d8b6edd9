"""The plumbing every echo server shares, so that each server file shows only its model.

What lives here and nowhere else:

- the command line every server accepts (``--host``, ``--port``, ``--backlog``, ``--work-us``,
  ``--workers`` where the model has workers); a bad option exits 2 with a message;
- the listening socket (SO_REUSEADDR, optional SO_REUSEPORT) and the fd limit raised to the hard
  limit, so a server can hold as many connections as the OS lets the process have;
- the readiness line, ``serving NAME on HOST:PORT (pid N)``, on stdout, flushed: the one line a
  harness (or a person) waits for before connecting; on a free-threaded build its last fact says
  whether the GIL is off (``gil_fact``). Everything else goes to stderr;
- SIGINT/SIGTERM turned into the ``Shutdown`` exception for servers that block in a syscall;
  event-loop servers use their loop's own signal support and call ``log`` the same way;
- the CPU-work knob ``--work-us``: burn that many microseconds of CPU per chunk received, measured
  on the thread's CPU clock, to model a server that does real work per request (lesson 11).

Names used by every server, so that a diff between two servers shows only the model:
``CHUNK_BYTES`` (how much one recv asks for), ``MAX_PENDING_BYTES`` (the output a connection may
have queued before the server stops reading from it), ``FD_EXHAUSTED`` (accept errors that mean
"out of file descriptors, try again later").

The blocking accept loop with its EMFILE back-off is ``accept_blocking`` here, once: the servers
that block in accept() (iterative, threads, threadpool, fork, subinterpreters) call it, so their
files show only what they do with a connection. The multiplexed servers keep their own
non-blocking accept: how a loop waits for the listener is their lesson.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
import time
from collections.abc import Callable

# One recv() asks the kernel for at most this much. 64 KiB matches the default loopback socket
# buffers closely enough that a busy connection drains in a few calls.
CHUNK_BYTES = 64 * 1024

# A client that sends but never reads must not make the server buffer without bound: once this much
# output is queued for one connection, the server stops reading from it until the queue drains.
# Blocking servers get this for free: send() blocks when the kernel's socket buffer is full.
MAX_PENDING_BYTES = 1024 * 1024

# accept() fails with these when the process (EMFILE) or the system (ENFILE) has no free file
# descriptor, or the kernel is short of memory. The pending connection stays in the listen queue,
# so the listener stays readable: retrying at once would spin a CPU. Servers back off instead.
FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_BACKOFF_S = 0.1

# accept() can also fail for reasons that concern only the one connection being accepted
# (the client reset it while it sat in the queue). Those are skipped, never fatal.
ACCEPT_TRANSIENT = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})

# The server's registry name, for the readiness line and the log. parse_args sets it, once, from
# the name the server passes in (a function of the options for a file that serves several
# registry entries, e.g. epoll and epoll-edge); nothing else writes it.
NAME = os.path.basename(sys.argv[0])


class Shutdown(BaseException):
    """Raised in the main thread by SIGINT or SIGTERM: stop accepting, close, exit 0.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in a connection
    handler never swallows it.
    """


# ----------------------------------------------------------------------------------------------
# Command line


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid port {text!r}: give a number from 0 to 65535 (0 picks a free port)"
        ) from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"port {port} out of range: give a number from 0 to 65535 (0 picks a free port)"
        )
    return port


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative: give 0 or more")
    return value


def _positive(text: str) -> int:
    value = _non_negative(text)
    if value == 0:
        raise argparse.ArgumentTypeError("0 is not allowed here: give 1 or more")
    return value


def parse_args(
    name: str | Callable[[argparse.Namespace], str],
    doc: str | None,
    *,
    workers: int | None = None,
    workers_help: str = "worker count",
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> argparse.Namespace:
    """Parse the shared options. ``name`` is the server's registry name, or, for a file that
    serves several entries, a function of the parsed options returning it (``lambda args:
    f"{args.loop}-protocol"``); it is ``args.name`` and the name in the readiness line and the
    log. ``workers`` is the default for --workers, or None for models that have no workers.
    ``extra(parser)`` adds the model's own options (e.g. --edge, --loop).
    """
    global NAME
    summary = (doc or "").strip().splitlines()[0] if doc else None
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec:
        prog = f"python -m {main_spec.name}"
    else:  # run as a file, or from python -c
        prog = f"python -m servers.{name.replace('-', '_')}" if isinstance(name, str) \
            else f"python {os.path.basename(sys.argv[0])}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description=summary,
        epilog="Prints 'serving NAME on HOST:PORT (pid N)' once it accepts connections; "
        "SIGINT or SIGTERM stops it (exit 0).",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback only)"
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--backlog",
        type=_positive,
        default=socket.SOMAXCONN,
        help="listen queue length, capped by net.core.somaxconn (default: %(default)s)",
    )
    parser.add_argument(
        "--work-us",
        type=_non_negative,
        default=0,
        metavar="N",
        help="burn N microseconds of CPU per chunk received, before echoing it (default: 0)",
    )
    if workers is not None:
        parser.add_argument(
            "--workers", type=_positive, default=workers, metavar="N",
            help=f"{workers_help} (default: {workers})",
        )
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.name = NAME = name(args) if callable(name) else name
    return args


def default_workers() -> int:
    """The CPUs this process may run on (its affinity mask), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# ----------------------------------------------------------------------------------------------
# Logging: stderr only, so stdout carries nothing but the readiness line.

_last_logged: dict[str, float] = {}


def log(message: str, *, every_s: float = 0.0) -> None:
    """Write one line to stderr. With ``every_s``, the same message is written at most once per
    that many seconds, so a condition that repeats (EMFILE under load) cannot flood the log."""
    if every_s:
        now = time.monotonic()
        if now - _last_logged.get(message, -every_s) < every_s:
            return
        _last_logged[message] = now
    try:
        print(f"[{NAME} {os.getpid()}] {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed or gone: logging must never kill a server
        pass


# ----------------------------------------------------------------------------------------------
# The listening socket


def raise_fd_limit(wanted: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (or towards ``wanted``, never past the hard
    limit): every connection costs a descriptor, and the soft default (often 1024) is far below
    what the kernel allows. Returns the new soft limit (-1: not Unix). The one helper for this in
    the lab: servers, the load generator's workers and the lessons raise their limit here."""
    try:
        import resource
    except ImportError:  # not Unix
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted if hard == resource.RLIM_INFINITY \
        else min(wanted, hard)
    if target != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log(f"could not raise the fd limit from {soft} to {target}: {exc}")
    return soft


def bind(args: argparse.Namespace, *, reuseport: bool = False) -> socket.socket:
    """Create and bind ``--host``/``--port``; exit with a one-line error if that is impossible."""
    try:
        infos = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        sys.stderr.write(f"{NAME}: cannot listen on {args.host!r}: {exc.strerror}; "
                         "give --host an IP address such as 127.0.0.1\n")
        sys.exit(2)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    # SO_REUSEADDR lets a restarted server bind while old connections sit in TIME_WAIT.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        # SO_REUSEPORT lets several sockets bind the same port; the kernel hashes each new
        # connection to one of them (lesson 02).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = ("pick another --port, or --port 0 for a free one"
                if exc.errno == errno.EADDRINUSE else "check --host and --port")
        sys.stderr.write(f"{NAME}: cannot listen on {args.host}:{args.port}: "
                         f"{exc.strerror}; {hint}\n")
        sys.exit(1)
    return sock


def listen(args: argparse.Namespace, *, reuseport: bool = False) -> socket.socket:
    """Create, bind and listen; exit with a one-line error if that is impossible."""
    sock = bind(args, reuseport=reuseport)
    sock.listen(args.backlog)
    return sock


def announce(sock: socket.socket, detail: str = "") -> None:
    """Print the readiness line: the contract with every harness. Called once, after listen().
    On a free-threaded build the last fact is the GIL's state (gil_fact)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    facts = [fact for fact in (detail, gil_fact()) if fact]
    extra = "".join(f", {fact}" for fact in facts)
    print(f"serving {NAME} on {shown}:{port} (pid {os.getpid()}{extra})", flush=True)


def gil_fact() -> str:
    """"GIL disabled" or "GIL enabled" on a free-threaded build (3.13t, 3.14t), "" on one with a
    GIL (always on: nothing to say). Read when the server is ready, after its imports: importing
    an extension module that does not declare it can run without the GIL turns it back on for
    the whole process (with a RuntimeWarning), and a harness can only learn that from here."""
    if not hasattr(sys, "_is_gil_enabled"):  # before 3.13: no free-threaded build exists
        return ""
    import sysconfig
    if not sysconfig.get_config_var("Py_GIL_DISABLED"):
        return ""
    return "GIL enabled" if sys._is_gil_enabled() else "GIL disabled"


def accept_blocking(listener: socket.socket) -> socket.socket:
    """Sleep in accept() until a client connects; return its socket, with TCP_NODELAY set.

    The accept loop of every blocking server. Out of file descriptors (EMFILE and kin) the
    pending client stays in the listen queue, so retrying at once would fail again at once and
    spin a CPU: log (at most every 5 s) and sleep ACCEPT_BACKOFF_S before the next try. A client
    that reset its connection while it waited in the queue (ECONNABORTED...) is skipped. Any
    other error is the server's own and is raised. A signal (SIGTERM) interrupts the accept()
    and raises Shutdown through this function.
    """
    while True:
        try:
            conn, _ = listener.accept()  # the calling thread sleeps here
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                time.sleep(ACCEPT_BACKOFF_S)
            elif exc.errno not in ACCEPT_TRANSIENT:
                raise
            continue
        set_nodelay(conn)
        return conn


def set_nodelay(conn: socket.socket) -> None:
    """Disable Nagle's algorithm: an echo server writes small replies that must leave at once,
    not wait for the ACK of the previous segment (which delayed ACK holds back up to 40 ms)."""
    try:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # the peer already reset the connection
        pass


# ----------------------------------------------------------------------------------------------
# Signals


def _raise_shutdown(signum, frame):
    # A second signal while we clean up must not interrupt the cleanup half-way: from now on
    # SIGINT and SIGTERM are ignored; the server is already on its way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Shutdown(signal.Signals(signum).name)


def install_shutdown_handlers() -> None:
    """SIGINT and SIGTERM raise ``Shutdown`` in the main thread. A blocking accept() or recv()
    in the main thread is interrupted: Python runs the handler, and the exception it raises ends
    the call (PEP 475 retries interrupted calls only when the handler returns normally)."""
    signal.signal(signal.SIGINT, _raise_shutdown)
    signal.signal(signal.SIGTERM, _raise_shutdown)


def ignore_shutdown_signals() -> None:
    """For a forked child that its parent stops: default SIGTERM (die), ignore the terminal's
    SIGINT so Ctrl-C reaches the parent, which then stops its children in order."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


HELD_WHILE_FORKING = (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD)


def fork_tracked(children: set[int]) -> int:
    """fork(), with the new child's PID in ``children`` before the parent can be stopped.

    Returns the PID in the parent and 0 in the child, as fork() does; the child has SIGTERM and
    SIGINT as ``ignore_shutdown_signals`` sets them and SIGCHLD at its default. SIGTERM, SIGINT
    and SIGCHLD are held (blocked, so they wait, pending) from just before fork() until the PID
    is recorded in the parent and the handlers are set in the child. Without that, a SIGTERM
    landing as fork() returns raises Shutdown before the PID is recorded: terminate_children
    never signals that child and it outlives the server, serving its client. And a child that
    exits at once would be reaped by a SIGCHLD handler before it was recorded, leaving a PID in
    ``children`` that the kernel may give to someone else. A child does not inherit pending
    signals, so the ones held here are delivered to the parent alone, the moment they are let go.
    The mask is the calling thread's: this holds in a parent with no other thread (as in the
    servers that call it), since another thread would take the signal and Python would still run
    the handler in the main thread.
    """
    held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_WHILE_FORKING)
    try:
        pid = os.fork()
        if pid == 0:
            ignore_shutdown_signals()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        else:
            children.add(pid)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)
    return pid


def terminate_children(pids: set[int], grace_s: float = 1.0) -> None:
    """SIGTERM each child in ``pids``, reap them all, SIGKILL any still alive after ``grace_s``.
    Leaves no zombie and no orphan; empties ``pids``."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace_s
    while pids:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # none left to wait for
            break
        if pid:
            pids.discard(pid)
        elif time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            deadline = float("inf")
        else:
            time.sleep(0.01)
    pids.clear()


# ----------------------------------------------------------------------------------------------
# The CPU-work knob


def burn_cpu(work_us: int) -> None:
    """Spin for ``work_us`` microseconds of this thread's CPU time.

    The thread CPU clock counts only time this thread actually ran, so the work costs the same
    CPU whether or not the scheduler preempts the thread meanwhile; wall time can be longer.
    """
    if work_us <= 0:
        return
    deadline = time.thread_time_ns() + work_us * 1000
    while time.thread_time_ns() < deadline:
        pass


# ----------------------------------------------------------------------------------------------
# Entry point


def run(serve, args: argparse.Namespace) -> None:
    """Run ``serve(args)`` with the fd limit raised and signals handled; exit 0 on Shutdown."""
    raise_fd_limit()
    install_shutdown_handlers()
    try:
        serve(args)
    except Shutdown as why:
        log(f"{why}: shut down")
    sys.exit(0)


def bind_only(args: argparse.Namespace) -> socket.socket:
    """Bind ``--host``/``--port`` without listening, with SO_REUSEADDR and without SO_REUSEPORT;
    exit with listen()'s one-line error if that is impossible. A server whose processes each
    open their own SO_REUSEPORT listener (reuseport) calls it first: to learn the port --port 0
    picks, to hold it while they bind, and to fail with "in use" if any socket, with or without
    SO_REUSEPORT, already listens there. A socket that never listens receives no connection."""
    return bind(args)
