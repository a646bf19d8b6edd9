"""`python -m bench run` (`make bench`): the options, the servers chosen, the run, its summary and
its report.

    python -m bench run                         # the quick profile, every available server
    python -m bench run --profile full          # up to 10,000 connections
    python -m bench run --servers epoll,threads --conns 1,64 --size 1024,64KiB --rounds 2
    python -m bench run --server 'mine=python my_echo.py --port {port}'     # your own server too
    python -m bench run --python 3.11 --python 3.13     # every Python server under each
    python -m bench run --resume results/20261201-221500-quick             # finish a stopped run

The options share their names with `python -m bench.load` (--conns, --size, --duration,
--warmup; here a list where a list makes sense) and with the Makefile (SERVERS, CONNS, SIZES); the
older spellings (--sizes, --measure-s, --warmup-s, --repeats) still work.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from dataclasses import replace
from pathlib import Path

import bench.run
import servers
from bench import load as load_gen
from bench import results
from bench.report.fmt import parse_size
from bench.results import CellKey
from bench.run.console import command, print_summary, resume_command, say, shown
from bench.run.guard import fd_limit_cell
from bench.run.interrupts import Interrupted, install_stop_handlers, restore_handlers
from bench.run.profiles import (
    OPEN_LOOP_CONNS, PROFILES, Profile, closed_cells, headline_among, with_interpreters,
)
from bench.run.runner import run
from bench.run.subject import Subject, reference_subject
from servers import interpreters

ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = ROOT / "results"

# The exit status: 0 every server measured; EXIT_FAILED some server failed (did not start,
# crashed, corrupted bytes, served nothing: the report's Problems section says why); 2 bad
# options; 128 + the signal when stopped (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP), what was
# measured kept.
EXIT_FAILED = 3
EXIT_STATUS = (f"Exit status: 0 when every server was measured; {EXIT_FAILED} when a server "
               f"failed (did not start, crashed, corrupted bytes, served nothing: the report's "
               f"Problems section says why), the report written all the same; 2 on a bad option; "
               f"130, 143 or 129 when stopped by SIGINT, SIGTERM or SIGHUP (what was measured is "
               f"kept: resume it with --resume).")


def _size_list(text: str) -> list[int]:
    try:
        values = [parse_size(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; several: 1024,64KiB") from None
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r}: give sizes, e.g. 1024 or 1KiB,64KiB")
    return values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give whole numbers separated by commas, e.g. 1,16,128") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive whole numbers, e.g. 1,16,128")
    return values


def _fraction_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = None
    if values == [0.0]:
        return []
    if not values or any(not 0 < v <= 2 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give shares of the peak between 0 and 2, "
                                         "e.g. 0.5,0.9 (or 0 for no such cells)")
    return values


def choose_interpreters(parser, specs: list[str]) -> tuple[list[interpreters.Interpreter],
                                                          list[dict]]:
    """The interpreters the Python servers run under (none asked for: the bench's own), each with
    its venv built at first use, and meta.json's account of every one asked for. A spec that can
    name no interpreter exits 2; one this machine lacks, or whose venv cannot be made, is said
    once here and left out: the run goes on with the others."""
    if not specs:
        here = interpreters.current()
        return [here], [{**here.as_dict(), "default": True, "available": True, "reason": None}]
    for spec in specs:
        if (why := interpreters.check_spec(spec)) is not None:
            parser.error(f"--python {why}")
    chosen: dict[str, interpreters.Interpreter] = {}  # tag -> interpreter
    state = []
    for spec in dict.fromkeys(specs):
        try:
            interp = _get_interpreter(spec)
        except interpreters.Unavailable as exc:
            say(f"note: --python {spec}: unavailable: {exc}; its servers are not measured, "
                f"the run goes on without them")
            state.append({"spec": spec, "available": False, "reason": str(exc)})
            continue
        if (same := chosen.get(interp.tag)) is not None:
            if same.python != interp.python:
                parser.error(f"--python {same.spec} and --python {spec} are two interpreters of "
                             f"one tag ({interp.tag}: {same.python}, {interp.python}); their "
                             f"servers would share names and a venv: give one of them")
            continue  # the same interpreter asked for twice
        chosen[interp.tag] = interp
        state.append({**interp.as_dict(), "asked": spec,
                      "default": interp is interpreters.current(), "available": True,
                      "reason": None})
    return list(chosen.values()), state


def _get_interpreter(spec: str) -> interpreters.Interpreter:
    """interpreters.get(spec), saying so first when its venv is about to be built."""
    interpreters.find(spec)  # Unavailable: not on this machine at all
    try:
        return interpreters.get(spec, build=False)
    except interpreters.Unavailable:
        say(f"--python {spec}: building its venv at first use (pip installs the lab's "
            f"packages from pyproject.toml: a minute or so)")
        return interpreters.get(spec)


def choose_available(names: list[str], interps: list[interpreters.Interpreter] | None = None
                     ) -> tuple[list[Subject], dict[str, str], dict[str, Subject]]:
    """(the subjects that run here, {name: why not} for the rest, and those as subjects): each
    Python server under each of ``interps`` (default: the bench's own), any other server once.
    Probes run in subprocesses, so a server whose native code crashes its probe is skipped with
    the reason, not a dead runner; under an interpreter that lacks a package, only the servers
    that need it are skipped."""
    chosen, skipped, not_run = [], {}, {}
    for name in names:
        entry = servers.get(name)
        under = interps if interps is not None and entry.toolchain == "python" else [None]
        for interp in under:
            subject = Subject.registry(entry, interp=interp)
            ok, why = entry.availability(interp) if interp is not None else entry.availability()
            if ok:
                chosen.append(subject)
            else:
                skipped[subject.name], not_run[subject.name] = why, subject
    return chosen, skipped, not_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench run", description=bench.run.__doc__.splitlines()[0],
        epilog="Profiles: " + "; ".join(f"{p.name}: {p.description}" for p in PROFILES.values())
        + ". " + EXIT_STATUS)
    parser.add_argument("--profile", choices=list(PROFILES), default="quick",
                        help="which cells, rounds and windows (default quick: what `make bench` "
                             "runs; full: `make bench-full`; c100k; smoke: seconds, for tests)")
    parser.add_argument("--servers", help="comma-separated registry names (default: every available "
                        "server; `python -m servers` lists them)")
    parser.add_argument("--conns", type=_int_list, help="connection counts, e.g. 1,16,128 (replaces the profile's closed-loop cells)")
    parser.add_argument("--size", "--sizes", dest="sizes", type=_size_list, metavar="SIZES",
                        help="message sizes, e.g. 1024 or 1KiB,64KiB (64k and 65536 alike)")
    parser.add_argument("--rates", type=_int_list, help="open-loop total request rates, e.g. 1000,5000 (with --conns)")
    parser.add_argument("--fractions", type=_fraction_list,
                        help=f"open loop at these shares of each server's own closed-loop peak, "
                             f"at {OPEN_LOOP_CONNS} connections, e.g. 0.5,0.9; 0 for none "
                             f"(default: the profile's; kept when --conns replaces its other cells)")
    parser.add_argument("--rounds", "--repeats", dest="rounds", type=int,
                        help="rounds of every server at every cell (default: the profile's; the "
                             "headline cell gets more where the profile says so)")
    parser.add_argument("--duration", "--measure-s", dest="measure_s", type=float, metavar="S",
                        help="measured seconds per cell (beside the reference: each side's)")
    parser.add_argument("--warmup", "--warmup-s", dest="warmup_s", type=float, metavar="S",
                        help="seconds of load before measuring, per cell")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where run directories go (default: results/)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the interleaved order")
    parser.add_argument("--no-progress", action="store_true", help="plain output, no progress bar")
    parser.add_argument("--no-report", action="store_true", help="do not draw charts and report.md at the end")
    parser.add_argument("--budget-s", type=float, help="seconds for the whole run, the planned rounds "
                        "included, after which no cell gets another round (0: exactly the planned "
                        "rounds; default: the profile's)")
    parser.add_argument("--rounds-max", type=int, help="at most this many rounds of a cell")
    parser.add_argument("--server", action="append", default=[], metavar="NAME='CMD ...'",
                        help="also measure your own server: started from CMD like a lab server; "
                             "it prints the readiness line ('serving NAME on HOST:PORT (pid N)'), "
                             "or CMD contains {port}: the bench picks a free port, puts it there "
                             "and waits until 127.0.0.1:PORT accepts (repeatable)")
    parser.add_argument("--target", action="append", default=[], metavar="[NAME=]HOST:PORT",
                        help="also measure a server that is already running (with --pid PID, "
                             "one per --target, in the same order): sampled by its pid, never "
                             "started, stopped or pinned by the bench; named NAME, else "
                             "target-PORT (repeatable)")
    parser.add_argument("--pid", action="append", default=[], type=int,
                        help="the pid of the process serving the --target before it")
    parser.add_argument("--python", action="append", default=[], metavar="SPEC",
                        help="measure every Python server under this interpreter: 3.13, 3.14t, "
                             "python3.12, or a path (repeatable; default: the bench's own). Each "
                             "runs from its own venv (.venv-3.13), built at first use; a server "
                             "under another interpreter than the bench's own is named NAME@TAG "
                             "(epoll@3.13); servers in other languages run once")
    parser.add_argument("--no-reference", action="store_true",
                        help=f"do not measure the C reference ({results.REFERENCE}): no vs_ref")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR",
                        help="measure what the plan of an interrupted run still lacks, in its "
                             "directory, with its profile, servers and seed")
    return parser


def _own_servers(parser, args) -> list[Subject]:
    """--server and --target/--pid as subjects; bad ones exit 2 naming the fix."""
    subjects = []
    taken = set(servers.BY_NAME)
    for spec in args.server:
        name, sep, command = spec.partition("=")
        argv = shlex.split(command) if sep else []
        if not name.strip() or not argv:
            parser.error(f"--server {spec!r}: give NAME='CMD ...', e.g. --server "
                         f"'mine=python my_echo.py --port {{port}}'")
        if name in taken:
            parser.error(f"--server {name}: the name is taken; pick another")
        taken.add(name)
        subjects.append(Subject(name, "yours", None, command=tuple(argv)))
    if len(args.pid) != len(args.target):
        parser.error(f"{len(args.target)} --target but {len(args.pid)} --pid: give each "
                     f"--target NAME=HOST:PORT a --pid PID (the process that serves it, "
                     f"e.g. from `ss -ltnp`)")
    for spec, pid in zip(args.target, args.pid, strict=True):
        name, sep, address = spec.partition("=")
        if not sep:  # HOST:PORT alone, as bench.load takes it
            name, address = "", spec
        try:
            host, port = load_gen.parse_target(address)
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(f"--target {spec!r}: {exc}")
        name = name.strip() or (f"target-{port}" if not sep else "")
        if not name or host is None:
            parser.error(f"--target {spec!r}: give NAME=HOST:PORT, e.g. --target "
                         f"mine=127.0.0.1:25000 --pid 4242")
        if name in taken:
            parser.error(f"--target {name}: the name is taken; pick another")
        taken.add(name)
        import psutil
        if not psutil.pid_exists(pid):
            parser.error(f"--pid {pid}: no such process; start your server first and give its pid")
        subjects.append(Subject(name, "yours", None, host=host, port=port, pid=pid))
    return subjects


def write_report(run: results.Run) -> Path | None:
    """report.md, report.html and the charts through the report builder, from the run in memory
    (the report says itself when the run was interrupted); if the builder fails on an
    interrupted run, a short report.md of our own says so, and how to resume."""
    try:
        from bench.report import build as report
        return Path(report.build_report(run))
    except Exception as exc:  # the report must not turn a finished run into a crash
        print(f"(the report builder failed: {type(exc).__name__}: {exc})", file=sys.stderr)
        if not (stop := run.interrupted):
            return None
        path = run.dir / "report.md"
        path.write_text(f"# Bench run {run.dir.name}\n\n**interrupted: {stop['measured']} of "
                        f"{stop['planned']} measurements ({stop['signal']}); `"
                        f"{resume_command(run.dir)}` measures the rest**\n\nThe report builder "
                        f"failed ({type(exc).__name__}: {exc}); the measurements are in "
                        f"results.jsonl.\n")
        return path


def main(argv: list[str] | None = None) -> int:
    """SIGINT, SIGTERM and SIGHUP raise Interrupted from here on (see runner.run() for what a run
    does with it); a second one, while the first is being handled, is ignored."""
    old = install_stop_handlers()
    try:
        return _main(argv)
    except Interrupted as stop:  # before the first measurement, or while writing the report
        print(f"\n{signal.Signals(stop.signum).name}: stopped", file=sys.stderr)
        return 128 + stop.signum
    finally:
        restore_handlers(old)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume is not None:
        if not (args.resume / "meta.json").is_file():
            parser.error(f"--resume {args.resume}: no meta.json there; give a run directory "
                         f"written by `python -m bench run` (ls results/)")
        if args.python:
            parser.error("--resume measures under the interpreters of the run it resumes: "
                         "leave out --python")
        meta = results.read_run(args.resume).meta
        profile = Profile.from_meta(meta)
        subjects = []
        for d in meta.get("subjects") or []:
            try:
                subjects.append(Subject.from_meta(d))
            except interpreters.Unavailable as exc:
                say(f"note: {d['name']} is not measured again: {exc}")
        reference, ref_state = reference_subject(bool((meta.get("reference") or {}).get("available")))
        code = _run_and_report(args, profile, subjects, meta.get("skipped_servers") or {},
                               reference, ref_state, resume=args.resume, seed=meta.get("seed", 0))
        return code
    profile = PROFILES[args.profile]
    if args.conns or args.sizes or args.rates or args.fractions is not None:
        conns = args.conns or sorted({c.conns for c in profile.cells if not c.is_open})
        sizes = args.sizes or [1024]
        cells = closed_cells(conns, sizes)
        if args.rates:
            cells += [CellKey(c, sizes[0], float(r)) for c in conns for r in args.rates]
        fractions = (args.fractions if args.fractions is not None else
                     [c.fraction for c in profile.cells if c.fraction is not None])
        cells += [CellKey(OPEN_LOOP_CONNS, sizes[0], fraction=f) for f in fractions]
        profile = replace(profile, name=f"{profile.name}-custom", cells=cells,
                          description="custom cells from the command line",
                          headline=headline_among(profile.headline, cells))
    profile = replace(profile)  # never change PROFILES itself
    interps, interp_state = choose_interpreters(parser, args.python)
    profile = with_interpreters(profile, len(interps))  # before the options that override it
    if profile.name == "c100k" and (cell := fd_limit_cell(profile)) is not None:
        profile.cells = sorted(profile.cells + [cell], key=lambda c: c.conns)
        say(f"note: this machine's open-files hard limit (ulimit -Hn) is "
            f"{load_gen.fd_hard_limit():,}, so larger cells are skipped with the fix; added a "
            f"{cell.conns:,}-connection cell, the most it allows")
    for option, attr, value in (("--rounds", "rounds", args.rounds),
                                ("--duration", "measure_s", args.measure_s),
                                ("--warmup", "warmup_s", args.warmup_s),
                                ("--rounds-max", "rounds_max", args.rounds_max)):
        if value is not None:
            if value <= 0 and attr != "warmup_s" or value < 0:
                parser.error(f"{option} must be positive" + (" or 0" if attr == "warmup_s" else ""))
            setattr(profile, attr, value)
    if args.budget_s is not None:
        if args.budget_s < 0:
            parser.error("--budget-s must be 0 (no extra rounds) or positive")
        profile.budget_s = args.budget_s or None
    own = _own_servers(parser, args)

    if args.servers:
        names = [n.strip() for n in args.servers.split(",") if n.strip()]
        unknown = [n for n in names if n not in servers.BY_NAME]
        if unknown:
            parser.error(f"unknown server(s) {', '.join(unknown)}; pick from: {', '.join(servers.BY_NAME)}")
    elif own:
        names = []  # only yours (and the reference), unless --servers names lab servers too
    else:
        names = profile.default_servers or [s.name for s in servers.SERVERS]
        names = [n for n in names if n in servers.BY_NAME]
    names = [n for n in names if n != results.REFERENCE]  # measured as the reference anyway
    chosen, skipped, not_run = choose_available(names, interps)
    reference, ref_state = reference_subject(not args.no_reference)
    if reference is None and not args.no_reference:
        say(f"note: no reference this run: {ref_state['reason']}. The run goes on without "
            f"vs_ref ratios.")
    subjects = chosen + own
    if not subjects and reference is None:
        reasons = [f"{k}: {v}" for k, v in skipped.items()]
        if not interps:  # every --python unavailable: each said above in a note
            reasons.append("the Python servers: no interpreter asked for with --python is here")
        parser.error("none of the chosen servers is available here: " + "; ".join(reasons))
    return _run_and_report(args, profile, subjects, skipped, reference, ref_state,
                           resume=None, seed=args.seed, interpreters_state=interp_state,
                           skipped_subjects=not_run)


def _run_and_report(args, profile, subjects, skipped, reference, ref_state, *, resume,
                    seed, interpreters_state=None, skipped_subjects=None) -> int:
    measured, code = run(profile, [s.name for s in subjects], skipped, args.out, seed=seed,
                         progress=not args.no_progress, subjects=subjects, reference=reference,
                         reference_state=ref_state, resume=resume,
                         interpreters_state=interpreters_state,
                         skipped_subjects=skipped_subjects)
    run_dir = measured.dir
    # A stopped run writes its summary and report undisturbed (the handler ignores a second
    # signal); a finished one stops at a signal here too, quietly: its measurements are saved.
    try:
        try:
            print_summary(measured)
        except Exception as exc:  # an interrupted run may have nothing to summarise
            print(f"(no summary: {type(exc).__name__}: {exc})")
        if not args.no_report or code:
            path = write_report(measured)
            if path:
                html = path.with_suffix(".html")
                print(f"report: {shown(html if html.is_file() else path)}")
    except Interrupted as late:
        print()
        say(f"{signal.Signals(late.signum).name}: stopped while writing the report; the "
            f"measurements are saved. Draw the report with:")
        command(f"make report RUN={shown(run_dir)}")
        code = 128 + late.signum
    print(f"results: {shown(run_dir)}")
    if hint := compare_hint(profile.name, run_dir):
        print(f"against the recorded {hint[0]} run:")
        command(hint[1])
    if code == 0 and any(m.status == "failed" for m in measured.measurements):
        failed = sorted({m.server for m in measured.measurements if m.status == "failed"})
        say(f"exit {EXIT_FAILED}: {', '.join(failed)} failed (see the problems above and the "
            f"report's Problems section)")
        code = EXIT_FAILED
    return code


def compare_hint(profile_name: str, run_dir: Path) -> tuple[str, str] | None:
    """(the recorded run's name, the command that compares this run with it), if docs/results
    has a run of its profile (quick, full, c100k; a custom choice of servers or cells compares
    with its profile's on the cells both have)."""
    recorded = ROOT / "docs" / "results" / profile_name.removesuffix("-custom")
    if not (recorded / "results.jsonl").is_file() or run_dir.resolve() == recorded.resolve():
        return None
    return recorded.name, f"make compare A={shown(recorded)} B={shown(run_dir)}"
