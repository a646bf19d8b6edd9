"""The CPUs as the kernel describes them in /sys: physical cores, SMT siblings, core types, caches.

    top = topology(allowed)              # the logical CPUs this process may use
    top.cores                            # physical cores, each the tuple of its logical CPUs
    top.smt_per_core, top.packages       # hardware threads per core, sockets
    top.kind_of[cpu]                     # "P" or "E" on a hybrid machine, "" where all are alike
    server, client = split_by_core(top)  # two halves that share no physical core (or None, None)
    ClockSampler(cpus)                   # a thread noting the clock (cpufreq) while a phase runs

Where it reads (Documentation/ABI/stable/sysfs-devices-system-cpu, admin-guide/cputopology.rst):
- cpuN/topology/core_cpus_list (thread_siblings_list before Linux 5.7): the logical CPUs on cpuN's
  core, its SMT siblings; physical_package_id: its socket;
- a hybrid CPU's core types: Intel's perf devices /sys/devices/cpu_core/cpus (performance cores) and
  /sys/devices/cpu_atom/cpus (efficiency cores); elsewhere (ARM big.LITTLE, and Intel hybrid too)
  cpuN/cpu_capacity, 1024 for the fastest cores and less for the smaller ones;
- cpuN/cache/indexM/{level,type,size,shared_cpu_list}: the caches;
- cpuN/cpufreq/cpuinfo_max_freq and scaling_cur_freq: the clock, where the kernel drives it (a
  virtual machine often has no cpufreq at all).

Every path hangs off ``root`` (default /sys), so the tests give it a fake tree. Linux-only.
"""

from __future__ import annotations

import statistics
import threading
from dataclasses import dataclass, field
from pathlib import Path

SYS = Path("/sys")
SIZE_UNITS_KIB = {"K": 1, "M": 1024, "G": 1024 * 1024}  # cache sizes in /sys read "32K", "1024K"...


def read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_list(text: str) -> list[int]:
    """Parse the kernel's CPU list format, e.g. "0-3,8-11"."""
    cpus = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


@dataclass
class Topology:
    cpus: list[int]  # the logical CPUs looked at
    cores: list[tuple[int, ...]]  # each physical core: its logical CPUs among `cpus`, in order
    packages: int
    smt_per_core: int  # hardware threads of the widest core (1: no SMT siblings)
    kind_of: dict[int, str] = field(default_factory=dict)  # "P" / "E" on a hybrid CPU, else ""

    @property
    def physical_cores(self) -> int:
        return len(self.cores)

    @property
    def hybrid(self) -> bool:
        return len({k for k in self.kind_of.values() if k}) > 1

    def core_of(self, cpu: int) -> tuple[int, ...]:
        return next(core for core in self.cores if cpu in core)


def topology(cpus: list[int], root: Path = SYS) -> Topology:
    """Physical cores, SMT siblings and core types of the given logical CPUs."""
    system = root / "devices" / "system" / "cpu"
    cores: dict[tuple[int, ...], None] = {}
    packages, widest = set(), 1
    for cpu in cpus:
        top = system / f"cpu{cpu}" / "topology"
        listed = read(top / "core_cpus_list") or read(top / "thread_siblings_list") or str(cpu)
        siblings = cpu_list(listed)
        widest = max(widest, len(siblings))
        cores[tuple(c for c in siblings if c in cpus) or (cpu,)] = None
        packages.add(read(top / "physical_package_id"))
    return Topology(list(cpus), sorted(cores), len(packages), widest, core_kinds(cpus, root))


def core_kinds(cpus: list[int], root: Path = SYS) -> dict[int, str]:
    """"P" (performance) or "E" (efficiency) per CPU on a hybrid machine; "" for all where they
    are alike or nothing says."""
    performance, efficiency = (read(root / "devices" / name / "cpus") for name in ("cpu_core", "cpu_atom"))
    if performance and efficiency:  # Intel hybrid: the PMU of each core type lists its CPUs
        p, e = set(cpu_list(performance)), set(cpu_list(efficiency))
        return {cpu: "P" if cpu in p else "E" if cpu in e else "" for cpu in cpus}
    capacity = {cpu: read(root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpu_capacity") for cpu in cpus}
    known = {cpu: int(c) for cpu, c in capacity.items() if c and c.isdigit()}
    if len(set(known.values())) > 1:  # big.LITTLE: the largest capacity is the big cores'
        top = max(known.values())
        return {cpu: ("P" if known.get(cpu) == top else "E") if cpu in known else "" for cpu in cpus}
    return dict.fromkeys(cpus, "")


def sibling_pairs(top: Topology) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(two SMT siblings of one core, two CPUs of two different cores of the same kind), where
    they exist: the two placements lesson 02 compares."""
    siblings = next((core[:2] for core in top.cores if len(core) > 1), None)
    separate = None
    for i, a in enumerate(top.cores):
        for b in top.cores[i + 1:]:
            if top.kind_of.get(a[0], "") == top.kind_of.get(b[0], ""):
                separate = (a[0], b[0])
                break
        if separate:
            break
    return siblings, separate


def split_by_core(top: Topology, min_cores: int = 4) -> tuple[list[int] | None, list[int] | None]:
    """Two halves of the CPUs that share no physical core, each with as many performance and
    efficiency cores as the other (cores dealt in turn, performance cores first), so that a server
    and its load generator never run on SMT siblings of one core. (None, None) with fewer than
    `min_cores` physical cores: then both share every CPU."""
    if top.physical_cores < min_cores:
        return None, None
    order = sorted(top.cores, key=lambda core: (top.kind_of.get(core[0], "") == "E", core))
    server = sorted(cpu for core in order[0::2] for cpu in core)
    client = sorted(cpu for core in order[1::2] for cpu in core)
    return server, client


def caches(cpu: int, root: Path = SYS) -> dict[str, tuple[int, int]]:
    """The caches `cpu` sees: {"L2": (size in KiB, number of logical CPUs sharing it)}."""
    found = {}
    for index in sorted((root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cache").glob("index*")):
        level, kind, size = (read(index / name) for name in ("level", "type", "size"))
        if not (level and kind and size):
            continue
        name = f"L{level}" + {"Data": "d", "Instruction": "i"}.get(kind, "")
        kib = int(size[:-1]) * SIZE_UNITS_KIB[size[-1]] if size[-1] in SIZE_UNITS_KIB else int(size) // 1024
        shared = read(index / "shared_cpu_list")
        found[name] = (kib, len(cpu_list(shared)) if shared else 1)
    return found


def frequencies_mhz(cpus: list[int], root: Path = SYS) -> dict[int, tuple[float, float]] | None:
    """{cpu: (current MHz, maximum MHz)} from cpufreq, or None where the kernel does not drive the
    clock (no cpufreq: most virtual machines)."""
    out = {}
    for cpu in cpus:
        base = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cpufreq"
        now, top = read(base / "scaling_cur_freq"), read(base / "cpuinfo_max_freq")
        if now and top and now.isdigit() and top.isdigit():
            out[cpu] = (int(now) / 1000, int(top) / 1000)
    return out or None


class ClockSampler(threading.Thread):
    """Samples the CPUs' clock (cpufreq) while a phase runs: its mean MHz per phase."""

    def __init__(self, allowed: list[int]):
        super().__init__(daemon=True)
        self.allowed, self.phase, self.samples, self.done = allowed, None, {}, threading.Event()

    def run(self):
        while not self.done.wait(0.05):
            now = frequencies_mhz(self.allowed)
            if now and self.phase is not None:
                self.samples.setdefault(self.phase, []).append(max(mhz for mhz, _ in now.values()))

    def mean(self, phase) -> float | None:
        return statistics.fmean(self.samples[phase]) if self.samples.get(phase) else None


def under_hypervisor(root: Path = Path("/proc")) -> bool:
    """The CPU sets the "hypervisor" flag in a virtual machine."""
    for line in (read(root / "cpuinfo") or "").splitlines():
        if line.startswith("flags"):
            return " hypervisor" in line
    return False
