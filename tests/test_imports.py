"""Every module of servers/, bench/ and lessons/ imports, each in a fresh interpreter of its own.

Why a subprocess each: a native extension that executes an instruction this CPU lacks (issue 15:
a wheel built with AVX-512 on a CPU without it) kills the interpreter with SIGILL, and a bad
binding can die with SIGSEGV. In-process, that would take the whole test run down with no name;
here the one module that did it is named, with the signal and what it means.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("servers", "bench", "lessons")
IMPORT_TIMEOUT_S = 60
SIGNAL_MEANING = {
    signal.SIGILL: "an instruction this CPU lacks (a binary built for a newer CPU, e.g. AVX-512)",
    signal.SIGSEGV: "native code touched memory it does not own (a broken extension or binding)",
    signal.SIGBUS: "a bad memory access (a truncated mapped file, misaligned access)",
    signal.SIGABRT: "native code called abort() (a failed assertion in C)",
    signal.SIGKILL: "killed: out of memory, or the timeout",
}


def modules() -> list[str]:
    """Every importable module under the three packages, found on disk (new files included)."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if any(not p.isidentifier() and not p[:2].isdigit() for p in parts):
                continue  # not a module name (e.g. a file with a dash)
            if not all((ROOT.joinpath(*parts[:i]) / "__init__.py").exists()
                       for i in range(1, len(parts))):
                continue  # a script in a plain directory, not part of a package
            name = ".".join(parts)
            found.append(name.removesuffix(".__init__"))
    return found


def import_in_subprocess(name: str, path: str = "") -> tuple[str, int | None, str]:
    """(module, returncode or None on timeout, the last line of stderr). ``path`` is put first
    on sys.path."""
    code = ("import importlib, sys; sys.path.insert(0, sys.argv[2]) if sys.argv[2] else None; "
            "importlib.import_module(sys.argv[1])")
    try:
        proc = subprocess.run([sys.executable, "-c", code, name, path], cwd=ROOT,
                              capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return name, None, f"no answer within {IMPORT_TIMEOUT_S} s"
    err = proc.stderr.strip()
    return name, proc.returncode, err.splitlines()[-1] if err else ""


def failure(name: str, code: int | None, last_line: str) -> str | None:
    """What went wrong importing ``name``, in words, or None if it imported."""
    if code is None:
        return f"{name}: {last_line}"
    if code < 0:
        sig = signal.Signals(-code)
        return f"{name}: died with {sig.name}: {SIGNAL_MEANING.get(sig, signal.strsignal(sig))}"
    if code != 0:
        return f"{name}: exit {code}: {last_line}"
    return None


def test_the_module_list_is_complete():
    names = modules()
    for expected in ("servers", "servers.uring", "servers.io_uring_server", "bench.load",
                     "lessons.common"):
        assert expected in names
    assert any(name.startswith("lessons.09") for name in names)


def test_every_module_imports_in_its_own_process():
    with ThreadPoolExecutor(max_workers=4) as pool:  # the subprocesses do the work, in parallel
        results = list(pool.map(import_in_subprocess, modules()))
    failures = [f for f in (failure(*r) for r in results) if f]
    assert not failures, "modules that cannot be imported:\n" + "\n".join(failures)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signal numbers: POSIX")
@pytest.mark.parametrize("sig", [signal.SIGILL, signal.SIGSEGV])
def test_a_module_killed_by_a_signal_is_named(tmp_path, sig):
    # The check itself: a module that dies the way the AVX-512 wheel did is reported by name.
    pkg = tmp_path / "crashy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "boom.py").write_text(f"import os\nos.kill(os.getpid(), {int(sig)})\n")
    message = failure(*import_in_subprocess("crashy.boom", str(tmp_path)))
    assert message.startswith(f"crashy.boom: died with {sig.name}: "), message
    assert failure(*import_in_subprocess("crashy", str(tmp_path))) is None
