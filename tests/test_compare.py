"""`python -m bench compare`: verdicts from two runs' repeats, the regression gate, the HTML page.

The runs are the report's fixture (tests/fixtures/run_small) and copies of it with chosen servers'
figures scaled, so the expected verdict of every figure is known. Nothing is measured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import compare

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run_small"


def scaled(tmp_path: Path, name: str, factors: dict[str, float], *, keep_repeats=None,
           run_id: str | None = None) -> Path:
    """A copy of the fixture whose servers' req/s are multiplied by factors[server] (and their
    CPU per request divided by it, as a faster server would show)."""
    run_dir = tmp_path / name
    shutil.copytree(FIXTURE, run_dir)
    lines = []
    for text in (run_dir / "results.jsonl").read_text().splitlines():
        record = json.loads(text)
        if keep_repeats is not None and record.get("repeat", 0) not in keep_repeats:
            continue
        factor = factors.get(record["server"])
        if factor and record.get("rps"):
            record["rps"] *= factor
            if record.get("server_cpu_us_per_request"):
                record["server_cpu_us_per_request"] /= factor
        lines.append(json.dumps(record))
    (run_dir / "results.jsonl").write_text("\n".join(lines) + "\n")
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["run_id"] = run_id or name
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return run_dir


def verdicts(capsys) -> dict[tuple[str, str, str], str]:
    """(server, cell, figure) -> verdict, from the printed table."""
    out = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 7:
            out[(cells[0].strip("`"), cells[1], cells[2])] = cells[6].strip("*")
    return out


def test_a_change_beyond_noise_is_faster_or_slower_and_a_tiny_one_is_within_noise(tmp_path, capsys):
    base = scaled(tmp_path, "a", {})
    other = scaled(tmp_path, "b", {"epoll": 0.6, "threads": 1.5, "fork": 1.005})
    assert compare.main([str(base), str(other)]) == 0  # no --fail-above: no gate
    found = verdicts(capsys)
    assert found[("epoll", "1 conn × 1 KiB", "req/s")] == "slower"
    assert found[("epoll", "1 conn × 1 KiB", "CPU µs/req")] == "more CPU"
    assert found[("threads", "16 conns × 1 KiB", "req/s")] == "faster"
    assert found[("fork", "16 conns × 1 KiB", "req/s")] == "within noise"  # +0.5 %
    assert found[("uvloop", "1 conn × 1 KiB", "req/s")] == "within noise"  # unchanged
    assert found[("uvloop", "1 conn × 1 KiB", "p99")] == "within noise"


def test_per_server_verdicts_are_printed(tmp_path, capsys):
    base = scaled(tmp_path, "a", {})
    other = scaled(tmp_path, "b", {"epoll": 0.6})
    compare.main([str(base), str(other)])
    text = capsys.readouterr().out
    assert "- **epoll**: slower (" in text
    assert "- **uvloop**: within noise (" in text


def test_fail_above_exits_1_on_a_regression_beyond_noise_only(tmp_path, capsys):
    base = scaled(tmp_path, "a", {})
    slower = scaled(tmp_path, "b", {"epoll": 0.6})
    assert compare.main([str(base), str(slower), "--fail-above", "5"]) == 1
    text = capsys.readouterr().out
    assert "`epoll` at 1 conn × 1 KiB: req/s −40 % (slower" in text
    # 40 % fewer req/s and 67 % more CPU (the fixture scales CPU by 1 / 0.6): under 70 % both
    assert compare.main([str(base), str(slower), "--fail-above", "70"]) == 0
    faster = scaled(tmp_path, "c", {"epoll": 1.6})
    assert compare.main([str(base), str(faster), "--fail-above", "5"]) == 0  # better is fine


def test_one_repeat_means_noise_unknown(tmp_path, capsys):
    base = scaled(tmp_path, "a", {}, keep_repeats={0})
    other = scaled(tmp_path, "b", {"epoll": 0.6}, keep_repeats={0})
    assert compare.main([str(base), str(other), "--fail-above", "5"]) == 0
    assert set(verdicts(capsys).values()) == {"noise unknown"}


def test_html_output_is_a_page_with_the_table(tmp_path, capsys):
    page = tmp_path / "compare.html"
    compare.main([str(scaled(tmp_path, "a", {})), str(scaled(tmp_path, "b", {"epoll": 0.6})),
                  "--html", str(page)])
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and "<table>" in text
    assert "<strong>slower</strong>" in text and "http" not in text


def with_reference(run_dir: Path) -> Path:
    """Give a run a C reference (1.25x its uvloop's req/s, so it scales with the machine) and
    vs_ref on every record, as a schema-2 run has."""
    from bench import results

    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    for r in list(records):
        if r["server"] == "uvloop" and r.get("rate") is None:
            records.append(dict(r, server="c-epoll", is_reference=True, client_bound=False,
                                rps=r["rps"] * 1.25))
    results.annotate(records)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return run_dir


def test_with_a_reference_in_both_runs_the_ratio_leads(tmp_path, capsys):
    """A machine twice as fast (every server and the reference x2) changes every req/s but no
    ratio: the verdict by vs_ref is within noise, while epoll, really slower, is slower."""
    base = with_reference(scaled(tmp_path, "a", {}))
    everything = {s: 2.0 for s in ("iterative", "threads", "fork", "uvloop")}
    other = with_reference(scaled(tmp_path, "b", everything | {"epoll": 2.0 * 0.6}))
    compare.main([str(base), str(other)])
    text = capsys.readouterr().out
    assert "- **uvloop**: within noise (" in text and "by vs_ref; the reference moved" in text
    assert "- **epoll**: slower (" in text
    assert "| `uvloop` | 1 conn × 1 KiB | vs ref |" in text
    assert "| `c-epoll` | 1 conn × 1 KiB | vs ref |" not in text  # the reference is 1x by definition
    # ...but the reference itself ran twice as fast, and that is said: a real machine's change
    # need not hit the kernel-heavy reference and a Python server alike
    assert "**The machine changed between the runs.** The reference (`c-epoll`)" in text
    assert "1 conn × 1 KiB +100 %" in text
    assert "| `uvloop` | 1 conn × 1 KiB | vs ref |" in text and "the reference moved +100 % |" in text
    assert "; the reference moved in all of these" in text


def test_a_reference_at_the_same_speed_raises_no_machine_warning(tmp_path, capsys):
    """Only the servers changed (epoll slower, the rest 5 % faster, the reference no more than
    that): nothing is said of the machine, and no figure is marked."""
    base = with_reference(scaled(tmp_path, "a", {}))
    other = with_reference(scaled(tmp_path, "b", {"epoll": 0.6, "uvloop": 1.05}))
    compare.main([str(base), str(other)])
    text = capsys.readouterr().out
    assert "- **epoll**: slower (" in text
    assert "machine changed" not in text and "the reference moved" not in text


def test_a_regression_where_the_reference_moved_says_so(tmp_path, capsys):
    base = with_reference(scaled(tmp_path, "a", {}))
    everything = {s: 2.0 for s in ("iterative", "threads", "fork", "uvloop")}
    other = with_reference(scaled(tmp_path, "b", everything | {"epoll": 2.0 * 0.6}))
    assert compare.main([str(base), str(other), "--fail-above", "5"]) == 1
    regressions = capsys.readouterr().out.split("## Regressions")[1]
    assert "`epoll`" in regressions and "the reference moved +100 % there)" in regressions


def test_welch_t_test():
    assert compare.significant([10, 11, 10.5], [20, 21, 20.5]) is True
    assert compare.significant([10, 12, 11], [10.5, 11.5, 11]) is False
    assert compare.significant([10], [20, 21]) is None
    assert compare.t_critical(1) == pytest.approx(12.706)
    assert compare.t_critical(11) == pytest.approx((2.228 + 2.179) / 2)


def test_cli_errors_exit_2(tmp_path):
    one = subprocess.run([sys.executable, "-m", "bench", "compare", str(FIXTURE)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert one.returncode == 2 and "at least two runs" in one.stderr
    missing = subprocess.run([sys.executable, "-m", "bench", "compare", str(FIXTURE),
                              str(tmp_path / "nope")], cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no such run directory" in missing.stderr
