"""``natpool demo --compare``: the same load with natpool leases and with the kernel choosing the port.

The machine is shared and noisy, so the two sources do not run once each, one after the other: the load is cut
into rounds run in the order pool, kernel, kernel, pool, pool, kernel, ... (each pair mirrors the one before,
so a drift in the machine's speed weighs on both alike), and each source's rounds are added up.
"""

from __future__ import annotations

import dataclasses

from natpool.apps.demo.run import DemoConfig, RunResult, run_once

__all__ = ["compare", "merge", "order"]


def order(rounds: int) -> list[str]:
    """The sources of ``rounds`` rounds: pool, kernel, kernel, pool, ..."""
    pairs = [("pool", "kernel") if i % 2 == 0 else ("kernel", "pool") for i in range((rounds + 1) // 2)]
    return [source for pair in pairs for source in pair][:rounds]


def merge(source: str, results: list[RunResult]) -> RunResult:
    """One result of several rounds of the same source: counts and wall clocks added, latencies pooled."""
    merged = RunResult(source=source)
    for r in results:
        merged.connections += r.connections
        merged.ok += r.ok
        merged.wall += r.wall
        merged.bytes_down += r.bytes_down
        merged.latencies += r.latencies
        merged.outside_pool += r.outside_pool
        merged.owner_mismatches += r.owner_mismatches
        merged.bind_retries += r.bind_retries
        merged.exhausted += r.exhausted
        merged.failures += [f"round of {r.connections}: {failure}" for failure in r.failures]
    return merged


async def compare(config: DemoConfig, rounds: int) -> tuple[RunResult, RunResult]:
    """Run ``config``'s load in ``rounds`` rounds (an even number: as many for each source)."""
    each = dataclasses.replace(config, connections=max(1, config.connections // rounds))
    results: dict[str, list[RunResult]] = {"pool": [], "kernel": []}
    for source in order(rounds):
        results[source].append(await run_once(each, source))
    return merge("pool", results["pool"]), merge("kernel", results["kernel"])
