"""The registry is the one list that tests, bench and docs read: check it is whole and honest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import servers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, stdin=subprocess.DEVNULL, **kw)


def test_every_entry_is_well_formed():
    names = [s.name for s in servers.SERVERS]
    assert len(names) == len(set(names)), "duplicate server names"
    for s in servers.SERVERS:
        assert s.family in servers.FAMILIES, s
        assert s.lesson.isdigit() and 1 <= int(s.lesson) <= 11, s
        if s.source:  # another language: its one source file, run by servers.native
            path = os.path.join(ROOT, s.source)
            assert s.module == "servers.native", s
        else:
            path = os.path.join(ROOT, *s.module.split(".")) + ".py"
        assert os.path.exists(path), f"{s.name}: {path} missing"
        with open(path) as f:
            source = f.read()
        header = source.split("\n\n", 1)[0] if s.source else source
        opener = {".py": '"""', ".c": "/*", ".go": "//", ".js": "//", ".erl": "%%", ".java": "//"}
        assert source.startswith(opener[os.path.splitext(path)[1]]), (
            f"{s.name}: the file opens with a comment or docstring explaining the model")
        assert f"lesson {int(s.lesson):02d}" in header, f"{s.name}: its header names its lesson"


def test_json_lists_every_server_with_the_contract_fields():
    result = run("-m", "servers", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [e["name"] for e in entries] == [s.name for s in servers.SERVERS]
    for e in entries:
        for key in ("name", "module", "argv", "family", "lesson", "available", "reason", "serial"):
            assert key in e, (e["name"], key)
        assert e["argv"][:2] == ["-m", e["module"]]
        assert isinstance(e["available"], bool)
        assert e["available"] or e["reason"], f"{e['name']}: unavailable without a reason"


def test_table_names_every_server():
    result = run("-m", "servers", env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    for s in servers.SERVERS:
        assert s.name in result.stdout


def test_readme_table_matches_registry():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert servers.markdown_table() in readme, "README's server table is stale: run `make docs`"


def test_serve_unknown_name_exits_2_and_lists_names():
    result = run("-m", "servers", "serve", "no-such-model")
    assert result.returncode == 2
    assert "threads" in result.stderr and "Traceback" not in result.stderr


def test_unavailable_entry_reports_why(monkeypatch):
    entry = servers.Server("x", "servers.threads", "blocking", "05", "test", requires=("no_such_pkg_zz",))
    ok, reason = entry.availability()
    assert not ok and "no_such_pkg_zz" in reason


# A registry entry whose probe crashes its process must leave every command working: the listing,
# the JSON and the bench's plan. The child below adds two such entries and one healthy one to the
# registry and runs each command in-process; had a probe run in-process, the child would die.
CRASHING_REGISTRY = r"""
import dataclasses, json, sys
import pytest

import servers
from servers import __main__ as cli
base = servers.get("threads")
extra = [dataclasses.replace(base, name="crash-" + kind, probe="tests.fixtures.crashing_probes:" + kind)
         for kind in ("sigill", "sigsegv", "fine")]
servers.SERVERS = (*servers.SERVERS, *extra)
servers.BY_NAME.update({s.name: s for s in extra})
cli.SERVERS, cli.BY_NAME = servers.SERVERS, servers.BY_NAME
cli.main([sys.argv[1]] if sys.argv[1] != "plan" else ["--names"])
if sys.argv[1] == "plan":
    from bench.run import cli as run
    chosen, skipped, _ = run.choose_available(["threads", "crash-sigill", "crash-sigsegv", "crash-fine"])
    names = [s.name for s in chosen]
    print(json.dumps({"plan": names, "skipped": skipped}))
"""


@pytest.mark.parametrize("command", ["--json", "table", "plan"])
def test_a_probe_killed_by_a_signal_makes_its_server_unavailable_not_the_command_dead(command):
    result = run("-c", CRASHING_REGISTRY, command if command != "table" else "--markdown",
                 env={**os.environ, "COLUMNS": "250"})
    assert result.returncode == 0, f"the command died: {result.returncode}\n{result.stderr}"
    if command == "--json":
        entries = {e["name"]: e for e in json.loads(result.stdout)}
        assert entries["crash-sigill"]["available"] is False
        assert "probe died with SIGILL" in entries["crash-sigill"]["reason"]
        assert "CPU instructions this CPU lacks" in entries["crash-sigill"]["reason"]
        assert entries["crash-sigsegv"]["available"] is False
        assert "probe died with SIGSEGV" in entries["crash-sigsegv"]["reason"]
        assert entries["crash-fine"]["available"] is True
        assert entries["threads"]["available"] is True
    elif command == "plan":
        *names, last = result.stdout.strip().splitlines()
        answer = json.loads(last)
        assert answer["plan"] == ["threads", "crash-fine"]
        assert "SIGILL" in answer["skipped"]["crash-sigill"]
        assert "SIGSEGV" in answer["skipped"]["crash-sigsegv"]
        assert "crash-fine" in names and "crash-sigill" not in names


def test_table_shows_a_crashing_probe_as_unavailable_with_its_reason():
    script = CRASHING_REGISTRY.replace('cli.main([sys.argv[1]] if sys.argv[1] != "plan" else ["--names"])',
                                       "cli._table()")
    result = run("-c", script, "table", env={**os.environ, "COLUMNS": "300"})
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "crash-sigill" in line)
    assert "SIGILL" in row


def test_the_listing_piped_is_a_line_per_server_and_a_closed_pipe_is_no_error():
    result = run("-m", "servers")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["server", "family", "lesson", "here"]
    assert [line.split()[0] for line in lines[1:]] == [s.name for s in servers.SERVERS]
    # `python -m servers | head -0`: the reader is gone before the listing is written
    proc = subprocess.Popen([sys.executable, "-m", "servers"], cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    stderr = proc.stderr.read()
    assert proc.wait(timeout=60) == 0 and "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr


def test_the_listing_at_an_80_column_terminal_fits_and_gives_every_reason():
    from tests.terminal import at_terminal, visible_width
    code, out = at_terminal([sys.executable, "-m", "servers"], columns=80)
    assert code == 0, out
    lines = out.splitlines()
    assert not [line for line in lines if visible_width(line) > 80], out
    starts = [line.split()[0] for line in lines if line and not line.startswith(" ")]
    for s in servers.SERVERS:
        assert s.name in starts, s.name
        ok, reason = s.availability()
        if not ok:  # the reason, whole, wrapped beneath its server
            assert " ".join(reason.split()) in " ".join(out.split()), s.name
