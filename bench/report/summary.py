"""summary.csv and summary.json: one row per server x cell, every figure from results.CellSummary,
for a spreadsheet or a script. The rows are the one summary of a run: `rows(view)` is what the
export writes, and what any other table of the run (the runner's console) can be built from.

    v = view.load("results/20261201-221500-quick")     # or view.of_run(run), a run in memory
    for row in rows(v): print(row["server"], row["cell"], row["vs_ref"], row["rps_median"])
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from bench import results
from bench.report import view

SUMMARY_FIELDS = ("server", "family", "is_reference", "conns", "size_bytes", "rate",
                  "rate_fraction_of_peak", "cell", "status", "verdict", "rounds", "measured",
                  "vs_ref", "vs_ref_ci95_low", "vs_ref_ci95_high", "vs_ref_n", "converged",
                  "tie_group", "cpu_vs_ref", "cpu_vs_ref_ci95_low", "cpu_vs_ref_ci95_high",
                  "rps_median", "rps_low", "rps_high", "rps_ci95_low", "rps_ci95_high",
                  "p50_us", "p99_us", "p99_99_us", "server_cpu_us_per_request",
                  "ctx_switches_per_request", "mem_per_conn_bytes", "served_all", "client_bound",
                  "noisy", "noisy_rounds", "noisy_left_out", "reason")


def rows(v: view.View) -> list[dict]:
    """One row per server x cell (cells in the view's order, then servers), every figure from
    results.CellSummary; vs_ref is the geometric mean of the rounds' ratios and its 95 %
    interval Student's t on their logs; tie_group is the server's group in the cell's ranking
    (1 = the leading group; empty: not ranked), by the one rule (results.rank)."""
    out = []
    for cell in v.cells:
        groups = {p.server: p.group + 1 for p in view.ranking(v, cell).placed}
        for server in v.servers:
            o = v.outcome(server, cell)
            if o is None:
                continue
            rps, ci, ratio, cpu = o.rps, o.vs_ref_ci95, o.vs_ref_stat, o.cpu_vs_ref_stat

            def med(key, o=o):
                s = o.stat(key)
                return s.value if s else None

            out.append({
                "server": server, "family": v.families[server], "is_reference": o.is_reference,
                "conns": cell.conns, "size_bytes": cell.size_bytes, "rate": cell.rate,
                "rate_fraction_of_peak": cell.fraction, "cell": cell.label,
                "status": o.status, "verdict": o.verdict, "rounds": len(o.measurements),
                "measured": len(o.measured), "vs_ref": o.vs_ref,
                "vs_ref_ci95_low": ci[0] if ci else None, "vs_ref_ci95_high": ci[1] if ci else None,
                "vs_ref_n": ratio.n if ratio else None,
                "converged": o.converged if ratio is not None else None,
                "tie_group": groups.get(server),
                "cpu_vs_ref": o.cpu_vs_ref,
                "cpu_vs_ref_ci95_low": cpu.ci95[0] if cpu and cpu.ci95 else None,
                "cpu_vs_ref_ci95_high": cpu.ci95[1] if cpu and cpu.ci95 else None,
                "rps_median": rps.value if rps else None, "rps_low": rps.low if rps else None,
                "rps_high": rps.high if rps else None,
                "rps_ci95_low": rps.ci95[0] if rps and rps.ci95 else None,
                "rps_ci95_high": rps.ci95[1] if rps and rps.ci95 else None,
                "p50_us": med(lambda m: (m.latency_us or {}).get("p50")),
                "p99_us": med(lambda m: (m.latency_us or {}).get("p99")),
                "p99_99_us": med(lambda m: (m.latency_us or {}).get("p99_99")),
                "server_cpu_us_per_request": med("server_cpu_us_per_request"),
                "ctx_switches_per_request": med("ctx_per_request"),
                "mem_per_conn_bytes": med("mem_per_conn_bytes"),
                "served_all": o.served_all,
                "client_bound": o.client_bound, "noisy": o.noisy, "noisy_rounds": o.noisy_count,
                "noisy_left_out": o.left_out,
                "reason": "; ".join(o.reasons) or None,
            })
    return out


def write(v: view.View) -> tuple[Path, Path]:
    """summary.csv and summary.json in the run's directory."""
    table = rows(v)
    csv_path, json_path = v.dir / "summary.csv", v.dir / "summary.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        for row in table:
            writer.writerow({k: "" if row[k] is None else row[k] for k in SUMMARY_FIELDS})
    json_path.write_text(json.dumps({"run_id": v.run_id, "schema": results.SCHEMA_VERSION,
                                     "rows": table}, indent=1) + "\n")
    return csv_path, json_path
