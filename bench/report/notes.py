"""What to notice: the sentences under each chart and the headline, computed from the run.

Three rules hold in every sentence here:
- only a clean result (view.clean: not noisy, client-bound or degraded) is credited as a leader
  or ranked; the others are named as such beside the ranking;
- who leads and who ties comes from the one ranking (results.rank, through view.ranking): on
  vs_ref, a server tying the best of its group when their 95 % intervals overlap; a sentence
  never orders two servers that ranking ties;
- a ratio to the reference (vs_ref) leads where the run has one, the absolute figure beside it,
  never ranking.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from bench import results
from bench.report.fmt import (
    fmt_bytes, fmt_pct, fmt_percentile, fmt_ratio, fmt_rps, fmt_share, fmt_size, fmt_small,
    fmt_us, how_much_more, join, one_line, possessive,
)
from bench.report.view import View, clean, offered, ranking, requests

# Open loop: a server "keeps up" while it completes at least this share of the offered requests, and
# its latency has "blown up" once p99 is this many times its p99 at the lowest offered rate.
KEEPS_UP_FRACTION = 0.95
BLOWUP_FACTOR = 10.0
NOISY_SPREAD = 0.2  # a spread wider than this share of the median is worth a sentence


def not_clean_word(o: results.CellSummary) -> str:
    return {"noisy": "noisy window", "client-bound": "client-bound",
            "degraded": "degraded"}.get(o.verdict, o.verdict)


def figure(view: View, o: results.CellSummary) -> str:
    """'0.82× ref (61,000 req/s)' where the run has ratios, else '61,000 req/s'."""
    if view.has_ratios and o.vs_ref is not None and not o.is_reference:
        return f"{fmt_ratio(o.vs_ref)} ref ({fmt_rps(o.rps.value)} req/s)"
    return f"{fmt_rps(o.rps.value)} req/s"


def interval_text(p: results.Placed, by_ratio: bool) -> str:
    """'0.81× (0.76–0.86)': a ranked figure with its 95 % interval; '1× (reference)'."""
    show = fmt_ratio if by_ratio else fmt_rps
    if p.summary.is_reference and by_ratio:
        return "1× (reference)"
    if p.ci is None:
        return f"{show(p.value)} (1 round: no interval)"
    low, high = show(p.ci[0]), show(p.ci[1])
    if by_ratio:
        low, high = low.rstrip("×"), high.rstrip("×")
    return f"{show(p.value)} ({low}–{high})"


def ranking_text(view: View, r: results.Ranking) -> str | None:
    """The ranking in words, group by group: 'c-epoll 1× (reference) ≈ a 0.93× (0.88–0.98) >
    b 0.8× (…) ≈ c …; not ranked: d 0.95× ref (…) (client-bound)'. ≈ joins a server to its
    group's leader (their intervals overlap), > starts a new group."""
    if not r.placed and not r.apart:
        return None
    parts = []
    for g, group in enumerate(r.groups):
        text = " ≈ ".join(f"{p.server} {interval_text(p, r.by_ratio)}" for p in group)
        parts.append(text if g == 0 else f"> {text}")
    out = " ".join(parts) if parts else "no clean result to rank"
    if r.apart:
        out += "; not ranked: " + ", ".join(f"{o.server} {figure(view, o)} ({not_clean_word(o)})"
                                           for o in r.apart)
    return out


def ranking_lines(view: View, r: results.Ranking) -> list[str]:
    """The ranking for a terminal: a heading, a line per tie group ('1. a 0.93× (0.88–0.98) ≈
    b …'), one for the results not ranked."""
    what = (f"req/s as a multiple of {results.REFERENCE}'s, 95 % interval" if r.by_ratio
            else "req/s, 95 % interval")
    out = [f"who won at {r.cell.label} ({what}; ≈: ties the best of its group):"]
    for g, group in enumerate(r.groups, 1):
        out.append(f"  {g}. " + " ≈ ".join(f"{p.server} {interval_text(p, r.by_ratio)}"
                                          for p in group))
    if not r.groups:
        out.append("  no clean result to rank")
    if r.apart:
        out.append("  not ranked: " + ", ".join(f"{o.server} ({not_clean_word(o)})"
                                               for o in r.apart))
    return out


def confidence(r: results.Ranking) -> str:
    """The one "how sure" line: who stands apart beyond noise, who ties, what is not ranked."""
    servers = len(r.placed)
    if servers == 0:
        return f"confidence: nothing to rank at {r.cell.label}: no clean result."
    if not r.has_intervals or all(p.ci is None for p in r.servers):
        return ("confidence: none: one round gives no interval, so no two servers can be told "
                "apart (2 rounds or more give one).")
    parts = []
    top = r.separated_top
    if top:
        names = join([p.server for p in r.placed[:top]])
        parts.append(f"the top {top} ({names}) {'is' if top == 1 else 'are'} separated beyond "
                     f"noise" if top <= 3 else f"the top {top} are separated beyond noise")
    else:
        parts.append("no server at the top stands apart beyond noise")
    ties = r.ties
    if ties:
        tied = sum(len(g) for g in ties)
        parts.append(f"{tied} servers tie in {len(ties)} group{'s' if len(ties) != 1 else ''}")
    alone = sum(1 for g in r.groups if len(g) == 1) - top
    if alone > 0:
        parts.append(f"{alone} more stand{'s' if alone == 1 else ''} alone")
    if r.apart:
        kinds: dict[str, int] = {}
        for o in r.apart:
            kinds[not_clean_word(o)] = kinds.get(not_clean_word(o), 0) + 1
        parts.append(f"{len(r.apart)} not ranked ("
                     + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
    return "confidence: " + "; ".join(parts) + "."


def status(view: View) -> list[str]:
    counts = dict.fromkeys(results.STATUS_ORDER, 0)
    for o in view.summaries.values():
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    total = sum(counts.values())
    out = [f"Of {total} server × cell results, "
           f"{', '.join(f'{n} {s}' for s, n in counts.items() if n)}."]
    failed: dict[str, list] = {}
    for (server, cell), o in view.summaries.items():
        if o.status == "failed":
            failed.setdefault(server, []).append(cell)
    for server, cells in failed.items():
        cells.sort(key=lambda c: c.sort_key)
        first = view.outcome(server, cells[0])
        reason = first.reasons[0] if first and first.reasons else "no reason recorded"
        where = ", ".join(c.label for c in cells[:3]) + (" and more" if len(cells) > 3 else "")
        out.append(f"**{server}** failed at {where}: {one_line(reason)}.")
    degraded = sorted({s for (s, _), o in view.summaries.items() if o.status == "degraded"},
                      key=view.servers.index)
    if degraded:
        out.append(f"Degraded (measured, but with errors or warnings): {', '.join(degraded)}; "
                   f"the reasons are listed under [Problems](#problems).")
    for server, reason in view.skipped_servers.items():
        out.append(f"**{server}** was skipped on this machine: {one_line(reason)}.")
    return out


def throughput(view: View, size: int) -> list[str]:
    cells = sorted(view.closed_cells(size), key=lambda c: c.conns)
    out = []
    top = next((c for c in reversed(cells) if len(ranking(view, c).servers) >= 2), None)
    if top is not None:
        r = ranking(view, top)
        lead, last = r.placed[0], r.placed[-1]
        tied = [p.server for p in r.groups[0][1:]]
        what = "× ref" if r.by_ratio else "req/s"
        sentence = (f"At {top.label}, by {what}, **{lead.server}** led the clean results with "
                    f"{interval_text(lead, r.by_ratio)}; the last was {last.server}, "
                    f"{interval_text(last, r.by_ratio)}")
        sentence += (f"; tied with the leader (their intervals overlap): {join(tied)}."
                     if tied else ".")
        if r.apart:
            sentence += (f" Not credited: {join([f'{o.server} ({not_clean_word(o)})' for o in r.apart])}"
                         f", whose figures are a floor or were disturbed.")
        out.append(sentence)
    first = cells[0] if cells else None
    if first is not None and top is not None and top != first:
        growth = {s: b.rps.value / a.rps.value for s in view.servers
                  if clean(a := view.outcome(s, first)) and clean(b := view.outcome(s, top))
                  and s != view.reference}
        if len(growth) >= 2:
            best, worst = max(growth, key=growth.get), min(growth, key=growth.get)
            verb = "fell to" if growth[worst] < 1 else "grew only"
            out.append(f"From {first.conns:,} to {top.conns:,} connections, {best} gained the most "
                       f"({fmt_ratio(growth[best])} its single-connection rate) and {worst} "
                       f"{verb} {fmt_ratio(growth[worst])}.")
    failed = [(s, c) for c in cells for s in view.servers
              if (o := view.outcome(s, c)) and o.status == "failed"]
    if failed:
        where = "; ".join(f"{s} at {c.conns:,} connections" for s, c in failed[:4])
        out.append(f"Lines that stop at a cross failed there ({where}): see the status matrix.")
    noisy = [(o.rps.relative_width, s, c) for c in cells for s in view.servers
             if (o := view.outcome(s, c)) and o.rps and o.rps.n > 1]
    if noisy and (widest := max(noisy))[0] > NOISY_SPREAD:
        width, server, cell = widest
        out.append(f"The widest range between rounds was {server} at {cell.conns:,} "
                   f"connections ({width:.0%} of its median req/s).")
    return out


def latency(view: View, size: int) -> list[str]:
    cells = sorted(view.closed_cells(size), key=lambda c: c.conns)
    out = []

    def p99(server, cell) -> float | None:
        o = view.outcome(server, cell)
        s = o.p99_us if o is not None and o.measured else None
        return s.value if s else None

    rises = []
    for server in view.servers:
        values = [(c, v) for c in cells if (v := p99(server, c)) and clean(view.outcome(server, c))]
        if len(values) >= 2 and values[0][1] > 0:
            (c0, v0), (c1, v1) = values[0], values[-1]
            rises.append((v1 / v0, server, c0, v0, c1, v1))
    if rises:
        ratio, server, c0, v0, c1, v1 = max(rises)
        out.append(f"The tail grew most for **{server}**: p99 rose from {fmt_us(v0)} at "
                   f"{c0.conns:,} connection{'s' if c0.conns != 1 else ''} to {fmt_us(v1)} at "
                   f"{c1.conns:,} ({fmt_ratio(ratio)}).")
    top = next((c for c in reversed(cells)
                if sum(1 for s in view.servers if p99(s, c) and clean(view.outcome(s, c))) >= 2),
               None)
    if top is not None:
        p99s = {s: v for s in view.servers if (v := p99(s, top)) and clean(view.outcome(s, top))}
        low, high = min(p99s, key=p99s.get), max(p99s, key=p99s.get)
        out.append(f"At {top.conns:,} connections the lowest clean p99 was {possessive(low)} "
                   f"{fmt_us(p99s[low])}, the highest {possessive(high)} {fmt_us(p99s[high])}.")
        fastest = max((o for s in view.servers if clean(o := view.outcome(s, top))),
                      key=lambda o: o.rps.value, default=None)
        if fastest is not None and top.conns > 1:
            rps = fastest.rps.value
            mean = fastest.stat(lambda m: (m.latency_us or {}).get("mean"))
            measured = f" (measured mean: {fmt_us(mean.value)})" if mean else ""
            out.append(f"In a closed loop latency follows from throughput (Little's law: "
                       f"latency ≈ connections ÷ req/s): for {fastest.server}, {top.conns:,} ÷ "
                       f"{fmt_rps(rps)} req/s ≈ {fmt_us(top.conns / rps * 1e6)}{measured}, so "
                       f"once throughput stops growing, every extra connection adds latency.")
    return out


def sizes(view: View, cells: list[results.CellKey]) -> list[str]:
    small, large = cells[0], cells[-1]
    mib = float(1 << 20)
    out = []
    r = ranking(view, large)
    if r.servers:
        lead = r.groups[0]
        names = [p.server for p in lead]
        moved = [view.outcome(p.server, large).stat("bytes_per_s") for p in lead]
        moved = [m.value / mib for m in moved if m]
        what = "× ref" if r.by_ratio else "req/s"
        out.append(f"At {large.label}, by {what}, the leading group was {join(names)} "
                   + (f"({fmt_rps(min(moved))} to {fmt_rps(max(moved))} MiB/s)" if
                      len(moved) > 1 and fmt_rps(min(moved)) != fmt_rps(max(moved)) else
                      f"({fmt_rps(moved[0])} MiB/s)" if moved else "")
                   + (": their intervals overlap, so this run does not order them."
                      if len(names) > 1 else "."))
    bw = {s: (a, b) for s in view.servers if s != view.reference
          and clean(a := view.outcome(s, large)) and clean(b := view.outcome(s, small))}
    drops = {s: a.rps.value / b.rps.value for s, (a, b) in bw.items()}
    if len(drops) >= 2 and max(drops.values()) < 0.5:
        least, most = max(drops, key=drops.get), min(drops, key=drops.get)
        out.append(f"Going from {fmt_size(small.size_bytes)} to {fmt_size(large.size_bytes)} "
                   f"messages, round trips per second fell least for {least} (to "
                   f"{drops[least]:.0%}) and most for {most} (to {drops[most]:.0%}): with big "
                   f"messages, moving the bytes outweighs the per-request overhead.")
    return out


def spectrum(view: View, cell: results.CellKey, curves: dict, *, asked: bool) -> list[str]:
    out = []
    tails = {}
    fewest = min((n for _, o in curves.values() if (n := requests(o))), default=None)
    top = fmt_percentile(99.99, fewest)
    for server, (merged, o) in curves.items():
        p50 = merged.get_value_at_percentile(50)
        if p50 and clean(o):
            tails[server] = (merged.get_value_at_percentile(99.99) / p50, p50,
                             merged.get_value_at_percentile(99.99))
    if len(tails) >= 2:
        wide, narrow = max(tails, key=lambda s: tails[s][0]), min(tails, key=lambda s: tails[s][0])
        out.append(f"The tail was widest for **{wide}**: its {top} was "
                   f"{fmt_ratio(tails[wide][0])} its median ({fmt_us(tails[wide][2])} vs "
                   f"{fmt_us(tails[wide][1])}); narrowest for {narrow} "
                   f"({fmt_ratio(tails[narrow][0])}).")
    worst = {s: merged.get_max_value() for s, (merged, _) in curves.items()}
    if worst:
        server = max(worst, key=worst.get)
        out.append(f"The slowest single request took {fmt_us(worst[server])} ({server}). A flat "
                   f"line means every request is served alike; a line that turns up at the right "
                   f"means a few requests waited far longer than the rest.")
    if not asked:
        out.append(f"It is drawn at {cell.label}, the headline cell (the best-measured one); "
                   f"`python -m bench report RUN_DIR --cell CONNSxBYTES` draws another.")
    return out


@dataclass
class LoadCurve:
    """One server's open-loop series, read: where (if anywhere) it stopped keeping up."""

    who: str
    outcomes: list[results.CellSummary]  # by offered load, lowest first
    knee: int | None  # index of the first load it did not keep up with; None: kept up with all

    @staticmethod
    def offered(o) -> float:
        return offered(o).value

    @staticmethod
    def p99(o) -> float:
        return o.p99_us.value

    @classmethod
    def read(cls, who: str, outcomes: list) -> LoadCurve:
        base = cls.p99(outcomes[0])
        for index, o in enumerate(outcomes):
            behind = o.rps.value < KEEPS_UP_FRACTION * cls.offered(o)
            if behind or (base and cls.p99(o) > BLOWUP_FACTOR * base):
                return cls(who, outcomes, index)
        return cls(who, outcomes, None)

    def at(self, o) -> str:
        share = f" ({fmt_share(o.cell.fraction)} of its peak)" if o.cell.fraction is not None else ""
        return f"{fmt_rps(self.offered(o))} req/s{share}"

    def sentence(self) -> str:
        o = self.outcomes[self.knee]
        behind = o.rps.value < KEEPS_UP_FRACTION * self.offered(o)
        done = f"{'completed only' if behind else 'still completed'} {fmt_rps(o.rps.value)}"
        jump = f"its p99 was {fmt_us(self.p99(o))}"
        if self.knee == 0:
            return (f"**{self.who}** was already saturated at the lowest offered load, "
                    f"{self.at(o)}: {jump} and it {done} req/s.")
        before = self.outcomes[self.knee - 1]
        return (f"**{self.who}** kept up to {self.at(before)} offered (p99 "
                f"{fmt_us(self.p99(before))}); at {self.at(o)} {jump} and it {done} req/s.")


def openloop(curves: list[LoadCurve]) -> list[str]:
    """The earliest breakdowns in detail, then one sentence for the rest that broke and one for
    those that held."""
    broke = sorted((c for c in curves if c.knee is not None),
                   key=lambda c: LoadCurve.offered(c.outcomes[c.knee]))
    held = [c for c in curves if c.knee is None]
    out = [c.sentence() for c in broke[:3]]
    if len(broke) > 3:
        out.append(f"{join([c.who for c in broke[3:]])} also stopped keeping up, at higher loads "
                   f"(see the chart).")
    if held:
        top = max(LoadCurve.offered(c.outcomes[-1]) for c in held)
        worst = max(LoadCurve.p99(o) for c in held for o in c.outcomes)
        verb = "kept" if len(held) == 1 else "all kept"
        out.append(f"{join([f'**{c.who}**' for c in held])} {verb} up with every offered load, "
                   f"up to {fmt_rps(top)} req/s, with p99 at most {fmt_us(worst)}.")
    if broke:
        out.append("Past saturation requests queue, and latency grows with the queue: the p99 a "
                   "closed-loop test reports at the same throughput hides this.")
    return out


def cpu(view: View, cell: results.CellKey) -> list[str]:
    out = []
    have = {s: o for s in view.servers if clean(o := view.outcome(s, cell))
            and o.cpu_us_per_request}
    if len(have) >= 2:
        low = min(have, key=lambda s: have[s].cpu_us_per_request.value)
        high = max(have, key=lambda s: have[s].cpu_us_per_request.value)
        lo, hi = have[low].cpu_us_per_request.value, have[high].cpu_us_per_request.value
        ratio = (f" ({fmt_ratio(have[low].cpu_vs_ref)} the reference's)"
                 if view.has_ratios and have[low].cpu_vs_ref and low != view.reference else "")
        out.append(f"At {cell.label}, **{low}** spent the least server CPU per request "
                   f"({fmt_small(lo)} µs{ratio}), {high} the most ({fmt_small(hi)} µs, "
                   f"{how_much_more(hi, lo)}).")
    switches = {s: st.value for s in view.servers if (o := view.outcome(s, cell))
                and (st := o.ctx_per_request)}
    if len(switches) >= 2:
        low, high = min(switches, key=switches.get), max(switches, key=switches.get)
        if fmt_small(switches[low]) == fmt_small(switches[high]):
            sentence = (f"Every server switched context about {times(switches[low])} per "
                        f"request.")
        else:
            sentence = (f"{high} switched context {times(switches[high])} per request, "
                        f"{low} {fmt_small(switches[low])}.")
        if switches[low] < 1:
            sentence += (" Fewer than one switch per request means one wakeup served several "
                         "requests: the thread found more work ready each time it ran.")
        out.append(sentence)
    return out


def times(value: float) -> str:
    """'1 time', '0.5 times', '3 times'."""
    return f"{fmt_small(value)} time{'' if fmt_small(value) == '1' else 's'}"


def memory(view: View, basis: str, cells: list, points: dict) -> list[str]:
    out = []
    big = cells[-1]
    have = {s: points[(s, big)].value for s in view.servers
            if (s, big) in points and points[(s, big)].value > 0 and clean(view.outcome(s, big))}
    if len(have) >= 2:
        low, high = min(have, key=have.get), max(have, key=have.get)
        out.append(f"At {big.label}, each connection cost **{high}** ({view.families[high]}) "
                   f"{fmt_bytes(have[high])} of {basis}, {fmt_ratio(have[high] / have[low])} "
                   f"what it cost {low} ({view.families[low]}): {fmt_bytes(have[low])}.")
    zero = [s for s in view.servers if (s, big) in points and points[(s, big)].value <= 0]
    if zero:
        out.append(f"At {big.label}, {', '.join(zero)} grew by nothing measurable per "
                   f"connection: "
                   f"memory is read in whole pages, so a small cost rounds to zero, and a "
                   f"connection that only waits in the kernel (say, in the listen queue) costs "
                   f"the process nothing.")
    return out


def client_bound(view: View) -> list[str]:
    bound = sorted((o for o in view.summaries.values() if o.client_bound),
                   key=lambda o: (view.servers.index(o.server), o.cell.sort_key))
    if not bound:
        return []
    listing = "; ".join(f"{o.server} at {o.cell.label}" for o in bound[:8])
    more = f" and {len(bound) - 8} more" if len(bound) > 8 else ""
    return [f"{len(bound)} cell{'s were' if len(bound) != 1 else ' was'} client-bound: {listing}"
            f"{more}. There the load generator, not the server, limited throughput (its CPU was "
            f"saturated), so the req/s is a lower bound for the server: compare server CPU µs per "
            f"request instead, which is fair either way."]


def noise(view: View) -> list[str]:
    """The machine's noise over the run (meta.json's summary), and the busy-at-start warning."""
    meta_noise = view.meta.get("noise") or {}
    out = []
    busy = meta_noise.get("busy_at_start")
    if busy and busy.get("top") and busy.get("busy", True):  # "busy": false lists the top too
        top = ", ".join(f"{name} ({pct:.0f} % CPU)" for name, pct in busy["top"][:5])
        out.append(f"**The machine was busy when the run started**: {top}. Absolute figures "
                   f"from this run are low; the ratios to the reference, measured interleaved, "
                   f"hold better.")
    parts = []
    for key, what in (("steal_pct", "steal"), ("foreign_cpu_pct", "other processes' CPU"),
                      ("loadavg_1m", "load average")):
        value = meta_noise.get(key)
        if isinstance(value, dict) and value.get("median") is not None:
            unit = "" if key == "loadavg_1m" else " %"
            parts.append(f"{what} median {value['median']:.3g}{unit} (max "
                         f"{value.get('max', value['median']):.3g}{unit})")
    windows = sum(1 for m in view.run.measurements if m.noise is not None)
    noisy = sum(1 for m in view.run.measurements if m.noisy)
    if parts or windows:
        text = "Machine noise over the measurement windows: " + ("; ".join(parts) or "recorded")
        if windows:
            text += (f". {noisy} of {windows} windows were flagged noisy (other processes over "
                     f"{results.FOREIGN_NOISY_PCT:.0f} % of the CPUs, or steal over "
                     f"{results.STEAL_NOISY_PCT:.0f} %); their results are drawn hollow and not "
                     f"ranked.")
        out.append(text)
    if (text := reference_noise(view)) is not None:
        out.append(text)
    return out


def reference_noise(view: View) -> str | None:
    """How much the C reference, the same program in every round, varied: the machine's own
    noise, which steal and foreign CPU do not show (on a VM, other tenants on the host slow every
    program alike). From its cell with the most rounds; None with fewer than 3."""
    refs = [o for o in view.summaries.values() if o.is_reference and len(o.measured) >= 3]
    if not refs:
        return None
    o = max(refs, key=lambda o: (len(o.measured), -o.cell.conns))
    rps = [m.rps for m in o.measured if m.rps]
    if len(rps) < 3:
        return None
    cv = statistics.stdev(rps) / statistics.fmean(rps)
    return (f"The C reference, the same program in every round, ran at {fmt_rps(min(rps))} to "
            f"{fmt_rps(max(rps))} req/s over {len(rps)} rounds at {o.cell.label} (coefficient "
            f"of variation {cv:.0%}): the speed of this machine, server and generator alike, from one "
            f"window to the next, which "
            f"no steal or foreign-CPU counter shows. "
            + ("The ratios are to the reference measured beside each server, in the same window "
               "in alternating slices, so that both share that drift"
               if any(m.get("ref_basis") == "beside" for m in view.run.measurements)
               else "The ratios to it are paired by round")
            + ", and a cell's × ref is the geometric mean of its rounds' ratios.")


def convergence(view: View) -> str | None:
    """How many results reached a tight interval of their × ref."""
    cells = [o for o in view.summaries.values() if not o.is_reference and o.vs_ref is not None]
    if not cells or max(len(o.measured) for o in cells) < results.RATIO_CI_MIN_N:
        return None  # no cell had the rounds an interval takes (one-round profiles)
    done = sum(1 for o in cells if o.converged)
    return (f"{done} of {len(cells)} server × cell results converged: the 95 % interval of "
            f"their × ref lies within ±{results.TOLERANCE:.0%} of it.")



# -- Interpreters ------------------------------------------------------------------------------------


def versus(view: View, a: results.CellSummary, b: results.CellSummary) -> int:
    """+1 when `a` is ahead of `b` beyond noise, -1 when behind, 0 when they tie or either is not
    clean: the report's one rule (results.Ranking.beyond_noise), between two results of one
    cell."""
    return ranking(view, a.cell).beyond_noise(a.server, b.server)


def interpreter_name(i: dict) -> str:
    """'3.13.0', '3.14.0t (free-threaded)'."""
    return i["label"] + (" (free-threaded)" if i.get("free_threaded") else "")


def interpreters_line(view: View) -> str | None:
    """The headline's sentence naming the interpreter of every Python server: 'CPython 3.11.7
    (plain names, the bench's own) and 3.13.0 (NAME@3.13)'; None for a run of one interpreter
    (the metadata table names it)."""
    known = [i for i in view.run.interpreters if i["tag"]]
    if len(known) < 2 and all(i["default"] for i in known):
        return None
    said = [interpreter_name(i) + (" (plain names, the bench's own)" if i["default"]
                                   else f" (named NAME@{i['tag']})") for i in known]
    return (f"**Interpreters**: the Python servers ran under {join(said)}, each from its own "
            f"venv, beside the same reference in the same rounds; servers in other languages "
            f"ran once.")


def interpreters(view: View, data) -> list[str]:
    """Which interpreter ran each Python model faster at the headline cell, by the report's one
    rule (versus), each other interpreter against the first (the bench's own)."""
    base, cell = data.interpreters[0], data.cell
    what = "ratio to the reference" if view.has_ratios else "req/s"
    out = [f"Each model's {what} under each interpreter at {cell.label}, with its 95 % "
           f"interval; filled markers are clean results, hollow ones noisy, client-bound or "
           f"degraded (never compared)."]
    for k, other in enumerate(data.interpreters[1:], 1):
        faster, slower, tied, apart = [], [], [], []
        for model in data.models:
            a, b = data.dots[model][k], data.dots[model][0]
            if a is None or b is None or a.stat is None or b.stat is None:
                continue
            if not (clean(a.outcome) and clean(b.outcome)):
                worse = a.outcome if not clean(a.outcome) else b.outcome
                apart.append(f"{model} ({not_clean_word(worse)} under "
                             f"{data.interpreters[k if worse is a.outcome else 0]['label']})")
                continue
            ratio = fmt_pct(a.stat.value / b.stat.value - 1)
            {1: faster, -1: slower, 0: tied}[versus(view, a.outcome, b.outcome)].append(
                f"{model} ({ratio})")
        said = [f"**{interpreter_name(other)} against {base['label']}** (the change of each "
                f"model's figure from {base['label']} to {other['label']}):"]
        said.append(f"faster beyond noise for {join(faster)}" if faster else
                    "faster beyond noise for no model")
        if slower:
            said.append(f"slower for {join(slower)}")
        if tied:
            said.append(f"within noise (a tie) for {join(tied)}")
        if apart:
            said.append(f"not compared: {join(apart)}")
        out.append(said[0] + " " + "; ".join(said[1:]) + ".")
    builds = {json_key(i.get("build")) for i in _described(view)}
    if len(builds) > 1:
        out.append("The interpreters were built differently (see The run): a build's flags "
                   "(PGO, LTO, -O level) change speed as much as a version can.")
    elif builds and builds != {json_key(None)}:
        out.append("They were built alike (the same configure options, -O level and compiler, "
                   "see The run), so a difference is the version's: its bytecode and C code, "
                   "and its packages as built for it.")
    for i in data.interpreters:
        if i.get("free_threaded"):
            on = sorted({m.server for m in view.run.measurements
                         if (m.interpreter or {}).get("tag") == i["tag"]
                         and (m.interpreter or {}).get("gil_enabled")})
            out.append(f"{i['label']} is a free-threaded build: its threads run Python at once "
                       f"on as many cores as the server has"
                       + (f"; the GIL was back on in {join(on)} (an extension module imported "
                          f"without free-threading support turns it on, and the server's "
                          f"readiness line said so)" if on else "; the GIL stayed off in every "
                          "server") + ".")
    return out


def json_key(value) -> str:
    return json.dumps(value, sort_keys=True)


def _described(view: View) -> list[dict]:
    """meta.json's interpreters that ran (each with its build), or none for an older run."""
    return [i for i in view.meta.get("interpreters") or [] if i.get("available")]
