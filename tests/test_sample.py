"""The sampler's CPU reading of a server's tree: what the per-request CPU figures rest on."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench import sample

# A thread-per-connection server in miniature: threads that burn CPU and exit, as a connection's
# thread does when its client leaves. Their CPU must stay in the process's total.
CHILD = r"""
import sys, threading, time
def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
print("ready", flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=burn, args=(0.15,)) for _ in range(4)]
for t in threads: t.start()
print("burning", flush=True)  # every thread runs now, each for 0.15 s of its own CPU at least
for t in threads: t.join()
print("done", flush=True)
sys.stdin.readline()
"""


@pytest.mark.linux
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux-only)")
def test_threads_that_exit_between_readings_never_make_cpu_go_backwards():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        seen: dict = {}  # what a TreeSampler keeps across its readings
        before = sample.sample_tree(proc.pid, memory=False, seen=seen)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "burning"
        time.sleep(0.1)  # they burn, sharing the GIL: each needs 0.6 s of wall time or more
        during = sample.sample_tree(proc.pid, memory=False, seen=seen)
        assert proc.stdout.readline().strip() == "done"
        after = sample.sample_tree(proc.pid, memory=False, seen=seen)
        assert during.threads == 5 and after.threads == 1, "the burning threads have exited"
        # never less than before: an exited thread keeps counting with its last reading (what it
        # ran after that reading is missed, as bench/sample.py says; without `seen`, `after`
        # would drop back to the main thread's own time, below `during`)
        assert before.cpu_s < during.cpu_s <= after.cpu_s
    finally:
        proc.kill()
        proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
