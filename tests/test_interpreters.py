"""servers/interpreters.py: an interpreter from a spec, its venv, its probe; the registry judged
per interpreter. Nothing here reaches a package index: the one venv build installs from a local
folder (PIP_NO_INDEX, PIP_FIND_LINKS), and a free-threaded interpreter is simulated by a wrapper
around this one (no such build exists on this machine), which answers the probe as one would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import servers
from servers import interpreters

ROOT = Path(__file__).resolve().parent.parent


def run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, stdin=subprocess.DEVNULL, env=env)


def newer_python():
    try:
        return interpreters.newest((3, 12), build=False)
    except interpreters.Unavailable as exc:
        pytest.skip(f"no Python 3.12+ with its venv here: {exc}")


# -- a missing interpreter ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["3.99", "python3.99t", "pypy9.9", "/no/such/python"])
def test_a_missing_interpreter_is_unavailable_with_the_fix(spec):
    with pytest.raises(interpreters.Unavailable) as why:
        interpreters.get(spec)
    text = str(why.value)
    assert spec in text
    assert "pyenv install" in text or "give the path of a python" in text, text


def test_a_spec_that_names_nothing_says_what_a_spec_is():
    with pytest.raises(interpreters.Unavailable, match="give a version"):
        interpreters.find("not-a-python")


def test_the_cli_with_a_missing_interpreter_exits_2_naming_it_no_traceback():
    for args in (["--python", "3.99", "--json"], ["--python", "3.99", "serve", "threads"]):
        done = run("-m", "servers", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "3.99" in done.stderr and "pyenv install" in done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""


def test_the_interpreter_running_is_current_whatever_its_spec():
    here = interpreters.current()
    version = ".".join(here.version.split(".")[:2])
    assert interpreters.get(version) is here  # its base: no second venv of the same python
    assert interpreters.get(sys.executable) is here
    assert interpreters.get(None) is here
    assert here.python == sys.executable and here.gil_enabled


# -- the GIL probe ------------------------------------------------------------------------------


def test_the_probe_of_this_interpreter_reports_its_version_build_and_gil():
    answer = interpreters._probe(sys.executable, ("json", "no_such_module_zz"))
    assert answer["version"] == ".".join(map(str, sys.version_info[:3]))
    assert answer["implementation"] == sys.implementation.name
    assert answer["gil_disabled_build"] is False  # this machine has no free-threaded build
    assert answer["gil_enabled"] is True
    assert answer["packages"]["no_such_module_zz"] is None
    assert "ModuleNotFoundError" in answer["import_errors"]["no_such_module_zz"]


# Answers the probe as a free-threaded interpreter would: Py_GIL_DISABLED set, the GIL off at
# start-up and turned back on by importing an extension that does not support running without it
# (fake_ext here), and uvloop without a wheel for it. The rest is this interpreter.
FREE_THREADED = '''#!{python}
import sys, sysconfig, types
state = {{"gil": False}}
sys._is_gil_enabled = lambda: state["gil"]
config_var = sysconfig.get_config_var
sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else config_var(name)
def _import_hook():
    import importlib.abc, importlib.machinery
    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name == "fake_ext":
                return importlib.machinery.ModuleSpec(name, self)
            if name == "uvloop":
                raise ImportError("no wheel of uvloop for this interpreter (simulated)")
        def create_module(self, spec):
            state["gil"] = True
            return types.ModuleType(spec.name)
        def exec_module(self, module):
            module.__version__ = "1.0"
    sys.meta_path.insert(0, Finder())
_import_hook()
args = sys.argv[1:]
if "-m" in args:  # a server (python -m servers.threads ...), as python -m runs it
    import os, runpy
    module = args[args.index("-m") + 1]
    sys.argv = [module, *args[args.index("-m") + 2:]]
    sys.path.insert(0, os.getcwd())
    if os.environ.get("LAB_TEST_IMPORT_FAKE_EXT"):  # as a server importing such an extension
        import fake_ext
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    sys.exit(0)
code = args[args.index("-c") + 1]
sys.argv = ["-c", *args[args.index("-c") + 2:]]
exec(compile(code, "<probe>", "exec"), {{"__name__": "__main__"}})
'''


@pytest.fixture
def free_threaded(tmp_path):
    wrapper = tmp_path / "python3.14t"
    wrapper.write_text(FREE_THREADED.format(python=sys.executable))
    wrapper.chmod(0o755)
    return str(wrapper)


def test_a_free_threaded_build_is_labelled_and_its_gil_read_before_and_after_imports(free_threaded):
    answer = interpreters._probe(free_threaded, ("fake_ext", "json"))
    assert answer["gil_disabled_build"] is True
    assert answer["gil_enabled"] is False, "read at start-up, before any import"
    assert answer["gil_enabled_by"] == ["fake_ext"]
    interp = interpreters.get(free_threaded)  # a venv's python given by path: used as it is
    assert interp.python == free_threaded
    assert interp.label.endswith("t") and interp.tag.endswith("t")
    assert interp.as_dict()["gil_enabled"] is False


def test_a_package_missing_under_one_interpreter_makes_only_its_servers_unavailable(free_threaded):
    judged = {s.name: s.availability(free_threaded) for s in servers.SERVERS if not s.source}
    ok, reason = judged["uvloop-streams"]
    assert not ok and "uvloop" in reason and free_threaded in reason, reason
    assert not judged["uvloop-protocol"][0]
    assert judged["threads"] == (True, "") and judged["epoll"] == (True, "")
    assert judged["trio"][0] and judged["gevent"][0], "only the servers that need uvloop"


def test_json_says_which_interpreter_it_judged_for(free_threaded):
    done = run("-m", "servers", "--json", "--python", free_threaded)
    assert done.returncode == 0, done.stderr
    entries = {e["name"]: e for e in json.loads(done.stdout)}
    threads = entries["threads"]
    assert threads["python"] == free_threaded
    assert threads["interpreter"]["gil_enabled"] is False
    assert threads["interpreter"]["label"].endswith("t")
    assert entries["uvloop-streams"]["available"] is False
    here = {e["name"]: e for e in json.loads(run("-m", "servers", "--json").stdout)}
    assert here["threads"]["python"] == sys.executable
    assert here["threads"]["interpreter"]["version"] == interpreters.current().version


# -- the venv: built at first use, reused, a package without a wheel left out --------------------


def _wheel(folder: Path, name: str, version: str = "1.0") -> None:
    """A minimal pure-Python wheel: one module, the three files a wheel must carry."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}.py": f"__version__ = {version!r}\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        for path, text in files.items():
            whl.writestr(path, text)


def test_the_venv_is_built_once_and_a_package_without_a_wheel_is_left_out_with_why(
        tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "labtiny")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # never the network: this folder is the index
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setattr(interpreters, "VENVS", tmp_path / "venvs")
    monkeypatch.setattr(interpreters, "runtime_dependencies",
                        lambda: ["labtiny>=1", "lab-no-wheel-zz>=1; python_version >= '3'"])
    here = interpreters.current()
    info = {"version": here.version, "implementation": here.implementation,
            "gil_disabled_build": False}
    venv, stamp = interpreters._build(here.base, info, build=True)
    assert venv == tmp_path / "venvs" / f".venv-{here.tag}"
    assert list(stamp["not_installed"]) == ["lab-no-wheel-zz"]
    assert "lab-no-wheel-zz" in stamp["not_installed"]["lab-no-wheel-zz"]
    python = str(venv / "bin" / "python")
    built_at = (venv / interpreters.STAMP).stat().st_mtime_ns
    assert interpreters._build(here.base, info, build=True)[1] == stamp
    assert (venv / interpreters.STAMP).stat().st_mtime_ns == built_at, "built twice"
    # what a server that needs each would be told, through the venv given by its path
    interp = interpreters.get(python)
    assert interp.why_missing("labtiny") is None
    why = interp.why_missing("lab_no_wheel_zz")
    assert "no installable wheel" in why and f"{python} -m pip install" in why, why


def test_without_a_venv_and_told_not_to_build_it_says_how_to_build_it(tmp_path, monkeypatch):
    python = newer_python()
    monkeypatch.setattr(interpreters, "VENVS", tmp_path)
    if python is interpreters.current():
        pytest.skip("the interpreter running is already 3.12+: no venv of its own to build")
    base = python.base
    info = {"version": python.version, "implementation": python.implementation,
            "gil_disabled_build": python.gil_disabled_build}
    with pytest.raises(interpreters.Unavailable, match="python -m servers.interpreters"):
        interpreters._build(base, info, build=False)


# -- the subinterpreters server, judged per interpreter ------------------------------------------


def test_subinterpreters_is_unavailable_before_3_12_with_the_command_that_fixes_it():
    entry = servers.get("subinterpreters")
    if sys.version_info >= (3, 12):
        pytest.skip("this interpreter is 3.12+")
    ok, reason = entry.availability()
    assert not ok
    assert "PEP 684" in reason and "make serve SERVER=subinterpreters INTERPRETER=3.13" in reason
    done = run("-m", "servers", "serve", "subinterpreters")
    assert done.returncode == 2 and "INTERPRETER=3.13" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_subinterpreters_is_available_under_a_newer_interpreter_and_listed_so():
    python = newer_python()
    assert servers.get("subinterpreters").availability(python) == (True, "")
    done = run("-m", "servers", "--python", python.python, "--json")
    entry = next(e for e in json.loads(done.stdout) if e["name"] == "subinterpreters")
    assert entry["available"] is True and entry["python"] == python.python
    assert entry["interpreter"]["version"] == python.version


def test_the_suite_runs_subinterpreters_under_a_newer_interpreter(request):
    from tests.conftest import SERVER_PARAMS
    param = next(p for p in SERVER_PARAMS if p.id == "subinterpreters")
    entry = param.values[0]
    if sys.version_info >= (3, 12):
        assert entry.python is None
    elif param.marks:
        assert "no other interpreter for the suite" in param.marks[0].kwargs["reason"]
    else:
        assert entry.python and os.path.exists(entry.python)
        version = tuple(map(int, entry.interpreter().version.split(".")[:2]))
        assert version >= (3, 12)


# -- what the bench records of an interpreter: its build, and the GIL as each server has it ------


def test_the_probe_says_how_the_interpreter_was_built():
    answer = interpreters._probe(sys.executable, ())
    assert answer["build"] == interpreters.current().build, "one build_info, in both places"
    build = answer["build"]
    assert build["compiler"] and isinstance(build["configure"], list)
    assert all(flag.startswith("--") and "/" not in flag for flag in build["configure"])
    assert build["debug"] is hasattr(sys, "gettotalrefcount")  # only a debug build has it


def test_a_server_on_a_free_threaded_build_says_in_its_readiness_line_whether_the_gil_is_off(
        monkeypatch, capsys):
    import socket
    import sysconfig

    from servers import common
    from tests.test_conformance import documented_readiness_re
    if not interpreters.current().gil_disabled_build:
        assert common.gil_fact() == "", "with a GIL there is nothing to say"
    config_var = sysconfig.get_config_var
    monkeypatch.setattr(sysconfig, "get_config_var",
                        lambda name: 1 if name == "Py_GIL_DISABLED" else config_var(name))
    gil = {"on": False}
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: gil["on"], raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        common.announce(sock, "16 workers")
        gil["on"] = True  # an extension without free-threading support was imported
        common.announce(sock)
    first, second = capsys.readouterr().out.splitlines()
    assert first.endswith(", 16 workers, GIL disabled)") and second.endswith(", GIL enabled)")
    assert documented_readiness_re().match(first) and documented_readiness_re().match(second)
