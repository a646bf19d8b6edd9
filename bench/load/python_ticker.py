"""The Python engine's open-loop ticker: one timer per worker fires every connection's scheduled
sends, on a Linux timerfd where there is one (nanosecond resolution), else on the event loop's
millisecond timers.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time

from bench.load.contract import MIN_TICK_NS
from bench.load.python_connection import OpenLoopConnection

_now_ns = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine, in ns


class OpenLoopTicker:
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

