"""The small Go, Erlang, Node and C programs of lessons 10 and 11 (lessons/native/) do what the
lessons say they do. The lessons turn any failure of theirs into a skipped row, so a broken
program would otherwise pass unnoticed until the next recording.

Behaviour only, never timing: fields present, the M:N runtimes carry many units on few OS
threads, the GODEBUG switch reaches the Go runtime, bad arguments exit 2. Each test skips, naming
the install command, where its toolchain is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from servers import build

TIMEOUT_S = 60


def _built(source: str, **kw) -> str:
    try:
        return str(build.build(source, **kw))
    except build.Unavailable as exc:
        pytest.skip(str(exc))


def _erl(beam_dir: str, module: str, *args: str) -> list[str]:
    erl = shutil.which("erl")
    if not erl:
        pytest.skip("no Erlang runtime (erl) on PATH: apt-get install erlang-base")
    return [erl, "+S", "1", "-noshell", "-pa", beam_dir, "-s", module, "main", *args]


def _json(cmd: list[str], env=None) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert done.returncode == 0, f"{cmd[0]} exited {done.returncode}: {done.stderr[-500:]}"
    return json.loads(done.stdout)


def test_mn_go_carries_many_goroutines_on_few_threads():
    r = _json([_built("lessons/native/mn_go.go"), "2000", "1000", "1"])
    assert r["count"] == 2000 and r["gomaxprocs"] == 1
    assert 0 < r["os_threads"] < 50, r  # M:N: 2,000 parked goroutines, a handful of OS threads
    assert r["stack_bytes"] > 0 and r["create_ns"] > 0 and r["switch_ns"] > 0


def test_mn_erlang_carries_many_processes_on_few_threads():
    r = _json(_erl(_built("lessons/native/mn_erlang.erl"), "mn_erlang", "2000", "1000", "1"))
    assert r["count"] == 2000 and r["schedulers"] == 1
    assert 0 < r["os_threads"] < 200, r
    assert r["proc_bytes"] > 0 and r["create_ns"] > 0 and r["switch_ns"] > 0


def _java(*args: str) -> list[str]:
    classes = _built("lessons/native/mn_java.java")
    try:
        java = build.java_runtime()
    except build.Unavailable as exc:
        pytest.skip(str(exc))
    return [java, "-XX:+UseSerialGC", "-Djdk.virtualThreadScheduler.parallelism=1", "-cp", classes, "mn_java", *args]


def test_mn_java_carries_many_virtual_threads_on_few_threads():
    r = _json(_java("2000", "1000", "1"))
    assert r["count"] == 2000 and r["carriers"] == 1
    assert 0 < r["os_threads"] < 100, r  # M:N: 2,000 parked virtual threads, a few dozen OS threads at most
    assert r["heap_bytes"] > 0 and r["create_ns"] > 0 and r["switch_ns"] > 0


@pytest.mark.parametrize("args", [["10", "10"], ["0", "10", "1"]])
def test_mn_java_rejects_bad_arguments(args):
    done = subprocess.run(_java(*args), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2 and done.stderr.startswith("usage"), done.stderr


@pytest.mark.parametrize("godebug", [None, "asyncpreemptoff=1"])
def test_preempt_go_reports_every_tick_and_its_preemption_mode(godebug):
    import os
    env = dict(os.environ, **({"GODEBUG": godebug} if godebug else {}))
    r = _json([_built("lessons/native/preempt_go.go"), "10", "30", "100"], env=env)
    assert r["asyncpreempt"] is (godebug is None)
    assert [t for t, _ in r["series"]] == pytest.approx([10.0 * k for k in range(1, 11)])
    assert r["worst_ms"] == max(late for _, late in r["series"])


def test_preempt_erlang_reports_every_tick():
    r = _json(_erl(_built("lessons/native/preempt_erlang.erl"), "preempt_erlang", "10", "30", "100"))
    assert [t for t, _ in r["series"]] == pytest.approx([10.0 * k for k in range(1, 11)])
    assert r["burn_ms"] > 0


@pytest.mark.parametrize("where", ["inline", "worker"])
def test_preempt_node_reports_every_tick(where):
    script = _built("lessons/native/preempt_node.js")
    r = _json([build.tool("node"), script, "10", "30", "100", where])
    assert r["where"] == where and len(r["series"]) == 10 and r["burn_ms"] > 0


@pytest.mark.parametrize("cmd", [["0", "5", "50", "sometimes"], ["0", "0", "50", "none"], []])
def test_prio_inherit_rejects_bad_arguments(cmd):
    done = subprocess.run([_built("lessons/native/prio_inherit.c", flags=("-pthread",)), *cmd],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2 and done.stderr.startswith(("usage", "prio_inherit:")), done.stderr


def test_prio_inherit_reports_its_protocol_or_why_not():
    done = subprocess.run([_built("lessons/native/prio_inherit.c", flags=("-pthread",)),
                           "0", "1", "20", "inherit"], capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode == 3:  # no permission for SCHED_FIFO: it says so, as JSON
        assert "error" in json.loads(done.stdout)
        return
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["protocol"] == "inherit"


DEADLINE = "lessons/native/deadline.c"


@pytest.mark.parametrize("cmd", [[], ["sometimes", "2000", "10000", "1000", "5"],
                                 ["deadline", "2000", "500", "100", "5"], ["deadline", "100", "10000", "200", "5"],
                                 ["other", "2000", "10000", "1000", "0"]])
def test_deadline_rejects_bad_arguments(cmd):
    done = subprocess.run([_built(DEADLINE, flags=("-pthread",)), *cmd], capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    assert done.returncode == 2 and done.stderr.startswith(("usage", "deadline:")), done.stderr


@pytest.mark.parametrize("policy", ["other", "deadline"])
def test_deadline_reports_every_job_or_why_not(policy):
    """Three 1 ms periods next to the real-time hogs (3 ms of them): every job is reported, or, without
    CAP_SYS_NICE or under a narrowed CPU mask, the refusal is said as JSON."""
    done = subprocess.run([_built(DEADLINE, flags=("-pthread",)), policy, "500", "1000", "200", "3"],
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode == 3:
        assert "error" in json.loads(done.stdout)
        return
    assert done.returncode == 0, done.stderr
    r = json.loads(done.stdout)
    assert r["policy"] == policy and r["jobs"] == 3 and len(r["series"]) == 3 and 0 <= r["missed"] <= 3
    assert r["hogs"] >= 1 and all(response > 0 for _, response in r["series"])


@pytest.mark.parametrize("cmd", [["1"], ["x", "1", "1"], ["0", "1", "1"]])
def test_go_programs_reject_bad_arguments(cmd):
    for source in ("lessons/native/mn_go.go", "lessons/native/preempt_go.go"):
        done = subprocess.run([_built(source), *cmd], capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 2, (source, cmd, done.stdout)


def test_cswitch_measures_both_switches_and_rejects_bad_arguments():
    program = _built("lessons/native/cswitch.c")
    r = _json([program, "1000", "3"])
    assert r["swapcontext_ns"] > 0
    if r["arch"] == "x86_64":
        assert r["register_swap_ns"] > 0  # the assembly ran and came back, 2,000 times
    else:
        assert r["register_swap_ns"] is None
    for bad in ([], ["0", "1"], ["10", "100"]):
        assert subprocess.run([program, *bad], capture_output=True, timeout=TIMEOUT_S).returncode == 2


def test_free_threaded_heartbeat_runs_in_another_interpreter_and_reports_its_gil():
    """Lesson 11 sends its heartbeat to a free-threaded python3.13t+ as source; here the current
    interpreter plays that part, so the code path is exercised on every machine."""
    import importlib
    import sys

    lesson = importlib.import_module("lessons.11_preemptive_vs_cooperative")
    got = lesson.free_threaded_heartbeat(sys.executable)
    assert got["gil"] is getattr(sys, "_is_gil_enabled", lambda: True)()
    assert len(got["series"]) == lesson.TICKS
