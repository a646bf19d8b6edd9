"""The bench runner: every server x cell x round, measured the same way, recorded as JSON lines.

    python -m bench run                         # the quick profile, every available server
    python -m bench run --profile full          # up to 10,000 connections
    python -m bench run --resume results/20261201-221500-quick             # finish a stopped run

The bench's first stages (generate load -> sample the server -> **record JSON** -> report), one
purpose per file:

    cli.py         the options, the servers chosen, the run, then its summary and report
    profiles.py    the profiles: cells, rounds, windows, the budget for extra rounds
    runner.py      the plan of rounds, the budget, extra rounds until stable, the records so far
    subject.py     what is measured: a registry server, your command, a running target
    measure.py     one measurement: start, warm up, load, sample, settle, stop
    guard.py       what keeps the machine up: fd and port preflight, the memory and task guard
    verdict.py     ok, degraded or failed and why; client-bound; was the window long enough
    figures.py     the window's figures into the record (the generator's, the server tree's)
    sample.py      the server's process tree sampled while the load runs
    noise.py       what else the machine is doing (steal, foreign CPU, busy at start)
    machine.py     the machine, versions, git state, CPU split and limits for meta.json
    console.py     the plan lines, the progress bar and ETA, the end-of-run summary
    interrupts.py  SIGINT, SIGTERM, SIGHUP: stop cleanly, keep what was measured

Output, in results/<run_id>/: meta.json (the machine, versions, pinning, limits, the plan, the
reference, the noise summary, whether it was interrupted) and results.jsonl, one JSON object per
measurement in the record of bench/results.py (schema 3): the server and the cell (conns,
size_bytes, rate; for a share of the peak also rate_fraction_of_peak, peak_rps and peak_conns),
round, status and reason (with stderr_tail when not ok), what the generator measured (rps,
latency_us, errors by kind, conns_established, client CPU, engine), what the server cost
(server_cpu_us_per_request, server_mem_per_conn_bytes, server_processes/threads/fds, context
switches), vs_ref, cpu_vs_ref, vs_ref_ci95, converged, noise, window_s, target, settle_s, exit,
elapsed_s and interpreter (schema 3: the Python a Python server ran under, null for the rest; a
Python server under another interpreter than the bench's own is named NAME@TAG, `--python`).
bench/report turns them into charts, report.md and report.html.
"""
