"""The run: the plan of rounds, the budget for extra rounds, and the records so far.

The C reference (c-epoll) is measured in every cell of every round, so every record gets vs_ref
and cpu_vs_ref, ratios that survive a noisy machine (see docs/bench.md). The order is interleaved
(round, then cell, then the servers and the reference in a shuffled order) so that slow drift of
the machine (thermal throttling, a background job) spreads over all servers instead of hurting
whichever ran last. The plan gives every server the profile's rounds at every cell and more at the
headline cell; after it, more rounds go to the servers whose 95 % interval of vs_ref is still
wider than the tolerance, the headline cell's first, within the profile's budget (Runner). A
server that did not start is not started again in the rest of the run.
Open-loop cells at a share of each server's peak run after the closed-loop cells of their round,
whose best median req/s (at the same message size, ok results only) is that peak.

SIGINT, SIGTERM and SIGHUP stop the run cleanly (bench/run/interrupts.py: the server's process
group killed, what was measured written, meta.json marked interrupted, exit 128 + the signal);
--resume measures what the plan still lacks.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import signal
import statistics
import time
import warnings
from pathlib import Path

import servers
from bench import load as load_gen
from bench import results
from bench.results import CellKey
from bench.run import console, machine, noise
from bench.run.interrupts import Interrupted
from bench.run.guard import SERVER_FD_HEADROOM
from bench.run.measure import measure
from bench.run.profiles import Profile, warmup_for
from bench.run.subject import Subject
from bench.run.verdict import (
    MAX_WINDOW_S, NO_REPLY_RETRY_FACTOR, NO_REPLY_RETRY_MIN_S, silent, starved, window_needed_s,
    window_note)
from servers import launch


def plan(profile: Profile, names: list[str], seed: int) -> list[tuple[int, CellKey, str]]:
    """(round, cell, server) of the planned rounds, in interleaved order: each of the first
    `rounds` rounds visits every cell, the later ones the headline cell alone
    (Profile.cells_of_round), and within a cell the servers (the reference among them) run in a
    fresh random order, so drift does not line up with one server. Cells at a share of the peak
    come last in each round, after the cells that measure it. More rounds may follow (Runner)."""
    rng = random.Random(seed)
    order = []
    for rnd in range(profile.planned_rounds):
        for cell in _cell_order(profile.cells_of_round(rnd)):
            order += [(rnd, cell, name) for name in _shuffled(rng, names)]
    return order


def _cell_order(cells: list[CellKey]) -> list[CellKey]:
    return sorted(cells, key=lambda c: c.fraction is not None)  # stable: keeps the rest


def _shuffled(rng: random.Random, names: list[str]) -> list[str]:
    shuffled = list(names)
    rng.shuffle(shuffled)
    return shuffled


# What a measurement costs besides its warm-up and window, measured on a 2-core machine: starting
# the server and the generator's workers, sampling, settling and stopping (0.29 s, the median over
# two quick runs' 1,000-odd measurements), and opening
# the connections in batches and tearing them down (~0.5 ms each: 5 s for 10,000). For the plan
# and the ETA; a model that breaks at 10,000 (fork: ~30 s) takes longer, and the ETA catches up.
OVERHEAD_S = 0.3
CONNECT_S_PER_CONN = 0.0005


def expected_s(entry: servers.Server | Subject, cell: CellKey, profile: Profile) -> float:
    """About how long measuring `entry` at `cell` takes (a skip takes next to nothing)."""
    if entry.serial and cell.conns > 1:
        return 0.01
    hard = load_gen.fd_hard_limit()
    if hard is not None and cell.conns + SERVER_FD_HEADROOM > hard:
        return 0.01  # skipped by the preflight, with the fix
    beside = profile.beside_ref and not cell.is_open and not getattr(entry, "is_reference", False)
    return (OVERHEAD_S + CONNECT_S_PER_CONN * cell.conns * (2 if beside else 1)
            + warmup_for(cell, profile) + profile.measure_s * (2 if beside else 1))


def peak_rps(closed: dict[tuple[str, int], dict[int, list[float]]], name: str,
             size_bytes: int) -> tuple[float, int] | None:
    """(req/s, connections): the best median of the server's ok closed-loop cells so far."""
    medians = [(statistics.median(values), conns)
               for conns, values in closed.get((name, size_bytes), {}).items() if values]
    return max(medians) if medians else None


def new_run_dir(profile: str, out_dir: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"{stamp}-{profile}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = out_dir / f"{stamp}-{profile}-{n}"
    run_dir.mkdir(parents=True)
    return run_dir


class Runner:
    """One run: the plan, the records so far, and what to do when it ends or is stopped.

    Rounds: the plan (runner.plan) measures every server and the reference in every cell for
    `profile.rounds` rounds, and at the headline cell for `profile.rounds_at_headline`. Then,
    while rounds remain (profile.rounds_max) and the whole run stays within profile.budget_s,
    another round of a cell measures the reference and the servers not yet converged (their 95 %
    interval of vs_ref wider than ±tolerance; without a reference, the CI of the median req/s):
    the headline cell's first, the other cells' (the fewest rounds first) once it wants none. A
    server that failed or was skipped in a cell gets no more rounds there; one that did not start
    is not started again anywhere (its later measurements are skipped, naming the first).
    After every (round, cell) the records get their ratios and results.jsonl is rewritten whole,
    atomically; in between, each record is appended as it comes, so a run killed with SIGKILL
    still keeps every measurement but the one in progress.
    """

    def __init__(self, profile: Profile, subjects: list[Subject], reference: Subject | None,
                 skipped: dict[str, str], run_dir: Path, meta: dict, records: list[dict],
                 seed: int, progress: bool, server_cpus, client_cpus):
        self.profile, self.subjects, self.reference = profile, subjects, reference
        self.skipped, self.run_dir, self.meta, self.records = skipped, run_dir, meta, records
        self.seed, self.progress = seed, progress
        self.server_cpus, self.client_cpus = server_cpus, client_cpus
        self.by_name = {s.name: s for s in subjects + ([reference] if reference else [])}
        self.names = list(self.by_name)
        self.done = {self._key(r) for r in records if r.get("round") is not None}
        self.closed: dict[tuple[str, int], dict[int, list[float]]] = {}
        self.did_not_start: dict[str, str] = {}  # server -> where it first did not start
        for r in records:
            self._note_peak(r)
            self._note_start(r)
        self.planned = len(plan(profile, self.names, seed))
        self._extra_wanted = bool(profile.budget_s) and (profile.rounds_max or 0) > profile.rounds
        self.t0 = time.monotonic()
        self.before_s = float(meta.get("duration_s") or 0.0)  # a resumed run's earlier sessions

    @staticmethod
    def _key(r: dict) -> tuple:
        return (r.get("round"), CellKey.of(r), r["server"])

    def _note_peak(self, r: dict) -> None:
        if r.get("mode") == "closed" and r.get("status") == "ok" and r.get("rps") \
                and not r.get("rate"):
            self.closed.setdefault((r["server"], r["size_bytes"]), {}).setdefault(
                r["conns"], []).append(r["rps"])

    def _note_start(self, r: dict) -> bool:
        """Note a server that did not start (its first such record); True if it is new."""
        if r.get("status") == "failed" and str(r.get("reason") or "").startswith("did not start") \
                and r["server"] not in self.did_not_start:
            self.did_not_start[r["server"]] = (f"{CellKey.of(r).label}, round "
                                               f"{(r.get('round') or 0) + 1}")
            return True
        return False

    # -- the budget: the whole run, the planned rounds included, within profile.budget_s

    def elapsed_s(self) -> float:
        return self.before_s + time.monotonic() - self.t0

    def budget_left_s(self) -> float:
        return (self.profile.budget_s or 0.0) - self.elapsed_s()

    def cost_s(self, names: list[str], cell: CellKey) -> float:
        """What one more round of `names` at `cell` takes: each one's median time there so far
        (a measurement's start, warm-up, window and stop), else the plan's estimate."""
        out = 0.0
        for name in names:
            took = [r["elapsed_s"] for r in self._records_of(name, cell) if r.get("elapsed_s")]
            out += statistics.median(took) if took else expected_s(self.by_name[name], cell,
                                                                   self.profile)
        return out

    def extra_possible(self) -> bool:
        """Could any extra round still come after the plan: budget left, and a cell below
        rounds_max with a server not yet stable there (as of the last finished block)?"""
        return self._extra_wanted and self.budget_left_s() > 0

    def _note_extra_wanted(self) -> None:
        p = self.profile
        self._extra_wanted = bool(p.budget_s) and any(
            self._rounds_measured(cell) < (p.rounds_max or 0)
            and (self._rounds_measured(cell) < p.rounds_of(cell)
                 or any(self.wants_more(s.name, cell) for s in self.subjects))
            for cell in p.cells)

    def _records_of(self, name: str, cell: CellKey) -> list[dict]:
        return [r for r in self.records if r["server"] == name and CellKey.of(r) == cell]

    def _rounds_measured(self, cell: CellKey) -> int:
        rounds = [r["round"] for r in self.records if r.get("round") is not None
                  and CellKey.of(r) == cell]
        return max(rounds) + 1 if rounds else 0

    def stable(self, name: str, cell: CellKey) -> bool:
        rs = self._records_of(name, cell)
        if self.reference is not None:
            return bool(rs) and all(r.get("converged") for r in rs)
        st = results.stat(r.get("rps") for r in rs if r.get("status") in ("ok", "degraded"))
        return bool(st and results.converged(st.ci95, st.value, self.profile.tolerance))

    def wants_more(self, name: str, cell: CellKey) -> bool:
        rs = self._records_of(name, cell)
        return bool(rs) and all(r["status"] in ("ok", "degraded") for r in rs) \
            and not self.stable(name, cell)

    def next_extra(self) -> tuple[CellKey, list[str]] | None:
        """The cell of the next extra round and who is in it, or None: the headline cell while a
        server there wants more; then the other cells, the fewest rounds first."""
        p = self.profile
        headline = [p.headline] if p.headline else []
        others = sorted((c for c in _cell_order(p.cells) if c != p.headline),
                        key=self._rounds_measured)  # stable: ties keep the cell order
        for group in (headline, others):
            for cell in group:
                if self._rounds_measured(cell) >= (p.rounds_max or 0):
                    continue
                names = [s.name for s in self.subjects if self.wants_more(s.name, cell)]
                if not names:
                    continue
                names += [self.reference.name] if self.reference else []
                if self.cost_s(names, cell) > self.budget_left_s():
                    return None  # the next in line does not fit: none after it goes before it
                return cell, names
        return None

    # -- measuring

    def measure_one(self, rnd: int, cell: CellKey, name: str, bar) -> None:
        subject = self.by_name[name]
        bar.update(f"{name} {cell.label} (round {rnd + 1})")
        if name in self.did_not_start:
            record = results.skipped(results.record(
                name, cell, rnd, family=subject.family, lesson=subject.lesson,
                is_reference=subject.is_reference, target=subject.target()),
                f"not started again: it did not start at {self.did_not_start[name]}, "
                f"which gives the reason")
        else:
            peak, rate = None, None
            if cell.fraction is not None and (peak := peak_rps(self.closed, name,
                                                                cell.size_bytes)):
                rate = round(peak[0] * cell.fraction)
            record = measure(subject, cell, rnd, self.profile, self.server_cpus,
                             self.client_cpus, rate=rate,
                             beside=self.reference if self.profile.beside_ref else None)
            if starved(record):
                record = self.window_check(subject, cell, rnd, rate, record)
            if peak:
                record["peak_rps"] = round(peak[0], 1)
                record["peak_conns"] = peak[1]
        self._note_peak(record)
        if self._note_start(record):
            console.say(f"{name} did not start ({record['reason'].removeprefix('did not start: ')}"
                        f"); it is not started again in this run.")
        self.records.append(record)
        self.done.add(self._key(record))
        results.append_record(self.run_dir, record)
        bar.advance()

    def own_cost_us(self, name: str, record: dict) -> float | None:
        """The server's CPU per request: from this window, else its cheapest ok cell so far."""
        costs = [r["server_cpu_us_per_request"] for r in self.records
                 if r["server"] == name and r.get("status") == "ok"
                 and r.get("server_cpu_us_per_request")]
        return record.get("server_cpu_us_per_request") or (min(costs) if costs else None)

    def window_check(self, subject: Subject, cell: CellKey, rnd: int, rate, record: dict) -> dict:
        """See WINDOW_SERVES: measure again with a longer window if this one was too short."""
        cost = self.own_cost_us(subject.name, record)
        needed = window_needed_s(record, cost)
        used = (record.get("warmup_s") or 0) + (record.get("duration_s") or record["window_s"])
        if silent(record):  # nothing came back at all: once more, in a window long enough to tell
            needed = max(needed or 0.0, NO_REPLY_RETRY_FACTOR * used, NO_REPLY_RETRY_MIN_S)
        if needed is not None and used < needed:
            longer = min(MAX_WINDOW_S, needed)
            console.say(f"{subject.name} at {cell.label}: {record['reason']}; the window was too "
                        f"short to tell, measuring again with a {longer:.1f} s window")
            again = measure(subject, cell, rnd, self.profile, self.server_cpus, self.client_cpus,
                            rate=rate, measure_s=longer)
            again["window_first_s"] = record["window_s"]
            record = again
            cost = self.own_cost_us(subject.name, record) or cost
        if starved(record) and (note := window_note(record, cost)):
            record["reason"] = f"{record['reason']}; {note}"
        return record

    def finish_block(self) -> None:
        """Ratios, intervals and convergence from every record so far; results.jsonl
        rewritten."""
        results.annotate(self.records, self.profile.tolerance)
        results.write_records(self.run_dir, self.records)
        self._note_extra_wanted()

    def run(self) -> None:
        profile = self.profile
        order = plan(profile, self.names, self.seed)
        costs = [expected_s(self.by_name[n], c, profile) for r, c, n in order
                 if (r, c, n) not in self.done]
        budget_end = (time.monotonic() + self.budget_left_s()) if profile.budget_s else None
        with console.Progress(costs, enabled=self.progress, budget_end=budget_end,
                              extra_possible=self.extra_possible) as bar:
            for i, (rnd, cell, name) in enumerate(order):
                if (rnd, cell, name) not in self.done:
                    self.measure_one(rnd, cell, name, bar)
                last_of_block = i + 1 == len(order) or order[i + 1][:2] != (rnd, cell)
                if last_of_block:
                    self.finish_block()
            if profile.budget_s is None:
                return
            rng = random.Random(self.seed + 1)
            while (chosen := self.next_extra()) is not None:
                cell, names = chosen
                rnd = self._rounds_measured(cell)
                bar.extend([expected_s(self.by_name[n], cell, profile) for n in names])
                for name in _shuffled(rng, names):
                    if (rnd, cell, name) not in self.done:
                        self.measure_one(rnd, cell, name, bar)
                self.finish_block()


def run(profile: Profile, names: list[str], skipped: dict[str, str], out_dir: Path,
        seed: int = 0, progress: bool = True, *, subjects: list[Subject] | None = None,
        reference: Subject | None = None, reference_state: dict | None = None,
        resume: Path | None = None, interpreters_state: list[dict] | None = None,
        skipped_subjects: dict[str, Subject] | None = None) -> tuple[results.Run, int]:
    """Measure the plan; returns (the run as written: its directory, meta and records, for the
    summary and the report to use without reading it back; the exit code: 0, or 128 + the
    signal that stopped it). With `resume`, measures what that run's plan still lacks.
    `interpreters_state`: meta.json's account of the interpreters asked for (cli's
    choose_interpreters); `skipped_subjects`: the skipped servers as subjects, whose family and
    interpreter their skipped records carry."""
    server_cpus, client_cpus, pin_note = machine.split_cpus()
    subjects = subjects if subjects is not None else [Subject.registry(servers.get(n)) for n in names]
    busy = noise.busy_at_start()
    if busy["busy"]:
        console.warn_busy(busy, reference is not None)
    if resume is not None:
        run_dir = resume
        previous = results.read_run(run_dir)
        records = [m.to_dict() for m in previous.measurements]
        meta = previous.meta
        meta.setdefault("resumed", []).append(dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
        meta["interrupted"] = None
        meta.setdefault("noise", {})["busy_at_start_resumed"] = busy if busy["busy"] else None
        results.write_records(run_dir, records)  # drops a cut last line for good
    else:
        run_dir = new_run_dir(profile.name, out_dir)
        records = []
        everyone = subjects + ([reference] if reference else [])
        meta = {
            "run_id": run_dir.name,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "profile": profile.name,
            "profile_description": profile.description,
            **machine.describe(server_cpus, client_cpus, pin_note),
            "servers": [s.name for s in everyone],
            "skipped_servers": skipped,
            "families": {s.name: s.family for s in everyone},
            "subjects": [s.as_meta() for s in subjects],
            "interpreters": interpreters_state or [],
            **profile.as_meta(),
            "seed": seed,
            "schema": results.SCHEMA_VERSION,
            "reference": reference_state or {"name": results.REFERENCE, "available": False,
                                             "reason": "not asked for"},
            "engine": None,
            "noise": {"busy_at_start": busy if busy["busy"] else None},
            "interrupted": None,
        }
        for name, why in skipped.items():  # a server not run at all: skipped in every cell
            subject = (skipped_subjects or {}).get(name)
            entry = subject.entry if subject else servers.BY_NAME.get(name)
            records += [results.skipped(results.record(
                name, cell, None, family=entry.family if entry else None,
                lesson=entry.lesson if entry else None,
                interpreter=subject.interpreter if subject else None), why)
                for cell in profile.cells]
        results.write_records(run_dir, records)
    results.write_meta(run_dir, meta)
    if client_cpus:
        os.sched_setaffinity(0, client_cpus)  # the runner and its sampler stay off the server's core

    runner = Runner(profile, subjects, reference, skipped, run_dir, meta, records, seed,
                    progress, server_cpus, client_cpus)
    order = plan(profile, runner.names, seed)
    left = [(r, c, n) for r, c, n in order if (r, c, n) not in runner.done]
    planned_s = sum(expected_s(runner.by_name[n], c, profile) for _, c, n in left)
    meta["planned_s"] = round(planned_s)
    meta["planned_measurements"] = len(order)
    default_engine, why_python = load_gen.default_engine()
    if why_python:  # said once here, not warned at every measurement
        print(f"note: the load generator runs its {default_engine} engine: {why_python}",
              flush=True)
        warnings.filterwarnings("ignore", "using the Python load engine", RuntimeWarning)
    console.print_plan(profile, left=len(left), planned=len(order), subjects=len(subjects),
                       reference=reference.name if reference else None, planned_s=planned_s,
                       interpreters=meta.get("interpreters") or [])

    t0 = time.monotonic()
    code = 0
    try:
        runner.run()
    except Interrupted as stop:
        code = 128 + stop.signum  # measure()'s finally blocks killed the server on the way out
        launch.kill_own_groups()  # and one the signal caught between its Popen and its kill()
        meta["interrupted"] = {"signal": signal.Signals(stop.signum).name,
                               "measured": sum(1 for r in runner.records if r.get("round") is not None),
                               "planned": max(runner.planned, len(runner.done))}
        console.print_interrupted(meta["interrupted"], run_dir)
    finally:  # also on a bench error: what was measured is kept
        runner.finish_block()
        default, why = load_gen.default_engine()  # why: the reason it is not the C engine
        meta["engine"] = {"default": default, "reason": why,
                          "used": sorted({r["engine"] for r in runner.records if r.get("engine")})}
        summary = noise.noise_summary(runner.records, meta.get("noise", {}).get("busy_at_start"))
        meta["noise"] = {**meta.get("noise", {}), **summary}
        meta["duration_s"] = round((meta.get("duration_s") or 0) + time.monotonic() - t0, 1)
        results.write_meta(run_dir, meta)
    return results.Run(run_dir, meta, [results.Measurement.from_dict(r) for r in runner.records]), code
