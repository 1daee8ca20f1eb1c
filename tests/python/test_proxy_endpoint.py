"""The proxy's HTTP endpoint: /metrics reports what the pool reports, /healthz, /lookup (introspection)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import pytest
from natpool.apps.proxy import Proxy
from natpool.apps.proxy.admin import Admin
from netkit import PeerEchoBackend, config, pool_range, random_network, request, run, running, until

pytestmark = pytest.mark.extra("metrics")  # the endpoint serves /metrics and needs prometheus_client to start


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_metrics_endpoint_reports_the_numbers_the_pool_reports() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=2, ports=8)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, initial_blocks=2, subpool_blocks=2, max_blocks=6))
        admin = Admin(proxy, ("127.0.0.1", 0))
        async with running(proxy):
            await admin.start()
            base = f"http://{admin.address[0]}:{admin.address[1]}"
            for _ in range(3):  # their addresses are held down (60 s) after them
                await request(proxy.address)
            backend.hold.clear()
            open_now = [asyncio.ensure_future(request(proxy.address)) for _ in range(3)]
            await until(lambda: len(backend.peers) == 6, "three connections held open")
            assert await request(proxy.address) == b""  # the seventh: 3 live + 3 held of max 6 blocks, exhausted

            status, text = await asyncio.to_thread(fetch, base + "/metrics")
            assert status == 200
            got, stats, c = samples(text), proxy.pool.stats(), proxy.counters
            assert got["natpool_live_leases"] == stats.live == 3
            assert got["natpool_held_leases"] == stats.held == 3
            assert got["natpool_free_blocks"] == stats.free_blocks
            assert got["natpool_blocks"] == stats.blocks
            assert got["natpool_subpools"] == stats.subpools == 3
            assert got["natpool_intervals"] == stats.intervals == len(proxy.pool.intervals())
            assert got["natpool_capacity"] == stats.capacity == 6
            assert got["natpool_allocations_total"] == c.allocations == 6
            assert got["natpool_exhaustion_events_total"] == c.exhausted == 1
            assert got["natpool_bind_retries_total"] == c.bind_retries == 0
            assert got["natpool_proxy_active_connections"] == 3

            ip, port = backend.peers[-1]
            status, text = await asyncio.to_thread(fetch, f"{base}/lookup?ip={ip}&port={port}")
            record = proxy.lookup(ip, port)
            assert status == 200 and record is not None
            shown = json.loads(text)
            assert shown == record.to_json()
            assert (
                shown["nat"] == f"{ip}:{port}"
                and shown["state"] == "open"
                and shown["backend"] == "{}:{}".format(*backend.address)
            )
            free_port = ports[0] if (spec.first_ip, ports[0]) not in backend.peers else ports[1]
            assert (await asyncio.to_thread(fetch, f"{base}/lookup?ip=127.0.0.1&port={free_port}"))[0] == 404
            assert (await asyncio.to_thread(fetch, f"{base}/lookup?ip=nonsense&port=1"))[0] == 400

            assert await asyncio.to_thread(fetch, base + "/healthz") == (200, "ok\n")
            backend.hold.set()
            await asyncio.gather(*open_now)
            await until(lambda: len(proxy.pool) == 0, "every lease back")
            got = samples((await asyncio.to_thread(fetch, base + "/metrics"))[1])
            assert got["natpool_live_leases"] == 0 and got["natpool_subpools"] == proxy.pool.stats().subpools
            proxy.draining = True
            assert (await asyncio.to_thread(fetch, base + "/healthz"))[0] == 503
            await admin.stop()
        await backend.stop()

    run(body)


def test_importing_natpool_registers_no_metric() -> None:
    import natpool.apps.proxy  # noqa: F401
    from prometheus_client import REGISTRY

    assert not any(name.startswith("natpool") for name in REGISTRY._names_to_collectors)
