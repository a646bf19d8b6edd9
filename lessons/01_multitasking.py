"""Lesson 01, multitasking in the OS: one core, several processes, and the scheduler's time slices.

What it shows: a CPU core runs one task at a time. When two CPU-bound processes are pinned to the
same core, the kernel's scheduler (CFS, and EEVDF since Linux 6.6) time-slices them: each runs for a
slice, is preempted (an involuntary context switch), waits in the run queue while the other runs,
and gets the core back. A process that sleeps gives the core up by itself (a voluntary context
switch) and is woken when its timer fires. Unpinned, the same spinners do not stay together: the
scheduler's load balancer moves them to CPUs of their own.

The OS mechanism, and where to see it from outside the process:
- /proc/PID/status: voluntary_ctxt_switches (the task blocked or slept) and
  nonvoluntary_ctxt_switches (the scheduler took the CPU away), proc(5);
- /proc/PID/schedstat: time on the CPU, time waiting in the run queue (both in ns) and how many
  times the task was put on a CPU, kernel Documentation/scheduler/sched-stats.rst;
- /proc/PID/sched: the scheduler's own view; `se.slice` is the slice EEVDF asks for (Linux 6.6+);
- sched_setaffinity(2) to pin both processes to one CPU, so they must share it; then to lift the pin
  and watch the load balancer spread them (stat field 39, the CPU each last ran on; se.nr_migrations
  in /proc/PID/sched).

The time slice is observed two ways: (1) each spinner reads its own monotonic clock in a tight
loop; a jump longer than GAP_NS means it was off the CPU, so the stretches between jumps are its
slices and the jumps are the other spinner's slices; (2) from schedstat, CPU time divided by the
number of times the task was scheduled in.

Linux-only: everything here reads /proc and pins with sched_setaffinity; elsewhere it is skipped.

    python -m lessons.01_multitasking [--quick] [--json PATH]
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from lessons import procfs
from lessons.common import Claim, Lesson, linux_only, parse_args
from lessons.spinners import MAX_SPANS, SLEEP_S, run_together, sleep_often, spin

TIMELINE_SKIP_MS = 200  # the picture's window starts this long after both spinners run ...
TIMELINE_MS = 60  # ... and is this long: a dozen slices each
MAX_BALANCED = 8  # spinners in the load-balancing part: one per CPU, up to this many


def base_slice_ms(pid: int) -> float | None:
    """The slice EEVDF requests for the task (se.slice in /proc/PID/sched, Linux 6.6+), in ms."""
    value = procfs.sched(pid).get("se.slice")
    return int(value) / 1e6 if value and value.isdigit() else None


def timeline(spans_a: list, spans_b: list) -> dict:
    """A TIMELINE_MS window of both spinners' runs, in ms from the window's start."""
    if not spans_a or not spans_b:
        return {"A": [], "B": [], "window_ms": TIMELINE_MS}
    origin = max(spans_a[0][0], spans_b[0][0]) + TIMELINE_SKIP_MS * 1_000_000
    out = {"window_ms": TIMELINE_MS}
    for name, spans in (("A", spans_a), ("B", spans_b)):
        out[name] = [[round((max(s, origin) - origin) / 1e6, 3), round((e - max(s, origin)) / 1e6, 3)]
                     for s, e in spans if e > origin and s < origin + TIMELINE_MS * 1_000_000]
    return out


# -- Unpinned: the load balancer ----------------------------------------------------------------------


def lift_the_pin(allowed: list[int]):
    """A watch for run_together: half the window pinned together, then every spinner may run on any
    of `allowed`; sample where each runs until each has a CPU of its own, then measure the rest."""
    def watch(pids: dict, seconds: float) -> dict:
        half = seconds / 2
        ran = {name: procfs.schedstat(pid)[0] for name, pid in pids.items()}
        t0 = time.monotonic_ns()
        time.sleep(half)
        t1 = time.monotonic_ns()
        pinned = [100 * (procfs.schedstat(pid)[0] - ran[name]) / (t1 - t0) for name, pid in pids.items()]
        for pid in pids.values():
            os.sched_setaffinity(pid, allowed)  # nothing moves them yet: their CPU is still allowed
        spread_ms, end = None, t1 + int(half * 1e9)
        while spread_ms is None and time.monotonic_ns() < end:
            where = {int(procfs.stat(pid)[39]) for pid in pids.values()}  # field 39: the CPU it is on
            if len(where) == len(pids):
                spread_ms = (time.monotonic_ns() - t1) / 1e6
            else:
                time.sleep(0.0005)
        t2 = time.monotonic_ns()
        ran = {name: procfs.schedstat(pid)[0] for name, pid in pids.items()}
        moved = {name: int(procfs.sched(pid).get("se.nr_migrations", 0)) for name, pid in pids.items()}
        time.sleep(max(0.0, (end - time.monotonic_ns()) / 1e9))
        t3 = time.monotonic_ns()
        spread = [100 * (procfs.schedstat(pid)[0] - ran[name]) / (t3 - t2) for name, pid in pids.items()]
        migrations = [int(procfs.sched(pid).get("se.nr_migrations", 0)) - moved[name] for name, pid in pids.items()]
        return {"pinned_pct": statistics.fmean(pinned), "spread_ms": spread_ms,
                "spread_pct": statistics.fmean(spread) if spread_ms is not None else None,
                "migrations": statistics.fmean(migrations), "after_s": (t3 - t2) / 1e9}
    return watch


# How far a reader's figure may be from the recorded one before it is named (lessons.common):
# a lone spinner's preemptions count whatever else the reader's machine runs; se.slice is set by the
# kernel version (and sysctl), not measured.
TOLERANCE = {"involuntary switches per second, spinner alone": None, "base slice requested (se.slice)": None,
             "load balancing: time until each ran on a CPU of its own": None,
             "load balancing: spinners started together on one CPU": None,
             "timer tick (1 / CONFIG_HZ)": None}


# -- Pictures, from the recorded run (lessons/figures.py) ---------------------------------------------


def draw_timeline(record: dict, fig) -> None:
    """Who had the core when: the two pinned spinners' runs, and how long the runs were."""
    from lessons.figures import COLOURS, not_measured
    line = record.get("series", {}).get("timeline")
    slices = record.get("series", {}).get("slices_ms")
    if not line or not line.get("A") or not slices:
        return not_measured(fig, "this run recorded no timeline (an older run, or not on Linux)")
    top, bottom = fig.subplots(2, 1, height_ratios=[1, 1.3])
    for row, name in enumerate(("A", "B")):
        top.broken_barh([(s, d) for s, d in line[name]], (row - 0.35, 0.7), color=COLOURS[row],
                        label=f"spinner {name} on the CPU")
    top.set_xlim(0, line["window_ms"])
    top.set_yticks([0, 1], ["spinner A", "spinner B"])
    top.set_xlabel("time (ms)")
    top.set_title(f"Two spinners pinned to one core: {line['window_ms']} ms of the run "
                  "(white: runnable, waiting in the run queue)")
    top.grid(axis="y", visible=False)
    cap = max(1.0, sorted(slices)[int(0.99 * (len(slices) - 1))] * 1.2)
    bottom.hist([min(s, cap) for s in slices], bins=60, range=(0, cap), color=COLOURS[2])
    m = record.get("measurements", {})
    for label, colour, text in (
            ("time slice, spinner's own clock (median stretch)", COLOURS[0], "median run"),
            ("base slice requested (se.slice)", COLOURS[1], "se.slice requested")):
        if label in m:
            value = m[label]["value"]
            bottom.axvline(value, color=colour, linestyle="--", label=f"{text}: {value:.2f} ms")
    bottom.set_xlabel("length of one run on the CPU (ms)")
    bottom.set_ylabel("runs")
    bottom.legend(loc="upper right")


PICTURES = {"timeline": draw_timeline}

# The page's comparative sentences, checked against the recorded run (tests/test_claims.py).
CLAIMS = [
    Claim("together the pair gets about what one spinner got alone, split about evenly",
          lambda m: abs(m["cpu share, spinner A"] + m["cpu share, spinner B"]
                        - m["cpu share, spinner alone"]) < 10
          and abs(m["cpu share, spinner A"] - m["cpu share, spinner B"]) < 10,
          "A + B is within 10 points of the lone spinner's share, and A within 10 points of B"),
    Claim("the involuntary switches per second of A and B are about one per slice of theirs",
          lambda m: 0.7 < m["involuntary switches per second, spinner A"] * m[
              "time slice, schedstat (cpu time / times scheduled)"] / (10 * m["cpu share, spinner A"]) < 1.3,
          "A's involuntary switches per second are within 30 % of its CPU time / slice length"),
    Claim("The spinner's own clock and the kernel's schedstat measure the same thing from two sides "
          "and should agree",
          lambda m: abs(m["time slice, spinner's own clock (median stretch)"]
                        / m["time slice, schedstat (cpu time / times scheduled)"] - 1) < 0.25,
          "the two slice measurements agree within 25 %"),
    Claim("Nearly all the sleeper's switches are voluntary, about one per sleep, and it uses a tiny "
          "share of the CPU",
          lambda m: m["voluntary switches per second, sleeper"]
          > 10 * m["involuntary switches per second, sleeper"]
          and 0.5 < m["voluntary switches per second, sleeper"] * SLEEP_S < 1.05
          and m["cpu share, sleeper"] < 10,
          "voluntary > 10x involuntary, 50-105 % of one per 1 ms sleep, under 10 % CPU"),
    Claim("the observed\n  slice lies between the two, at least `se.slice` and at most one tick more",
          lambda m: 0.9 * m["base slice requested (se.slice)"] <= m["time slice, spinner's own clock (median stretch)"]
          <= 1.1 * (m["base slice requested (se.slice)"] + m["timer tick (1 / CONFIG_HZ)"]),
          "se.slice <= the observed slice <= se.slice + one tick (10 % margins)"),
    Claim("Pinned together, the spinners split one CPU",
          lambda m: abs(m["load balancing: cpu share each, pinned together"]
                        - 100 / m["load balancing: spinners started together on one CPU"]) < 10,
          "each pinned spinner got within 10 points of 100 % / their number"),
    Claim("gave each a CPU of its own within a fraction of the window, and each then got close to a\n  whole CPU",
          lambda m: m["load balancing: time until each ran on a CPU of its own"] < 1000
          and m["load balancing: cpu share each, once apart"] > 75,
          "apart within 1 s of the 2 s left, then over 75 % of a CPU each"),
    Claim("the migrations after that\n  are few",
          lambda m: m["load balancing: migrations per spinner, once apart"] < 5,
          "under 5 migrations per spinner once they were apart"),
    Claim("nearly every time the sleeper woke up it took the\n  CPU from the spinner at once",
          lambda m: m["involuntary switches per second, spinner"] > 0.8 * m["voluntary switches per second, sleeper"],
          "the spinner's involuntary switches over 80 % of the sleeper's voluntary ones"),
    Claim("(a few milliseconds at most)", lambda m: m["base slice requested (se.slice)"] < 5,
          "se.slice under 5 ms"),
    Claim("So the slice you observe depends on the\ntick as much as on the scheduler's request",
          lambda m: 0.9 * m["base slice requested (se.slice)"] <= m["time slice, spinner's own clock (median stretch)"]
          <= 1.1 * (m["base slice requested (se.slice)"] + m["timer tick (1 / CONFIG_HZ)"]),
          "se.slice <= the observed slice <= se.slice + one tick (10 % margins)"),
    Claim("alternating runs of about one tick",
          lambda m: abs(m["time slice, spinner's own clock (median stretch)"] / m["timer tick (1 / CONFIG_HZ)"] - 1) < 0.1,
          "the median run within 10 % of one tick"),
    Claim.unmeasured("a task that deserves the CPU more has woken up",
                     "the two reasons for a preemption (sched(7)); the sleeper's wake-up preemption is checked below"),
    Claim.unmeasured("`se.slice` itself grows with the number of\nCPUs",
                     "the kernel's scaling of the base slice (kernel/sched/fair.c, SCHED_TUNABLESCALING_LOG); "
                     "a run sees one CPU count"),
    Claim.unmeasured("every few\nmilliseconds, less often across sockets",
                     "the balancer's intervals by domain (Documentation/scheduler/sched-domains.rst); the time "
                     "to spread is measured below"),
    Claim.unmeasured("Reading the monotonic\nclock in a tight loop takes well under a microsecond",
                     "the reason for the lesson's threshold (GAP_NS, 250 µs): a clock read against a time slice"),
    Claim.unmeasured("half the window pinned together", "how the lesson splits its window, not a figure"),
    Claim.unmeasured("the other half of\n  the story", "a figure of speech, not a figure"),
    Claim.unmeasured("The nice-10 spinner gets about a tenth of the core",
                     "the kernel's weight table (1024 : 110, 9.7 %) for the reader's own exercise; lesson 04 "
                     "measures nice 5 against its weight"),
    Claim.unmeasured("on a running process, twice", "an instruction (read it twice), not a comparison"),
    Claim.unmeasured("a few times (`PSR` is the CPU each is on)", "an instruction (run it a few times), not a comparison"),
]


# -- The lesson -----------------------------------------------------------------------------------------


LABELS = (
    "cpu share, spinner alone", "involuntary switches per second, spinner alone",
    "cpu share, spinner A", "cpu share, spinner B", "run-queue wait, spinner A",
    "involuntary switches per second, spinner A", "involuntary switches per second, spinner B",
    "time slice, spinner's own clock (median stretch)", "time the other ran (median gap)",
    "time slice, schedstat (cpu time / times scheduled)", "base slice requested (se.slice)",
    "cpu share, sleeper", "voluntary switches per second, sleeper",
    "involuntary switches per second, sleeper", "voluntary switches per second, spinner",
    "involuntary switches per second, spinner", "timer tick (1 / CONFIG_HZ)",
    *(BALANCE_LABELS := ("load balancing: spinners started together on one CPU",
                         "load balancing: cpu share each, pinned together",
                         "load balancing: time until each ran on a CPU of its own",
                         "load balancing: cpu share each, once apart",
                         "load balancing: migrations per spinner, once apart")),
)


def main() -> int:
    args = parse_args(__doc__)
    lesson = Lesson("01", "Multitasking in the OS", args)
    why_not = linux_only("/proc/PID/schedstat and sched_setaffinity") or (
        None if os.path.exists("/proc/self/schedstat") else
        "no /proc/PID/schedstat (a kernel built without CONFIG_SCHED_INFO)")
    if why_not:
        lesson.skip_all(LABELS, why_not)
        lesson.notice("nothing was measured: this lesson reads Linux's /proc")
        return lesson.finish()

    seconds = 1.5 if lesson.quick else 4.0
    cpu = max(os.sched_getaffinity(0))  # the last CPU we may use; every child is pinned to it

    lesson.section(f"one spinner alone on CPU {cpu} ({seconds:g} s)")
    alone = run_together({"alone": spin}, seconds, {cpu})["alone"]
    lesson.measure("cpu share, spinner alone", alone["cpu_share_pct"], "%")
    lesson.measure("involuntary switches per second, spinner alone", alone["involuntary_per_s"], "/s")

    lesson.section(f"two spinners pinned to CPU {cpu} ({seconds:g} s)")
    pair = run_together({"A": spin, "B": spin}, seconds, {cpu})
    a, b = pair["A"], pair["B"]
    lesson.measure("cpu share, spinner A", a["cpu_share_pct"], "%")
    lesson.measure("cpu share, spinner B", b["cpu_share_pct"], "%")
    lesson.measure("run-queue wait, spinner A", a["waiting_pct"], "%")
    lesson.measure("involuntary switches per second, spinner A", a["involuntary_per_s"], "/s")
    lesson.measure("involuntary switches per second, spinner B", b["involuntary_per_s"], "/s")

    lesson.section("the time slice, as the spinners saw it")
    runs = a["seen"]["runs_ns"] + b["seen"]["runs_ns"]
    gaps = a["seen"]["gaps_ns"] + b["seen"]["gaps_ns"]
    own_ms = statistics.median(runs) / 1e6 if runs else float("nan")
    gap_ms = statistics.median(gaps) / 1e6 if gaps else float("nan")
    stat_ms = statistics.mean([a["ms_per_slice"], b["ms_per_slice"]])
    lesson.measure("time slice, spinner's own clock (median stretch)", own_ms, "ms")
    lesson.measure("time the other ran (median gap)", gap_ms, "ms")
    lesson.measure("time slice, schedstat (cpu time / times scheduled)", stat_ms, "ms")
    lesson.series("timeline", timeline(a["seen"]["spans_ns"], b["seen"]["spans_ns"]))
    lesson.series("slices_ms", [round(r / 1e6, 3) for r in runs[:MAX_SPANS]])
    requested_ms = base_slice_ms(os.getpid())
    if requested_ms is None:
        lesson.skip("base slice requested (se.slice)", "no se.slice in /proc/PID/sched (Linux < 6.6, "
                    "before the EEVDF scheduler)")
    else:
        lesson.measure("base slice requested (se.slice)", requested_ms, "ms")
    hz = procfs.config_hz()
    if hz is None:
        lesson.skip("timer tick (1 / CONFIG_HZ)", "neither /proc/config.gz nor /boot/config-$(uname -r) is "
                    "readable: `grep 'CONFIG_HZ=' /boot/config-$(uname -r)` where the distribution installed it")
    else:
        lesson.measure("timer tick (1 / CONFIG_HZ)", 1000 / hz, "ms")

    lesson.section(f"a sleeper (sleeps {SLEEP_S * 1e3:g} ms at a time) and a spinner on CPU {cpu}")
    mixed = run_together({"sleeper": sleep_often, "spinner": spin}, seconds, {cpu})
    sleeper, spinner = mixed["sleeper"], mixed["spinner"]
    lesson.measure("cpu share, sleeper", sleeper["cpu_share_pct"], "%")
    lesson.measure("voluntary switches per second, sleeper", sleeper["voluntary_per_s"], "/s")
    lesson.measure("involuntary switches per second, sleeper", sleeper["involuntary_per_s"], "/s")
    lesson.measure("voluntary switches per second, spinner", spinner["voluntary_per_s"], "/s")
    lesson.measure("involuntary switches per second, spinner", spinner["involuntary_per_s"], "/s")

    allowed = sorted(os.sched_getaffinity(0))
    n = min(len(allowed), MAX_BALANCED)
    balance_s = 1.0 if lesson.quick else seconds  # the spread takes milliseconds
    lesson.section(f"unpinned: {n} spinners start together on CPU {cpu}, then may run on any of "
                   f"CPUs {allowed[0]}-{allowed[-1]} ({balance_s:g} s)")
    balanced = None
    if n < 2:
        lesson.skip_all(BALANCE_LABELS, "this process may use one CPU only: there is nowhere to balance "
                        "to (taskset -c 0,1 or a machine with two CPUs)")
    else:
        works = {f"spinner {i + 1}": spin for i in range(n)}
        balanced = run_together(works, balance_s, {cpu}, watch=lift_the_pin(allowed))[None]
        lesson.measure(BALANCE_LABELS[0], n)
        lesson.measure(BALANCE_LABELS[1], balanced["pinned_pct"], "%")
        if balanced["spread_ms"] is None:
            lesson.skip_all(BALANCE_LABELS[2:], f"they did not get a CPU each within {balance_s / 2:g} s (a busy machine)")
        else:
            lesson.measure(BALANCE_LABELS[2], balanced["spread_ms"], "ms")
            lesson.measure(BALANCE_LABELS[3], balanced["spread_pct"], "%")
            lesson.measure(BALANCE_LABELS[4], balanced["migrations"])

    if alone["cpu_share_pct"] < 90:
        lesson.notice(f"the spinner alone got only {alone['cpu_share_pct']:.0f}% of CPU {cpu}: other programs "
                      "on this machine ran there too, so every figure below is shared with them")
    share = a["cpu_share_pct"] + b["cpu_share_pct"]
    lesson.notice(f"together the two spinners got {share:.0f}% of one core, A {a['cpu_share_pct']:.0f}% "
                  f"and B {b['cpu_share_pct']:.0f}%: the scheduler split the core between them; "
                  f"alone, a spinner got {alone['cpu_share_pct']:.0f}%")
    lesson.notice(f"sharing the core, spinner A was preempted {a['involuntary_per_s']:,.0f} times a "
                  f"second and spent {a['waiting_pct']:.0f}% of the time runnable but waiting; "
                  f"alone it was preempted {alone['involuntary_per_s']:,.0f} times a second")
    lesson.notice(f"a spinner ran about {own_ms:.2g} ms at a time by its own clock and "
                  f"{stat_ms:.2g} ms by the kernel's schedstat, then waited {gap_ms:.2g} ms"
                  + (f"; the scheduler asks for {requested_ms:.2g} ms slices (se.slice)"
                     if requested_ms else ""))
    tick = f"{1000 / hz:g} ms with CONFIG_HZ = {hz}" if hz else "1 to 10 ms, CONFIG_HZ"
    if requested_ms and own_ms > 1.5 * requested_ms:
        lesson.notice(f"slices ran {own_ms / requested_ms:.1f}x longer than se.slice: without high-"
                      "resolution preemption ticks the kernel checks for an expired slice at the "
                      f"timer tick (every {tick}), so a slice ends at the first tick after it is used up")
    elif requested_ms:
        lesson.notice(f"slices ended within {own_ms / requested_ms:.1f}x of se.slice: the tick (every {tick}) "
                      "comes often enough here that a used-up slice ends about on time")
    if balanced and balanced["spread_ms"] is not None:
        lesson.notice(f"pinned together, {n} spinners got {balanced['pinned_pct']:.0f}% each; once they "
                      f"might move, the load balancer gave each a CPU of its own within "
                      f"{balanced['spread_ms']:,.0f} ms, and then left them there ({balanced['migrations']:.1f} "
                      f"migrations each in {balanced['after_s']:.1f} s), each at {balanced['spread_pct']:.0f}%")
    lesson.notice(f"the sleeper gave up the CPU by itself {sleeper['voluntary_per_s']:,.0f} times a "
                  f"second using {sleeper['cpu_share_pct']:.1f}% of it; the spinner beside it was "
                  f"preempted {spinner['involuntary_per_s']:,.0f} times a second"
                  + (": nearly every time the sleeper woke up, it took the CPU from the spinner at once "
                     "(wakeup preemption)"
                     if spinner["involuntary_per_s"] > 0.5 * sleeper["voluntary_per_s"] else
                     ": most of the sleeper's wake-ups waited for the spinner's slice to end"))
    return lesson.finish()


if __name__ == "__main__":
    sys.exit(main())
