"""The results model: one typed, versioned record per measurement, one fold of repeats, every
derived metric computed here once (or in bench/stats.py, whose names it re-exports). The runner
writes it; the report, `bench compare` and the
exports read it; nothing else re-derives a metric.

    from bench import results
    run = results.read_run("results/20261201-221500-quick")   # Run: meta + measurements
    for s in run.summaries():                                  # one CellSummary per server x cell
        print(s.server, s.cell.label, s.verdict, s.rps.value, s.vs_ref, s.vs_ref_ci95)

API (kept stable; the report and compare build on it):

- ``SCHEMA_VERSION`` (3). Records of older runs carry no "schema" field: schema 1. Every field of
  schema 1 is kept; schema 2 adds engine, round, is_reference, vs_ref, cpu_vs_ref, converged,
  vs_ref_ci95, noise, window_s and target; schema 3 adds interpreter, the Python a Python server
  ran under (``interpreter_field``; null for the C reference, Go, Node...), and a Python server
  under another interpreter than the bench's own is a server of its own, ``NAME@TAG``
  (``epoll@3.13``; ``Measurement.model`` is ``epoll``). bench/run/__init__.py's docstring lists
  the fields a run writes. A reader treats an absent field as null.
- ``Measurement.from_dict(d)`` / ``.to_dict()``: one line of results.jsonl. The common fields are
  attributes; every other field is kept in ``extra`` and written back unchanged, so a record
  round-trips byte for byte in content. Derived metrics are properties (``ctx_per_request``,
  ``mem_per_conn_bytes``, ``bytes_per_s``, ``held_conns``, ``verdict``...).
- ``CellKey``: one load setting (conns, size_bytes, rate, fraction); ``Measurement.cell``.
- ``read_run(run_dir) -> Run``; ``Run.meta``, ``Run.measurements``, ``Run.summaries()``,
  ``Run.warnings``. A last line cut mid-write (an interrupted run, a full disk) is skipped with a
  ``CutLineWarning`` naming the line; any other bad line is a ``ResultsError`` naming the line.
- ``write_records(run_dir, records)``: results.jsonl written atomically (temp file + rename), so a
  reader never sees half a rewrite. ``append_record(run_dir, record)``: one line, flushed.
- ``record(server, cell, round_)``, ``skipped(record, reason)``, ``failed(record, reason)``,
  ``fill_load(record, summary)``, ``interpreter_field(interp)``: the builders; every record of a run is made by them (the runner's,
  and the skipped results the report shows for a server that was not run at all).
- ``annotate(records)``: sets vs_ref, cpu_vs_ref, vs_ref_ci95 and converged on every record
  from the records themselves, each ratio paired with the reference's measurement in the same
  window or round; vs_ref_ci95 is the t-interval of the server's ratios in the cell so far (the
  runner calls it before each rewrite).
- The statistics, from bench/stats.py: ``fold(measurements) -> list[CellSummary]`` (the one fold
  of rounds), ``stat`` (an absolute figure: the median, its range and its 95 % CI from order
  statistics) and ``ratio_stat`` (a ratio: the geometric mean and Student's t-interval on the
  logs), both a ``Stat``; ``rank(summaries, cell) -> Ranking`` (the one rule that ranks servers
  and ties them), ``converged``, ``worst`` and ``STATUS_ORDER`` (the one status order, mildest
  first: ok < noisy < client-bound < degraded < failed < skipped). bench/stats.py says how each
  is computed.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar

from bench.report.fmt import fmt_rps, fmt_share, fmt_size

# The noise verdict of a window lives in bench/window.py; the model is read through this module.
from bench.window import (  # noqa: F401
    BUSY_AT_START_PCT, FOREIGN_NOISY_PCT, NOT_MEASURED_NOISE, STEAL_NOISY_PCT, noise_verdict,
    window_noise)

# The fold and its statistics live in bench/stats.py; the model is read through this one module.
from bench.stats import (  # noqa: F401
    CI_MIN_N, RATIO_CI_MIN_N, STATUS_ORDER, TOLERANCE, CellSummary, Placed, Ranking, Stat,
    converged, fold, log_t_interval, median_ci95, rank, ratio_stat, stat, t_quantile,
    t_two_sided_p, worst)
from bench.stats import number as _num

SCHEMA_VERSION = 3
REFERENCE = "c-epoll"  # the registry name of the C reference server (servers/c/echo_epoll.c)

STATUSES = ("ok", "degraded", "failed", "skipped")  # what a record's status field may hold

# Per-connection memory is reported from this many connections up: below, the growth is lost in
# the interpreter's own noise (a few hundred KiB either way).
MEM_PER_CONN_MIN_CONNS = 10
# What a process tree's memory moves by between two reads with nothing to do with the connections
# (an allocator returning an arena, a garbage collector, pages counted in whole): a growth below
# this, divided by the connections, is below the instrument's resolution, and so is a shrink.
MEM_RESOLUTION_BYTES = 256 * 1024
# A percentile needs about this many samples beyond it to be more than a few requests' say.
TAIL_MIN_SAMPLES = 10


class ResultsError(ValueError):
    """A run directory that cannot be read; the message names the file, the line and the fix."""


class CutLineWarning(UserWarning):
    """The last line of results.jsonl was cut mid-write; it was skipped."""


# -- One load setting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellKey:
    """Closed loop (rate and fraction None), open loop at ``rate`` requests/s in total, or open
    loop at ``fraction`` of each server's own closed-loop peak (each server at its own rate, which
    its records hold; the cell is the fraction, so ``rate`` is None in the key)."""

    conns: int
    size_bytes: int
    rate: float | None = None
    fraction: float | None = None

    @classmethod
    def of(cls, d: dict) -> CellKey:
        fraction = d.get("rate_fraction_of_peak")
        rate = None if fraction is not None else d.get("rate")
        return cls(int(d["conns"]), int(d["size_bytes"]),
                   None if rate is None else float(rate),
                   None if fraction is None else float(fraction))

    @property
    def is_open(self) -> bool:
        return self.rate is not None or self.fraction is not None

    @property
    def sort_key(self) -> tuple:
        """Closed loop first, then by size, connections, rate or share."""
        return (self.is_open, self.size_bytes, self.conns, self.fraction is not None,
                self.rate or self.fraction or 0.0)

    @property
    def label(self) -> str:
        """The one label of a cell: '16 conns × 1 KiB', '100 conns × 1 KiB at 50 % of peak',
        '16 conns × 1 KiB at 2,000 req/s'."""
        text = f"{self.conns:,} conn{'s' if self.conns != 1 else ''} × {fmt_size(self.size_bytes)}"
        if self.fraction is not None:
            return f"{text} at {fmt_share(self.fraction)} of peak"
        return text if self.rate is None else f"{text} at {fmt_rps(self.rate)} req/s"


# -- One measurement -------------------------------------------------------------------------------


@dataclass
class Measurement:
    """One line of results.jsonl. Attributes for the fields everyone reads; the rest in ``extra``."""

    server: str
    conns: int
    size_bytes: int
    status: str
    family: str | None = None
    lesson: str | None = None
    rate: float | None = None
    rate_fraction_of_peak: float | None = None
    mode: str = "closed"
    repeat: int = 0
    reason: str | None = None
    rps: float | None = None
    requests: int | None = None
    duration_s: float | None = None
    latency_us: dict | None = None
    errors: dict | None = None
    conns_established: int | None = None
    client_bound: bool = False
    server_cpu_us_per_request: float | None = None
    stderr_tail: str | None = None
    # schema 2 (absent in older runs: None)
    schema: int = 1
    engine: str | None = None
    round: int | None = None
    is_reference: bool = False
    vs_ref: float | None = None
    cpu_vs_ref: float | None = None
    converged: bool | None = None
    vs_ref_ci95: list[float] | None = None
    noise: dict | None = None
    window_s: float | None = None
    target: dict | None = None
    # schema 3
    interpreter: dict | None = None  # interpreter_field: what a Python server ran under
    extra: dict = field(default_factory=dict)

    # The fields above but extra, in their order: the attributes a record is read into (set
    # below the class, from the dataclass's own fields, so that they are listed once).
    _FIELDS: ClassVar[tuple[str, ...]]

    @classmethod
    def from_dict(cls, d: dict) -> Measurement:
        """Any schema: absent fields take their defaults (None, or the schema-1 meaning)."""
        problem = check_record(d)
        if problem:
            raise ResultsError(problem)
        known = {k: d[k] for k in cls._FIELDS if k in d and d[k] is not None}
        known["client_bound"] = bool(d.get("client_bound"))
        known["is_reference"] = bool(d.get("is_reference"))
        extra = {k: v for k, v in d.items() if k not in cls._FIELDS}
        m = cls(**known, extra=extra)
        m._order = list(d)  # written back in the order it was read
        return m

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in self._FIELDS}
        out.update(self.extra)
        order = getattr(self, "_order", None) or []
        ordered = {k: out[k] for k in order if k in out}
        ordered.update(out)
        return ordered

    def get(self, key: str, default=None):
        """A field by name, attribute or extra; 'latency_us.p99' reaches in."""
        value: object = self.to_dict() if "." in key else None
        if value is None:
            return getattr(self, key) if key in self._FIELDS else self.extra.get(key, default)
        for part in key.split("."):
            if not isinstance(value, dict):
                return default
            value = value.get(part)
        return default if value is None else value

    # -- what it is

    @property
    def cell(self) -> CellKey:
        return CellKey.of({"conns": self.conns, "size_bytes": self.size_bytes, "rate": self.rate,
                           "rate_fraction_of_peak": self.rate_fraction_of_peak})

    @property
    def model(self) -> str:
        """The registry server this is: 'epoll' for epoll@3.13 (epoll under another interpreter
        than the bench's own) as for epoll; any other server's own name."""
        tag = (self.interpreter or {}).get("tag")
        return self.server.removesuffix(f"@{tag}") if tag else self.server

    @property
    def measured(self) -> bool:
        """It measured something: ok or degraded, with a rate."""
        return self.status in ("ok", "degraded") and bool(self.rps)

    @property
    def noisy(self) -> bool:
        return bool((self.noise or {}).get("noisy"))

    @property
    def verdict(self) -> str:
        """The status, or for an ok measurement what the bench can say about the figure."""
        if self.status == "ok" and self.client_bound:
            return "client-bound"
        if self.status == "ok" and self.noisy:
            return "noisy"
        return self.status

    # -- derived metrics (computed here, nowhere else)

    @property
    def ctx_per_request(self) -> float | None:
        """Context switches per request, from the raw counts when the record has them (the
        rounded field reads 0.0 for a loop that switches once per thousand requests)."""
        vol = _num(self.extra.get("server_ctx_voluntary"))
        invol = _num(self.extra.get("server_ctx_involuntary"))
        if vol is not None and invol is not None and self.requests:
            value = (vol + invol) / self.requests
        else:
            value = _num(self.extra.get("ctx_switches_per_request"))
        # Fewer switches at the end of the window than at its start: tasks of the tree exited
        # meanwhile and took their counts with them. That is no measurement of the rest.
        return None if value is not None and value < 0 else value

    @property
    def bytes_per_s(self) -> float | None:
        value = _num(self.extra.get("bytes_per_s"))
        if value is None and self.rps is not None:
            value = self.rps * self.size_bytes
        return value

    @property
    def mem_per_conn_bytes(self) -> float | None:
        """Growth of the server's tree over its idle size, per connection. Older runs lack the
        field: worked out from USS (or RSS) and the idle size. A null field is the runner saying
        "too few connections to tell", not a gap to fill."""
        if "server_mem_per_conn_bytes" in self.extra:
            return _num(self.extra["server_mem_per_conn_bytes"])
        used = _num(self.extra.get("server_uss_bytes")) or _num(self.extra.get("server_rss_bytes"))
        idle = _num(self.extra.get("server_mem_idle_bytes"))
        if used is not None and idle is not None and self.conns:
            return (used - idle) / self.conns
        return None

    @property
    def held_conns(self) -> float | None:
        """Connections served to the end: connected, and not reset, unserved or closed for a
        corrupted echo."""
        if not isinstance(self.errors, dict):
            return None
        established = self.conns if self.conns_established is None else self.conns_established
        lost = sum(self.errors.get(k) or 0 for k in ("reset", "unserved", "mismatch"))
        return max(0.0, float(established - lost))


Measurement._FIELDS = tuple(f.name for f in fields(Measurement) if f.name != "extra")


def check_record(d: object) -> str | None:
    """Why ``d`` is not a results record, or None."""
    if not isinstance(d, dict):
        return f"a JSON {type(d).__name__}, not an object"
    for key in ("server", "status", "conns", "size_bytes"):
        if key not in d:
            return f"no {key!r} field"
    if d["status"] not in STATUSES:
        return f"status {d['status']!r} is not one of {', '.join(STATUSES)}"
    if not isinstance(d["conns"], int) or not isinstance(d["size_bytes"], int):
        return "conns and size_bytes must be integers"
    return None


# -- The record's noise field ----------------------------------------------------------------------


def tail_samples(requests: int | None, percentile: float) -> float | None:
    """How many requests lie beyond ``percentile`` (99.99 -> 0.01 % of them)."""
    if not requests:
        return None
    return requests * (100.0 - percentile) / 100.0


# -- Building a record -----------------------------------------------------------------------------


def record(server: str, cell: CellKey, round_: int | None, *, family: str | None = None,
           lesson: str | None = None, rate: float | None = None, is_reference: bool = False,
           **more) -> dict:
    """The record of one measurement of `server` at `cell` in round `round_` (None: not in the
    plan's rounds, as a server skipped as a whole), status ok until it is judged: what the
    measurement adds comes in `more` and then as it goes (fill_load, the server's figures, the
    verdict). `rate`: the open-loop rate of a cell given as a share of the peak, which the
    runner works out per server; else the cell's own."""
    return {"server": server, "family": family, "lesson": lesson, "conns": cell.conns,
            "size_bytes": cell.size_bytes, "rate": cell.rate if rate is None else rate,
            "rate_fraction_of_peak": cell.fraction, "mode": "open" if cell.is_open else "closed",
            "repeat": round_ or 0, "status": "ok", "reason": None, "schema": SCHEMA_VERSION,
            "round": round_, "is_reference": is_reference, "noise": dict(NOT_MEASURED_NOISE),
            "interpreter": None, **more}


def interpreter_field(interp) -> dict:
    """A record's interpreter: what a Python server ran under, from an interpreters.Interpreter
    (or its as_dict()). gil_enabled is the interpreter's at start-up; the runner replaces it with
    what the server's readiness line says on a free-threaded build (servers/common.gil_fact)."""
    d = interp.as_dict() if hasattr(interp, "as_dict") else interp
    return {"tag": d["tag"], "label": d["label"], "version": d["version"],
            "implementation": d["implementation"], "executable": d["python"],
            "build": d.get("build") or {}, "free_threaded": d["gil_disabled_build"],
            "gil_enabled": d["gil_enabled"]}


def skipped(rec: dict, reason: str) -> dict:
    """`rec`, skipped: nothing was measured, for `reason` (with the fix where there is one)."""
    rec.update(status="skipped", reason=reason)
    return rec


def failed(rec: dict, reason: str, **more) -> dict:
    """`rec`, failed for `reason`, before a verdict could be reached (the server did not start,
    the bench itself failed); `more`: what is known, e.g. stderr_tail."""
    rec.update(status="failed", reason=reason, **more)
    return rec


def fill_load(rec: dict, summary: dict) -> None:
    """The load generator's figures into `rec`: the fields of its summary that the load engines'
    contract names for a record (bench/load/contract.py's RECORD_FIELDS)."""
    from bench.load.contract import RECORD_FIELDS  # here: bench.load is the runner's to import

    rec.update((key, summary[key]) for key in RECORD_FIELDS if key in summary)


# -- Ratios to the reference -----------------------------------------------------------------------


def annotate(records: list[dict], tolerance: float = TOLERANCE) -> None:
    """Set vs_ref, cpu_vs_ref, vs_ref_ci95 and converged on every record (dicts, in place).

    Beside, where the record has one (beside_ref: the reference measured in the same window, in
    alternating slices of a few tens of milliseconds, bench/run/measure.py): the ratio is to
    that, which shares even the machine's sub-second drift. Otherwise paired by round: a record's
    ratio is to the reference's measurement in the same cell and the same round, which ran within seconds of it on a machine in the same state. On a VM the speed
    of the whole machine drifts from round to round; a pair shares that drift and the ratio
    cancels it, where a ratio to the reference's median over all rounds keeps it (measured on
    three consecutive quick runs here: medians of paired ratios at 16 conns x 1 KiB agreed within
    ±10 % for 18-20 of 20 servers between runs, ratios to the median for 6-14). A round without a
    reference measurement falls back to the reference's median over the rounds measured so far.
    Without a measured reference in a cell, the fields are null there. vs_ref_ci95 and
    converged: the t-interval of the server's ratios in the cell (bench/stats.py), the same on
    each of its records; the reference's own has none (1 by definition)."""
    by_cell: dict[CellKey, list[dict]] = {}
    for r in records:
        by_cell.setdefault(CellKey.of(r), []).append(r)
    for group in by_cell.values():
        ref = [r for r in group if r.get("is_reference") and r.get("status") in ("ok", "degraded")
               and r.get("rps")]
        ref_rps = statistics.median(r["rps"] for r in ref) if ref else None
        ref_cpus = [r["server_cpu_us_per_request"] for r in ref if r.get("server_cpu_us_per_request")]
        ref_cpu = statistics.median(ref_cpus) if ref_cpus else None
        ref_by_round = {r.get("round", r.get("repeat")): r for r in ref}
        per_server: dict[str, list[dict]] = {}
        for r in group:
            measured = r.get("status") in ("ok", "degraded") and r.get("rps")
            beside = r.get("beside_ref") if isinstance(r.get("beside_ref"), dict) else None
            if beside and beside.get("ok") and beside.get("rps"):
                # measured in the same window, in alternating slices: the tightest pair there is
                base_rps = beside["rps"]
                base_cpu = beside.get("server_cpu_us_per_request") or ref_cpu
                r["ref_basis"] = "beside"
            else:
                pair = ref_by_round.get(r.get("round", r.get("repeat")))
                base_rps = pair["rps"] if pair else ref_rps
                base_cpu = (pair.get("server_cpu_us_per_request") if pair else None) or ref_cpu
                r["ref_basis"] = "round" if pair else "median"
            r["vs_ref"] = round(r["rps"] / base_rps, 4) if measured and base_rps else None
            cpu = r.get("server_cpu_us_per_request")
            r["cpu_vs_ref"] = round(cpu / base_cpu, 4) if measured and cpu and base_cpu else None
            per_server.setdefault(r["server"], []).append(r)
        for rs in per_server.values():
            s = None if rs[0].get("is_reference") else ratio_stat(r["vs_ref"] for r in rs)
            ci = [round(s.ci95[0], 4), round(s.ci95[1], 4)] if s and s.ci95 else None
            done = bool(s and converged(s.ci95, s.value, tolerance))
            for r in rs:
                r["vs_ref_ci95"] = ci
                r["converged"] = done


# -- A run on disk ---------------------------------------------------------------------------------


@dataclass
class Run:
    dir: Path
    meta: dict
    measurements: list[Measurement]
    warnings: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.meta.get("run_id") or self.dir.name)

    @property
    def schema(self) -> int:
        return int(self.meta.get("schema") or 1)

    @property
    def reference(self) -> dict:
        """meta.json's reference entry: {"name", "available", "reason"}; for older runs, unknown."""
        return self.meta.get("reference") or {"name": REFERENCE, "available": False,
                                              "reason": "recorded before the bench had a reference"}

    @property
    def interrupted(self) -> dict | None:
        return self.meta.get("interrupted")

    @property
    def families(self) -> dict[str, str]:
        """server -> family, from the run itself (records, then meta), never today's registry."""
        out: dict[str, str] = {}
        for m in self.measurements:
            if m.family:
                out.setdefault(m.server, m.family)
        for name, family in (self.meta.get("families") or {}).items():
            out.setdefault(name, family)
        return out

    @property
    def interpreters(self) -> list[dict]:
        """The Python interpreters the run's Python servers ran under, the bench's own first
        (its servers keep their plain names): [{"tag", "label", "default", "free_threaded"}].
        From the records (schema 3); an older run's Python servers all ran under the bench's
        own, which meta.json names."""
        found: dict[str, dict] = {}
        for m in self.measurements:
            i = m.interpreter
            if i and i.get("tag") and i["tag"] not in found:
                found[i["tag"]] = {"tag": i["tag"], "label": i.get("label") or i.get("version"),
                                   "default": m.server == m.model,
                                   "free_threaded": bool(i.get("free_threaded"))}
            elif i and i.get("tag") and m.server == m.model:
                found[i["tag"]]["default"] = True
        if not found and (py := self.meta.get("python") or {}).get("version"):
            return [{"tag": None, "label": py["version"], "default": True, "free_threaded": False}]
        return sorted(found.values(), key=lambda i: not i["default"])

    def cells(self) -> list[CellKey]:
        cells = {m.cell for m in self.measurements}
        for spec in self.meta.get("cells") or []:
            if isinstance(spec, dict) and "conns" in spec and "size_bytes" in spec:
                cells.add(CellKey.of(spec))
        return sorted(cells, key=lambda c: c.sort_key)

    def summaries(self) -> list[CellSummary]:
        if not hasattr(self, "_summaries"):
            self._summaries = fold(self.measurements)
        return self._summaries


def read_run(run_dir: str | Path) -> Run:
    """meta.json and results.jsonl of a run. ResultsError (with what to do) when they cannot be
    used; a cut last line is skipped with a CutLineWarning (also in ``Run.warnings``)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ResultsError(f"{run_dir}: no such run directory. Run `make bench` to measure one, "
                           f"or pass a directory under results/ (ls results/).")
    path = run_dir / "results.jsonl"
    if not path.is_file():
        raise ResultsError(f"{run_dir} has no results.jsonl, so it is not a bench run directory. "
                           f"Pass a directory written by `python -m bench run` (ls results/).")
    meta: dict = {}
    meta_path = run_dir / "meta.json"
    notes: list[str] = []
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsError(f"{meta_path} is not valid JSON ({exc}); it was damaged or cut "
                               f"short. Measure the run again with `make bench`.") from None
        if not isinstance(meta, dict):
            raise ResultsError(f"{meta_path} holds a JSON {type(meta).__name__}, not an object; "
                               f"measure the run again with `make bench`.")
    else:
        notes.append(f"{meta_path} is missing; the machine's details are unknown")
    lines = [(n, t) for n, t in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if t.strip()]
    measurements = []
    for i, (number, text) in enumerate(lines):
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:
                note = (f"{path}, line {number}: cut mid-write ({exc}); skipped it and read the "
                        f"{len(measurements)} lines before it (an interrupted run leaves this: "
                        f"`python -m bench run --resume {run_dir}` measures what is missing)")
                warnings.warn(note, CutLineWarning, stacklevel=2)
                notes.append(note)
                break
            raise ResultsError(f"{path}, line {number}: not valid JSON ({exc}), and not the last "
                               f"line, so the file was damaged, not cut short: measure again with "
                               f"`make bench`.") from None
        problem = check_record(d)
        if problem:
            raise ResultsError(f"{path}, line {number}: {problem}. Was it written by "
                               f"`python -m bench run`? Measure again with `make bench`.")
        measurements.append(Measurement.from_dict(d))
    return Run(run_dir, meta, measurements, notes)


def write_records(run_dir: str | Path, records: Iterable[dict | Measurement]) -> Path:
    """results.jsonl, atomically: written to a temporary file in the same directory, flushed to
    disk, then renamed over the old one (rename within a file system is atomic)."""
    run_dir = Path(run_dir)
    path = run_dir / "results.jsonl"
    fd, tmp = tempfile.mkstemp(prefix=".results-", suffix=".jsonl.tmp", dir=run_dir)
    try:
        with os.fdopen(fd, "w") as f:
            for r in records:
                f.write(json.dumps(r.to_dict() if isinstance(r, Measurement) else r) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def append_record(run_dir: str | Path, record: dict | Measurement) -> None:
    """One more line, flushed: a run killed outright keeps every measurement before it."""
    d = record.to_dict() if isinstance(record, Measurement) else record
    with (Path(run_dir) / "results.jsonl").open("a") as f:
        f.write(json.dumps(d) + "\n")
        f.flush()


def write_meta(run_dir: str | Path, meta: dict) -> Path:
    """meta.json, atomically like results.jsonl."""
    run_dir = Path(run_dir)
    fd, tmp = tempfile.mkstemp(prefix=".meta-", suffix=".json.tmp", dir=run_dir)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, run_dir / "meta.json")
    return run_dir / "meta.json"
