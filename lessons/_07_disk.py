"""Lesson 07, part 7: blocking on disk. A read() of a file waits for the disk unless the page cache
already holds the pages, and while it waits the thread is in the D state.

The lesson writes a file next to the reader's own results (results/lessons/, on the disk that holds
the checkout), fsync()s it and drops its pages from the page cache with
posix_fadvise(POSIX_FADV_DONTNEED): clean pages of a file the process may read are dropped without
root. Then a thread reads it twice, in 1 MiB read()s, while the main thread samples the reader's
state in /proc/self/task/TID/stat: the first pass comes from the disk (/proc/self/io read_bytes
counts what the kernel fetched from storage; the thread is seen in D, "disk sleep"), the second
from the page cache (nothing fetched; the thread copies, state R). Skipped where the file system
has no disk behind it (tmpfs), or where the reader's results directory cannot be written.

The OS mechanism: read(2) on a file goes through the page cache (filemap_read); a page that is not
there is read from the block device, and the task waits for it in TASK_UNINTERRUPTIBLE (or
TASK_KILLABLE, shown as D too: only a fatal signal ends it); posix_fadvise(2), proc(5) (io, stat).
lessons/07_blocking_io.py runs ``disk_section(lesson)``. Linux-only.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

from lessons import procfs
from lessons.common import READER_RESULTS, Claim, Lesson, linux_only

DISK_CHUNK_BYTES = 1 << 20  # one read() asks for this much
DISK_SAMPLE_S = 0.0002  # how often the reader's state is sampled
DISK_TIMEOUT_S = 60.0
NO_DISK = ("tmpfs", "ramfs", "devtmpfs")  # file systems whose pages are the storage


def filesystem_type(path: Path) -> str:
    """The type of the file system holding ``path`` (ext4, xfs, btrfs, tmpfs...), from the
    longest mount point of /proc/self/mountinfo that contains it."""
    best, kind = "", "unknown"
    target = str(path.resolve())
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            mount_point, fs_type = fields[4], fields[fields.index("-") + 1]
            inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
            if inside and len(mount_point) >= len(best):
                best, kind = mount_point, fs_type
    return kind


def read_bytes_from_storage() -> int:
    """read_bytes of /proc/self/io: what this process made the kernel fetch from storage."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])


def timed_read(path: Path) -> dict:
    """Read the whole file in DISK_CHUNK_BYTES read()s, in a thread, while this thread samples
    that thread's state (/proc/self/task/TID/stat) every DISK_SAMPLE_S. Returns the wall and CPU
    time of the reading thread, the bytes fetched from storage, and the states it was seen in."""
    got: dict = {}
    states: dict[str, int] = {}
    started = threading.Event()

    def reader():
        got["tid"] = threading.get_native_id()
        buffer = bytearray(DISK_CHUNK_BYTES)
        with open(path, "rb", buffering=0) as f:
            io0, cpu0, t0 = read_bytes_from_storage(), time.thread_time(), time.perf_counter()
            started.set()
            while f.readinto(buffer):  # a page not in the cache: the thread sleeps on the disk
                pass
            got.update(wall_ms=(time.perf_counter() - t0) * 1e3, cpu_ms=(time.thread_time() - cpu0) * 1e3,
                       fetched=read_bytes_from_storage() - io0)

    thread = threading.Thread(target=reader)
    thread.start()
    started.wait(DISK_TIMEOUT_S)
    while thread.is_alive():
        try:
            letter = procfs.stat("self", got["tid"])[3] if "tid" in got else None
        except (FileNotFoundError, ProcessLookupError):  # the reader has just finished
            break
        if letter:
            states[letter] = states.get(letter, 0) + 1
            if letter == "D" and "wchan" not in got:  # the first D seen; it may have woken since ("0")
                wchan = procfs.read(f"/proc/self/task/{got['tid']}/wchan")
                if wchan not in (None, "", "0"):
                    got["wchan"] = wchan
        time.sleep(DISK_SAMPLE_S)
    thread.join(DISK_TIMEOUT_S)
    got["states"] = states
    return got


def disk_reads(directory: Path, size: int) -> dict:
    """Write ``size`` bytes to a new file in ``directory``, fsync() it, and drop its pages from the
    page cache with posix_fadvise(POSIX_FADV_DONTNEED) (clean pages of a file one can read: no root
    needed). Then read it twice: the first time from the disk, the second from the page cache."""
    block = os.urandom(DISK_CHUNK_BYTES)
    with tempfile.NamedTemporaryFile(dir=directory, prefix="lesson07-") as f:
        for _ in range(size // DISK_CHUNK_BYTES):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())  # dirty pages cannot be dropped: write them to the disk first
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        cold = timed_read(Path(f.name))
        warm = timed_read(Path(f.name))  # every page is in the cache now
    return {"cold": cold, "warm": warm}


LABELS = {"fs": "file system holding the file", "size": "size of the file",
          ("cold", "wall_ms"): "read from the disk: time", ("cold", "fetched"): "read from the disk: bytes fetched from storage",
          ("cold", "cpu_ms"): "read from the disk: CPU time of the reading thread",
          ("cold", "d_pct"): "read from the disk: samples of the reader in D state",
          ("cold", "wchan"): "read from the disk: wait channel in D state",
          ("warm", "wall_ms"): "read from the page cache: time",
          ("warm", "fetched"): "read from the page cache: bytes fetched from storage",
          ("warm", "cpu_ms"): "read from the page cache: CPU time of the reading thread",
          ("warm", "d_pct"): "read from the page cache: samples of the reader in D state",
          "ratio": "read from the disk, against from the page cache"}


def disk_section(lesson: Lesson) -> None:
    size = (16 if lesson.quick else 64) << 20
    lesson.section(f"reading a {size >> 20} MiB file twice in {DISK_CHUNK_BYTES >> 20} MiB read()s: from the disk "
                   "(its pages dropped from the page cache), then from the page cache")
    why = linux_only("/proc/self/io, /proc/self/mountinfo and posix_fadvise")
    fs = None
    if not why:
        try:
            READER_RESULTS.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            why = f"cannot write {READER_RESULTS}: {exc.strerror}"
    if not why:
        fs = lesson.measure(LABELS["fs"], filesystem_type(READER_RESULTS))
        if fs in NO_DISK:
            why = (f"{READER_RESULTS} is on {fs}: its pages are the storage, there is no disk to wait for "
                   "(run the lesson from a checkout on a disk)")
    if not why:
        try:
            r = disk_reads(READER_RESULTS, size)
        except OSError as exc:  # e.g. a checkout another user owns: the test file goes beside your results
            why = f"cannot write its test file in {READER_RESULTS}: {exc.strerror}"
    for key, label in LABELS.items():
        if why:
            if not (key == "fs" and fs):
                lesson.skip(label, why)
            continue
        if key == "fs":
            continue
        if key == "size":
            lesson.measure(label, size / (1 << 20), "MiB")
            continue
        if key == "ratio":
            lesson.measure(label, r["cold"]["wall_ms"] / r["warm"]["wall_ms"], "x", fmt=".1f")
            continue
        part, field = key
        got = r[part]
        if field == "fetched":
            lesson.measure(label, got["fetched"] / (1 << 20), "MiB")
        elif field == "d_pct":
            lesson.measure(label, 100 * got["states"].get("D", 0) / max(sum(got["states"].values()), 1), "%")
        elif field == "wchan":
            if got.get("wchan") not in (None, "", "0"):
                lesson.measure(label, got["wchan"])
            else:
                lesson.skip(label, "not seen: no sample in D, or this kernel hides wait channels")
        else:
            lesson.measure(label, got[field], "ms")
    if not why:
        cold, warm = r["cold"], r["warm"]
        lesson.notice(f"read from the disk, {size >> 20} MiB took {cold['wall_ms']:.0f} ms and {cold['cpu_ms']:.0f} ms "
                      f"of the thread's CPU, the kernel fetched {cold['fetched'] >> 20} MiB from storage and the "
                      f"thread was in D in {lesson.measurements[LABELS['cold', 'd_pct']]['value']:.0f} % of the "
                      f"samples; from the page cache it took {warm['wall_ms']:.0f} ms ({warm['cpu_ms']:.0f} ms of CPU: "
                      f"the copy) and fetched {warm['fetched'] >> 20} MiB: a read blocks on the disk only for pages "
                      "the cache lacks")


# The reader's disk, kernel and file system decide these: shown beside the recorded ones, not judged.
MACHINE_LABELS = (LABELS["fs"], LABELS["cold", "wall_ms"], LABELS["cold", "cpu_ms"], LABELS["cold", "wchan"],
                  LABELS["cold", "d_pct"], LABELS["ratio"])

CLAIMS = [
    Claim("fetched the whole file from storage the first time, and nothing\n  the second",
          lambda m: m[LABELS["cold", "fetched"]] >= 0.9 * m[LABELS["size"]] and m[LABELS["warm", "fetched"]] <= 1,
          "the disk read fetched 90 % of the file or more from storage, the cached read at most 1 MiB"),
    Claim("the reading thread was seen in `D`",
          lambda m: m[LABELS["cold", "d_pct"]] >= 5 and m[LABELS["warm", "d_pct"]] <= 1,
          "5 % of the samples or more in D while reading from the disk, at most 1 % from the page cache"),
    Claim("several times quicker",
          lambda m: m[LABELS["ratio"]] >= 3,
          "the read from the disk takes 3x the read from the page cache or more"),
]
