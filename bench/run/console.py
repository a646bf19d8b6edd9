"""What a run says on the terminal: a warning when the machine is busy at the start, the plan
(how many measurements, how long, the headline cell and the extra rounds), a progress bar with an
ETA that keeps its word, the lines an interrupted run ends with, and the end-of-run summary: a
table per cell, the problems, the noise, the legend, then who won at the headline cell and how
sure, in a few lines.

Everything fits the terminal it is printed on (80 columns or more): prose wraps at word
boundaries, a table keeps the columns that fit (CPU vs ref and the spread go first), and a
command a user may copy sits on a line of its own, whole. Output that is not a terminal (a pipe,
CI, a log file) keeps whole lines, and tables 120 columns wide.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from rich import box
from rich import progress as rich_progress
from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Column, Table
from rich.text import Text

from bench import load as load_gen
from bench import results
from bench.report.fmt import fmt_duration

NOT_A_TERMINAL_WIDTH = 120  # tables printed to a pipe or a log


def terminal_width() -> int | None:
    """The terminal's columns when stdout is one, else None."""
    if not sys.stdout.isatty():
        return None
    return shutil.get_terminal_size((80, 24)).columns


def wrap(text: str, *, indent: str = "", width: int | None = None) -> str:
    """`text` wrapped at the terminal's width, words whole, continuation lines indented by
    `indent`; whole when the output is not a terminal."""
    width = width or terminal_width()
    if width is None:
        return text
    return textwrap.fill(text, width=width, subsequent_indent=indent, break_long_words=False,
                         break_on_hyphens=False)


def say(text: str, *, indent: str = "  ") -> None:
    print(wrap(text, indent=indent), flush=True)


def command(text: str) -> None:
    """A command a user may copy: on a line of its own, whole, indented two spaces."""
    print(f"  {text}", flush=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def warn_busy(busy: dict, has_reference: bool) -> None:
    """What other processes use of the machine at the start, when it is busy (noise.busy_at_start)."""
    top = ", ".join(f"{name} {pct:.0f} %" for name, pct in busy["top"])
    compare = ("the ratios to the reference (× ref) are what to compare" if has_reference
               else "compare servers within this run only")
    say(f"warning: this machine is busy: other processes use {busy['foreign_cpu_pct']:.0f} % of "
        f"its {busy['cpus']} CPUs' time (top users by name: {top}). Absolute figures will be low "
        f"and noisy; {compare}.")


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
    """The plan: `left` of `planned` measurements still to make, about how long, the headline
    cell and its rounds, how the reference and the extra rounds come in, and the interpreters of
    the Python servers."""
    ref_text = f" and the reference {reference}" if reference else ", no reference"
    rounds = _plural(profile.rounds, "round")
    if profile.headline is not None and profile.rounds_at_headline > profile.rounds:
        rounds += (f" ({profile.rounds_at_headline} at the headline cell, "
                   f"{profile.headline.label})")
    elif profile.headline is not None:
        rounds += f" (the headline cell: {profile.headline.label})"
    say(f"plan: {left} measurements of {_plural(subjects, 'server')}{ref_text} in "
        f"{_plural(len(profile.cells), 'cell')}, {rounds}"
        + (f", {planned - left} already measured" if left < planned else "")
        + f"; about {fmt_duration(round(planned_s))}.")
    if (text := interpreters_text(list(interpreters))) is not None:
        say(f"  Python servers under {text}, each from its own venv; the others once.",
            indent="    ")
    if profile.beside_ref and reference is not None:
        say(f"  closed loop: each server is measured beside {reference} in one window of "
            f"{2 * profile.measure_s:g} s, alternating in slices of about "
            f"{load_gen.ALT_SLICE_S * 1000:.0f} ms (× ref from the same window).", indent="    ")
    if profile.budget_s is not None and (profile.rounds_max or 0) > profile.rounds:
        finish = dt.datetime.now() + dt.timedelta(seconds=max(planned_s, profile.budget_s))
        first = (f" at {profile.headline.label} first, then the other cells"
                 if profile.headline else "")
        say(f"  then up to round {profile.rounds_max}{first}, for the servers whose 95 % "
            f"interval of × ref is wider than ±{profile.tolerance * 100:.0f} %, within "
            f"{fmt_duration(round(profile.budget_s))} for the whole run: done by about "
            f"{finish:%H:%M}.", indent="    ")


def resume_command(run_dir: Path) -> str:
    """The command that finishes a stopped run, in the form that works from the checkout."""
    return f'make bench ARGS="--resume {shown(run_dir)}"'


def shown(path: Path) -> str:
    """`path` relative to the working directory where it lies under it (what make is run
    from), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def print_interrupted(stop: dict, run_dir: Path) -> None:
    """The lines a stopped run ends its measuring with: what it measured, how to resume."""
    print()
    say(f"{stop['signal']}: stopped; the server under test and its process group were killed. "
        f"interrupted: {stop['measured']} of {stop['planned']} measurements. Resume with:")
    command(resume_command(run_dir))


class Remaining(ProgressColumn):
    """'ETA 0:04:12': see Progress.eta_s."""

    def __init__(self, owner: Progress):
        super().__init__()
        self.owner = owner

    def render(self, task) -> Text:
        eta = self.owner.eta_s()
        if eta is None:
            return Text("ETA -:--:--", style="progress.remaining")
        return Text(f"ETA {dt.timedelta(seconds=round(eta))}", style="progress.remaining")


class Progress:
    """A rich progress bar with an ETA (nothing with --no-progress).

    Measurements differ a lot in length (a 10,000-connection cell takes ten times a 1-connection
    one), so progress counts expected seconds, not measurements: the bar advances by each one's
    expected cost. The ETA is the expected seconds left at the pace seen so far, and, while extra
    rounds are still possible (`extra_possible()`), no earlier than the budget's end: extra
    rounds may fill the budget, so a run never ends later than its ETA said.
    """

    def __init__(self, costs: list[float], enabled: bool, *, budget_end: float | None = None,
                 extra_possible: Callable[[], bool] = lambda: False):
        self.costs, self.total = costs, sum(costs)
        self.done = 0  # measurements finished
        self.done_s = 0.0  # their expected cost
        self.budget_end, self.extra_possible = budget_end, extra_possible
        self.started = time.monotonic()
        self._rich = (rich_progress.Progress(
            TextColumn("{task.description}", table_column=Column(
                no_wrap=True, overflow="ellipsis", max_width=34, min_width=34)),
            BarColumn(bar_width=12), TextColumn("{task.fields[count]}"), TimeElapsedColumn(),
            Remaining(self), transient=True) if enabled else None)

    def eta_s(self) -> float | None:
        now = time.monotonic()
        left = None
        if self.done_s > 0:
            left = (self.total - self.done_s) * (now - self.started) / self.done_s
        if self.budget_end is not None and self.extra_possible():
            left = max(left or 0.0, self.budget_end - now)
        return None if left is None else max(0.0, left)

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


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _interval(row: dict) -> str:
    """'0.85–0.97 ✓' (the 95 % interval of × ref; ✓: within the tolerance), '' for the
    reference (1 by definition), 'none' with one round."""
    if row["vs_ref"] is None or row["is_reference"]:
        return ""
    low, high = row["vs_ref_ci95_low"], row["vs_ref_ci95_high"]
    if low is None:
        return "none (1 round)"
    return f"{low:.2f}–{high:.2f}" + (" ✓" if row["converged"] else "")


# Columns of a cell's table, in the order shown; DROP_ORDER: which go first when the terminal is
# too narrow for all (the choice: CPU vs ref and the spread first).
COLUMNS = ("#", "server", "× ref", "95 % interval", "CPU × ref", "req/s", "spread", "p99 ms",
           "CPU µs/req", "rounds", "flags")
DROP_ORDER = ("CPU × ref", "spread", "rounds", "CPU µs/req", "p99 ms", "req/s")


def summary_rows(run: results.Run) -> dict[str, list[dict]]:
    """Per cell (its label), one row per server in the one order (results.rank): ranked by
    × ref, tied servers sharing a number, then those not ranked and why, then the rest. Each
    row's figures come from the report's summary rows (bench/report/summary.py, what summary.csv
    holds), so the console and the export agree."""
    from bench.report import summary, view  # here: the report's view loads matplotlib's colours

    v = view.of_run(run)
    rows = {(r["server"], r["cell"]): r for r in summary.rows(v)}
    out: dict[str, list[dict]] = {}
    for cell in v.cells:
        ranking = view.ranking(v, cell)
        place = {p.server: str(p.group + 1) for p in ranking.placed}
        order = [p.server for p in ranking.placed] + [o.server for o in ranking.apart]
        order += [s for s in v.servers if (s, cell.label) in rows and s not in order
                  and s not in v.skipped_servers]  # said once, before the run, not per cell
        table = []
        for server in order:
            r = rows.get((server, cell.label))
            if r is None:
                continue
            flags = [] if r["verdict"] == "ok" else [r["verdict"]]
            if r["noisy_rounds"] and r["verdict"] != "noisy":
                flags.append(f"noisy {r['noisy_rounds']}/{r['measured']}")
            if r["rps_median"] is None:
                flags = [r["status"]]
            spread = (f"±{(r['rps_high'] - r['rps_low']) / r['rps_median'] * 50:.1f} %"
                      if r["rps_median"] and r["rounds"] > 1 else "-")
            cpu, p99 = r["server_cpu_us_per_request"], r["p99_us"]
            table.append({
                "#": place.get(server, "-"),
                "server": server + (" (ref)" if r["is_reference"] else ""),
                "× ref": "1" if r["is_reference"] and r["vs_ref"] else _ratio(r["vs_ref"]),
                "95 % interval": _interval(r), "CPU × ref": _ratio(r["cpu_vs_ref"]),
                "req/s": f"{r['rps_median']:,.0f}" if r["rps_median"] is not None else "-",
                "spread": spread, "p99 ms": f"{p99 / 1000:.2f}" if p99 is not None else "-",
                "CPU µs/req": f"{cpu:.1f}" if cpu is not None else "-",
                "rounds": f"{r['measured']}/{r['rounds']}", "flags": ", ".join(flags),
                "_reason": r["reason"] if r["status"] in ("failed", "degraded") else None})
        if table:
            out[cell.label] = table
    return out


def fitted_table(title: str, rows: list[dict], width: int, ratios: bool
                 ) -> tuple[Table, list[str]]:
    """The cell's table with the columns that fit `width`, dropped in DROP_ORDER; and those
    columns."""
    columns = [c for c in COLUMNS if ratios or c not in ("× ref", "95 % interval", "CPU × ref")]
    measure = Console(width=10_000, file=open("/dev/null", "w"))  # noqa: SIM115 (closed below)
    try:
        for drop in (None, *DROP_ORDER):
            if drop in columns:
                columns.remove(drop)
            table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD,
                          pad_edge=False, collapse_padding=True)
            for c in columns:
                table.add_column(c, justify="left" if c in ("server", "flags") else "right",
                                 no_wrap=True)
            for row in rows:
                table.add_row(*(row[c] for c in columns))
            if measure.measure(table).maximum <= width:
                break
    finally:
        measure.file.close()
    return table, columns


def print_summary(run: results.Run) -> None:
    """The end-of-run summary of `run` (the runner's, in memory): a table per cell, the problems
    said whole, the noise, the legend, then who won at the headline cell and how sure."""
    width = terminal_width()
    console = Console(width=width or NOT_A_TERMINAL_WIDTH)
    tables = summary_rows(run) if run.measurements else {}
    ratios = any(row["× ref"] != "-" for rows in tables.values() for row in rows)
    shown: set[str] = set()
    for cell, rows in tables.items():
        table, columns = fitted_table(cell, rows, console.width, ratios)
        console.print(table)
        shown.update(columns)
    problems = {}
    for cell, rows in tables.items():
        for row in rows:
            if row["_reason"]:
                problems.setdefault((row["server"], row["_reason"]), []).append(cell)
    if problems:
        print("problems:")
        for (server, reason), cells in problems.items():
            say(f"- {server} at {', '.join(cells)}: {reason}")
    noise_meta = run.meta.get("noise") or {}
    if noise_meta.get("windows"):
        foreign, steal = noise_meta.get("foreign_cpu_pct") or {}, noise_meta.get("steal_pct") or {}
        say(f"noise: {noise_meta['noisy_windows']} of {noise_meta['windows']} windows noisy "
            f"(other processes' CPU: median {foreign.get('median', 0):.0f} %, max "
            f"{foreign.get('max', 0):.0f} %; steal: median {steal.get('median', 0):.1f} %, max "
            f"{steal.get('max', 0):.1f} %; thresholds in bench/window.py)")
    ref = run.reference
    legend = []
    if ref.get("available"):
        beside = any((m.get("ref_basis") == "beside") for m in run.measurements)
        where = ("measured beside it in the same window, alternating" if beside
                 else "in the same cell and round")
        legend.append(f"× ref: req/s as a multiple of the reference's ({ref['name']}, {where}), "
                      f"the geometric mean over the rounds; 95 % interval: Student's t on the "
                      f"logs of the rounds' ratios (✓: within ±{results.TOLERANCE * 100:.0f} %)")
    else:
        legend.append(f"no reference in this run ({ref.get('reason')}): no ratios, ranked by "
                      f"req/s")
    legend.append("#: the tie group, by the one rule (a server ties the best of its group when "
                  "their intervals overlap)")
    if "CPU × ref" in shown:
        legend.append("CPU × ref: server CPU µs per request over the reference's")
    if "spread" in shown:
        legend.append("spread: half the range of the rounds, as a share of the median")
    if "rounds" in shown:
        legend.append("rounds: those that measured something, of those run")
    say("; ".join(legend))
    print_verdict(run)


def print_verdict(run: results.Run) -> None:
    """Who won at the headline cell, in a few lines, and the confidence line."""
    from bench.report import notes, view

    if not run.measurements:
        return
    try:
        v = view.of_run(run)
        cell = view.headline_cell(v)
    except view.ReportError:
        return
    if cell is None:
        return
    ranking = view.ranking(v, cell)
    print()
    for line in notes.ranking_lines(v, ranking):
        say(line, indent="      ")
    say(notes.confidence(ranking), indent="  ")
