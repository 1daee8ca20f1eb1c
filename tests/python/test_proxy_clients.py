"""``natpool proxy``'s client policies on loopback: ``--max-per-client``, ``--client-block`` and ``--block-log``."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import pathlib
import re

from natpool.apps.proxy import Proxy
from natpool.apps.proxy.blocklog import BlockLog
from natpool.records import BlockEvent
from netkit import HANG_GUARD, PeerEchoBackend, config, pool_range, random_network, run, running, until

CLIENT_A = "127.0.0.2"
CLIENT_B = "127.0.0.3"


async def connect_from(client_ip: str, address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(*address, local_addr=(client_ip, 0)), HANG_GUARD)


async def finish(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Read until the other side closes (``b""`` after a reset), then close."""
    try:
        return await asyncio.wait_for(reader.read(-1), HANG_GUARD)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def test_max_per_client_refuses_a_clients_second_connection_while_another_client_is_served() -> None:
    spec, ports = pool_range(random_network(), ips=1, ports=16)
    backend = PeerEchoBackend()
    backend.hold.clear()  # every connection stays open until the end

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, max_per_client=1, hold_down=0.0))
        async with running(proxy, backend):
            first = await connect_from(CLIENT_A, proxy.address)
            await until(lambda: len(backend.peers) == 1, "client A's first connection at the backend")
            second = await connect_from(CLIENT_A, proxy.address)
            assert await finish(*second) == b""  # closed at once, not relayed
            await until(lambda: proxy.counters.quota_refused == 1, "the refusal counted")
            other = await connect_from(CLIENT_B, proxy.address)
            await until(lambda: len(backend.peers) == 2, "client B's connection at the backend")
            assert proxy.counters.quota_refused == 1 and proxy.counters.exhausted == 0
            assert len(proxy.pool) == 2
            backend.hold.set()
            answers = [await finish(*first), await finish(*other)]
            assert all(answer.count(b"\n") == 1 for answer in answers)
        assert len(proxy.pool) == 0

    run(body)


def test_an_address_held_down_counts_against_its_clients_quota_until_its_hold_ends() -> None:
    """``--max-per-client`` is the pool's ``client_quota``: live or held leases. A client whose one connection has
    ended is refused while that address is held down, and served once the hold has ended; another client is
    served meanwhile."""
    spec, ports = pool_range(random_network(), ips=1, ports=16)
    backend = PeerEchoBackend()
    hold_down = 0.5

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, max_per_client=1, hold_down=hold_down))
        async with running(proxy, backend):
            assert (await finish(*await connect_from(CLIENT_A, proxy.address))).count(b"\n") == 1
            await until(lambda: proxy.pool.stats().held == 1, "client A's address held down")
            freed = asyncio.get_running_loop().time()
            assert len(proxy.pool) == 0
            assert await finish(*await connect_from(CLIENT_A, proxy.address)) == b""  # held: A has its one lease
            await until(lambda: proxy.counters.quota_refused == 1, "the refusal counted")
            assert (await finish(*await connect_from(CLIENT_B, proxy.address))).count(b"\n") == 1
            await asyncio.sleep(freed + hold_down + 0.1 - asyncio.get_running_loop().time())
            assert (await finish(*await connect_from(CLIENT_A, proxy.address))).count(b"\n") == 1  # the hold ended
            assert proxy.counters.quota_refused == 1 and proxy.counters.exhausted == 0

    run(body)


LINE = re.compile(
    r"^\S+ (?P<kind>assigned|released) client=(?P<client>\S+) nat=(?P<ip>[\d.]+) ports=(?P<first>\d+)-(?P<last>\d+)$"
)


def test_block_log_lines_match_the_leases_the_backend_saw(tmp_path: pathlib.Path) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=2, ports=16)
    path = tmp_path / "blocks.log"
    backend = PeerEchoBackend()
    backend.hold.clear()
    seen: list[tuple[str, str, int]] = []  # (client, NAT ip, NAT port) of every connection at the backend

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, client_block=2, block_log=str(path), hold_down=0.0))
        backend.on_peer = lambda ip, port: seen.append((proxy.lookup(ip, port).client[0], ip, port))  # type: ignore[union-attr]
        async with running(proxy, backend):
            clients = [await connect_from(ip, proxy.address) for ip in (CLIENT_A, CLIENT_A, CLIENT_A, CLIENT_B)]
            await until(lambda: len(seen) == 4, "four connections at the backend")
            backend.hold.set()
            for reader, writer in clients:
                assert (await finish(reader, writer)).count(b"\n") == 1
        assert proxy.counters.block_events == 6

    run(body)
    matches = [LINE.match(line) for line in path.read_text().splitlines()]
    events = [m for m in matches if m is not None]
    assert len(events) == len(matches) == 6

    def blocks(kind: str) -> list[tuple[str, str, int, int]]:
        return [(m["client"], m["ip"], int(m["first"]), int(m["last"])) for m in events if m["kind"] == kind]

    assigned, released = blocks("assigned"), blocks("released")
    assert sorted(assigned) == sorted(released)
    assert sorted(client for client, *_ in assigned) == [CLIENT_A, CLIENT_A, CLIENT_B]
    for client, ip, port in seen:
        assert ipaddress.IPv4Address(ip) in network
        blocks = [(first, last) for c, i, first, last in assigned if c == client and i == ip]
        assert any(first <= port <= last for first, last in blocks), (client, ip, port, assigned)


def test_block_log_rotates_by_size_keeping_one_backup(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "blocks.log"
    log = BlockLog(str(path), max_bytes=200)
    event = BlockEvent(0.0, "assigned", "127.0.0.2", "127.0.100.1", 1024, "127.0.100.1", 1031)
    try:
        for _ in range(20):
            log.write([event])
    finally:
        log.close()
    backup = pathlib.Path(str(path) + ".1")
    assert backup.exists() and not pathlib.Path(str(path) + ".2").exists()
    for file in (path, backup):
        lines = file.read_text().splitlines()
        assert lines and all(LINE.match(line) for line in lines)
    assert len(path.read_text()) <= 200 + len(path.read_text().splitlines()[0]) + 1
