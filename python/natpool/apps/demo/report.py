"""The demo's report: one run, or the pool and the kernel side by side."""

from __future__ import annotations

from natpool.apps.demo.orders import OrderRun
from natpool.apps.demo.run import DemoConfig, RunResult
from natpool.apps.demo.workers import WorkersRun
from natpool.apps.options import endpoint_text
from natpool.apps.reuse import ReuseSummary
from natpool.records import Interval, PoolStats

__all__ = ["compare_text", "orders_text", "run_text", "workers_text"]

W = 28
SHOWN_INTERVALS = 12


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _stats(stats: PoolStats | None) -> str:
    if stats is None:
        return "-"
    held = f"{stats.held:,} held down, " if stats.held else ""
    return (
        f"{stats.live:,} live, {held}{stats.free_blocks:,} free of {stats.blocks:,} blocks in {stats.subpools} "
        f"subpool(s), {stats.intervals} interval(s)"
    )


def _intervals(intervals: list[Interval]) -> list[str]:
    lines = []
    for i in intervals[:SHOWN_INTERVALS]:
        owner = "free" if i.subpool is None else f"subpool {i.subpool}"
        first, last = endpoint_text((i.first_ip, i.first_port)), endpoint_text((i.last_ip, i.last_port))
        lines.append(f"    {first} - {last}  {i.count:>10,}  {owner}")
    if len(intervals) > SHOWN_INTERVALS:
        lines.append(f"    ... {len(intervals) - SHOWN_INTERVALS} more")
    return lines


def _head(config: DemoConfig, proxy: str, extra: str = "") -> list[str]:
    extra = f", order {config.order}" + (f", hold-down {config.hold_down:g} s" if config.hold_down else "") + extra
    return [
        f"natpool demo: {config.connections:,} connections, {config.concurrency} concurrent, through {proxy} "
        f"to {config.backends} backends on loopback",
        f"  pool {config.pool}, ports {config.ports[0]}-{config.ports[1]}, initial_blocks {config.initial_blocks}, "
        f"subpool_blocks {config.subpool_blocks}, max_blocks {config.max_blocks:,}{extra}; {config.payload:,} "
        "bytes answered per connection",
        "",
    ]


def _load(config: DemoConfig, r: RunResult) -> list[str]:
    """What the clients and the backends saw."""
    mb = r.bytes_down / r.wall / 1e6 if r.wall > 0 else 0.0
    return [
        f"  {'connections answered':<{W}}{r.ok:,} of {r.connections:,}",
        f"  {'connections per second':<{W}}{r.per_second:,.0f} ({r.wall:.2f} s wall clock)",
        f"  {'throughput':<{W}}{mb:,.1f} MB/s from the backends to the clients",
        f"  {'latency (connect to close)':<{W}}p50 {_ms(r.percentile(0.5))}, p90 {_ms(r.percentile(0.9))}, "
        f"p99 {_ms(r.percentile(0.99))}, max {_ms(max(r.latencies, default=float('nan')))}",
        f"  {'connections per backend':<{W}}{', '.join(f'{n:,}' for n in r.per_backend)}",
        f"  {'peer addresses seen':<{W}}{r.distinct_addresses:,} distinct, {r.outside_pool} outside {config.pool}",
    ]


def _verdict(r: RunResult) -> list[str]:
    return [f"  {'verification':<{W}}{'ok' if r.passed else 'FAILED'}", *(f"    - {f}" for f in r.failures[:20])]


def run_text(config: DemoConfig, r: RunResult) -> str:
    """The report of one run."""
    lines = _head(config, f"natpool proxy (source {r.source})") + _load(config, r)
    if r.source == "pool":
        lines += [
            f"  {'lookup(peer) named client':<{W}}{r.ok - r.owner_mismatches:,} of {r.ok:,}",
            f"  {'allocations':<{W}}{r.allocations:,} ({r.bind_retries} bind retries, {r.exhausted} exhaustion events)",
            f"  {'pool at peak':<{W}}{_stats(r.peak_stats)}",
            f"  {'pool after the load':<{W}}{_stats(r.end_stats)}",
            f"  {'pool after shutdown':<{W}}{_stats(r.final_stats)}",
            f"  interval list at peak ({len(r.peak_intervals)}):",
            *_intervals(r.peak_intervals),
            f"  interval list after shutdown ({len(r.final_intervals)}):",
            *_intervals(r.final_intervals),
        ]
    return "\n".join(lines + _verdict(r))


def workers_text(config: DemoConfig, run: WorkersRun) -> str:
    """The report of a run through ``natpool proxy --workers N``, with its ledger."""
    r, book = run.result, run.ledger
    lines = _head(
        config,
        f"natpool proxy --workers {run.workers} (SO_REUSEPORT, one pool in a SQLite store)",
        f", reclaim_delay {config.reclaim_delay:g} s",
    )
    lines += _load(config, r)
    members = ", ".join(f"{e.index}: {e.member}" for e in run.exits)
    seen = [book.seen_by_worker.get(e.index, 0) for e in run.exits]
    store = run.store
    lines += [
        f"  {'connections per worker':<{W}}{', '.join(f'{n:,}' for n in run.served())} (members {members})",
        f"  {'backends saw, by worker':<{W}}{', '.join(f'{n:,}' for n in seen)} (whose lease each peer address was)",
        f"  {'lease ledger':<{W}}{book.spans:,} leases of {book.addresses:,} addresses; {book.shared:,} addresses "
        f"held by more than one worker, one after the other; {len(book.overlaps)} held by two at once",
        f"  {'peer leased for its client':<{W}}{r.ok - len(book.unmatched):,} of {r.ok:,}",
        f"  {'allocations':<{W}}{r.allocations:,} ({r.bind_retries} bind retries, {r.exhausted} exhaustion events)",
        f"  {'workers after the drain':<{W}}"
        + "; ".join(
            f"{e.index}: {'ok' if e.ok else 'FAILED'}, "
            f"{'-' if e.report is None or e.report.stats is None else e.report.stats.live} live"
            for e in run.exits
        ),
        f"  {'store after shutdown':<{W}}"
        + (
            "unreadable"
            if store is None
            else f"{len(store.members)} members, {store.claimed:,} addresses claimed, {store.held:,} held"
        ),
    ]
    return "\n".join(lines + _verdict(r))


def compare_text(config: DemoConfig, rounds: int, pool: RunResult, kernel: RunResult) -> str:
    """The pool and the kernel as the source of upstream addresses, the same load in alternating rounds."""

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 else "-"

    rows = [
        ("connections per second", pool.per_second, kernel.per_second, "{:,.0f}"),
        ("latency p50 (ms)", pool.percentile(0.5) * 1000, kernel.percentile(0.5) * 1000, "{:.2f}"),
        ("latency p90 (ms)", pool.percentile(0.9) * 1000, kernel.percentile(0.9) * 1000, "{:.2f}"),
        ("latency p99 (ms)", pool.percentile(0.99) * 1000, kernel.percentile(0.99) * 1000, "{:.2f}"),
    ]
    lines = [
        f"natpool demo --compare: the same load ({config.connections:,} connections, {config.concurrency} concurrent) "
        "with natpool leases and with the kernel choosing the port (IP_BIND_ADDRESS_NO_PORT),",
        f"  in {rounds} rounds of {config.connections // rounds:,} connections, pool, kernel, kernel, pool, ...; "
        f"{pool.ok:,} + {kernel.ok:,} connections answered",
        "",
        f"  {'':<{W}}{'natpool':>12}{'kernel':>12}{'natpool/kernel':>16}",
    ]
    for name, a, b, fmt in rows:
        lines.append(f"  {name:<{W}}{fmt.format(a):>12}{fmt.format(b):>12}{ratio(a, b):>16}")
    verdict = "ok" if pool.passed and kernel.passed else "FAILED"
    failures = f"natpool: {len(pool.failures)}, kernel: {len(kernel.failures)} failures"
    lines.append(f"  {'verification':<{W}}{verdict} ({failures})")
    return "\n".join(lines)


def _per_backend(reuse: list[ReuseSummary], value: str) -> str:
    """One statistic of each backend's reuse distance, comma-separated (``-`` for a backend that reused none)."""
    numbers = [getattr(summary, value) for summary in reuse]
    return ", ".join("-" if n is None else f"{n:,}" for n in numbers)


def orders_text(config: DemoConfig, runs: list[OrderRun]) -> str:
    """The runs of ``--orders`` side by side: what each order made the backends see."""
    share = runs[0].config.connections
    lines = [
        f"natpool demo --orders: {len(runs)} run(s) of {share:,} connections ({config.concurrency} concurrent, "
        f"{config.backends} backends), each through a fresh proxy and pool",
        "  reuse distance: a backend's connections between two from one NAT address (one 4-tuple), per backend",
        "  (-: no 4-tuple reused); peak blocks: the most the pool had (live, free and held down)",
        "",
        f"  {'order':<24}{'4-tuples':>9}{'NAT addresses':>15}  {'shortest reuse':<18}{'median reuse':<18}"
        f"{'peak blocks':>11}  verification",
    ]
    for run in runs:
        r = run.result
        label = run.order.order + (f", hold-down {run.config.hold_down:g} s" if run.order.hold else "")
        peak = f"{r.peak_blocks:,}"
        lines.append(
            f"  {label:<24}{r.four_tuples:>9,}{r.distinct_addresses:>15,}  "
            f"{_per_backend(r.reuse_by_backend, 'shortest'):<18}{_per_backend(r.reuse_by_backend, 'median'):<18}"
            f"{peak:>11}  {'ok' if r.passed else 'FAILED'}"
        )
    return "\n".join(lines)
