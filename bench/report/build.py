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
- summary.csv, .json one row per server x cell, from results.fold()

The parts, each one job: bench/report/view.py (the run arranged for showing; which cell to headline;
which results may lead), bench/report/notes.py (what to notice), bench/report/charts.py (PNG/SVG),
bench/report/markdown.py (report.md), bench/report/html.py (report.html).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from bench import results
from bench.report import charts, html, markdown, view
from bench.report.view import ReportError

__all__ = ["ReportError", "build_report", "main", "parse_cell", "write_summary"]

SUMMARY_FIELDS = ("server", "family", "is_reference", "conns", "size_bytes", "rate",
                  "rate_fraction_of_peak", "cell", "status", "verdict", "repeats", "measured",
                  "vs_ref", "vs_ref_ci95_low", "vs_ref_ci95_high", "converged", "cpu_vs_ref",
                  "rps_median", "rps_low", "rps_high", "rps_ci95_low", "rps_ci95_high",
                  "p50_us", "p99_us", "p99_99_us", "server_cpu_us_per_request",
                  "ctx_switches_per_request", "mem_per_conn_bytes", "client_bound", "noisy",
                  "reason")


def summary_rows(v: view.View) -> list[dict]:
    """One row per server x cell, every figure from results.CellSummary."""
    rows = []
    for cell in v.cells:
        for server in v.servers:
            o = v.outcome(server, cell)
            if o is None:
                continue
            rps, ci = o.rps, o.vs_ref_ci95

            def med(key, o=o):
                s = o.stat(key)
                return s.median if s else None

            rows.append({
                "server": server, "family": v.families[server], "is_reference": o.is_reference,
                "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": cell.rate,
                "rate_fraction_of_peak": cell.fraction, "cell": cell.label,
                "status": o.status, "verdict": o.verdict, "repeats": len(o.measurements),
                "measured": len(o.measured), "vs_ref": o.vs_ref,
                "vs_ref_ci95_low": ci[0] if ci else None, "vs_ref_ci95_high": ci[1] if ci else None,
                "converged": o.converged if o.vs_ref is not None else None,
                "cpu_vs_ref": o.cpu_vs_ref,
                "rps_median": rps.median if rps else None, "rps_low": rps.low if rps else None,
                "rps_high": rps.high if rps else None,
                "rps_ci95_low": rps.ci95[0] if rps and rps.ci95 else None,
                "rps_ci95_high": rps.ci95[1] if rps and rps.ci95 else None,
                "p50_us": med(lambda m: (m.latency_us or {}).get("p50")),
                "p99_us": med(lambda m: (m.latency_us or {}).get("p99")),
                "p99_99_us": med(lambda m: (m.latency_us or {}).get("p99_99")),
                "server_cpu_us_per_request": med("server_cpu_us_per_request"),
                "ctx_switches_per_request": med("ctx_per_request"),
                "mem_per_conn_bytes": med("mem_per_conn_bytes"),
                "client_bound": o.client_bound, "noisy": o.noisy,
                "reason": "; ".join(o.reasons) or None,
            })
    return rows


def write_summary(v: view.View) -> tuple[Path, Path]:
    rows = summary_rows(v)
    csv_path, json_path = v.dir / "summary.csv", v.dir / "summary.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in SUMMARY_FIELDS})
    json_path.write_text(json.dumps({"run_id": v.run_id, "schema": results.SCHEMA_VERSION,
                                     "rows": rows}, indent=1) + "\n")
    return csv_path, json_path


def build_report(run_dir: str | Path, *, cell: tuple[int, int] | None = None) -> Path:
    """Draw every chart the run has data for into RUN_DIR/charts/, write report.md, report.html,
    summary.csv and summary.json. `cell` = (connections, message bytes) picks the headline cell
    (default: view.headline_cell). Returns the path of report.md; raises ReportError."""
    v = view.load(run_dir)
    focus = view.headline_cell(v, cell)
    charts_dir = v.dir / "charts"
    charts_dir.mkdir(exist_ok=True)
    for pattern in charts.CHART_GLOB:  # a redraw must not leave a chart this run no longer has
        for stale in charts_dir.glob(pattern):
            stale.unlink()
    drawn = charts.draw_all(v, charts_dir, focus, asked=cell is not None)
    path = markdown.write(v, drawn, focus)
    write_summary(v)
    html.write(v, drawn, path)
    return path


def parse_cell(text: str) -> tuple[int, int]:
    """'128x1024' or '128x1KiB' or '128x64k' -> (128, 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*[x×,]\s*(\d+)\s*(k|kib|kb|m|mib|mb|b)?\s*", text, re.I)
    if not match:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a cell; write CONNSxBYTES, e.g. 128x1024 or 16x64KiB")
    unit = (match.group(3) or "b").lower()[0]
    return int(match.group(1)), int(match.group(2)) * {"b": 1, "k": 1024, "m": 1 << 20}[unit]


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
