"""Prometheus metrics of a running proxy (the optional extra ``natpool[metrics]``).

``prometheus_client`` is imported only when :func:`exposition` is first called, and the collector goes into a
registry of its own, never the global one: importing natpool registers nothing. Every value is read from the
pool (``stats()``) and the proxy's counters at scrape time, so the endpoint reports exactly what the pool does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from natpool.apps.proxy.server import Proxy

from natpool.extras import require

__all__ = ["CONTENT_TYPE", "exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(proxy: Proxy) -> Callable[[], bytes]:
    """A function returning the proxy's metrics in Prometheus' text format."""
    require("metrics")
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class ProxyCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            stats = proxy.pool.stats()
            c = proxy.counters
            gauges = {
                "natpool_live_leases": ("Live leases (the connections')", stats.live),
                "natpool_free_blocks": ("Free connection blocks in the pool's subpools", stats.free_blocks),
                "natpool_blocks": ("Connection blocks in the pool's subpools", stats.blocks),
                "natpool_subpools": ("Storage subpools", stats.subpools),
                "natpool_intervals": ("Length of the interval list", stats.intervals),
                "natpool_capacity": ("Leases the pool can hand out", stats.capacity),
                "natpool_held_leases": ("Addresses held down (TIME_WAIT) or quarantined by the pool", stats.held),
                "natpool_proxy_active_connections": (
                    "Client connections open (accepted, not yet closed)",
                    len(proxy.active),
                ),
                "natpool_proxy_leased_connections": ("Client connections holding a lease", c.leased),
                "natpool_proxy_max_connections": ("Client connections open at once at most", proxy.max_connections),
            }
            for name, (doc, value) in gauges.items():
                yield GaugeMetricFamily(name, doc, value=value)
            counters = {
                "natpool_allocations": ("Successful allocate() calls", c.allocations),
                "natpool_exhaustion_events": ("Client connections refused: pool exhausted", c.exhausted),
                "natpool_proxy_quota_refusals": (
                    "Client connections refused: the client IP had --max-per-client leases",
                    c.quota_refused,
                ),
                "natpool_proxy_block_events": ("Port blocks assigned or released (--client-block)", c.block_events),
                "natpool_bind_retries": ("NAT addresses that could not be bound, quarantined", c.bind_retries),
                "natpool_proxy_accepted": ("Client connections accepted", c.accepted),
                "natpool_proxy_relayed": ("Client connections relayed to a backend", c.relayed),
                "natpool_proxy_backend_failures": (
                    "Client connections lost to a failed backend connect",
                    c.backend_failures,
                ),
                "natpool_proxy_bind_failures": (
                    "Client connections lost: no NAT address could be bound",
                    c.bind_failures,
                ),
                "natpool_proxy_no_backend": ("Client connections refused: every backend down", c.no_backend),
                "natpool_proxy_idle_timeouts": (
                    "Connections closed after --idle-timeout without a byte",
                    c.idle_timeouts,
                ),
                "natpool_proxy_resource_failures": (
                    "Client connections lost: no upstream socket (out of descriptors or buffers)",
                    c.resource_failures,
                ),
                "natpool_proxy_store_failures": (
                    "Client connections closed: the cluster store failed when a subpool was needed",
                    c.store_failures,
                ),
                "natpool_proxy_errors": ("Client connections lost to an unexpected error", c.errors),
                "natpool_proxy_state_writes": ("Snapshots of the pool written to --state", c.state_writes),
                "natpool_proxy_state_write_failures": (
                    "Snapshots of the pool that could not be written to --state",
                    c.state_write_failures,
                ),
            }
            for name, (doc, value) in counters.items():
                yield CounterMetricFamily(name, doc, value=value)
            up = GaugeMetricFamily(
                "natpool_proxy_backend_up", "1 if the backend is in the rotation", labels=["backend"]
            )
            live = set(map(id, proxy.backends.up()))
            for backend in proxy.backends.all:
                up.add_metric([str(backend)], 1.0 if id(backend) in live else 0.0)
            yield up

    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProxyCollector())
    return lambda: generate_latest(registry)
