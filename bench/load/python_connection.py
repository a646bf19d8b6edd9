"""The Python engine's connections (python_engine.py runs them): the messages they send, and one
asyncio Protocol per connection, closed loop or open loop, which checks every echoed byte and
counts each round trip's latency.

asyncio Protocols rather than streams: the loop calls data_received() with each chunk it read,
with no coroutine switch, no StreamReader buffer and no future per message. Per round trip, top to
bottom in data_received: check the echo, read the clock once, count the latency, write the next
message. It is written out in one function per mode, not split into helpers, because a Python
call costs more than the memcmp of a 1 KiB echo, and the generator should cost no more CPU per
request than the servers it measures.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time
from typing import TYPE_CHECKING

from bench.load.contract import MESSAGE_MEMORY_BYTES, MESSAGES_PER_WORKER, OFFSET_SPAN_BYTES

if TYPE_CHECKING:
    from bench.load.python_engine import _Worker

MESSAGE_COPY_LIMIT_BYTES = 256 << 10  # larger messages are memoryviews into the payload, not copies

_now_ns = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine, in ns


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

