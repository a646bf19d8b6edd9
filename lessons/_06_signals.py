"""Lesson 06, signals and threads: masks are per thread, a signal goes to one thread or to the process,
and the kernel hands a process-directed one to a thread that does not block it.

The main thread blocks SIGUSR1 and SIGUSR2 before it starts three threads, which inherit that mask:
a "waiter", which keeps it, and two "pausers", which unblock SIGUSR2 and sleep in pause(2). Each
thread's mask is read back from /proc/self/task/TID/status (SigBlk). SIGUSR1 is sent to the waiter
alone (pthread_kill, which is tgkill(2)) and then to the process (kill(2)): while every thread
blocks it, it waits in the thread's own pending set (SigPnd) or in the process's shared one
(ShdPnd), and sigwait() takes it either way. SIGUSR2 sent to the process is accepted only by the
pausers: the kernel picks one (kernel/signal.c, complete_signal) and its pause() returns, while
CPython, whichever thread the kernel chose, runs the Python handler in the main thread.

The OS mechanism: signal(7) ("Signal mask and pending signals"), pthread_sigmask(3), tgkill(2),
sigwait(3), pause(2), proc(5) (SigBlk, SigPnd, ShdPnd). Linux-only (/proc).
lessons/06_threads_linux.py runs ``signals_section(lesson, no_proc)``.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from lessons import procfs
from lessons.common import Lesson

SIGNAL_TIMEOUT_S = 2.0  # every wait for a signal is bounded by this
SIGNAL_SETTLE_S = 0.05  # time for a thread to reach its wait, or for a signal to land


def signal_bits(hex_mask: str) -> set[int]:
    """The signal numbers in a /proc/PID/status mask (SigBlk, SigPnd, ShdPnd): bit n-1 is signal n."""
    value = int(hex_mask, 16)
    return {n for n in range(1, 65) if value >> (n - 1) & 1}


def signals_and_threads() -> dict:
    """Masks are per thread, a signal can be sent to one thread (tgkill) or to the process (kill),
    and the kernel hands a process-directed one to a thread that does not block it.

    The main thread blocks SIGUSR1 and SIGUSR2 before it starts three threads, which inherit that
    mask: a "waiter", which keeps it, and two "pausers", which unblock SIGUSR2 and sleep in pause(2).
    Then: SIGUSR1 to the waiter alone (pthread_kill, i.e. tgkill), SIGUSR1 to the process (kill),
    both taken by the waiter with sigwait(); SIGUSR2 to the process, which only the pausers accept."""
    import ctypes
    pause = ctypes.CDLL(None, use_errno=True).pause  # ctypes releases the GIL around the call
    usr1, usr2 = signal.SIGUSR1, signal.SIGUSR2
    out: dict = {}
    woken: list[str] = []
    handled: list[str] = []  # the threads the Python handler ran in
    orders: dict[str, threading.Event] = {"take": threading.Event(), "taken": threading.Event()}
    taken: list[str] = []

    def waiter():
        for _ in range(2):  # two SIGUSR1 to take: the thread-directed one, then the process-directed one
            orders["take"].wait(SIGNAL_TIMEOUT_S)
            orders["take"].clear()
            if signal.sigtimedwait({usr1}, SIGNAL_TIMEOUT_S):
                taken.append(threading.current_thread().name)
            orders["taken"].set()

    def pauser():
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {usr2})  # this thread's mask only
        pause()  # returns -1, EINTR, once a signal handler has run in this thread
        woken.append(threading.current_thread().name)

    def pending_in(tid: int) -> str:
        fields = procfs.status("self", tid)
        where = [name for name, key in (("the thread's own", "SigPnd"), ("the process's shared", "ShdPnd"))
                 if usr1 in signal_bits(fields[key])]
        return " and ".join(where) or "none"

    previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {usr1, usr2})
    previous_handler = signal.signal(usr2, lambda *_: handled.append(threading.current_thread().name))
    threads = [threading.Thread(target=waiter, name="waiter")] + \
              [threading.Thread(target=pauser, name=f"pauser {i}") for i in (1, 2)]
    try:
        for t in threads:
            t.start()
        time.sleep(SIGNAL_SETTLE_S)  # the pausers are in pause() with their own masks
        masks = {t.name: procfs.status("self", t.native_id)["SigBlk"] for t in threads}
        masks["main"] = procfs.status("self", threading.get_native_id())["SigBlk"]
        out["masks"] = {name: sorted(signal.Signals(n).name for n in signal_bits(mask) & {usr1, usr2})
                        for name, mask in masks.items()}
        waiter_tid = threads[0].native_id

        signal.pthread_kill(threads[0].ident, usr1)  # tgkill(pid, waiter's tid, SIGUSR1): one thread
        time.sleep(SIGNAL_SETTLE_S)
        out["tgkill_pending"] = pending_in(waiter_tid)
        out["tgkill_pending_main"] = pending_in(threading.get_native_id())
        orders["take"].set()
        orders["taken"].wait(SIGNAL_TIMEOUT_S)
        orders["taken"].clear()

        os.kill(os.getpid(), usr1)  # kill(pid, SIGUSR1): the process; every thread blocks it
        time.sleep(SIGNAL_SETTLE_S)
        out["kill_pending"] = pending_in(waiter_tid)
        orders["take"].set()
        orders["taken"].wait(SIGNAL_TIMEOUT_S)
        out["taken_by"] = taken

        os.kill(os.getpid(), usr2)  # the process again: only the pausers accept SIGUSR2
        deadline = time.monotonic() + SIGNAL_TIMEOUT_S
        while (not woken or not handled) and time.monotonic() < deadline:
            time.sleep(0.001)  # the main thread runs Python code: the Python handler runs here
        time.sleep(SIGNAL_SETTLE_S)  # a second pauser woken by the same signal would show now
        out["woken"], out["handler_ran_in"] = list(woken), list(handled)
    finally:
        for t in threads[1:]:
            if t.is_alive():
                signal.pthread_kill(t.ident, usr2)  # tgkill: release each pauser still in pause()
        for t in threads:
            t.join(SIGNAL_TIMEOUT_S)
        signal.signal(usr2, previous_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
    return out


def signals_section(lesson: Lesson, no_proc: str | None) -> None:
    lesson.section("signals and threads: SIGUSR1 and SIGUSR2, main and 3 threads with masks of their own")
    labels = ("signals each thread blocks (SigBlk)", "SIGUSR1 sent to one thread (tgkill), it blocking it: pending in",
              "the same, pending in the main thread", "SIGUSR1 sent to the process (kill), all blocking it: pending in",
              "taken by sigwait() in", "threads woken by one SIGUSR2 to the process, two accepting it",
              "thread the kernel gave SIGUSR2 to", "thread the Python handler ran in")
    if no_proc:
        lesson.skip_all(labels, no_proc)
        return
    r = signals_and_threads()
    masks = "; ".join(f"{name}: {' '.join(sigs) or 'none'}" for name, sigs in r["masks"].items())
    for label, value in zip(labels, (masks, r["tgkill_pending"], r["tgkill_pending_main"], r["kill_pending"],
                                     ", ".join(r["taken_by"]) or "nobody", len(r["woken"]),
                                     ", ".join(r["woken"]) or "none", ", ".join(r["handler_ran_in"]) or "none"),
                            strict=True):
        lesson.measure(label, value)
    lesson.notice(f"each thread has its own mask ({masks}); a signal sent to one thread waited in that thread's "
                  f"pending set, one sent to the process in the process's shared set, and sigwait() took both; "
                  f"SIGUSR2, sent to the process, woke {len(r['woken'])} of the two threads that accept it "
                  f"({', '.join(r['woken'])}), while Python ran its handler in "
                  f"{', '.join(r['handler_ran_in']) or 'no thread'}")
