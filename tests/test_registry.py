"""The registry is the one list that tests, bench and docs read: check it is whole and honest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
        path = os.path.join(ROOT, *s.module.split(".")) + ".py"
        assert os.path.exists(path), f"{s.name}: {path} missing"
        with open(path) as f:
            source = f.read()
        assert source.startswith('"""'), f"{s.name}: module docstring explains the model"
        assert f"lesson {int(s.lesson):02d}" in source, f"{s.name}: docstring names its lesson"


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
