"""The load generator: a fast echo client that measures throughput and latency of any echo server.

    python -m bench.load --target 127.0.0.1:9000 --conns 64 --size 1024 --duration 5
    python -m bench.load --target 127.0.0.1:9000 --rate 20000 --json

It opens `--conns` TCP connections spread over several worker processes (one uvloop event loop
each, so the client is not limited to one core), sends random payloads and checks every echoed byte.

Closed loop vs open loop
------------------------
Closed loop (the default): each connection has exactly one message in flight and sends the next
one as soon as the full echo of the previous one is back. Load adapts to the server: a slow server
simply gets fewer requests. Latency is measured from the send to the last echoed byte. This answers
"how many round trips per second can the server do with N concurrent clients?".

Open loop (`--rate R`): requests are sent on a fixed schedule, R per second in total, whatever the
server does, like independent users who do not wait for each other. Each connection has its own
fixed schedule (R / conns per second, start times staggered so the sends of all connections are
evenly spaced). If a reply is late, the next message waits on that connection (one in flight, like
HTTP/1.1) but the schedule does not slip, and latency is measured from the INTENDED send time.

Coordinated omission
--------------------
Gil Tene's talk "How NOT to measure latency" points out that a closed-loop client stops sending
while the server stalls, so a 300 ms stall shows up as one slow request per connection instead of
the hundreds of requests that real users would have sent, and waited on, during those 300 ms: the
client has "coordinated" with the server to omit the bad samples. Measuring from the intended send
time puts them back. The delay between intended and actual send is reported on its own as
`send_lag_us`: the queueing a late server caused, plus the generator's own timer resolution (tens
of µs with Linux's timerfd, about 1 ms with event loop timers elsewhere).

How a run goes
--------------
1. The parent starts the worker processes (multiprocessing, "spawn" context) and gives each its
   share of the connections. Workers open them in batches (`--ramp-batch` in total per batch, with
   a short pause), so the server's listen queue does not overflow, then report "ready". Every
   connection is a file descriptor: each worker raises its own RLIMIT_NOFILE to the hard limit
   first, and the command line refuses, saying how to raise it, when even that is too low.
2. The parent picks a common start time; every worker warms up for `--warmup` seconds, then
   measures for `--duration` seconds. Only round trips that COMPLETE inside the measured window
   are counted.
3. Each worker sends back its counters and its latency histogram, encoded; the parent merges them.

Errors are counted per kind over the whole run, warm-up included (a broken echo is broken whenever
it happens), and nothing is retried: a connection that fails is closed and stays closed.
- `connect`: refused, unreachable, not connected within `--connect-timeout`, or not attempted
  because the connect phase ran out of its time budget.
- `reset`: ECONNRESET, EPIPE or an unexpected EOF from the server.
- `mismatch`: an echoed byte differs from the byte sent at that position, or an extra byte came.
- `unserved`: a connection still open at the end that got no echo at all, from the start of the
  warm-up to the end of the window: the server accepted it (or the kernel did, into the listen
  queue) but never served it. Counted once per connection, never also as a timeout. In open loop
  only once its first request is older than the stall limit (below): at a low rate over many
  connections (C100K: mostly idle) a connection's first request may come due late in the window,
  or not at all, and it has not been refused anything yet.
- `timeout`: at the end of the window, a request of a served connection still unanswered and older
  than the stall limit (measured from the intended send time in open loop, so queued messages
  count too). Younger unanswered requests are simply cut off by the end of the window: neither a
  latency nor an error. The stall limit is `STALL_TIMEOUT_S` (1 s), except in closed loop with
  many connections, where Little's law sets a floor: N connections served at X round trips/s
  wait N / X seconds per round trip on average even when served in perfect turn (10,000
  connections at 20,000/s: 0.5 s), so a request is a timeout only once it has waited
  `STALL_FAIR_SHARES` times that long. A server that serves some connections and starves others
  shows up as `unserved` (or as timeouts, when it starves them only part of the time).

Every phase is bounded in time, so `run_load` returns within about spawn (<= 15 s) + connect phase
(<= connect_timeout + 0.12 s per ramp batch) + warmup + duration + 5 s even when the server hangs;
workers that do not report by then are killed and named in `warnings`.

The generator reports its own CPU time (user + system, all workers, during the measured window)
and its utilisation of the cores it had: when that is close to 1, the client, not the server, was
the bottleneck, and the runner flags the measurement as `client_bound`.

Two engines, one interface
--------------------------
This file is the Python engine: the readable one, and the fallback. `--engine c` (the default
where it builds) runs the same design in C (bench/load/engine.c: one epoll loop per thread, each
thread pinned to one CPU, wrk2's shape), so that the generator costs less CPU per request than the
servers it measures. Both take the same options, count errors the same way and return the same
summary, plus "engine": which one measured it. The C engine hands its latencies over as
HdrHistogram buckets, recorded here into the same `hdrh` histograms. Past 5,000 connections to a
loopback server it spreads them over several source addresses (127.0.0.1, 127.0.0.2, ...): one
(source, destination) pair has only the ephemeral port range (~28,000 ports), and connect() slows
down as they fill.

Scripts that call `run_load` must guard their top level with `if __name__ == "__main__":`, as for
any "spawn" multiprocessing: each worker starts a fresh interpreter that re-imports the main module.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import signal
import socket
import sys
import time
import traceback
import warnings

from bench import hist

# -- Tunables, each with the reason for its value --------------------------------------------------

STALL_TIMEOUT_S = 1.0  # an unanswered request older than this at the end of the window is a timeout
STALL_FAIR_SHARES = 10  # ...or, in closed loop, older than this many times connections / throughput
RAMP_PAUSE_S = 0.02  # pause between connect batches, so the server can drain its accept queue
CONNECT_BUDGET_PER_BATCH_S = 0.1  # the connect phase may take connect_timeout + this per batch
SPAWN_BUDGET_S = 15.0  # to start a worker and import uvloop; generous, for slow CI machines
START_DELAY_S = 0.05  # the common start time is this far ahead, so all workers begin together
WRAPUP_BUDGET_S = 5.0  # after the window: closing connections, encoding and sending the histograms
FLUSH_EVERY_S = 0.5  # how often a worker moves its latency dict into the histogram...
FLUSH_WHEN_DISTINCT = 20_000  # ...when it holds this many distinct values (bounds its memory)
OFFSET_SPAN_BYTES = 4093  # messages start anywhere in the first 4093 bytes of the random buffer
MESSAGES_PER_WORKER = 1021  # distinct messages (offsets) each worker cycles through, at most...
MESSAGE_MEMORY_BYTES = 256 << 10  # ...as many as fit in 256 KiB, to stay in a core's cache
MESSAGE_COPY_LIMIT_BYTES = 256 << 10  # larger messages are memoryviews into the payload, not copies
MIN_TICK_NS = 100_000  # open loop: ticks of the send timer are at least 0.1 ms apart
MAX_RATE_PER_S = 10_000_000  # far above what Python can send; keeps the schedule's interval >= 1 ns
CPU_HOT_FRACTION = 0.9  # utilisation above which the human output warns that the client was busy
FD_HEADROOM = 64  # open files a worker needs besides its connections: pipes, the loop, imports

_now_ns = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine, in ns

ERROR_KINDS = ("connect", "reset", "mismatch", "unserved", "timeout")
ENGINES = ("c", "python")


# Alternating with a second server (run_load's alt): each server's slices last about this long.
# Short enough that the machine's drift (a VM's neighbours come and go over tenths of a second
# and more) is shared by both servers' slices; long enough that a switch (the other server's
# few in-flight echoes coming back, a Python server waking up) is a small part of a slice.
ALT_SLICE_S = 0.025


def default_engine() -> tuple[str, str | None]:
    """("c", None) where the C engine builds and runs, else ("python", why not and the fix)."""
    from bench.load import c_engine
    ok, why = c_engine.available()
    return ("c", None) if ok else ("python", why)


_fallback_noticed = False


def resolve_engine(engine: str | None) -> str:
    """The engine to use: `engine`, or the default (with a one-time RuntimeWarning when the C
    engine is unavailable). Raises ValueError when "c" is asked for and cannot run here."""
    global _fallback_noticed
    if engine is None:
        name, why = default_engine()
        if why is not None and not _fallback_noticed:
            _fallback_noticed = True
            warnings.warn(f"using the Python load engine: {why}", RuntimeWarning, stacklevel=3)
        return name
    if engine == "c":
        from bench.load import c_engine
        ok, why = c_engine.available()
        if not ok:
            raise ValueError(f"engine 'c' is not available here: {why} (or use engine 'python')")
    return engine


def _loop_implementation() -> str:
    """Which event loop the workers will run: uvloop if installed, else plain asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


# -- The messages ----------------------------------------------------------------------------------


def make_messages(size_bytes: int, seed: int) -> tuple[bytes, list, list[int]]:
    """Random bytes, and messages of exactly `size_bytes` cut from them at random offsets.

    Returns (payload, messages, offsets), messages[i] = payload[offsets[i]:offsets[i] + size_bytes].
    Consecutive messages start at different offsets, so an echo of stale bytes, or of another
    connection's bytes, does not match what was sent.

    Messages are copied out of the payload once, here, as bytes objects: the check of a whole echo
    is then `data == message`, a length check and a memcmp, and uvloop's write() takes bytes as
    they are (anything else it wraps in a new memoryview on every call). Above
    MESSAGE_COPY_LIMIT_BYTES copies would cost too much memory, so messages are memoryviews into the
    payload; such echoes arrive in several reads anyway and are checked piece by piece.
    """
    payload = os.urandom(size_bytes + OFFSET_SPAN_BYTES)
    rng = random.Random(seed)
    if size_bytes <= MESSAGE_COPY_LIMIT_BYTES:
        count = min(MESSAGES_PER_WORKER, max(16, MESSAGE_MEMORY_BYTES // size_bytes))
        source = payload  # slicing bytes copies: each message is its own bytes object
    else:
        count = MESSAGES_PER_WORKER
        source = memoryview(payload)  # slicing a memoryview does not copy
    offsets = [rng.randrange(OFFSET_SPAN_BYTES)]
    while len(offsets) < count:
        offsets.append((offsets[-1] + 1 + rng.randrange(OFFSET_SPAN_BYTES - 1)) % OFFSET_SPAN_BYTES)
    return payload, [source[o:o + size_bytes] for o in offsets], offsets


# -- One connection --------------------------------------------------------------------------------
#
# asyncio Protocols rather than streams: the loop calls data_received() with each chunk it read,
# with no coroutine switch, no StreamReader buffer and no future per message. Per round trip, top to
# bottom in data_received: check the echo, read the clock once, count the latency, write the next
# message. It is written out in one function per mode, not split into helpers, because a Python
# call costs more than the memcmp of a 1 KiB echo, and the generator should cost no more CPU per
# request than the servers it measures.


class _Connection(asyncio.Protocol):
    """What closed- and open-loop connections share: setup, the byte check's slow path, closing."""

    __slots__ = (
        "worker", "transport", "write", "payload", "messages", "offsets", "next_index",
        "message_index", "expected", "received_bytes", "latency_counts", "window_start_ns",
        "window_end_ns", "in_flight", "closing", "closed",
    )

    def __init__(self, worker: _Worker, first_message_index: int) -> None:
        self.worker = worker
        self.transport = None
        self.write = None  # transport.write, hoisted: called once per round trip
        self.payload = worker.payload  # the worker's random bytes, shared by all its connections
        self.messages = worker.messages  # the messages, cut from the payload...
        self.offsets = worker.offsets  # ...at these offsets
        self.next_index = worker.next_index  # i -> i + 1, wrapping around: a lookup, not a branch
        self.message_index = first_message_index  # each connection walks the list from elsewhere
        self.expected = None  # the message in flight, while none of its echo has arrived yet
        self.received_bytes = 0  # how much of the echo in flight arrived, when it comes in pieces
        self.latency_counts = worker.latency.counts  # hoisted: touched once per round trip
        self.window_start_ns = 0  # set by start(): completions outside the window are not counted
        self.window_end_ns = 0
        self.in_flight = False
        self.closing = False  # we are closing it ourselves: connection_lost is not an error
        self.closed = False

    def connection_made(self, transport) -> None:
        # Disable Nagle's algorithm: with it, a small write may wait for the previous segment's ACK,
        # adding up to a delayed-ACK timeout (40 ms on Linux) to a round trip.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport
        self.write = transport.write

    def eof_received(self) -> bool:
        return False  # the server closed its side: let the transport close, connection_lost counts

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.in_flight = False
        if not self.closing:
            # ECONNRESET, EPIPE, or a plain EOF in the middle of an echo: the server hung up on us.
            self.worker.count_error("reset", exc or "unexpected EOF from the server")

    def send_next_message(self) -> None:
        self.message_index = index = self.next_index[self.message_index]
        self.expected = message = self.messages[index]
        self.in_flight = True
        self.write(message)

    def echo_in_pieces(self, data: bytes) -> bool:
        """The byte check when an echo does not come back whole: True once the last piece is in.

        Large messages arrive in several reads, and a server may write back in parts. Each piece is
        compared with the payload at the position it must come from: bytes.startswith(data, pos) is
        a memcmp of `data` against payload[pos:], with no copy. Stale, shuffled, corrupted or extra
        bytes all fail it; a mismatch closes the connection.
        """
        size_bytes = len(self.messages[0])
        start = self.offsets[self.message_index]
        pos = start + self.received_bytes
        if not self.in_flight or self.received_bytes + len(data) > size_bytes \
                or not self.payload.startswith(data, pos):
            self.mismatch(pos - start, data)
            return False
        self.expected = None  # the rest of this echo is checked here, piece by piece
        self.received_bytes += len(data)
        if self.received_bytes < size_bytes:
            return False
        self.received_bytes = 0
        return True

    def mismatch(self, at_byte: int, data: bytes) -> None:
        """The echo differs from what was sent: count it, say where, and close the connection."""
        size_bytes = len(self.messages[0])
        pos = self.offsets[self.message_index] + at_byte
        sent_len = min(len(data), size_bytes - at_byte) if self.in_flight else 0
        sent = self.payload[pos:pos + sent_len]
        first_bad = next((i for i in range(len(sent)) if data[i] != sent[i]), None)
        if first_bad is not None:
            detail = (f"byte {at_byte + first_bad} of a {size_bytes}-byte message came back as "
                      f"{data[first_bad]:#04x}, {sent[first_bad]:#04x} was sent")
        else:
            detail = f"{len(data) - len(sent)} byte(s) more than was sent came back"
        self.worker.count_error("mismatch", detail)
        self.close()  # never retried: the server is broken, this connection's numbers are over

    def close(self) -> None:
        self.in_flight = False  # whatever was in flight is not waited for any more
        if not self.closed and self.transport is not None:
            self.closing = True
            self.transport.abort()  # RST, no lingering: we do not wait for the server to agree


class ClosedLoopConnection(_Connection):
    """One message in flight; the next one goes out the moment the echo of the last one is in."""

    __slots__ = ("sent_at_ns", "first_sent_ns")

    def __init__(self, worker: _Worker, first_message_index: int) -> None:
        super().__init__(worker, first_message_index)
        self.sent_at_ns = 0
        self.first_sent_ns = 0  # when start() sent the first message; the first echo moves on

    def start(self, window_start_ns: int, window_end_ns: int) -> None:
        self.window_start_ns, self.window_end_ns = window_start_ns, window_end_ns
        if not (self.closed or self.closing):
            self.sent_at_ns = self.first_sent_ns = _now_ns()
            self.send_next_message()

    def data_received(self, data: bytes) -> None:
        # The byte check. The common case: the whole echo arrived in one read and equals the message
        # sent (bytes == bytes is a length check and a memcmp). Otherwise, check it piece by piece.
        if data != self.expected and not self.echo_in_pieces(data):
            return

        # The echo is complete. One clock read: the end of this round trip starts the next one.
        now_ns = _now_ns()
        if self.window_start_ns <= now_ns < self.window_end_ns:
            latency_us = (now_ns - self.sent_at_ns) // 1000
            counts = self.latency_counts
            counts[latency_us] = counts.get(latency_us, 0) + 1
        self.sent_at_ns = now_ns

        # send_next_message(), written out to save a call per round trip
        self.message_index = index = self.next_index[self.message_index]
        self.expected = message = self.messages[index]
        self.write(message)

    def served(self, end_ns: int, stall_ns: int) -> bool:
        """At least one echo came back (each echo restarts the clock: sent_at_ns moves on)."""
        return self.sent_at_ns != self.first_sent_ns

    def unanswered_at(self, end_ns: int, stall_ns: int) -> int:
        """Requests without an answer older than `stall_ns` at end_ns (0 or 1 here)."""
        if self.closing or self.closed:
            return 0  # closed after an error, which was counted as such
        return int(self.in_flight and end_ns - self.sent_at_ns >= stall_ns)


class OpenLoopConnection(_Connection):
    """Sends on a fixed schedule: message k is intended at first_send_ns + k * interval_ns.

    The schedule never slips. If message k is due while k-1 is still waiting for its echo, it waits
    its turn on this connection (`due` runs ahead of `sent`) and goes out the moment the echo is in;
    its latency still counts from its intended time, and its send lag shows how long it queued.
    """

    __slots__ = ("first_send_ns", "interval_ns", "due", "sent", "intended_ns", "lag_counts",
                 "offered")

    def __init__(self, worker: _Worker, first_message_index: int, first_send_ns: int,
                 interval_ns: int) -> None:
        super().__init__(worker, first_message_index)
        self.first_send_ns = first_send_ns
        self.interval_ns = interval_ns
        self.due = 0  # how many scheduled sends have come due (the ticker counts them)
        self.sent = 0  # how many have actually been written
        self.intended_ns = 0  # intended send time of the message in flight
        self.lag_counts = worker.send_lag.counts
        self.offered = 0  # scheduled sends inside the measured window, while connected

    def start(self, window_start_ns: int, window_end_ns: int) -> None:
        self.window_start_ns, self.window_end_ns = window_start_ns, window_end_ns

    def next_due_ns(self) -> int:
        return self.first_send_ns + self.due * self.interval_ns

    def fire(self, now_ns: int) -> None:
        """The ticker says: the next scheduled send of this connection is due."""
        intended_ns = self.first_send_ns + self.due * self.interval_ns
        self.due += 1
        if self.closed or self.closing:
            return
        if self.window_start_ns <= intended_ns < self.window_end_ns:
            self.offered += 1
        if not self.in_flight:
            self.send(now_ns)

    def send(self, now_ns: int) -> None:
        """Write the oldest due message; its send lag is how late that is."""
        self.intended_ns = intended_ns = self.first_send_ns + self.sent * self.interval_ns
        self.sent += 1
        if self.window_start_ns <= now_ns < self.window_end_ns:
            lag_us = (now_ns - intended_ns) // 1000
            counts = self.lag_counts
            counts[lag_us] = counts.get(lag_us, 0) + 1
        self.send_next_message()

    def data_received(self, data: bytes) -> None:
        # The same byte check as in closed loop.
        if data != self.expected and not self.echo_in_pieces(data):
            return

        now_ns = _now_ns()
        self.in_flight = False
        if self.window_start_ns <= now_ns < self.window_end_ns:
            # Charged from the INTENDED send time: the coordinated-omission correction.
            latency_us = (now_ns - self.intended_ns) // 1000
            counts = self.latency_counts
            counts[latency_us] = counts.get(latency_us, 0) + 1
        if self.sent < self.due:
            self.send(now_ns)  # a message queued behind this one is already late: send it now
        else:
            self.expected = None  # nothing in flight: any byte that arrives now is a mismatch

    def served(self, end_ns: int, stall_ns: int) -> bool:
        """At least one echo came back, or its first request is younger than the stall limit
        (or was never due): it has not been left waiting yet (see the module docstring)."""
        answered = self.sent - (1 if self.in_flight else 0) > 0
        return answered or self.first_send_ns > end_ns - stall_ns

    def unanswered_at(self, end_ns: int, stall_ns: int) -> int:
        """In-flight plus queued messages whose intended time is older than `stall_ns`."""
        if self.closing or self.closed:
            return 0  # closed after an error, which was counted as such
        answered = self.sent - (1 if self.in_flight else 0)
        cutoff_ns = end_ns - stall_ns
        if cutoff_ns < self.first_send_ns:
            return 0
        # messages 0..last_stale were intended at or before the cutoff
        last_stale = (cutoff_ns - self.first_send_ns) // self.interval_ns
        return max(0, min(self.due, last_stale + 1) - answered)


def stall_limit_s(open_conns: int, completed: int, window_s: float, rate: float | None) -> float:
    """How long a request may wait before it counts as a timeout (see the module docstring):
    STALL_TIMEOUT_S, or in closed loop STALL_FAIR_SHARES x the wait of perfect turn-taking, which
    is connections / throughput (Little's law), whichever is longer."""
    if rate is not None or window_s <= 0 or not completed or not open_conns:
        return STALL_TIMEOUT_S
    fair_wait_s = open_conns / (completed / window_s)
    return max(STALL_TIMEOUT_S, STALL_FAIR_SHARES * fair_wait_s)


def open_loop_schedule(global_index: int, total_conns: int, rate_per_s: float,
                       start_ns: int) -> tuple[int, int]:
    """(first send time, interval) in ns of connection `global_index` under a total `rate_per_s`.

    Every connection sends at rate/conns, i.e. every conns/rate seconds; connection g starts g/rate
    seconds after `start_ns`. Together the connections' sends are evenly spaced, 1/rate apart, which
    is the arrival pattern of a steady stream of independent requests.
    """
    interval_ns = round(total_conns * 1e9 / rate_per_s)
    first_send_ns = start_ns + round(global_index * 1e9 / rate_per_s)
    return first_send_ns, interval_ns


class _OpenLoopTicker:
    """One timer per worker fires every connection's scheduled sends, in time order.

    All connections of a worker share one interval and their first sends lie within one interval, so
    sorted by first send time they come due in a fixed cyclic order: the ticker walks that cycle and
    sleeps until the next due time. No heap, no timer per message.

    How it sleeps matters. Event loop timers count in milliseconds (libuv's clock, epoll_wait's
    timeout): waking on one adds up to a millisecond of lag to sends, which the latency charges to
    the server. On Linux the ticker sleeps on a timerfd instead, a kernel timer armed to the
    nanosecond that the loop watches like a socket (see _TimerFd). Elsewhere it falls back to loop
    timers, rounded UP to whole milliseconds: a shorter delay would round down to 0 and the loop
    would spin. Either way the lag is not hidden: it is in `send_lag_us`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, conns: list[OpenLoopConnection],
                 end_ns: int) -> None:
        self.loop = loop
        self.conns = sorted(conns, key=lambda c: c.first_send_ns)
        self.next_index = 0
        self.end_ns = end_ns  # nothing is scheduled at or after the end of the measured window
        self.handle = None  # the pending loop timer, when there is no timerfd
        self.timerfd = _TimerFd.open(loop, self._tick)

    def start(self) -> None:
        if self.conns:
            self._tick()

    def _tick(self) -> None:
        now_ns = _now_ns()
        conns, index = self.conns, self.next_index
        while True:
            conn = conns[index]
            due_ns = conn.next_due_ns()
            if due_ns > now_ns or due_ns >= self.end_ns:
                break
            conn.fire(now_ns)
            index += 1
            if index == len(conns):
                index = 0
        self.next_index = index
        if due_ns >= self.end_ns:
            return
        if self.timerfd is not None:
            # At high rates, ticks at least MIN_TICK_NS apart each send a few messages: this bounds
            # the cost of waking up (a few µs) per message, for at most MIN_TICK_NS of lag.
            self.timerfd.arm_at(max(due_ns, now_ns + MIN_TICK_NS))
        else:
            delay_ms = math.ceil((due_ns - now_ns) / 1e6)
            self.handle = self.loop.call_later(delay_ms / 1e3, self._tick)

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
        if self.timerfd is not None:
            self.timerfd.close()


class _TimerFd:
    """A kernel timer with nanosecond resolution that an event loop can wait on (Linux timerfd).

    timerfd_create(CLOCK_MONOTONIC) gives a file descriptor; timerfd_settime(TFD_TIMER_ABSTIME)
    arms it for an absolute time on the same clock as time.monotonic_ns(); when that time passes,
    the kernel's high-resolution timer makes the fd readable, and epoll wakes the loop. Python
    3.13 has os.timerfd_create; before that it is called through ctypes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, callback, create, settime_ns) -> None:
        self.loop = loop
        self.callback = callback
        self.settime_ns = settime_ns
        self.fd = create()
        loop.add_reader(self.fd, self._expired)

    @classmethod
    def open(cls, loop: asyncio.AbstractEventLoop, callback) -> _TimerFd | None:
        """A timerfd calling `callback` when it expires, or None where there is no timerfd."""
        functions = _timerfd_functions()
        return None if functions is None else cls(loop, callback, *functions)

    def arm_at(self, when_ns: int) -> None:
        self.settime_ns(self.fd, max(1, when_ns))  # 0 would disarm it

    def _expired(self) -> None:
        try:
            os.read(self.fd, 8)  # how many expirations since the last read; reading re-arms epoll
        except BlockingIOError:
            return  # it was re-armed for later before we got to read it
        self.callback()

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        os.close(self.fd)


def _timerfd_functions():
    """(create, settime_ns) for timerfds, or None where the OS has none."""
    if hasattr(os, "timerfd_create"):  # Python 3.13+
        def settime_ns(fd: int, when_ns: int) -> None:
            os.timerfd_settime_ns(fd, flags=os.TFD_TIMER_ABSTIME, initial=when_ns)

        flags = os.TFD_NONBLOCK | os.TFD_CLOEXEC
        return (lambda: os.timerfd_create(time.CLOCK_MONOTONIC, flags=flags)), settime_ns
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    class Itimerspec(ctypes.Structure):
        _fields_ = [("it_interval", Timespec), ("it_value", Timespec)]

    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "timerfd_create"):
        return None
    clock_monotonic, tfd_timer_abstime = 1, 1  # from <time.h> and <sys/timerfd.h>
    spec = Itimerspec()  # reused: it_interval stays 0 (one-shot), it_value is set per call

    def create() -> int:
        # TFD_NONBLOCK and TFD_CLOEXEC have the values of O_NONBLOCK and O_CLOEXEC on Linux
        fd = libc.timerfd_create(clock_monotonic, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        return fd

    def settime_ns(fd: int, when_ns: int) -> None:
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(when_ns, 1_000_000_000)
        if libc.timerfd_settime(fd, tfd_timer_abstime, ctypes.byref(spec), None) < 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")

    return create, settime_ns


# -- One worker process ----------------------------------------------------------------------------


class _Worker:
    """A worker process's share of the connections, its counters, and the phases of its run."""

    def __init__(self, config: dict, pipe) -> None:
        self.config = config
        self.pipe = pipe  # to the parent: "ready", "result" or "error" up; "start" or "stop" down
        self.loop = asyncio.get_running_loop()
        self.conns: list[_Connection] = []
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.error_examples: dict[str, str] = {}  # first message seen of each kind, for humans
        self.latency = hist.LatencyCounter()
        self.send_lag = hist.LatencyCounter()
        self.warnings: list[str] = []
        self.cpu_at_window_start_s: tuple | None = None  # (user, system), when the window opens
        self.cpu_in_window_s = (0.0, 0.0)  # (user, system) spent inside the window
        self.conns_open_at_end = 0
        self.connect_s = 0.0  # how long connect_all took
        self.stall_limit_s = STALL_TIMEOUT_S  # set at the end of the window
        self.flusher = None  # the timer that keeps the latency dicts small
        self.parent_message: asyncio.Future = self.loop.create_future()
        self.loop.add_reader(pipe.fileno(), self._on_pipe_readable)

        # The payload: random bytes, and the messages all connections of this worker cycle through.
        self.payload, self.messages, self.offsets = make_messages(
            config["size_bytes"], config["worker_index"])
        self.next_index = [*range(1, len(self.messages)), 0]

    def count_error(self, kind: str, detail) -> None:
        self.errors[kind] += 1
        if kind not in self.error_examples:
            text = detail if isinstance(detail, str) else f"{type(detail).__name__}: {detail}"
            self.error_examples[kind] = text

    def _on_pipe_readable(self) -> None:
        # A message from the parent, or EOF because the parent died: either way, stop waiting.
        try:
            message = self.pipe.recv()
        except (EOFError, OSError):
            message = ("stop", "parent went away")
        if not self.parent_message.done():
            self.parent_message.set_result(message)
        if message[0] == "stop":
            self.loop.remove_reader(self.pipe.fileno())

    async def wait_for_parent(self, timeout_s: float):
        try:
            message = await asyncio.wait_for(asyncio.shield(self.parent_message), timeout_s)
        except TimeoutError:
            return ("stop", "no start signal from the parent")
        self.parent_message = self.loop.create_future()
        return message

    # phase 1: connect, in batches

    async def connect_all(self) -> None:
        cfg = self.config
        deadline_s = time.monotonic() + cfg["connect_budget_s"]
        indices = cfg["conn_indices"]
        try:
            # Resolve the name once, not once per connection. IPv4 first: "localhost" often
            # resolves to ::1 first, while the lab's servers listen on 127.0.0.1 by default.
            infos = await self.loop.getaddrinfo(cfg["host"], cfg["port"], type=socket.SOCK_STREAM)
            infos.sort(key=lambda info: info[0] != socket.AF_INET)
            family, _, _, _, address = infos[0]
        except OSError as exc:
            for _ in indices:
                self.count_error("connect", exc)
            return
        batch_size = cfg["ramp_batch_per_worker"]
        for batch_start in range(0, len(indices), batch_size):
            batch = indices[batch_start:batch_start + batch_size]
            left_s = deadline_s - time.monotonic()
            if left_s <= 0 or self.parent_message.done():
                for _ in batch:
                    self.count_error("connect", "not attempted: the connect phase ran out of time")
                continue
            timeout_s = min(cfg["connect_timeout_s"], left_s)
            await asyncio.gather(*(self._connect_one(g, family, address, timeout_s) for g in batch))
            if batch_start + batch_size < len(indices):
                await asyncio.sleep(RAMP_PAUSE_S)

    async def _connect_one(self, global_index: int, family: int, address: tuple, timeout_s: float):
        cfg = self.config
        first_message = (global_index * 7919) % len(self.messages)  # spread the starting points
        if cfg["rate"] is None:
            conn = ClosedLoopConnection(self, first_message)
        else:
            # The schedule is anchored at time 0 for now, and shifted when the parent says "start".
            first_ns, interval_ns = open_loop_schedule(
                global_index, cfg["total_conns"], cfg["rate"], start_ns=0)
            conn = OpenLoopConnection(self, first_message, first_ns, interval_ns)
        try:
            await asyncio.wait_for(
                self.loop.create_connection(lambda: conn, address[0], address[1], family=family),
                timeout_s)
        except TimeoutError:
            self.count_error("connect", f"not connected within {timeout_s:.1f} s")
        except OSError as exc:
            self.count_error("connect", exc)
        else:
            self.conns.append(conn)

    # phase 2: warm up, then measure

    async def run(self, start_ns: int) -> None:
        cfg = self.config
        window_start_ns = start_ns + int(cfg["warmup_s"] * 1e9)
        window_end_ns = window_start_ns + int(cfg["duration_s"] * 1e9)
        ticker = None
        if cfg["rate"] is not None:
            for conn in self.conns:
                conn.first_send_ns += start_ns
            ticker = _OpenLoopTicker(self.loop, self.conns, window_end_ns)

        finished = self.loop.create_future()
        self._call_at_ns(window_start_ns, self._window_starts)
        self._call_at_ns(window_end_ns, lambda: finished.done() or finished.set_result(None))
        self.flusher = self.loop.call_later(FLUSH_EVERY_S, self._flush_if_large)

        await asyncio.sleep(max(0.0, (start_ns - _now_ns()) / 1e9))
        for conn in self.conns:
            conn.start(window_start_ns, window_end_ns)
        if ticker is not None:
            ticker.start()
        # Wait for the end of the window, or for the parent to say stop (or die).
        await asyncio.wait([finished, self.parent_message], return_when=asyncio.FIRST_COMPLETED)

        # The window is over: take the CPU reading first, so wrap-up work is not charged to it.
        if self.cpu_at_window_start_s is not None:
            (user0, sys0), (user1, sys1) = self.cpu_at_window_start_s, _cpu_times_s()
            self.cpu_in_window_s = (user1 - user0, sys1 - sys0)
        end_ns = min(_now_ns(), window_end_ns)
        if ticker is not None:
            ticker.cancel()
        self.flusher.cancel()
        still_open = [c for c in self.conns if not (c.closed or c.closing)]
        self.conns_open_at_end = len(still_open)
        self.stall_limit_s = stall_limit_s(len(still_open), self.latency.total_count(),
                                           (end_ns - window_start_ns) / 1e9, self.config["rate"])
        stall_ns = int(self.stall_limit_s * 1e9)
        for conn in still_open:
            if not conn.served(end_ns, stall_ns):
                self.errors["unserved"] += 1
            else:
                self.errors["timeout"] += conn.unanswered_at(end_ns, stall_ns)
        for conn in self.conns:
            conn.close()
        if self.errors["unserved"] and "unserved" not in self.error_examples:
            self.error_examples["unserved"] = (
                f"connected, but no echo at all in {max(0, end_ns - start_ns) / 1e9:.1f} s "
                "(warm-up and window)")
        if self.errors["timeout"] and "timeout" not in self.error_examples:
            self.error_examples["timeout"] = (
                f"no echo within {self.stall_limit_s:.1f} s of the (intended) send time by the end")


    def _window_starts(self) -> None:
        self.cpu_at_window_start_s = _cpu_times_s()

    def _flush_if_large(self) -> None:
        for counter in (self.latency, self.send_lag):
            if len(counter.counts) > FLUSH_WHEN_DISTINCT:
                counter.flush()
        self.flusher = self.loop.call_later(FLUSH_EVERY_S, self._flush_if_large)

    def _call_at_ns(self, when_ns: int, callback) -> None:
        self.loop.call_later(max(0.0, (when_ns - _now_ns()) / 1e9), callback)

    def result(self) -> dict:
        return {
            "worker_index": self.config["worker_index"],
            "conns_established": len(self.conns),
            "connect_s": self.connect_s,
            "conns_open_at_end": self.conns_open_at_end,
            "stall_limit_s": self.stall_limit_s,
            "hist": self.latency.encoded(),
            "latency_out_of_range": self.latency.out_of_range,
            "send_lag_hist": self.send_lag.encoded() if self.config["rate"] is not None else None,
            "offered": sum(getattr(c, "offered", 0) for c in self.conns),
            "errors": self.errors,
            "error_examples": self.error_examples,
            "cpu_user_s": self.cpu_in_window_s[0],
            "cpu_sys_s": self.cpu_in_window_s[1],
            "warnings": self.warnings,
        }


def _cpu_times_s() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far (getrusage where it exists)."""
    try:
        import resource
    except ImportError:  # not a Unix: process_time() is user + system, not split
        return time.process_time(), 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def fd_hard_limit() -> int | None:
    """The hard limit on open files (RLIMIT_NOFILE) a worker can raise itself to; None: no limit
    (or not a Unix)."""
    try:
        import resource
    except ImportError:
        return None
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def fd_shortfall(conns: int, workers: int = 1, engine: str | None = None) -> str | None:
    """Why `conns` connections over `workers` processes cannot all be opened here, or None.

    Each worker raises its soft RLIMIT_NOFILE to the hard limit (1024 is a common soft default,
    far too few for 10,000 connections); only an administrator can raise the hard limit. The C
    engine is one process (its workers are threads): it needs a file per connection, and raises
    the hard limit itself where it may (root); it is asked directly. `engine` None: the default.
    """
    if (engine or default_engine()[0]) == "c":
        from bench.load import c_engine
        return c_engine.fd_shortfall(conns)
    hard = fd_hard_limit()
    wanted = math.ceil(conns / max(1, workers)) + FD_HEADROOM
    if hard is None or wanted <= hard:
        return None
    return (f"{conns:,} connections need about {wanted:,} open files per load-generator process, "
            f"but the hard limit (ulimit -Hn) is {hard:,}: raise it, e.g. `ulimit -n "
            f"{max(wanted, 20000)}` as root or in /etc/security/limits.conf, then run again")


def port_shortfall(host: str, conns: int, engine: str | None = None) -> str | None:
    """Why `conns` connections to `host` would run out of ephemeral ports, with the fix, or None.

    Each connection from one source address to one destination takes a local port from
    net.ipv4.ip_local_port_range. The C engine spreads connections to a loopback server over
    several source addresses (bench/load/c_engine.py: CONNS_PER_SOURCE each); the Python engine uses one.
    """
    text = None
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            text = f.read()
    except OSError:
        return None
    low, high = map(int, text.split())
    sources = 1
    if (engine or default_engine()[0]) == "c":
        from bench.load import c_engine
        sources = c_engine.sources_for(host, conns)
    per_source = math.ceil(conns / sources)
    if per_source <= high - low + 1:
        return None
    return (f"{conns:,} connections from {sources} source address(es) need {per_source:,} local "
            f"ports each, but net.ipv4.ip_local_port_range has {high - low + 1:,} ({low}-{high}): "
            "widen it (sysctl -w net.ipv4.ip_local_port_range='1024 65535')"
            + ("" if sources > 1 else ", or use --engine c, which spreads connections to a "
               "loopback server over several source addresses"))


def _raise_fd_limit(wanted: int) -> str | None:
    """Raise the soft limit on open files to the hard limit (1024 is a common default), with the
    lab's one helper for it (servers.common); say so if that is still fewer than `wanted`."""
    from servers.common import raise_fd_limit
    soft = raise_fd_limit()  # -1: no limit (RLIM_INFINITY), or not a Unix
    if soft != -1 and soft < wanted:
        return (f"a worker may open only {soft} files (ulimit -Hn) but needs {wanted}: "
                "some connections will fail; raise the hard limit or use more --workers")
    return None


async def _worker_async(config: dict, pipe) -> None:
    worker = _Worker(config, pipe)
    if config["loop_warning"]:
        worker.warnings.append(config["loop_warning"])
    if (note := _raise_fd_limit(len(config["conn_indices"]) + FD_HEADROOM)) is not None:
        worker.warnings.append(note)
    connect_started_s = time.monotonic()
    await worker.connect_all()
    worker.connect_s = time.monotonic() - connect_started_s
    pipe.send(("ready", {"conns_established": len(worker.conns)}))
    message = await worker.wait_for_parent(config["start_wait_s"])
    if message[0] == "start":
        await worker.run(message[1])
    else:
        for conn in worker.conns:
            conn.close()
    await asyncio.sleep(0)  # let the transports finish aborting before the loop closes
    pipe.send(("result", worker.result()))


def _worker_main(config: dict, pipe) -> None:
    """Entry point of a worker process."""
    # Ctrl-C reaches every process of the terminal's process group; only the parent handles it (it
    # stops the workers), so the terminal shows one clean message, not one traceback per worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config["cpu"] is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {config["cpu"]})
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(_worker_async(config, pipe))
        else:
            uvloop.run(_worker_async(config, pipe))
    except (BrokenPipeError, EOFError, ConnectionResetError):
        pass  # the parent is gone (killed, or gave up on us): there is nobody to report to
    except BaseException:
        _send_quietly(pipe, ("error", traceback.format_exc()))
        raise
    finally:
        pipe.close()


# -- The parent: plan, start, collect, merge -------------------------------------------------------


def available_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), or all CPUs where that is unknown."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def worker_count(conns: int, workers: int | None = None, cpus: list[int] | None = None) -> int:
    """How many worker processes run_load starts: `workers`, or one per CPU of `cpus` (or of this
    process's affinity mask), and never more than there are connections."""
    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    return min(workers or len(set(cpus) if pin else available_cpus()), conns)


def _check_positive(name: str, value, *, integer: bool, zero_ok: bool = False) -> None:
    bad = (isinstance(value, bool) or not isinstance(value, (int, float))
           or (integer and not isinstance(value, int)) or not math.isfinite(value)
           or value < 0 or (value == 0 and not zero_ok))
    if bad:
        what = "a whole number" if integer else "a number"
        bound = ">= 0" if zero_ok else "> 0"
        raise ValueError(f"{name} must be {what} {bound}, got {value!r}")


def check_arguments(host: str, port: int, *, conns: int, size: int, duration: float,
                    warmup: float = 1.0, rate: float | None = None, workers: int | None = None,
                    cpus: list[int] | None = None, connect_timeout: float = 5.0,
                    ramp_batch: int = 64, engine: str | None = None) -> None:
    """Raise ValueError naming the first bad argument of run_load (which calls this first)."""
    if engine is not None and engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    _check_positive("conns", conns, integer=True)
    _check_positive("size", size, integer=True)
    _check_positive("duration", duration, integer=False)
    _check_positive("warmup", warmup, integer=False, zero_ok=True)
    _check_positive("connect_timeout", connect_timeout, integer=False)
    _check_positive("ramp_batch", ramp_batch, integer=True)
    if rate is not None:
        _check_positive("rate", rate, integer=False)
        if rate > MAX_RATE_PER_S:
            raise ValueError(f"rate must be at most {MAX_RATE_PER_S:,}/s (one worker sends in the "
                             f"order of 100,000/s), got {rate!r}")
    if workers is not None:
        _check_positive("workers", workers, integer=True)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be 1..65535, got {port!r}")
    if not host:
        raise ValueError("host must be a name or an address, e.g. 127.0.0.1")
    if cpus is not None and hasattr(os, "sched_getaffinity"):
        missing = sorted(set(cpus) - set(available_cpus()))
        if not cpus or missing:
            raise ValueError(f"cpus {_cpu_list_text(missing or cpus) or '(none)'}: not available "
                             f"to this process, which may run on {_cpu_list_text(available_cpus())}"
                             "; pick CPUs from that list")


def run_load(host: str, port: int, *, conns: int, size: int, duration: float, warmup: float = 1.0,
             rate: float | None = None, workers: int | None = None, cpus: list[int] | None = None,
             connect_timeout: float = 5.0, ramp_batch: int = 64,
             on_window=None, engine: str | None = None, alt: tuple[str, int] | None = None,
             slice_s: float = ALT_SLICE_S) -> dict:
    """Run the load against an echo server at host:port and return the summary dict.

    ``on_window(window_start_ns, window_end_ns)``, if given, is called (in this thread) as soon as
    the measured window is fixed, before it begins: the bench runner uses it to sample the server
    exactly at the window's edges.

    `conns` connections of `size`-byte messages, `warmup` seconds not measured, then `duration`
    seconds measured. `rate` (total requests/s) switches to open loop. `workers` processes
    (default: one per CPU in `cpus`, or in this process's affinity mask), each pinned to one CPU of
    `cpus` in turn if given (Linux only; ignored with a warning elsewhere). Raises ValueError on bad
    arguments; a server that is absent, broken or hanging gives a result with errors, not an
    exception. Call it under `if __name__ == "__main__":` (the workers are "spawn" processes).

    `engine`: "c" (bench/load/c_engine.py, threads instead of worker processes), "python" (this file), or
    None for the default (c where it builds, else python with a RuntimeWarning saying why). The
    summary says which one measured it in "engine".

    `alt` (host, port): a second server measured in the same window, in alternating slices of
    about `slice_s` (the C engine, closed loop; see bench/load/engine.c): `conns` connections to
    each, the window's time split between them. The summary's figures are the target's, over the
    time it was active; its "alt" holds the second server's.
    """
    check_arguments(host, port, conns=conns, size=size, duration=duration, warmup=warmup,
                    rate=rate, workers=workers, cpus=cpus, connect_timeout=connect_timeout,
                    ramp_batch=ramp_batch, engine=engine)
    if alt is not None and (rate is not None or resolve_engine(engine) != "c"):
        raise ValueError("alt (a second server in alternating slices) needs the C engine and "
                         "a closed loop (no rate)")
    if resolve_engine(engine) == "c":
        return _run_c(host, port, conns=conns, size=size, duration=duration, warmup=warmup,
                      rate=rate, workers=workers, cpus=cpus, connect_timeout=connect_timeout,
                      ramp_batch=ramp_batch, on_window=on_window, alt=alt, slice_s=slice_s)
    result_warnings: list[str] = []
    loop_name = _loop_implementation()
    loop_warning = None
    if loop_name != "uvloop":
        loop_warning = "uvloop is not installed: workers run plain asyncio, which is slower"
        warnings.warn(loop_warning, RuntimeWarning, stacklevel=2)
        result_warnings.append(loop_warning)

    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    if cpus is not None and not pin:
        result_warnings.append("--cpus ignored: pinning (sched_setaffinity) is Linux-only")
    cpu_pool = sorted(set(cpus)) if pin else available_cpus()
    n_workers = worker_count(conns, workers, cpus)

    # Connections go to workers round-robin, so each worker's share of an open-loop schedule is
    # itself evenly spread over time.
    shares = [list(range(w, conns, n_workers)) for w in range(n_workers)]
    ramp_batch_per_worker = max(1, math.ceil(ramp_batch / n_workers))
    batches = math.ceil(len(shares[0]) / ramp_batch_per_worker)
    connect_budget_s = connect_timeout + (CONNECT_BUDGET_PER_BATCH_S + RAMP_PAUSE_S) * batches
    configs = [{
        "worker_index": w,
        "host": host, "port": port,
        "conn_indices": shares[w], "total_conns": conns,
        "size_bytes": size, "rate": rate, "warmup_s": warmup, "duration_s": duration,
        "connect_timeout_s": connect_timeout, "connect_budget_s": connect_budget_s,
        "ramp_batch_per_worker": ramp_batch_per_worker,
        "start_wait_s": SPAWN_BUDGET_S + connect_budget_s + 5.0,
        "cpu": cpu_pool[w % len(cpu_pool)] if pin else None,
        "loop_warning": loop_warning,
    } for w in range(n_workers)]

    # "spawn" starts each worker as a fresh interpreter: no copy of the parent's threads, locks or
    # event loop (fork of a threaded process can deadlock), and it behaves the same on every OS.
    ctx = multiprocessing.get_context("spawn")
    procs: list[tuple] = []  # (process, parent end of its pipe)
    try:
        for config in configs:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=_worker_main, args=(config, child_end),
                               name=f"bench.load worker {config['worker_index']}", daemon=True)
            proc.start()
            child_end.close()  # so that the worker's death shows as EOF on parent_end
            procs.append((proc, parent_end))

        ready, lost = _collect(procs, "ready", time.monotonic() + SPAWN_BUDGET_S + connect_budget_s)
        established = sum(r["conns_established"] for r in ready.values())
        start_ns = None
        if established and not lost:
            start_ns = _now_ns() + int(START_DELAY_S * 1e9)
            for _, pipe in procs:
                _send_quietly(pipe, ("start", start_ns))
            if on_window is not None:
                window_start_ns = start_ns + int(warmup * 1e9)
                on_window(window_start_ns, window_start_ns + int(duration * 1e9))
            deadline = time.monotonic() + START_DELAY_S + warmup + duration + WRAPUP_BUDGET_S
        else:
            for proc, pipe in procs:
                if proc.is_alive():
                    _send_quietly(pipe, ("stop", "nothing to measure"))
            deadline = time.monotonic() + WRAPUP_BUDGET_S
            if not established:
                result_warnings.append("no connection could be established; nothing was measured")
            else:
                result_warnings.append("a worker failed to get ready; nothing was measured")
        live = [(p, pipe) for p, pipe in procs if p.name not in lost]
        results, lost_now = _collect(live, "result", deadline)
        lost.update(lost_now)
    except BaseException:  # Ctrl-C, or a worker's error: stop the workers now, not gracefully
        _stop_workers(procs, graceful=False)
        raise
    _stop_workers(procs, graceful=True)

    for name, why in sorted(lost.items()):
        result_warnings.append(f"{name} {why}; its connections are missing from the result")
    return _summarize(
        list(results.values()), host=host, port=port, conns=conns, size=size, rate=rate,
        duration=duration if start_ns is not None else 0.0, warmup=warmup,
        n_workers=n_workers, cpus=(cpu_pool if pin else None), cores=min(n_workers, len(cpu_pool)),
        loop_name=loop_name, result_warnings=result_warnings, start_ns=start_ns, engine="python")


def alt_slice(duration: float, slice_s: float | None = None) -> float:
    """The slice for alternating over a window of `duration`: near `slice_s`, and an even number
    of them in the window, so that each server gets the same share of it."""
    pairs = max(1, round(duration / (2 * (slice_s or ALT_SLICE_S))))
    return duration / (2 * pairs)


def _run_c(host: str, port: int, *, conns, size, duration, warmup, rate, workers, cpus,
           connect_timeout, ramp_batch, on_window, alt=None, slice_s=None) -> dict:
    """run_load with the C engine: the same plan (threads for workers, the same ramp and time
    budgets), the engine's result summarized by the same _summarize."""
    from bench.load import c_engine
    pin = cpus is not None and hasattr(os, "sched_setaffinity")
    cpu_pool = sorted(set(cpus)) if pin else available_cpus()
    threads = worker_count(conns, workers, cpus)
    processes = min(c_engine.processes_for(conns), conns)
    ramp_batch_per_thread = max(1, math.ceil(ramp_batch / (threads * processes)))
    batches = math.ceil(math.ceil(conns / (threads * processes)) / ramp_batch_per_thread)
    connect_budget_s = connect_timeout + (CONNECT_BUDGET_PER_BATCH_S + RAMP_PAUSE_S) * batches
    result_warnings: list[str] = []
    if cpus is not None and not pin:
        result_warnings.append("--cpus ignored: pinning (sched_setaffinity) is Linux-only")
    try:
        results, start_ns, threads = c_engine.run(
            host, port, conns=conns, size=size, duration=duration, warmup=warmup, rate=rate,
            threads=threads, cpus=cpu_pool if pin else None, connect_timeout=connect_timeout,
            connect_budget_s=connect_budget_s, ramp_batch=ramp_batch,
            ramp_pause_s=RAMP_PAUSE_S, start_delay_s=START_DELAY_S,
            wrapup_budget_s=WRAPUP_BUDGET_S, on_window=on_window, alt=alt,
            slice_s=alt_slice(duration, slice_s) if alt else None)
    except c_engine.EngineError as exc:  # e.g. too few file descriptors: nothing was attempted
        results, start_ns = [c_engine.parse_result([])], None
        results[0]["errors"]["connect"] = conns
        result_warnings.append(str(exc))
    if start_ns is None and not sum(r["conns_established"] for r in results):
        result_warnings.append("no connection could be established; nothing was measured")
    summary = _summarize(
        results, host=host, port=port, conns=conns, size=size, rate=rate,
        duration=duration if start_ns is not None else 0.0, warmup=warmup, n_workers=threads,
        cpus=(cpu_pool if pin else None), cores=min(threads, len(cpu_pool)),
        loop_name="epoll (C engine)", result_warnings=result_warnings, start_ns=start_ns,
        engine="c")
    if alt is not None:
        _alternated(summary, results, alt, alt_slice(duration, slice_s), size)
    return summary


def _alternated(summary: dict, results: list[dict], alt: tuple[str, int], slice_s: float,
                size: int) -> None:
    """The target's rates over the time it was active; the alternate's figures in "alt"."""
    active = [r.get("active_ns") or [0, 0] for r in results]
    target_s, alt_s = (sum(a[k] for a in active) / 1e9 for k in (0, 1))
    latency = hist.merge([r["alt_hist"] for r in results if r.get("alt_hist")])
    alt_requests = latency.get_total_count()
    requests = summary["requests"]
    summary["rps"] = requests / target_s if target_s else 0.0
    summary["bytes_per_s"] = summary["rps"] * size
    summary["active_s"] = round(target_s, 6)
    summary["slice_s"] = round(slice_s, 6)
    if requests + alt_requests:
        summary["client_cpu_us_per_request"] = round(
            summary["client_cpu_s"] * 1e6 / (requests + alt_requests), 2)
    summary["alt"] = {
        "target": f"{alt[0]}:{alt[1]}",
        "conns_established": sum(r.get("alt_established", 0) for r in results),
        "requests": alt_requests, "active_s": round(alt_s, 6),
        "rps": alt_requests / alt_s if alt_s else 0.0,
        "errors": sum(r.get("alt_errors", 0) for r in results),
        "latency_us": hist.summarize(latency), "hist": hist.encode(latency),
    }


def _collect(procs, kind: str, deadline: float) -> tuple[dict, dict]:
    """Wait for one `kind` message from each worker until `deadline`; name the ones that failed."""
    got: dict[str, dict] = {}
    lost: dict[str, str] = {}
    waiting = {pipe: proc for proc, pipe in procs}
    while waiting:
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            for proc in waiting.values():
                lost[proc.name] = f"sent no {kind!r} message in time"
            break
        for pipe in multiprocessing.connection.wait(list(waiting), timeout=left_s):
            proc = waiting.pop(pipe)
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                proc.join(1.0)
                lost[proc.name] = f"exited (code {proc.exitcode}) before its {kind!r} message"
                continue
            if message[0] == "error":
                raise RuntimeError(f"{proc.name} failed:\n{message[1]}")
            got[proc.name] = message[1]
    return got, lost


def _send_quietly(pipe, message) -> None:
    try:
        pipe.send(message)
    except OSError:
        pass  # the other side is already gone


def _stop_workers(procs, graceful: bool) -> None:
    """Make sure no worker outlives run_load: wait a little if graceful, then SIGTERM, SIGKILL."""
    deadline = time.monotonic() + (2.0 if graceful else 0.0)
    for proc, _ in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
    for proc, _ in procs:
        if proc.is_alive():
            proc.terminate()
    for proc, pipe in procs:
        proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
        pipe.close()
        proc.close()


def _summarize(results: list[dict], *, host, port, conns, size, rate, duration, warmup, n_workers,
               cpus, cores, loop_name, result_warnings, start_ns, engine: str) -> dict:
    latency = hist.merge([r["hist"] for r in results])
    requests = latency.get_total_count()
    errors = dict.fromkeys(ERROR_KINDS, 0)
    examples: dict[str, str] = {}
    for r in results:
        for kind, count in r["errors"].items():
            errors[kind] += count
        for kind, text in r["error_examples"].items():
            examples.setdefault(kind, text)
        for note in r["warnings"]:
            if note not in result_warnings:
                result_warnings.append(note)
    window_start_ns = None if start_ns is None else start_ns + int(warmup * 1e9)
    cpu_user_s = sum(r["cpu_user_s"] for r in results)
    cpu_sys_s = sum(r["cpu_sys_s"] for r in results)
    cpu_s = cpu_user_s + cpu_sys_s
    summary = {
        "target": f"{host}:{port}",
        "mode": "closed" if rate is None else "open",
        "conns": conns,
        "conns_established": sum(r["conns_established"] for r in results),
        "conns_open_at_end": sum(r["conns_open_at_end"] for r in results),
        # how long the connect phase (the ramp) took, in the slowest worker: with
        # conns_established, the rate at which the server accepted (C100K)
        "connect_s": round(max((r.get("connect_s", 0.0) for r in results), default=0.0), 3),
        # how long a request could wait before it counted as a timeout (see the module docstring)
        "stall_limit_s": round(max((r.get("stall_limit_s", STALL_TIMEOUT_S) for r in results),
                                   default=STALL_TIMEOUT_S), 3),
        "size_bytes": size,
        "warmup_s": warmup,
        "duration_s": duration,
        # The measured window on time.monotonic_ns()'s clock (shared by all processes of this
        # machine), so a sampler of the server can line its own readings up with it.
        "window_start_ns": window_start_ns,
        "window_end_ns": None if start_ns is None else window_start_ns + int(duration * 1e9),
        "requests": requests,
        "rps": requests / duration if duration else 0.0,
        "bytes_per_s": requests * size / duration if duration else 0.0,
        "latency_us": hist.summarize(latency),
        "hist": hist.encode(latency),
        "latency_out_of_range": sum(r["latency_out_of_range"] for r in results),
        "errors": errors,
        "error_examples": examples,
        "client_cpu_s": round(cpu_s, 4),
        "client_cpu_user_s": round(cpu_user_s, 4),  # Python and the event loop
        "client_cpu_sys_s": round(cpu_sys_s, 4),  # the kernel: syscalls, TCP, wake-ups
        # A worker is one thread, so the generator can use at most min(workers, cpus) cores. The
        # CPU readings bracket the window to within a timer tick: clamp the ratio to 1.
        "client_cpu_util": round(min(1.0, cpu_s / (duration * cores)), 4) if duration else 0.0,
        "client_cpu_us_per_request": round(cpu_s * 1e6 / requests, 2) if requests else None,
        "client_workers": n_workers,
        "client_cpus": cpus,
        "client_cores": cores,
        "client_loop": loop_name,
        "engine": engine,  # which load engine measured it: "c" or "python"
        "warnings": result_warnings,
    }
    if rate is not None:
        lag = hist.summarize(hist.merge([r["send_lag_hist"] for r in results]))
        summary["rate"] = rate
        summary["offered_rps"] = sum(r["offered"] for r in results) / duration if duration else 0.0
        summary["send_lag_us"] = {k: lag[k] for k in ("p50", "p99", "max")}
    return summary


# -- Command line ----------------------------------------------------------------------------------


def _positive(kind, example: str, zero_ok: bool = False):
    """An argparse type: a number > 0 (or >= 0), with an error message that shows a correct use."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {what} {'>= 0' if zero_ok else '> 0'}; for example {example}")
        return value
    return parse


def parse_target(text: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6addr]:PORT') -> (host, port)."""
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not HOST:PORT; for example --target 127.0.0.1:9000 "
            "(the address the server printed in its readiness line)")
    return host, int(port_text)


def parse_cpu_list(text: str) -> list[int]:
    """'0,1' or '2-3,6' (taskset's list syntax) -> [0, 1]."""
    cpus: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            cpus.update(range(int(first), int(last or first) + 1))
    except ValueError:
        cpus = set()
    if not cpus or min(cpus) < 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a CPU list; for example --cpus 1 or --cpus 2,3 or --cpus 2-3")
    return sorted(cpus)


def _cpu_list_text(cpus: list[int]) -> str:
    return ",".join(map(str, cpus))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load",
        description="Load generator for any TCP echo server: closed loop (default) or open loop "
                    "(--rate), latency percentiles from HdrHistogram, every echoed byte checked.",
        epilog="Example: python -m bench.load --target 127.0.0.1:9000 --conns 64 --duration 5")
    parser.add_argument("--target", required=True, type=parse_target, metavar="HOST:PORT",
                        help="the echo server, e.g. 127.0.0.1:9000 (meant for loopback)")
    parser.add_argument("--conns", type=_positive(int, "--conns 16"), default=16, metavar="N",
                        help="concurrent connections (default 16)")
    parser.add_argument("--size", type=_positive(int, "--size 1024"), default=1024, metavar="BYTES",
                        help="bytes per message (default 1024)")
    parser.add_argument("--duration", type=_positive(float, "--duration 5"), default=5.0,
                        metavar="S", help="measured seconds (default 5)")
    parser.add_argument("--warmup", type=_positive(float, "--warmup 1", zero_ok=True), default=1.0,
                        metavar="S", help="seconds of load before measuring (default 1)")
    parser.add_argument("--rate", type=_positive(float, "--rate 10000"), default=None, metavar="R",
                        help="open loop: R requests/s in total on a fixed schedule, latency "
                             "from the intended send time (default: closed loop, one message in "
                             "flight per connection)")
    parser.add_argument("--workers", type=_positive(int, "--workers 2"), default=None, metavar="W",
                        help="worker processes (default: one per CPU in --cpus, or per CPU this "
                             "process may run on)")
    parser.add_argument("--cpus", type=parse_cpu_list, default=None, metavar="LIST",
                        help="pin the workers to these CPUs, one CPU each in turn, e.g. 0,1 or 2-3 "
                             "(Linux only, sched_setaffinity; ignored with a warning elsewhere)")
    parser.add_argument("--connect-timeout", type=_positive(float, "--connect-timeout 5"),
                        default=5.0, metavar="S",
                        help="seconds to wait for each connection to be accepted (default 5)")
    parser.add_argument("--ramp-batch", type=_positive(int, "--ramp-batch 64"), default=64,
                        metavar="N",
                        help="connections opened per batch, with a short pause between batches so "
                             "the server's listen queue never overflows (default 64)")
    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="c: the C engine (bench/load/engine.c, threads, one epoll loop "
                             "each); python: this file's uvloop engine (default: c where it "
                             "builds, else python, with a notice saying why)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object instead of a table")
    return parser


def _fmt_us(value_us: float) -> str:
    if value_us >= 1_000_000:
        return f"{value_us / 1e6:.2f} s"
    if value_us >= 1000:
        return f"{value_us / 1000:.2f} ms"
    return f"{value_us:.0f} µs"


def format_human(r: dict) -> str:
    """A few labelled lines, for people."""
    lat = r["latency_us"]
    mode = "closed loop" if r["mode"] == "closed" else f"open loop at {r['rate']:,.0f} req/s"
    lines = [
        f"target       {r['target']}, {mode}, {r['conns_established']}/{r['conns']} connections x "
        f"{r['size_bytes']} B, {r['duration_s']:g} s measured after {r['warmup_s']:g} s warm-up",
        f"requests     {r['requests']:,} ({r['rps']:,.0f} req/s)",
        f"throughput   {r['bytes_per_s'] / 1e6:,.2f} MB/s echoed (one direction)",
        f"latency      p50 {_fmt_us(lat['p50'])}  p99 {_fmt_us(lat['p99'])}  "
        f"p99.9 {_fmt_us(lat['p99_9'])}  max {_fmt_us(lat['max'])}  (mean {_fmt_us(lat['mean'])})",
    ]
    if r["mode"] == "open":
        lag = r["send_lag_us"]
        lines.append(f"send lag     p50 {_fmt_us(lag['p50'])}  p99 {_fmt_us(lag['p99'])}  "
                     f"max {_fmt_us(lag['max'])}  (offered {r['offered_rps']:,.0f} req/s)")
    errs = r["errors"]
    lines.append("errors       " + "  ".join(f"{k} {errs[k]}" for k in ERROR_KINDS))
    for kind, text in r["error_examples"].items():
        lines.append(f"  first {kind:<9}{text}")
    if r["latency_out_of_range"]:
        lines.append(f"  {r['latency_out_of_range']} latencies above 60 s were clamped to 60 s")
    per_request = r["client_cpu_us_per_request"]
    pinned = f" pinned to CPUs {_cpu_list_text(r['client_cpus'])}" if r["client_cpus"] else ""
    lines.append(
        f"client CPU   {r['client_cpu_s']:.2f} s in {r['client_workers']} "
        f"{'thread(s) of the C engine' if r.get('engine') == 'c' else 'worker(s)'}{pinned} = "
        f"{r['client_cpu_util']:.0%} of {r['client_cores']} core(s)"
        + (f", {per_request:.1f} µs/request" if per_request is not None else ""))
    if r["client_cpu_util"] >= CPU_HOT_FRACTION:
        lines.append("  the client was nearly saturated: the server may be faster than this shows "
                     "(give the client more cores or --workers)")
    for note in r["warnings"]:
        lines.append(f"warning      {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    host, port = args.target
    options = {"conns": args.conns, "size": args.size, "duration": args.duration,
               "warmup": args.warmup, "rate": args.rate, "workers": args.workers,
               "cpus": args.cpus, "connect_timeout": args.connect_timeout,
               "ramp_batch": args.ramp_batch}
    try:
        check_arguments(host, port, **options)
    except ValueError as exc:
        # check_arguments names the keyword argument first; name the command-line option instead
        name, _, rest = str(exc).partition(" ")
        parser.error(f"--{name.replace('_', '-')} {rest}" if name in options else str(exc))
    engine = args.engine
    if engine is None:
        engine, why = default_engine()
        if why is not None:
            print(f"bench.load: using the Python engine: {why}", file=sys.stderr)
    else:
        try:
            resolve_engine(engine)
        except ValueError as exc:
            parser.error(f"--engine {exc}")
    options["engine"] = engine
    shortfall = fd_shortfall(args.conns, worker_count(args.conns, args.workers, args.cpus),
                             engine=engine)
    if shortfall is not None:
        more = " (or spread the connections over more --workers)" if engine == "python" else ""
        print(f"too few file descriptors: {shortfall}{more}", file=sys.stderr)
        return 2
    if (why := port_shortfall(host, args.conns, engine)) is not None:
        print(f"too few local ports: {why}", file=sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the output lists the warnings
            result = run_load(host, port, **options)
    except KeyboardInterrupt:
        print("interrupted; workers stopped", file=sys.stderr)
        return 130
    print(json.dumps(result) if args.json else format_human(result), flush=True)
    if result["conns_established"] == 0:
        print(f"could not connect to {host}:{port}: is the server running? Start one with "
              "`make serve SERVER=NAME` (`make servers` lists them) and use the address it prints.",
              file=sys.stderr)
        return 1
    return 0

