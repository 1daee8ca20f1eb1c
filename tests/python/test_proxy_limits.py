"""The proxy's limits: --max-connections (and RLIMIT_NOFILE behind it), --idle-timeout, rate-limited logs."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import socket
import subprocess
import sys

import pytest
from natpool.apps.proxy import Proxy
from natpool.apps.proxy.events import EventLog
from natpool.apps.proxy.limits import RESERVED_DESCRIPTORS, connection_limit
from netkit import (
    HANG_GUARD,
    LogReader,
    PeerEchoBackend,
    answer_or_close,
    config,
    http_backend,
    leases_accounted,
    pool_range,
    random_network,
    request,
    run,
    running,
    until,
)


def test_at_max_connections_the_proxy_stops_accepting_and_resumes_below_it() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    backend.hold.clear()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, max_connections=2))
        async with running(proxy, backend):
            clients = [asyncio.ensure_future(request(proxy.address)) for _ in range(2)]
            await until(lambda: len(backend.peers) == 2, "two relayed connections")
            third = asyncio.ensure_future(request(proxy.address))  # waits in the listen backlog
            assert not proxy.accepting and proxy.counters.accepted == 2
            backend.hold.set()
            answers = await asyncio.gather(*clients, third)
            assert all(answer.startswith(spec.first_ip.encode()) for answer in answers)
            assert proxy.counters.accepted == 3 and len(backend.peers) == 3
            await until(lambda: proxy.accepting, "accepting to resume")

    run(body)


def test_an_idle_client_is_closed_after_the_idle_timeout_and_its_lease_comes_back() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    backend.hold.clear()  # answers nothing either: no byte moves either way

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, idle_timeout=0.5, hold_down=0.0))
        async with running(proxy, backend):
            reader, writer = await asyncio.open_connection(*proxy.address)  # opens and stays silent
            try:
                assert await asyncio.wait_for(reader.read(), HANG_GUARD) == b""  # closed by the proxy
            finally:
                writer.close()
            await until(lambda: not proxy.active, "the connection to end")
            assert proxy.counters.idle_timeouts == 1 and len(backend.peers) == 1
            assert len(proxy.pool) == 0 and leases_accounted(proxy)

    run(body)


def test_a_backend_that_accepts_and_never_answers_is_closed_after_the_idle_timeout() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)

    async def body() -> None:
        with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody reads or answers
            proxy = Proxy(config([silent.getsockname()[:2]], spec, ports, idle_timeout=0.5, hold_down=600.0))
            async with running(proxy):
                assert await answer_or_close(proxy.address, b"GET / HTTP/1.0\r\n\r\n") == b""
                await until(lambda: not proxy.active, "the connection to end")
                assert proxy.counters.idle_timeouts == 1 and proxy.counters.relayed == 1
                assert proxy.pool.stats().held == 1 and len(proxy.pool) == 0  # the proxy closed first: held down
                assert leases_accounted(proxy)
            assert len(proxy.pool) == 0

    run(body)


def test_max_connections_above_what_rlimit_nofile_allows_says_by_how_much() -> None:
    with pytest.raises(ValueError, match=r"--max-connections: 100 is 16 more than RLIMIT_NOFILE 200 allows \(84"):
        connection_limit(100, descriptors=200)
    assert connection_limit(None, descriptors=200) == connection_limit(84, descriptors=200) == 84
    with pytest.raises(ValueError, match="leaves no descriptor"):
        connection_limit(None, descriptors=RESERVED_DESCRIPTORS + 1)


def test_a_flood_of_events_costs_a_line_a_second_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("natpool.test.events")

    async def body() -> float:
        events = EventLog(logger)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(10_000):
            events.warning("flood", "event %d", i)
            if i % 1000 == 0:
                await asyncio.sleep(0)
        elapsed = loop.time() - start
        events.flush()
        return elapsed

    elapsed = asyncio.run(body())
    lines = [r.getMessage() for r in caplog.records if r.name == "natpool.test.events"]
    assert lines[0] == "event 0" and lines[-1].startswith("event 9999 (")
    reported = sum(int(m[1]) if (m := re.search(r"\((\d+) of these in the last", line)) else 1 for line in lines)
    assert reported == 10_000 and len(lines) <= elapsed + 2


def test_a_proxy_at_a_low_rlimit_flooded_past_it_leaks_nothing_and_serves_afterwards() -> None:
    """RLIMIT_NOFILE 64 in the proxy's process: (64 - 32) / 2 = 16 connections at once; 48 clients come."""
    spec, ports = pool_range(random_network(), ips=1, ports=64)
    limit = 64
    start = f"import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({limit}, {limit}))"
    start += "; from natpool.apps.cli import main; sys.exit(main(sys.argv[1:]))"
    with http_backend() as backend:
        args = ["proxy", "--listen", "127.0.0.1:0", "--backend", "{}:{}".format(*backend)]
        args += ["--pool", f"{spec.first_ip}-{spec.last_ip}", "--ports", f"{ports[0]}-{ports[1]}"]
        process = subprocess.Popen([sys.executable, "-c", start, *args], stderr=subprocess.PIPE, text=True)
        log = LogReader(process)
        clients: list[socket.socket] = []
        try:
            match = log.until(r"listening on 127\.0\.0\.1:(\d+).* at most (\d+) connections")
            address = ("127.0.0.1", int(match[1]))
            assert int(match[2]) == (limit - RESERVED_DESCRIPTORS) // 2 == 16
            for _ in range(48):  # idle clients: the first 16 are relayed, the rest wait in the backlog; each, closed
                # first by its client, has its lease held down (60 s): 48 of the pool's 64 addresses
                clients.append(socket.create_connection(address, timeout=HANG_GUARD))
            log.until(r"16 connections open \(--max-connections\): accepting paused")
            for client in clients:
                client.close()
            with socket.create_connection(address, timeout=HANG_GUARD) as client:  # a normal request
                client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                with client.makefile("rb") as stream:
                    answer = stream.read()
            ip, port = answer.rsplit(b"\r\n", 1)[1].decode().split()
            assert ip == spec.first_ip and ports[0] <= int(port) <= ports[1], answer
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=HANG_GUARD) == 0
        finally:
            for client in clients:
                client.close()
            if process.poll() is None:
                process.kill()
                process.wait()
    text = log.text()
    stopped = re.search(
        r"INFO stopped: (\d+) accepted, .* (\d+) out of descriptors, (\d+) errors; .*pool: (\d+) live", text
    )
    assert stopped is not None and stopped.groups() == ("49", "0", "0", "0"), text  # every client, no leak
    assert "Traceback" not in text and "EMFILE" not in text
    assert len(text.splitlines()) <= 20, text  # start, a few rate-limited lines, the stop
