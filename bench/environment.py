"""What differs between two runs' environments, which `bench compare` lists before any verdict: the
commit, the kernel, the Python servers' interpreters, the CPU, and the C reference's own req/s in
each cell (the machine's speed: when it moved beyond noise, a verdict may be the machine's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench import results
from bench import stats as st
from bench.report import view
from bench.significance import HOLM_LEVEL, MIN_CHANGE, log_values, welch


def interpreters_text(v: view.View) -> str:
    """'3.11.7 (plain names), 3.13.0 (NAME@3.13)': what the run's Python servers ran under."""
    return ", ".join(f"{i['label']} ("
                     + ("plain names" if i["default"] else f"NAME@{i['tag']}") + ")"
                     for i in v.run.interpreters) or "none recorded"


def commit_text(v: view.View) -> str:
    commit = v.meta.get("git_commit") or "unknown"
    return commit + (" (dirty)" if v.meta.get("git_dirty") else "")


def environment(base: view.View, other: view.View) -> list[tuple[str, str, str]]:
    """(what, A's, B's) for what the runs' environments record: commit, kernel, Python, CPU."""
    def machine(v, key):
        return str((v.meta.get("machine") or {}).get(key) or "unknown")
    return [("commit", commit_text(base), commit_text(other)),
            ("kernel", machine(base, "kernel"), machine(other, "kernel")),
            ("Python", interpreters_text(base), interpreters_text(other)),
            ("CPU", base.machine_text, other.machine_text)]


@dataclass
class ReferenceMove:
    """The reference's own req/s in one cell in both runs: the geometric mean over the rounds
    (and its t-interval) in each, the change and Welch's p on the logs."""

    cell: results.CellKey
    server: str
    a: results.Stat
    b: results.Stat
    change: float
    p: float | None

    @property
    def moved(self) -> bool:
        """Beyond noise (its own test at 5 %, uncorrected: an environment check, not a verdict)
        and by at least MIN_CHANGE."""
        return self.p is not None and self.p < HOLM_LEVEL and abs(self.change) >= MIN_CHANGE


def reference_moves(base: view.View, other: view.View) -> list[ReferenceMove]:
    """The reference's own req/s in each cell both runs measured it, A and B, and its test."""
    out = []
    for cell in [cell for cell in base.cells if cell in other.cells]:
        pair = []
        for v in (base, other):
            refs = [o for s in v.servers if (o := v.outcome(s, cell)) is not None
                    and o.is_reference and o.measured]
            pair.append(refs[0] if refs else None)
        a, b = pair
        if a is None or b is None or a.server != b.server:
            continue
        la, lb = log_values(m.rps for m in a.used), log_values(m.rps for m in b.used)
        if not la or not lb:
            continue
        diff, p = welch(la, lb)
        out.append(ReferenceMove(cell, a.server, st.ratio_stat(m.rps for m in a.used),
                                 st.ratio_stat(m.rps for m in b.used), math.exp(diff) - 1, p))
    return out
