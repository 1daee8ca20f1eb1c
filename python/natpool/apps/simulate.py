"""``natpool simulate``: replay a server load balancer's connection workload on a pool.

An SLB in directed mode takes a client NAT address from the pool for every new
connection and returns it when the connection closes. The simulation replays
such a workload in simulated time with an event heap:

* arrivals are a seeded Poisson process whose rate follows a slow load cycle,
  ``rate * (1 + swing * sin(2 pi t / wave_period))`` (sampled by thinning), so
  that the load rises and falls and the pool grows and releases subpools;
* each connection lives for a heavy-tailed time (Pareto with shape 1.5 by
  default, or lognormal, or exponential) of the given mean, so a few
  long-lived connections pin the subpools they hold;
* each connection stores a small ``Connection`` record as the lease's ``data``;
  every ``--lookup-every``-th connection checks the return-traffic path:
  ``lookup(ip, port)`` must give back its lease and record while it is open,
  and ``None`` once it is closed;
* a connection whose ``allocate()`` raises ``PoolExhausted`` is refused and
  counted.

Subpools created and deleted are counted from ``stats().subpools`` after every
call: ``allocate()`` only ever creates subpools and ``free()`` only ever deletes
them, so the change in the count across one call is exactly what that call did
(a change of the wrong sign is reported as an accounting error). The report's
allocation rate is timed over the ``allocate()`` and ``free()`` calls alone, not
over the simulation's own bookkeeping.

At the end every connection is closed and the run checks its invariants (no
lookup mismatch, the pool's counters agree with the simulation's, exhaustion
only at capacity, ``len(pool) == 0``, the interval list partitions the address
space, the initial allocation stays resident); the command exits 1 if any fails.
"""

from __future__ import annotations

import argparse
import heapq
import ipaddress
import itertools
import json
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple, TextIO

import natpool
import natpool.reference
from natpool.errors import PoolConfigError, PoolExhausted
from natpool.extras import MissingExtra, require

__all__ = [
    "MODELS",
    "Connection",
    "PoolConfig",
    "Report",
    "Results",
    "Workload",
    "add_parser",
    "check_invariants",
    "run",
    "simulate",
]

LIFETIME_SHAPES = {"pareto": 1.5, "lognormal": 1.2, "exponential": 1.0}
"""Shape of each lifetime distribution: Pareto's alpha, lognormal's sigma (exponential has none)."""
SERVERS = 8
"""Real servers behind the simulated SLB (connections are spread round-robin)."""


PoolLike = natpool.Pool | natpool.reference.Pool
"""Either implementation: they share one API, so the simulation is written once for both."""


MODELS: dict[str, Callable[..., PoolLike]] = {
    "rust": natpool.Pool,
    "reference": natpool.reference.Pool,
}
"""The implementations ``--model`` selects: the Rust core and the pure-Python reference model."""

MODEL_NAMES = {"rust": "natpool.Pool", "reference": "natpool.reference.Pool"}


@dataclass(frozen=True)
class PoolConfig:
    """The simulated pool: the embedded default is 203.0.113.0/24, ports 1024-65535."""

    name: str = "simulate"
    first_ip: str = "203.0.113.0"
    last_ip: str = "203.0.113.255"
    netmask: int | str = 24
    ports: tuple[int, int] = (1024, 65535)
    initial_blocks: int = 4096
    subpool_blocks: int = 64
    max_blocks: int = 65536
    grow_threshold: int = 16

    def build(self, model: str) -> PoolLike:
        return MODELS[model](
            self.name,
            self.first_ip,
            self.last_ip,
            self.netmask,
            self.initial_blocks,
            self.max_blocks,
            ports=self.ports,
            subpool_blocks=self.subpool_blocks,
            grow_threshold=self.grow_threshold,
        )


@dataclass(frozen=True)
class Workload:
    """The replayed connection workload."""

    connections: int = 3_000_000
    rate: float = 2000.0
    """Mean arrival rate, connections per simulated second."""
    mean_lifetime: float = 5.0
    """Mean connection lifetime, simulated seconds."""
    lifetime: str = "pareto"
    wave_period: float = 200.0
    """Period of the load cycle, simulated seconds (0: a constant-rate Poisson process)."""
    swing: float = 0.8
    """Amplitude of the load cycles, as a fraction of the mean rate."""
    seed: int = 1
    lookup_every: int = 16


class Connection(NamedTuple):
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


@dataclass
class Report:
    model: str
    pool: PoolConfig
    address_count: int
    capacity: int
    workload: Workload
    results: Results
    timing: Timing
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        pool = asdict(self.pool)
        pool["ports"] = list(self.pool.ports)
        pool.update(address_count=self.address_count, capacity=self.capacity)
        timing = asdict(self.timing)
        timing.update(
            allocations_per_second=self.timing.allocations_per_second,
            calls_per_second=self.timing.calls_per_second,
        )
        return {
            "model": self.model,
            "implementation": MODEL_NAMES.get(self.model, self.model),
            "pool": pool,
            "workload": asdict(self.workload),
            "results": asdict(self.results),
            "timing": timing,
            "invariants": {"ok": self.ok, "failures": list(self.failures)},
        }

    def to_text(self) -> str:
        p, w, r, t = self.pool, self.workload, self.results, self.timing
        if w.wave_period > 0 and w.swing > 0:
            arrivals = (
                f"Poisson arrivals at {w.rate:,g}/s on average in a {w.wave_period:g} s load cycle (swing {w.swing:g})"
            )
        else:
            arrivals = f"Poisson arrivals at {w.rate:,g}/s"
        refused_calls = f" + {r.refused:,} refused" if r.refused else ""
        width = 26
        lines = [
            f"natpool simulate: model {self.model} ({MODEL_NAMES.get(self.model, self.model)})",
            f"  pool      {p.name}: {p.first_ip}-{p.last_ip} /{_prefix_text(p.netmask)}, "
            f"ports {p.ports[0]}-{p.ports[1]}: {self.address_count:,} addresses, capacity {self.capacity:,}",
            f"            initial_blocks {p.initial_blocks:,}, subpool_blocks {p.subpool_blocks:,}, "
            f"max_blocks {p.max_blocks:,}, grow_threshold {p.grow_threshold:,}",
            f"  workload  {w.connections:,} connections, {arrivals},",
            f"            {w.lifetime} lifetimes of mean {w.mean_lifetime:g} s, seed {w.seed}; "
            f"{r.simulated_seconds:,.1f} s simulated",
            "",
            f"  {'connections served':<{width}}{r.served:,}",
            f"  {'refused (exhaustion)':<{width}}{r.refused:,}",
            f"  {'peak live leases':<{width}}{r.peak_live:,}",
            f"  {'subpools created/deleted':<{width}}{r.subpools_created:,} / {r.subpools_deleted:,}"
            f" ({r.subpools_deleted - r.subpools_deleted_at_end:,} deleted while running,"
            f" {r.subpools_deleted_at_end:,} in the close-out)",
            f"  {'subpools':<{width}}peak {r.peak_subpools:,}, {r.final_subpools:,} at the end"
            f" holding {r.final_blocks:,} blocks",
            f"  {'interval list length':<{width}}{r.final_intervals:,} at the end (peak {r.peak_intervals:,})",
            f"  {'lookups checked':<{width}}{r.lookups:,} ({r.lookup_mismatches:,} mismatches)",
            f"  {'allocations per second':<{width}}{t.allocations_per_second:,.0f}"
            f" ({t.allocations:,} allocations{refused_calls} + {t.free_calls:,} frees"
            f" in {t.pool_seconds:.3f} s of allocate/free)",
            f"  {'simulation wall clock':<{width}}{t.wall_seconds:.2f} s",
        ]
        if self.ok:
            lines.append(f"  {'invariants':<{width}}ok")
        else:
            lines.append(f"  {'invariants':<{width}}FAILED")
            lines.extend(f"    - {failure}" for failure in self.failures)
        return "\n".join(lines)


def _prefix_text(netmask: int | str) -> str:
    if isinstance(netmask, int):
        return str(netmask)
    return str(ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen)


def _lifetime_sampler(rng: random.Random, workload: Workload) -> Callable[[], float]:
    """A sampler of connection lifetimes with mean ``workload.mean_lifetime``."""
    mean = workload.mean_lifetime
    shape = LIFETIME_SHAPES[workload.lifetime]
    if workload.lifetime == "pareto":
        scale = mean * (shape - 1) / shape  # a Pareto(alpha) of minimum x_m has mean alpha * x_m / (alpha - 1)
        pareto = rng.paretovariate
        return lambda: scale * pareto(shape)
    if workload.lifetime == "lognormal":
        mu = math.log(mean) - shape * shape / 2
        lognormal = rng.lognormvariate
        return lambda: lognormal(mu, shape)
    rate = 1 / mean
    exponential = rng.expovariate
    return lambda: exponential(rate)


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
) -> tuple[Results, Timing]:
    """Replay ``workload`` on ``pool`` and close every connection; returns the counts and timings.

    With ``timeline``, about :data:`TIMELINE_SAMPLES` samples ``(simulated time, live, subpools)`` are appended
    to it, evenly spaced in connections.
    """
    w = workload
    n = w.connections
    rng = random.Random(w.seed)
    exponential = rng.expovariate
    uniform = rng.random
    lifetime = _lifetime_sampler(rng, w)
    waves = w.wave_period > 0 and w.swing > 0
    peak_rate = w.rate * (1 + w.swing) if waves else w.rate
    omega = 2 * math.pi / w.wave_period if waves else 0.0
    swing = w.swing
    ceiling = 1 + swing
    every = w.lookup_every

    allocate, free, lookup, stats = pool.allocate, pool.free, pool.lookup, pool.stats
    capacity = pool.capacity
    clock = time.perf_counter_ns
    push, pop = heapq.heappush, heapq.heappop
    heap: list[tuple[float, int, Any, Connection]] = []
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
            _, closing, lease, record = pop(heap)
            sampled = closing % every == 0
            if sampled:
                lookups += 1
                found = lookup(lease.ip, lease.port)
                if found is None or found != lease or found.data is not record:
                    mismatches += 1
            start = clock()
            free(lease)
            pool_ns += clock() - start
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
        record = Connection(conn, conn % SERVERS, now)
        allocate_calls += 1
        start = clock()
        try:
            lease = allocate(record)
        except PoolExhausted:
            pool_ns += clock() - start
            refused += 1
            if live != capacity:  # allocate() fails exactly when the live leases equal capacity
                accounting += 1
            continue
        pool_ns += clock() - start
        served += 1
        live += 1
        if live > peak_live:
            peak_live = live
        s = stats()
        if s.live != live:
            accounting += 1
        if s.subpools != subpools:
            if s.subpools < subpools:  # allocate() never deletes a subpool
                accounting += 1
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
    )
    timing = Timing(
        allocate_calls=allocate_calls,
        free_calls=free_calls,
        pool_seconds=pool_ns / 1e9,
        wall_seconds=wall,
        allocations=served,
    )
    return results, timing


def check_invariants(pool: PoolLike, config: PoolConfig, results: Results) -> list[str]:
    """The invariants of a finished run (every connection closed); returns the failures."""
    r = results
    failures: list[str] = []
    if r.lookup_mismatches:
        failures.append(f"{r.lookup_mismatches} lookups did not return the connection's lease and record")
    if r.accounting_errors:
        failures.append(f"{r.accounting_errors} times the pool's stats() disagreed with the calls made")
    if r.served + r.refused != r.offered:
        failures.append(f"served {r.served} + refused {r.refused} != offered {r.offered}")
    if r.peak_live > pool.capacity:
        failures.append(f"peak live leases {r.peak_live} above capacity {pool.capacity}")
    if len(pool) != 0:
        failures.append(f"len(pool) is {len(pool)} after every connection closed")
    stats = pool.stats()
    if stats.live != 0 or stats.free_blocks != stats.blocks:
        failures.append(f"stats() after every connection closed: {stats}")
    if r.subpools_created - r.subpools_deleted != stats.subpools:
        failures.append(
            f"subpools created {r.subpools_created} - deleted {r.subpools_deleted} != stats().subpools {stats.subpools}"
        )
    subpools = pool.subpools()
    if len(subpools) != stats.subpools or sum(s.blocks for s in subpools) != stats.blocks:
        failures.append(f"subpools() ({len(subpools)} subpools) disagrees with stats() ({stats})")
    if any(s.free != s.blocks for s in subpools):
        failures.append("a subpool still has a block leased after every connection closed")
    intervals = pool.intervals()
    if len(intervals) != stats.intervals or sum(i.count for i in intervals) != pool.address_count:
        failures.append(
            f"intervals() ({len(intervals)} intervals) does not partition the {pool.address_count} addresses"
        )
    if any(a.subpool is None and b.subpool is None for a, b in itertools.pairwise(intervals)):
        failures.append("two free intervals are adjacent")
    resident = min(config.initial_blocks, pool.capacity)
    if r.served and stats.blocks < resident:
        failures.append(f"{stats.blocks} blocks resident, fewer than the initial allocation {resident}")
    return failures


def run(
    config: PoolConfig,
    workload: Workload,
    model: str = "rust",
    progress: TextIO | None = None,
    timeline: list[tuple[float, int, int]] | None = None,
) -> Report:
    """Build the pool, replay the workload on it and check the invariants."""
    pool = config.build(model)
    results, timing = simulate(pool, workload, progress, timeline)
    failures = check_invariants(pool, config, results)
    return Report(model, config, pool.address_count, pool.capacity, workload, results, timing, failures)


# -- the command line --------------------------------------------------------------------


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
        return value

    parse.__name__ = "integer"
    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not positive")
    return value


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1)")
    return value


def _ip(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _netmask(text: str) -> int | str:
    prefix = text.removeprefix("/")
    if prefix.isdigit():
        if not 0 <= int(prefix) <= 32:
            raise argparse.ArgumentTypeError(f"prefix length {prefix} is outside 0..32")
        return int(prefix)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a prefix length nor a dotted netmask") from None
    return text  # contiguity is checked by the pool


def _ports(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range LO-HI")
    low, high = int(match[1]), int(match[2])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is outside 1-65535")
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r} is reversed")
    return low, high


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to the ``natpool`` parser's subparsers."""
    pool, work = PoolConfig(), Workload()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="replay an SLB connection workload on a pool and report",
        description=(
            "Replay a server load balancer's connection workload (seeded Poisson arrivals in load waves, "
            "heavy-tailed lifetimes) on a client NAT pool in simulated time, and report connections served, "
            "allocation rate, peak live leases, subpool churn, interval-list length and exhaustion events. "
            "Exits 1 if an invariant fails."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="rust",
        help="the implementation: the Rust core (natpool.Pool) or the pure-Python reference model",
    )
    group = parser.add_argument_group("pool")
    group.add_argument("--first-ip", type=_ip, default=pool.first_ip, metavar="IP")
    group.add_argument("--last-ip", type=_ip, default=pool.last_ip, metavar="IP")
    group.add_argument("--netmask", type=_netmask, default=pool.netmask, help="prefix length or dotted mask")
    group.add_argument("--ports", type=_ports, default=pool.ports, metavar="LO-HI", help="port range, e.g. 1024-65535")
    group.add_argument(
        "--initial-blocks",
        type=_count(1),
        metavar="N",
        help=f"blocks of the first subpool (default: {pool.initial_blocks}, at most --max-blocks)",
    )
    group.add_argument(
        "--subpool-blocks",
        type=_count(1),
        metavar="N",
        help=f"blocks of each later subpool (default: {pool.subpool_blocks}, at most --max-blocks)",
    )
    group.add_argument("--max-blocks", type=_count(1), default=pool.max_blocks, metavar="N")
    group.add_argument(
        "--grow-threshold",
        type=_count(0),
        metavar="N",
        help=f"grow when free blocks fall to N (default: {pool.grow_threshold}, at most --max-blocks)",
    )
    group = parser.add_argument_group("workload")
    group.add_argument("--connections", type=_count(1), default=work.connections, metavar="N")
    group.add_argument("--rate", type=_positive, default=work.rate, help="mean arrivals per simulated second")
    group.add_argument(
        "--mean-lifetime", type=_positive, default=work.mean_lifetime, metavar="SECONDS", help="mean lifetime"
    )
    group.add_argument(
        "--lifetime",
        choices=sorted(LIFETIME_SHAPES),
        default=work.lifetime,
        help="lifetime distribution (Pareto alpha 1.5, lognormal sigma 1.2)",
    )
    group.add_argument(
        "--wave-period",
        type=_non_negative,
        default=work.wave_period,
        metavar="SECONDS",
        help="period of the load cycle in simulated seconds (0: constant rate)",
    )
    group.add_argument("--swing", type=_fraction, default=work.swing, help="amplitude of the load cycles")
    group.add_argument("--seed", type=int, default=work.seed)
    group.add_argument(
        "--lookup-every",
        type=_count(1),
        default=work.lookup_every,
        metavar="N",
        help="check lookup() on every N-th connection",
    )
    group = parser.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="print the report as JSON")
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    group.add_argument("--plot", metavar="FILE.png", help="draw live leases and subpools over simulated time")
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool simulate`` with parsed arguments; bad combinations are usage errors."""
    defaults = PoolConfig()
    maximum: int = args.max_blocks

    def default(value: int | None, fallback: int) -> int:
        return min(fallback, maximum) if value is None else value

    config = PoolConfig(
        first_ip=args.first_ip,
        last_ip=args.last_ip,
        netmask=args.netmask,
        ports=args.ports,
        initial_blocks=default(args.initial_blocks, defaults.initial_blocks),
        subpool_blocks=default(args.subpool_blocks, defaults.subpool_blocks),
        max_blocks=maximum,
        grow_threshold=default(args.grow_threshold, defaults.grow_threshold),
    )
    workload = Workload(
        connections=args.connections,
        rate=args.rate,
        mean_lifetime=args.mean_lifetime,
        lifetime=args.lifetime,
        wave_period=args.wave_period,
        swing=args.swing,
        seed=args.seed,
        lookup_every=args.lookup_every,
    )
    try:
        config.build(args.model)  # validate the configuration before the run
    except PoolConfigError as exc:
        parser.error(f"argument --{exc.field.replace('_', '-')}: {exc.reason}")
    except (ValueError, OverflowError) as exc:
        parser.error(f"invalid pool configuration: {exc}")
    if args.plot:
        try:
            require("matplotlib", "plot")
        except MissingExtra as exc:
            parser.error(f"argument --plot: {exc}")
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    timeline: list[tuple[float, int, int]] | None = [] if args.plot else None
    report = run(config, workload, args.model, sys.stderr if show else None, timeline)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    if timeline is not None:
        from natpool.apps.plot import plot_timeline

        plot_timeline(
            args.plot,
            f"natpool simulate: {workload.connections:,} connections, model {args.model}",
            [t for t, _, _ in timeline],
            [live for _, live, _ in timeline],
            [subpools for _, _, subpools in timeline],
            time_label="simulated seconds",
        )
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0 if report.ok else 1
