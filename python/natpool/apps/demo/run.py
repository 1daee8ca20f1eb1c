"""One demo run: backends, the proxy with a client NAT pool, concurrent clients, and the verification."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

from natpool.apps.demo.backend import DemoBackend, parse_answer
from natpool.apps.options import PoolAddresses, PortRange, parse_pool
from natpool.apps.proxy import Proxy, ProxyConfig
from natpool.apps.reuse import ReuseSummary
from natpool.records import Interval, PoolStats

__all__ = [
    "DEFAULT_POOL",
    "IPV6_POOL",
    "IPV6_PORTS",
    "DemoConfig",
    "RunResult",
    "Sample",
    "drive",
    "run_once",
    "verify_answers",
]

DEFAULT_POOL = parse_pool("127.0.100.0/24")
"""The demo's client NAT addresses (all of 127.0.0.0/8 is loopback on Linux)."""
IPV6_POOL = parse_pool("::1")
"""The client NAT addresses of ``natpool demo --ipv6``: on Linux ``::1`` is IPv6's only loopback address."""
IPV6_PORTS: PortRange = (1024, 32767)
"""The NAT ports of ``--ipv6``: below Linux's ephemeral ports (32768-60999), which the clients, the backends and
the proxy take on ``::1`` too, so that few NAT addresses are found taken (each one that is is quarantined)."""


@dataclass(frozen=True)
class DemoConfig:
    """The demo's load; the defaults finish in well under a minute on 2 cores."""

    connections: int = 20_000
    concurrency: int = 64
    backends: int = 2
    payload: int = 4096
    """Bytes each backend sends back on each connection."""
    pool: PoolAddresses = DEFAULT_POOL
    """In 127.0.0.0/8, or ``::1`` (``--ipv6``): the backends, the proxy and the clients are on the loopback
    address of the pool's family (:attr:`loopback`)."""
    ports: tuple[int, int] = (1024, 65535)
    initial_blocks: int = 32
    subpool_blocks: int = 16
    max_blocks: int = 65536
    balance: str = "round-robin"
    order: str = "fifo"
    """The pool's reuse order (the proxy's ``--order``)."""
    hold_down: float = 0.0
    """Seconds an address is held down after its connection (the proxy's ``--hold-down``); 0 unless a run of
    ``--orders`` asks for one, so that the rest of the demo (``--compare``, ``--workers``) runs without."""
    waves: int = 3
    """Load cycles over the run: the clients at work swing between a tenth of ``concurrency`` and all of it
    (0: all of them all the time), so that the pool grows subpools and deletes them again."""
    sample_every: float = 0.05
    """Seconds between samples of live leases and subpools (the plot's resolution)."""
    timeout: float = 30.0
    """A hang guard on each client connection, not a measurement."""
    reclaim_delay: float = 1.0
    """With workers (``--workers``): seconds a range a worker returned is held in the store before any worker
    may claim it again; short, so that addresses pass from worker to worker during the run."""

    @property
    def loopback(self) -> str:
        """Where the backends, the proxy and the clients are: ``127.0.0.1``, or ``::1`` for an IPv6 pool."""
        return "::1" if self.pool.family == 6 else "127.0.0.1"

    def proxy_config(self, backends: list[tuple[str, int]], **options: Any) -> ProxyConfig:
        """The proxy's configuration for this load: on loopback, the demo's pool, these ``backends``."""
        return ProxyConfig(
            listen=(self.loopback, 0),
            backends=tuple(backends),
            pool=self.pool,
            ports=self.ports,
            initial_blocks=self.initial_blocks,
            subpool_blocks=self.subpool_blocks,
            max_blocks=self.max_blocks,
            balance=self.balance,
            order=self.order,
            hold_down=self.hold_down,
            reclaim_delay=self.reclaim_delay,
            **options,
        )


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
    answers: list[tuple[tuple[str, int], tuple[str, int]]] = field(default_factory=list)
    """Each connection answered right: (the client's address, the peer address its backend saw)."""
    samples: list[Sample] = field(default_factory=list)
    peak_stats: PoolStats | None = None
    """At the peak of live leases."""
    peak_intervals: list[Interval] = field(default_factory=list)
    peak_blocks: int = 0
    """The most blocks the pool's subpools had at a sample (live, free and held down)."""
    end_stats: PoolStats | None = None
    """After the load, before shutdown."""
    final_stats: PoolStats | None = None
    """After the proxy's shutdown."""
    final_intervals: list[Interval] = field(default_factory=list)
    bind_retries: int = 0
    exhausted: int = 0
    allocations: int = 0
    reuse_by_backend: list[ReuseSummary] = field(default_factory=list)
    """Of each backend's connections: the reuse distance of their peer addresses (4-tuples)."""

    @property
    def four_tuples(self) -> int:
        """Distinct (NAT ip, NAT port, backend ip, backend port) of the backends' connections."""
        return sum(reuse.distinct for reuse in self.reuse_by_backend)

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


async def drive(config: DemoConfig, address: tuple[str, int], result: RunResult, *, check_owner: bool) -> None:
    """The load: ``config.connections`` clients to ``address`` (the proxy), at most ``config.concurrency`` at once
    in waves, each answer checked; counts, latencies and the wall clock go into ``result``, and each answered
    connection's (client address, peer address the backend saw) into ``result.answers``. ``check_owner``: the
    backends' answers name the client holding the peer address (``lookup``), and must name this client."""
    counter = itertools.count()
    seen_addresses: set[tuple[str, int]] = set()

    def at_work(n: int) -> int:
        """How many clients may run connection ``n``: a cosine wave starting at the top."""
        if config.waves <= 0:
            return config.concurrency
        phase = 2 * math.pi * config.waves * n / config.connections
        return max(1, round(config.concurrency * (0.55 + 0.45 * math.cos(phase))))

    issued = 0

    async def client_loop(index: int) -> None:
        nonlocal issued
        while True:
            while index >= at_work(issued) and issued < config.connections:  # resting in a trough of the load
                await asyncio.sleep(config.sample_every / 5)
            n = issued = next(counter)
            if n >= config.connections:
                return
            token = f"c{n}"
            try:
                latency, data, local = await _client(address, token, config.payload, config.timeout)
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
            if not config.pool.holds(answer.peer_ip, answer.peer_port):
                result.outside_pool += 1
            if check_owner and answer.owner != f"{local[0]}:{local[1]}":
                result.owner_mismatches += 1
            seen_addresses.add((answer.peer_ip, answer.peer_port))
            result.answers.append((local, (answer.peer_ip, answer.peer_port)))
            result.ok += 1
            result.bytes_down += len(data)
            result.latencies.append(latency)

    start = time.perf_counter()
    try:
        await asyncio.gather(*(client_loop(i) for i in range(config.concurrency)))
    finally:
        result.wall = time.perf_counter() - start
        result.distinct_addresses = len(seen_addresses)


async def run_once(config: DemoConfig, source: str = "pool") -> RunResult:
    """Run the load through a fresh proxy and pool with ``source`` (``pool`` or ``kernel``) and verify it."""
    result = RunResult(source=source, connections=config.connections)
    proxy: Proxy | None = None

    def owner(ip: str, port: int) -> str:
        record = None if proxy is None else proxy.lookup(ip, port)
        return "-" if record is None else f"{record.client[0]}:{record.client[1]}"

    backends = [DemoBackend(i, owner) for i in range(config.backends)]
    for backend in backends:
        await backend.start(config.loopback)
    proxy = Proxy(config.proxy_config([b.address for b in backends], source=source))
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
            result.peak_blocks = max(result.peak_blocks, stats.blocks)
            if stats.live > peak_live:
                peak_live = stats.live
                result.peak_stats, result.peak_intervals = stats, pool.intervals()
            try:
                await asyncio.wait_for(done.wait(), config.sample_every)
            except TimeoutError:
                pass

    sampler = asyncio.ensure_future(sample())
    try:
        await drive(config, proxy.address, result, check_owner=source == "pool")
    finally:
        done.set()
        await sampler
        result.end_stats = pool.stats()
        await proxy.stop(drain_timeout=5.0)
        for backend in backends:
            await backend.stop()
    result.final_stats, result.final_intervals = pool.stats(), pool.intervals()
    result.per_backend = [len(b.peers) for b in backends]
    result.reuse_by_backend = [b.reuse.summary() for b in backends]
    c = proxy.counters
    result.bind_retries, result.exhausted, result.allocations = c.bind_retries, c.exhausted, c.allocations
    _verify(result, source)
    return result


def _verify(r: RunResult, source: str) -> None:
    """The run's own checks; each failure is a line of ``r.failures``."""
    verify_answers(r)
    if source == "pool":
        if r.owner_mismatches:
            r.failures.append(f"{r.owner_mismatches} lookups of a NAT address did not name its client")
        final = r.final_stats
        if final is None or final.live != 0 or final.free_blocks + final.held != final.blocks:
            r.failures.append(f"leases left after shutdown: {final}")


def verify_answers(r: RunResult) -> None:
    """The checks of what the clients and the backends saw; each failure is a line of ``r.failures``."""
    if r.ok != r.connections:
        r.failures.append(f"{r.connections - r.ok} of {r.connections} connections were not answered right")
    if r.outside_pool:
        r.failures.append(f"{r.outside_pool} connections reached a backend from outside the pool")
    if any(count == 0 for count in r.per_backend):
        r.failures.append(f"a backend saw no connection: {r.per_backend}")
    if sum(r.per_backend) < r.ok:
        r.failures.append(f"backends saw {sum(r.per_backend)} connections, fewer than the {r.ok} answered")
