"""Has the load generator headroom? Its throughput against a minimal C client's, interleaved.

    python -m bench headroom                       # 15 rounds, 50 conns x 1 KiB, ~1 minute
    python -m bench headroom --rounds 30 --out docs/results/headroom
    make headroom

A load generator measures a server only while the server, not the generator, is the slower side.
The yardstick is bench/load/minimal_client.c: the least a closed-loop echo client can do (one
epoll loop, no byte check, no histogram, no clock read per round trip). Against the same C
reference server (c-epoll) on one core, with the client on the other, each round measures, in an
order that rotates from round to round:

- `engine-c`: `bench.load --engine c`, the bench's own engine (bench/load/engine.c);
- `minimal`: the yardstick;
- `engine-python`: `bench.load --engine python`, the readable fallback.

Each round's ratio is an engine's req/s over the minimal client's in the same round (seconds
apart, so a VM's drift cancels); the figure is the median over the rounds with its 95 % CI
(bench/results.py's, from order statistics), and CPU µs per request beside it. The goal
(docs/bench.md) is that the C engine reaches at least GOAL of the minimal client. One server
process serves every round, so nothing but the client changes between them. Writes
headroom.json (the rounds, the summary and the machine) into --out. Ctrl-C, SIGTERM or SIGHUP
stop it between windows like `bench run`: the server is killed, the rounds measured so far are
written (marked "interrupted"), and it exits 128 + the signal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path

from bench import load, results
from bench.run import interrupts, machine
from servers import build, launch

GOAL = 0.95
CLIENTS = ("engine-c", "minimal", "engine-python")
MINIMAL_SOURCE = Path(__file__).resolve().parent / "load" / "minimal_client.c"


def minimal(host: str, port: int, conns: int, size: int, warmup_s: float, duration_s: float,
            cpu: int | None) -> dict:
    """One window of the minimal client: {"rps", "cpu_us_per_request"}."""
    argv = [str(build.build(MINIMAL_SOURCE)), host, str(port), str(conns), str(size),
            str(warmup_s), str(duration_s)] + ([str(cpu)] if cpu is not None else [])
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=warmup_s + duration_s + 30)
    if done.returncode != 0:
        raise RuntimeError(f"minimal_client exited {done.returncode}: {done.stderr.strip()}")
    fields = done.stdout.split()
    values = dict(zip(fields[::2], fields[1::2], strict=False))
    return {"rps": float(values["rps"]), "cpu_us_per_request": float(values["cpu_us_per_request"])}


def engine(name: str, host: str, port: int, conns: int, size: int, warmup_s: float,
           duration_s: float, cpu: int | None) -> dict:
    out = load.run_load(host, port, conns=conns, size=size, duration=duration_s, warmup=warmup_s,
                        cpus=[cpu] if cpu is not None else None,
                        engine=name.removeprefix("engine-"))
    errors = sum((out.get("errors") or {}).values())
    if errors:
        raise RuntimeError(f"{name}: {errors} errors against the reference: {out['errors']}")
    return {"rps": out["rps"], "cpu_us_per_request": out.get("client_cpu_us_per_request")}


def summarize(rounds: list[dict]) -> dict:
    out = {}
    for client in CLIENTS:
        ratios = [r[client]["rps"] / r["minimal"]["rps"] for r in rounds
                  if client in r and r.get("minimal", {}).get("rps")]
        st = results.stat(ratios)
        cpu = [r[client]["cpu_us_per_request"] for r in rounds
               if r.get(client, {}).get("cpu_us_per_request")]
        out[client] = {
            "vs_minimal": round(st.value, 4) if st else None,
            "vs_minimal_ci95": [round(v, 4) for v in st.ci95] if st and st.ci95 else None,
            "vs_minimal_range": [round(st.low, 4), round(st.high, 4)] if st else None,
            "rps_median": round(statistics.median(r[client]["rps"] for r in rounds
                                                  if client in r), 1),
            "cpu_us_per_request_median": round(statistics.median(cpu), 3) if cpu else None,
        }
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench headroom",
        description="The load generator's throughput against a minimal C client's, interleaved "
                    "rounds against the C reference server on one core each.")
    p.add_argument("--rounds", type=int, default=15, help="rounds of the three clients (default 15)")
    p.add_argument("--conns", type=int, default=50, help="connections (default 50)")
    p.add_argument("--size", type=int, default=1024, help="bytes per message (default 1024)")
    p.add_argument("--measure-s", type=float, default=1.0, help="measured seconds (default 1)")
    p.add_argument("--warmup-s", type=float, default=0.3, help="warm-up seconds (default 0.3)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for headroom.json (default: results/headroom-<time>)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    for name in ("rounds", "conns", "size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.measure_s <= 0 or args.warmup_s < 0:
        parser.error("--measure-s must be above 0 and --warmup-s at least 0")
    import servers
    from bench.load import c_engine
    try:
        build.build(MINIMAL_SOURCE)
    except build.Unavailable as exc:
        print(f"headroom: unavailable: the minimal client: {exc}", file=sys.stderr)
        return 1
    ok, why = c_engine.available()
    if not ok:
        print(f"headroom: unavailable: the C engine: {why}", file=sys.stderr)
        return 1
    ref = servers.get(results.REFERENCE)
    if not ref.available:
        print(f"headroom: unavailable: the reference {ref.name}: {ref.availability()[1]}",
              file=sys.stderr)
        return 1
    commit, dirty = machine.git_state()  # the code that measures, as it was at the start
    server_cpus, client_cpus, pinning = machine.split_cpus()
    cpu = client_cpus[0] if client_cpus else None
    out_dir = args.out or Path("results") / f"headroom-{dt.datetime.now():%Y%m%d-%H%M%S}"
    print(f"headroom: {args.rounds} rounds of {', '.join(CLIENTS)} against {ref.name}, "
          f"{args.conns} conns x {args.size} B, {args.warmup_s:g} s warm-up + {args.measure_s:g} s "
          f"each; {pinning}", flush=True)
    rounds, stopped = [], None
    old = interrupts.install_stop_handlers()  # SIGINT, SIGTERM, SIGHUP: stop, keep the rounds
    try:
        server = launch.start(ref, cpus=server_cpus[:1] if server_cpus else None)
        try:
            for i in range(args.rounds):
                order = CLIENTS[i % 3:] + CLIENTS[:i % 3]
                row: dict = {"round": i, "order": list(order)}
                for client in order:
                    window = (server.host, server.port, args.conns, args.size, args.warmup_s,
                              args.measure_s, cpu)
                    row[client] = (minimal(*window) if client == "minimal"
                                   else engine(client, *window))
                rounds.append(row)
                print(f"  round {i + 1:2}: " + "  ".join(
                    f"{c} {row[c]['rps']:,.0f}/s" for c in CLIENTS)
                    + f"  engine-c/minimal {row['engine-c']['rps'] / row['minimal']['rps']:.3f}",
                    flush=True)
        finally:
            server.kill()
    except interrupts.Interrupted as stop:
        stopped = stop.signum
        print(f"{stop}: stopped after {len(rounds)} of {args.rounds} rounds; keeping those",
              file=sys.stderr)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if not rounds:
        return 128 + stopped if stopped else 1
    summary = summarize(rounds)
    record = {"created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              "git_commit": commit, "git_dirty": dirty, "machine": machine.machine_info(),
              "pinning": pinning, "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
              "params": {"rounds": len(rounds), "conns": args.conns, "size_bytes": args.size,
                         "warmup_s": args.warmup_s, "measure_s": args.measure_s,
                         "server": ref.name},
              "goal": GOAL, "summary": summary, "rounds": rounds,
              "interrupted": signal.Signals(stopped).name if stopped else None}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "headroom.json").write_text(json.dumps(record, indent=1) + "\n")
    print(text(record))
    print(f"written: {out_dir / 'headroom.json'}")
    return 128 + stopped if stopped else 0


def text(record: dict) -> str:
    """The summary in words: each engine's median ratio to the minimal client, its CI, its CPU."""
    p, s = record["params"], record["summary"]
    lines = [f"over {p['rounds']} interleaved rounds ({p['conns']} conns x {p['size_bytes']} B "
             f"against {p['server']}; median of the per-round ratios, 95 % CI where 6 rounds or "
             f"more):"]
    for client in ("engine-c", "engine-python"):
        c, ci = s[client], s[client]["vs_minimal_ci95"]
        lines.append(f"  {client:14} {c['vs_minimal']:.2f} of the minimal client"
                     + (f" (CI {ci[0]:.2f}-{ci[1]:.2f})" if ci else "")
                     + f", {c['cpu_us_per_request_median']:.1f} µs of CPU per request against "
                       f"{s['minimal']['cpu_us_per_request_median']:.1f}")
    verdict = "reaches" if s["engine-c"]["vs_minimal"] >= record["goal"] else "falls short of"
    lines.append(f"  the C engine {verdict} the goal of {record['goal']:.2f}")
    return "\n".join(lines)


def doc_text(record: dict, path: str = "docs/results/headroom/headroom.json") -> str:
    """The recorded run at `path` in one paragraph, for docs/bench.md (cog): figures from the
    file only."""
    p, s, m = record["params"], record["summary"], record["machine"]
    cpu = lambda c: f"{s[c]['cpu_us_per_request_median']:.1f} µs"  # noqa: E731
    ci = s["engine-c"]["vs_minimal_ci95"]
    return (f"Recorded with `make headroom` on {m.get('cpu_model')} ({m.get('cores_logical')} "
            f"logical CPUs; {record['created'][:10]}, commit {str(record['git_commit'])[:7]}, "
            f"`{path}`): over {p['rounds']} interleaved rounds of "
            f"{p['conns']} connections × {p['size_bytes']:,} B against {p['server']}, the median "
            f"per-round ratio of the C engine's throughput to the minimal client's was "
            f"**{s['engine-c']['vs_minimal']:.2f}**"
            + (f" (95 % CI {ci[0]:.2f} to {ci[1]:.2f})" if ci else "")
            + f", at {cpu('engine-c')} of CPU per request against the minimal client's "
              f"{cpu('minimal')}; the Python engine reached {s['engine-python']['vs_minimal']:.2f} "
              f"at {cpu('engine-python')}. The goal is {record['goal']:.2f}.")


if __name__ == "__main__":
    sys.exit(main())
