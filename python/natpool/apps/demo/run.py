"""One demo run: backends, the proxy with a client NAT pool, concurrent clients, and the verification."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field

from natpool.apps.demo.backend import DemoBackend, parse_answer
from natpool.apps.options import PoolAddresses, parse_pool
from natpool.apps.proxy import Proxy, ProxyConfig
from natpool.records import Interval, PoolStats

__all__ = ["DEFAULT_POOL", "DemoConfig", "RunResult", "Sample", "run_once"]

DEFAULT_POOL = parse_pool("127.0.100.0/24")
"""The demo's client NAT addresses (all of 127.0.0.0/8 is loopback on Linux)."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's load; the defaults finish in well under a minute on 2 cores."""

    connections: int = 20_000
    concurrency: int = 64
    backends: int = 2
    payload: int = 4096
    """Bytes each backend sends back on each connection."""
    pool: PoolAddresses = DEFAULT_POOL
    ports: tuple[int, int] = (1024, 65535)
    initial_blocks: int = 32
    subpool_blocks: int = 16
    max_blocks: int = 65536
    balance: str = "round-robin"
    waves: int = 3
    """Load cycles over the run: the clients at work swing between a tenth of ``concurrency`` and all of it
    (0: all of them all the time), so that the pool grows subpools and deletes them again."""
    sample_every: float = 0.05
    """Seconds between samples of live leases and subpools (the plot's resolution)."""
    timeout: float = 30.0
    """A hang guard on each client connection, not a measurement."""


@dataclass(frozen=True)
class Sample:
    t: float
    live: int
    subpools: int


@dataclass
class RunResult:
    """What one run measured and checked."""

    source: str
    connections: int = 0
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    """Verification failures (empty: the run passed)."""
    wall: float = 0.0
    bytes_down: int = 0
    latencies: list[float] = field(default_factory=list)
    per_backend: list[int] = field(default_factory=list)
    outside_pool: int = 0
    owner_mismatches: int = 0
    distinct_addresses: int = 0
    samples: list[Sample] = field(default_factory=list)
    peak_stats: PoolStats | None = None
    peak_intervals: list[Interval] = field(default_factory=list)
    end_stats: PoolStats | None = None
    """After the load, before shutdown."""
    final_stats: PoolStats | None = None
    """After the proxy's shutdown."""
    final_intervals: list[Interval] = field(default_factory=list)
    bind_retries: int = 0
    exhausted: int = 0
    allocations: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def per_second(self) -> float:
        return self.ok / self.wall if self.wall > 0 else 0.0

    def percentile(self, q: float) -> float:
        """The ``q``-quantile of connection latency in seconds (nearest rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def _client(
    proxy: tuple[str, int], token: str, payload: int, timeout: float
) -> tuple[float, bytes, tuple[str, int]]:
    start = time.perf_counter()
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*proxy), timeout)
    try:
        local = writer.get_extra_info("sockname")[:2]
        writer.write(f"{token} {payload}\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return time.perf_counter() - start, data, (local[0], local[1])


async def run_once(config: DemoConfig, source: str = "pool") -> RunResult:
    """Run the load through a fresh proxy and pool with ``source`` (``pool`` or ``kernel``) and verify it."""
    result = RunResult(source=source, connections=config.connections)
    proxy: Proxy | None = None

    def owner(ip: str, port: int) -> str:
        record = None if proxy is None else proxy.lookup(ip, port)
        return "-" if record is None else f"{record.client[0]}:{record.client[1]}"

    backends = [DemoBackend(i, owner) for i in range(config.backends)]
    for backend in backends:
        await backend.start()
    proxy = Proxy(
        ProxyConfig(
            listen=("127.0.0.1", 0),
            backends=tuple(b.address for b in backends),
            pool=config.pool,
            ports=config.ports,
            initial_blocks=config.initial_blocks,
            subpool_blocks=config.subpool_blocks,
            max_blocks=config.max_blocks,
            balance=config.balance,
            source=source,
        )
    )
    pool = proxy.pool
    await proxy.start()
    done = asyncio.Event()
    peak_live = -1

    async def sample() -> None:
        nonlocal peak_live
        start = time.perf_counter()
        while not done.is_set():
            stats = pool.stats()
            result.samples.append(Sample(time.perf_counter() - start, stats.live, stats.subpools))
            if stats.live > peak_live:
                peak_live = stats.live
                result.peak_stats, result.peak_intervals = stats, pool.intervals()
            try:
                await asyncio.wait_for(done.wait(), config.sample_every)
            except TimeoutError:
                pass

    counter = itertools.count()
    seen_addresses: set[tuple[str, int]] = set()

    def at_work(n: int) -> int:
        """How many workers may run connection ``n``: a cosine wave starting at the top."""
        if config.waves <= 0:
            return config.concurrency
        phase = 2 * math.pi * config.waves * n / config.connections
        return max(1, round(config.concurrency * (0.55 + 0.45 * math.cos(phase))))

    issued = 0

    async def worker(index: int) -> None:
        nonlocal issued
        while True:
            while index >= at_work(issued) and issued < config.connections:  # resting in a trough of the load
                await asyncio.sleep(config.sample_every / 5)
            n = issued = next(counter)
            if n >= config.connections:
                return
            token = f"c{n}"
            try:
                latency, data, local = await _client(proxy.address, token, config.payload, config.timeout)
            except (OSError, TimeoutError) as exc:
                result.failures.append(f"connection {n}: {type(exc).__name__}: {exc}")
                continue
            line, _, body = data.partition(b"\n")
            try:
                answer = parse_answer(line)
            except ValueError:
                result.failures.append(f"connection {n}: malformed answer {line[:80]!r}")
                continue
            if answer.token != token or len(body) != config.payload:
                result.failures.append(f"connection {n}: wrong answer ({answer.token}, {len(body)} bytes)")
                continue
            if answer.peer_ip not in config.pool:
                result.outside_pool += 1
            if source == "pool" and answer.owner != f"{local[0]}:{local[1]}":
                result.owner_mismatches += 1
            seen_addresses.add((answer.peer_ip, answer.peer_port))
            result.ok += 1
            result.bytes_down += len(data)
            result.latencies.append(latency)

    sampler = asyncio.ensure_future(sample())
    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(i) for i in range(config.concurrency)))
    finally:
        result.wall = time.perf_counter() - start
        done.set()
        await sampler
        result.end_stats = pool.stats()
        await proxy.stop(drain_timeout=5.0)
        for backend in backends:
            await backend.stop()
    result.final_stats, result.final_intervals = pool.stats(), pool.intervals()
    result.per_backend = [len(b.peers) for b in backends]
    result.distinct_addresses = len(seen_addresses)
    c = proxy.counters
    result.bind_retries, result.exhausted, result.allocations = c.bind_retries, c.exhausted, c.allocations
    _verify(result, source)
    return result


def _verify(r: RunResult, source: str) -> None:
    """The run's own checks; each failure is a line of ``r.failures``."""
    if r.ok != r.connections:
        r.failures.append(f"{r.connections - r.ok} of {r.connections} connections were not answered right")
    if r.outside_pool:
        r.failures.append(f"{r.outside_pool} connections reached a backend from outside the pool")
    if any(count == 0 for count in r.per_backend):
        r.failures.append(f"a backend saw no connection: {r.per_backend}")
    if sum(r.per_backend) < r.ok:
        r.failures.append(f"backends saw {sum(r.per_backend)} connections, fewer than the {r.ok} answered")
    if source == "pool":
        if r.owner_mismatches:
            r.failures.append(f"{r.owner_mismatches} lookups of a NAT address did not name its client")
        if r.final_stats is None or r.final_stats.live != 0 or r.final_stats.free_blocks != r.final_stats.blocks:
            r.failures.append(f"leases left after shutdown: {r.final_stats}")
