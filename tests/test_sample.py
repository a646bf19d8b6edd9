"""The sampler's CPU reading of a server's tree: what the per-request CPU figures rest on."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench.run import sample

# A thread-per-connection server in miniature: threads that burn CPU and exit, as a connection's
# thread does when its client leaves. Their CPU must stay in the process's total.
CHILD = r"""
import sys, threading, time
stop = threading.Event()
def burn():
    while not stop.is_set():
        pass
print("ready", flush=True)
sys.stdin.readline()
threads = [threading.Thread(target=burn) for _ in range(4)]
for t in threads: t.start()
print("burning", flush=True)  # all four run until told to stop, however slow the machine
sys.stdin.readline()
stop.set()
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
        # until their CPU shows (the counters tick at 100 Hz; a loaded machine may take a while)
        deadline = time.monotonic() + 10
        during = sample.sample_tree(proc.pid, memory=False, seen=seen)
        while during.cpu_s <= before.cpu_s + 0.05 and time.monotonic() < deadline:
            time.sleep(0.05)
            during = sample.sample_tree(proc.pid, memory=False, seen=seen)
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
        after = sample.sample_tree(proc.pid, memory=False, seen=seen)
        assert during.threads == 5 and after.threads == 1, "the burning threads have exited"
        # never less than before: an exited thread keeps counting with its last reading (what it
        # ran after that reading is missed, as bench/run/sample.py says; without `seen`, `after`
        # would drop back to the main thread's own time, below `during`)
        assert before.cpu_s < during.cpu_s <= after.cpu_s
    finally:
        proc.kill()
        proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
