"""The profiles (`bench run --profile NAME`): which cells, how many rounds, how long a window, the
budget for extra rounds and how it is shared, whether the reference is measured beside each server.

    quick   `make bench`: every model at a glance in about six minutes
    full    `make bench-full`: the C10K sweep and open loop at shares of each server's peak
    c100k   `make bench-c100k`: to 100,000 mostly idle connections
    smoke   the test suite's: two tiny cells, one round
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import servers
from bench import results
from bench.results import CellKey

# Big cells need time for every connection to get going before the window opens: the warm-up is at
# least this long per 10,000 connections (a thread per connection server takes ~0.5 s to give
# each of 10,000 threads its first turn).
WARMUP_S_PER_10K_CONNS = 1.0


@dataclass
class Profile:
    name: str
    cells: list[CellKey]
    repeats: int
    warmup_s: float
    measure_s: float
    description: str
    default_servers: list[str] | None = None  # None = every available server
    notes: list[str] = field(default_factory=list)
    # Repeat until stable (bench/run/runner.py's Runner): `repeats` rounds of every cell at least,
    # then more rounds, up to rounds_max, for the servers whose 95 % CI of the median vs_ref is
    # still wider than ±tolerance, while the cell's share of budget_s lasts. weights: a cell's share of the budget
    # ({(conns, size_bytes): weight}, default 1). budget_s None: exactly `repeats` rounds.
    rounds_max: int | None = None
    budget_s: float | None = None
    tolerance: float = results.TOLERANCE
    weights: dict = field(default_factory=dict)
    # The reference beside every closed-loop measurement, in the same window, alternating with the
    # server in slices (bench.load's alt): the window is twice measure_s, half of it each's.
    beside_ref: bool = False

    def first_for_extra_rounds(self) -> list[CellKey] | None:
        """The cells the extra rounds go to before any other (weight above 0), or None when
        every cell has a share."""
        first = [c for c in self.cells if self.weights.get((c.conns, c.size_bytes), 1.0) > 0]
        return first if len(first) < len(self.cells) else None

    def as_meta(self) -> dict:
        """meta.json's account of the plan, which --resume reads back (from_meta)."""
        return {"cells": [{"conns": c.conns, "size_bytes": c.size_bytes, "rate": c.rate,
                           "rate_fraction_of_peak": c.fraction} for c in self.cells],
                "repeats": self.repeats, "warmup_s": self.warmup_s, "measure_s": self.measure_s,
                "rounds_max": self.rounds_max or self.repeats, "budget_s": self.budget_s,
                "beside_ref": self.beside_ref, "tolerance": self.tolerance,
                "weights": [[c, s, w] for (c, s), w in self.weights.items()]}

    @classmethod
    def from_meta(cls, meta: dict) -> Profile:
        """The profile of a run, from its meta.json (for --resume)."""
        cells = [CellKey.of(c) for c in meta["cells"]]
        return cls(meta["profile"], cells, meta["repeats"], meta["warmup_s"], meta["measure_s"],
                   meta.get("profile_description") or "", rounds_max=meta.get("rounds_max"),
                   budget_s=meta.get("budget_s"), tolerance=meta.get("tolerance") or
                   results.TOLERANCE, weights={(c, s): w for c, s, w in meta.get("weights") or []},
                   beside_ref=bool(meta.get("beside_ref")))


def closed_cells(conns, sizes) -> list[CellKey]:
    """Closed-loop cells: every connection count at every size, size by size."""
    return [CellKey(c, s) for s in sizes for c in conns]


OPEN_LOOP_CONNS = 100  # connections of the open-loop cells given as a share of the peak


PROFILES = {
    # A few seconds: proves the pipeline end to end (the test suite runs it).
    "smoke": Profile("smoke", closed_cells([1, 8], [1024]), repeats=1, warmup_s=0.2,
                     measure_s=0.5, description="two tiny cells, one repeat: checks the pipeline, measures nothing",
                     default_servers=["threads", "select"]),
    # `make bench`: every model at a glance on a 2-core laptop, in about six minutes. Each server
    # is measured beside the reference (beside_ref): one 0.6 s window, 0.3 s of it each's in
    # alternating slices, so that the ratio shares the machine's drift even within a window (on
    # a 2-vCPU VM one 0.3 s window of the same server differs from the next by a sixth). ~1 s a
    # measurement with start, warm-up and stop: 3 rounds of ~22 servers take ~4.5 min; what the
    # budget leaves goes to more rounds of 16 x 1 KiB, the cell where runs are compared, up to 14
    # while a CI is still wide (a CI of the median takes 6, bench/stats.py). The other cells
    # get extra rounds only once that cell is done.
    "quick": Profile("quick", closed_cells([1, 16, 128], [1024]) + [CellKey(16, 64 * 1024)],
                     repeats=3, warmup_s=0.1, measure_s=0.3,
                     description="1, 16 and 128 connections x 1 KiB, 16 x 64 KiB, 3 rounds, "
                                 "and up to 14 at 16 x 1 KiB until the CI of each median vs ref "
                                 "is within ±5 %",
                     rounds_max=14, budget_s=360.0,
                     weights={(16, 1024): 1.0, (1, 1024): 0.0, (128, 1024): 0.0,
                              (16, 64 * 1024): 0.0}, beside_ref=True),
    # `make bench-full`: the C10K sweep (log-spaced up to 10,000 connections), a 64 KiB cell, and
    # open loop at 8 shares of each server's own peak, from 10 % to 120 %: every server is offered
    # loads it carries easily, loads near its limit and loads past it, whatever its speed, so the
    # latency knee shows. About 50 minutes for 21 servers on a 2-core machine (the
    # 10,000-connection cells and the open-loop sweep take most).
    "full": Profile("full",
                    closed_cells([1, 10, 100, 1000, 10000], [1024]) + [CellKey(100, 64 * 1024)]
                    + [CellKey(OPEN_LOOP_CONNS, 1024, fraction=f)
                       for f in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2)],
                    repeats=3, warmup_s=0.5, measure_s=1.5,
                    description="1 to 10,000 connections x 1 KiB, 100 x 64 KiB, open loop at "
                                "8 shares of each server's peak (10 % to 120 %), 3 repeats"),
    # `make bench-c100k`: past C10K, to 100,000 connections, mostly idle, as real C10K traffic
    # is: a fixed 10,000 requests/s in total spread over all of them in open loop (each
    # connection sends every conns / 10,000 s, and the warm-up, 1 s per 10,000 connections, lets
    # every one send before the window), to the event-driven servers. It records where each model
    # breaks: memory per connection, accept rate (conns_established / connect_s), p99 at that
    # rate, fds; the guard stops a cell before memory runs short. The C engine spreads 5,000+
    # connections over several source addresses and, past its fd limit, over several processes;
    # each server needs `ulimit -Hn` above the cell, else the cell is skipped with the fix.
    # About 30 minutes for 17 servers on a 2-core machine (the 100,000 cells take most; the plan
    # line states the estimate), far more where servers break at 30,000 and the ramp times out.
    "c100k": Profile("c100k", [CellKey(c, 1024, rate=10_000.0)
                               for c in (1_000, 10_000, 30_000, 100_000)],
                     repeats=1, warmup_s=1.0, measure_s=3.0,
                     description="1,000, 10,000, 30,000 and 100,000 connections x 1 KiB, mostly "
                                 "idle: open loop at 10,000 req/s in total, event-driven servers, "
                                 "1 round",
                     default_servers=[s.name for s in servers.SERVERS
                                      if s.family in ("multiplexed", "async", "fibers")
                                      or s.name == "reuseport"]),
}


# With several interpreters (bench run --python, make bench PYTHONS=...) the quick profile keeps
# the cells where an interpreter shows: 16 x 1 KiB, the headline, where the budget's extra rounds
# go, and 128 x 1 KiB; it leaves out 1 x 1 KiB and 16 x 64 KiB (there the kernel's work and copies
# dominate and interpreters differ least), and each interpreter after the first adds
# INTERPRETER_BUDGET_S: about its ~19 servers x 2 cells x 3 rounds x 1 s and a few extra rounds.
INTERPRETER_CELLS = [CellKey(16, 1024), CellKey(128, 1024)]
INTERPRETER_BUDGET_S = 180.0


def with_interpreters(profile: Profile, count: int) -> Profile:
    """The profile for a run of `count` interpreters: the quick profile as above, any other as
    it is (the full and c100k profiles are long already; a custom choice of cells is the user's)."""
    if count < 2 or profile.name != "quick":
        return profile
    budget_s = (profile.budget_s or 0.0) + INTERPRETER_BUDGET_S * (count - 1)
    return replace(profile, cells=list(INTERPRETER_CELLS), budget_s=budget_s,
                   description=f"{count} interpreters: 16 and 128 connections x 1 KiB, 3 rounds, "
                               f"and up to {profile.rounds_max} at 16 x 1 KiB until the CI of "
                               f"each median vs ref is within ±{profile.tolerance * 100:.0f} %")


def warmup_for(cell: CellKey, profile: Profile) -> float:
    return max(profile.warmup_s, WARMUP_S_PER_10K_CONNS * cell.conns / 10_000)

