"""The profiles (`bench run --profile NAME`): which cells, how many rounds, how long a window, the
headline cell (decided before the run: the report ranks it first, and it gets the most rounds),
the budget for extra rounds, whether the reference is measured beside each server.

    quick   `make bench`: every model at a glance in about seven minutes
    full    `make bench-full`: the C10K sweep and open loop at shares of each server's peak
    c100k   `make bench-c100k`: to 100,000 mostly idle connections
    smoke   the test suite's: two tiny cells, a few rounds in seconds, every part of the pipeline
"""

from __future__ import annotations

import math
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
    rounds: int  # of every server at every cell
    warmup_s: float
    measure_s: float
    description: str
    default_servers: list[str] | None = None  # None = every available server
    notes: list[str] = field(default_factory=list)
    # The headline: the closed-loop cell the report ranks first, named before the run so that it
    # is the best-measured cell: every server gets `headline_rounds` rounds there (the other cells
    # `rounds`), and the extra rounds of the budget go there first.
    headline: CellKey | None = None
    headline_rounds: int | None = None
    # Repeat until stable (see Runner): the planned rounds first, then more, up to rounds_max, for
    # the servers whose 95 % interval of vs_ref is still wider than ±tolerance, while the whole
    # run stays within budget_s: the headline cell's first, the other cells' once it is done.
    # budget_s None: exactly the planned rounds.
    rounds_max: int | None = None
    budget_s: float | None = None
    tolerance: float = results.TOLERANCE
    # The reference beside every closed-loop measurement, in the same window, alternating with the
    # server in slices (bench.load's alt): the window is twice measure_s, half of it each's.
    beside_ref: bool = False

    def __post_init__(self) -> None:
        self.headline = headline_among(self.headline, self.cells)

    @property
    def rounds_at_headline(self) -> int:
        """Planned rounds of every server at the headline cell: headline_rounds, no fewer than
        `rounds` and no more than rounds_max."""
        rounds = max(self.rounds, self.headline_rounds or self.rounds)
        return min(rounds, max(self.rounds, self.rounds_max or rounds))

    def rounds_of(self, cell: CellKey) -> int:
        """Planned rounds of every server at `cell`."""
        return self.rounds_at_headline if cell == self.headline else self.rounds

    @property
    def planned_rounds(self) -> int:
        """Rounds in the plan: the headline cell's (the last ones measure only it)."""
        return self.rounds_at_headline if self.headline else self.rounds

    def cells_of_round(self, rnd: int) -> list[CellKey]:
        """The cells a planned round visits: every cell in the first `rounds`, then the headline
        cell alone."""
        return list(self.cells) if rnd < self.rounds else [self.headline]

    def as_meta(self) -> dict:
        """meta.json's account of the plan, which --resume reads back (from_meta)."""
        h = self.headline
        return {"cells": [_cell_meta(c) for c in self.cells],
                "rounds": self.rounds, "warmup_s": self.warmup_s, "measure_s": self.measure_s,
                "headline": _cell_meta(h) if h else None,
                "headline_rounds": self.rounds_at_headline if h else None,
                "rounds_max": self.rounds_max or self.planned_rounds, "budget_s": self.budget_s,
                "beside_ref": self.beside_ref, "tolerance": self.tolerance}

    @classmethod
    def from_meta(cls, meta: dict) -> Profile:
        """The profile of a run, from its meta.json (for --resume). A run from before the
        headline was named has none; its extra rounds went by weights, now unread."""
        cells = [CellKey.of(c) for c in meta["cells"]]
        headline = meta.get("headline")
        rounds = meta.get("rounds") or meta["repeats"]  # "repeats" before the word was "round"
        return cls(meta["profile"], cells, rounds, meta["warmup_s"], meta["measure_s"],
                   meta.get("profile_description") or "",
                   headline=CellKey.of(headline) if headline else None,
                   headline_rounds=meta.get("headline_rounds"), rounds_max=meta.get("rounds_max"),
                   budget_s=meta.get("budget_s"), tolerance=meta.get("tolerance") or
                   results.TOLERANCE, beside_ref=bool(meta.get("beside_ref")))


def _cell_meta(c: CellKey) -> dict:
    return {"conns": c.conns, "size_bytes": c.size_bytes, "rate": c.rate,
            "rate_fraction_of_peak": c.fraction}


def headline_among(wanted: CellKey | None, cells: list[CellKey]) -> CellKey | None:
    """The headline cell of a plan: `wanted` where the plan has it; else, for cells chosen on the
    command line, the closed-loop cell nearest to it (the same message size first, then the
    nearest connection count on a log scale, then the larger); None without a closed-loop cell
    or a wish (the c100k sweep is open loop: its report has its own table)."""
    closed = [c for c in cells if not c.is_open]
    if wanted is None or not closed:
        return None
    if wanted in closed:
        return wanted
    return min(closed, key=lambda c: (c.size_bytes != wanted.size_bytes,
                                      abs(math.log(c.conns / wanted.conns)), -c.conns,
                                      c.size_bytes))


def closed_cells(conns, sizes) -> list[CellKey]:
    """Closed-loop cells: every connection count at every size, size by size."""
    return [CellKey(c, s) for s in sizes for c in conns]


OPEN_LOOP_CONNS = 100  # connections of the open-loop cells given as a share of the peak


PROFILES = {
    # A few seconds: proves the pipeline end to end, the quick profile's parts included (the
    # reference beside, a headline cell with more rounds, extra rounds within a budget); the test
    # suite runs it. Its figures measure nothing.
    "smoke": Profile("smoke", closed_cells([1, 8], [1024]), rounds=2, warmup_s=0.05,
                     measure_s=0.1, description="two tiny cells, 2 rounds (3 at the headline, 8 "
                     "conns x 1 KiB): checks the pipeline, measures nothing",
                     default_servers=["threads", "select"], headline=CellKey(8, 1024),
                     headline_rounds=3, rounds_max=4, budget_s=30.0, beside_ref=True),
    # `make bench`: every model at a glance on a 2-core laptop, in about seven minutes. Each server
    # is measured beside the reference (beside_ref): one 0.5 s window, 0.25 s of it each's in
    # alternating slices, so that the ratio shares the machine's drift even within a window (on
    # a 2-vCPU VM one 0.3 s window of the same server differs from the next by a sixth). A
    # measurement takes ~1 s (measured on this lab's 2-core VM beside the reference, at 0.3 s a
    # side: warm-up and the two halves 0.70 s, the generator's start, connect and wrap-up
    # 0.09 s, starting the server and the reference beside it 0.11 s, the pause before the idle
    # memory sample 0.05 s, settling 0.06 s, stopping 0.02 s): starting and stopping are a
    # sixth, not half, so the time is found in fewer cells, not a cheaper measurement. The
    # headline cell, 16 x 1 KiB, gets 12 rounds (~23 servers x 12 x 1 s: about 4.5 min); 128 x
    # 1 KiB and 16 x 64 KiB get 3; 1 x 1 KiB is the full profile's. The budget left over goes to
    # more rounds of the headline cell (up to 16) while an interval is wider than ±5 %.
    "quick": Profile("quick", [CellKey(16, 1024), CellKey(128, 1024), CellKey(16, 64 * 1024)],
                     rounds=3, warmup_s=0.1, measure_s=0.25,
                     description="16 and 128 connections x 1 KiB, 16 x 64 KiB: 12 rounds at the "
                                 "headline cell, 16 x 1 KiB, 3 at the others, and up to 16 at "
                                 "the headline while an interval of vs ref is wider than ±5 %",
                     headline=CellKey(16, 1024), headline_rounds=12, rounds_max=16,
                     budget_s=420.0, beside_ref=True),
    # `make bench-full`: the C10K sweep (log-spaced up to 10,000 connections), a 64 KiB cell, and
    # open loop at 8 shares of each server's own peak, from 10 % to 120 %: every server is offered
    # loads it carries easily, loads near its limit and loads past it, whatever its speed, so the
    # latency knee shows. About 50 minutes for 21 servers on a 2-core machine (the
    # 10,000-connection cells and the open-loop sweep take most).
    "full": Profile("full",
                    closed_cells([1, 10, 100, 1000, 10000], [1024]) + [CellKey(100, 64 * 1024)]
                    + [CellKey(OPEN_LOOP_CONNS, 1024, fraction=f)
                       for f in (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.2)],
                    rounds=3, warmup_s=0.5, measure_s=1.5,
                    description="1 to 10,000 connections x 1 KiB, 100 x 64 KiB, open loop at "
                                "8 shares of each server's peak (10 % to 120 %), 3 rounds; the "
                                "headline cell 100 x 1 KiB",
                    headline=CellKey(100, 1024)),
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
                     rounds=1, warmup_s=1.0, measure_s=3.0,
                     description="1,000, 10,000, 30,000 and 100,000 connections x 1 KiB, mostly "
                                 "idle: open loop at 10,000 req/s in total, event-driven servers, "
                                 "1 round",
                     default_servers=[s.name for s in servers.SERVERS
                                      if s.family in ("multiplexed", "async", "fibers")
                                      or s.name == "reuseport"]),
}


# With several interpreters (bench run --python, make bench PYTHONS=...) the quick profile keeps
# the cells where an interpreter shows: 16 x 1 KiB, the headline, where the budget's extra rounds
# go, and 128 x 1 KiB; it leaves out 16 x 64 KiB (there the kernel's work and copies dominate and
# interpreters differ least), plans INTERPRETER_HEADLINE_ROUNDS at the headline (twice the
# servers: 12 rounds of each would take the whole budget), and each interpreter after the first
# adds INTERPRETER_BUDGET_S: about its ~19 servers x (2 cells x 3 rounds + 3 more headline rounds)
# x 1 s.
INTERPRETER_CELLS = [CellKey(16, 1024), CellKey(128, 1024)]
INTERPRETER_HEADLINE_ROUNDS = 6
INTERPRETER_BUDGET_S = 180.0


def with_interpreters(profile: Profile, count: int) -> Profile:
    """The profile for a run of `count` interpreters: the quick profile as above, any other as
    it is (the full and c100k profiles are long already; a custom choice of cells is the user's)."""
    if count < 2 or profile.name != "quick":
        return profile
    budget_s = (profile.budget_s or 0.0) + INTERPRETER_BUDGET_S * (count - 1)
    return replace(profile, cells=list(INTERPRETER_CELLS), budget_s=budget_s,
                   headline_rounds=INTERPRETER_HEADLINE_ROUNDS,
                   description=f"{count} interpreters: 16 and 128 connections x 1 KiB, 3 rounds, "
                               f"{INTERPRETER_HEADLINE_ROUNDS} at the headline cell, 16 x 1 KiB, "
                               f"and up to {profile.rounds_max} there while an interval of vs "
                               f"ref is wider than ±{profile.tolerance * 100:.0f} %")


def warmup_for(cell: CellKey, profile: Profile) -> float:
    return max(profile.warmup_s, WARMUP_S_PER_10K_CONNS * cell.conns / 10_000)

