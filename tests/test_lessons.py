"""Every lesson runs in quick mode and prints every field its recorded full run has."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(p.stem for p in (ROOT / "lessons").glob("[0-9][0-9]_*.py"))
RECORDS = ROOT / "docs" / "results" / "lessons"


def test_every_lesson_has_a_recorded_run():
    for name in SCRIPTS:
        assert (RECORDS / f"{name}.json").exists(), f"{name}: run `make lessons-record` and commit it"


QUICK_TIMEOUT_S = 90  # a --quick run takes seconds (10 s for lesson 09 on a 2-core VM)


def run_quick(name: str, out: Path) -> subprocess.CompletedProcess:
    """`python -m lessons.NAME --quick`; one that hangs past QUICK_TIMEOUT_S fails the test with
    where every thread of it was: faulthandler prints their stacks on SIGABRT."""
    argv = [sys.executable, "-X", "faulthandler", "-m", f"lessons.{name}", "--quick",
            "--json", str(out)]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=QUICK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = proc.communicate(timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # and whatever it started
            proc.wait()
        pytest.fail(f"{name} --quick still ran after {QUICK_TIMEOUT_S} s; where it was:\n"
                    f"{stderr[-6000:]}\n--- its output, last lines:\n{stdout[-3000:]}")
    return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)


@pytest.mark.parametrize("name", SCRIPTS)
def test_lesson_quick_prints_every_recorded_field(name, tmp_path):
    out = tmp_path / f"{name}.json"
    result = run_quick(name, out)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert "notice:" in result.stdout, f"{name} prints no 'notice:' line"
    quick = json.loads(out.read_text())
    record_path = RECORDS / f"{name}.json"
    if not record_path.exists():
        pytest.fail(f"{name}: no recorded run to compare with (make lessons-record)")
    recorded = json.loads(record_path.read_text())
    seen = set(quick["measurements"]) | set(quick["skipped"])
    missing = [label for label in recorded["measurements"] if label not in seen]
    assert not missing, f"{name} --quick lacks fields of its recorded run: {missing}"
    for label in quick["measurements"]:
        assert f"{label}:" in result.stdout
    # The reader's run is set beside the recorded one, figure by figure (lessons.common.compare).
    # (its heading is wrapped to 80 columns: a long path puts the parenthesis on the next line)
    assert "-- yours against recorded (" in " ".join(result.stdout.split()), (
        f"{name} does not compare with its recording")
    for label in quick["measurements"]:
        if label in recorded["measurements"]:
            assert re.search(rf"^  {re.escape(label)}:\s+yours ", result.stdout, re.M), (
                f"{name}: {label!r} is not set beside its recorded value")
    # And draws its own pictures (under results/lessons/, never over the committed ones).
    from lessons.figures import lesson_module
    for stem in getattr(lesson_module(name), "PICTURES", {}):
        assert f"picture: results/lessons/{name[:2]}-{stem}.png" in result.stdout, (
            f"{name} did not draw {stem}: {result.stdout[-2000:]}")


# -- The CPU topology on machines this one is not (lessons/cpus.py, lesson 02's SMT section) ---------


def fake_sys(tmp_path: Path, siblings: dict[int, str], *, kinds: dict[str, str] | None = None,
             capacity: dict[int, int] | None = None, legacy: bool = False) -> Path:
    """A /sys tree: cpuN/topology/core_cpus_list (thread_siblings_list if `legacy`), the package,
    and optionally Intel's cpu_core/cpu_atom lists or ARM's cpu_capacity."""
    for cpu, listed in siblings.items():
        top = tmp_path / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
        top.mkdir(parents=True)
        (top / ("thread_siblings_list" if legacy else "core_cpus_list")).write_text(listed + "\n")
        (top / "physical_package_id").write_text("0\n")
        if capacity:
            (top.parent / "cpu_capacity").write_text(f"{capacity[cpu]}\n")
    for name, listed in (kinds or {}).items():
        (tmp_path / "devices" / name).mkdir(parents=True)
        (tmp_path / "devices" / name / "cpus").write_text(listed + "\n")
    return tmp_path


def test_topology_finds_smt_siblings_and_the_pairs_lesson_02_compares(tmp_path):
    from lessons import cpus
    root = fake_sys(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})  # 2 cores x 2 threads
    top = cpus.topology([0, 1, 2, 3], root)
    assert top.cores == [(0, 2), (1, 3)] and top.smt_per_core == 2 and top.packages == 1
    assert not top.hybrid
    assert cpus.sibling_pairs(top) == ((0, 2), (0, 1))  # two threads of one core; two cores
    legacy = cpus.topology([0, 1, 2, 3], fake_sys(tmp_path / "old", {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3"},
                                                  legacy=True))
    assert legacy.cores == [(0, 1), (2, 3)]  # thread_siblings_list, before Linux 5.7
    alone = cpus.topology([0, 1], fake_sys(tmp_path / "vm", {0: "0", 1: "1"}))
    assert alone.smt_per_core == 1 and cpus.sibling_pairs(alone) == (None, (0, 1))


def test_split_by_core_never_parts_siblings_and_deals_each_kind_of_core_evenly(tmp_path):
    from lessons import cpus
    # Intel hybrid: 2 performance cores with 2 threads each (0-3), 4 efficiency cores (4-7)
    root = fake_sys(tmp_path, {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3", 4: "4", 5: "5", 6: "6", 7: "7"},
                    kinds={"cpu_core": "0-3", "cpu_atom": "4-7"})
    top = cpus.topology(list(range(8)), root)
    assert top.hybrid and [top.kind_of[c] for c in (0, 3, 4, 7)] == ["P", "P", "E", "E"]
    server, client = cpus.split_by_core(top)
    assert set(server) | set(client) == set(range(8)) and not set(server) & set(client)
    for core in top.cores:  # a core's hardware threads stay on one side
        assert set(core) <= set(server) or set(core) <= set(client)
    assert sorted(top.kind_of[c] for c in server) == sorted(top.kind_of[c] for c in client)  # 1 P + 2 E each
    assert cpus.sibling_pairs(top) == ((0, 1), (0, 2))  # the separate pair is two P-cores, not a P and an E
    two = cpus.topology([0, 1, 2, 3], fake_sys(tmp_path / "small", {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3"}))
    assert cpus.split_by_core(two) == (None, None)  # 2 physical cores: both share every CPU


def test_core_kinds_from_cpu_capacity_on_big_little(tmp_path):
    from lessons import cpus
    root = fake_sys(tmp_path, {c: str(c) for c in range(4)}, capacity={0: 446, 1: 446, 2: 1024, 3: 1024})
    assert cpus.core_kinds([0, 1, 2, 3], root) == {0: "E", 1: "E", 2: "P", 3: "P"}
    same = fake_sys(tmp_path / "same", {c: str(c) for c in range(2)}, capacity={0: 1024, 1: 1024})
    assert cpus.core_kinds([0, 1], same) == {0: "", 1: ""}


def test_lesson_02_measures_smt_where_siblings_exist_and_says_why_not_elsewhere(tmp_path, monkeypatch):
    from lessons import cpus
    from lessons.common import Lesson, parse_args
    from lessons.figures import lesson_module
    lesson02 = lesson_module("02")
    top = cpus.topology([0, 1, 2, 3], fake_sys(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}))
    pinned = []

    def fake_in_processes(work, arg, n, cpus_given=None):  # what pinning two children would take
        pinned.append(tuple(cpus_given))
        return 1.0 if tuple(cpus_given) == (0, 2) else 0.6  # siblings share a core: slower

    monkeypatch.setattr(lesson02, "in_processes", fake_in_processes)
    lesson = Lesson("02", "test", parse_args(None, ["--quick"]))
    notices = lesson02.smt(lesson, top, quick=True)
    measured = lesson.measurements[lesson02.SMT_LABEL]
    assert measured["value"] == pytest.approx(0.6) and "(0, 2) vs (0, 1)" in measured["unit"]
    assert set(pinned) == {(0, 2), (0, 1)} and len(pinned) == 4  # interleaved, twice each in quick mode
    assert "0.6x" in notices[0]
    vm = Lesson("02", "test", parse_args(None, ["--quick"]))
    assert lesson02.smt(vm, cpus.topology([0, 1], fake_sys(tmp_path / "vm", {0: "0", 1: "1"})), True) == []
    assert "no SMT siblings" in vm.skipped[lesson02.SMT_LABEL]


# -- Yours against recorded, at a terminal (lessons/common.py) -------------------------------------------


def test_yours_against_recorded_fits_80_columns_and_keeps_every_figure():
    from lessons.common import Row, row_lines
    short = row_lines(Row("speedup, threads", "0.953 x", "0.71 x", "within noise"))
    assert short == ["  speedup, threads: yours 0.953 x, recorded 0.71 x: within noise"]
    long = Row("same order: rounds of both locks, 20,000 per thread, waits that gave up",
               "3.13.0 (/home/someone/checkout/.venv-3.13/bin/python)", "skipped",
               "not in the recorded run (skipped there: no free-threaded CPython (3.13t or newer) here)")
    lines = row_lines(long)
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0] == f"  {long.label}:"
    text = " ".join(line.strip() for line in lines[1:])
    assert text.startswith(f"yours {long.yours}, recorded skipped: not in the recorded run")
    assert text.endswith("(3.13t or newer) here)")


# -- Lesson 05 under other interpreters: a free-threaded one simulated (tests/test_interpreters.py) ---------

from tests.test_interpreters import free_threaded  # noqa: E402, F401 (a fixture)


def _interpreters_section(monkeypatch, python: str):
    import argparse
    import importlib

    from lessons.common import Lesson
    lesson_05 = importlib.import_module("lessons.05_threads")
    monkeypatch.setattr(lesson_05, "free_threaded_python", lambda: (python, ""))
    monkeypatch.setattr(lesson_05, "newer_python", lambda: (None, "no CPython 3.12+ here (simulated)"))
    lesson = Lesson("05", "Threads", argparse.Namespace(quick=True, json=None))
    return lesson, lesson_05.interpreters_section(lesson, 2, 20_000, 1)


def test_lesson_05_runs_the_threads_under_a_free_threaded_python_where_one_exists(
        free_threaded, monkeypatch):  # noqa: F811
    import platform
    lesson, out = _interpreters_section(monkeypatch, free_threaded)
    m = lesson.measurements
    assert m["free-threaded: python"]["value"] == f"{platform.python_version()}t ({free_threaded})"
    for label in ("free-threaded: cpu-bound, one thread", "free-threaded: cpu-bound, threads"):
        assert m[label]["value"] > 0 and m[label]["unit"] == "s"
    speedup = m["speedup, free-threaded threads"]["value"]
    assert speedup == pytest.approx(m["free-threaded: cpu-bound, one thread"]["value"]
                                    / m["free-threaded: cpu-bound, threads"]["value"])
    assert out["free-threaded"] == speedup and out["free_threaded_version"].endswith("t")
    assert lesson.skipped["3.12+: python"] == "no CPython 3.12+ here (simulated)"
    assert "subinterpreters" not in out


def test_lesson_05_does_not_count_a_free_threaded_run_whose_gil_came_back(free_threaded, monkeypatch):  # noqa: F811
    monkeypatch.setenv("LAB_TEST_IMPORT_FAKE_EXT", "1")  # the child imports an extension that needs the GIL
    lesson, out = _interpreters_section(monkeypatch, free_threaded)
    assert "free-threaded" not in out
    assert "GIL enabled" in lesson.skipped["free-threaded: python"]
    assert "see 'free-threaded: python'" in lesson.skipped["speedup, free-threaded threads"]


def test_lesson_05_says_how_to_get_a_free_threaded_python_where_there_is_none(monkeypatch):
    from lessons import parallel
    from servers import interpreters

    def nowhere(spec):
        raise interpreters.Unavailable(f"no {spec} here (simulated)")
    monkeypatch.setattr(interpreters, "find", nowhere)
    python, why = parallel.free_threaded_python()
    assert python is None
    assert "uv python install 3.14t" in why and "pyenv install 3.14t" in why


def test_lesson_06_says_why_and_the_fix_where_there_is_no_newer_python(monkeypatch):
    import argparse
    import importlib

    from lessons import parallel
    from lessons.common import Lesson
    lesson_06 = importlib.import_module("lessons.06_threads_linux")
    why = "no CPython 3.12 or newer here: pyenv install 3.13 (simulated)"
    monkeypatch.setattr(parallel, "newer_python", lambda: (None, why))
    lesson = Lesson("06", "Threads in Linux", argparse.Namespace(quick=True, json=None))
    lesson_06.subinterpreter_section(lesson)
    assert not lesson.measurements
    assert lesson.skipped["3.12+: python"] == why
    assert set(lesson.skipped) == set(lesson_06.SUBINTERPRETER_LABELS.values())


# -- Lesson 11's servers part: the subinterpreters server under a 3.12+ (lessons/_11_servers.py) ------------


def _servers_part(monkeypatch, newer):
    import argparse

    from lessons import _11_servers, parallel
    from lessons.common import Lesson
    started = {}

    def light_under_load(entry, warmup_s, duration_s):  # no server started: which entry, under what
        started[entry.name] = entry
        return {"heavy_rps": 1.0, "echo": 100.0, "probe": 50.0}
    monkeypatch.setattr(_11_servers, "light_under_load", light_under_load)
    monkeypatch.setattr(parallel, "newer_python", lambda: newer)
    lesson = Lesson("11", "Preemptive vs cooperative", argparse.Namespace(quick=False, json=None))
    _11_servers.servers_under_load(lesson)
    return lesson, started


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this interpreter gives each subinterpreter its GIL")
def test_lesson_11_says_why_the_subinterpreters_server_was_not_run_and_the_fix(monkeypatch):
    lesson, started = _servers_part(monkeypatch, (None, "no CPython 3.12+ here (simulated)"))
    assert "subinterpreters" not in started
    why = lesson.skipped["zero-work probe on subinterpreters"]
    assert "one shared GIL" in why and "no CPython 3.12+ here (simulated)" in why
    assert "threads" in started and started["threads"].python is None  # the others run here


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="this interpreter gives each subinterpreter its GIL")
def test_lesson_11_runs_the_subinterpreters_server_under_the_newer_python(monkeypatch):
    from lessons import parallel
    newer, why = parallel.newer_python()
    if not newer:
        pytest.skip(why)
    lesson, started = _servers_part(monkeypatch, (newer, ""))
    assert started["subinterpreters"].python == newer
    assert lesson.measurements["zero-work probe on subinterpreters"]["value"] == 50.0

# -- Lesson 09's side-by-side verdicts (lessons/_09_side.py) ------------------------------------------


def _side_rounds(rps_by_server: dict[str, list[float]], util: float = 0.5) -> dict:
    rounds = []
    for i in range(len(next(iter(rps_by_server.values())))):
        rounds.append({name: {"rps": rps[i], "server_us": 4.0, "client_us": 4.0,
                              "client_util": util, "engine": "c"}
                       for name, rps in rps_by_server.items()})
    return {"cpus": ([1], [0]), "rounds": rounds}


def test_lesson_09_side_by_side_says_tie_when_the_interval_holds_one_and_never_a_win():
    side = importlib.import_module("lessons._09_side")
    names = ("c-epoll", "c-uring", "io_uring")
    run = _side_rounds({"c-epoll": [100, 100, 100, 100], "c-uring": [103, 97, 104, 98],
                        "io_uring": [70, 72, 69, 71]})
    s = side.summary(run, names)
    assert s["c-uring"]["verdict"] == "tie" and s["c-uring"]["ci"][0] < 1 < s["c-uring"]["ci"][1]
    assert s["io_uring"]["verdict"] == "slower" and s["io_uring"]["ci"][1] < 1
    assert s["c-epoll"]["verdict"] is None  # the reference is not judged against itself
    # one round has no interval: no verdict, rather than a win read from a single ratio
    one = side.summary(_side_rounds({"c-epoll": [100], "c-uring": [130], "io_uring": [70]}), names)
    assert one["c-uring"]["verdict"] is None
    # a narrow interval above 1, but the generator saturated against both: a tie, not a win
    busy = _side_rounds({"c-epoll": [100, 100, 100], "c-uring": [102.5, 102.6, 102.4],
                         "io_uring": [70, 71, 69]}, util=0.97)
    assert side.summary(busy, names)["c-uring"]["verdict"].startswith("tie")
    for rnd in busy["rounds"]:
        for row in rnd.values():
            row["client_util"] = 0.5
    assert side.summary(busy, names)["c-uring"]["verdict"] == "faster"


def test_lesson_09_ops_read_what_the_kernel_answered_for_links_timeouts_and_cancels():
    import servers
    ok, why = servers.get("io_uring").availability()
    if not ok:
        pytest.skip(why)
    ops = importlib.import_module("lessons._09_ops")
    good, failed = ops.linked_chains()
    assert good == "send 64, then recv 64"
    assert failed == "send -ENOTSOCK, then recv -ECANCELED"  # the failure cancels the rest
    cqes, ms = ops.link_timeout(0.02)
    assert cqes == "recv -ECANCELED, timeout -ETIME" and ms >= 19
    assert ops.cancel_pending() == "recv -ECANCELED, cancel 0"
