"""What a run says on the terminal: a warning when the machine is busy at the start, the plan
(how many measurements, how long, the extra rounds), a progress bar with an ETA, the line an
interrupted run ends with, and the end-of-run summary: a table per cell, the noise, the legend."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich import progress as rich_progress
from rich.console import Console
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench import load as load_gen
from bench import results
from bench.report.fmt import fmt_duration


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def warn_busy(busy: dict, has_reference: bool) -> None:
    """What other processes use of the machine at the start, when it is busy (noise.busy_at_start)."""
    top = ", ".join(f"{name} {pct:.0f} %" for name, pct in busy["top"])
    compare = ("the ratios to the reference (vs ref) are what to compare" if has_reference
               else "compare servers within this run only")
    print(f"warning: this machine is busy: other processes use {busy['foreign_cpu_pct']:.0f} % "
          f"of its {busy['cpus']} CPUs' time (top users by name: {top}). Absolute figures will be low and noisy; "
          f"{compare}.", flush=True)


def interpreters_text(interpreters: list[dict]) -> str | None:
    """'3.11.7 (plain names) and 3.13.0 (NAME@3.13)': the interpreters measured and how their
    servers are named (meta.json's "interpreters"); None when the bench's own is the only one."""
    shown = [i for i in interpreters if i.get("available")]
    if len(shown) < 2 and all(i.get("default") for i in shown):
        return None
    said = [f"{i['label']} ("
            + ("plain names" if i.get("default") else f"NAME@{i['tag']}")
            + (", free-threaded" if i.get("gil_disabled_build") else "") + ")" for i in shown]
    return " and ".join([", ".join(said[:-1]), said[-1]] if len(said) > 1 else said)


def print_plan(profile, *, left: int, planned: int, subjects: int, reference: str | None,
               planned_s: float, interpreters: list[dict] = ()) -> None:
    """The plan: `left` of `planned` measurements still to make, about how long, how the
    reference and the extra rounds come in, and the interpreters of the Python servers."""
    ref_text = f" + the reference {reference}" if reference else ", no reference"
    print(f"plan: {left} measurements ({_plural(subjects, 'server')}{ref_text} x "
          f"{_plural(len(profile.cells), 'cell')} x {_plural(profile.repeats, 'round')}"
          + (f", {planned - left} already measured" if left < planned else "")
          + f"), about {fmt_duration(round(planned_s))}", flush=True)
    if (text := interpreters_text(list(interpreters))) is not None:
        print(f"      Python servers under {text}, each from its own venv; the others once",
              flush=True)
    if profile.beside_ref and reference is not None:
        print(f"      closed loop: each server measured beside {reference} in one window of "
              f"{2 * profile.measure_s:g} s, alternating in slices of about "
              f"{load_gen.ALT_SLICE_S * 1000:.0f} ms (vs_ref from the same window)", flush=True)
    if profile.budget_s is not None:
        finish = dt.datetime.now() + dt.timedelta(seconds=max(planned_s, profile.budget_s))
        first = profile.first_for_extra_rounds()
        where = f" (at {', '.join(c.label for c in first)} first)" if first else ""
        print(f"      then up to round {profile.rounds_max}{where} for the servers whose 95 % CI of "
              f"the median vs ref is wider than ±{profile.tolerance * 100:.0f} %, within a budget of "
              f"{fmt_duration(round(profile.budget_s))} for the whole run (the first rounds included), "
              f"done by about {finish:%H:%M}", flush=True)


def print_interrupted(stop: dict, run_dir: Path) -> None:
    """The line a stopped run ends its measuring with: what it measured, how to resume."""
    print(f"\n{stop['signal']}: stopped; the server under test and its "
          f"process group were killed. interrupted: {stop['measured']} of "
          f"{stop['planned']} measurements; resume with "
          f"`python -m bench run --resume {run_dir}`", flush=True)


class Progress:
    """A rich progress bar with an ETA (nothing with --no-progress).

    Measurements differ a lot in length (a 10,000-connection cell takes ten times a 1-connection
    one), so progress counts expected seconds, not measurements: the bar advances by each one's
    expected cost, and the ETA is the expected seconds left at the pace seen so far.
    """

    def __init__(self, costs: list[float], enabled: bool):
        self.costs, self.total = costs, sum(costs)
        self.done = 0  # measurements finished
        self.done_s = 0.0  # their expected cost
        self._rich = (rich_progress.Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()) if enabled else None)

    def __enter__(self):
        if self._rich:
            self._rich.start()
            self._task = self._rich.add_task("starting", total=self.total,
                                             count=f"0/{len(self.costs)}")
        return self

    def __exit__(self, *exc):
        if self._rich:
            self._rich.stop()

    def update(self, text: str) -> None:
        if self._rich:
            self._rich.update(self._task, description=text)

    def extend(self, costs: list[float]) -> None:
        """More measurements than planned: another round for the cells not yet stable."""
        self.costs = self.costs + costs
        self.total += sum(costs)
        if self._rich:
            self._rich.update(self._task, total=self.total)

    def advance(self) -> None:
        self.done_s += self.costs[self.done]
        self.done += 1
        if self._rich:
            self._rich.update(self._task, completed=self.done_s,
                              count=f"{self.done}/{len(self.costs)}")


# ---------------------------------------------------------------------------------------------
# Summary


def _pct(ratio: float | None) -> str:
    return f"{ratio:.2f}×" if ratio is not None else "-"


def _ci_text(row: dict) -> str:
    """'±3.1 % ✓' (the CI of the median vs_ref, converged), '±12 %', or 'n=3' without a CI."""
    median, low, high = row["vs_ref"], row["vs_ref_ci95_low"], row["vs_ref_ci95_high"]
    if median is None:
        return "-"
    if low is None or not median:
        return f"n={row['vs_ref_n']}"
    half = max(median - low, high - median) / abs(median)
    return f"±{half * 100:.1f} %" + (" ✓" if row["converged"] else "")


def summary_rows(run: results.Run) -> dict[str, list[tuple]]:
    """Per cell (its label), one row per server, best vs_ref (else req/s) first: the ratios to the
    reference lead, the absolute figures follow. Built from the report's summary rows
    (bench/report/summary.py, what summary.csv holds), so the console and the export agree."""
    from bench.report import summary, view  # here: the report's view loads matplotlib's colours

    v = view.of_run(run)
    cells: dict[str, list[dict]] = {}
    for row in summary.rows(v):
        if row["server"] not in v.skipped_servers:  # said once, before the run, not per cell
            cells.setdefault(row["cell"], []).append(row)
    out = {}
    for cell, group in cells.items():
        group.sort(key=lambda r: (-(r["vs_ref"] or 0),
                                  -(r["rps_median"] if r["rps_median"] is not None else -1)))
        rows = []
        for i, r in enumerate(group, 1):
            name = r["server"] + (" (ref)" if r["is_reference"] else "")
            if r["rps_median"] is None:
                rows.append((str(i), name, "-", "-", "-", "-", "-", "-", "-",
                             f"{r['status']}: {results_one_line(r['reason'] or '')}"))
                continue
            flags = [r["verdict"]] if r["verdict"] != "ok" else []
            if r["noisy"] and r["verdict"] != "noisy":
                flags.append(f"noisy {r['noisy_repeats']}/{r['measured']}")
            cpu, p99 = r["server_cpu_us_per_request"], r["p99_us"]
            spread = (r["rps_high"] - r["rps_low"]) / r["rps_median"] if r["rps_median"] else 0.0
            rows.append((str(i), name, _pct(r["vs_ref"]), _ci_text(r), _pct(r["cpu_vs_ref"]),
                         f"{r['rps_median']:,.0f}", f"±{spread * 50:.1f}%",
                         f"{p99 / 1000:.2f}" if p99 is not None else "-",
                         f"{cpu:.1f}" if cpu is not None else "-", ", ".join(flags)))
        out[cell] = rows
    return out


def results_one_line(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


SUMMARY_HEADER = ("#", "server", "vs ref", "CI95", "CPU vs ref", "req/s", "spread", "p99 ms",
                  "CPU µs/req", "flags")


def print_summary(run: results.Run) -> None:
    """The end-of-run summary of `run` (the runner's, in memory): a table per cell, the noise,
    the legend."""
    console = Console()
    if console.width < 120:  # not a terminal (a pipe, CI): wide enough for every column
        console = Console(width=120)
    for cell, lines in (summary_rows(run) if run.measurements else {}).items():
        table = Table(title=cell, title_justify="left")
        for h in SUMMARY_HEADER:
            table.add_column(h, justify="left" if h in ("server", "flags") else "right")
        for line in lines:
            table.add_row(*line)
        console.print(table)
    noise_meta = run.meta.get("noise") or {}
    if noise_meta.get("windows"):
        foreign, steal = noise_meta.get("foreign_cpu_pct") or {}, noise_meta.get("steal_pct") or {}
        print(f"noise: {noise_meta['noisy_windows']} of {noise_meta['windows']} windows noisy "
              f"(other processes' CPU: median {foreign.get('median', 0):.0f} %, max "
              f"{foreign.get('max', 0):.0f} %; steal: median {steal.get('median', 0):.1f} %, max "
              f"{steal.get('max', 0):.1f} %; thresholds in bench/results.py)")
    ref = run.reference
    if ref.get("available"):
        beside = any((m.get("ref_basis") == "beside") for m in run.measurements)
        where = ("measured beside it in the same window, alternating" if beside
                 else "in the same cell and round")
        print(f"vs ref: req/s over the reference's ({ref['name']}) {where}; CPU vs "
              f"ref: server CPU µs per request over the reference's; CI95: the 95 % interval of "
              f"the median vs ref (✓: within ±{results.TOLERANCE * 100:.0f} %; n=3: too few rounds for one, "
              f"it takes {results.CI_MIN_N}); spread: half the range of "
              f"the repeats, as a share of the median")
    else:
        print(f"no reference in this run ({ref.get('reason')}): no ratios; spread: half the "
              f"range of the repeats, as a share of the median")

