"""The report: charts, report.md, report.html and the summary exports of one bench run, redrawn
from its saved files.

    python -m bench report results/20261125-131500-quick        # what `make bench` runs at the end
    make report RUN=results/20261125-131500-quick                # redraw, without measuring again
    python -m bench report RUN_DIR --cell 128x1024               # headline another cell

The bench's last stage (generate load -> sample the server -> record JSON -> **report**). It reads
the run through bench/results.py (the one results model: nothing here re-derives a figure) and
writes beside RUN_DIR/results.jsonl:

- report.md          the headline, every chart with what to notice, problems, every result
- report.html        the same text with interactive charts: one file, plotly.js inlined, offline
- charts/*.png, .svg the static charts (bench/report/charts.py)
- summary.csv, .json one row per server x cell, from results.fold() (bench/report/summary.py)

The parts, each one job, in the order a report is made:

    view.py      the run arranged for showing: order, colours, which cell to headline, which
                 results may lead
    notes.py     what to notice: the sentences under each chart and in the headline
    series.py    what each chart shows, computed once for both plotting stacks
    charts.py    the PNG and SVG charts (matplotlib), drawn from the series: the status matrix
                 and the line charts; bars.py the ranking and the bar charts; chartkit.py
                 what they share (figure, footer, legends, axes)
    document.py  the report as blocks: headings, paragraphs, tables, charts
    blocks.py    the blocks rendered to Markdown (report.md) and to HTML
    html.py      report.html: the blocks, the charts drawn again with plotly from the series
    summary.py   summary.csv and summary.json
    fmt.py       one formatter for each kind of figure
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bench import results
from bench.report import blocks, charts, document, html, series, summary, view
from bench.report.fmt import parse_size
from bench.report.view import ReportError

__all__ = ["ReportError", "build_report", "main", "parse_cell"]


def build_report(run: str | Path | results.Run, *, cell: tuple[int, int] | None = None) -> Path:
    """Draw every chart the run has data for into RUN_DIR/charts/, write report.md, report.html,
    summary.csv and summary.json. `run` is a run directory, or a run already read (the runner
    hands over the one it holds). `cell` = (connections, message bytes) picks the headline cell
    (default: view.headline_cell). Returns the path of report.md; raises ReportError."""
    v = view.of_run(run) if isinstance(run, results.Run) else view.load(run)
    focus = view.headline_cell(v, cell)
    charts_dir = v.dir / "charts"
    charts_dir.mkdir(exist_ok=True)
    for pattern in charts.CHART_GLOB:  # a redraw must not leave a chart this run no longer has
        for stale in charts_dir.glob(pattern):
            stale.unlink()
    planned = series.plan(v, focus, asked=cell is not None)
    charts.draw(v, planned, charts_dir)
    doc = document.report(v, planned, focus)
    path = v.dir / "report.md"
    path.write_text(blocks.to_markdown(doc))
    summary.write(v)
    html.write(v, doc)
    return path


def parse_cell(text: str) -> tuple[int, int]:
    """'128x1024' or '128x1KiB' or '128x64k' -> (128, 1024) (the size as fmt.parse_size reads
    it)."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(.+?)\s*", text)
    try:
        if not match:
            raise ValueError
        return int(match.group(1)), parse_size(match.group(2))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a cell; write CONNSxBYTES, e.g. 128x1024 or 16x64KiB") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Draw the charts and write report.md, report.html and summary.csv/json of a "
                    "bench run, from its saved results (RUN_DIR/meta.json and results.jsonl); "
                    "nothing is measured again.")
    parser.add_argument("run_dir", metavar="RUN_DIR",
                        help="a run directory written by `python -m bench run`, e.g. results/<run_id>")
    parser.add_argument("--cell", type=parse_cell, metavar="CONNSxBYTES",
                        help="the closed-loop cell to headline, with the spectrum and the CPU "
                             "bars, e.g. 128x1024 (default: where the servers differ most "
                             "relative to their noise)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        path = build_report(args.run_dir, cell=args.cell)
    except ReportError as exc:
        print(f"bench report: {exc}", file=sys.stderr)
        return 2
    count = len(list((path.parent / "charts").glob("*.png")))
    print(f"wrote {path}, {path.with_suffix('.html').name} and {count} charts (PNG and SVG) in "
          f"{path.parent / 'charts'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
