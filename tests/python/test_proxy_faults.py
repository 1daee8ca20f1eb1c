"""Fault injection: every step of a connection fails in turn, and every lease is freed or deliberately held.

Each test makes one step fail (the upstream ``socket()``, ``bind``, ``connect``, reads and writes on either side,
a cancellation at each ``await``, shutdown mid-connect) and checks the outcome: the client's connection is
closed, the failure is counted, and the pool holds exactly the leases it should (``live == leased``, none owned
by a finished connection, none left after shutdown) and holds down exactly the addresses it should.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import socket
from collections.abc import Callable, Iterator

import pytest
from natpool.apps.proxy import Proxy, source
from netkit import (
    CancelAt,
    FaultySocket,
    PeerEchoBackend,
    answer_or_close,
    config,
    faulty_listener,
    leases_accounted,
    open_descriptors,
    os_error,
    pool_range,
    random_network,
    run,
    running,
    until,
)

Faults = dict[str, list[OSError]]


def fail_upstream(monkeypatch: pytest.MonkeyPatch, faults: Faults) -> None:
    """The proxy's upstream sockets fail as ``faults`` say (``socket``: the creation itself), sharing them."""
    make = source.new_socket

    def new_socket(family: socket.AddressFamily = socket.AF_INET) -> socket.socket:
        errors = faults.get("socket")
        if errors:
            raise errors.pop(0)
        return FaultySocket.wrapping(make(family), faults)

    monkeypatch.setattr(source, "new_socket", new_socket)


E = os_error
# id: (faults of the upstream, faults of the client, the backend answers, the counter that counts it, addresses
# held after the connection: 0 when freed at once (no connection made), 1 for the hold-down (the upstream
# connected, whoever ended it), 2 for two quarantined addresses)
CASES: dict[str, tuple[Faults, Faults, bool, str, int]] = {
    "socket EMFILE": ({"socket": [E(errno.EMFILE)]}, {}, True, "resource_failures", 0),
    "socket ENFILE": ({"socket": [E(errno.ENFILE)]}, {}, True, "resource_failures", 0),
    "socket ENOBUFS": ({"socket": [E(errno.ENOBUFS)]}, {}, True, "resource_failures", 0),
    "bind EACCES": ({"bind": [E(errno.EACCES)]}, {}, True, "errors", 0),
    "bind EADDRINUSE twice": ({"bind": [E(errno.EADDRINUSE)] * 2}, {}, True, "bind_failures", 2),
    "connect ECONNREFUSED": ({"connect": [E(errno.ECONNREFUSED)]}, {}, True, "backend_failures", 0),
    "connect ENETUNREACH": ({"connect": [E(errno.ENETUNREACH)]}, {}, True, "backend_failures", 0),
    "upstream read ECONNRESET": ({"recv": [E(errno.ECONNRESET)]}, {}, True, "relayed", 1),
    "upstream write EPIPE": ({"send": [E(errno.EPIPE)]}, {}, False, "relayed", 1),
    "client read ECONNRESET": ({}, {"recv": [E(errno.ECONNRESET)]}, False, "relayed", 1),
    "client write EPIPE": ({}, {"send": [E(errno.EPIPE)]}, True, "relayed", 1),
}


@pytest.mark.parametrize(("upstream", "client", "answers", "counter", "held"), CASES.values(), ids=CASES.keys())
def test_a_step_that_fails_closes_the_client_and_frees_or_holds_the_lease(
    upstream: Faults,
    client: Faults,
    answers: bool,
    counter: str,
    held: int,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    if not answers:
        backend.hold.clear()  # never answers: nothing races the fault to end the connection
    fail_upstream(monkeypatch, upstream)

    async def body() -> None:
        await backend.start()
        options = {"hold_down": 600.0, "quarantine": 600.0, "bind_attempts": 2, "down_time": 0.0}
        proxy = Proxy(config([backend.address], spec, ports, **options))
        async with running(proxy, backend, listener=faulty_listener(**client)):
            assert await answer_or_close(proxy.address) == b""  # the client's connection is closed
            await until(lambda: not proxy.active, "the connection to end")
            assert getattr(proxy.counters, counter) == 1
            assert leases_accounted(proxy) and proxy.counters.leased == 0
            assert proxy.pool.stats().held == held and len(proxy.pool) == 0
            assert not any(faults for faults in upstream.values())  # every fault was met
        assert len(proxy.pool) == 0
        assert not [r for r in caplog.records if r.exc_info and counter != "errors"]  # no traceback

    run(body)


def test_an_unusable_address_is_quarantined_and_the_next_one_serves_the_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    fail_upstream(monkeypatch, {"connect": [E(errno.EADDRNOTAVAIL)]})  # the 4-tuple is taken: EADDRNOTAVAIL

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, quarantine=600.0, hold_down=0.0))
        async with running(proxy, backend):
            ip, port = (await answer_or_close(proxy.address)).decode().split()
            await until(lambda: not proxy.active, "the connection to end")
            assert (ip, int(port)) == (spec.first_ip, ports[0] + 1)  # the second address
            assert proxy.counters.bind_retries == 1 and proxy.pool.stats().held == 1  # the first, quarantined
            assert proxy.lookup(spec.first_ip, ports[0]) is None and len(proxy.pool) == 0
            assert leases_accounted(proxy)
        assert len(proxy.pool) == 0

    run(body)


def test_cancelling_a_connection_at_any_await_leaks_no_lease_and_no_descriptor() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=256)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports, hold_down=600.0))
        runs: list[CancelAt] = []
        connection = proxy._connection

        def cancelled_at(k: int) -> Callable[[socket.socket], CancelAt]:
            def wrap(client: socket.socket) -> CancelAt:
                runs.append(CancelAt(connection(client), k))
                return runs[-1]

            return wrap

        async with running(proxy, backend):
            baseline = open_descriptors()
            k = 0
            while k == 0 or k <= runs[0].suspensions:  # the awaits of a whole connection, each cancelled in turn
                proxy._connection = cancelled_at(k)  # type: ignore[method-assign]
                await answer_or_close(proxy.address)
                await until(lambda: not proxy.active, "the connection to end")
                assert leases_accounted(proxy) and proxy.counters.leased == 0, k
                k += 1
            assert runs[0].suspensions >= 5 and all(r.suspensions >= r.k for r in runs)  # each was cancelled
            assert proxy.pool.stats().held > 0 and len(proxy.pool) == 0  # the connected ones are held down
            await until(lambda: open_descriptors() == baseline, "every socket to be closed")
        assert len(proxy.pool) == 0

    run(body)


@contextlib.contextmanager
def unanswered_listener() -> Iterator[tuple[str, int]]:
    """A loopback listener whose accept queue is full: a connect to it stays unanswered (SYNs are dropped)."""
    with socket.create_server(("127.0.0.1", 0), backlog=0) as listener:
        address = listener.getsockname()[:2]
        with socket.create_connection(address):  # fills the queue of one
            yield address


def test_a_connect_that_times_out_frees_its_lease_and_marks_the_backend_down() -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)

    async def body() -> None:
        with unanswered_listener() as silent:
            proxy = Proxy(config([silent], spec, ports, connect_timeout=0.2, down_time=600.0))
            async with running(proxy):
                assert await answer_or_close(proxy.address) == b""
                await until(lambda: not proxy.active, "the connection to end")
                assert proxy.counters.backend_failures == 1 and proxy.backends.up() == []
                assert len(proxy.pool) == 0 and leases_accounted(proxy)

    run(body)


def test_shutdown_while_connecting_frees_the_leases(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "natpool.proxy")
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)

    async def body() -> None:
        with unanswered_listener() as silent:
            proxy = Proxy(config([silent], spec, ports, connect_timeout=600.0))
            await proxy.start()
            clients = [asyncio.ensure_future(answer_or_close(proxy.address)) for _ in range(3)]
            await until(lambda: proxy.counters.leased == 3, "three connects under way")
            await proxy.stop(drain_timeout=0.0)
            assert await asyncio.gather(*clients) == [b""] * 3
            assert len(proxy.pool) == 0 and proxy.counters.leased == 0

    run(body)
    final = [r for r in caplog.records if r.getMessage().startswith("stopped:")]
    assert len(final) == 1 and final[0].levelno == logging.INFO and "pool: 0 live leases" in final[0].getMessage()


def test_accept_out_of_descriptors_pauses_logs_once_and_then_serves(caplog: pytest.LogCaptureFixture) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    listener = faulty_listener()
    listener.faults = {"accept": [E(errno.EMFILE), E(errno.ENFILE), E(errno.EMFILE)]}

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports))
        async with running(proxy, backend, listener=listener):
            assert (await answer_or_close(proxy.address)).startswith(spec.first_ip.encode())
            assert listener.failed == ["accept"] * 3 and proxy.counters.accepted == 1

    run(body)
    accepts = [r for r in caplog.records if r.getMessage().startswith("accept:")]
    assert not any(r.exc_info for r in accepts)
    counted = {"EMFILE": 0, "ENFILE": 0}
    for r in accepts:
        kind = r.getMessage().split()[1]
        times = re.search(r"\((\d+) of these in the last", r.getMessage())
        counted[kind] += int(times[1]) if times else 1
    assert counted == {"EMFILE": 2, "ENFILE": 1}  # one line at most per kind and second, with the counts


def test_a_flood_of_upstream_socket_failures_costs_a_line_a_second(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()
    fail_upstream(monkeypatch, {"socket": [E(errno.EMFILE)] * 200})

    async def body() -> float:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports))
        loop = asyncio.get_running_loop()
        async with running(proxy, backend):
            start = loop.time()
            answers = await asyncio.gather(*(answer_or_close(proxy.address) for _ in range(200)))
            elapsed = loop.time() - start
            assert answers == [b""] * 200 and proxy.counters.resource_failures == 200
            assert len(proxy.pool) == 0
        return elapsed

    elapsed = asyncio.run(asyncio.wait_for(body(), 60))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("no upstream socket")]
    reported = sum(int(m[1]) if (m := re.search(r"\((\d+) of these", line)) else 1 for line in lines)
    assert reported == 200 and len(lines) <= elapsed + 2  # the first, one a second, the last when stopping


def test_a_lease_still_live_after_the_drain_is_logged_as_an_error(caplog: pytest.LogCaptureFixture) -> None:
    network = random_network()
    spec, ports = pool_range(network, ips=1, ports=8)
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        proxy = Proxy(config([backend.address], spec, ports))
        async with running(proxy, backend):
            assert await answer_or_close(proxy.address) != b""
            proxy.pool.allocate()  # a lease no connection owns: what a leak looks like

    run(body)
    final = [r for r in caplog.records if r.getMessage().startswith("stopped:")]
    assert len(final) == 1 and final[0].levelno == logging.ERROR
    assert "pool: 1 live leases LEAKED after a full drain" in final[0].getMessage()
