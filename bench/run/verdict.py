"""The verdict on one measurement: ok, degraded or failed, and the reason in words, from what the
load generator counted, the server's process tree, its exit and its own log lines; whether the
generator rather than the server set the pace (client-bound); and whether a verdict that
connections starved is the model's or the window's (WINDOW_SERVES)."""

from __future__ import annotations

import re

CLIENT_SATURATED = 0.85  # client CPU utilisation above this, with the server below it: client-bound
SERVER_SATURATED = 0.90  # a server busy this share of its window was saturated too (client_bound())


def client_bound(client_util: float, server_util: float) -> bool:
    """The generator, not the server, set the pace: the generator's CPU was saturated while the
    server's was not. Not saturated: less busy than the generator, and idle more than
    1 - SERVER_SATURATED of the window. A server busy 90 % of the window or more was saturated
    too; both sides were then at their limit, and its figure is its own (with a faster generator
    it could fill at most the last tenth of its window, which is within this machine's noise)."""
    return bool(client_util >= CLIENT_SATURATED
                and server_util < min(client_util, SERVER_SATURATED))


def judge(record: dict, load: dict, crashed: int | None, stopped: str | None = None) -> None:
    """Status and reason from what the generator counted, the server's tree and its own log."""
    errors = load.get("errors", {})
    examples = load.get("error_examples") or {}
    conns = record["conns"]
    reasons = []
    status = "ok"
    if stopped:
        status, reasons = "failed", [stopped]
    elif crashed is not None:
        status, reasons = "failed", [f"server exited during the load (code {crashed})"]
    elif errors.get("mismatch"):
        status = "failed"
        reasons.append(f"corrupted bytes: {errors['mismatch']} connections got back what they did not send")
    elif not load.get("requests"):
        status = "failed"
        counted = [f"{errors[kind]:,} {kind}" for kind in ("connect", "reset", "unserved")
                   if errors.get(kind)]
        reasons.append("no round trip completed" + (f" ({', '.join(counted)})" if counted else ""))
    else:
        if errors.get("connect"):
            status = "degraded"
            example = f" ({examples['connect']})" if examples.get("connect") else ""
            reasons.append(f"{errors['connect']:,} of {conns:,} connections failed to "
                           f"connect{example}")
        if errors.get("reset"):
            status = "degraded"
            reasons.append(f"{errors['reset']:,} of {conns:,} connections were reset or closed "
                           f"by the server")
        if errors.get("unserved"):
            status = "degraded"
            reasons.append(unserved_reason(record, load))
        if errors.get("timeout"):
            status = "degraded"
            reasons.append(f"{errors['timeout']:,} requests unanswered for over "
                           f"{load.get('stall_limit_s', 1.0):g} s")
    if status != "ok" and not stopped and (said := server_said(record.get("stderr_tail"))):
        reasons.append("the server logged: " + "; ".join(f"“{line}”" for line in said))
    if status != "failed" and not record.get("exit", {}).get("clean", True):
        status = "degraded" if status == "ok" else status
        ex = record["exit"]
        reasons.append(f"did not exit cleanly on SIGTERM (code {ex['code']}, {ex['elapsed_s']} s)")
    if reasons:
        record["reason"] = "; ".join(reasons)
    record["status"] = status
    if status == "ok":
        record["stderr_tail"] = None  # keep the file small; stderr matters only when it went wrong


def unserved_reason(record: dict, load: dict) -> str:
    """'N of M connections got no echo at all ...', and what the server's tree says about why."""
    unserved, conns = load["errors"]["unserved"], record["conns"]
    run_s = (load.get("warmup_s") or 0) + (load.get("duration_s") or 0)
    text = (f"{unserved:,} of {conns:,} connections got no echo at all in {run_s:g} s "
            f"(connected, never served)")
    threads, processes = record.get("server_threads"), record.get("server_processes")
    established = load.get("conns_established") or conns
    if threads and threads >= established:
        # Every connection had its thread, and the thread had data to read: what it waited for
        # is the GIL, which goes to threads back from I/O first, not in turn (a convoy).
        text += (f", though the server ran a thread for each ({threads:,} threads): the ones "
                 f"left out waited for the GIL")
    elif threads:
        text += (f": the server had {threads:,} thread{'s' if threads != 1 else ''} in "
                 f"{processes or 1:,} process{'es' if (processes or 1) != 1 else ''} "
                 f"for {established:,} connections")
    return text


LOG_LINE = re.compile(r"^\[\S+ \d+\] (?P<message>.+)$")


def server_said(stderr: str | None, limit: int = 2) -> list[str]:
    """The first distinct things the server logged (its own lines, `[name pid] message`), not its
    shutdown nor the dropped connections of the clients leaving at the end: the first problem a
    server notices is usually the cause. Else the last line of a traceback."""
    if not stderr:
        return []
    said: list[str] = []
    for line in stderr.splitlines():
        match = LOG_LINE.match(line.strip())
        if match and match["message"] not in said and not match["message"].endswith("shut down") \
                and not match["message"].startswith("connection dropped"):  # the clients leaving
            said.append(match["message"])
    if not said:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        said = lines[-1:] if lines and "Error" in lines[-1] else []
    return said[:limit]


# A verdict that a model does not hold N connections must be the model's, not the window's: the
# window has to be long enough to serve every connection WINDOW_SERVES times at the server's own
# measured CPU cost per request. If it was not, the cell is measured again with a window that is,
# up to MAX_WINDOW_S (and the record says when even that was too short).
WINDOW_SERVES = 3
MAX_WINDOW_S = 20.0


def window_needed_s(record: dict, cost_us: float | None) -> float | None:
    """Seconds of window in which the server, at ``cost_us`` of its own CPU per request, could
    serve every one of the cell's connections WINDOW_SERVES times; None without a cost."""
    if not cost_us:
        return None
    return record["conns"] * WINDOW_SERVES * cost_us / 1e6


def starved(record: dict) -> bool:
    """Closed loop, and some connections got nothing or waited too long: the verdict this check
    is about."""
    errors = record.get("errors") or {}
    return (record.get("mode") == "closed" and record["status"] in ("degraded", "failed")
            and bool(errors.get("unserved") or errors.get("timeout") or silent(record)))


# A window in which nothing came back, from a server that neither crashed nor corrupted a byte, is
# measured again once in a window this many times as long (at least NO_REPLY_RETRY_MIN_S): on a
# busy machine a short window's slices can pass without the server or the generator getting a CPU,
# and one such window must not call a working server failed.
NO_REPLY_RETRY_FACTOR = 4
NO_REPLY_RETRY_MIN_S = 1.0


def silent(record: dict) -> bool:
    """No round trip completed, and nothing else went wrong (judge's 'no round trip completed')."""
    return (record["status"] == "failed" and not record.get("requests")
            and str(record.get("reason") or "").startswith("no round trip completed"))


def window_note(record: dict, cost_us: float | None) -> str | None:
    """The sentence the reason gets about the window; None if nothing can be said."""
    needed = window_needed_s(record, cost_us)
    if needed is None:
        return None
    used = (record.get("warmup_s") or 0) + (record.get("duration_s") or record["window_s"])
    if used >= needed:
        return (f"the {used:.1f} s of load were long enough to serve every connection "
                f"{WINDOW_SERVES} times at this server's own cost ({cost_us:.0f} µs of CPU per "
                f"request): a fact of the model, not of the window")
    return (f"the {used:.1f} s of load were shorter than the {needed:.1f} s needed to serve every "
            f"connection {WINDOW_SERVES} times at this server's own cost ({cost_us:.0f} µs per "
            f"request), even after lengthening the window to at most {MAX_WINDOW_S:g} s: this "
            f"verdict may be the window's")

