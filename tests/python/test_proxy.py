"""``natpool proxy`` end to end on loopback: real sockets, real backends, the pool's state checked after."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import urllib.request
from collections.abc import Callable

import pytest
from natpool.apps.proxy import ClientConnection, Proxy
from netkit import (
    PeerEchoBackend,
    config,
    dead_address,
    http_backend,
    pool_range,
    random_network,
    request,
    run,
    running,
    until,
)


def in_pool(ip: str, network: ipaddress.IPv4Network) -> bool:
    return ipaddress.IPv4Address(ip) in network


class Lookups:
    """What ``proxy.lookup`` said, from inside a backend, about each peer address the backend saw."""

    def __init__(self) -> None:
        self.proxy: Proxy | None = None
        self.found: list[tuple[str, ClientConnection | None, tuple[str, int]]] = []

    def recorder(self, name: str) -> Callable[[str, int], None]:
        def on_peer(ip: str, port: int) -> None:
            assert self.proxy is not None
            self.found.append((name, self.proxy.lookup(ip, port), (ip, port)))

        return on_peer


def test_backends_see_only_pool_addresses_and_the_pool_returns_to_its_baseline() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=4, ports=64)
    lookups = Lookups()
    backends = [PeerEchoBackend(lookups.recorder("a")), PeerEchoBackend(lookups.recorder("b"))]

    async def body() -> None:
        for backend in backends:
            await backend.start()
        names = {f"{b.address[0]}:{b.address[1]}": name for b, name in zip(backends, "ab", strict=True)}
        options = {"initial_blocks": 4, "subpool_blocks": 4, "hold_down": 0.0}
        proxy = Proxy(config([b.address for b in backends], spec, ports, **options))
        lookups.proxy = proxy
        async with running(proxy):
            answers = await asyncio.gather(*(request(proxy.address) for _ in range(200)))
            seen = [answer.decode().split() for answer in answers]
            assert all(len(s) == 2 and in_pool(s[0], network) and ports[0] <= int(s[1]) <= ports[1] for s in seen)
            stats = proxy.pool.stats()
            assert stats.live == stats.held == 0  # no hold-down: every lease was freed at once
            assert stats.free_blocks == stats.blocks == 4  # the subpools grown under load are deleted again
            intervals = proxy.pool.intervals()
            assert stats.intervals == len(intervals) and sum(i.count for i in intervals) == stats.address_count
            assert proxy.counters.relayed == proxy.counters.allocations == 200
            assert proxy.counters.bind_retries == proxy.counters.exhausted == 0
        for backend in backends:
            await backend.stop()
        assert [len(b.peers) for b in backends] == [100, 100]  # round-robin
        assert all(in_pool(ip, network) for b in backends for ip, _ in b.peers)
        assert len(lookups.found) == 200
        for name, record, nat in lookups.found:
            assert record is not None and record.nat == nat and names[record.backend or ""] == name

    run(body)


@pytest.mark.parametrize("closes_first", ["backend", "client"])
def test_a_connected_address_is_held_down_by_the_pool_whoever_closed_first(closes_first: str) -> None:
    """A pool of one address: while the first connection's address is held down the next client is refused (the
    pool is exhausted), and once the hold has ended the address serves again (its TIME_WAIT on the backend's host,
    which takes a new connection from it)."""
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=1)
    backend = PeerEchoBackend()
    hold_down = 0.5

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, hold_down=hold_down))
        async with running(proxy):
            if closes_first == "client":
                backend.hold.clear()  # the backend does not answer: the client gives up and closes first
                _, writer = await asyncio.open_connection(*proxy.address)
                await until(lambda: len(backend.peers) == 1, "the backend to see the connection")
                writer.close()
                await writer.wait_closed()
            else:
                assert await request(proxy.address) != b""
            await until(lambda: proxy.pool.stats().held == 1, "the address to be held down")
            freed = asyncio.get_running_loop().time()
            nat = backend.peers[0]
            assert len(proxy.pool) == 0 and proxy.lookup(*nat) is None  # freed: no connection holds it
            backend.hold.set()
            assert await request(proxy.address) == b""  # held: the only address is out of use
            assert proxy.counters.exhausted == 1 and len(backend.peers) == 1
            if closes_first == "backend":  # else the proxy's own TIME_WAIT of the 4-tuple (60 s) may still be there
                await asyncio.sleep(freed + hold_down + 0.1 - asyncio.get_running_loop().time())
                assert await request(proxy.address) == f"{nat[0]} {nat[1]}\n".encode()  # the hold ended
                assert proxy.counters.exhausted == 1
        await backend.stop()

    run(body)


def test_a_tiny_pool_exhausts_cleanly_and_recovers() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=2)  # two NAT addresses in all
    backend = PeerEchoBackend()
    backend.hold.clear()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, max_blocks=2, hold_down=0.0))
        async with running(proxy):
            held = [asyncio.ensure_future(request(proxy.address)) for _ in range(2)]
            await until(lambda: len(backend.peers) == 2, "two relayed connections")
            assert await request(proxy.address) == b""  # the third is closed at once
            assert proxy.counters.exhausted == 1
            assert len(proxy.pool) == 2 and not any(task.done() for task in held)
            backend.hold.set()  # the two existing connections were not disturbed
            answers = await asyncio.gather(*held)
            assert sorted(answers) == sorted(f"{ip} {port}\n".encode() for ip, port in backend.peers)
            await until(lambda: len(proxy.pool) == 0, "both leases to be freed")
            answer = await request(proxy.address)  # recovered
            assert answer.decode().split()[0] == spec.first_ip
            assert proxy.counters.exhausted == 1 and proxy.counters.relayed == 3
        await backend.stop()

    run(body)


def test_an_address_bound_by_another_socket_is_quarantined_and_the_connection_still_succeeds() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=2)
    taken = (spec.first_ip, ports[0])  # the first address a fresh pool hands out
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, quarantine=60.0, hold_down=0.0))
        with socket.socket() as squatter:
            squatter.bind(taken)  # no SO_REUSEADDR: the proxy's bind to it fails with EADDRINUSE
            async with running(proxy):
                answer = await request(proxy.address)
                assert answer == f"{spec.first_ip} {ports[1]}\n".encode()
                assert proxy.counters.bind_retries == 1 and proxy.counters.allocations == 2
                assert proxy.pool.stats().held == 1 and len(proxy.pool) == 0  # freed, held out of use
                assert await request(proxy.address) == answer  # the pool no longer hands out the taken one
                assert proxy.counters.bind_retries == 1 and proxy.counters.allocations == 3
            assert len(proxy.pool) == 0
        await backend.stop()

    run(body)


def test_every_address_unbindable_costs_the_connection_and_no_lease() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=2)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, bind_attempts=2, quarantine=0.0))
        with socket.socket() as one, socket.socket() as two:
            one.bind((spec.first_ip, ports[0]))
            two.bind((spec.first_ip, ports[1]))
            async with running(proxy):
                assert await request(proxy.address) == b""
                assert proxy.counters.bind_failures == 1 and proxy.counters.bind_retries == 2
                assert len(proxy.pool) == 0
        await backend.stop()

    run(body)


def test_an_unreachable_backend_costs_one_connection_is_marked_down_and_leaks_no_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([dead_address(), backend.address], spec, ports, down_time=600.0))
        async with running(proxy):
            assert await request(proxy.address) == b""  # round-robin sent it to the dead backend
            assert proxy.counters.backend_failures == 1 and len(proxy.pool) == 0
            dead, live = proxy.backends.all
            assert proxy.backends.up() == [live]
            answers = [await request(proxy.address) for _ in range(4)]
            assert all(answer.startswith(spec.first_ip.encode()) for answer in answers)
            assert proxy.counters.backend_failures == 1 and dead.failures == 1
            assert len(proxy.pool) == 0
        down = [r for r in caplog.records if r.name == "natpool.proxy" and "is down" in r.getMessage()]
        assert len(down) == 1 and down[0].levelno == logging.WARNING and str(dead) in down[0].getMessage()
        await backend.stop()

    run(body)


def test_when_every_backend_is_down_clients_are_refused_at_once_without_a_lease() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)

    async def body() -> None:
        proxy = Proxy(config([dead_address()], spec, ports, down_time=600.0))
        async with running(proxy):
            assert await request(proxy.address) == b""
            assert proxy.counters.backend_failures == 1 and proxy.backends.up() == []
            assert await request(proxy.address) == b""
            assert proxy.counters.no_backend == 1 and proxy.counters.allocations == 1
            assert len(proxy.pool) == 0

    run(body)


def test_shutdown_drains_then_closes_the_rest_and_frees_every_lease() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=16)
    patient, stuck = PeerEchoBackend(), PeerEchoBackend()
    patient.hold.clear()
    stuck.hold.clear()

    async def body() -> None:
        for backend in (patient, stuck):
            await backend.start()
        proxy = Proxy(config([patient.address, stuck.address], spec, ports, hold_down=600.0))
        await proxy.start()
        clients = [asyncio.ensure_future(request(proxy.address)) for _ in range(6)]
        await until(lambda: len(patient.peers) + len(stuck.peers) == 6, "six relayed connections")
        assert len(proxy.pool) == 6
        stopping = asyncio.ensure_future(proxy.stop(drain_timeout=0.5))
        await until(lambda: proxy.draining, "the drain to begin")
        patient.hold.set()  # these finish during the drain; the stuck ones are closed after it
        await stopping
        answers = await asyncio.gather(*clients)
        assert sorted(a for a in answers if a) == sorted(f"{ip} {port}\n".encode() for ip, port in patient.peers)
        assert answers.count(b"") == len(stuck.peers) == 3
        stats = proxy.pool.stats()
        assert len(proxy.pool) == stats.live == 0 and stats.held == 6  # every one connected: each held down
        with socket.socket() as probe:  # no longer listening
            assert probe.connect_ex(proxy.address) != 0
        stuck.hold.set()
        for backend in (patient, stuck):
            await backend.stop()

    run(body)


def test_http_through_the_proxy_with_the_standard_librarys_server_and_client() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=2, ports=32)

    def get(url: str) -> tuple[int, str]:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()

    async def body() -> None:
        proxy = Proxy(config([backend], spec, ports, hold_down=0.0))
        async with running(proxy):
            url = f"http://{proxy.address[0]}:{proxy.address[1]}/peer"
            results = await asyncio.gather(*(asyncio.to_thread(get, url) for _ in range(20)))
            for status, text in results:
                ip, peer_port = text.split()
                assert status == 200 and in_pool(ip, network) and ports[0] <= int(peer_port) <= ports[1]
            await until(lambda: len(proxy.pool) == 0, "every lease back")
            assert proxy.counters.relayed == 20

    with http_backend() as backend:
        run(body)


def test_least_connections_sends_new_clients_to_the_idle_backend() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=16)
    busy, idle = PeerEchoBackend(), PeerEchoBackend()
    busy.hold.clear()

    async def body() -> None:
        for backend in (busy, idle):
            await backend.start()
        proxy = Proxy(config([busy.address, idle.address], spec, ports, balance="least-connections"))
        async with running(proxy):
            held = asyncio.ensure_future(request(proxy.address))  # both idle: the first backend, which holds it
            await until(lambda: len(busy.peers) == 1, "the first connection on the busy backend")
            for _ in range(5):
                assert (await request(proxy.address)).startswith(spec.first_ip.encode())
            assert len(busy.peers) == 1 and len(idle.peers) == 5
            busy.hold.set()
            await held
        for backend in (busy, idle):
            await backend.stop()

    run(body)


def test_the_kernel_source_binds_pool_ips_and_leaves_the_pool_untouched() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=3, ports=2)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, source="kernel"))
        async with running(proxy):
            answers = [(await request(proxy.address)).decode().split() for _ in range(6)]
            ips = [ip for ip, _ in answers]
            assert ips == [str(network.network_address + 1 + i % 3) for i in range(6)]  # the pool's IPs in turn
            assert proxy.counters.relayed == 6 and proxy.counters.allocations == 0
            assert proxy.pool.stats().subpools == 0 and len(proxy.pool) == 0  # no lease was taken
        await backend.stop()

    run(body)
