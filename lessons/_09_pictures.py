"""Lesson 09's pictures, drawn from its recorded run (lessons/figures.py): system calls per
request for each server, and the ring's SQEs and CQEs per message with the memory it holds per
idle connection."""

from __future__ import annotations

import importlib


def _lesson():
    """The lesson's module, for the constants its pictures share with its measurements."""
    return importlib.import_module("lessons.09_async_io")


def draw_syscalls(record: dict, fig) -> None:
    """Syscalls per echoed message, per server, by kind."""
    from lessons.figures import COLOURS, not_measured
    per = record.get("series", {}).get("syscalls_per_message")
    if not per:
        return not_measured(fig, "this run counted no syscalls (no strace or perf here)")
    ax = fig.subplots()
    names = list(per)
    # Each server's two biggest syscalls get a colour of their own; the rest is "other".
    shown = []
    for calls in per.values():
        for kind in sorted(calls, key=lambda k: -calls[k])[:2]:
            if kind not in shown:
                shown.append(kind)
    bottom = [0.0] * len(names)
    for i, kind in enumerate(shown + ["other"]):
        values = [sum(v for k, v in per[n].items() if k not in shown) if kind == "other"
                  else per[n].get(kind, 0.0) for n in names]
        ax.bar(names, values, bottom=bottom, label=kind, color=COLOURS[i % len(COLOURS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for x, total in enumerate(bottom):
        ax.annotate(f"{total:.2f}", (x, total), xytext=(0, 3), textcoords="offset points",
                    ha="center")
    ax.set_ylabel("syscalls per echoed message")
    ax.set_title("Readiness pays per operation, completion per batch (16 connections, strace)")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="x", visible=False)


def draw_ring(record: dict, fig) -> None:
    """What the ring's features buy: SQEs per message, memory per idle connection, enters per NOP,
    and the threads a file read needs."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})

    def v(label):
        return m.get(label, {}).get("value")

    panels = fig.subplots(1, 3)
    ax = panels[0]
    labels = [label for label, _ in _lesson().IO_URING_VARIANTS]
    sqes = [v(f"SQEs per message, {lab}") for lab in labels]
    cqes = [v(f"CQEs per message, {lab}") for lab in labels]
    if None in sqes or None in cqes:
        not_measured(ax, "no io_uring server here")
    else:
        xs = range(len(labels))
        for shift, values, name, colour in ((-0.2, sqes, "SQEs", COLOURS[0]),
                                            (0.2, cqes, "CQEs", COLOURS[1])):
            bars = ax.bar([x + shift for x in xs], values, 0.4, label=name, color=colour)
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=2)
        short = {"multishot recv, provided buffers": "multishot\n+ ring",
                 "single-shot recv, provided buffers": "single-shot\n+ ring",
                 "single-shot recv, own buffers": "single-shot\n+ own bufs"}
        ax.set_xticks(list(xs), [short.get(lab, lab) for lab in labels], fontsize=8)
        ax.set_ylabel("per echoed message")
        ax.set_title("multishot recv: one SQE per echo", fontsize=10)
        # The legend gets a band of its own above the tallest bar, so it hides none of them.
        ax.set_ylim(0, max(sqes + cqes) * 1.35)
        ax.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
        ax.grid(axis="x", visible=False)
    ax = panels[1]
    mem = [v("memory per idle connection, provided buffers"),
           v("memory per idle connection, own buffers")]
    if None in mem:
        not_measured(ax, "no provided buffer rings here")
    else:
        bars = ax.bar(["provided\nbuffer ring", "a buffer per\nconnection"],
                      [b / 1024 for b in mem], color=[COLOURS[2], COLOURS[1]])
        ax.bar_label(bars, labels=[f"{b:,.0f} B" for b in mem], fontsize=8, padding=2)
        ax.set_yscale("log")
        # room for the label above the taller bar (log scale: a factor, not a margin)
        ax.set_ylim(min(mem) / 1024 / 3, max(mem) / 1024 * 3)
        ax.set_ylabel("KiB per idle connection (log)")
        ax.set_title("idle connections pin no buffer", fontsize=10)
        ax.grid(axis="x", visible=False)
    ax = panels[2]
    names = ["io_uring", "io_uring (IOSQE_ASYNC)", "asyncio.to_thread", "POSIX AIO (glibc)"]
    tasks = [v(f"extra kernel tasks, {n}") for n in names]
    if all(t is None for t in tasks):
        not_measured(ax, "no file reads measured")
    else:
        short = ["io_uring", "io_uring\n(io-wq)", "to_thread", "POSIX\nAIO"]
        bars = ax.bar(short, [t or 0 for t in tasks],
                      color=[COLOURS[0], COLOURS[5], COLOURS[3], COLOURS[4]])
        # A bar of 0 is invisible: its label says it was measured, and what was not.
        ax.bar_label(bars, labels=["-" if t is None else str(t) for t in tasks], fontsize=8,
                     padding=2)
        ax.set_ylim(0, max(t or 0 for t in tasks) * 1.15 + 0.5)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylabel("extra kernel tasks during the reads")
        ax.set_title(f"{_lesson().FILE_COUNT * _lesson().CHUNKS_PER_FILE} file reads: who waits", fontsize=10)
        ax.grid(axis="x", visible=False)
