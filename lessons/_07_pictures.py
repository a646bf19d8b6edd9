"""Lesson 07's pictures, drawn from its recorded run (lessons/figures.py): the head-of-line timeline,
the interrupted recv() calls, and where the copy lands."""

from __future__ import annotations


def draw_head_of_line(record: dict, fig) -> None:
    """When client B connected and when it got its echo, on each server, while A held on."""
    from lessons.figures import COLOURS, not_measured
    hol = record.get("series", {}).get("head_of_line")
    if not hol or not hol.get("servers"):
        return not_measured(fig, "this run recorded no head-of-line timeline (an older run, or no server ran)")
    ax = fig.subplots()
    hold_ms, names = hol["hold_ms"], list(hol["servers"])
    for y, name in enumerate(names):
        r = hol["servers"][name]
        ax.broken_barh([(0, hold_ms)], (y + 0.1, 0.3), color=COLOURS[5], alpha=0.6,
                       label="A connected, silent" if y == 0 else None)
        done = r["connect_ms"] + r["echo_ms"]
        ax.broken_barh([(r["connect_ms"], max(r["echo_ms"], hold_ms / 300))], (y - 0.4, 0.3), color=COLOURS[1],
                       label="B waiting for its echo" if y == 0 else None)
        ax.plot([r["connect_ms"]], [y - 0.25], marker="|", markersize=14, color=COLOURS[7])
        shown = f"{r['echo_ms']:,.0f}" if r["echo_ms"] >= 10 else f"{r['echo_ms']:.2g}"
        ax.annotate(f"B echoed after {shown} ms", (done, y - 0.25), xytext=(6, 0),
                    textcoords="offset points", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, hold_ms * 1.35)
    ax.set_ylim(-0.7, len(names) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("ms since B connected (A had connected just before); the mark is B's connect() returning")
    ax.set_title(f"Head-of-line blocking: A holds its connection for {hold_ms:,.0f} ms, B asks for one echo")
    ax.legend(loc="lower right")
    ax.grid(axis="y", visible=False)


def draw_eintr(record: dict, fig) -> None:
    """A signal during a blocking recv(): when each call returned, and when the Python handler ran."""
    from lessons.figures import COLOURS, not_measured
    e = record.get("series", {}).get("eintr")
    if not e or not e.get("trials"):
        return not_measured(fig, "this run recorded no interrupted recv() (an older run)")
    ax = fig.subplots()
    trials = e["trials"]
    for y, t in enumerate(trials):
        ax.broken_barh([(0, t["returned_ms"])], (y - 0.3, 0.6), color=COLOURS[0],
                       label="blocked in recv()" if y == 0 else None)
        if t.get("handler_ms") is not None:
            ax.plot([t["handler_ms"]], [y], marker="D", color=COLOURS[1], linestyle="",
                    label="Python handler ran" if y == 0 else None)
        ax.annotate(f"returned: {t['result']}", (t["returned_ms"], y), xytext=(8, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.axvline(e["signal_ms"], color=COLOURS[7], linestyle="--", label=f"SIGUSR1 sent ({e['signal_ms']:.0f} ms)")
    ax.axvline(e["data_ms"], color=COLOURS[2], linestyle=":", label=f"the byte sent ({e['data_ms']:.0f} ms)")
    ax.set_yticks(range(len(trials)), [t["name"] for t in trials])
    ax.invert_yaxis()
    ax.set_xlim(0, e["data_ms"] * 2.1)
    ax.set_xlabel("ms since the call")
    ax.set_title("A signal during a blocking recv(): EINTR in C, a retry in Python, a restart with SA_RESTART")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="y", visible=False)


def draw_copy_destination(record: dict, fig) -> None:
    """µs per 64 KiB recv() by where the buffer starts, past a page boundary."""
    from lessons.figures import COLOURS, not_measured
    c = record.get("series", {}).get("copy_destination")
    if not c or not c.get("us_by_offset"):
        return not_measured(fig, "this run recorded no copy destinations (an older run)")
    offsets = sorted(c["us_by_offset"], key=int)
    us = [c["us_by_offset"][o] for o in offsets]
    ax = fig.subplots()
    bars = ax.bar([f"+{o} B" if o != "0" else "on the boundary" for o in offsets], us,
                  color=[COLOURS[1] if u > 1.3 * us[0] else COLOURS[0] for u in us])
    ax.bar_label(bars, labels=[f"{u:.1f} µs" for u in us], padding=2)
    ax.set_ylabel(f"µs per recv() of {c['bytes'] // 1024} KiB (median)")
    ax.set_xlabel("where the receive buffer starts, relative to a page boundary")
    ax.set_title("The same recv(), the same bytes: only the buffer's start differs")
    ax.grid(axis="x", visible=False)
