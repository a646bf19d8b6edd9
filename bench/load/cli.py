"""The load generator's command line: `python -m bench.load` (and `python -m bench load`).

    python -m bench.load --target 127.0.0.1:9000 --conns 64 --size 1024 --duration 5
    python -m bench.load --target 127.0.0.1:9000 --rate 20000 --json

Prints a few labelled lines (or the summary as one JSON object with --json). Exits 2 with the fix
on a bad option, too few open files or too few local ports, 1 when no connection could be made,
130 on Ctrl-C (every worker stopped).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings

from bench.load.contract import ENGINES, ERROR_KINDS, cpu_list_text

CPU_HOT_FRACTION = 0.9  # utilisation above which the output warns that the client was busy


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
                             "each); python: the uvloop engine (bench/load/python_engine.py; "
                             "default: c where it builds, else python, with a notice saying why)")
    parser.add_argument("--json", action="store_true",
                        help="print the summary as one JSON object instead of a table")
    return parser


def format_human(r: dict) -> str:
    """A few labelled lines, for people."""
    from bench.report.fmt import fmt_us  # the report's one formatter of a duration in µs

    lat = r["latency_us"]
    mode = "closed loop" if r["mode"] == "closed" else f"open loop at {r['rate']:,.0f} req/s"
    lines = [
        f"target       {r['target']}, {mode}, {r['conns_established']}/{r['conns']} connections x "
        f"{r['size_bytes']} B, {r['duration_s']:g} s measured after {r['warmup_s']:g} s warm-up",
        f"requests     {r['requests']:,} ({r['rps']:,.0f} req/s)",
        f"throughput   {r['bytes_per_s'] / 1e6:,.2f} MB/s echoed (one direction)",
        f"latency      p50 {fmt_us(lat['p50'])}  p99 {fmt_us(lat['p99'])}  "
        f"p99.9 {fmt_us(lat['p99_9'])}  max {fmt_us(lat['max'])}  (mean {fmt_us(lat['mean'])})",
    ]
    if r["mode"] == "open":
        lag = r["send_lag_us"]
        lines.append(f"send lag     p50 {fmt_us(lag['p50'])}  p99 {fmt_us(lag['p99'])}  "
                     f"max {fmt_us(lag['max'])}  (offered {r['offered_rps']:,.0f} req/s)")
    errs = r["errors"]
    lines.append("errors       " + "  ".join(f"{k} {errs[k]}" for k in ERROR_KINDS))
    for kind, text in r["error_examples"].items():
        lines.append(f"  first {kind:<9}{text}")
    if r["latency_out_of_range"]:
        lines.append(f"  {r['latency_out_of_range']} latencies above 60 s were clamped to 60 s")
    per_request = r["client_cpu_us_per_request"]
    pinned = f" pinned to CPUs {cpu_list_text(r['client_cpus'])}" if r["client_cpus"] else ""
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
    # bench.load imports this module (for parse_target and main): its names come in at run time
    from bench.load import (
        check_arguments,
        default_engine,
        fd_shortfall,
        port_shortfall,
        resolve_engine,
        run_load,
        worker_count,
    )

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
