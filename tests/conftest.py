"""Fixtures shared by the test suite: one parameter per registry server."""

from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import servers  # noqa: E402
from servers import launch  # noqa: E402


def _server_params():
    params = []
    for entry in servers.SERVERS:
        ok, reason = entry.availability()
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
