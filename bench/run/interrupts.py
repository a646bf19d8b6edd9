"""Stopping a run cleanly: SIGINT, SIGTERM and SIGHUP raise Interrupted in the main thread
wherever it is, so the measurement in progress unwinds through its `finally` blocks (the load
generator's workers stopped, the server's process group killed) and the runner writes what it
measured; a second signal, while the first is being handled, is ignored."""

from __future__ import annotations

import signal


class Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived: raised in the main thread wherever it was, so the
    measurement in progress stops (the load generator's workers are stopped, the server's process
    group killed by the `finally` blocks on the way out) and runner.run() writes what it has."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def install_stop_handlers() -> dict:
    """Stop handlers for STOP_SIGNALS; returns the handlers they replaced (restore_handlers)."""
    fired: list[int] = []

    def handler(signum, frame):
        if fired:  # already stopping: a second Ctrl-C must not cut the clean-up short
            return
        fired.append(signum)
        raise Interrupted(signum)

    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def restore_handlers(old: dict) -> None:
    """Put back the handlers install_stop_handlers replaced."""
    for sig, handler in old.items():
        signal.signal(sig, handler)
