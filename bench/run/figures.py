"""A window's figures into the record: what the server's process tree cost in the window
(bench/run/sample.py's readings: CPU per request, utilisation, context switches, processes,
threads, fds, memory per connection), and the reference's figures from its slices of a window it
shared (beside_ref). The load generator's own figures go in through results.fill_load."""

from __future__ import annotations

import os

from bench import results
from bench.run.verdict import client_bound


def fill_server(record, load, w: dict, idle, cell, server_cpus, peaks: dict | None = None) -> None:
    requests = load.get("requests") or 0
    if not w:
        # No CPU or memory figures (a tree of 10,000 processes takes longer to read than the
        # window lasts), but the light readings still tell how big the server grew.
        for key, value in (peaks or {}).items():
            record[f"server_{key}"] = value
        record["reason"] = record["sampling_note"] = (
            "the server could not be read at both edges of the window (too many processes to "
            "read in time): no CPU or memory figures")
        return
    cores = len(server_cpus) if server_cpus else (os.cpu_count() or 1)
    # Alternating with the reference (beside_ref), the server had load in its own slices only:
    # its utilisation is over that share of the window.
    share = (load["active_s"] / load["duration_s"]) if load.get("active_s") and \
        load.get("duration_s") else 1.0
    record["server_cpu_s"] = round(w["cpu_s"], 4)
    record["server_cpu_util"] = (round(min(1.0, w["cpu_s"] / (w["span_s"] * cores * share)), 4)
                                 if w["span_s"] else None)
    # Per request: the CPU the window cost, over the round trips the window completed, scaled to
    # the sampled span (which brackets the window to within one sampling interval).
    cpu_us = cpu_us_per_request(w["cpu_s"], w["span_s"], requests, load.get("duration_s"))
    record["server_cpu_us_per_request"] = round(cpu_us, 2) if cpu_us is not None else None
    switches = w["ctx_voluntary"] + w["ctx_involuntary"]
    record["server_ctx_voluntary"] = w["ctx_voluntary"]
    record["server_ctx_involuntary"] = w["ctx_involuntary"]
    ctx = per_request(switches, w["span_s"], requests, load.get("duration_s"))
    record["ctx_switches_per_request"] = round(ctx, 3) if ctx is not None else None
    record["server_processes"] = w["processes"]
    record["server_threads"] = w["threads"]
    record["server_fds"] = w["fds"]
    record["server_rss_bytes"] = w["rss_bytes"]
    record["server_uss_bytes"] = w["uss_bytes"]
    record["server_pss_bytes"] = w["pss_bytes"]
    # Memory per connection from the tree's anonymous PSS (heap, stacks, buffers). USS would be
    # wrong for fork's children: after fork the pages are shared, so each process's USS drops.
    # Plain PSS would be wrong for everyone: it splits libraries' file pages with the load
    # generator's processes too, so it falls as the generator starts. Then PSS, USS, RSS where
    # the kernel has no Pss_Anon (before Linux 5.9) or the OS no smaps.
    idle_mem = busy_mem = None
    for attr in ("anon_pss_bytes", "pss_bytes", "uss_bytes", "rss_bytes"):
        if idle is not None and getattr(idle, attr) is not None and w.get(attr) is not None:
            idle_mem, busy_mem = getattr(idle, attr), w[attr]
            record["server_mem_basis"] = attr.removesuffix("_bytes").upper().replace("ANON_PSS", "PSS_ANON")
            break
    record["server_mem_idle_bytes"] = idle_mem
    established = load.get("conns_established") or cell.conns
    # With a handful of connections, the growth is lost in the interpreter's own noise (a few
    # hundred KiB either way): per-connection memory is reported from 10 connections up.
    per_conn = mem_per_conn(idle_mem, busy_mem, established)
    record["server_mem_per_conn_bytes"] = round(per_conn, 1) if per_conn is not None else None
    client_util = load.get("client_cpu_util") or 0
    server_util = record["server_cpu_util"] or 0
    record["client_bound"] = client_bound(client_util, server_util)


def beside_figures(name: str, load: dict, ref_w: dict) -> dict:
    """The reference's figures from its slices of the window (bench.load's "alt"), for vs_ref:
    its rate over the time it was active, its CPU per request, its errors (any: no pairing)."""
    alt = load["alt"]
    cpu_us = (cpu_us_per_request(ref_w["cpu_s"], ref_w["span_s"], alt["requests"],
                                 load.get("duration_s")) if ref_w else None)
    return {"server": name, "rps": round(alt["rps"], 1), "requests": alt["requests"],
            "active_s": alt["active_s"], "slice_s": load.get("slice_s"), "errors": alt["errors"],
            "conns_established": alt["conns_established"],
            "latency_us": {k: alt["latency_us"][k] for k in ("p50", "p99", "p99.9")
                           if k in alt["latency_us"]},
            "server_cpu_us_per_request": round(cpu_us, 2) if cpu_us is not None else None,
            "ok": alt["errors"] == 0 and alt["requests"] > 0}


def cpu_us_per_request(cpu_s: float, span_s: float, requests: int, duration_s: float) -> float | None:
    """The CPU the sampled span cost, over the round trips completed in that span: the rate over
    the load's window, scaled to the span (which brackets the window to within one reading)."""
    if not requests or not duration_s or not span_s:
        return None
    return cpu_s * 1e6 / (requests / duration_s * span_s)


def per_request(count: float, span_s: float, requests: int, duration_s: float) -> float | None:
    """A count over the sampled span (context switches), per round trip, as cpu_us_per_request."""
    if not requests or not duration_s or not span_s:
        return None
    return count / (requests / duration_s * span_s)


def mem_per_conn(idle_bytes: float | None, busy_bytes: float | None, conns: int) -> float | None:
    """Growth over the idle size per connection; None below MEM_PER_CONN_MIN_CONNS connections."""
    if idle_bytes is None or busy_bytes is None or conns < results.MEM_PER_CONN_MIN_CONNS:
        return None
    return (busy_bytes - idle_bytes) / conns
