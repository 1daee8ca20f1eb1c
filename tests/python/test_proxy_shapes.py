"""``natpool proxy`` on pools of several ranges, with exclusions, and on IPv6 loopback, end to end.

Each connection through the proxy is answered with the peer address the backend saw, its NAT address; with the
default hold-down of 60 s no address is used twice in a test, so N connections show the pool's first N
addresses, and the one after the last address is refused (the pool exhausted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import signal
import subprocess

from natpool.apps.options import PoolAddresses, endpoint_text, parse_exclusion, parse_pool, parse_pool_range
from natpool.apps.proxy import Proxy
from netkit import (
    HANG_GUARD,
    LogReader,
    PeerEchoBackend,
    config,
    http_backend,
    http_get,
    needs_ipv6,
    peer_of,
    proxy_process,
    random_network,
    random_ports,
    request,
    run,
    running,
    until,
)


def served_then_refused(address: tuple[str, int], count: int) -> list[tuple[str, int]]:
    """The NAT addresses of ``count`` connections one after the other; the next one must be refused."""
    peers = [peer_of(http_get(address)) for _ in range(count)]
    assert http_get(address) == b""  # every address used (and held down): the pool is exhausted
    return peers


def stopped_clean(process: subprocess.Popen[str], log: LogReader) -> str:
    """SIGTERM: the proxy drains and exits 0 with no live lease; its log."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=HANG_GUARD) == 0
    text = log.text()
    assert re.search(r"stopped: .*pool: 0 live leases", text), text
    return text


def test_two_pool_ranges_minus_exclusions_and_no_connection_uses_an_excluded_address() -> None:
    one, two = random_network().network_address + 1, random_network().network_address + 7
    low, high = random_ports(4)
    pools = ["--pool", f"{one}-{one + 1}", "--pool", f"{two}", "--ports", f"{low}-{high}"]
    exclude = ["--exclude", f"{one + 1}", "--exclude", f"{two}:{low}-{low + 1}"]
    left = [(str(one), port) for port in range(low, high + 1)] + [(str(two), low + 2), (str(two), high)]
    expected = sorted(left, key=lambda a: (ipaddress.ip_address(a[0]), a[1]))  # the ranges in address order
    with http_backend() as backend:
        args = ["--listen", "127.0.0.1:0", "--backend", endpoint_text(backend), *pools, *exclude]
        with proxy_process(*args, "--initial-blocks", "1") as (process, log, address):
            assert served_then_refused(address, 6) == expected  # first fit: the ranges in order, ip-major
            text = stopped_clean(process, log)
    assert f"pool {one}-{one + 1}, {two} minus {one + 1}, {two}:{low}-{low + 1} ports" in text


@needs_ipv6
def test_the_proxy_over_an_ipv6_loopback_pool() -> None:
    low, high = random_ports(4)
    with http_backend("::1") as backend:
        args = ["--listen", "[::1]:0", "--backend", endpoint_text(backend), "--pool", "::1"]
        args += ["--ports", f"{low}-{high}", "--exclude", f"[::1]:{low + 1}", "--initial-blocks", "1"]
        with proxy_process(*args) as (process, log, address):
            assert address[0] == "::1"
            assert served_then_refused(address, 3) == [("::1", low), ("::1", low + 2), ("::1", low + 3)]
            text = stopped_clean(process, log)
    assert f"listening on [::1]:{address[1]}, 1 backend(s), pool ::1 minus [::1]:{low + 1} ports" in text
    assert re.search(r"pool exhausted: 0 live leases of capacity 3 \(3 held down\)", text), text


@needs_ipv6
def test_an_ipv6_lease_is_found_by_lookup_and_its_record_written_with_brackets() -> None:
    low, high = random_ports(8)
    backend = PeerEchoBackend(host="::1")

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], parse_pool("::1"), (low, high), listen=("::1", 0)))
        async with running(proxy, backend):
            backend.hold.clear()  # the connection stays open while the backend holds it
            answer = asyncio.ensure_future(request(proxy.address))
            await until(lambda: bool(backend.peers), "the backend to see the connection")
            ip, port = backend.peers[0]
            assert ipaddress.ip_address(ip) == ipaddress.IPv6Address("::1") and low <= port <= high
            record = proxy.lookup("::1", port)
            assert record is not None and record.to_json()["nat"] == f"[::1]:{port}"
            assert record.to_json()["client"].startswith("[::1]:")
            backend.hold.set()
            assert await answer == f"{ip} {port}\n".encode()

    run(body)


def test_the_kernel_source_takes_the_ips_of_every_range_in_turn_but_the_excluded_ones() -> None:
    one, two = random_network().network_address, random_network().network_address
    ranges = (parse_pool_range(f"{one + 1}-{one + 3}"), parse_pool_range(f"{two + 9}"))
    addresses = PoolAddresses(ranges, (parse_exclusion(f"{one + 2}"),))
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], addresses, random_ports(2), source="kernel"))
        async with running(proxy, backend):
            ips = [(await request(proxy.address)).decode().split()[0] for _ in range(6)]
        usable = sorted([one + 1, one + 3, two + 9])
        assert ips == [str(usable[i % 3]) for i in range(6)]  # in address order, the excluded IP left out

    run(body)
