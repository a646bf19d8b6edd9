"""The report stage: charts and report.md built from a small saved run, and the CLI's errors.

The fixture, tests/fixtures/run_small/, is a hand-made but realistic run: five servers in four
families, closed-loop cells 1/16/128 connections x 1 KiB and 16 x 64 KiB, two repeats, an open-loop
series of three rates for two servers, a failed cell (with its reason and stderr tail), a degraded
server, a skipped one, client-bound cells, and real HdrHistograms. It is written by this file:

    python tests/test_report.py --write-fixture

Nothing here depends on timing: the report only reads files.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import results  # noqa: E402
from bench.report import build as report  # noqa: E402
from bench.report import blocks, document, fmt, view  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "run_small"
SERVERS = ("iterative", "threads", "fork", "epoll", "uvloop", "io_uring")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The fixture run copied to a temporary directory, its report built once for these tests."""
    run_dir = tmp_path_factory.mktemp("report") / "run_small"
    shutil.copytree(FIXTURE, run_dir)
    return report.build_report(run_dir)


def chart_links(markdown: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)


def assert_valid_png(path: Path) -> None:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width > 0 and height > 0
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == (width, height)
        assert image.size[0] >= 1000, "charts are drawn to be read at 1200 px wide"


def test_report_names_every_server_and_status(built):
    text = built.read_text()
    for server in SERVERS:
        assert server in text, f"{server} missing from report.md"
    for status in ("ok", "degraded", "failed", "skipped"):
        assert re.search(rf"\b{status}\b", text), f"status {status!r} missing from report.md"
    assert "client-bound" in text
    assert "fork() failed" in text or "Resource temporarily unavailable" in text  # the reason


def test_every_chart_listed_exists_and_is_a_png_with_an_svg_beside_it(built):
    links = chart_links(built.read_text())
    names = {Path(link).name for link in links}
    assert {"status.png", "throughput.png", "latency.png", "spectrum.png", "openloop.png",
            "cpu.png", "memory.png", "sizes.png"} <= names
    for link in links:
        assert_valid_png(built.parent / link)
        svg = (built.parent / link).with_suffix(".svg").read_text()
        assert "<svg" in svg and "</svg>" in svg
    # and nothing in charts/ that the report does not show
    assert {p.name for p in (built.parent / "charts").glob("*.png")} == names
    assert (built.parent / "report.html").is_file()


def test_what_to_notice_is_computed_from_the_data(built):
    text = built.read_text()
    results_ = [json.loads(line) for line in (FIXTURE / "results.jsonl").read_text().splitlines()]
    at_128 = [r["rps"] for r in results_ if r["conns"] == 128 and r["size_bytes"] == 1024
              and r.get("rate") is None and r["server"] == "uvloop"]
    assert at_128  # uvloop was fastest at 128 connections, but client-bound there: not credited
    at_16 = [r["rps"] for r in results_ if r["conns"] == 16 and r["size_bytes"] == 1024
             and r.get("rate") is None and r["server"] == "fork"]
    lead = fmt.fmt_rps(statistics.geometric_mean(at_16))  # a run without a reference: by req/s
    assert f"At 16 conns × 1 KiB, by req/s, **fork** led the clean results with {lead} (" in text
    assert "**uvloop** led" not in text and "**epoll** led" not in text
    assert "Not credited: uvloop (client-bound), epoll (client-bound) and iterative (degraded)" \
        in text
    assert "client-bound" in text and "compare server CPU µs per request" in text


def test_results_table_has_a_row_per_server_and_cell(built):
    text = built.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    results = [json.loads(line) for line in (FIXTURE / "results.jsonl").read_text().splitlines()]
    expected = {(r["server"], r["conns"], r["size_bytes"], r.get("rate")) for r in results
                if r["server"] != "io_uring"}
    assert len(rows) == len(expected) + 1  # a server skipped everywhere gets one row
    assert any("**failed**" in row and "`fork`" in row for row in rows)
    assert any("**skipped**" in row and "`io_uring`" in row for row in rows)
    assert any("client-bound" in row and "`uvloop`" in row for row in rows)



def test_report_md_and_html_are_the_same_blocks(built):
    """report.html is rendered from the blocks report.md is written from: the same headings in
    the same order, the same table rows, a chart for every image, the same server stderr (with
    its indentation: tracebacks)."""
    text, page = built.read_text(), built.with_suffix(".html").read_text()
    body = page.split("<body>", 1)[1]
    md_headings = re.findall(r"^#{1,3} (.*)$", text, re.M)
    html_headings = [re.sub(r"<[^>]+>", "", h) for h in
                     re.findall(r"<h[1-3] id=\"[^\"]*\">(.*?)</h[1-3]>", body)]
    assert html_headings == [h.replace("`", "") for h in md_headings]
    md_rows = [line for line in text.splitlines() if line.startswith("| ")]  # not |---|
    assert body.count("<tr>") == len(md_rows) > 30
    assert len(re.findall(r'<div class="(?:chart|svgchart)" data-chart=', body)) >= \
        len(chart_links(text))
    assert "This page is the same report" in body and "[report.html](report.html)" in text
    assert '  File "/home/ada/lab/servers/fork.py", line 61, in serve' in text
    assert "  File &quot;/home/ada/lab/servers/fork.py&quot;, line 61, in serve" in body


def test_a_redraw_is_byte_identical_and_a_run_in_memory_draws_the_same(built):
    """Every file of a report redrawn from the same run is byte-identical (the SVGs carry no date
    and no random ids), whether the builder reads the directory or is handed the run in memory
    (as the runner does)."""
    run_dir = built.parent
    files = sorted(p for p in run_dir.rglob("*") if p.is_file() and p.suffix != ".jsonl")
    before = {p: p.read_bytes() for p in files}
    report.build_report(results.read_run(run_dir))
    assert sorted(p for p in run_dir.rglob("*") if p.is_file() and p.suffix != ".jsonl") == files
    assert [p.name for p in files if p.read_bytes() != before[p]] == []


def test_blocks_render_to_markdown_and_html():
    doc = [blocks.Heading(2, "Problems"),
           blocks.Paragraph("a **bold** `x<y` line", "and its second line"),
           blocks.BulletList(["one | two", [blocks.Paragraph("three"), blocks.Details(
               "stderr", [blocks.Code("Traceback\n  File x\n\n```")])], "four"]),
           blocks.Table(["server", "req/s"], [["`a|b`", "1,000"]], right={"req/s"})]
    assert blocks.to_markdown(doc) == (
        "## Problems\n\na **bold** `x<y` line\nand its second line\n\n- one | two\n- three\n\n"
        "  <details><summary>stderr</summary>\n\n  ```text\n  Traceback\n    File x\n  \n"
        "  ` ` `\n  ```\n\n  </details>\n\n- four\n\n| server | req/s |\n|---|---:|\n"
        "| `a\\|b` | 1,000 |\n")
    assert blocks.to_html(doc) == (
        '<h2 id="problems">Problems</h2>\n<p>a <strong>bold</strong> <code>x&lt;y</code> line '
        "and its second line</p>\n<ul><li><p>one | two</p></li><li><p>three</p>\n<details>"
        "<summary>stderr</summary>\n<pre><code>Traceback\n  File x\n\n```</code></pre>\n"
        "</details></li><li><p>four</p></li></ul>\n<div class=tablewrap><table><thead><tr>"
        "<th>server</th><th>req/s</th></tr></thead><tbody><tr><td><code>a|b</code></td>"
        "<td class=r>1,000</td></tr></tbody></table></div>")


def test_one_formatter_per_kind_of_figure():
    assert [fmt.fmt_us(v) for v in (310, 1250, 48_000, 2_100_000, 75e6)] == \
        ["310 µs", "1.25 ms", "48 ms", "2.1 s", "1 min 15 s"]
    assert fmt.fmt_duration(3725) == "1 h 02 min" and fmt.fmt_duration(45.24) == "45.2 s"
    assert [fmt.fmt_duration(v, "ns", zeros=True) for v in (57, 3200, 22e6)] == \
        ["57.0 ns", "3.20 µs", "22.0 ms"]  # trailing zeros kept: a column lines up
    assert fmt.fmt_bytes(3174) == "3.1 KiB" and fmt.fmt_bytes(3174, zeros=True) == "3.10 KiB"
    assert fmt.fmt_bytes(187, zeros=True) == "187 B"
    assert results.CellKey(100, KIB, None, 0.5).label == "100 conns × 1 KiB at 50 % of peak"
    assert results.CellKey(1, 1 << 20, 12_345.0).label == "1 conn × 1 MiB at 12,300 req/s"


def test_the_console_tables_are_the_exports_rows(schema2):
    """bench run's closing tables are built from summary.csv's rows, not from a fold of their
    own: the same req/s, and the figures only the console shows (rounds behind a ratio) come
    from the export too."""
    import csv

    from bench.run.console import summary_rows

    with open(schema2.parent / "summary.csv", newline="") as f:
        export = {(r["server"], r["cell"]): r for r in csv.DictReader(f)}
    tables = summary_rows(results.read_run(schema2.parent))
    assert set(tables) == {r["cell"] for r in export.values() if r["server"] != "io_uring"}
    for cell, rows in tables.items():
        for row in rows:
            server = row["server"].removesuffix(" (ref)")
            rps = export[(server, cell)]["rps_median"]
            assert row["req/s"] == (f"{float(rps):,.0f}" if rps else "-"), (server, cell)
            group = export[(server, cell)]["tie_group"]
            assert row["#"] == (group or "-"), (server, cell)
    threads = next(r for r in tables["16 conns × 1 KiB"] if r["server"] == "threads")
    row = export[("threads", "16 conns × 1 KiB")]
    assert row["vs_ref_n"] == "2", "an interval from 2 rounds"
    assert threads["95 % interval"] == (f"{float(row['vs_ref_ci95_low']):.2f}–"
                                        f"{float(row['vs_ref_ci95_high']):.2f}")
    ref = next(r for r in tables["16 conns × 1 KiB"] if r["server"] == "c-epoll (ref)")
    assert ref["× ref"] == "1" and ref["95 % interval"] == "", "no interval, no ✓, for 1 by definition"

def test_only_clean_results_may_lead():
    """view.clean: a result is ranked only when its fold (results.fold) says ok: not noisy,
    client-bound or degraded."""
    def summary(*records):
        ms = [results.Measurement.from_dict({"server": "s", "conns": 16, "size_bytes": 1024,
                                             "rps": 100.0 * i, **r})
              for i, r in enumerate(records, 1)]
        return results.fold(ms)[0]

    assert view.clean(summary({"status": "ok"}, {"status": "ok"}))
    assert not view.clean(summary({"status": "ok"}, {"status": "degraded"}))
    assert not view.clean(summary({"status": "ok", "client_bound": True}))
    assert not view.clean(summary({"status": "ok", "noise": {"noisy": True, "why": "x"}}))
    assert not view.clean(summary({"status": "failed", "rps": None}))


def test_run_without_open_loop_says_why_instead_of_drawing(tmp_path):
    run_dir = tmp_path / "closed_only"
    shutil.copytree(FIXTURE, run_dir)
    results = run_dir / "results.jsonl"
    kept = [line for line in results.read_text().splitlines() if json.loads(line)["mode"] != "open"]
    results.write_text("\n".join(kept) + "\n")
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["cells"] = [c for c in meta["cells"] if c["rate"] is None]
    (run_dir / "meta.json").write_text(json.dumps(meta))
    text = report.build_report(run_dir).read_text()
    assert "No chart: this run has no open-loop cells" in text
    assert not (run_dir / "charts" / "openloop.png").exists()
    for link in chart_links(text):
        assert_valid_png(run_dir / link)


def test_cell_option_moves_the_spectrum(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    text = report.build_report(run_dir, cell=(16, 1024)).read_text()
    assert "## Latency spectrum at 16 conns × 1 KiB" in text
    assert report.main([str(run_dir), "--cell", "7x1024"]) == 2


def test_a_run_without_a_big_cell_has_no_c10k_section(built):
    assert "C10K" not in built.read_text()  # the small fixture goes to 128 connections


@pytest.fixture(scope="module")
def c10k(tmp_path_factory) -> Path:
    """The fixture run plus a 10,000-connection cell and open-loop cells at a share of each
    server's peak (see c10k_lines), its report built once."""
    run_dir = tmp_path_factory.mktemp("report") / "run_c10k"
    shutil.copytree(FIXTURE, run_dir)
    with open(run_dir / "results.jsonl", "a") as f:
        for line in c10k_lines():
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["cells"] += [{"conns": C10K, "size_bytes": KIB, "rate": None}] + [
        {"conns": 16, "size_bytes": KIB, "rate": None, "rate_fraction_of_peak": f}
        for f in SHARES]
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return report.build_report(run_dir)


def c10k_table(text: str) -> dict[str, str]:
    """server -> its row of the C10K table."""
    section = text.split("## C10K: 10,000 connections", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {re.match(r"\| `([^`]+)`", row)[1]: row for row in rows}


def test_c10k_section_shows_who_held_10000_and_why_not(c10k):
    text = c10k.read_text()
    assert "- [C10K: 10,000 connections](#c10k-10000-connections)" in text  # contents, and...
    assert "(see [C10K: 10,000 connections](#c10k-10000-connections))" in text  # ...headline
    rows = c10k_table(text)
    assert set(rows) == {"iterative", "threads", "fork", "epoll", "uvloop", "io_uring"}
    for server in ("epoll", "uvloop"):
        cells = [c.strip() for c in rows[server].split("|")[1:-1]]
        assert cells[2] == "ok" and cells[3] == "10,000", rows[server]
    assert "10,000" not in rows["threads"].split("|")[4] and "GIL" in rows["threads"]
    assert "**failed**" in rows["fork"] and "memory would run out" in rows["fork"]
    assert "6,512 · 6,512" in rows["fork"]  # processes and threads at the stop
    assert "**skipped**" in rows["iterative"] and "**skipped**" in rows["io_uring"]
    # the costs, from the lines: memory per connection and CPU per request at 10,000
    assert "271 B" in rows["epoll"] and "12 µs" in rows["epoll"]
    assert "2 of 6 servers held all 10,000 connections: uvloop and epoll." in text
    assert "threads 12.1 s" in text  # the slow teardown after the clients left


def test_c10k_heading_names_a_smaller_largest_cell():
    assert view.c10k_heading(results.CellKey(C10K, KIB)) == "C10K: 10,000 connections"
    assert view.c10k_heading(results.CellKey(1000, KIB)) == \
        "C10K: 1,000 connections, this run's largest cell"


def test_open_loop_at_a_share_of_each_peak_is_one_cell_per_share(c10k):
    run = view.load(c10k.parent)
    shares = [c for c in run.cells if c.fraction is not None]
    assert [c.fraction for c in shares] == list(SHARES)  # not one cell per server's own rate
    text = c10k.read_text()
    assert "16 conns × 1 KiB at 50 % of peak" in text
    rows = [line for line in text.splitlines() if line.startswith("| `uvloop` ") and "of peak)" in line]
    assert len(rows) == 2, "a row per share in the results table, with the rate offered"
    rate = round(statistics.median([83_000, 84_500]) * SHARES[1] * 0.9985, -2)
    assert fmt.fmt_rps(rate) in rows[1]
    assert "openloop.png" in {Path(link).name for link in chart_links(text)}
    for link in chart_links(text):
        assert_valid_png(c10k.parent / link)


def test_parse_cell():
    assert report.parse_cell("128x1024") == (128, 1024)
    assert report.parse_cell("16x64KiB") == (16, 65536)


def test_cli_exits_2_on_a_missing_directory(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope")]) == 2
    assert "make bench" in capsys.readouterr().err


def test_cli_exits_2_on_an_empty_directory_and_on_bad_json(tmp_path, capsys):
    assert report.main([str(tmp_path)]) == 2
    assert "results.jsonl" in capsys.readouterr().err
    shutil.copy(FIXTURE / "meta.json", tmp_path / "meta.json")
    (tmp_path / "results.jsonl").write_text("")
    assert report.main([str(tmp_path)]) == 2
    assert "empty" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text('{"server": "epoll", "status": "ok", "con')
    assert report.main([str(tmp_path)]) == 2
    assert "line 1" in capsys.readouterr().err


def test_module_runs_as_a_command(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    done = subprocess.run([sys.executable, "-m", "bench.report", str(run_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (run_dir / "report.md").is_file()
    missing = subprocess.run([sys.executable, "-m", "bench.report", str(tmp_path / "none")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no such run directory" in missing.stderr


def test_old_runs_have_no_ratio_columns_and_tails_say_how_few_requests(built):
    text = built.read_text()
    assert "vs ref" not in text  # schema 1: no reference measured, no ratios
    assert re.search(r"p99\.99 \(from \d requests\)", text)  # 2 repeats x ~26,000 requests


def test_summary_has_one_row_per_server_and_cell(built):
    import csv

    v = view.load(built.parent)
    with open(built.parent / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(v.summaries)
    assert len({(r["server"], r["cell"]) for r in rows}) == len(rows)
    data = json.loads((built.parent / "summary.json").read_text())
    assert len(data["rows"]) == len(rows)
    fork = next(r for r in data["rows"] if r["server"] == "fork" and r["cell"] == "128 conns × 1 KiB")
    assert fork["status"] == "failed" and fork["rps_median"] is None


@pytest.fixture(scope="module")
def schema2(tmp_path_factory) -> Path:
    """The fixture as a schema-2 run: a C reference measured beside every closed-loop cell, the
    records annotated with vs_ref by results.annotate, threads' 1-connection windows noisy, the
    machine busy at the start, and the run interrupted."""
    run_dir = tmp_path_factory.mktemp("report") / "run_schema2"
    shutil.copytree(FIXTURE, run_dir)
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    for r in list(records):
        r.update(schema=2, noise={"steal_pct": 0.0, "foreign_cpu_pct": 2.0, "noisy": False,
                                  "why": None})
        if r["server"] == "threads" and r["conns"] == 1:
            r["noise"] = {"steal_pct": 0.0, "foreign_cpu_pct": 35.0, "noisy": True,
                          "why": "other processes used 35 % of the CPUs"}
        if r["server"] == "uvloop" and r.get("rate") is None:
            ref = dict(r, server="c-epoll", family="multiplexed", is_reference=True,
                       rps=r["rps"] * 1.25, client_bound=False)
            records.append(ref)
    results.annotate(records)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = json.loads((run_dir / "meta.json").read_text())
    meta.update(schema=2, reference={"name": "c-epoll", "available": True, "reason": None},
                noise={"busy_at_start": {"top": [["cc1", 61.0], ["python", 12.5]]},
                       "noisy_windows": 4, "steal_pct": {"median": 0.0, "max": 0.0},
                       "foreign_cpu_pct": {"median": 2.0, "max": 35.0}},
                interrupted={"signal": "SIGTERM", "measured": 70, "planned": 96})
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return report.build_report(run_dir)


def test_ratios_lead_with_their_ci_and_absolute_figures_beside(schema2):
    text = schema2.read_text()
    assert "| × ref (CI) | tie group | CPU × ref |" in text
    lines = text.splitlines()
    assert lines[2].startswith("![Who won at "), "the report opens with the ranked chart"
    assert lines[4].startswith("**confidence: "), "then how sure"
    ranking = next(line for line in lines if line.startswith("**Who won at"))
    assert "as a multiple of the C reference's (c-epoll)" in ranking
    assert "c-epoll 1× (reference)" in ranking and "Student's t" in ranking
    assert "c-epoll" in view.load(schema2.parent).reference


def test_noisy_results_are_never_ranked_and_the_busy_machine_is_said(schema2):
    text = schema2.read_text()
    assert "interrupted: 70 of 96 measurements (SIGTERM)" in text
    assert "**The machine was busy when the run started**: cc1 (61 % CPU)" in text
    v = view.load(schema2.parent)
    cell = results.CellKey(1, KIB)
    assert v.outcome("threads", cell).verdict == "noisy"
    ranked, others = view.ranked(v, cell)
    assert "threads" not in [o.server for o in ranked]
    assert "threads" in [o.server for o in others]
    from bench.report import notes

    said = notes.ranking_text(v, view.ranking(v, cell))
    assert "threads" in said.split("not ranked:")[1] and "(noisy window)" in said


def test_a_run_of_two_servers_renders_every_part(tmp_path):
    """A small run: two servers of two families, so every chart has two bars or lines (and the
    page's family buttons sit above a short plot)."""
    run_dir = tmp_path / "one"
    shutil.copytree(FIXTURE, run_dir)
    kept = [line for line in (run_dir / "results.jsonl").read_text().splitlines()
            if json.loads(line)["server"] in ("epoll", "threads")]
    (run_dir / "results.jsonl").write_text("\n".join(kept) + "\n")
    meta = json.loads((run_dir / "meta.json").read_text())
    meta.update(servers=["threads", "epoll"], skipped_servers={})
    (run_dir / "meta.json").write_text(json.dumps(meta))
    text = report.build_report(run_dir).read_text()
    assert "`epoll`" in text and (run_dir / "report.html").stat().st_size > 1_000_000
    for link in chart_links(text):
        assert_valid_png(run_dir / link)


SWEEP = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2)  # the full profile's open-loop shares


def test_open_loop_sweep_of_eight_shares_shows_the_knee(tmp_path):
    """Eight shares of each server's peak, as the full profile measures: the chart draws each
    server against its share, and the note names the last share it kept up with."""
    run_dir = tmp_path / "sweep"
    shutil.copytree(FIXTURE, run_dir)
    lines = []
    for server, peak in (("epoll", 75_000), ("threads", 45_000)):
        family, lesson = next((f, le) for n, f, le in FIXTURE_SERVERS if n == server)
        knee = 1.0 if server == "epoll" else 0.7
        for share in SWEEP:
            for repeat in range(2):
                rate = round(peak * share)
                behind = share >= knee
                p99 = 300 if share < knee else 5000 * (share / knee) ** 8
                line = _measured(rate * (0.8 if behind else 0.999), KIB, 100, (120, p99, p99 * 3),
                                 9.0, 0.1, 4000, False, jitter=(1.0, 1.02)[repeat], rate=rate)
                line.update(rate_fraction_of_peak=share, peak_rps=peak, peak_conns=16)
                lines.append(_line(server, family, lesson, 100, KIB, rate, repeat,
                                   "2026-11-25T13:50:00+00:00", **line))
    with open(run_dir / "results.jsonl", "a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    text = report.build_report(run_dir).read_text()
    v = view.load(run_dir)
    assert len([c for c in v.cells if c.fraction is not None]) == len(SWEEP)
    assert "openloop.png" in {Path(link).name for link in chart_links(text)}
    assert_valid_png(run_dir / "charts" / "openloop.png")
    section = text.split("## Latency vs offered load (open loop)", 1)[1].split("\n## ", 1)[0]
    assert "**threads (100 × 1 KiB)** kept up to" in section and "(55 % of its peak)" in section
    assert "epoll (100 × 1 KiB)" in section
    from bench.report import notes
    from bench.report.series import openloop_series

    series = openloop_series(v)
    epoll = notes.LoadCurve.read("epoll", series[("epoll", 100, KIB)])
    assert len(epoll.outcomes) == len(SWEEP) and SWEEP[epoll.knee] == 1.0  # kept up to 85 %


# -- Writing the fixture -------------------------------------------------------------------------------

KIB = 1024
MEASURE_S = 2.0
IDLE_USS = 7_600_000

# (server, family, lesson) in run order; io_uring is skipped on the fixture's machine.
FIXTURE_SERVERS = [("iterative", "blocking", "07"), ("threads", "blocking", "05"),
                   ("fork", "multi-process", "03"), ("epoll", "multiplexed", "08"),
                   ("uvloop", "fibers", "10")]

# (server, conns, size) -> per-repeat rps, p50 µs, p99 µs, p99.99 µs, server CPU µs/req,
# context switches/req, memory per connection, client-bound per repeat
CLOSED = {
    ("iterative", 1, KIB): ((13100, 12800), 62, 140, 900, 21.5, 0.98, 0, (False, False)),
    ("iterative", 16, KIB): ((12900, 12600), 64, 170, 1100, 21.9, 0.98, 0, (False, False)),
    ("iterative", 128, KIB): ((12400, 12700), 66, 180, 1300, 22.4, 0.99, 0, (False, False)),
    ("threads", 1, KIB): ((11800, 12100), 70, 950, 5100, 25.0, 1.02, 148_000, (False, False)),
    ("threads", 16, KIB): ((52000, 49500), 280, 2900, 7400, 11.0, 0.64, 149_000, (False, False)),
    ("threads", 128, KIB): ((41000, 44200), 2600, 14000, 41000, 19.0, 0.41, 151_000,
                            (False, False)),
    ("fork", 1, KIB): ((10600, 10400), 75, 1300, 5300, 27.0, 1.0, 1_150_000, (False, False)),
    ("fork", 16, KIB): ((55800, 57000), 270, 3600, 8200, 12.0, 0.7, 1_120_000, (False, False)),
    ("epoll", 1, KIB): ((14900, 15200), 58, 120, 700, 19.0, 0.97, 5200, (False, False)),
    ("epoll", 16, KIB): ((71000, 69800), 210, 450, 2100, 9.5, 0.08, 4100, (False, True)),
    ("epoll", 128, KIB): ((74500, 76100), 1600, 2900, 6300, 8.8, 0.011, 3900, (True, True)),
    ("uvloop", 1, KIB): ((16800, 16500), 52, 105, 650, 17.0, 0.96, 6100, (False, False)),
    ("uvloop", 16, KIB): ((78000, 79300), 195, 400, 1900, 8.0, 0.05, 5400, (True, True)),
    ("uvloop", 128, KIB): ((80200, 78900), 1550, 2400, 5200, 7.4, 0.007, 5200, (True, True)),
    ("iterative", 16, 64 * KIB): ((4100, 4000), 230, 520, 2400, 61.0, 1.1, 0, (False, False)),
    ("threads", 16, 64 * KIB): ((9800, 10200), 1500, 6200, 16000, 68.0, 1.3, 150_000,
                                (False, False)),
    ("fork", 16, 64 * KIB): ((10400, 10100), 1480, 5900, 14000, 66.0, 1.2, 1_180_000,
                             (False, False)),
    ("epoll", 16, 64 * KIB): ((11900, 12300), 1300, 2600, 7200, 52.0, 0.6, 70_000, (False, False)),
    ("uvloop", 16, 64 * KIB): ((12600, 12200), 1250, 2400, 6600, 49.0, 0.4, 72_000,
                               (False, False)),
}

# open loop, 16 connections x 1 KiB: (server, rate) -> per-repeat completed rps, p50, p99, p99.99,
# CPU µs/req, switches/req
OPEN = {
    ("threads", 10000): ((9990, 9985), 95, 600, 2800, 18.0, 1.0),
    ("threads", 30000): ((29950, 29900), 160, 1900, 6800, 12.5, 0.8),
    ("threads", 60000): ((47000, 46100), 310_000, 850_000, 990_000, 11.2, 0.6),
    ("epoll", 10000): ((9995, 9990), 70, 150, 900, 14.0, 0.9),
    ("epoll", 30000): ((29980, 29970), 95, 300, 1600, 10.5, 0.3),
    ("epoll", 60000): ((59700, 59500), 420, 4200, 9800, 9.1, 0.1),
}

FAILED_STDERR = """\
Traceback (most recent call last):
  File "/home/ada/lab/servers/fork.py", line 61, in serve
    pid = os.fork()
          ^^^^^^^^^
BlockingIOError: [Errno 11] Resource temporarily unavailable
fork: giving up after 86 connections; exiting"""


def _histogram(requests: int, p50: float, p99: float, p9999: float, jitter: float):
    """A real HdrHistogram whose percentiles pass near the given ones (µs), recorded in ~35 steps
    from a quantile curve, so the fixture stays small but decodes like the bench's own."""
    import numpy as np

    from bench import hist

    anchors_p = np.array([0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0])
    anchors_v = np.log([p50 * 0.55, p50, p50 + 0.35 * (p99 - p50), p99,
                        p99 + 0.45 * (p9999 - p99), p9999, p9999 * 1.25]) + np.log(jitter)
    edges = np.concatenate([1 - 10 ** -np.linspace(0, 5, 36), [1.0]])  # dense toward the tail
    histogram = hist.new_histogram()
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        count = round(requests * (hi - lo))
        if count:
            value = float(np.exp(np.interp((lo + hi) / 2, anchors_p, anchors_v)))
            histogram.record_value(max(1, round(value)), count)
    return histogram


def _line(server: str, family: str, lesson: str, conns: int, size: int, rate, repeat: int,
          started: str, **measured) -> dict:
    base = {"server": server, "family": family, "lesson": lesson, "conns": conns,
            "size_bytes": size, "rate": rate, "mode": "closed" if rate is None else "open",
            "repeat": repeat}
    return base | measured | {"started_at": started}


def _measured(rps: float, size: int, conns: int, lat: tuple, cpu_us: float, ctx: float,
              mem: float, client_bound: bool, *, jitter: float, rate=None) -> dict:
    from bench import hist

    requests = round(rps * MEASURE_S)
    histogram = _histogram(requests, *(v * jitter for v in lat), jitter=1.0)
    summary = hist.summarize(histogram)
    server_cpu_s = cpu_us * requests / 1e6
    switches = round(ctx * requests)
    client_cpu_us = 12.0 if not client_bound else 1e6 * MEASURE_S * 0.97 / requests
    line = {
        "status": "ok", "reason": None, "stderr_tail": None,
        "rps": float(requests / MEASURE_S), "bytes_per_s": float(requests * size / MEASURE_S),
        "requests": requests, "duration_s": MEASURE_S, "latency_us": summary,
        "hist": hist.encode(histogram),
        "errors": {"connect": 0, "reset": 0, "mismatch": 0, "timeout": 0},
        "offered_rps": None if rate is None else round(rate * 0.9985, 1),
        "send_lag_us": None if rate is None else {"p50": 480, "p99": 1900,
                                                  "max": min(summary["max"], 990_000)},
        "server_cpu_s": round(server_cpu_s, 4), "server_cpu_us_per_request": cpu_us,
        "server_cpu_util": round(server_cpu_s / MEASURE_S, 4),
        "server_rss_bytes": IDLE_USS * 2 + round(mem * conns * 1.3),
        "server_uss_bytes": IDLE_USS + round(mem * conns), "server_pss_bytes":
            IDLE_USS + round(mem * conns * 1.1), "server_mem_idle_bytes": IDLE_USS,
        "server_mem_per_conn_bytes": float(mem),
        "server_processes": 1, "server_threads": 1, "server_fds": 4 + conns,
        "server_ctx_voluntary": round(switches * 0.9), "server_ctx_involuntary":
            switches - round(switches * 0.9), "ctx_switches_per_request": ctx,
        "client_cpu_s": round(client_cpu_us * requests / 1e6, 4),
        "client_cpu_util": round(client_cpu_us * requests / 1e6 / MEASURE_S, 4),
        "client_cpu_us_per_request": round(client_cpu_us, 2), "client_bound": client_bound,
        "exit": {"code": 0, "elapsed_s": 0.012, "clean": True},
    }
    return line


def write_fixture(directory: Path = FIXTURE) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    families = {name: (family, lesson) for name, family, lesson in FIXTURE_SERVERS}
    closed_cells = [(1, KIB), (16, KIB), (128, KIB), (16, 64 * KIB)]
    rates = [10000, 30000, 60000]
    lines = []
    second = 0
    for repeat in range(2):
        for conns, size in closed_cells:
            for server, family, lesson in FIXTURE_SERVERS:
                second += 3
                started = f"2026-11-25T13:{15 + second // 60:02d}:{second % 60:02d}+00:00"
                key = (server, conns, size)
                if key not in CLOSED:  # fork at 128 connections hits the process limit
                    lines.append(_line(server, family, lesson, conns, size, None, repeat, started,
                                       status="failed",
                                       reason="server exited with code 1 during the measurement: "
                                              "fork() failed with EAGAIN (Resource temporarily "
                                              "unavailable: the per-user process limit); 86 of "
                                              "128 connections were reset",
                                       stderr_tail=FAILED_STDERR, rps=None, latency_us=None,
                                       hist=None, errors={"connect": 0, "reset": 86,
                                                          "mismatch": 0, "timeout": 0},
                                       server_processes=87, client_bound=False,
                                       exit={"code": 1, "elapsed_s": 0.0, "clean": False}))
                    continue
                rps, p50, p99, p9999, cpu, ctx, mem, bound = CLOSED[key]
                line = _measured(rps[repeat], size, conns, (p50, p99, p9999), cpu, ctx, mem,
                                 bound[repeat], jitter=(1.0, 1.04)[repeat])
                if server == "fork":
                    line["server_processes"] = conns + 1
                if server == "threads":
                    line["server_threads"] = conns + 1
                if server == "iterative" and conns > 1:
                    line["status"] = "degraded"
                    line["errors"]["timeout"] = conns - 1
                    line["reason"] = (f"{conns - 1} of {conns} connections got no echo within 1 s "
                                      f"(timeout): a serial server serves one client at a time")
                lines.append(_line(server, family, lesson, conns, size, None, repeat, started,
                                   **line))
            # io_uring is not available here: one skipped line per cell, as the runner writes
            if repeat == 0:
                lines.append(_line("io_uring", "async", "09", conns, size, None, 0, started,
                                   status="skipped", reason="io_uring_setup() failed: EPERM "
                                   "(blocked by the container's seccomp profile)"))
        for rate in rates:
            for server in ("threads", "epoll"):
                second += 3
                started = f"2026-11-25T13:{15 + second // 60:02d}:{second % 60:02d}+00:00"
                rps, p50, p99, p9999, cpu, ctx = OPEN[(server, rate)]
                line = _measured(rps[repeat], KIB, 16, (p50, p99, p9999), cpu, ctx,
                                 CLOSED[(server, 16, KIB)][6], False,
                                 jitter=(1.0, 1.05)[repeat], rate=rate)
                lines.append(_line(server, *families[server], 16, KIB, rate, repeat, started,
                                   **line))
    meta = {
        "run_id": "20261125-131500-quick", "created": "2026-11-25T13:15:00+00:00",
        "profile": "quick", "git_commit": "2415a4f", "git_dirty": False,
        "machine": {"cpu_model": "Intel(R) Core(TM) i5-7200U CPU @ 2.50GHz", "cores_logical": 2,
                    "cores_physical": 2, "smt": False, "kernel": "6.8.0-45-generic",
                    "os": "Linux x86_64", "memory_bytes": 8_254_611_456, "hostname": "laptop"},
        "python": {"version": "3.11.7", "implementation": "CPython",
                   "executable": "/home/ada/lab/.venv/bin/python"},
        "packages": {"uvloop": "0.23.0", "trio": "0.35.0", "gevent": "26.9.0", "psutil": "7.2.2",
                     "hdrhistogram": "0.10.8", "liburing": "2026.3.30"},
        "gevent_backend": "libev-cext",
        "io_uring": {"available": False,
                     "reason": "io_uring_setup() failed: EPERM (blocked by the container's "
                               "seccomp profile)"},
        "pinning": {"server_cpus": [1], "client_cpus": [0],
                    "note": "server on CPUs [1], client (load generator) on CPUs [0]"},
        "limits": {"nofile_soft": 20000, "nofile_hard": 20000, "somaxconn": 4096},
        "servers": [name for name, _, _ in FIXTURE_SERVERS],
        "skipped_servers": {"io_uring": "io_uring_setup() failed: EPERM (blocked by the "
                                        "container's seccomp profile)"},
        "cells": [{"conns": c, "size_bytes": s, "rate": None} for c, s in closed_cells]
        + [{"conns": 16, "size_bytes": KIB, "rate": r} for r in rates],
        "repeats": 2, "warmup_s": 0.5, "measure_s": MEASURE_S, "duration_s": 251.3,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    with open(directory / "results.jsonl", "w") as f:
        for line in lines:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")


C10K = 10_000
SHARES = (0.5, 0.9)


def c10k_lines() -> list[dict]:
    """A 10,000-connection cell as the full profile records it (epoll and uvloop hold; threads is
    degraded by the GIL; the bench's guard stopped fork; iterative is skipped as serial), and
    open loop at 50 % and 90 % of each server's own peak for uvloop and epoll."""
    lines = []
    held = {"epoll": ((81800, 80500), 120_000, 150_000, 170_000, 12.0, 0.01, 271),
            "uvloop": ((84500, 83000), 110_000, 140_000, 160_000, 11.4, 0.01, 1380),
            "threads": ((15600, 14900), 60_000, 2_100_000, 2_500_000, 63.0, 1.1, 26000)}
    started = "2026-11-25T13:40:00+00:00"
    for repeat in range(2):
        for server, family, lesson in FIXTURE_SERVERS:
            if server == "iterative":
                lines.append(_line(server, family, lesson, C10K, KIB, None, repeat, started,
                                   status="skipped", reason="serial server: serves one client at "
                                   "a time, so more connections only queue"))
                continue
            if server == "fork":
                lines.append(_line(server, family, lesson, C10K, KIB, None, repeat, started,
                                   status="failed", rps=None, latency_us=None, hist=None,
                                   reason="stopped by the bench at 6,512 processes, 17.9 GiB of "
                                          "memory used since the start: memory would run out "
                                          "(available memory fell from 21.3 to 1.9 GiB; the guard "
                                          "keeps 2.0 GiB free)",
                                   errors={"connect": 0, "reset": 6512, "mismatch": 0,
                                           "unserved": 0, "timeout": 0},
                                   server_processes=6512, server_threads=6512,
                                   exit={"code": -9, "elapsed_s": 0.0, "clean": False}))
                continue
            rps, p50, p99, p9999, cpu, ctx, mem = held[server]
            line = _measured(rps[repeat], KIB, C10K, (p50, p99, p9999), cpu, ctx, mem, False,
                             jitter=(1.0, 1.03)[repeat])
            line.update(conns_established=C10K, settle_s=0.1, server_fds=C10K + 5)
            line["errors"]["unserved"] = 0
            if server == "threads":
                line.update(status="degraded", settle_s=12.1, server_threads=C10K + 1)
                line["errors"]["unserved"] = 2553
                line["reason"] = ("2,553 of 10,000 connections got no echo at all in 2.5 s "
                                  "(connected, never served), though the server ran a thread for "
                                  "each (10,001 threads): the ones left out waited for the GIL")
            lines.append(_line(server, family, lesson, C10K, KIB, None, repeat, started, **line))
    for server in ("uvloop", "epoll"):
        family, lesson = next((f, le) for n, f, le in FIXTURE_SERVERS if n == server)
        peak = statistics.median(held[server][0])
        for share in SHARES:
            for repeat in range(2):
                rate = round(peak * share)
                completed = rate * (0.999 if share < 0.8 else 0.97)
                line = _measured(completed, KIB, 16, (150, 600 if share < 0.8 else 9000,
                                                     3000 if share < 0.8 else 40_000),
                                 9.0, 0.1, CLOSED[(server, 16, KIB)][6], False,
                                 jitter=(1.0, 1.02)[repeat], rate=rate)
                line.update(rate_fraction_of_peak=share, peak_rps=peak, peak_conns=C10K)
                lines.append(_line(server, family, lesson, 16, KIB, rate, repeat, started,
                                   **line))
    return lines


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-fixture"]:
        write_fixture()
        print(f"wrote {FIXTURE}")
    else:
        sys.exit("usage: python tests/test_report.py --write-fixture")


def test_c100k_sweep_says_the_most_each_server_held_and_what_stopped_it(tmp_path):
    """`make bench-c100k`'s cells (a fixed total rate over ever more connections): per server the
    largest count held with an echo on every connection, its costs there, and the next count's
    fate, a skip for this machine's fd limit said once, in full, under the table."""
    rate, counts = 10_000.0, (1_000, 10_000, 30_000)
    fd_limit = ("the server needs about 30,032 open files, but the hard limit (ulimit -Hn) is "
                "20,000: raise it as root (ulimit -n 30032, or LimitNOFILE / limits.conf), then "
                "run again")
    lines = []
    for server, family, lesson, held_up_to, mem in (("epoll", "multiplexed", "08", 10_000, 260),
                                                    ("uvloop", "async", "09", 30_000, 1900),
                                                    ("asyncio", "async", "09", 1_000, 2500)):
        for i, conns in enumerate(counts):
            started = f"2026-12-02T02:0{i}:00+00:00"
            if conns > 20_000 and server != "uvloop":
                lines.append(_line(server, family, lesson, conns, KIB, rate, 0, started,
                                   status="skipped", reason=fd_limit))
                continue
            line = _line(server, family, lesson, conns, KIB, rate, 0, started,
                         **_measured(rate, KIB, conns, (200, 900, 5000), 30.0, 1.0, mem, False,
                                     jitter=1.0, rate=rate))
            line.update(conns_established=conns, connect_s=conns / 4000)
            if conns > held_up_to:
                line.update(status="degraded", errors=line["errors"] | {"unserved": 2_000},
                            reason="2,000 of 10,000 connections got no echo")
            lines.append(line)
    run_dir = tmp_path / "c100k"
    run_dir.mkdir()
    (run_dir / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "meta.json").write_text(json.dumps({
        "run_id": "c100k", "profile": "c100k", "servers": ["epoll", "uvloop", "asyncio"],
        "skipped_servers": {}, "cells": [{"conns": c, "size_bytes": KIB, "rate": rate}
                                         for c in counts]}))
    v = view.load(run_dir)
    cells = view.scale_cells(v)
    assert [c.conns for c in cells] == list(counts)
    section = blocks.to_markdown(document.scale_section(v, cells))
    rows = {re.match(r"\| `([^`]+)`", r)[1]: [c.strip() for c in r.split("|")[1:-1]]
            for r in section.splitlines() if r.startswith("| `")}
    assert [rows[s][2] for s in ("uvloop", "epoll", "asyncio")] == ["30,000", "10,000", "1,000"]
    assert list(rows) == ["uvloop", "epoll", "asyncio"]  # the most held first
    assert rows["uvloop"][-1] == "held every count offered"
    assert rows["epoll"][-1] == "30,000: skipped [1]" and rows["asyncio"][-1] == "10,000: degraded [2]"
    assert f"- [1] {fd_limit}" in section and "- [2] 2,000 of 10,000 connections" in section
    assert section.count("ulimit -Hn") == 1 and "is this machine's limit, not the model's" in section
    assert rows["epoll"][3] == "260 B" and rows["epoll"][4] == "4,000" and rows["epoll"][6] == "10,004"
    assert "At 10,000 connections, held by 2 servers, memory per connection went from 260 B " \
        "(epoll) to 1.86 KiB (uvloop)" in section
    head = blocks.to_markdown([document.headline(v, None)])
    assert "30,000: uvloop; 10,000: epoll; 1,000: asyncio" in head
    assert "Convergence" not in head  # one round: no CI to speak of
    assert "the ramp's own pace" in section  # every server accepted at 4,000/s
    from bench.report.series import memory_points
    _, mem_cells, points = memory_points(v)  # no closed-loop cell: the sweep's counts
    assert mem_cells == cells and points[("epoll", cells[1])].value == 260
    assert "Convergence" not in head  # one round: no CI to speak of
    assert "the ramp's own pace" in section  # every server accepted at 4,000/s
    from bench.report.series import memory_points
    _, mem_cells, points = memory_points(v)  # no closed-loop cell: the sweep's counts
    assert mem_cells == cells and points[("epoll", cells[1])].value == 260


def test_the_references_own_spread_is_said_as_the_machines_noise(tmp_path):
    """Steal and foreign CPU miss a host whose other tenants slow everything alike; the C
    reference, the same program every round, shows it: its spread over the rounds is said."""
    from bench.report import notes

    lines = []
    for rnd, rps in enumerate((100_000.0, 120_000.0, 140_000.0, 160_000.0)):
        for server, factor in (("c-epoll", 1.0), ("epoll", 0.8)):
            line = _line(server, "multiplexed", "08", 16, KIB, None, rnd,
                         f"2026-12-02T02:00:0{rnd}+00:00",
                         **_measured(rps * factor, KIB, 16, (100, 300, 900), 7.0, 1.0, 300, False,
                                     jitter=1.0))
            line.update(round=rnd, is_reference=server == "c-epoll", schema=2)
            lines.append(line)
    results.annotate(lines)
    run_dir = tmp_path / "ref"
    run_dir.mkdir()
    (run_dir / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (run_dir / "meta.json").write_text(json.dumps({"run_id": "ref", "profile": "quick",
                                                   "servers": ["epoll"], "schema": 2}))
    text = notes.reference_noise(view.load(run_dir))
    assert text.startswith("The C reference, the same program in every round, ran at 100,000 to "
                           "160,000 req/s over 4 rounds at 16 conns × 1 KiB (coefficient of "
                           "variation 20%)"), text
    lines = [x for x in lines if x["round"] < 2]  # two rounds: too few to say
    (run_dir / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert notes.reference_noise(view.load(run_dir)) is None
