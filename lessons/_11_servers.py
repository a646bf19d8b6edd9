"""Lesson 11, part 2: every server under CPU load, and two light clients keeping their own time.

Each server is started with ``--work-us 20000`` (it burns 20 ms of CPU per chunk it receives) and
pinned to one CPU; bench.load drives 8 heavy connections at it, and beside them two light clients
keep their own time:

- a light echo: one connection, a small message every 20 ms, its round trip timed. Its message
  costs the server the same 20 ms of work as a heavy one;
- a zero-work probe: connect, half-close at once without sending a byte, wait for the server to
  close. The server's code runs for it but burns nothing, so its round trip is the time until the
  server gets around to a new client: pure scheduling delay, the heartbeat of part 1.

On an event loop the probe waits for every heavy chunk ahead of it in the one thread, and it needs
two turns of the loop (accept, then the end of stream); with a thread per connection the GIL is
handed over every switch interval; with a process per connection the kernel preempts the burners.
The light echo shows the other side: when every message costs the same, preemption does not make
it faster, it only shares the CPU in slices instead of whole messages. Quick mode measures one
server of each kind (GIL, kernel, event loop); full mode every server available here (the serial
`iterative` server is left out: it would serve the light clients only after every heavy one left,
lesson 07).

lessons/11_preemptive_vs_cooperative.py runs ``servers_under_load(lesson)``; its claims and the
page read ``by_switcher`` and ``echo_summary``.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time

import servers
from bench.load import run_load
from servers import launch

WORK_US = 20_000  # --work-us: CPU burned by the server per chunk it receives
HEAVY_CONNS = 8
LIGHT_GAP_S = 0.020  # the light client's pause between two messages
LIGHT_TIMEOUT_S = 10.0
MESSAGE = b"light" * 12 + b"\n"
QUICK_SERVERS = ("threads", "fork", "asyncio-protocol")  # one a GIL, the kernel, an event loop preempt
PROBE_GAP_S = 0.020  # the probe's pause between two connections

# Who takes the CPU from a connection's code that burns it, by server: its scheduler.
SWITCHERS = {"threads": "GIL", "threadpool": "GIL", "prefork": "GIL", "fork": "kernel",
             "go": "runtime", "erlang": "runtime"}


# Servers that the lab's Python 3.11 cannot run as they are meant and the lesson runs under the
# newest CPython 3.12+ instead (lessons.parallel.newer_python; .venv-3.13 built at first use). The
# subinterpreters server's workers are epoll loops, one per CPU it may use: pinned to one CPU here,
# one loop in one subinterpreter, so nobody preempts a request's code in it (an "event loop").
UNDER_NEWER = ("subinterpreters",)


def switcher(name: str) -> str:
    """ "kernel" (a process per connection), "GIL" (threads), "runtime" (Go's scheduler, the
    BEAM's) or "event loop" (everything else: nobody preempts a request's code; Node's loop, the C
    reference and Java's virtual threads, which keep their carrier thread until they wait, included)."""
    return SWITCHERS.get(name, "event loop")


def light_client(address, stop: threading.Event) -> list[tuple[int, float]]:
    """One connection: send MESSAGE, time the whole echo, pause LIGHT_GAP_S; until ``stop``.
    Its message costs the server the same --work-us as a heavy one. Returns (send time in
    monotonic ns, round trip in s) per message; a timeout ends the run, recorded as LIGHT_TIMEOUT_S."""
    samples = []
    with socket.create_connection(address, timeout=LIGHT_TIMEOUT_S) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while not stop.is_set():
            sent_ns, t0 = time.monotonic_ns(), time.perf_counter()
            sock.sendall(MESSAGE)
            got = 0
            try:
                while got < len(MESSAGE):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the server closed the light client's connection")
                    got += len(chunk)
            except TimeoutError:
                samples.append((sent_ns, LIGHT_TIMEOUT_S))
                break
            samples.append((sent_ns, time.perf_counter() - t0))
            stop.wait(LIGHT_GAP_S)
    return samples


def zero_work_probe(address, stop: threading.Event) -> list[tuple[int, float]]:
    """A client that costs the server no CPU: connect, half-close at once (no byte sent, so no
    --work-us burned), wait for the server to close its side. The time it takes is the time until
    the server's code gets to run for a new client: pure scheduling delay."""
    samples = []
    while not stop.is_set():
        sent_ns, t0 = time.monotonic_ns(), time.perf_counter()
        try:
            with socket.create_connection(address, timeout=LIGHT_TIMEOUT_S) as sock:
                sock.shutdown(socket.SHUT_WR)
                if sock.recv(1):  # b"": the server saw our FIN and closed
                    raise ConnectionError("the server echoed bytes nobody sent")
        except TimeoutError:
            samples.append((sent_ns, LIGHT_TIMEOUT_S))
            break
        samples.append((sent_ns, time.perf_counter() - t0))
        stop.wait(PROBE_GAP_S)
    return samples


def cpu_plan() -> tuple[list[int] | None, list[int] | None]:
    """(server CPUs, client CPUs): disjoint when there are two CPUs or more."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return [cpus[-1]], [cpus[0]]


def light_under_load(entry: servers.Server, warmup_s: float, duration_s: float) -> dict:
    """Heavy load from bench.load, and the two light clients beside it, in threads of their own."""
    server_cpus, client_cpus = cpu_plan()
    server = launch.start(entry, ["--work-us", str(WORK_US)], cpus=server_cpus)
    heavy: dict = {}
    samples: dict[str, list] = {}
    stop = threading.Event()

    def drive():
        try:
            heavy.update(run_load(server.host, server.port, conns=HEAVY_CONNS, size=64,
                                  duration=duration_s, warmup=warmup_s, workers=1, cpus=client_cpus))
        finally:
            stop.set()

    def light(kind, client):
        try:
            samples[kind] = client(server.address, stop)
        except OSError as exc:
            samples[kind] = exc

    threads = [threading.Thread(target=drive, daemon=True),
               threading.Thread(target=light, args=("echo", light_client), daemon=True),
               threading.Thread(target=light, args=("probe", zero_work_probe), daemon=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration_s + warmup_s + 30)
    finally:
        stop.set()
        server.stop()
    start, end = heavy.get("window_start_ns"), heavy.get("window_end_ns")
    if not start:
        return {"error": "the heavy load did not run: " + "; ".join(heavy.get("warnings", []))}
    result = {"heavy_rps": heavy["rps"]}
    for kind in ("echo", "probe"):
        got = samples.get(kind)
        if isinstance(got, Exception) or got is None:
            result[kind] = f"the {kind} client failed: {got}"
        elif got and got[-1][1] >= LIGHT_TIMEOUT_S:
            result[kind] = f"no answer within {LIGHT_TIMEOUT_S:.0f} s"
        else:
            # every round trip that was in flight during the window: one that began in the warm-up
            # and ended after the window (a server that never got to the probe) counts too
            inside = [rtt for sent, rtt in got if sent < end and sent + rtt * 1e9 > start]
            result[kind] = statistics.median(inside) * 1000 if inside else \
                "nothing in flight during the measured window"
    return result


def by_switcher(values: dict, kind: str) -> dict[str, dict[str, float]]:
    """{switcher: {server: value}} of the recorded "light echo on NAME" or "zero-work probe on NAME"
    figures (``values``: label -> number, e.g. a Claim's ``m``). For the page and its claims."""
    prefix = {"echo": "light echo on ", "probe": "zero-work probe on "}[kind]
    out: dict[str, dict[str, float]] = {}
    for label, value in values.items():
        if label.startswith(prefix):
            name = label[len(prefix):]
            out.setdefault(switcher(name), {})[name] = value
    return out


def echo_summary(values: dict) -> dict:
    """The light echo on event loops against the servers someone preempts: ranges and medians."""
    groups = by_switcher(values, "echo")
    loops = sorted(groups.get("event loop", {}).values())
    preempted = sorted(v for k, g in groups.items() if k != "event loop" for v in g.values())
    if not loops or not preempted:
        return {}
    return {"loop_min": loops[0], "loop_max": loops[-1], "loop_median": statistics.median(loops),
            "preempted_min": preempted[0], "preempted_max": preempted[-1],
            "preempted_median": statistics.median(preempted)}



def servers_under_load(lesson) -> dict[str, dict[str, float]]:
    """Measure every server (quick: QUICK_SERVERS) with the two light clients beside the heavy
    load; print the rankings. Returns {server: {"echo": ms, "probe": ms}}."""
    warmup_s, duration_s = (0.3, 1.5) if lesson.quick else (0.5, 3.0)
    lesson.section(f"while {HEAVY_CONNS} heavy connections make the server burn {WORK_US // 1000} ms per "
                   f"message (--work-us {WORK_US}): a light client's echo, and a zero-work probe "
                   "(median round trip)")
    light: dict[str, dict] = {}
    for server in servers.SERVERS:
        name = server.name
        labels = {"echo": f"light echo on {name}", "probe": f"zero-work probe on {name}"}
        available, reason = server.availability()
        if not available and name in UNDER_NEWER:  # a GIL per interpreter: run it under a 3.12+
            from lessons.parallel import newer_python
            newer, why = newer_python()
            if newer:
                server = server.under(newer)
                available, reason = server.availability()
            else:
                reason = f"{reason}; {why}"
        if server.serial:
            available, reason = False, "serial: it would serve the light clients only after every heavy one left"
        elif available and lesson.quick and name not in QUICK_SERVERS:
            available, reason = False, "measured in full mode only (make lesson N=11)"
        if available:
            try:
                r = light_under_load(server, warmup_s, duration_s)
            except launch.StartError as exc:
                r = {"error": f"did not start: {exc.reason}"}
            if "error" in r:
                available, reason = False, r["error"]
        if not available:
            lesson.skip_all(labels.values(), reason)
            continue
        for kind, label in labels.items():
            if isinstance(r[kind], str):
                lesson.skip(label, r[kind])
            else:
                light.setdefault(name, {})[kind] = lesson.measure(label, r[kind], "ms")

    for kind, what in (("probe", "zero-work probe"), ("echo", "light echo")):
        ranked = sorted((n for n in light if kind in light[n]), key=lambda n: light[n][kind])
        if ranked:
            lesson.notice(f"{what}, fastest to slowest: "
                          + ", ".join(f"{n} {light[n][kind]:,.1f} ms" for n in ranked))
    loops = [n for n in light if "probe" in light[n] and switcher(n) == "event loop"]
    others = [n for n in light if "probe" in light[n] and switcher(n) != "event loop"]
    if loops and others:
        best_loop = min(loops, key=lambda n: light[n]["probe"])
        worst_other = max(others, key=lambda n: light[n]["probe"])
        if light[best_loop]["probe"] > light[worst_other]["probe"]:
            lesson.notice(f"the probe waited longer on every event loop (at best {best_loop}, "
                          f"{light[best_loop]['probe']:,.1f} ms) than on any server the GIL, the "
                          f"kernel or a runtime preempts (at worst {worst_other}, "
                          f"{light[worst_other]['probe']:,.1f} ms)")
        else:
            lesson.notice(f"the probe on {best_loop} ({light[best_loop]['probe']:,.1f} ms) beat "
                          f"{worst_other} ({light[worst_other]['probe']:,.1f} ms) this time")
    sliced = [n for n in light if "echo" in light[n] and "probe" in light[n] and switcher(n) in ("GIL", "kernel")]
    if sliced:
        lesson.notice("where the GIL or the kernel preempts, the light echo took "
                      + ", ".join(f"{light[n]['echo'] / light[n]['probe']:,.1f}x its probe on {n}" for n in sliced)
                      + f": the light message's own {WORK_US // 1000} ms of work is shared out in slices "
                      "with the heavy ones', a client that needs no work gets in between them")
    return light
