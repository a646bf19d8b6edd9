"""What a measurement measures (a Subject), and starting it: a registry server, a command the user
gave (`bench run --server NAME='CMD'`), or a server already running (`--target NAME=HOST:PORT
--pid PID`), and the C reference measured beside them all.

A Python server runs under an interpreter (`bench run --python SPEC`, servers/interpreters.py):
under the bench's own it keeps its registry name (`epoll`), under any other it is a subject of its
own named for the interpreter's tag (`epoll@3.13`, `threads@3.14t`), so that everything that
ranks, ties and compares servers treats it as one more server. Servers in other languages (the C
reference, Go, Node...) run once, whatever the interpreters."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

import servers
from bench import results
from servers import interpreters, launch


@dataclass(frozen=True)
class Subject:
    """What a measurement measures: a registry server, a command the user gave (``--server
    NAME='CMD'``, started and stopped like a registry server), or a server already running
    (``--target NAME=HOST:PORT --pid PID``: sampled by its pid, never started, signalled or
    pinned by the bench). The reference is a registry server with ``is_reference``."""

    name: str
    family: str | None = None
    lesson: str | None = None
    serial: bool = False
    entry: servers.Server | None = None
    command: tuple[str, ...] | None = None
    host: str | None = None
    port: int | None = None
    pid: int | None = None
    is_reference: bool = False
    # A Python server's interpreter: the record's field (results.interpreter_field), and the spec
    # it was asked for by (None: the bench's own), which --resume finds it again by.
    interpreter: dict | None = None
    python: str | None = None

    @classmethod
    def registry(cls, entry: servers.Server, is_reference: bool = False,
                 interp: interpreters.Interpreter | None = None) -> Subject:
        """A registry server; a Python one under ``interp`` (default: the bench's own)."""
        if entry.toolchain != "python":
            return cls(entry.name, entry.family, entry.lesson, entry.serial, entry,
                       is_reference=is_reference)
        interp = interp or interpreters.current()
        own = interp is interpreters.current()
        return cls(entry.name if own else f"{entry.name}@{interp.tag}", entry.family,
                   entry.lesson, entry.serial, entry if own else entry.under(interp),
                   is_reference=is_reference, interpreter=results.interpreter_field(interp),
                   python=None if own else interp.spec)

    @property
    def kind(self) -> str:
        return "running" if self.pid is not None else "command" if self.command else "registry"

    def target(self, port: int | None = None) -> dict:
        return {"kind": self.kind, "command": shlex.join(self.command) if self.command else None,
                "host": self.host, "port": port if port is not None else self.port, "pid": self.pid}

    def as_meta(self) -> dict:
        """What --resume needs to measure it again."""
        return {"name": self.name, "kind": self.kind, "family": self.family,
                "command": list(self.command) if self.command else None, "host": self.host,
                "port": self.port, "pid": self.pid,
                "entry": self.entry.name if self.entry else None, "python": self.python}

    @classmethod
    def from_meta(cls, d: dict) -> Subject:
        """The subject again; raises interpreters.Unavailable if its interpreter is gone."""
        if d.get("kind") == "registry":
            interp = interpreters.get(d["python"]) if d.get("python") else None
            return cls.registry(servers.get(d.get("entry") or d["name"]), interp=interp)
        return cls(d["name"], d.get("family") or "yours", None, False, None,
                   tuple(d["command"]) if d.get("command") else None, d.get("host"),
                   d.get("port"), d.get("pid"))


class Attached:
    """A server the bench did not start: read by its pid, never signalled."""

    attached = True
    proc = None

    def __init__(self, subject: Subject):
        self.pid, self.host, self.port = subject.pid, subject.host, subject.port

    def alive(self) -> bool:
        import psutil
        return psutil.pid_exists(self.pid)

    def stderr_tail(self, max_bytes: int = 0) -> str:
        return ""

    def group_pids(self) -> list[int]:
        return [self.pid] if self.alive() else []

    def kill(self) -> None:
        pass


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(subject: Subject, server_cpus: list[int] | None):
    """(the running server, the port a command was given) for any kind of subject."""
    if subject.kind == "running":
        attached = Attached(subject)
        if not attached.alive():
            raise launch.StartError(f"no process {subject.pid} (--pid): start your server first")
        return attached, subject.port
    if subject.kind == "command":
        port = free_port() if any("{port}" in a for a in subject.command) else None
        argv = [a.replace("{port}", str(port)) for a in subject.command]
        return launch.start_command(subject.name, argv, port=port, cpus=server_cpus), port
    return launch.start(subject.entry, cpus=server_cpus), None


def reference_subject(enabled: bool) -> tuple[Subject | None, dict]:
    """The C reference and meta.json's entry for it: available, or why not with the fix."""
    name = results.REFERENCE
    if not enabled:
        return None, {"name": name, "available": False, "reason": "--no-reference"}
    entry = servers.BY_NAME.get(name)
    if entry is None:
        return None, {"name": name, "available": False,
                      "reason": f"no {name} in this checkout's registry (servers/__init__.py)"}
    ok, why = entry.availability()
    if not ok:
        return None, {"name": name, "available": False, "reason": why}
    return Subject.registry(entry, is_reference=True), {"name": name, "available": True,
                                                          "reason": None}

