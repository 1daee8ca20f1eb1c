"""The demo's report: one run, or the pool and the kernel side by side."""

from __future__ import annotations

from natpool.apps.demo.run import DemoConfig, RunResult
from natpool.records import Interval, PoolStats

__all__ = ["compare_text", "run_text"]

W = 28
SHOWN_INTERVALS = 12


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _stats(stats: PoolStats | None) -> str:
    if stats is None:
        return "-"
    return (
        f"{stats.live:,} live, {stats.free_blocks:,} free of {stats.blocks:,} blocks in {stats.subpools} subpool(s), "
        f"{stats.intervals} interval(s)"
    )


def _intervals(intervals: list[Interval]) -> list[str]:
    lines = []
    for i in intervals[:SHOWN_INTERVALS]:
        owner = "free" if i.subpool is None else f"subpool {i.subpool}"
        lines.append(f"    {i.first_ip}:{i.first_port} - {i.last_ip}:{i.last_port}  {i.count:>10,}  {owner}")
    if len(intervals) > SHOWN_INTERVALS:
        lines.append(f"    ... {len(intervals) - SHOWN_INTERVALS} more")
    return lines


def run_text(config: DemoConfig, r: RunResult) -> str:
    """The report of one run."""
    mb = r.bytes_down / r.wall / 1e6 if r.wall > 0 else 0.0
    lines = [
        f"natpool demo: {config.connections:,} connections, {config.concurrency} concurrent, through natpool proxy "
        f"(source {r.source}) to {config.backends} backends on loopback",
        f"  pool {config.pool}, ports {config.ports[0]}-{config.ports[1]}, initial_blocks {config.initial_blocks}, "
        f"subpool_blocks {config.subpool_blocks}, max_blocks {config.max_blocks:,}; {config.payload:,} bytes "
        f"answered per connection",
        "",
        f"  {'connections answered':<{W}}{r.ok:,} of {r.connections:,}",
        f"  {'connections per second':<{W}}{r.per_second:,.0f} ({r.wall:.2f} s wall clock)",
        f"  {'throughput':<{W}}{mb:,.1f} MB/s from the backends to the clients",
        f"  {'latency (connect to close)':<{W}}p50 {_ms(r.percentile(0.5))}, p90 {_ms(r.percentile(0.9))}, "
        f"p99 {_ms(r.percentile(0.99))}, max {_ms(max(r.latencies, default=float('nan')))}",
        f"  {'connections per backend':<{W}}{', '.join(f'{n:,}' for n in r.per_backend)}",
        f"  {'peer addresses seen':<{W}}{r.distinct_addresses:,} distinct, {r.outside_pool} outside {config.pool}",
    ]
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
    lines.append(f"  {'verification':<{W}}{'ok' if r.passed else 'FAILED'}")
    lines += [f"    - {failure}" for failure in r.failures[:20]]
    return "\n".join(lines)


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
