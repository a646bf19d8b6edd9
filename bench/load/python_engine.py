"""The Python load engine: a fast echo client that measures throughput and latency of any echo
server, and the design both engines follow.

    python -m bench.load --engine python --target 127.0.0.1:9000 --conns 64 --duration 5
    python -m bench.load --engine python --target 127.0.0.1:9000 --rate 20000 --json

It opens `--conns` TCP connections spread over several worker processes (one uvloop event loop
each, so the client is not limited to one core), sends random payloads and checks every echoed byte.
This file is the parent's side and the worker process; a worker's connections are in
python_connection.py, its open-loop timer in python_ticker.py, and what it shares with the C
engine (the tunables, the error kinds, the schedule, the stall limit, the summary) in contract.py.

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
   a short pause), so the server's listen queue does not overflow, then report "ready"
   (handshake.py takes both engines through these steps). Every
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
  latency nor an error. The stall limit (contract.stall_limit_s) is `STALL_TIMEOUT_S` (1 s),
  except in closed loop with many connections, where Little's law sets a floor: N connections
  served at X round trips/s wait N / X seconds per round trip on average even when served in
  perfect turn (10,000 connections at 20,000/s: 0.5 s), so a request is a timeout only once it
  has waited `STALL_FAIR_SHARES` times that long. A server that serves some connections and starves others
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
where it builds) runs the same design in C (engine.c: one epoll loop per thread, each thread
pinned to one CPU, wrk2's shape), so that the generator costs less CPU per request than the
servers it measures. Both take the same options, count errors the same way and return the same
summary, plus "engine": which one measured it. The C engine hands its latencies over as
HdrHistogram buckets, which c_engine.py records into the same `hdrh` histograms. Past 5,000
connections to a loopback server it spreads them over several source addresses (127.0.0.1,
127.0.0.2, ...): one (source, destination) pair has only the ephemeral port range (~28,000
ports), and connect() slows down as they fill.

Scripts that call `run_load` must guard their top level with `if __name__ == "__main__":`, as for
any "spawn" multiprocessing: each worker starts a fresh interpreter that re-imports the main module.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import time
import traceback
import warnings

from bench import hist
from bench.load import handshake
from bench.load.contract import (
    ERROR_KINDS,
    FD_HEADROOM,
    RAMP_PAUSE_S,
    STALL_TIMEOUT_S,
    connect_plan,
    cpu_plan,
    open_loop_schedule,
    stall_limit_s,
    summarize,
    worker_count,
    worker_result,
)
from bench.load.limits import raise_worker_fd_limit
from bench.load.python_connection import (
    ClosedLoopConnection,
    OpenLoopConnection,
    _Connection,
    make_messages,
)
from bench.load.python_ticker import OpenLoopTicker

SPAWN_BUDGET_S = 15.0  # to start a worker and import uvloop; generous, for slow CI machines
FLUSH_EVERY_S = 0.5  # how often a worker moves its latency dict into the histogram...
FLUSH_WHEN_DISTINCT = 20_000  # ...when it holds this many distinct values (bounds its memory)

_now_ns = time.monotonic_ns  # CLOCK_MONOTONIC: one clock for all processes of the machine, in ns


def loop_implementation() -> str:
    """Which event loop the workers will run: uvloop if installed, else plain asyncio."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


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
            ticker = OpenLoopTicker(self.loop, self.conns, window_end_ns)

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
        return worker_result(
            conns_established=len(self.conns),
            conns_open_at_end=self.conns_open_at_end,
            stall_limit_s=self.stall_limit_s,
            hist=self.latency.encoded(),
            latency_out_of_range=self.latency.out_of_range,
            send_lag_hist=self.send_lag.encoded() if self.config["rate"] is not None else None,
            offered=sum(getattr(c, "offered", 0) for c in self.conns),
            errors=self.errors,
            error_examples=self.error_examples,
            cpu_user_s=self.cpu_in_window_s[0],
            cpu_sys_s=self.cpu_in_window_s[1],
            warnings=self.warnings,
        )


def _cpu_times_s() -> tuple[float, float]:
    """(user, system) CPU seconds of this process so far (getrusage where it exists)."""
    try:
        import resource
    except ImportError:  # not a Unix: process_time() is user + system, not split
        return time.process_time(), 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _worker_async(config: dict, pipe) -> None:
    worker = _Worker(config, pipe)
    if config["loop_warning"]:
        worker.warnings.append(config["loop_warning"])
    if (note := raise_worker_fd_limit(len(config["conn_indices"]) + FD_HEADROOM)) is not None:
        worker.warnings.append(note)
    connect_started_s = time.monotonic()
    await worker.connect_all()
    pipe.send(("ready", {"conns_established": len(worker.conns),
                         "connect_s": time.monotonic() - connect_started_s}))
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


def _send_quietly(pipe, message) -> None:
    try:
        pipe.send(message)
    except OSError:
        pass  # the other side is already gone


# -- The parent: plan, start, collect, merge -------------------------------------------------------


def run_load(host: str, port: int, *, conns, size, duration, warmup, rate, workers, cpus,
             connect_timeout, ramp_batch, on_window) -> dict:
    """bench.load.run_load with this engine (which checked the arguments): the plan of
    contract.py, one worker process per worker, the handshake of handshake.py, the summary of
    contract.summarize. No worker outlives this call."""
    result_warnings: list[str] = []
    loop_name = loop_implementation()
    loop_warning = None
    if loop_name != "uvloop":
        loop_warning = "uvloop is not installed: workers run plain asyncio, which is slower"
        warnings.warn(loop_warning, RuntimeWarning, stacklevel=3)
        result_warnings.append(loop_warning)
    pin, cpu_pool, notes = cpu_plan(cpus)
    result_warnings += notes
    n_workers = worker_count(conns, workers, cpus)

    # Connections go to workers round-robin, so each worker's share of an open-loop schedule is
    # itself evenly spread over time.
    ramp_batch_per_worker, connect_budget_s = connect_plan(conns, n_workers, ramp_batch,
                                                           connect_timeout)
    configs = [{
        "worker_index": w,
        "host": host, "port": port,
        "conn_indices": list(range(w, conns, n_workers)), "total_conns": conns,
        "size_bytes": size, "rate": rate, "warmup_s": warmup, "duration_s": duration,
        "connect_timeout_s": connect_timeout, "connect_budget_s": connect_budget_s,
        "ramp_batch_per_worker": ramp_batch_per_worker,
        "start_wait_s": SPAWN_BUDGET_S + connect_budget_s + handshake.START_WAIT_MARGIN_S,
        "cpu": cpu_pool[w % len(cpu_pool)] if pin else None,
        "loop_warning": loop_warning,
    } for w in range(n_workers)]

    # "spawn" starts each worker as a fresh interpreter: no copy of the parent's threads, locks or
    # event loop (fork of a threaded process can deadlock), and it behaves the same on every OS.
    ctx = multiprocessing.get_context("spawn")
    procs: list[_WorkerProcess] = []
    try:
        for config in configs:
            procs.append(_WorkerProcess(ctx, config))
        results, start_ns, notes = handshake.drive(
            procs, ready_by=time.monotonic() + SPAWN_BUDGET_S + connect_budget_s, warmup=warmup,
            duration=duration, on_window=on_window)
    except BaseException:  # Ctrl-C, or a worker's error: stop the workers now, not gracefully
        _stop_workers(procs, graceful=False)
        raise
    _stop_workers(procs, graceful=True)
    return summarize(
        results, host=host, port=port, conns=conns, size=size, rate=rate,
        duration=duration if start_ns is not None else 0.0, warmup=warmup,
        n_workers=n_workers, cpus=(cpu_pool if pin else None), cores=min(n_workers, len(cpu_pool)),
        loop_name=loop_name, result_warnings=result_warnings + notes, start_ns=start_ns,
        engine="python")


class _WorkerProcess:
    """One worker process as the handshake sees it (a handshake.Worker): a "spawn" process and
    the parent's end of its pipe, on which "ready", the result, or a traceback come up and
    "start" or "stop" go down."""

    def __init__(self, ctx, config: dict) -> None:
        parent_end, child_end = ctx.Pipe()
        self.name = f"bench.load worker {config['worker_index']}"
        self.process = ctx.Process(target=_worker_main, args=(config, child_end), name=self.name,
                                   daemon=True)
        self.process.start()
        child_end.close()  # so that the worker's death shows as EOF on parent_end
        self.pipe = parent_end

    def ready(self, deadline: float) -> dict:
        return self._receive("ready", deadline)

    def start(self, start_ns: int) -> None:
        _send_quietly(self.pipe, ("start", start_ns))

    def stop(self) -> None:
        if self.process.is_alive():
            _send_quietly(self.pipe, ("stop", "nothing to measure"))

    def result(self, deadline: float) -> dict:
        return self._receive("result", deadline)

    def _receive(self, kind: str, deadline: float) -> dict:
        # poll waits on one pipe (a poll(2), not select: no FD_SETSIZE limit); EOF is readable too
        if not self.pipe.poll(max(0.0, deadline - time.monotonic())):
            raise handshake.Lost(f"sent no {kind!r} message in time")
        try:
            message = self.pipe.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            raise handshake.Lost(f"exited (code {self.process.exitcode}) before its {kind!r} "
                                 "message") from None
        if message[0] == "error":
            raise RuntimeError(f"{self.name} failed:\n{message[1]}")
        return message[1]


def _stop_workers(procs: list[_WorkerProcess], graceful: bool) -> None:
    """Make sure no worker outlives run_load: wait a little if graceful, then SIGTERM, SIGKILL."""
    deadline = time.monotonic() + (2.0 if graceful else 0.0)
    for worker in procs:
        worker.process.join(max(0.0, deadline - time.monotonic()))
    for worker in procs:
        if worker.process.is_alive():
            worker.process.terminate()
    for worker in procs:
        worker.process.join(2.0)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.pipe.close()
        worker.process.close()


