"""Python interpreters as a dimension: find one from a spec, give it a venv, say what it is.

The lab's Python servers can run under another interpreter than the one running the lab: a newer
CPython (3.12+ gives each subinterpreter its own GIL), a free-threaded build (3.13t, 3.14t), a
PyPy. Each gets its own venv at the top of the checkout, built at first use from pyproject.toml's
runtime dependencies (not the dev tools), and is probed in a subprocess: native code may crash the
process that imports it, so nothing of the other interpreter runs in ours.

    from servers import interpreters

    interp = interpreters.get("3.13")       # find, build .venv-3.13 if needed, probe; or Unavailable
    interp.python                           # the venv's python: [interp.python, *entry.argv]
    interp.version, interp.label            # "3.13.0", "3.13.0" ("3.14.0t" if free-threaded)
    interp.implementation                   # "cpython", "pypy"
    interp.gil_disabled_build               # sysconfig's Py_GIL_DISABLED: a free-threaded build
    interp.gil_enabled                      # sys._is_gil_enabled() at start-up (True before 3.13)
    interp.gil_enabled_by                   # the probed packages whose import turned it back on
    interp.build                            # {"configure": [...], "opt": "-O3", "compiler": ..., "debug"}
    interp.packages                         # {"uvloop": "0.23.0", "gevent": None, ...}
    interp.why_missing("uvloop")            # None, or why it does not import and the fix
    interp.as_dict()                        # what a record or `python -m servers --json` carries
    interpreters.current()                  # the interpreter running this code (no venv, no child)
    interpreters.find("python3.13")         # the base interpreter's path, or Unavailable
    interpreters.get(spec, build=False)     # an existing venv only: Unavailable if none yet
    interpreters.newest((3, 12))            # the newest 3.12+ here (current if new enough)

A spec is what a user types: ``3.13``, ``3.13.0``, ``3.14t``, ``python3.13``, ``pypy3``, or a
path to an interpreter. A version is looked for as ``python3.13`` on PATH, then in pyenv's
versions (``$(pyenv root)/versions/3.13.*``), newest first; a candidate counts only if it runs and
its version matches. The spec that names the interpreter already running (``3.11`` under the
lab's 3.11 venv) gives ``current()``: no second venv of the same interpreter. A path to a venv's
python is used as it is (its packages, no venv built); a path to any other python gets a venv.

The venv is ``.venv-<tag>`` at the top of the checkout (``LAB_VENVS_DIR`` moves it): ``3.13``,
``3.14t``, ``pypy3.10``. It is rebuilt when its base interpreter is another one, and reinstalled
when pyproject.toml's dependencies change. Packages are installed as wheels only: one without a
wheel for that interpreter is left out with the reason (pip's answer) and the command that builds
it from source, and only the servers that need it become unavailable under that interpreter
(the registry asks ``why_missing``). Concurrent callers (parallel tests) build a venv once: a lock
file beside it.

Nothing here raises anything but ``Unavailable`` for a machine that lacks something: no such
interpreter, a venv that cannot be made (Debian's python3.X without python3.X-venv), no network
for pip. Its text says what is missing and the command that fixes it.

    python -m servers.interpreters 3.13 python3.12     build what is missing, print what each is
    python -m servers.interpreters --json 3.13
    python -m servers.interpreters --at-least 3.12     the newest 3.12+ here (what the suite uses)
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENVS = Path(os.environ.get("LAB_VENVS_DIR", ROOT))
STAMP = ".lab-venv.json"  # in each venv: what it was built from, which packages it lacks and why
PROBE_TIMEOUT_S = 60
PIP_TIMEOUT_S = 900
# The modules every probe imports (the registry's `requires`, and what the lessons and the
# subinterpreters server need); why_missing() probes any other module on demand.
PROBED_MODULES = ("uvloop", "trio", "gevent", "psutil", "concurrent.interpreters",
                  "backports.interpreters")


class Unavailable(Exception):
    """This interpreter cannot be had or used here; the text says why and how to fix it."""


@dataclass(frozen=True)
class Interpreter:
    spec: str  # what was asked for ("3.13"), or "current"
    python: str  # the executable to run servers with: the venv's python (or sys.executable)
    base: str  # the interpreter the venv was made from (for current(): sys._base_executable)
    venv: str | None  # the venv's directory; None for current()
    version: str  # "3.13.0"
    implementation: str  # sys.implementation.name: "cpython", "pypy"
    gil_disabled_build: bool  # built with --disable-gil (Py_GIL_DISABLED): free-threaded
    gil_enabled: bool  # at start-up, before any package import (always True with a GIL build)
    gil_enabled_by: tuple[str, ...] = ()  # probed packages whose import turned the GIL back on
    build: dict = field(default_factory=dict, compare=False)  # how it was built (_BUILD_INFO)
    packages: dict = field(default_factory=dict, compare=False)  # module -> version | None
    import_errors: dict = field(default_factory=dict, compare=False)  # module -> why not
    not_installed: dict = field(default_factory=dict, compare=False)  # distribution -> pip's why

    @property
    def tag(self) -> str:
        """What names its venv: "3.13", "3.14t", "pypy3.10"."""
        major_minor = ".".join(self.version.split(".")[:2])
        prefix = "" if self.implementation == "cpython" else self.implementation
        return f"{prefix}{major_minor}{'t' if self.gil_disabled_build else ''}"

    @property
    def label(self) -> str:
        """How a report names it: "3.13.0", "3.14.0t" (free-threaded), "pypy 3.10.14"."""
        prefix = "" if self.implementation == "cpython" else f"{self.implementation} "
        return f"{prefix}{self.version}{'t' if self.gil_disabled_build else ''}"

    def why_missing(self, module: str) -> str | None:
        """None if ``module`` imports under this interpreter, else why not and the fix."""
        if module not in self.packages:
            found = _probe(self.python, (module,))
            self.packages.update(found["packages"])
            self.import_errors.update(found["import_errors"])
        if self.packages.get(module) is not None:
            return None
        distribution = module if module == "backports.interpreters" else module.split(".")[0]
        pip_why = self.not_installed.get(_normal(distribution))
        error = self.import_errors.get(module, "not importable")
        where = f"Python {self.label} ({self.python})"
        if pip_why:
            return (f"needs {module!r}, which has no installable wheel for {where}: {pip_why}; "
                    f"to build it from source: {self.python} -m pip install {distribution}")
        if self.venv is None:
            return (f"needs the {module!r} package: make install "
                    f"(or {self.python} -m pip install {distribution})")
        return (f"needs {module!r}, which does not import under {where}: {error}; "
                f"try {self.python} -m pip install {distribution}")

    def as_dict(self) -> dict:
        return {
            "spec": self.spec,
            "tag": self.tag,
            "python": self.python,
            "base": self.base,
            "venv": self.venv,
            "version": self.version,
            "label": self.label,
            "implementation": self.implementation,
            "gil_disabled_build": self.gil_disabled_build,
            "gil_enabled": self.gil_enabled,
            "gil_enabled_by": list(self.gil_enabled_by),
            "build": dict(self.build),
            "packages": dict(self.packages),
        }


# ---- the probe: one child of the interpreter, printing JSON -------------------------------------

# How an interpreter was built, as far as it says itself (sysconfig): the configure options that
# change what it is (paths left out), the C optimisation flags, the compiler, a debug build. Two
# CPythons of different versions may also differ here (pyenv builds without
# --enable-optimizations, that is without PGO, where a distribution's may use it), and that
# changes their speed as much as the version can. Run in the probed interpreter and in this one.
_BUILD_INFO = r"""
def build_info():
    import platform, shlex, sysconfig
    var = sysconfig.get_config_var
    configure = [a for a in shlex.split(var("CONFIG_ARGS") or "")
                 if a.startswith("--") and "/" not in a]
    opt = " ".join(f for f in (var("OPT") or "").split() if f.startswith("-O"))
    return {"configure": configure, "opt": opt, "compiler": platform.python_compiler(),
            "debug": bool(var("Py_DEBUG"))}
"""

# Runs in the interpreter being probed, with nothing of the lab imported. The GIL is read before
# any import: on a free-threaded build, importing an extension module that does not declare
# free-threading support turns the GIL back on (with a RuntimeWarning), which is itself a fact.
_PROBE_CHILD = _BUILD_INFO + r"""
import importlib, json, platform, sys, sysconfig, warnings
warnings.simplefilter("ignore")
gil = getattr(sys, "_is_gil_enabled", lambda: True)
out = {"executable": sys.executable, "base": getattr(sys, "_base_executable", sys.executable),
       "prefix": sys.prefix, "base_prefix": sys.base_prefix,
       "version": platform.python_version(), "implementation": sys.implementation.name,
       "gil_disabled_build": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
       "gil_enabled": gil(), "gil_enabled_by": [], "packages": {}, "import_errors": {}}
out["build"] = build_info()
print(json.dumps(out), flush=True)  # what is known before any import, should one crash
for name in sys.argv[1:]:
    before = gil()
    try:
        module = importlib.import_module(name)
    except BaseException as exc:
        out["packages"][name] = None
        out["import_errors"][name] = f"{type(exc).__name__}: {exc}"
    else:
        version = getattr(module, "__version__", None)
        if not isinstance(version, str):
            try:
                from importlib import metadata
                version = metadata.version(name)
            except Exception:
                version = "stdlib" if name.startswith("concurrent.") else "unknown"
        out["packages"][name] = version
    if gil() and not before:
        out["gil_enabled_by"].append(name)
    print(json.dumps(out), flush=True)
"""


def _build_info() -> dict:
    """build_info() of _BUILD_INFO, for the interpreter running this code."""
    namespace: dict = {}
    exec(_BUILD_INFO, namespace)  # the child's own code: one definition for both
    return namespace["build_info"]()


def _run_child(python: str, modules: tuple[str, ...]) -> tuple[dict | None, str]:
    """(the last JSON line the probe printed or None, what went wrong if it did not finish)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    try:
        done = subprocess.run([python, "-I", "-c", _PROBE_CHILD, *modules], capture_output=True,
                              text=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL,
                              env=env, cwd="/")
    except FileNotFoundError:
        return None, f"{python} does not exist"
    except PermissionError:
        return None, f"{python} is not executable"
    except OSError as exc:
        return None, f"{python} cannot run: {exc.strerror}"
    except subprocess.TimeoutExpired:
        return None, f"{python} gave no answer within {PROBE_TIMEOUT_S} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    last = json.loads(lines[-1]) if lines else None
    if done.returncode == 0:
        return last, ""
    if done.returncode < 0:
        import signal
        return last, f"died with {signal.Signals(-done.returncode).name}"
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return last, f"exit {done.returncode}: {tail}"


def _probe(python: str, modules: tuple[str, ...] = PROBED_MODULES) -> dict:
    """What ``python`` is and which of ``modules`` import under it. Raises Unavailable if it
    does not run at all. A module whose import kills the child (a crash in native code) is
    retried alone, so the others are still judged; it is reported with the signal."""
    answer, error = _run_child(python, modules)
    if answer is None:
        raise Unavailable(f"{python} is not a usable Python: {error}")
    if error:  # died part-way: judge each module that was not reached in a child of its own
        for name in modules:
            if name in answer["packages"]:
                continue
            alone, why = _run_child(python, (name,))
            if alone and name in alone["packages"]:
                answer["packages"][name] = alone["packages"][name]
                answer["import_errors"].update(alone["import_errors"])
                answer["gil_enabled_by"] += alone["gil_enabled_by"]
            else:
                answer["packages"][name] = None
                answer["import_errors"][name] = f"importing it {why}"
    return answer


# ---- finding the base interpreter ------------------------------------------------------------

_VERSION_SPEC = re.compile(r"^(?P<version>\d+(?:\.\d+){0,2})(?P<t>t?)$")
_NAME_SPEC = re.compile(r"^(?P<impl>python|pypy)(?P<version>\d+(?:\.\d+)?)?(?P<t>t?)$")


@functools.cache
def _pyenv_root() -> Path | None:
    root = os.environ.get("PYENV_ROOT")
    if not root and shutil.which("pyenv"):
        try:
            root = subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            root = None
    root = Path(root) if root else Path.home() / ".pyenv"
    return root if root.is_dir() else None


def _pyenv_versions() -> list[Path]:
    """pyenv's installed versions (directories), newest first; [] where there is no pyenv."""
    root = _pyenv_root()
    versions = root / "versions" if root else None
    if versions is None or not versions.is_dir():
        return []

    def key(path: Path):
        numbers = re.findall(r"\d+", path.name)
        return [int(n) for n in numbers]
    return sorted((p for p in versions.iterdir() if p.is_dir()), key=key, reverse=True)


def _candidates(spec: str) -> tuple[list[str], str | None, bool | None]:
    """(executables to try, the version they must have, whether free-threaded) for ``spec``."""
    if _is_path(spec):
        return [os.path.abspath(os.path.expanduser(spec))], None, None
    if (m := _VERSION_SPEC.match(spec)):
        impl = "python"
    elif not (m := _NAME_SPEC.match(spec)):
        raise Unavailable(check_spec(spec))
    else:
        impl = m["impl"]
    version, t = m["version"] or "", m["t"]
    command = f"{impl}{'.'.join(version.split('.')[:2])}{t}"  # python3.13t, pypy3.10, python
    # pyenv's shim runs only the versions `pyenv global` names: its versions are looked at below
    shims = _pyenv_root() / "shims" if _pyenv_root() else None
    path = shutil.which(command)
    found = [path] if path and (shims is None or Path(path).parent != shims) else []
    for directory in _pyenv_versions():  # 3.13.0, 3.14.0t, pypy3.10-7.3.12
        name = directory.name
        number = name.removeprefix("pypy").split("-")[0]
        if (impl == "pypy") != name.startswith("pypy") or not number[:1].isdigit():
            continue
        if number.endswith("t") != bool(t):
            continue
        number = number.removesuffix("t")
        if version and not (number == version or number.startswith(version + ".")):
            continue
        for exe in (command, f"{impl}3{t}", impl):
            if (directory / "bin" / exe).exists():
                found.append(str(directory / "bin" / exe))
                break
    return found, version or None, bool(t)


def _matches(info: dict, version: str | None, threaded: bool | None) -> bool:
    if version and not (info["version"] == version or info["version"].startswith(version + ".")):
        return False
    return threaded is None or info["gil_disabled_build"] == threaded


def _install_hint(spec: str) -> str:
    if _is_path(spec):
        return "give the path of a python executable, or a version such as 3.13"
    m = _VERSION_SPEC.match(spec) or _NAME_SPEC.match(spec)
    impl = m["impl"] if m and "impl" in m.groupdict() else "python"
    version = (m["version"] if m else None) or "3.13"
    t = m["t"] if m else ""
    if impl == "pypy":
        return f"pyenv install pypy{version} (https://github.com/pyenv/pyenv), or apt-get install pypy3"
    mm = ".".join(version.split(".")[:2])
    system = ("a free-threaded build from your system, where it has one (apt-cache search nogil)"
              if t else f"apt-get install python{mm} where your distribution has it")
    return f"pyenv install {version}{t} (https://github.com/pyenv/pyenv), or {system}"


@functools.cache
def _find(spec: str) -> tuple[str, str]:
    """(the interpreter's real path, its probe's JSON) for ``spec``. For a version or a command
    that is the base interpreter (a venv's python, or a pyenv shim, stands for its base); a path
    to a venv's python is that venv's python, to be used as it is."""
    paths, version, threaded = _candidates(spec)
    tried = []
    for path in dict.fromkeys(paths):
        answer, error = _run_child(path, ())
        if answer is None:
            tried.append(f"{path}: {error}")
            continue
        if not _matches(answer, version, threaded):
            tried.append(f"{path} is {answer['version']}"
                         f"{'t' if answer['gil_disabled_build'] else ''}")
            continue
        is_venv = answer["prefix"] != answer["base_prefix"]
        if is_venv and not _is_path(spec):
            return os.path.realpath(answer["base"]), json.dumps(answer)
        # a venv's python is a symlink to its base: keep the venv's path, it is what makes it one
        chosen = os.path.abspath(path) if is_venv else os.path.realpath(answer["executable"])
        return chosen, json.dumps(answer)
    looked = "; ".join(tried) if tried else "none on PATH" + (
        " nor in pyenv's versions" if _pyenv_versions() else " (and no pyenv)")
    raise Unavailable(f"no Python interpreter for {spec!r} here ({looked}): {_install_hint(spec)}")


def _is_path(spec: str) -> bool:
    return os.sep in spec or spec.startswith((".", "~"))


def check_spec(spec: str) -> str | None:
    """Why ``spec`` cannot name an interpreter anywhere (it is no version, command or path, or a
    path to no executable file), with what to give instead; None if it could. A spec that names
    an interpreter this machine lacks is not wrong: get() says what to install."""
    if _is_path(spec):
        path = os.path.expanduser(spec)
        if not os.path.isfile(path):
            return f"{spec}: no such file; {_install_hint(spec)}"
        if not os.access(path, os.X_OK):
            return f"{spec} is not executable; {_install_hint(spec)}"
        return None
    if _VERSION_SPEC.match(spec) or _NAME_SPEC.match(spec):
        return None
    return (f"{spec!r} names no interpreter: give a version (3.13, 3.14t), a command "
            "(python3.13, pypy3) or a path to a python executable")


def find(spec: str) -> str:
    """The path of the base interpreter ``spec`` names; Unavailable if there is none here."""
    return _find(spec)[0]


# ---- the venv ---------------------------------------------------------------------------------


def runtime_dependencies() -> list[str]:
    """pyproject.toml's [project] dependencies: what a server venv gets (no dev tools)."""
    import tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def _deps_key(deps: list[str]) -> str:
    return hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16]


def _pip(python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "--quiet",
                           "--no-input", *args], capture_output=True, text=True,
                          timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)


def _pip_reason(done: subprocess.CompletedProcess) -> str:
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()
             if line.strip().startswith("ERROR")]
    return lines[-1].removeprefix("ERROR: ") if lines else f"pip exit {done.returncode}"


def _distribution(requirement: str) -> str:
    """The distribution a requirement names, normalised: "backports.interpreters>=0.3; ..." ->
    "backports-interpreters"."""
    return _normal(re.split(r"[\s;<>=!~\[]", requirement, maxsplit=1)[0])


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: one spelling of a distribution's name


def venv_dir(tag: str) -> Path:
    return VENVS / f".venv-{tag}"


def _build(base: str, info: dict, *, build: bool) -> tuple[Path, dict]:
    """The venv for ``base``: made and installed if needed (under a lock); (its dir, its stamp)."""
    probe_tag = Interpreter("", "", "", None, info["version"], info["implementation"],
                            info["gil_disabled_build"], True).tag
    venv = venv_dir(probe_tag)
    python = venv / "bin" / "python"
    deps = runtime_dependencies()
    key = _deps_key(deps)

    def current_stamp() -> dict | None:
        try:
            stamp = json.loads((venv / STAMP).read_text())
        except (OSError, ValueError):
            return None
        ok = stamp.get("base") == base and stamp.get("deps") == key and python.exists()
        return stamp if ok else None

    if (stamp := current_stamp()) is not None:
        return venv, stamp
    if not build:
        raise Unavailable(f"no venv for Python {probe_tag} yet ({venv}): "
                          f"python -m servers.interpreters {probe_tag} builds it")
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".venv-{probe_tag}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel caller builds it once; we wait for it
        if (stamp := current_stamp()) is not None:
            return venv, stamp
        old = None
        try:
            old = json.loads((venv / STAMP).read_text())
        except (OSError, ValueError):
            pass
        if venv.exists() and (old is None or old.get("base") != base):
            shutil.rmtree(venv)  # made from another interpreter, or half-made: start again
        if not python.exists():
            made = subprocess.run([base, "-m", "venv", str(venv)], capture_output=True,
                                  text=True, timeout=PIP_TIMEOUT_S, stdin=subprocess.DEVNULL)
            if made.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                tail = (made.stderr or made.stdout).strip().splitlines()[-1:] or ["no output"]
                mm = ".".join(info["version"].split(".")[:2])
                raise Unavailable(f"cannot make a venv with {base}: {tail[0]}; on Debian/Ubuntu: "
                                  f"apt-get install python{mm}-venv")
        # Wheels only: a package with no wheel for this interpreter would be compiled from
        # source (minutes, and a compiler and headers); it is left out instead, with pip's reason.
        done = _pip(str(python), "install", "--only-binary", ":all:", *deps)
        not_installed = {}
        if done.returncode != 0:  # which ones? each alone, so the others still get in
            for requirement in deps:
                alone = _pip(str(python), "install", "--only-binary", ":all:", requirement)
                if alone.returncode != 0:
                    not_installed[_distribution(requirement)] = _pip_reason(alone)
            if len(not_installed) == len(deps):
                raise Unavailable(f"pip installed none of the lab's packages into {venv}: "
                                  f"{_pip_reason(done)}; is PyPI reachable? Retry with: "
                                  f"python -m servers.interpreters {probe_tag}")
        stamp = {"base": base, "deps": key, "version": info["version"],
                 "not_installed": not_installed}
        (venv / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        return venv, stamp


# ---- the API ----------------------------------------------------------------------------------


@functools.cache
def current() -> Interpreter:
    """The interpreter running this code, judged in this process (no venv built, no child)."""
    import importlib.util
    import platform
    packages, errors = {}, {}
    for name in PROBED_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None  # finds it, runs none of it
        except (ImportError, ValueError):
            found = False
        if found:
            try:
                from importlib import metadata
                packages[name] = metadata.version(name)
            except Exception:  # noqa: BLE001 (a stdlib module, or a namespace package)
                packages[name] = "stdlib" if name.startswith("concurrent.") else "unknown"
        else:
            packages[name] = None
            errors[name] = "not installed"
    return Interpreter(
        spec="current", python=sys.executable,
        base=os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        venv=sys.prefix if sys.prefix != sys.base_prefix else None,
        version=platform.python_version(), implementation=sys.implementation.name,
        gil_disabled_build=bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
        gil_enabled=getattr(sys, "_is_gil_enabled", lambda: True)(),
        build=_build_info(), packages=packages, import_errors=errors)


_got: dict[tuple[str, bool], Interpreter] = {}


def get(spec: str | None = None, *, build: bool = True) -> Interpreter:
    """The interpreter ``spec`` names, with its venv (built at first use unless ``build`` is
    False) and what it can import. None, "" or "current" is ``current()``, and so is any spec
    that resolves to the base interpreter of the one running. Raises Unavailable with the fix."""
    if spec in (None, "", "current"):
        return current()
    spec = str(spec)
    if (spec, build) in _got:
        return _got[(spec, build)]
    found, info_text = _find(spec)
    info = json.loads(info_text)
    here = current()
    if found in (here.base, os.path.realpath(sys.executable), os.path.abspath(sys.executable)):
        _got[(spec, build)] = here
        return here
    if info["prefix"] != info["base_prefix"] and _is_path(spec):
        venv, python = Path(info["prefix"]), found  # a venv given by path: used as it is
        try:
            stamp = json.loads((venv / STAMP).read_text())  # one of ours: what pip could not do
        except (OSError, ValueError):
            stamp = {}
    else:
        venv, stamp = _build(found, info, build=build)
        python = str(venv / "bin" / "python")
    probed = _probe(python)
    interp = Interpreter(
        spec=spec, python=python, base=os.path.realpath(probed["base"]), venv=str(venv),
        version=probed["version"], implementation=probed["implementation"],
        gil_disabled_build=probed["gil_disabled_build"], gil_enabled=probed["gil_enabled"],
        gil_enabled_by=tuple(probed["gil_enabled_by"]), build=probed.get("build") or {},
        packages=probed["packages"],
        import_errors=probed["import_errors"], not_installed=stamp.get("not_installed", {}))
    _got[(spec, build)] = interp
    return interp


def newest(minimum: tuple[int, int] = (3, 12), *, build: bool = True) -> Interpreter:
    """The newest CPython here (with a GIL; 3.x, not 3.xt) at ``minimum`` or later, with its
    venv: the current one if it is new enough. Unavailable, with the fix, if there is none."""
    here = current()
    if tuple(map(int, here.version.split(".")[:2])) >= minimum and not here.gil_disabled_build:
        return here
    why = []
    for minor in range(minimum[1] + 10, minimum[1] - 1, -1):
        spec = f"{minimum[0]}.{minor}"
        try:
            find(spec)
        except Unavailable:
            continue
        try:
            return get(spec, build=build)
        except Unavailable as exc:  # found, but no venv could be made: say so, try an older one
            why.append(f"{spec}: {exc}")
    wanted = f"{minimum[0]}.{minimum[1]}"
    raise Unavailable(f"no Python {wanted}+ here" + (f" that works ({'; '.join(why)})" if why
                                                       else f" (this is {here.version})")
                      + f": {_install_hint('3.13')}")


def resolve(python) -> Interpreter:
    """An Interpreter from what a caller holds: None (current), a spec or path, an Interpreter."""
    return python if isinstance(python, Interpreter) else get(python)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(
        prog="python -m servers.interpreters",
        description="Find each interpreter, build its venv (.venv-TAG) if missing, and print "
                    "what it is and which of the lab's packages import under it.")
    parser.add_argument("specs", nargs="*", metavar="SPEC",
                        help="3.13, 3.14t, python3.12, pypy3, or a path (default: the current one)")
    parser.add_argument("--json", action="store_true", help="one JSON object per interpreter")
    parser.add_argument("--no-build", action="store_true", help="use existing venvs only")
    parser.add_argument("--at-least", metavar="X.Y",
                        help="instead of SPECs: the newest CPython X.Y or later here (what the "
                             "test suite runs the subinterpreters server under)")
    args = parser.parse_args(argv)
    if args.at_least and args.specs:
        parser.error("give SPECs or --at-least, not both")
    if args.at_least and not re.fullmatch(r"\d+\.\d+", args.at_least):
        parser.error(f"--at-least {args.at_least}: give a version such as 3.12")
    status = 0
    for spec in args.specs or [None]:
        label = f"{args.at_least}+" if args.at_least else spec or "current"
        try:
            if args.at_least:
                interp = newest(tuple(map(int, args.at_least.split("."))),
                                build=not args.no_build)
            else:
                interp = get(spec, build=not args.no_build)
        except Unavailable as exc:
            print(f"{label}: unavailable: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(interp.as_dict()))
            continue
        gil = "GIL disabled" if not interp.gil_enabled else (
            "GIL enabled" + (f" (by {', '.join(interp.gil_enabled_by)})"
                             if interp.gil_enabled_by else ""))
        print(f"{label}: {interp.implementation} {interp.label}, {gil}")
        print(f"  python: {interp.python}")
        missing = [name for name, version in interp.packages.items() if version is None]
        present = [f"{name} {version}" for name, version in interp.packages.items() if version]
        print(f"  imports: {', '.join(present) or 'none of the probed packages'}")
        if missing:
            print(f"  missing: {', '.join(missing)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
