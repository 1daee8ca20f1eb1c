"""The replay: a workload's connections opened and closed on a pool in simulated time, with an event heap.

* arrivals are a seeded Poisson process whose rate follows a slow load cycle,
  ``rate * (1 + swing * sin(2 pi t / wave_period))`` (sampled by thinning), so
  that the load rises and falls and the pool grows and releases subpools;
* each connection lives for a time drawn by :func:`~natpool.apps.simulate.workload.lifetime_sampler`;
* each connection stores a small ``SimulatedConnection`` record as the lease's ``data``;
  every ``--lookup-every``-th connection checks the return-traffic path:
  ``lookup(ip, port)`` must give back its lease and record while it is open,
  and ``None`` once it is closed;
* a connection whose ``allocate()`` raises ``PoolExhausted`` is refused and
  counted;
* the pool's clock is the simulated one (:class:`SimulatedClock`): each
  ``allocate()`` reads the connection's arrival time, each ``free()`` its
  closing time, so a hold-down is held in simulated seconds;
* every allocation and free feeds the reuse distance
  (:class:`~natpool.apps.reuse.ReuseDistances`): the allocations between an
  address's free and its next allocation.

Subpools created and deleted are counted from ``stats().subpools`` after every
call: ``allocate()`` only ever creates subpools and ``free()`` only ever deletes
them, so the change in the count across one call is exactly what that call did
(a change of the wrong sign is reported as an accounting error). With a
hold-down, an ``allocate()`` also releases the holds that ended, which may
delete subpools: its net change is counted, a fall as deletions. The allocation
rate is timed over the ``allocate()`` and ``free()`` calls alone, not over the
simulation's own bookkeeping. At the end every connection is closed.
"""

from __future__ import annotations

import heapq
import math
import random
import time
from dataclasses import dataclass
from typing import Any, NamedTuple, TextIO

from natpool.apps.reuse import ReuseDistances, ReuseSummary
from natpool.apps.simulate.workload import PoolLike, Workload, lifetime_sampler
from natpool.errors import PoolExhausted

__all__ = ["SERVERS", "TIMELINE_SAMPLES", "SimulatedClock", "SimulatedConnection", "Results", "Timing", "simulate"]

SERVERS = 8
"""Real servers behind the simulated SLB (connections are spread round-robin)."""


class SimulatedClock:
    """The pool's clock in a simulation (``Pool(clock=...)``): the simulated second the replay has reached."""

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SimulatedConnection(NamedTuple):
    """The record a connection stores as its lease's ``data``."""

    conn: int
    server: int
    opened: float


@dataclass
class Results:
    """The simulation's counts: a function of the pool configuration and the workload alone."""

    offered: int = 0
    served: int = 0
    refused: int = 0
    """Exhaustion events: ``allocate()`` raised ``PoolExhausted`` and the connection was refused."""
    peak_live: int = 0
    subpools_created: int = 0
    subpools_deleted: int = 0
    subpools_deleted_at_end: int = 0
    """Of ``subpools_deleted``, those deleted when the connections still open at the end closed."""
    peak_subpools: int = 0
    final_subpools: int = 0
    final_blocks: int = 0
    final_intervals: int = 0
    peak_intervals: int = 0
    lookups: int = 0
    lookup_mismatches: int = 0
    accounting_errors: int = 0
    simulated_seconds: float = 0.0
    held_at_end: int = 0
    """Addresses still held down when every connection had closed."""
    reuse: ReuseSummary | None = None
    """The reuse distances of the allocations' addresses."""


@dataclass
class Timing:
    """Wall-clock measurements (these vary from run to run)."""

    allocate_calls: int = 0
    free_calls: int = 0
    pool_seconds: float = 0.0
    """Wall clock spent inside ``allocate()`` and ``free()``."""
    wall_seconds: float = 0.0
    """Wall clock of the whole simulation loop, bookkeeping included."""

    allocations: int = 0
    """Successful ``allocate()`` calls (``allocate_calls`` counts the refused ones too)."""

    @property
    def allocations_per_second(self) -> float:
        """Allocations per second of ``allocate()`` and ``free()`` wall clock: each allocation with its free."""
        return self.allocations / self.pool_seconds if self.pool_seconds > 0 else 0.0

    @property
    def calls_per_second(self) -> float:
        calls = self.allocate_calls + self.free_calls
        return calls / self.pool_seconds if self.pool_seconds > 0 else 0.0


class _Progress:
    """Progress on stderr, about every 10% of the offered connections."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self.tty = stream is not None and stream.isatty()
        self.step = max(1, total // 10)
        self.started = time.perf_counter()

    def show(self, done: int, live: int, subpools: int, refused: int) -> None:
        if self.stream is None:
            return
        elapsed = time.perf_counter() - self.started
        text = (
            f"natpool simulate: {100 * done // self.total:3d}% {done:,}/{self.total:,} connections, "
            f"live {live:,}, subpools {subpools}, refused {refused:,}, {elapsed:.1f} s"
        )
        if self.tty:
            self.stream.write("\r\033[K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


TIMELINE_SAMPLES = 2000
"""Samples of (simulated time, live leases, subpools) a timeline takes over a run (``--plot``)."""


def simulate(
    pool: PoolLike,
    workload: Workload,
    progress: TextIO | None = None,
    timeline: list[tuple[float, int, int]] | None = None,
    clock: SimulatedClock | None = None,
) -> tuple[Results, Timing]:
    """Replay ``workload`` on ``pool`` and close every connection; returns the counts and timings.

    With ``timeline``, about :data:`TIMELINE_SAMPLES` samples ``(simulated time, live, subpools)`` are appended
    to it, evenly spaced in connections. ``clock``: the pool's clock, set to each call's simulated time.
    """
    w = workload
    n = w.connections
    rng = random.Random(w.seed)
    exponential = rng.expovariate
    uniform = rng.random
    lifetime = lifetime_sampler(rng, w)
    waves = w.wave_period > 0 and w.swing > 0
    peak_rate = w.rate * (1 + w.swing) if waves else w.rate
    omega = 2 * math.pi / w.wave_period if waves else 0.0
    swing = w.swing
    ceiling = 1 + swing
    every = w.lookup_every

    allocate, free, lookup, stats = pool.allocate, pool.free, pool.lookup, pool.stats
    capacity = pool.capacity
    holds = pool.hold_down > 0
    pool_clock = clock if clock is not None else SimulatedClock()
    reuse = ReuseDistances()
    allocated, freed = reuse.allocated, reuse.freed
    timer = time.perf_counter_ns
    push, pop = heapq.heappush, heapq.heappop
    heap: list[tuple[float, int, Any, SimulatedConnection]] = []
    shown = _Progress(progress, n)
    next_shown = shown.step
    sample_step = max(1, n // TIMELINE_SAMPLES)
    next_sample = 0 if timeline is not None else -1

    served = refused = live = peak_live = 0
    subpools = created = deleted = peak_subpools = 0
    peak_intervals = stats().intervals
    lookups = mismatches = accounting = 0
    allocate_calls = free_calls = pool_ns = 0
    now = last_arrival = 0.0
    deleted_running = 0
    wall_start = time.perf_counter()
    for conn in range(n + 1):
        if conn == n:
            now = math.inf  # the workload is over: close every connection still open
            deleted_running = deleted
        else:
            now += exponential(peak_rate)
            if waves:  # thinning: keep an arrival at t with probability rate(t) / peak_rate
                while uniform() * ceiling >= 1 + swing * math.sin(omega * now):
                    now += exponential(peak_rate)

        # Close the connections that ended before this arrival, in time order.
        while heap and heap[0][0] <= now:
            pool_clock.now, closing, lease, record = pop(heap)
            sampled = closing % every == 0
            if sampled:
                lookups += 1
                found = lookup(lease.ip, lease.port)
                if found is None or found != lease or found.data is not record:
                    mismatches += 1
            start = timer()
            free(lease)
            pool_ns += timer() - start
            freed(lease.address)
            free_calls += 1
            live -= 1
            if sampled:
                lookups += 1
                if lookup(lease.ip, lease.port) is not None:
                    mismatches += 1
            s = stats()
            if s.live != live:
                accounting += 1
            if s.subpools != subpools:
                if s.subpools > subpools:  # free() never creates a subpool
                    accounting += 1
                    created += s.subpools - subpools
                else:
                    deleted += subpools - s.subpools
                subpools = s.subpools
        if conn == n:
            break

        if conn == next_shown:
            shown.show(conn, live, subpools, refused)
            next_shown += shown.step
        if conn == next_sample:
            assert timeline is not None
            timeline.append((now, live, subpools))
            next_sample += sample_step

        # Open connection `conn`.
        record = SimulatedConnection(conn, conn % SERVERS, now)
        allocate_calls += 1
        pool_clock.now = now
        start = timer()
        try:
            lease = allocate(record)
        except PoolExhausted:
            pool_ns += timer() - start
            refused += 1
            if live + stats().held != capacity:  # allocate() fails exactly when live and held leases fill it
                accounting += 1
            continue
        pool_ns += timer() - start
        allocated(lease.address)
        served += 1
        live += 1
        if live > peak_live:
            peak_live = live
        s = stats()
        if s.live != live:
            accounting += 1
        if s.subpools != subpools:
            if s.subpools < subpools:  # allocate() deletes a subpool only when it releases ended holds
                accounting += not holds
                deleted += subpools - s.subpools
            else:
                created += s.subpools - subpools
                if s.subpools > peak_subpools:
                    peak_subpools = s.subpools
            subpools = s.subpools
        if s.intervals > peak_intervals:
            peak_intervals = s.intervals
        push(heap, (now + lifetime(), conn, lease, record))
        if conn % every == 0:
            lookups += 1
            found = lookup(lease.ip, lease.port)
            if found is None or found != lease or found.data is not record:
                mismatches += 1
        last_arrival = now

    wall = time.perf_counter() - wall_start
    shown.show(n, live, subpools, refused)
    shown.close()
    final = stats()
    results = Results(
        offered=n,
        served=served,
        refused=refused,
        peak_live=peak_live,
        subpools_created=created,
        subpools_deleted=deleted,
        subpools_deleted_at_end=deleted - deleted_running,
        peak_subpools=peak_subpools,
        final_subpools=final.subpools,
        final_blocks=final.blocks,
        final_intervals=final.intervals,
        peak_intervals=max(peak_intervals, final.intervals),
        lookups=lookups,
        lookup_mismatches=mismatches,
        accounting_errors=accounting,
        simulated_seconds=last_arrival,
        held_at_end=final.held,
        reuse=reuse.summary(),
    )
    timing = Timing(
        allocate_calls=allocate_calls,
        free_calls=free_calls,
        pool_seconds=pool_ns / 1e9,
        wall_seconds=wall,
        allocations=served,
    )
    return results, timing
