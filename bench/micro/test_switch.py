"""Switching: handing control from one unit to another of the same kind, and back.

Every test is a ping-pong: one side sends a value, the other hands it straight back, K round trips
per call of the benchmarked function. A round trip is two switches, so ``ops_per_call`` is 2K and
the report shows the cost of one switch. Both sides check every value, and at the end the echoing
side reports how many round trips it served, which must equal how many were sent.

What happens during one switch:

- process, pipe ping-pong: write() on the pipe wakes the task sleeping in read() on the other end;
  our own read() then blocks, and the scheduler switches tasks: saves our registers, loads the
  other's, and (a different process) switches page tables. On one core that is a plain context
  switch through the run queue. Across two cores the waker also sends an inter-processor interrupt
  to the other CPU, which may have gone idle and must wake up first.
- thread, pipe ping-pong: the very same syscalls and scheduler path, minus the page-table switch
  (threads share one address space), plus CPython's GIL: the woken thread must take the GIL the
  blocked one released on its way into read(). Same code as the process test, so the difference
  between the two rows is the model.
- greenlet: switch() copies the part of the C stack in use to the heap, copies the target's back,
  and jumps to it: a user-space stack swap, no system call.
- greenlet (gevent): a queue hop through gevent's hub: get() on an empty queue switches to the hub
  greenlet, which runs the waiting greenlet from its event loop. Two greenlet switches per hop.
- generator: send() resumes a suspended frame in the same interpreter loop; yield returns from
  it. No stack to swap at all: the frame lives on the heap.
- asyncio task, queue hop: put() resolves the future the waiting get() sleeps on, which puts the
  getter's wake-up on the loop's ready queue; when the putter awaits, control returns to the event
  loop, which runs one iteration (including an epoll_wait() with a zero timeout) and steps the other
  task. With uvloop the loop is libuv, written in C.
- trio task, memory channel hop: the same idea through trio's scheduler; every send() and
  receive() is a checkpoint that yields to the scheduler. One call includes one trio.run() start-up,
  shared by ROUND_TRIPS_PER_CALL round trips.

Kernel-scheduled units (processes and threads) are measured pinned to one core and across two
cores. The others never leave their OS thread, so they are measured on one core only.
"""

from __future__ import annotations

import asyncio
import os
import select
import threading
import time
from contextlib import contextmanager

import pytest

from bench.micro.common import (
    label,
    one_cpu,
    pin_this_thread,
    pinned_to,
    reap,
    smt_siblings,
    two_cpus,
)

ROUND_TRIPS_PER_CALL = 1000
COUNT_BYTES = 8  # the echoing side reports its round-trip count as 8 bytes at the end


class Tally:
    """Round trips the pinging side completed, to compare with what the echoing side served."""

    def __init__(self) -> None:
        self.round_trips_sent = 0
        self.round_trips_echoed: int | None = None
        self.exit_code: int | None = None  # of the echoing process or thread, once it is gone

    def mismatch(self) -> str:
        return (
            f"sent {self.round_trips_sent} round trips, "
            f"the echo side served {self.round_trips_echoed}"
        )


@pytest.fixture(params=["same-core", "cross-core"])
def placement(request) -> tuple[int, int]:
    """(CPU of the pinging side, CPU of the echoing side)."""
    if request.param == "same-core":
        cpu = one_cpu()
        return cpu, cpu
    return two_cpus()


def _label_kernel_switch(benchmark, unit: str, kind: str, cpus: tuple[int, int]) -> None:
    same_core = cpus[0] == cpus[1]
    label(
        benchmark,
        unit=unit,
        kind=kind,
        operation="switch same-core" if same_core else "switch cross-core",
        ops_per_call=2 * ROUND_TRIPS_PER_CALL,
        what_one_op_is="half a 1-byte pipe round trip (write, then block in read)",
        cpus=sorted(set(cpus)),
        smt_siblings=False if same_core else smt_siblings(*cpus),
    )


# --- processes and threads: a 1-byte pipe ping-pong --------------------------------------------


def echo_bytes(ping_r: int, pong_w: int, cpu: int) -> int:
    """The echoing side: pin to ``cpu``, echo each byte until EOF, then report the count."""
    pin_this_thread(cpu)
    round_trips = 0
    while byte := os.read(ping_r, 1):
        os.write(pong_w, byte)
        round_trips += 1
    os.write(pong_w, round_trips.to_bytes(COUNT_BYTES, "little"))
    return round_trips


def ping_pong_bytes(ping_w: int, pong_r: int, round_trips: int, tally: Tally) -> None:
    """The pinging side: send a byte, wait for it to come back, ``round_trips`` times."""
    for _ in range(round_trips):
        os.write(ping_w, b"!")
        if os.read(pong_r, 1) != b"!":
            raise AssertionError("the echo side sent back a different byte")
    tally.round_trips_sent += round_trips


def _read_count(pong_r: int, timeout_s: float = 10.0) -> int | None:
    """Read the echoing side's final count; None if it never came (the echo side died)."""
    data = b""
    deadline = time.monotonic() + timeout_s
    while len(data) < COUNT_BYTES and time.monotonic() < deadline:
        readable, _, _ = select.select([pong_r], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        chunk = os.read(pong_r, COUNT_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return int.from_bytes(data, "little") if len(data) == COUNT_BYTES else None


@contextmanager
def echo_process(cpu: int):
    """A forked child echoing bytes on a pipe pair; yields (ping_w, pong_r, tally).

    On exit: close our end of the ping pipe (the child sees EOF), read its count into the tally,
    reap it (SIGKILL after 5 s), and record its exit code in ``tally.exit_code``.
    """
    ping_r, ping_w = os.pipe()
    pong_r, pong_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        exit_code = 1
        try:
            os.close(ping_w)
            os.close(pong_r)
            echo_bytes(ping_r, pong_w, cpu)
            exit_code = 0
        finally:
            os._exit(exit_code)
    os.close(ping_r)
    os.close(pong_w)
    tally = Tally()
    try:
        yield ping_w, pong_r, tally
    finally:
        os.close(ping_w)
        tally.round_trips_echoed = _read_count(pong_r)
        os.close(pong_r)
        tally.exit_code = reap(pid)


@contextmanager
def echo_thread(cpu: int):
    """A thread echoing bytes on a pipe pair; yields (ping_w, pong_r, tally).

    On exit: close our end of the ping pipe (the thread sees EOF and returns), read its count
    into the tally, join it.
    """
    ping_r, ping_w = os.pipe()
    pong_r, pong_w = os.pipe()
    thread = threading.Thread(target=echo_bytes, args=(ping_r, pong_w, cpu), name="echo")
    thread.start()
    tally = Tally()
    try:
        yield ping_w, pong_r, tally
    finally:
        os.close(ping_w)
        tally.round_trips_echoed = _read_count(pong_r)
        thread.join(timeout=5.0)
        tally.exit_code = 1 if thread.is_alive() else 0
        for fd in (ping_r, pong_r, pong_w):
            os.close(fd)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork needs a POSIX system")
def test_switch_process(benchmark, placement):
    ping_cpu, echo_cpu = placement
    _label_kernel_switch(benchmark, "process (pipe)", "process", placement)
    with pinned_to(ping_cpu), echo_process(echo_cpu) as (ping_w, pong_r, tally):
        benchmark(ping_pong_bytes, ping_w, pong_r, ROUND_TRIPS_PER_CALL, tally)
    assert tally.exit_code == 0, f"the echo child exited {tally.exit_code}"
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


def test_switch_thread(benchmark, placement):
    ping_cpu, echo_cpu = placement
    _label_kernel_switch(benchmark, "thread (pipe)", "thread", placement)
    with pinned_to(ping_cpu), echo_thread(echo_cpu) as (ping_w, pong_r, tally):
        benchmark(ping_pong_bytes, ping_w, pong_r, ROUND_TRIPS_PER_CALL, tally)
    assert tally.exit_code == 0, "the echo thread did not finish after EOF"
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


# --- greenlets and generators: switch() and send() -------------------------------------------


def _label_user_space_switch(benchmark, unit: str, kind: str, cpu: int, how: str) -> None:
    label(
        benchmark,
        unit=unit,
        kind=kind,
        operation="switch same-core",
        ops_per_call=2 * ROUND_TRIPS_PER_CALL,
        what_one_op_is=how,
        cpus=[cpu],
    )


def greenlet_echo(first):
    """Runs in the echoing greenlet: hand every value straight back to the parent."""
    from greenlet import getcurrent

    parent = getcurrent().parent
    round_trips = 0
    value = parent.switch(first)  # started: wait for the first ping
    while value is not None:
        round_trips += 1
        value = parent.switch(value)
    return round_trips  # the parent's switch(None) receives this as the greenlet dies


def test_switch_greenlet(benchmark):
    from greenlet import greenlet

    cpu = one_cpu()
    _label_user_space_switch(
        benchmark, "greenlet", "greenlet", cpu, "greenlet.switch(value) one way"
    )
    tally = Tally()

    def ping_pong(peer: greenlet, round_trips: int) -> None:
        for i in range(round_trips):
            if peer.switch(i) != i:
                raise AssertionError("the echo greenlet sent back a different value")
        tally.round_trips_sent += round_trips

    peer = greenlet(greenlet_echo)
    assert peer.switch("ready") == "ready"
    try:
        with pinned_to(cpu):
            benchmark(ping_pong, peer, ROUND_TRIPS_PER_CALL)
        tally.round_trips_echoed = peer.switch(None)
    finally:
        if not peer.dead:
            peer.throw()  # raises GreenletExit inside it, which ends it
    assert peer.dead
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


def gevent_echo(ping, pong) -> int:
    """Runs in a gevent greenlet: move every value from one queue to the other until None."""
    round_trips = 0
    while (value := ping.get()) is not None:
        round_trips += 1
        pong.put(value)
    return round_trips


def test_switch_gevent_greenlet(benchmark):
    gevent = pytest.importorskip("gevent")
    from gevent.queue import Queue

    cpu = one_cpu()
    _label_user_space_switch(
        benchmark, "greenlet (gevent)", "greenlet", cpu, "a gevent Queue hop, through the hub"
    )
    tally = Tally()
    ping, pong = Queue(), Queue()

    def ping_pong(round_trips: int) -> None:
        for i in range(round_trips):
            ping.put(i)
            if pong.get() != i:
                raise AssertionError("the echo greenlet sent back a different value")
        tally.round_trips_sent += round_trips

    peer = gevent.spawn(gevent_echo, ping, pong)
    try:
        with pinned_to(cpu):
            benchmark(ping_pong, ROUND_TRIPS_PER_CALL)
        ping.put(None)
        tally.round_trips_echoed = peer.get(timeout=5)
    finally:
        peer.kill(block=True, timeout=5)
    assert peer.dead
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


def generator_echo():
    """A generator that yields back every value sent to it, until None."""
    round_trips = 0
    value = yield "ready"
    while value is not None:
        round_trips += 1
        value = yield value
    return round_trips  # carried out by StopIteration


def test_switch_generator(benchmark):
    cpu = one_cpu()
    _label_user_space_switch(
        benchmark, "generator", "generator", cpu, "gen.send(value) or the yield that answers it"
    )
    tally = Tally()

    def ping_pong(peer, round_trips: int) -> None:
        for i in range(round_trips):
            if peer.send(i) != i:
                raise AssertionError("the generator yielded a different value")
        tally.round_trips_sent += round_trips

    peer = generator_echo()
    assert next(peer) == "ready"
    try:
        with pinned_to(cpu):
            benchmark(ping_pong, peer, ROUND_TRIPS_PER_CALL)
        try:
            peer.send(None)
        except StopIteration as finished:
            tally.round_trips_echoed = finished.value
    finally:
        peer.close()
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


# --- asyncio and trio tasks: a queue hop ----------------------------------------------------


async def asyncio_echo(ping: asyncio.Queue, pong: asyncio.Queue) -> int:
    """An asyncio task that moves every value from one queue to the other until None."""
    round_trips = 0
    while (value := await ping.get()) is not None:
        round_trips += 1
        pong.put_nowait(value)  # an unbounded queue never blocks a put
    return round_trips


async def asyncio_ping_pong(ping, pong, round_trips: int, tally: Tally) -> None:
    for i in range(round_trips):
        ping.put_nowait(i)
        if await pong.get() != i:
            raise AssertionError("the echo task sent back a different value")
    tally.round_trips_sent += round_trips


def test_switch_asyncio_task(benchmark, asyncio_loop):
    uvloop = "uvloop" in type(asyncio_loop).__module__
    cpu = one_cpu()
    _label_user_space_switch(
        benchmark,
        "asyncio task (uvloop)" if uvloop else "asyncio task",
        "asyncio",
        cpu,
        "an asyncio.Queue hop: put, the other task wakes from get",
    )
    tally = Tally()
    ping, pong = asyncio.Queue(), asyncio.Queue()
    # The echo task lives on the loop across calls; each call runs the loop until its ping-pong
    # is done, and the echo task is parked in ping.get() in between.
    peer = asyncio_loop.create_task(asyncio_echo(ping, pong))
    try:
        with pinned_to(cpu):
            benchmark(
                lambda: asyncio_loop.run_until_complete(
                    asyncio_ping_pong(ping, pong, ROUND_TRIPS_PER_CALL, tally)
                )
            )
        ping.put_nowait(None)
        tally.round_trips_echoed = asyncio_loop.run_until_complete(asyncio.wait_for(peer, 5))
    finally:
        if not peer.done():
            peer.cancel()
            asyncio_loop.run_until_complete(asyncio.gather(peer, return_exceptions=True))
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()


def test_switch_trio_task(benchmark):
    trio = pytest.importorskip("trio")

    cpu = one_cpu()
    _label_user_space_switch(
        benchmark,
        "trio task",
        "trio",
        cpu,
        "a trio memory-channel hop: send, the other task wakes from receive",
    )
    benchmark.extra_info["note"] = f"incl. one trio.run() per {2 * ROUND_TRIPS_PER_CALL} switches"
    tally = Tally()

    async def echo(receive_ping, send_pong, served: list[int]) -> None:
        round_trips = 0
        async for value in receive_ping:
            if value is None:
                break
            round_trips += 1
            await send_pong.send(value)
        served.append(round_trips)

    async def ping_pong(round_trips: int) -> None:
        send_ping, receive_ping = trio.open_memory_channel(1)
        send_pong, receive_pong = trio.open_memory_channel(1)
        served: list[int] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(echo, receive_ping, send_pong, served)
            for i in range(round_trips):
                await send_ping.send(i)
                if await receive_pong.receive() != i:
                    raise AssertionError("the echo task sent back a different value")
            await send_ping.send(None)
        # Both tasks are done here: leaving the nursery waited for the echo task.
        tally.round_trips_sent += round_trips
        tally.round_trips_echoed = (tally.round_trips_echoed or 0) + served[0]

    with pinned_to(cpu):
        benchmark(trio.run, ping_pong, ROUND_TRIPS_PER_CALL)
    assert tally.round_trips_sent > 0
    assert tally.round_trips_echoed == tally.round_trips_sent, tally.mismatch()
