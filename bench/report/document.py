"""The report as blocks: who won at the headline cell first (the ranked chart, the "how sure" line,
the ranking in words), then the run in a few bullets, every chart with what to notice, the C10K
table, problems, every result and the run's metadata. report.md and report.html are both rendered from these
blocks (bench/report/blocks.py), so the two never say different things.

    doc = report(view, charts, focus)   # charts: series.plan(...), drawn
    blocks.to_markdown(doc)             # report.md
"""

from __future__ import annotations

from pathlib import Path

from bench import results
from bench.report import notes
from bench.report.blocks import (
    Block, BulletList, Code, Details, Figure, Heading, Paragraph, Table, anchor, md_escape,
)
from bench.report.fmt import (
    fmt_bytes, fmt_percentile, fmt_ratio, fmt_rps, fmt_share, fmt_size, fmt_small,
    fmt_spread, fmt_us, join, one_line,
)
from bench.report.series import Chart, basis_name
from bench.report.view import (
    View, c10k_cell, c10k_heading, clean, offered, ranking, requests, scale_cells, scale_heading,
)


def interrupted_text(view: View) -> str | None:
    stop = view.run.interrupted
    if not stop:
        return None
    return (f"interrupted: {stop.get('measured', '?')} of {stop.get('planned', '?')} "
            f"measurements ({stop.get('signal', 'stopped')})")


def metadata(view: View) -> Table:
    meta, machine = view.meta, view.meta.get("machine") or {}
    rows = [("run id", f"`{view.run_id}`"), ("date", meta.get("created", "unknown")),
            ("profile", meta.get("profile_description") and
             f"{meta.get('profile')}: {meta['profile_description']}" or meta.get("profile"))]
    if (text := interrupted_text(view)) is not None:
        rows.append(("interrupted", text))
    cores = []
    if machine.get("cores_logical"):
        cores.append(f"{machine['cores_logical']} logical cores")
    if machine.get("cores_physical"):
        cores.append(f"{machine['cores_physical']} physical")
    if machine.get("smt") is not None:
        cores.append("SMT on" if machine["smt"] else "SMT off")
    rows.append(("CPU", ", ".join([machine.get("cpu_model") or "unknown", *cores])))
    if machine.get("memory_bytes"):
        rows.append(("memory", fmt_bytes(machine["memory_bytes"])))
    if machine.get("os") or machine.get("kernel"):
        rows.append(("OS, kernel", " ".join(str(v) for v in (machine.get("os"),
                                                             machine.get("kernel")) if v)))
    py = meta.get("python") or {}
    if py:
        rows.append(("Python", f"{py.get('implementation', '')} {py.get('version', '')}".strip()))
    if (asked := meta.get("interpreters")) and (len(asked) > 1 or not asked[0].get("default")):
        rows.append(("interpreters", "; ".join(interpreter_text(i) for i in asked)))
    if meta.get("packages"):
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in meta["packages"].items())))
    if isinstance(meta.get("reference"), dict):
        ref = meta["reference"]
        rows.append(("reference", f"{ref.get('name')}: " + ("measured in every cell, interleaved"
                                                            if ref.get("available") else
                                                            f"not available: {ref.get('reason')}")))
    if isinstance(meta.get("engine"), dict):
        engine = meta["engine"]
        rows.append(("load engine", f"{engine.get('default')}"
                     + (f" ({engine['reason']})" if engine.get("reason") else "")))
    for key in ("gevent_backend",):
        if meta.get(key):
            rows.append(("gevent backend", meta[key]))
    if isinstance(meta.get("io_uring"), dict):
        uring = meta["io_uring"]
        rows.append(("io_uring", "available" if uring.get("available")
                     else f"not available: {uring.get('reason', '')}"))
    pinning = meta.get("pinning") or {}
    if pinning:
        rows.append(("CPU pinning", pinning.get("note") or
                     f"server {pinning.get('server_cpus')}, client {pinning.get('client_cpus')}"))
    if meta.get("limits"):
        rows.append(("limits", ", ".join(f"{k} {v}" for k, v in meta["limits"].items())))
    if "git_commit" in meta:
        rows.append(("git commit", f"{meta.get('git_commit') or 'unknown'}"
                     f"{' (uncommitted changes)' if meta.get('git_dirty') else ''}"))
    measured = view.measured_servers()
    rows.append(("servers", f"{len(measured)} measured: {', '.join(measured)}"))
    if view.skipped_servers:
        rows.append(("skipped servers", "; ".join(f"{k} ({v})"
                                                 for k, v in view.skipped_servers.items())))
    closed = view.closed_cells()
    opened = [c for c in view.cells if c.is_open]
    text = ", ".join(c.label for c in closed)
    if opened:
        text += f"; open loop: {', '.join(c.label for c in opened)}"
    rows.append(("cells", text))
    if rounds := meta.get("rounds") or meta.get("repeats"):
        timing = f"{rounds} per cell"
        if isinstance(meta.get("headline"), dict) and meta.get("headline_rounds"):
            timing += (f", {meta['headline_rounds']} at the headline cell "
                       f"({results.CellKey.of(meta['headline']).label})")
        if meta.get("rounds_max") and meta.get("budget_s"):
            timing += f", up to {meta['rounds_max']} while an interval is wide"
        if meta.get("warmup_s") is not None and meta.get("measure_s") is not None:
            timing += f"; each {meta['warmup_s']} s warm-up + {meta['measure_s']} s measured"
        rows.append(("rounds", timing))
    if meta.get("budget_s"):
        rows.append(("time budget", f"{meta['budget_s']} s"))
    if meta.get("duration_s"):
        minutes, seconds = divmod(round(meta["duration_s"]), 60)
        rows.append(("run time", f"{minutes} min {seconds} s" if minutes else f"{seconds} s"))
    return Table(["field", "value"], [[k, str(v)] for k, v in rows if v not in (None, "")])


def interpreter_text(i: dict) -> str:
    """One interpreter of meta.json: '3.13.0 (NAME@3.13): cpython, GIL enabled, built
    --enable-shared -O3 with GCC 12.2.0, /path/.venv-3.13/bin/python', or why it was not run."""
    if not i.get("available"):
        return f"{i.get('spec')}: not run: {one_line(i.get('reason') or '', 300)}"
    build = i.get("build") or {}
    flags = " ".join([*(build.get("configure") or []), build.get("opt") or ""]).strip()
    gil = ("GIL disabled at start-up" if not i.get("gil_enabled") else "GIL enabled")
    return (f"{i.get('label')} ({'plain names' if i.get('default') else 'NAME@' + str(i.get('tag'))}"
            f"): {i.get('implementation')}, "
            + ("free-threaded, " if i.get("gil_disabled_build") else "") + f"{gil}"
            + (f", built {flags}" if flags else "")
            + (f" with {build['compiler']}" if build.get("compiler") else "")
            + (", a debug build" if build.get("debug") else "") + f", `{i.get('python')}`")


def p99_text(o: results.CellSummary) -> str:
    """The p99, marked when fewer than ~10 requests lie beyond it."""
    text = fmt_spread(o.p99_us, fmt_us)
    marked = fmt_percentile(99, requests(o))
    return text if marked == "p99" else f"{text} ({marked.split('(')[1]}"


def per_conn_text(o: results.CellSummary, s: results.Stat | None, fmt) -> str:
    """A per-connection figure, or why there is none: blank with the reason where the cell left
    connections unserved (it would divide by connections the server never held)."""
    if (served := o.served_text) is not None:
        return f"— ({served})"
    return fmt_spread(s, fmt)


def mem_text(o: results.CellSummary) -> str:
    """Memory per connection, '< resolution (16 KiB)' where the growth (or a shrink) is below
    what a process tree's memory moves by on its own (results.MEM_RESOLUTION_BYTES), or blank
    with the reason where the cell left connections unserved."""
    s = o.mem_per_conn_bytes
    if (served := o.served_text) is not None:
        return f"— ({served})" if s is not None else "—"
    if s is None:
        return "—"
    resolution = results.MEM_RESOLUTION_BYTES / o.cell.conns
    if s.value < resolution:
        return f"< resolution ({fmt_bytes(resolution)})"
    return fmt_spread(s, fmt_bytes)


def ratio_text(o: results.CellSummary) -> str:
    """× ref with its 95 % interval; the reference's own is 1 by definition, with none."""
    if o.is_reference:
        return "1 (reference)" if o.vs_ref is not None else "—"
    vs = o.vs_ref_stat
    return fmt_spread(vs, fmt_ratio) if vs else "—"


def results_table(view: View) -> Table:
    has_open = any(c.is_open for c in view.cells)
    ratios = view.has_ratios
    head = (["server", "family", "conns", "size"] + (["offered req/s"] if has_open else [])
            + (["× ref (CI)", "tie group", "CPU × ref"] if ratios else [])
            + ["req/s median (CI or range)", "p50", "p99", "server CPU µs/req",
               "ctx switches/req", "mem/conn", "verdict", "rounds"])
    right = {"conns", "offered req/s", "× ref (CI)", "tie group", "CPU × ref",
             "req/s median (CI or range)", "p50", "p99", "server CPU µs/req", "ctx switches/req",
             "mem/conn"}
    groups = {(p.server, cell): p.group + 1 for cell in view.cells
              for p in ranking(view, cell).placed} if ratios else {}
    rows = []
    for server in view.servers:
        if server in view.skipped_servers and all(
                o.status == "skipped" for (s, _), o in view.summaries.items() if s == server):
            rows.append([f"`{server}`", view.families[server], "all", "—"]
                        + ["—"] * (len(head) - 6) + ["**skipped**", "—"])
            continue
        for cell in view.cells:
            o = view.outcome(server, cell)
            if o is None:
                continue
            row = [f"`{server}`", view.families[server], f"{cell.conns:,}",
                   fmt_size(cell.size_bytes)]
            if has_open:
                rate = offered(o).value if cell.is_open and o.measured else cell.rate
                text = fmt_rps(rate) if rate else "—" if cell.is_open else "closed loop"
                if cell.fraction is not None:
                    text += f" ({fmt_share(cell.fraction)} of peak)"
                row.append(text)
            if ratios:
                row += [ratio_text(o), str(groups.get((server, cell), "—")),
                        fmt_spread(o.cpu_vs_ref_stat, fmt_ratio) if o.cpu_vs_ref else "—"]
            row += [fmt_spread(o.rps, fmt_rps),
                    per_conn_text(o, o.stat(lambda m: (m.latency_us or {}).get("p50")), fmt_us),
                    p99_text(o) if o.served_text is None else f"— ({o.served_text})",
                    fmt_spread(o.cpu_us_per_request, fmt_small),
                    fmt_spread(o.ctx_per_request, fmt_small),
                    mem_text(o),
                    "ok" if o.verdict == "ok" else f"**{o.verdict}**", o.rounds_text]
            rows.append(row)
    return Table(head, rows, right)


def sentences(reasons: list[str]) -> list[str]:
    """The distinct sentences of a cell's reasons (its rounds often say the same thing, and a
    reason is sentences joined by '; '), in the order first said."""
    out: list[str] = []
    for reason in reasons:
        for part in reason.split("; "):
            part = one_line(part, 400)
            if part and part not in out:
                out.append(part)
    return out


def problems(view: View) -> list[Block]:
    """A bullet per server and what went wrong (cells that went wrong the same way listed
    together, each sentence said once), with the server's last stderr lines folded away
    beneath."""
    out: list[str | list[Block]] = []
    for server in view.servers:
        if server in view.skipped_servers:
            continue
        groups: dict[tuple, list] = {}
        for cell in view.cells:
            o = view.outcome(server, cell)
            if o is not None and (o.status != "ok" or o.reasons):
                groups.setdefault((o.status, tuple(sentences(o.reasons))), []).append(o)
        for (status, said_once), outs in groups.items():
            why = "; ".join(said_once) or "no reason recorded"
            where = ", ".join(f"{o.cell.label} ({o.rounds_text})" for o in outs)
            said = f"**{server}**, {status} at {where}: {why}."
            tail = next((o.stderr_tail for o in outs if o.stderr_tail), None)
            out.append([Paragraph(said), Details("server stderr (last lines)",
                                                 [Code(tail.rstrip())])] if tail else said)
    for server, reason in view.skipped_servers.items():
        out.append(f"**{server}**: skipped, not run on this machine: {one_line(reason, 400)}.")
    if not out:
        return []
    return [Paragraph("(n/m) after a cell: the rounds that measured something, of those run."),
            BulletList(out)]


def _peak(o: results.CellSummary, key: str) -> float | None:
    values = [v for m in o.measurements if isinstance(v := m.extra.get(key), int | float)]
    return max(values) if values else None


def c10k_section(view: View, cell: results.CellKey) -> list[Block]:
    """Per server at the largest cell: whether it held every connection, and what each cost."""
    conns = f"{cell.conns:,}"
    intro = (f"Dan Kegel's C10K problem on this machine: every server with {conns} clients "
           f"connected at once ({cell.label}, closed loop, every echoed byte checked). **held** "
           f"counts the connections served to the end (not refused, reset or left without an "
           f"echo); **memory / conn** is the growth of the server's process tree "
           f"({basis_name(view.mem_basis())}) over its idle size, divided by the connections; "
           f"**CPU / req** is the server's own CPU time per round trip; processes, threads and "
             f"fds are the most seen during the window.")
    if cell.conns < 10_000:
        intro += " The full profile (`make bench-full`) goes to 10,000 connections."
    outs = sorted((o for s in view.servers if (o := view.outcome(s, cell))),
                  key=lambda o: (results.STATUS_ORDER.index(o.verdict)
                                 if o.verdict in results.STATUS_ORDER else 9,
                                 -(o.rps.value if o.rps else 0)))
    rows = []
    for o in outs:
        held = o.stat("held_conns")
        tree = [_peak(o, key) for key in ("server_processes", "server_threads", "server_fds")]
        why = "; ".join(one_line(r, 240) for r in o.reasons) if o.status != "ok" or o.reasons \
            else ""
        if o.window_s:
            why += (" " if why else "") + f"(window {o.window_s:g} s)"
        rows.append([f"`{o.server}`", view.families[o.server],
                     "ok" if o.verdict == "ok" else f"**{o.verdict}**",
                     fmt_rps(held.value) if held else "—", fmt_spread(o.rps, fmt_rps),
                     p99_text(o) if o.served_text is None else "—", mem_text(o),
                     fmt_spread(o.cpu_us_per_request, lambda v: f"{fmt_small(v)} µs"),
                     " · ".join(f"{v:,.0f}" if v is not None else "—" for v in tree)
                     if any(v is not None for v in tree) else "—", why or "—"])
    return [Paragraph(intro),
            Table(["server", "family", "verdict", f"held (of {conns})", "req/s", "p99",
                   "memory / conn", "CPU / req", "processes · threads · fds", "why not"],
                  rows, {f"held (of {conns})", "req/s", "p99", "memory / conn", "CPU / req",
                         "processes · threads · fds"}),
            Paragraph(" ".join(["**What to notice.**", *c10k_notes(view, cell, outs)]))]


def c10k_notes(view: View, cell: results.CellKey, outs: list) -> list[str]:
    conns = f"{cell.conns:,}"
    held_all = [o.server for o in outs if o.status == "ok"]
    others = [o.server for o in outs if o.status in ("degraded", "failed")]
    out = [f"{len(held_all)} of {len(outs)} servers held all {conns} connections: "
           f"{join(held_all)}." if held_all else f"No server held all {conns} connections."]
    if others:
        out.append(f"{join(others)} did not; the last column says why, in the bench's words and "
                   f"the server's own log. None of them is credited with a figure here.")
    measured = [o for o in outs if clean(o)]  # costs compare only at the full count
    for key, what, fmt in (("mem_per_conn_bytes", "Memory per connection", fmt_bytes),
                           ("server_cpu_us_per_request", "Server CPU per request",
                            lambda v: f"{fmt_small(v)} µs")):
        values = {o.server: s.value for o in measured if (s := o.stat(key)) and s.value > 0}
        if len(values) >= 2:
            low, high = min(values, key=values.get), max(values, key=values.get)
            out.append(f"{what} among the clean results went from {fmt(values[low])} ({low}) to "
                       f"{fmt(values[high])} ({high}), {fmt_ratio(values[high] / values[low])}.")
    slow = sorted(((s.value, o.server) for o in outs if (s := o.stat("settle_s"))
                   and s.value >= 1.0), reverse=True)
    if slow:
        out.append(f"Once the {conns} clients had left, some servers needed a while to go idle "
                   f"again (tearing down a thread or process per connection): "
                   f"{join([f'{server} {value:.1f} s' for value, server in slow])}.")
    return out


def _held(o: results.CellSummary | None) -> bool:
    """Every connection of the cell served to the end, in every repeat."""
    if o is None or o.status != "ok":
        return False
    held = o.stat("held_conns")
    return bool(held and held.low >= o.cell.conns)


def _accept_rate(m: results.Measurement) -> float | None:
    connect_s = m.get("connect_s")
    established = m.conns_established if m.conns_established is not None else m.conns
    return established / connect_s if connect_s else None


def scale_held(view: View, cells: list[results.CellKey]) -> dict[str, results.CellKey | None]:
    """Per server of the sweep: the largest cell it held with an echo on every connection."""
    out = {}
    for server in view.servers:
        outs = [view.outcome(server, c) for c in cells]
        if any(outs):
            held = [c for c, o in zip(cells, outs, strict=True) if _held(o)]
            out[server] = held[-1] if held else None
    return out


def scale_groups(view: View, cells: list[results.CellKey]) -> list[tuple[int, list[str]]]:
    """(connections, the servers whose largest held count it is), most first; 0: none held."""
    groups: dict[int, list[str]] = {}
    for server, cell in scale_held(view, cells).items():
        groups.setdefault(cell.conns if cell else 0, []).append(server)
    return sorted(groups.items(), reverse=True)


def scale_section(view: View, cells: list[results.CellKey]) -> list[Block]:
    """Past C10K (`make bench-c100k`): per server, the most connections it held with echo on all,
    what each cost there, and what happened at the next count."""
    counts = ", ".join(f"{c.conns:,}" for c in cells)
    rate = f"{cells[0].rate:,.0f}"
    intro = (f"Each server was offered {counts} connections ({fmt_bytes(cells[0].size_bytes)} "
           f"messages), most of them idle, as real C10K traffic is: {rate} requests/s in total "
           f"spread over all of them in open loop (latency from the intended send time), every "
           f"echoed byte checked. **largest held**: the most connections it served to the end, "
           f"each one echoed; at that count, **memory / conn** (the growth of the server's process "
           f"tree over its idle size, {basis_name(view.mem_basis())}), **accepted / s** (how fast "
           f"the connection ramp was accepted), **p99** at {rate} req/s and the most **fds** the "
           f"server had open. **beyond it**: what happened at the next count; the notes under "
             f"the table give each reason in full.")
    held = scale_held(view, cells)
    reasons: dict[str, int] = {}
    rows = []
    for server, cell in held.items():
        o = view.outcome(server, cell) if cell else None
        later = [c for c in cells if cell is None or c.conns > cell.conns]
        beyond = "held every count offered"
        if later:
            nxt = view.outcome(server, later[0])
            why = "; ".join(one_line(r, 400) for r in nxt.reasons) if nxt else ""
            mark = f" [{reasons.setdefault(why, len(reasons) + 1)}]" if why else ""
            beyond = f"{later[0].conns:,}: {nxt.verdict if nxt else 'not measured'}{mark}"
        accept = o.stat(_accept_rate) if o else None
        fds = _peak(o, "server_fds") if o else None
        rows.append([f"`{server}`", view.families.get(server, ""),
                     f"{cell.conns:,}" if cell else "none",
                     mem_text(o) if o else "—",
                     fmt_rps(accept.value) if accept else "—",
                     p99_text(o) if o else "—",
                     f"{fds:,.0f}" if fds is not None else "—", beyond])
    rows.sort(key=lambda r: -int(r[2].replace(",", "")) if r[2] != "none" else 1)
    out: list[Block] = [
        Paragraph(intro),
        Table(["server", "family", "largest held", "memory / conn", "accepted / s", "p99", "fds",
               "beyond it"], rows, {"largest held", "memory / conn", "accepted / s", "p99", "fds"})]
    if reasons:
        out.append(BulletList([f"[{n}] {md_escape(why)}" for why, n in reasons.items()]))
    notes_ = [" ".join(f"{conns:,}: {join(names)}." if conns else f"None held: {join(names)}."
                       for conns, names in scale_groups(view, cells))]
    for at in reversed(cells):  # the largest count two servers or more held
        values = {s: st.value for s in held if _held(o := view.outcome(s, at))
                  and (st := o.mem_per_conn_bytes) and st.value > 0}
        if len(values) >= 2:
            low, high = min(values, key=values.get), max(values, key=values.get)
            notes_.append(f"At {at.conns:,} connections, held by {len(values)} servers, memory per "
                          f"connection went from {fmt_bytes(values[low])} ({low}) to "
                          f"{fmt_bytes(values[high])} ({high}), {fmt_ratio(values[high] / values[low])}.")
            break
    rates = [st.value for server, cell in held.items() if cell
             and (st := view.outcome(server, cell).stat(_accept_rate))]
    if len(rates) >= 2 and max(rates) <= 1.15 * min(rates):
        notes_.append(f"Every server accepted its connections at {fmt_rps(min(rates))} to "
                      f"{fmt_rps(max(rates))} per second: the ramp's own pace (the generator "
                      f"opens them in batches with a pause between, so that no listen queue "
                      f"overflows), not a limit of any server.")
    if any("ulimit -Hn" in why for why in reasons):
        notes_.append("A count skipped for the open-files limit is this machine's limit, not the "
                      "model's: the note says how to raise it.")
    out.append(Paragraph(" ".join(["**What to notice.** Largest count held:", *notes_])))
    return out


def headline(view: View, focus: results.CellKey | None) -> BulletList:
    """The run in a few bullets: noise, how the headline cell was chosen, convergence,
    verdicts, and what the largest cells held."""
    lines: list[str | list[Block]] = []
    if (text := interrupted_text(view)) is not None:
        lines.append(f"**This run was {text}**; the report shows what was measured.")
    lines += notes.noise(view)
    if (said := notes.interpreters_line(view)) is not None:
        lines.append(said)
    if focus is not None:
        named = isinstance(view.meta.get("headline"), dict)
        why = ("named by the run's profile before it ran, it got the most rounds" if named else
               "the run named none, so the cell with the most rounds")
        lines.append(f"**The headline cell** is {focus.label} ({why}). Noisy, client-bound and "
                     f"degraded results are never ranked; a server whose interval holds 1 ties "
                     f"the C reference, the ceiling of one core, and is never a win over it.")
    if (text := notes.convergence(view)) is not None:
        lines.append(f"**Convergence**: {text}")
    counts = dict.fromkeys(results.STATUS_ORDER, 0)
    for o in view.summaries.values():
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    lines.append("**Verdicts**: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
                 " (server × cell results; see [the status matrix](#status-of-every-server-and-cell)).")
    if (big := c10k_cell(view)) is not None:
        outs = [o for s in view.servers if (o := view.outcome(s, big))]
        held = [o.server for o in outs if o.status == "ok"]
        lines.append(f"**{big.conns:,} connections**: {len(held)} of {len(outs)} servers "
                     f"held them all (see [{c10k_heading(big)}](#{anchor(c10k_heading(big))})).")
    if cells := scale_cells(view):
        groups = "; ".join(f"{conns:,}: {join(names)}" if conns else f"none: {join(names)}"
                           for conns, names in scale_groups(view, cells))
        lines.append(f"**Connections held** (the most with an echo on every one, of "
                     f"{', '.join(f'{c.conns:,}' for c in cells)} at {cells[0].rate:,.0f} req/s): "
                     f"{groups} (see [{scale_heading(cells)}](#{anchor(scale_heading(cells))})).")
    return BulletList(lines)


def who_won(view: View, chart: Chart | None) -> list[Block]:
    """What the report opens with: the ranked chart of the headline cell (PNG, and its SVG), the
    "how sure" line, the ranking in words."""
    if chart is None:
        return [Paragraph("No ranking: no closed-loop cell measured a clean result.")]
    r = chart.data.ranking
    ref = (f"req/s as a multiple of the C reference's ({results.REFERENCE}), measured in the "
           f"same windows: the geometric mean over the rounds, with its 95 % interval "
           f"(Student's t on the logarithms of the rounds' ratios)" if r.by_ratio else
           "req/s: the geometric mean over the rounds, with its 95 % interval (Student's t on "
           "the logarithms)")
    out: list[Block] = [Figure(chart.heading, f"charts/{chart.file}", chart),
                        Paragraph(f"**{chart.data.confidence}**"),
                        Paragraph(f"**{chart.heading}** ({ref}; ≈: ties the best of its group, "
                                  f"their intervals overlap; >: a new group, beyond the "
                                  f"previous group's best): {chart.notes[0]}.",
                                  f"The chart as a picture to scale: "
                                  f"[charts/{Path(chart.file).with_suffix('.svg')}]"
                                  f"(charts/{Path(chart.file).with_suffix('.svg')}).")]
    return out


def display_dir(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def report(view: View, charts: list[Chart], focus: results.CellKey | None) -> list[Block]:
    """The whole report, as blocks, in the order report.md and report.html show it."""
    first = next((c for c in charts if c.key == "ranking"), None)
    charts = [c for c in charts if c.key != "ranking"]
    spread = ("× ref is the geometric mean of the rounds' ratios with its 95 % interval "
              "(Student's t on their logarithms); absolute figures are medians over the rounds "
              "with the 95 % CI of the median (from 6 rounds) or their range"
              if view.has_ratios else "figures are medians over the rounds with the 95 % CI of "
                                      "the median (from 6 rounds) or their range")
    intro = (f"Every echo server of the lab measured on {view.machine_text} on {view.date}: "
             f"{spread}. Redraw this report from the saved results with "
             f"`make report RUN={display_dir(view.dir)}`. ")
    doc: list[Block] = [
        Heading(1, f"Bench report: run `{view.run_id}`"),
        *who_won(view, first),
        Paragraph(intro + "[report.html](report.html) is the same report with interactive "
                          "charts, one file that works offline.",
                  in_html=intro + "This page is the same report with interactive charts, one "
                                  "file that works offline."),
        headline(view, focus)]
    big = c10k_cell(view)
    sweep = scale_cells(view)
    contents = []
    for c in charts:
        contents.append(f"[{c.heading}](#{anchor(c.heading)})")
        if c.key == "status" and big is not None:
            contents.append(f"[{c10k_heading(big)}](#{anchor(c10k_heading(big))})")
        if c.key == "status" and sweep:
            contents.append(f"[{scale_heading(sweep)}](#{anchor(scale_heading(sweep))})")
    contents += ["[Client-bound cells](#client-bound-cells)", "[Problems](#problems)",
                 "[All results](#all-results)", "[The run](#the-run)"]
    doc += [Heading(2, "Contents"), BulletList(contents)]
    for chart in charts:
        doc.append(Heading(2, chart.heading))
        if chart.file is None:
            doc.append(Paragraph(f"No chart: {chart.skipped_because}"))
            continue
        doc.append(Figure(chart.heading, f"charts/{chart.file}", chart))
        if chart.notes:
            doc.append(Paragraph("**What to notice.** " + " ".join(chart.notes)))
        if chart.key == "status" and big is not None:
            doc += [Heading(2, c10k_heading(big)), *c10k_section(view, big)]
        if chart.key == "status" and sweep:
            doc += [Heading(2, scale_heading(sweep)), *scale_section(view, sweep)]
    doc += [Heading(2, "Client-bound cells"),
            Paragraph(*(notes.client_bound(view) or ["None: in every cell the server, not the "
                                                     "load generator, was the saturated side."])),
            Heading(2, "Problems"),
            *(problems(view) or [Paragraph("None: every cell measured cleanly.")]),
            Heading(2, "All results"),
            Paragraph("One row per server and cell. **× ref**: the geometric mean of the rounds' "
                      "ratios to the reference, with its 95 % interval (Student's t on their "
                      "logarithms); **tie group**: the server's group at that cell by the one "
                      "rule (it ties the best of its group when their intervals overlap). Other "
                      "figures: medians over the rounds, with the 95 % CI of the median (CI, "
                      "from 6 rounds) or their range. "
                      "**verdict** is ok, noisy, client-bound, degraded, failed or skipped; "
                      "**rounds** counts the rounds that measured something, of those run "
                      "(a noisy window is left out where the clean ones are most). "
                      "Latency is the round trip, from send (closed loop) or from the intended "
                      "send time (open loop); a p99 resting on fewer than "
                      f"{results.TAIL_MIN_SAMPLES} requests says how many."),
            results_table(view),
            Heading(2, "The run"),
            metadata(view)]
    return doc
