"""Lesson 06's picture, drawn from its recorded run (lessons/figures.py): the memory a thread
reserves against what it holds resident, and the futex calls of a free and a taken mutex."""

from __future__ import annotations


UNIT_KIB = {"KiB": 1, "MiB": 1024}


def draw_memory(record: dict, fig) -> None:
    """Reserved against resident memory per thread, and the futex calls of a free and a taken mutex."""
    from lessons.figures import COLOURS, not_measured
    m = record.get("measurements", {})
    rows = (("default stack", "stack mapping per thread, default", "resident memory per thread, default stack"),
            ("256 KiB stack", "stack mapping per thread, 256 KiB", "resident memory per thread, 256 KiB stack"),
            ("64 KiB stack, many threads", "stack mapping per thread, many", "resident memory per thread, many"))
    bars = [(name, m[reserved]["value"] * UNIT_KIB[m[reserved]["unit"]],
             m[resident]["value"] * UNIT_KIB[m[resident]["unit"]])
            for name, reserved, resident in rows if reserved in m and resident in m]
    kernel_labels = ("kernel stack per thread, many", "task_struct, the kernel's record of a task")
    kernel = sum(m[label]["value"] for label in kernel_labels) if all(label in m for label in kernel_labels) else None
    if not bars:
        return not_measured(fig, "this run recorded no memory per thread (not on Linux?)")
    futex_labels = ("futex calls, a mutex per thread (uncontended)", "futex calls, one shared mutex (contended)")
    with_futex = all(label in m for label in futex_labels)
    left, right = fig.subplots(1, 2, width_ratios=[2.2, 1]) if with_futex else (fig.subplots(), None)
    ys = range(len(bars))
    series = [(0.27, [b[1] for b in bars], COLOURS[0], "reserved: stack mapping (virtual)", ",.0f"),
              (0, [b[2] for b in bars], COLOURS[1], "resident: user pages touched", ",.1f")]
    if kernel is not None:  # the same for every thread, whatever its user stack
        series.append((-0.27, [kernel] * len(bars), COLOURS[4], "kernel: its stack and task_struct", ",.1f"))
    for offset, values, colour, label, fmt in series:
        left.barh([y + offset for y in ys], values, height=0.27, color=colour, label=label)
        for y, value in zip(ys, values, strict=True):
            left.text(value, y + offset, f" {value:{fmt}} KiB", va="center", fontsize=8)
    left.set_xscale("log")
    left.set_xlim(1, max(b[1] for b in bars) * 8)
    left.set_yticks(list(ys), [b[0] for b in bars])
    left.set_xlabel("KiB per thread (log scale)")
    left.set_title("Memory per waiting thread: reserved, resident, in the kernel")
    left.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=3, fontsize=8, frameon=False)
    left.grid(axis="y", visible=False)
    if right is not None:
        counts = [m[label]["value"] for label in futex_labels]
        right.bar(["a mutex\neach", "one\nshared"], counts, color=[COLOURS[2], COLOURS[3]])
        for x, count in enumerate(counts):
            right.text(x, count, f"{count:,}", ha="center", va="bottom")
        right.set_ylabel("futex(2) calls (strace)")
        right.set_title("futex(2) calls,\n2 threads locking")
        right.grid(axis="x", visible=False)
