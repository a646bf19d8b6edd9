"""asyncio-streams: a coroutine per connection on asyncio's event loop (lesson 10, fibers).

The model: each connection is a coroutine, run as a Task, that reads like the blocking server's
loop: `await reader.read()`, burn, `writer.write()`, `await writer.drain()`. Where the blocking
server would block, the coroutine awaits: it suspends (its frame stays on the heap, a stackless
fiber, like the `generators` server's tasks) and control returns to the event loop, which sleeps
in epoll_wait() until a socket is ready and then resumes the coroutine that waits for it. Under
the streams sits the Protocol layer of `asyncio-protocol`: StreamReaderProtocol fills the
StreamReader's buffer from data_received() and wakes the coroutine waiting in read().

Backpressure: writer.write() never blocks, it appends to the transport's output buffer; `await
writer.drain()` suspends the coroutine while that buffer is above its high-water mark (set here to
MAX_PENDING_BYTES) and resumes it once it drains to a quarter of that. While the coroutine waits
in drain() it does not read, and the StreamReader pauses reading from the socket once its own
buffer holds 2 x its limit (64 KiB by default): a client that never reads costs ~1.1 MiB at most.

Accepting is one more coroutine, accept_loop, which starts a Task per connection: loop.sock_accept()
suspends it until a client is queued, and asyncio.open_connection(sock=conn) wraps the accepted
socket in a transport, a StreamReader and a StreamWriter. asyncio.start_server() would run an
accept loop of its own; we do not use it because of what it does when out of file descriptors
(see asyncio_protocol.py: CPython 3.11's retries accept() thousands of times per second, uvloop's
closes the queued connections). Ours logs, waits ACCEPT_BACKOFF_S and accepts again.

Shutdown cancels every Task: CancelledError is raised where each coroutine waits, its `finally`
closes its connection. (trio makes this structure the rule: see the `trio` server.)

--loop uvloop runs the same coroutines on uvloop (libuv, written in Cython); the registry lists
both: `asyncio-streams` and `uvloop-streams`.

Syscalls: epoll_create1, epoll_ctl, epoll_wait, accept4, recvfrom, sendto, close (uvloop: through
libuv, read() and write()/writev()).
Limits: one thread, one core. A coroutine runs until its next await: CPU work (--work-us) stalls
every other connection (lesson 11). Each connection costs a Task, a coroutine frame, a reader, a
writer and a transport: a few KiB, more than a bare Protocol. TCP_NODELAY: we set it on each
accepted socket; both loops also set it on every TCP transport they create.

Run it:  make serve SERVER=asyncio-streams   (or uvloop-streams)   then nc 127.0.0.1 PORT
Watch it:  strace -e trace=epoll_wait,epoll_ctl,accept4,recvfrom,sendto -p PID; in Python,
asyncio.all_tasks() lists one Task per connection, plus the accept loop and the main one.
"""

from __future__ import annotations

import asyncio
import signal

from servers.asyncio_protocol import add_loop_option, loop_factory  # the same --loop option
from servers.common import (
    ACCEPT_BACKOFF_S, ACCEPT_TRANSIENT, CHUNK_BYTES, FD_EXHAUSTED, MAX_PENDING_BYTES,
    announce, burn_cpu, listen, log, parse_args, run, set_nodelay,
)


async def handle_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                            work_us: int) -> None:
    """Echo until the client closes its side, then close ours. One Task per connection."""
    # drain() waits while more than this much output is buffered for this client
    writer.transport.set_write_buffer_limits(high=MAX_PENDING_BYTES)
    try:
        while True:
            data = await reader.read(CHUNK_BYTES)  # this coroutine sleeps here; the others run
            if not data:
                return  # the client half-closed: everything it sent has been echoed
            burn_cpu(work_us)
            writer.write(data)
            await writer.drain()  # backpressure: wait while the client is not reading
    except OSError as exc:  # reset or broken pipe: end this connection only
        log(f"connection dropped: {exc.strerror or exc}", every_s=5)
    finally:
        writer.close()  # the transport sends what is still buffered, then closes the socket


async def accept_loop(listener, work_us: int, tasks: set[asyncio.Task]) -> None:
    """Accept forever, one new Task per connection."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            conn, _ = await loop.sock_accept(listener)  # suspended until a client is queued
        except OSError as exc:
            if exc.errno in FD_EXHAUSTED:
                log(f"accept: {exc.strerror}; backing off", every_s=5)
                await asyncio.sleep(ACCEPT_BACKOFF_S)  # the listener stays readable: do not spin
            elif exc.errno not in ACCEPT_TRANSIENT:
                raise
            continue
        set_nodelay(conn)  # the loops set it on their transports too; here it is visible
        reader, writer = await asyncio.open_connection(sock=conn)  # a transport, reader, writer
        task = asyncio.create_task(handle_connection(reader, writer, work_us))
        tasks.add(task)  # the loop holds only a weak reference to a task: we keep it alive
        task.add_done_callback(tasks.discard)


async def serve_forever(listener, args, detail: str) -> None:
    """Serve on the loop that runs this coroutine until SIGINT or SIGTERM."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task] = set()  # one per open connection, so shutdown can end them
    listener.setblocking(False)  # with no client queued, accept() must fail (EAGAIN), not block
    accepting = asyncio.create_task(accept_loop(listener, args.work_us, tasks))

    def stop(signame: str) -> None:
        log(f"{signame}: shut down")
        accepting.cancel()  # CancelledError is raised in accept_loop, where it waits

    for sig in (signal.SIGINT, signal.SIGTERM):
        # The loop's own signal support: the C handler writes to a pipe the loop watches, and
        # the loop calls stop() between two events, never in the middle of one.
        loop.add_signal_handler(sig, stop, sig.name)
    announce(listener, detail)
    try:
        await accepting  # until a signal cancels it (an error in it ends the server, loudly)
    except asyncio.CancelledError:
        pass
    for task in list(tasks):
        task.cancel()  # CancelledError where it waits; its finally closes the connection


def serve(args) -> None:
    new_loop = loop_factory(args)
    listener = listen(args)
    with asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(serve_forever(listener, args, f"{args.loop} loop"))


if __name__ == "__main__":
    # one file, two registry entries: asyncio-streams and uvloop-streams (--loop uvloop)
    run(serve, parse_args(lambda args: f"{args.loop}-streams", __doc__, extra=add_loop_option))
