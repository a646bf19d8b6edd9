"""gevent: a greenlet per connection, blocking-style code on an event loop (lesson 10, fibers).

The model: the `threads` server's code, with each thread replaced by a greenlet: a stackful
fiber. All greenlets run on the one thread's C stack; switching out of one copies the slice of
stack it uses to the heap, switching back copies it back (greenlet's "stack slicing"), so a
greenlet can be suspended deep inside any call. A greenlet calls
conn.recv() exactly as a thread would; but conn is a gevent socket: non-blocking underneath, its
recv() tries the syscall and, on EAGAIN, registers the fd with the event loop and switches to the
hub, the greenlet that runs the loop (libev or libuv). The hub sleeps in epoll_wait() and switches
back into whichever greenlet's socket became ready. No `await` anywhere: the switch happens inside
the call, which is why gevent can run code written for threads (and why monkey-patching works).

gevent's StreamServer is the accept loop: it watches the listening socket with the loop, accepts,
and spawns handle_connection(conn, address) in a new greenlet. Backpressure comes for free, as
with threads: a greenlet blocked in sendall() does not recv() again, so its pending output is one
chunk (CHUNK_BYTES).

No monkey-patching. gevent.monkey.patch_all() swaps the stdlib's blocking modules (socket, ssl,
time, select, threading, ...) for gevent's cooperative ones, so that code you cannot change (a
library calling socket.create_connection() or time.sleep()) switches instead of blocking the one
thread. This server has no such code: every socket it blocks on is a gevent socket already
(StreamServer hands one to the handler), the listener only needs to be non-blocking, and
gevent.signal_handler() stands in for the signal module. Patching would change nothing here but
hide where the switches happen. gevent is imported first all the same: a program that does patch
must do it before anything imports socket or threading, and the habit costs nothing.

The loop backend matters for speed, so the readiness line names it: libev-cext (gevent's default
on CPython: libev and the loop glue compiled as a C extension), libev-cffi, or libuv-cffi (libuv,
the loop of Node.js and uvloop, through cffi). Pick one with --gevent-loop NAME, or with the
GEVENT_LOOP environment variable that gevent itself reads (--gevent-loop wins). The registry pins
libev-cext, so that results from different machines compare like with like.

Out of file descriptors: StreamServer already stops watching the listener after an accept error
and retries after a delay, but reports each error with a traceback; our do_read() catches
EMFILE/ENFILE first, logs one line every few seconds and pauses accepting for ACCEPT_BACKOFF_S.

Syscalls: epoll_create1, epoll_ctl, epoll_wait, accept4, recvfrom, sendto, close.
Limits: one thread, one core; a greenlet that burns CPU (--work-us) never yields and delays every
other (lesson 11). Each greenlet costs its saved stack slice (a few KiB, more when deep), more
than a coroutine frame, far less than a thread. TCP_NODELAY: set by us on every connection.

Run it:  make serve SERVER=gevent  [ARGS="--gevent-loop libuv-cffi"]    then nc 127.0.0.1 PORT
Watch it:  strace -e trace=epoll_wait,epoll_ctl,recvfrom,sendto -p PID
"""

from __future__ import annotations

import gevent  # first, by habit: a program that monkey-patches must patch before other imports
import gevent.pool
import gevent.server

import argparse
import functools
import signal

from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)

# gevent's loop classes by their module, and the short names gevent's own config uses for them
LOOP_BACKENDS = {
    "gevent.libev.corecext": "libev-cext",
    "gevent.libev.corecffi": "libev-cffi",
    "gevent.libuv.loop": "libuv-cffi",
}


def handle_connection(conn, address, work_us: int) -> None:
    """Echo until the client closes its side, then close ours. Runs in its own greenlet."""
    set_nodelay(conn)
    try:
        while True:
            data = conn.recv(CHUNK_BYTES)  # this greenlet switches to the hub here; others run
            if not data:
                return  # the client half-closed: everything it sent has been echoed
            burn_cpu(work_us)
            conn.sendall(data)  # switches to the hub while the kernel's send buffer is full
    except OSError as exc:  # reset or broken pipe: end this connection only
        log(f"connection dropped: {exc.strerror or exc}", every_s=5)
    finally:
        conn.close()  # also when shutdown kills this greenlet (GreenletExit, raised in recv)


class EchoServer(gevent.server.StreamServer):
    """StreamServer, with accept errors handled the way every server in the lab handles them."""

    def do_read(self):
        try:
            return super().do_read()  # accept one connection, or None if there is none
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                # the listener stays readable: stop watching it for a while, or the loop spins
                self.stop_accepting()
                gevent.spawn_later(ACCEPT_BACKOFF_S, self.resume_accepting)
                return None
            if exc.errno in ACCEPT_TRANSIENT:
                return None
            raise

    def resume_accepting(self) -> None:
        if self.started:  # not if shutdown closed the server meanwhile
            self.start_accepting()


def loop_backend() -> str:
    loop_type = type(gevent.get_hub().loop)
    return LOOP_BACKENDS.get(loop_type.__module__, f"{loop_type.__module__}.{loop_type.__name__}")


def gevent_loop(name: str) -> str:
    """--gevent-loop: tell gevent which loop to create (before the hub exists), or fail as a
    bad option (exit 2) if that backend is not installed here."""
    try:
        gevent.config.loop = name
    except (ImportError, ValueError) as exc:
        raise argparse.ArgumentTypeError(
            f"gevent loop backend {name!r} is not usable here ({exc}); "
            f"try one of {', '.join(LOOP_BACKENDS.values())}") from None
    return name


def add_loop_option(parser) -> None:
    parser.add_argument("--gevent-loop", type=gevent_loop, metavar="NAME",
                        help="gevent loop backend: libev-cext, libev-cffi or libuv-cffi "
                             "(default: GEVENT_LOOP, else gevent's default, libev-cext)")


def serve(args) -> None:
    listener = listen(args)
    listener.setblocking(False)  # StreamServer accepts only when the loop says it is readable
    greenlets = gevent.pool.Pool()  # unbounded: one greenlet per connection, so shutdown can end them
    server = EchoServer(listener, functools.partial(handle_connection, work_us=args.work_us),
                        spawn=greenlets)

    def shut_down(signame: str) -> None:  # runs in a greenlet of its own, spawned by the hub
        log(f"{signame}: shut down")
        server.close()  # stop accepting; serve_forever() returns

    for sig in (signal.SIGINT, signal.SIGTERM):
        # Python's handler (common.run's, raising Shutdown) would raise in whichever greenlet
        # happens to run, the hub's perhaps; gevent's signal watcher calls shut_down in a
        # greenlet of its own, between two events.
        gevent.signal_handler(sig, shut_down, sig.name)
    server.start()
    announce(listener, f"gevent {loop_backend()} loop")
    # On the way out, serve_forever() stops the server: it waits stop_timeout for the greenlets
    # to end, then kills the rest. Echo connections never end by themselves, so no wait: unlike
    # a thread, a greenlet can be killed; GreenletExit is raised where it blocks, in recv().
    server.serve_forever(stop_timeout=0)


if __name__ == "__main__":
    run(serve, parse_args("gevent", __doc__, extra=add_loop_option))
