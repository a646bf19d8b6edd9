"""What the machine allows a load generator: open files (RLIMIT_NOFILE) and local ports.

Every connection is a file descriptor of the process that holds it, and every connection from one
source address to one destination takes a local port from net.ipv4.ip_local_port_range. Both run
out well before C10K on a default setup; run_load's callers ask here first, and refuse with the
fix (`ulimit -n`, `sysctl`) rather than measure a run where connections failed for want of files.
"""

from __future__ import annotations

import math

from bench.load.contract import FD_HEADROOM


def fd_hard_limit() -> int | None:
    """The hard limit on open files (RLIMIT_NOFILE) a worker can raise itself to; None: no limit
    (or not a Unix)."""
    try:
        import resource
    except ImportError:
        return None
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return None if hard == resource.RLIM_INFINITY else hard


def too_few_files(conns: int, wanted: int, hard: int, where: str) -> str:
    """The refusal, with the fix: `conns` connections need `wanted` files `where` (e.g. "per
    load-generator process"), more than the hard limit `hard`."""
    return (f"{conns:,} connections need about {wanted:,} open files {where}, but the hard limit "
            f"(ulimit -Hn) is {hard:,}: raise it, e.g. `ulimit -n {max(wanted, 20000)}` as root "
            "or in /etc/security/limits.conf, then run again")


def fd_shortfall(conns: int, workers: int = 1, engine: str | None = None) -> str | None:
    """Why `conns` connections over `workers` processes cannot all be opened here, or None.

    Each worker raises its soft RLIMIT_NOFILE to the hard limit (1024 is a common soft default,
    far too few for 10,000 connections); only an administrator can raise the hard limit. The C
    engine is one process (its workers are threads): it needs a file per connection, and raises
    the hard limit itself where it may (root); it is asked directly. `engine` None: the default.
    """
    from bench.load import c_engine, default_engine  # bench.load imports this module

    if (engine or default_engine()[0]) == "c":
        return c_engine.fd_shortfall(conns)
    hard = fd_hard_limit()
    wanted = math.ceil(conns / max(1, workers)) + FD_HEADROOM
    if hard is None or wanted <= hard:
        return None
    return too_few_files(conns, wanted, hard, "per load-generator process")


def port_shortfall(host: str, conns: int, engine: str | None = None) -> str | None:
    """Why `conns` connections to `host` would run out of ephemeral ports, with the fix, or None.

    Each connection from one source address to one destination takes a local port from
    net.ipv4.ip_local_port_range. The C engine spreads connections to a loopback server over
    several source addresses (c_engine.CONNS_PER_SOURCE each); the Python engine uses one.
    """
    from bench.load import c_engine, default_engine  # bench.load imports this module

    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            text = f.read()
    except OSError:
        return None
    low, high = map(int, text.split())
    sources = 1
    if (engine or default_engine()[0]) == "c":
        sources = c_engine.sources_for(host, conns)
    per_source = math.ceil(conns / sources)
    if per_source <= high - low + 1:
        return None
    return (f"{conns:,} connections from {sources} source address(es) need {per_source:,} local "
            f"ports each, but net.ipv4.ip_local_port_range has {high - low + 1:,} ({low}-{high}): "
            "widen it (sysctl -w net.ipv4.ip_local_port_range='1024 65535')"
            + ("" if sources > 1 else ", or use --engine c, which spreads connections to a "
               "loopback server over several source addresses"))


def raise_worker_fd_limit(wanted: int) -> str | None:
    """Raise this process's soft limit on open files to the hard limit (1024 is a common default),
    with the lab's one helper for it (servers.common); say so if that is still fewer than
    `wanted`. (The C engine raises its own, in engine.c.)"""
    from servers.common import raise_fd_limit

    soft = raise_fd_limit()  # -1: no limit (RLIM_INFINITY), or not a Unix
    if soft != -1 and soft < wanted:
        return (f"a worker may open only {soft} files (ulimit -Hn) but needs {wanted}: "
                "some connections will fail; raise the hard limit or use more --workers")
    return None
