"""The report of a ``natpool simulate`` run, as text or as JSON."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from natpool.apps.simulate.engine import Results, Timing
from natpool.apps.simulate.workload import MODEL_NAMES, PoolConfig, Workload

__all__ = ["Report"]


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
            f"  pool      {p.name}: {_pool_addresses(p)}, "
            f"ports {p.ports[0]}-{p.ports[1]}: {self.address_count:,} addresses, capacity {self.capacity:,}",
            f"            initial_blocks {p.initial_blocks:,}, subpool_blocks {p.subpool_blocks:,}, "
            f"max_blocks {p.max_blocks:,}, grow_threshold {p.grow_threshold:,}",
            f"            order {p.order}{'' if p.seed is None else f' (seed {p.seed})'}, hold-down {p.hold_down:g} s",
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
            f"  {'addresses used':<{width}}{_addresses(r)}",
            f"  {'reuse distance':<{width}}{_reuse(r)}",
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


def _addresses(r: Results) -> str:
    distinct = 0 if r.reuse is None else r.reuse.distinct
    held = f", {r.held_at_end:,} still held down at the end" if r.held_at_end else ""
    return f"{distinct:,} distinct{held}"


def _reuse(r: Results) -> str:
    """The reuse distance line: allocations between two uses of one address."""
    s = r.reuse
    if s is None or s.reuses == 0:
        return "no address allocated twice"
    return (
        f"min {s.shortest:,}, p1 {s.p1:,}, p10 {s.p10:,}, median {s.median:,} allocations between an address's "
        f"free and its next allocation ({s.reuses:,} reuses)"
    )


def _pool_addresses(p: PoolConfig) -> str:
    """``203.0.113.0-203.0.113.255 /24``, or the ranges; then the exclusions."""
    text = ", ".join(p.ranges) if p.ranges else f"{p.first_ip}-{p.last_ip} /{_prefix_text(p.netmask)}"
    return text + (f" minus {', '.join(p.exclude)}" if p.exclude else "")


def _prefix_text(netmask: int | str) -> str:
    if isinstance(netmask, int):
        return str(netmask)
    return str(ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen)
