"""Fixtures shared by the test suite: one parameter per registry server."""

from __future__ import annotations

import os
import signal
import sys

import pytest

# A shell without job control starts a background command (`make test &`, nohup) with SIGINT
# ignored, and every process the suite starts would inherit that: the servers, the load
# generator and the talk client would shrug off the Ctrl-C the tests send them. A handler of our
# own is reset to the default in each child at exec, so the children see Ctrl-C as a terminal
# would deliver it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import servers  # noqa: E402
from servers import interpreters, launch  # noqa: E402


def _second_python():
    """The interpreter for the servers this one cannot run (subinterpreters needs 3.12+):
    LAB_TEST_PYTHON (a spec, or "none"), else the newest 3.12+ here, its venv built at first use.
    (None, why) where there is none."""
    spec = os.environ.get("LAB_TEST_PYTHON", "")
    if spec.lower() == "none":
        return None, "LAB_TEST_PYTHON=none"
    try:
        return (interpreters.get(spec) if spec else interpreters.newest((3, 12))), ""
    except interpreters.Unavailable as exc:
        return None, str(exc)


def _server_params():
    """Every registry entry, under this interpreter; one it cannot run (a Python too old) under
    the second interpreter where that one can, else skipped with both reasons."""
    params, second = [], None
    for entry in servers.SERVERS:
        ok, reason = entry.availability()
        if not ok and not entry.source:
            if second is None:
                second = _second_python()
            python, why_none = second
            if python is not None and entry.availability(python)[0]:
                entry, ok = entry.under(python), True
            elif python is None:
                reason += f"; no other interpreter for the suite: {why_none}"
        marks = [] if ok else [pytest.mark.skip(reason=f"{entry.name} unavailable here: {reason}")]
        params.append(pytest.param(entry, id=entry.name, marks=marks))
    return params


SERVER_PARAMS = _server_params()


@pytest.fixture(params=SERVER_PARAMS)
def entry(request) -> servers.Server:
    """A registry entry; tests that start their own server (custom limits) use this."""
    return request.param


@pytest.fixture
def server(entry):
    """A running server on a free loopback port, killed (whole process group) afterwards."""
    running = launch.start(entry)
    try:
        yield running
    finally:
        running.kill()
