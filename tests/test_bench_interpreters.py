"""The interpreter as a bench dimension (`bench run --python SPEC`, `make bench PYTHONS=...`): a
two-interpreter smoke run end to end, and the choices around it: bad specs, a missing
interpreter, a package missing under one interpreter, a free-threaded build (simulated, as in
tests/test_interpreters.py: no such build exists on this machine), --resume.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import servers
from bench import results
from bench.run import cli, console
from bench.run.subject import Subject
from servers import interpreters, launch
from tests.test_interpreters import free_threaded  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent


def other_python() -> interpreters.Interpreter:
    """A second interpreter for the smoke run: the newest 3.12+ here (LAB_TEST_PYTHON picks
    another), else any other CPython 3.11+; skips with the reason where there is none."""
    from tests.conftest import _second_python
    here = interpreters.current()
    found, why = _second_python()
    if found is not None and found is not here:
        return found
    for minor in range(20, 10, -1):
        try:
            other = interpreters.get(f"3.{minor}")
        except interpreters.Unavailable:
            continue
        if other is not here:
            return other
    pytest.skip(f"no second Python interpreter here to measure beside {here.label}: "
                f"{why or 'the newest 3.12+ is the one running'}")


def test_a_two_interpreter_run_measures_each_python_server_under_each(tmp_path):
    second = other_python()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--conns", "1",
         "--servers", "epoll,subinterpreters", "--python", sys.executable,
         "--python", second.spec, "--python", "3.99", "--out", str(tmp_path), "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    said = [line for line in done.stdout.splitlines() if "3.99" in line]
    assert len(said) == 1 and "unavailable" in said[0] and "pyenv install" in said[0], said
    assert f"NAME@{second.tag}" in done.stdout, "the plan says how the servers are named"
    (run_dir,) = tmp_path.iterdir()
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["schema"] == results.SCHEMA_VERSION == 3
    listed = {i.get("asked"): i for i in meta["interpreters"]}
    assert listed[sys.executable]["default"] and listed[sys.executable]["available"]
    assert listed[second.spec]["version"] == second.version and not listed[second.spec]["default"]
    assert [i["reason"] for i in meta["interpreters"] if not i["available"]] == [
        next(i["reason"] for i in meta["interpreters"] if i.get("spec") == "3.99")]
    records = {r["server"]: r for r in
               map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}
    here = interpreters.current()
    ours, theirs = records["epoll"], records[f"epoll@{second.tag}"]
    for record, interp in ((ours, here), (theirs, second)):
        assert record["status"] == "ok" and record["rps"] > 0, record
        got = record["interpreter"]
        assert (got["version"], got["tag"], got["executable"]) == (
            interp.version, interp.tag, interp.python)
        assert got["gil_enabled"] is True and got["free_threaded"] is False
        assert got["build"]["compiler"] and "configure" in got["build"]
    assert records[results.REFERENCE]["interpreter"] is None, "the C reference runs once"
    report = (run_dir / "report.md").read_text()
    assert "**Interpreters**: the Python servers ran under" in report
    assert "## Each Python model under each interpreter at 1 conn × 1 KiB" in report
    assert (run_dir / "charts" / "interpreters.png").is_file()
    assert f"**{second.label} against {here.label}**" in report
    assert results.Measurement.from_dict(theirs).model == "epoll"
    # subinterpreters needs 3.12+: measured under the interpreter that has it, skipped (with
    # the fix) under the one that has not
    for interp in (here, second):
        name = "subinterpreters" + ("" if interp is here else f"@{interp.tag}")
        ok = servers.get("subinterpreters").availability(interp)[0]
        assert records[name]["status"] == ("ok" if ok else "skipped"), records[name]
        if not ok:
            assert "INTERPRETER=3.13" in records[name]["reason"]
            assert records[name]["interpreter"]["version"] == interp.version


@pytest.mark.parametrize(("spec", "says"), [
    ("not a python", "names no interpreter"),
    ("/no/such/python", "no such file"),
])
def test_a_bad_interpreter_spec_exits_2_naming_the_fix(spec, says, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--profile", "smoke", "--python", spec, "--no-progress"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert says in err and "give" in err and "Traceback" not in err, err


def test_resume_takes_its_interpreters_from_the_run_not_from_the_command_line(capsys, tmp_path):
    (tmp_path / "meta.json").write_text("{}")
    with pytest.raises(SystemExit) as stop:
        cli.main(["--resume", str(tmp_path), "--python", "3.13"])
    assert stop.value.code == 2 and "leave out --python" in capsys.readouterr().err


def test_a_free_threaded_interpreter_is_labelled_and_only_the_servers_it_cannot_run_are_skipped(
        free_threaded):  # noqa: F811
    interp = interpreters.get(free_threaded)
    names = ["threads", "threadpool", "uvloop-streams", "trio", "c-epoll"]
    chosen, skipped, not_run = cli.choose_available(names, [interpreters.current(), interp])
    by_name = {s.name: s for s in chosen}
    tag = interp.tag
    assert tag.endswith("t") and {f"threads@{tag}", f"threadpool@{tag}", f"trio@{tag}",
                                  "threads", "c-epoll"} <= set(by_name)
    assert list(skipped) == [f"uvloop-streams@{tag}"], "only the server that needs uvloop"
    assert "uvloop" in skipped[f"uvloop-streams@{tag}"]
    assert not_run[f"uvloop-streams@{tag}"].interpreter["free_threaded"] is True
    field = by_name[f"threads@{tag}"].interpreter
    assert field["free_threaded"] is True and field["gil_enabled"] is False
    assert field["label"].endswith("t")
    assert by_name["c-epoll"].interpreter is None and by_name["threads"].python is None
    state = [{**i.as_dict(), "default": i is interpreters.current(), "available": True}
             for i in (interpreters.current(), interp)]
    text = console.interpreters_text(state)
    assert f"NAME@{tag}, free-threaded" in text and "plain names" in text
    # what --resume finds the subject by
    again = Subject.from_meta(by_name[f"threads@{tag}"].as_meta())
    assert again.name == f"threads@{tag}" and again.entry.python == interp.python


def test_the_gil_fact_of_a_readiness_line_is_read_back():
    line = "serving threads on 127.0.0.1:4242 (pid 42, GIL disabled)"
    assert launch.ready_gil(line) is False
    assert launch.ready_gil(line.replace("disabled", "enabled")) is True
    assert launch.ready_gil("serving epoll on 127.0.0.1:4242 (pid 42, level-triggered)") is None
    assert launch.ready_gil(None) is None


def _with_interpreters(tmp_path: Path, name: str, tags: list[str]) -> Path:
    """The report's fixture (an old run: no interpreter in its records) recorded again as a run
    whose Python servers ran under the lab's 3.11.7 and, for each of `tags`, as NAME@TAG."""
    import shutil
    run_dir = tmp_path / name
    shutil.copytree(ROOT / "tests" / "fixtures" / "run_small", run_dir)
    records = []
    for text in (run_dir / "results.jsonl").read_text().splitlines():
        record = json.loads(text)
        record["interpreter"] = {"tag": "3.11", "label": "3.11.7", "version": "3.11.7",
                                 "free_threaded": False, "gil_enabled": True}
        records.append(record)
        for tag in tags:
            label = tag.rstrip("t") + ".0" + ("t" if tag.endswith("t") else "")
            records.append({**record, "server": f"{record['server']}@{tag}",
                            "rps": record.get("rps") and record["rps"] * 1.1,
                            "interpreter": {**record["interpreter"], "tag": tag, "label": label,
                                            "free_threaded": tag.endswith("t"),
                                            "gil_enabled": not tag.endswith("t")
                                            or record["server"] == "uvloop"}})
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = json.loads((run_dir / "meta.json").read_text())
    meta["run_id"] = name
    (run_dir / "meta.json").write_text(json.dumps(meta))
    return run_dir


def test_compare_says_when_the_runs_python_servers_ran_under_other_interpreters(tmp_path, capsys):
    from bench import compare
    old = ROOT / "tests" / "fixtures" / "run_small"  # schema 1: its servers ran under 3.11.7
    same = _with_interpreters(tmp_path, "same", [])
    both = _with_interpreters(tmp_path, "both", ["3.13"])
    assert results.read_run(both).interpreters == [
        {"tag": "3.11", "label": "3.11.7", "default": True, "free_threaded": False},
        {"tag": "3.13", "label": "3.13.0", "default": False, "free_threaded": False}]
    compare.main([str(old), str(same)])
    assert "  Python: same, 3.11.7 (plain names)\n" in capsys.readouterr().out, \
        "3.11.7 both, said or read"
    compare.main([str(same), str(both)])
    text = capsys.readouterr().out
    assert ("  Python: 3.11.7 (plain names) → 3.11.7 (plain names), 3.13.0 (NAME@3.13)\n"
            in text), text
    assert "only in B: iterative@3.13 (4 cells); threads@3.13 (" in text, text


def test_the_report_of_a_free_threaded_run_labels_it_and_says_where_the_gil_came_back(tmp_path):
    from bench.report import blocks, charts, document, html, series, view
    v = view.load(_with_interpreters(tmp_path, "ft", ["3.14t"]))
    focus = view.headline_cell(v)
    chart = series.interpreters(v, focus)  # the one chart, drawn both ways, and the text
    charts.draw_interpreters(v, chart, tmp_path / "interpreters.png")
    assert (tmp_path / "interpreters.svg").is_file()
    legend = [t.name for t in html.fig_interpreters(v, chart).data]
    assert legend == ["3.11.7, plain names", "3.14.0t (free-threaded), NAME@3.14t"]
    text = blocks.to_markdown(document.report(v, [chart], focus))
    assert ("the Python servers ran under 3.11.7 (plain names, the bench's own) and 3.14.0t "
            "(free-threaded) (named NAME@3.14t)") in text
    assert "**3.14.0t (free-threaded) against 3.11.7**" in text
    assert "3.14.0t is a free-threaded build" in text
    assert "the GIL was back on in uvloop@3.14t" in text


def test_with_several_interpreters_the_quick_profile_keeps_the_cells_where_they_differ():
    from bench.run import profiles
    quick = profiles.PROFILES["quick"]
    assert profiles.with_interpreters(quick, 1) is quick
    two = profiles.with_interpreters(quick, 2)
    assert two.cells == [results.CellKey(16, 1024), results.CellKey(128, 1024)]
    assert two.budget_s == quick.budget_s + profiles.INTERPRETER_BUDGET_S
    assert "2 interpreters" in two.description and quick.cells != two.cells, "PROFILES unchanged"
    full = profiles.PROFILES["full"]
    assert profiles.with_interpreters(full, 3) is full


def test_a_measurement_records_the_gil_as_the_server_said_it_under_a_free_threaded_build(
        free_threaded, monkeypatch):  # noqa: F811
    from bench.run import profiles
    from bench.run.measure import measure
    interp = interpreters.get(free_threaded)
    assert interp.gil_enabled is False, "off at start-up"
    subject = Subject.registry(servers.get("threads"), interp=interp)
    profile = profiles.Profile("t", [], 1, warmup_s=0.05, measure_s=0.2, description="test")
    cell = results.CellKey(2, 1024)
    record = measure(subject, cell, 0, profile, None, None)
    assert record["status"] == "ok", record
    assert record["server"] == f"threads@{interp.tag}"
    assert record["interpreter"]["free_threaded"] is True
    assert record["interpreter"]["executable"] == free_threaded
    assert record["interpreter"]["gil_enabled"] is False
    # the server imports an extension without free-threading support: its GIL comes back on,
    # which only its readiness line can tell
    monkeypatch.setenv("LAB_TEST_IMPORT_FAKE_EXT", "1")
    record = measure(subject, cell, 0, profile, None, None)
    assert record["status"] == "ok" and record["interpreter"]["gil_enabled"] is True, record


def test_with_no_interpreter_asked_for_here_and_nothing_else_to_run_it_exits_2_saying_so(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--python", "3.99", "--servers", "epoll", "--no-reference", "--no-progress"])
    captured = capsys.readouterr()
    assert stop.value.code == 2
    assert "--python 3.99: unavailable" in captured.out and "pyenv install 3.99" in captured.out
    assert "no interpreter asked for with --python is here" in captured.err
