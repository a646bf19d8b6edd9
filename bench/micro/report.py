"""Turn a saved microbenchmark run into a one-screen table and a chart.

    python -m bench.micro.report                    # the newest run under results/micro/ or .benchmarks/
    python -m bench.micro.report RUN.json --out micro.png

Reads the JSON that pytest-benchmark saved (``--benchmark-autosave`` or ``--benchmark-json``).
pytest-benchmark times one *call* of the benchmarked function; each of our benchmarks records in
``extra_info`` how many operations one call performs (``ops_per_call``: creations, or switches, a
round trip being two), so that

    nanoseconds per operation = seconds per call x 1e9 / ops_per_call.

The memory cases record ``bytes_per_unit`` instead; their timings are not results.

Prints: unit, operation (create / switch same-core / switch cross-core / memory), the median time
per operation with its interquartile range (the middle half of the rounds), and memory per unit.
Draws: horizontal bars on a log scale, one colour per kind of unit, whiskers for the IQR, the
machine, Python and date in the footer; written next to the JSON (same name, .png) or to --out.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path

from bench.report.fmt import fmt_bytes, fmt_duration

# Where `make micro` saves runs, then pytest-benchmark's default storage; looked for in the
# current directory and in the repository.
SEARCH_DIRS = ("results/micro", ".benchmarks")
REPO_ROOT = Path(__file__).resolve().parents[2]

# Kept in step with common.py, which labels the benchmarks (and imports pytest, which a report
# should not need).
KINDS = ("process", "subinterpreter", "thread", "greenlet", "generator", "asyncio", "trio")
OPERATIONS = ("create", "switch same-core", "switch cross-core", "memory")

# One colour per kind of unit: the Okabe-Ito palette, which stays distinct for colour-blind readers.
KIND_COLOURS = {
    "process": "#D55E00",  # vermillion
    "subinterpreter": "#000000",  # black
    "thread": "#E69F00",  # orange
    "greenlet": "#009E73",  # bluish green
    "generator": "#0072B2",  # blue
    "asyncio": "#CC79A7",  # reddish purple
    "trio": "#56B4E9",  # sky blue
}


class Row:
    """One benchmark, in report units: ns per operation, or bytes per unit held."""

    def __init__(self, benchmark: dict) -> None:
        info = benchmark["extra_info"]
        stats = benchmark["stats"]
        self.unit: str = info["unit"]
        self.kind: str = info["kind"]
        self.operation: str = info["operation"]
        # pytest-benchmark gives seconds per call; one call performs ops_per_call operations.
        to_ns_per_op = 1e9 / info["ops_per_call"]
        self.ns_median = stats["median"] * to_ns_per_op
        self.ns_q1 = stats["q1"] * to_ns_per_op
        self.ns_q3 = stats["q3"] * to_ns_per_op
        self.rounds: int = stats["rounds"]
        self.bytes_per_unit: int | None = info.get("bytes_per_unit")
        self.remark: str = info.get("note", "")  # the benchmark's own caveat, shown on the chart
        self.note = _note(info)  # the remark plus context, for the table

    @property
    def is_memory(self) -> bool:
        return self.operation == "memory"

    def sort_key(self) -> tuple:
        value = self.bytes_per_unit if self.is_memory else self.ns_median
        return (OPERATIONS.index(self.operation), value or 0)


def _note(info: dict) -> str:
    """The one thing a reader needs to know about this row, if any: a few words, no more."""
    notes = []
    if info["operation"] == "memory":
        notes.append(f"N={info.get('units_held', 0):,}")
    if "parent_rss_bytes" in info:
        notes.append(f"parent RSS {format_bytes(info['parent_rss_bytes'])}")
    if info["operation"].startswith("switch") and info["kind"] in ("process", "thread"):
        if isinstance(info.get("cpus"), list):
            notes.append("CPU " + ",".join(map(str, info["cpus"])))
        if info.get("smt_siblings"):
            notes.append("SMT siblings")
    if info.get("note"):
        notes.append(info["note"])
    return "; ".join(notes)


# --- formatting ------------------------------------------------------------------------------


def format_ns(ns: float) -> str:
    """A duration in nanoseconds, trailing zeros kept so that a column lines up: 57.0 ns, 3.20 µs,
    22.0 ms (bench/report/fmt.py's one duration formatter)."""
    return fmt_duration(ns, "ns", zeros=True)


def format_ns_range(low_ns: float, high_ns: float) -> str:
    """A range in one unit where the two ends share it: 2.42–2.99 µs."""
    low, high = format_ns(low_ns), format_ns(high_ns)
    low_value, low_unit = low.split()
    if high.endswith(" " + low_unit):
        return f"{low_value}–{high}"
    return f"{low}–{high}"


def format_bytes(count: float) -> str:
    """A size in binary units, trailing zeros kept: 187 B, 16.1 KiB, 7.07 MiB."""
    return fmt_bytes(count, zeros=True)


def machine_line(run: dict) -> str:
    """CPU model, cores, OS, Python and date of a run, for the table header and chart footer."""
    machine = run.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor") or "unknown CPU"
    logical = machine.get("cores_logical") or machine.get("cpu", {}).get("count")
    physical = machine.get("cores_physical")
    cores = f"{logical} logical CPUs" if logical else "? CPUs"
    if physical:
        cores += f" ({physical} physical{', SMT' if machine.get('smt') else ', no SMT'})"
    system = f"{machine.get('system', '')} {machine.get('release', '')}".strip()
    python = (
        f"{machine.get('python_implementation', 'Python')} {machine.get('python_version', '?')}"
    )
    when = run.get("datetime", "")
    try:
        when = datetime.fromisoformat(when).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        pass
    load = machine.get("load_average_1m")
    load = f"load average {load} at the end" if load is not None else ""
    return " · ".join(part for part in (cpu, cores, system, python, when, load) if part)


# --- input -----------------------------------------------------------------------------------


def newest_run(roots: list[Path]) -> Path | None:
    """The most recently written pytest-benchmark JSON under SEARCH_DIRS in any of ``roots``."""
    candidates = [
        path
        for root in roots
        for folder in SEARCH_DIRS
        for path in (root / folder).glob("**/*.json")
    ]
    return max(candidates, key=lambda path: path.stat().st_mtime, default=None)


def load_rows(run: dict) -> tuple[list[Row], int]:
    """Our benchmarks as rows, sorted for display, and how many foreign entries were skipped."""
    rows, skipped = [], 0
    for benchmark in run.get("benchmarks", []):
        info = benchmark.get("extra_info", {})
        if info.get("operation") in OPERATIONS and info.get("kind") in KINDS:
            rows.append(Row(benchmark))
        else:
            skipped += 1
    rows.sort(key=Row.sort_key)
    return rows, skipped


# --- the table -------------------------------------------------------------------------------

HEADERS = ("unit", "operation", "median/op", "IQR", "memory/unit", "note")
NUMERIC_COLUMNS = (2, 3, 4)


def table_cells(rows: list[Row]) -> list[tuple[str, ...]]:
    """The table as strings; the operation is named on the first row of its group only."""
    cells = []
    previous_operation = None
    for row in rows:
        operation = row.operation if row.operation != previous_operation else ""
        previous_operation = row.operation
        if row.is_memory:
            timing = ("", "")
            memory = format_bytes(row.bytes_per_unit) if row.bytes_per_unit is not None else "?"
        else:
            timing = (format_ns(row.ns_median), format_ns_range(row.ns_q1, row.ns_q3))
            memory = ""
        cells.append((row.unit, operation, *timing, memory, row.note))
    return cells


def print_table(rows: list[Row], source: str, machine: str) -> None:
    """One screen: a header line, the table with a blank line between groups, the machine."""
    cells = table_cells(rows)
    print(f"Microbenchmarks from {source}")
    print(
        "median per operation; IQR = the middle half of the rounds; "
        "memory = USS growth per unit held (for processes, the children's USS)"
    )
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain_table(cells)
    else:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for index, header in enumerate(HEADERS):
            justify = "right" if index in NUMERIC_COLUMNS else "left"
            table.add_column(header, justify=justify, no_wrap=True)
        for index, row_cells in enumerate(cells):
            last_of_group = index + 1 == len(cells) or cells[index + 1][1] != ""
            table.add_row(*row_cells, end_section=last_of_group)
        # In a terminal, rich fits the table to its width; into a file or a pipe, where rich
        # would assume 80 columns, never wrap a row.
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    print(machine)


def _print_plain_table(cells: list[tuple[str, ...]]) -> None:
    widths = [max(len(c[i]) for c in [HEADERS, *cells]) for i in range(len(HEADERS))]

    def line(values) -> str:
        return "  ".join(
            value.rjust(width) if index in NUMERIC_COLUMNS else value.ljust(width)
            for index, (value, width) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    print(line(HEADERS))
    print(line(["-" * width for width in widths]))
    for index, row_cells in enumerate(cells):
        if row_cells[1] and index > 0:
            print()
        print(line(row_cells))


# --- the chart -------------------------------------------------------------------------------

# What each group of bars means, written in grey on the group's heading row.
GROUP_CAPTIONS = {
    "create": "create one unit, run an empty body in it, reap it",
    "switch same-core": "hand control to the other unit of a pair (half a ping-pong), on one CPU",
    "switch cross-core": "the same with the pair on two CPUs: each wake-up interrupts the other "
    "CPU; units that never leave their OS thread have no such case",
    "memory": "memory per unit while N are held at once (USS growth; children's USS for processes)",
}


def _log_axis(axis, formatter, base: int) -> None:
    """A log-scale x axis with a labelled tick at each power of ``base``."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    axis.set_xscale("log")
    axis.xaxis.set_major_locator(LogLocator(base=base))
    # Ticks sit on round numbers: "1 µs" reads better than "1.00 µs".
    axis.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _pos: re.sub(r"\.0+ ", " ", formatter(value)))
    )
    axis.xaxis.set_minor_locator(NullLocator())
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.grid(axis="x", which="major", color="#e3e3e3", linewidth=0.8)
    axis.set_axisbelow(True)
    axis.tick_params(axis="x", labelsize=10)
    for side in ("top", "right"):
        axis.spines[side].set_visible(False)


def _bars(
    axis, groups: list[tuple[str, list[Row]]], value_of, spread_of, formatter, base: int
) -> None:
    """One block of bars per group, under a bold heading row that carries the group's caption."""
    tick_positions, tick_labels, heading_positions = [], [], []
    lows, highs = [], []
    bar_rows = []  # (y, row, value, high) for the labels drawn once the x range is known
    y = 0.0
    for heading, rows in groups:
        heading_positions.append(y)
        tick_positions.append(y)
        tick_labels.append(heading)
        y += 1
        for row in rows:
            value = value_of(row)
            low, high = spread_of(row)
            axis.barh(y, value, height=0.72, color=KIND_COLOURS[row.kind], edgecolor="none")
            if high > low:
                axis.errorbar(
                    value,
                    y,
                    xerr=[[value - low], [high - value]],
                    fmt="none",
                    ecolor="#222222",
                    elinewidth=1,
                    capsize=2.5,
                )
            bar_rows.append((y, row, value, high))
            lows.append(min(low, value))
            highs.append(max(high, value))
            tick_positions.append(y)
            tick_labels.append(row.unit)
            y += 1
        y += 0.5  # a gap before the next group

    left = base ** math.floor(math.log(min(lows), base))  # the tick at or below the shortest bar
    right = max(highs) * 30  # room for the value labels and notes after the longest bar
    axis.set_xlim(left, right)
    axis.set_ylim(y - 0.5, -0.7)  # first group at the top
    for heading_y, (heading, _) in zip(heading_positions, groups, strict=True):
        axis.text(
            left * 1.15,
            heading_y,
            GROUP_CAPTIONS.get(heading, ""),
            va="center",
            ha="left",
            fontsize=9.5,
            color="#666666",
            style="italic",
        )
    for bar_y, row, value, high in bar_rows:
        label = formatter(value) + (f"   {row.remark}" if row.remark else "")
        axis.text(high * 1.1, bar_y, label, va="center", ha="left", fontsize=10)

    axis.set_yticks(tick_positions, tick_labels, fontsize=10.5)
    for position, tick in zip(tick_positions, axis.get_yticklabels(), strict=True):
        if position in heading_positions:
            tick.set_fontweight("bold")
            tick.set_fontsize(11.5)
    axis.tick_params(axis="y", length=0)


class Panel:
    """One chart panel: groups of bars on a log axis."""

    def __init__(self, groups, value_of, spread_of, formatter, tick_base: int, xlabel: str):
        self.groups = groups  # [(heading, [Row, ...]), ...]
        self.value_of = value_of  # Row -> bar length
        self.spread_of = spread_of  # Row -> (whisker low, whisker high)
        self.formatter = formatter  # value -> label, also used for the ticks
        self.tick_base = tick_base  # a labelled tick at each power of this
        self.xlabel = xlabel
        self.lines = sum(1 + len(rows) for _, rows in groups)  # headings and bars


def draw_chart(rows: list[Row], run: dict, out_path: Path) -> None:
    """Horizontal bars on log scales: time per operation on top, memory per unit below."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    timed = [row for row in rows if not row.is_memory]
    held = [row for row in rows if row.is_memory and row.bytes_per_unit]
    panels = []
    if timed:
        time_groups = [
            (operation, [row for row in timed if row.operation == operation])
            for operation in OPERATIONS
            if any(row.operation == operation for row in timed)
        ]
        panels.append(
            Panel(
                time_groups,
                value_of=lambda row: row.ns_median,
                spread_of=lambda row: (row.ns_q1, row.ns_q3),
                formatter=format_ns,
                tick_base=10,
                xlabel="time per operation: median, whiskers from first to third quartile "
                "(log scale)",
            )
        )
    if held:
        panels.append(
            Panel(
                [("memory", held)],
                value_of=lambda row: row.bytes_per_unit,
                spread_of=lambda row: (row.bytes_per_unit, row.bytes_per_unit),
                formatter=format_bytes,
                tick_base=4,
                xlabel="bytes per unit (log scale)",
            )
        )

    # Sizes in inches, so that a bar is as tall whatever the number of rows; 12 in x 100 dpi is
    # 1200 px wide.
    inches_per_line, top_inches, bottom_inches, gap_inches = 0.3, 0.95, 0.3, 0.75
    lines = sum(panel.lines for panel in panels)
    height = top_inches + bottom_inches + inches_per_line * lines + gap_inches * len(panels)
    figure = plt.figure(figsize=(12, height), dpi=100)
    grid = figure.add_gridspec(
        len(panels),
        1,
        height_ratios=[panel.lines for panel in panels],
        hspace=gap_inches / (inches_per_line * lines / len(panels)),
        left=0.17,
        right=0.985,
        top=1 - top_inches / height,
        bottom=(bottom_inches + gap_inches) / height,
    )
    for index, panel in enumerate(panels):
        axis = figure.add_subplot(grid[index])
        _log_axis(axis, panel.formatter, panel.tick_base)
        _bars(axis, panel.groups, panel.value_of, panel.spread_of, panel.formatter, panel.tick_base)
        axis.set_xlabel(panel.xlabel, fontsize=10)

    figure.suptitle(
        "What one unit of concurrency costs: to create, to switch, to hold",
        x=0.01,
        y=1 - 0.18 / height,
        ha="left",
        va="top",
        fontsize=14,
        fontweight="bold",
    )
    kinds_present = [kind for kind in KINDS if any(row.kind == kind for row in rows)]
    figure.legend(
        handles=[Patch(color=KIND_COLOURS[kind], label=kind) for kind in kinds_present],
        loc="upper left",
        bbox_to_anchor=(0.01, 1 - 0.5 / height),
        ncol=len(kinds_present),
        frameon=False,
        fontsize=10.5,
        handlelength=1.4,
        columnspacing=1.6,
    )
    figure.text(0.01, 0.2 / height, machine_line(run), fontsize=9.5, color="#444444")
    figure.savefig(out_path)
    plt.close(figure)


# --- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.micro.report",
        description="Print a table and draw a chart from a saved microbenchmark run.",
    )
    parser.add_argument(
        "json",
        nargs="?",
        type=Path,
        help=f"a pytest-benchmark JSON (default: the newest under {' or '.join(SEARCH_DIRS)})",
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the PNG (default: beside the JSON)"
    )
    parser.add_argument("--no-chart", action="store_true", help="print the table only")
    args = parser.parse_args(argv)

    roots = [Path.cwd(), REPO_ROOT] if Path.cwd().resolve() != REPO_ROOT else [REPO_ROOT]
    path = args.json or newest_run(roots)
    if path is None:
        print(
            f"no saved run under {' or '.join(SEARCH_DIRS)} in {' or '.join(map(str, roots))}; "
            "run `make micro` first, or pass the JSON path",
            file=sys.stderr,
        )
        return 1
    try:
        run = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        print(f"cannot read {path}: {error}", file=sys.stderr)
        return 1
    rows, skipped = load_rows(run)
    if not rows:
        print(
            f"{path} holds no microbenchmarks from bench/micro (was it run with --benchmark-disable?)",
            file=sys.stderr,
        )
        return 1

    machine = machine_line(run)
    if skipped:
        machine += f" · {skipped} other benchmarks not shown"
    print_table(rows, str(path), machine)
    if not args.no_chart:
        out_path = args.out or path.with_suffix(".png")
        draw_chart(rows, run, out_path)
        print(f"chart: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
