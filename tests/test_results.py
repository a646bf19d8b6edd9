"""The results model (bench/results.py, bench/stats.py): old runs read and fold, a cut last line,
the one status order, the two intervals (of a median, of a ratio), the ratios to the reference,
and the one rule that ranks servers and ties them."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from bench import results

ROOT = Path(__file__).resolve().parent.parent


def _rec(server="epoll", conns=16, size=1024, status="ok", rps=1000.0, **kw) -> dict:
    return {"server": server, "family": "multiplexed", "conns": conns, "size_bytes": size,
            "rate": None, "rate_fraction_of_peak": None, "mode": "closed", "repeat": 0,
            "status": status, "reason": None, "rps": rps, **kw}


@pytest.mark.parametrize("name", ["quick", "full"])
def test_committed_runs_read_and_fold(name):
    run = results.read_run(ROOT / "docs" / "results" / name)
    raw = [json.loads(line) for line in
           (ROOT / "docs" / "results" / name / "results.jsonl").read_text().splitlines() if line]
    assert len(run.measurements) == len(raw) and not run.warnings
    # both committed runs are schema 2; tests/fixtures/run_small keeps a schema-1 run in the suite
    schema = raw[0].get("schema", 1)
    assert run.schema == schema and run.measurements[0].schema == schema
    summaries = run.summaries()
    assert {(s.server, s.cell) for s in summaries} == {(r["server"], results.CellKey.of(r))
                                                      for r in raw}
    for s in summaries:
        assert s.verdict in results.STATUS_ORDER
        if s.measured:
            assert s.rps.low <= s.rps.value <= s.rps.high
    # every field of an old record survives a round trip
    for d, m in zip(raw, run.measurements, strict=True):
        back = m.to_dict()
        assert {k: v for k, v in back.items() if k in d} == d
    # derived metrics come out of the old fields
    ok = [m for m in run.measurements if m.measured and m.conns >= 16]
    assert any(m.ctx_per_request for m in ok) and any(m.mem_per_conn_bytes for m in ok)


def test_a_cut_last_line_warns_and_keeps_the_rest(tmp_path):
    lines = [json.dumps(_rec(rps=float(i + 1))) for i in range(3)]
    (tmp_path / "results.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:40])
    (tmp_path / "meta.json").write_text("{}")
    with pytest.warns(results.CutLineWarning, match="line 4"):
        run = results.read_run(tmp_path)
    assert [m.rps for m in run.measurements] == [1.0, 2.0, 3.0]
    assert "line 4" in run.warnings[0] and "--resume" in run.warnings[0]


def test_a_bad_line_in_the_middle_is_an_error_naming_it(tmp_path):
    good = json.dumps(_rec())
    (tmp_path / "results.jsonl").write_text(f"{good}\n{{not json\n{good}\n")
    with pytest.raises(results.ResultsError, match="line 2"):
        results.read_run(tmp_path)


def test_write_records_is_atomic_and_round_trips(tmp_path):
    records = [_rec(rps=float(i)) for i in range(1, 5)]
    results.write_records(tmp_path, records)
    results.append_record(tmp_path, _rec(server="poll"))
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"], "no temporary file left"
    run = results.read_run(tmp_path)
    assert [m.to_dict() for m in run.measurements][0]["rps"] == 1.0
    assert [m.server for m in run.measurements] == ["epoll"] * 4 + ["poll"]


def test_one_status_order_and_skipped_only_when_nothing_was_measured():
    assert results.STATUS_ORDER == ("ok", "noisy", "client-bound", "degraded", "failed", "skipped")
    noisy = {"noisy": True, "why": "x"}

    def verdict(*recs):
        (s,) = results.fold(results.Measurement.from_dict(r) for r in recs)
        return s.status, s.verdict

    assert verdict(_rec(), _rec()) == ("ok", "ok")
    assert verdict(_rec(), _rec(noise=noisy)) == ("ok", "noisy"), "half noisy: the cell is"
    assert verdict(_rec(noise=noisy), _rec(client_bound=True)) == ("ok", "client-bound")
    assert verdict(_rec(client_bound=True), _rec(status="degraded")) == ("degraded", "degraded")
    assert verdict(_rec(status="degraded"), _rec(status="failed", rps=None)) == ("failed", "failed")
    assert verdict(_rec(), _rec(status="skipped", rps=None)) == ("ok", "ok")
    assert verdict(_rec(status="failed", rps=None),
                   _rec(status="skipped", rps=None)) == ("failed", "failed")
    assert verdict(_rec(status="skipped", rps=None)) == ("skipped", "skipped")


def test_a_reason_the_rounds_give_with_other_figures_is_said_once():
    said = "112 of 128 connections got no echo at all in 0.6 s ({} µs of CPU per request)"
    recs = [_rec(status="degraded", reason=said.format(us), repeat=n) for n, us in enumerate((8, 10, 9))]
    recs.append(_rec(status="degraded", reason="the server's exit took 3 s", repeat=3))
    (s,) = results.fold(results.Measurement.from_dict(r) for r in recs)
    assert s.reasons == [said.format(8), "the server's exit took 3 s"]


def test_median_ci_from_order_statistics_on_known_data():
    assert results.median_ci95([1, 2, 3, 4, 5]) is None, "5 values cannot give 95 %"
    # n = 6: only [min, max] reaches 95 % (coverage 1 - 2/64 = 96.9 %)
    assert results.median_ci95([6, 1, 5, 2, 4, 3]) == (1, 6)
    # n = 10: [x(2), x(9)] covers 97.9 %, [x(3), x(8)] only 89.1 %
    assert results.median_ci95(range(1, 11)) == (2, 9)
    # n = 20: [x(6), x(15)] covers 95.9 %
    assert results.median_ci95(range(1, 21)) == (6, 15)
    # the coverage claim itself, by simulation on a skewed distribution
    rng = random.Random(1)
    true_median = math.log(2)  # of Exp(1)
    hits = 0
    for _ in range(2000):
        lo, hi = results.median_ci95([rng.expovariate(1.0) for _ in range(12)])
        hits += lo <= true_median <= hi
    assert hits / 2000 >= 0.94


def test_annotate_pairs_each_ratio_with_the_reference_of_its_round_and_judges_convergence():
    # The machine drifts: round k runs everything (1 + k/10) times as fast. A server at half the
    # reference's speed in every round is exactly 0.5x in every pair, so the drift cancels.
    speed = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    ref = [_rec(server="c-epoll", rps=1000.0 * f, round=k, repeat=k, is_reference=True,
                server_cpu_us_per_request=10.0 / f) for k, f in enumerate(speed)]
    tight = [_rec(server="epoll", rps=500.0 * f, round=k, repeat=k,
                  server_cpu_us_per_request=20.0 / f) for k, f in enumerate(speed)]
    loose = [_rec(server="threads", rps=r * f, round=k, repeat=k)
             for k, (r, f) in enumerate(zip((100.0, 300, 500, 700, 900, 1100), speed, strict=True))]
    # a round in which the reference was not measured: the ratio falls back to its median
    extra = [_rec(server="epoll", rps=625.0, round=6, repeat=6)]
    other_cell = [_rec(server="epoll", conns=1, rps=50.0)]  # no reference measured there
    records = ref + tight + loose + extra + other_cell
    results.annotate(records)
    assert [r["vs_ref"] for r in ref] == [1.0] * 6
    assert [r["vs_ref"] for r in tight] == [0.5] * 6 and tight[0]["cpu_vs_ref"] == 2.0
    assert extra[0]["vs_ref"] == 0.5, "625 over the reference's median of 1,250"
    assert all(r["converged"] for r in tight) and tight[0]["vs_ref_ci95"] == [0.5, 0.5]
    # the t-interval on the logs of 0.1, 0.3 ... 1.1 (t = 2.5706 for 5 degrees of freedom)
    logs = [math.log(x) for x in (0.1, 0.3, 0.5, 0.7, 0.9, 1.1)]
    centre, sd = sum(logs) / 6, statistics.stdev(logs)
    expected = [round(math.exp(centre + k * 2.5706 * sd / math.sqrt(6)), 3) for k in (-1, 1)]
    assert not any(r["converged"] for r in loose)
    assert [round(x, 3) for x in loose[0]["vs_ref_ci95"]] == expected
    assert ref[0]["vs_ref_ci95"] is None, "the reference's own ratio is 1 by definition"
    assert other_cell[0]["vs_ref"] is None and other_cell[0]["converged"] is False
    # unpaired, the same server would not converge: 500 to 750 over a median of 1,250
    unpaired = [r["rps"] / 1250.0 for r in tight]
    assert max(unpaired) / min(unpaired) > 1.4
    summaries = {(s.server, s.cell.conns): s for s in
                 results.fold(results.Measurement.from_dict(r) for r in records)}
    s = summaries[("epoll", 16)]
    assert s.converged and s.vs_ref == pytest.approx(0.5) and s.cpu_vs_ref == pytest.approx(2.0)
    ref_summary = summaries[("c-epoll", 16)]
    assert ref_summary.is_reference and ref_summary.vs_ref == 1.0
    assert ref_summary.vs_ref_stat is None and not ref_summary.converged, "no interval, no ✓"


def test_noise_verdict_names_the_figure():
    assert results.noise_verdict(0.0, 2.0) == (False, None)
    noisy, why = results.noise_verdict(0.5, 37.0)
    assert noisy and "37 %" in why
    noisy, why = results.noise_verdict(12.0, None)
    assert noisy and "stole 12.0 %" in why


def test_window_noise_is_what_the_machine_ran_besides_the_bench():
    # 2 CPUs over a 1 s span: 2 CPU-seconds in all. The machine was busy 1.5 s; the server
    # used 0.4, the generator 0.3 (over its 0.5 s window, so 0.6 over the span), the runner 0.1:
    # 0.4 s foreign = 20 % of all CPU time; 0.05 s of 2.0 stolen = 2.5 %.
    w = {"span_s": 1.0, "cpu_s": 0.4, "machine_busy_s": 1.5, "machine_steal_s": 0.05,
         "machine_total_s": 2.0, "runner_cpu_s": 0.1}
    noise = results.window_noise(w, client_cpu_s=0.3, client_duration_s=0.5, cpus=2,
                                 loadavg_1m=1.234, freq_mhz=None, governor=None)
    assert noise["foreign_cpu_pct"] == 20.0 and noise["steal_pct"] == 2.5
    assert noise["noisy"] and "20 %" in noise["why"] and noise["loadavg_1m"] == 1.23
    quiet = results.window_noise({**w, "machine_busy_s": 1.0}, client_cpu_s=0.3,
                                 client_duration_s=0.5, cpus=2, loadavg_1m=None, freq_mhz=None,
                                 governor=None)
    assert quiet["foreign_cpu_pct"] == 0.0 and not quiet["noisy"], "rounding is not foreign work"
    unknown = results.window_noise({}, client_cpu_s=None, client_duration_s=None, cpus=2,
                                   loadavg_1m=None, freq_mhz=None, governor=None)
    assert unknown["foreign_cpu_pct"] is None and not unknown["noisy"]


def test_student_t_quantiles_and_p_values_match_the_tables():
    for df, t in ((1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (11, 2.201), (30, 2.042)):
        assert results.t_quantile(0.975, df) == pytest.approx(t, abs=1e-3)
    assert results.t_quantile(0.025, 4) == pytest.approx(-2.776, abs=1e-3)
    assert results.t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=1e-3)
    assert results.t_two_sided_p(0.0, 3) == 1.0


def test_a_ratio_is_a_geometric_mean_with_a_t_interval_on_its_logs():
    s = results.ratio_stat([0.5, 0.6, 0.55])
    logs = [math.log(x) for x in (0.5, 0.6, 0.55)]
    half = 4.3027 * statistics.stdev(logs) / math.sqrt(3)
    assert s.method == "geomean" and s.n == 3 and (s.low, s.high) == (0.5, 0.6)
    assert s.value == pytest.approx(math.exp(sum(logs) / 3))
    assert s.ci95 == pytest.approx((math.exp(sum(logs) / 3 - half), math.exp(sum(logs) / 3 + half)),
                                   rel=1e-4)
    assert s.ci95[0] < s.value < s.ci95[1], "the figure sits inside its interval, not at an end"
    assert results.ratio_stat([0.5, 0.7]).ci95 is not None, "an interval from 2 rounds"
    assert results.ratio_stat([0.5]).ci95 is None and results.ratio_stat([]) is None
    # its coverage, by simulation: 3 rounds of a log-normal ratio around 0.6
    rng = random.Random(2)
    hits = 0
    for _ in range(3000):
        lo, hi = results.ratio_stat([0.6 * math.exp(rng.gauss(0, 0.2)) for _ in range(3)]).ci95
        hits += lo <= 0.6 <= hi
    assert 0.93 <= hits / 3000 <= 0.97


def test_a_noisy_window_is_left_out_when_the_clean_ones_are_most():
    noisy = {"noisy": True, "why": "x"}
    recs = [_rec(rps=1000.0), _rec(rps=1010.0), _rec(rps=400.0, noise=noisy)]
    (s,) = results.fold(results.Measurement.from_dict(r) for r in recs)
    assert s.verdict == "ok" and s.left_out == 1 and s.rps.n == 2 and s.rps.value == 1005.0
    assert s.rounds_text == "3/3 (1 noisy left out)" and s.noisy_count == 1


def _ranked(*entries, reference=True):
    """A cell's summaries from (server, per-round ratios, verdict) with the reference at 1000."""
    records = []
    for k in range(max(len(e[1]) for e in entries)):
        if reference:
            records.append(_rec(server="c-epoll", is_reference=True, rps=1000.0, round=k, repeat=k))
    for server, ratios, *verdict in entries:
        extra = {"client_bound": True} if verdict == ["client-bound"] else {}
        records += [_rec(server=server, rps=1000.0 * r, round=k, repeat=k, **extra)
                    for k, r in enumerate(ratios)]
    results.annotate(records)
    summaries = results.fold(results.Measurement.from_dict(r) for r in records)
    return results.rank(summaries, results.CellKey(16, 1024))


def test_ties_follow_the_leader_and_cannot_chain():
    """Each neighbour overlaps the next, so a chain would tie all four; by the leader's interval
    a and b tie, and c leads a new group that d joins."""
    r = _ranked(*((name, [v * 0.97, v * 1.03, v]) for name, v in
                  (("a", 1.0), ("b", 0.9), ("c", 0.8), ("d", 0.72))), reference=False)
    for p, q in zip(r.placed, r.placed[1:], strict=False):
        assert p.overlaps(q), "each neighbour overlaps the next: a chain would tie them all"
    assert [[p.server for p in g] for g in r.groups] == [["a", "b"], ["c", "d"]]
    assert r.beyond_noise("a", "c") == 1 and r.beyond_noise("d", "a") == -1
    assert r.beyond_noise("a", "b") == 0 and r.separated_top == 0
    assert not r.by_ratio  # no reference: ranked on req/s


def test_the_reference_stands_at_1_and_a_server_whose_interval_holds_1_ties_it():
    r = _ranked(("near", [0.97, 1.03, 1.0]), ("mid", [0.6, 0.61, 0.62]),
                ("low", [0.3, 0.31, 0.3]), ("floor", [0.98, 0.99, 1.0], "client-bound"))
    assert r.by_ratio and r.reference.server == "c-epoll"
    assert [[p.server for p in g] for g in r.groups] == [["c-epoll", "near"], ["mid"], ["low"]]
    assert [o.server for o in r.apart] == ["floor"], "client-bound: listed apart, never ranked"
    assert r.separated_top == 0  # the top is a tie with the ceiling, never a win
    assert r.beyond_noise("mid", "low") == 1 and r.beyond_noise("near", "c-epoll") == 0
    alone = _ranked(("mid", [0.6, 0.61, 0.62]), ("low", [0.3, 0.31, 0.3]))
    assert alone.separated_top == 3, "the reference, mid and low each stand apart"
    one_round = _ranked(("mid", [0.6]), ("low", [0.3]))
    assert not [p for p in one_round.placed if not p.summary.is_reference and p.ci]
    assert len(one_round.groups) == 1, "no interval: nothing can be ordered"
