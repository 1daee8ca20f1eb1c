"""``natpool proxy --store URL`` and ``--workers N`` as commands: processes on loopback, the store looked at after.

Each test runs ``python -m natpool proxy`` in processes of its own, with backends on ephemeral loopback ports and
a pool in a random 127.X.Y.0/24 (netkit). With ``SO_REUSEPORT`` the kernel spreads connections over the workers
by a hash of each connection's addresses: the tests send connections until each worker has had some, under the
hang guard, and never assert on a duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import natpool
import pytest
from natpool.apps import cli
from natpool.apps.proxy import command as proxy_command
from natpool.store import HELD, open_store
from netkit import (
    HANG_GUARD,
    LogReader,
    PeerEchoBackend,
    http_backend,
    pool_range,
    random_network,
    request,
    run,
    until,
)
from storekit import wait_until

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl


class ProxyProcess:
    """``natpool proxy`` in a process of its own, its stderr read by a thread."""

    def __init__(self, args: list[str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "natpool", "proxy", "--listen", "127.0.0.1:0", *args],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.log = LogReader(self.process)
        self.address: tuple[str, int] = ("127.0.0.1", 0)
        self.workers: dict[int, tuple[int, str]] = {}
        """Worker number: (pid, member)."""
        self.listening = ""
        """The supervisor's line saying that every worker listens."""
        self.metrics: dict[int, int] = {}
        """Worker number: the port of its metrics endpoint."""

    def started(self, workers: int) -> ProxyProcess:
        """Wait until every worker listens (their numbers, pids and members from the supervisor's log)."""
        match = self.log.until(rf"listening on 127\.0\.0\.1:(\d+) with {workers} workers")
        self.address = ("127.0.0.1", int(match[1]))
        self.listening = match.string
        for _ in range(workers):
            line = self.log.until(
                r"worker (\d+): pid (\d+), member ([^\s,]+)(?:, metrics on http://127\.0\.0\.1:(\d+)/)?"
            )
            self.workers[int(line[1])] = (int(line[2]), line[3])
            if line[4] is not None:
                self.metrics[int(line[1])] = int(line[4])
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
        """Send ``sig``; the exit status and the whole log."""
        self.process.send_signal(sig)
        status = self.process.wait(timeout=HANG_GUARD * 2)
        return status, self.log.text()

    def kill(self) -> None:
        """Kill it and its workers if they are still running (a failed test's clean-up)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid, _ in self.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def proxy(*args: str) -> Iterator[ProxyProcess]:
    running = ProxyProcess(list(args))
    try:
        yield running
    finally:
        running.kill()
        running.log.text()


def pool_args(ports: int = 64) -> list[str]:
    """``--pool`` (one address of a random loopback /24) and ``--ports`` (``ports`` of them)."""
    spec, window = pool_range(random_network(), ips=1, ports=ports)
    return ["--pool", spec.text, "--ports", f"{window[0]}-{window[1]}", "--initial-blocks", "4"]


def get(address: tuple[str, int]) -> tuple[str, int]:
    """One HTTP request through the proxy to :func:`netkit.http_backend`: the NAT address the backend saw."""
    with socket.create_connection(address, timeout=HANG_GUARD) as client:
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        with client.makefile("rb") as stream:
            answer = stream.read()
    ip, port = answer.rsplit(b"\r\n\r\n", 1)[1].decode().split()
    return ip, int(port)


def worker_lines(text: str) -> dict[str, tuple[str, int]]:
    """The supervisor's last line for each member: how it ended, and how many connections it accepted."""
    found = re.findall(r"worker \d+ \(pid \d+, member (\S+)\): (.+?)(?:; ([\d,]+) accepted|$)", text, re.M)
    return {member: (how, int(accepted.replace(",", "") or 0)) for member, how, accepted in found}


def sqlite_url(path: Path) -> str:
    return "sqlite://" + urllib.parse.quote(str(path))


@pytest.fixture
def backend() -> Iterator[tuple[str, int]]:
    with http_backend() as address:
        yield address


def saw(backend: PeerEchoBackend, count: int) -> Callable[[], bool]:
    """Whether ``backend`` saw ``count`` connections."""
    return lambda: len(backend.peers) == count


def test_two_workers_hold_distinct_addresses_at_once_and_sigterm_leaves_only_held_ranges(tmp_path: Path) -> None:
    """Connections held open through both workers at once have distinct NAT addresses, each of the range its
    worker claimed; SIGTERM drains both, and the store is left with no member and no claimed range (with no
    hold-down: a range with an address held down stays claimed at the stop, until its claim lapses)."""
    url = sqlite_url(tmp_path / "store.db")
    echo = PeerEchoBackend()
    echo.hold.clear()  # the backend keeps every connection open: their leases are all live at once

    async def body() -> None:
        await echo.start()
        args = ["--workers", "2", "--store", url, "--member", "edge", "--backend", "{}:{}".format(*echo.address)]
        args += ["--hold-down", "0"]
        with proxy(*args, *pool_args(ports=256), "--subpool-blocks", "4", "--drain-timeout", "5") as group:
            await asyncio.to_thread(group.started, 2)
            assert {member for _, member in group.workers.values()} == {"edge-1", "edge-2"}
            store = open_store(url)
            owners: dict[tuple[str, int], str | None] = {}
            clients: list[asyncio.Task[bytes]] = []
            try:
                while set(owners.values()) != {"edge-1", "edge-2"}:  # the kernel spreads them by a hash
                    assert len(clients) < 160, f"all {len(clients)} connections went to one worker: {owners}"
                    batch = [asyncio.ensure_future(request(group.address)) for _ in range(16)]
                    clients += batch
                    await until(saw(echo, len(clients)), "the backend to see every connection")
                    owners = {peer: store.owner("proxy", *peer) for peer in echo.peers}
                assert len(owners) == len(echo.peers)  # distinct: no address is held twice at once
                assert None not in owners.values()  # each in a range its worker claimed
            finally:
                echo.hold.set()
                answers = await asyncio.gather(*clients)
            assert sorted(tuple(a.decode().split()) for a in answers) == sorted((i, str(p)) for i, p in echo.peers)
            status, text = await asyncio.to_thread(group.stop)
        assert status == 0, text
        lines = worker_lines(text)
        assert {m: how for m, (how, _) in lines.items()} == {"edge-1": "exit status 0", "edge-2": "exit status 0"}
        assert sum(accepted for _, accepted in lines.values()) == len(clients)
        assert "stopped: 0 of 2 worker(s) failed" in text
        claims = store.claims("proxy")
        assert claims and {claim.state for claim in claims} == {HELD}  # every range returned
        assert store.status("proxy").members == []
        store.close()
        await echo.stop()

    run(body)


def test_without_store_the_workers_share_a_temporary_sqlite_store_that_is_removed(
    backend: tuple[str, int],
) -> None:
    """64 connections, one after the other (each from a new client port, so the kernel's hash spreads them): both
    workers serve some; the private store's directory is removed at the end (no hold-down: every range is
    returned)."""
    args = ["--workers", "2", "--hold-down", "0", "--backend", "{}:{}".format(*backend)]
    with proxy(*args, *pool_args()) as group:
        found = re.search(r"cluster store sqlite://(\S+) \(temporary\)", group.started(2).listening)
        assert found is not None, group.listening
        path = Path(urllib.parse.unquote(found[1]))
        assert path.exists()
        answers = [get(group.address) for _ in range(64)]
        status, text = group.stop()
    assert status == 0, text
    assert all(ip == answers[0][0] for ip, _ in answers)
    accepted = {member: n for member, (_, n) in worker_lines(text).items()}
    assert len(accepted) == 2 and all(n > 0 for n in accepted.values()) and sum(accepted.values()) == 64, text
    assert re.search(r"cluster store sqlite://\S+: pool proxy: 0 member\(s\), 0 addresses claimed", text), text
    assert not path.parent.exists()  # the private directory is gone
    assert "Warning" not in text and "Traceback" not in text and " ERROR " not in text, text


def test_a_worker_that_dies_is_logged_the_other_serves_on_and_the_exit_status_says_so(
    backend: tuple[str, int],
) -> None:
    with proxy("--workers", "2", "--member", "edge", "--backend", "{}:{}".format(*backend), *pool_args()) as group:
        group.started(2)
        pid, _ = group.workers[1]
        os.kill(pid, signal.SIGKILL)
        group.log.until(
            rf"worker 1 \(pid {pid}, member edge-1\): killed by SIGKILL \(not asked to stop\); not restarted: "
            r"1 worker\(s\) left serving"
        )
        answers = {get(group.address) for _ in range(16)}  # every one through worker 2: worker 1's socket is gone
        status, text = group.stop()
    assert status == 1, text
    assert len(answers) >= 1
    lines = worker_lines(text)
    assert lines["edge-1"][0] == "killed by SIGKILL (not asked to stop)"
    assert lines["edge-2"] == ("exit status 0", 16)
    assert "stopped: 1 of 2 worker(s) failed" in text


def test_the_workers_stop_when_their_supervisor_is_killed(backend: tuple[str, int]) -> None:
    with proxy("--workers", "2", "--backend", "{}:{}".format(*backend), *pool_args()) as group:
        group.started(2)
        found = re.search(r"cluster store sqlite://(\S+) \(temporary\)", group.listening)
        assert found is not None
        try:
            group.process.kill()  # no signal to forward: the end of each worker's stdin tells it
            group.process.wait()
            text = group.log.text()
            pids = [pid for pid, _ in group.workers.values()]
            wait_until(lambda: not any(alive(pid) for pid in pids), "the workers to stop", guard=HANG_GUARD)
        finally:
            shutil.rmtree(Path(urllib.parse.unquote(found[1])).parent)  # the supervisor had no chance to
    assert text.count("the supervisor is gone: stopping") == 2, text


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(ChildProcessError):  # reaped by init, or a zombie of nobody's: gone either way
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_a_worker_that_cannot_start_stops_the_others_and_exit_1(tmp_path: Path, backend: tuple[str, int]) -> None:
    """Worker 1's member name is live in the store already: it cannot join, and the supervisor gives up."""
    url = sqlite_url(tmp_path / "store.db")
    args = pool_args()
    pool, ports = args[1], args[3]
    first, last = pool.split("-")
    low, high = (int(p) for p in ports.split("-"))
    with natpool.Pool("proxy", first, last, 0, 4, 65536, ports=(low, high), store=url, member="edge-1"):
        with proxy(
            "--workers", "2", "--store", url, "--member", "edge", "--backend", "{}:{}".format(*backend), *args
        ) as group:
            status = group.process.wait(timeout=HANG_GUARD * 2)
            text = group.log.text()
    assert status == 1, text
    assert "'edge-1' is a live member of pool 'proxy'" in text
    assert re.search(r"worker 1 failed to start \(exit status 1\); the others were stopped", text), text
    assert "with 2 workers" not in text


BAD = [
    ["--workers", "0"],
    ["--workers", "-2"],
    ["--workers", "two"],
    ["--store", "nonsense"],
    ["--store", "sqlite://host/x.db"],
    ["--store", "sqlite:///"],
    ["--store", "mysql://db/natpool"],
    ["--workers", "2", "--store", "nonsense"],
    ["--member", "edge"],
    ["--claim-ttl", "10"],
    ["--reclaim-delay", "10"],
    ["--store", "sqlite:///tmp/natpool-never.db", "--claim-ttl", "0"],
    ["--store", "sqlite:///tmp/natpool-never.db", "--member", ""],
    ["--pool-name", ""],
]


@pytest.mark.parametrize("args", BAD, ids=[" ".join(a) for a in BAD])
def test_bad_cluster_options_are_one_line_naming_the_option_and_exit_2(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*_: object) -> Any:
        raise AssertionError("the proxy started despite a bad option")

    monkeypatch.setattr(proxy_command, "serve", must_not_run)
    monkeypatch.setattr(proxy_command, "supervise", must_not_run)
    good = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:8080", "--pool", "127.0.100.0/24"]
    assert cli.main(["proxy", *good, *args]) == 2
    err = capsys.readouterr().err
    option = next(a for a in reversed(args) if a.startswith("--"))
    assert len(err.splitlines()) == 1 and f"argument {option}:" in err, err
    assert not Path("/tmp/natpool-never.db").exists()


@pytest.mark.extra("metrics")
def test_several_workers_take_a_metrics_port_each(capsys: pytest.CaptureFixture[str]) -> None:
    good = ["proxy", "--listen", "127.0.0.1:9000", "--backend", "127.0.0.1:8080", "--pool", "127.0.100.0/24"]
    assert cli.main([*good, "--workers", "3", "--metrics", "127.0.0.1:65534"]) == 2
    assert "argument --metrics: worker 3 would serve on port 65536" in capsys.readouterr().err
    assert cli.main([*good, "--workers", "3", "--metrics", "127.0.0.1:8998"]) == 2
    assert "argument --metrics: a worker would serve on --listen's port 9000" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one process", "workers"])
def test_a_store_that_cannot_be_reached_at_the_start_is_one_line_and_exit_1(
    workers: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = sqlite_url(tmp_path / "missing" / "store.db")
    args = ["proxy", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:8080", "--pool", "127.0.100.0/24"]
    assert cli.main([*args, "--store", url, *workers]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [f"natpool proxy: error: store {url} cannot be opened: unable to open database file"]
    assert not (tmp_path / "missing").exists()


def test_one_proxy_on_a_store_is_a_member_while_it_runs_and_leaves_after_its_drain(
    url: str, backend: tuple[str, int]
) -> None:
    args = ["--store", url, "--member", "solo", "--backend", "{}:{}".format(*backend), *pool_args()]
    args += ["--hold-down", "0"]  # an address held down would keep its range claimed past the stop
    with proxy(*args, "--claim-ttl", "20", "--reclaim-delay", "60") as single:
        listening = single.log.until(r"listening on 127\.0\.0\.1:(\d+), .*member solo of the cluster in")
        nat = get(("127.0.0.1", int(listening[1])))
        store = open_store(url)
        try:
            assert store.owner("proxy", *nat) == "solo"
            assert [m.member for m in store.status("proxy").members] == ["solo"]
            status, text = single.stop()
            assert status == 0, text
            assert "left the cluster store as member solo" in text
            claims = store.claims("proxy")
            assert claims and all(claim.state == HELD for claim in claims)
            assert store.status("proxy").members == []
        finally:
            store.close()


@pytest.mark.extra("metrics")
def test_each_worker_serves_its_own_metrics_endpoint(backend: tuple[str, int]) -> None:
    from test_proxy_cli import scrape

    args = ["--workers", "2", "--metrics", "127.0.0.1:0", "--backend", "{}:{}".format(*backend), *pool_args()]
    with proxy(*args) as group:
        group.started(2)
        ports = list(group.metrics.values())
        assert len(set(ports)) == 2
        for _ in range(32):
            get(group.address)
        accepted = [scrape(f"http://127.0.0.1:{port}/metrics")["natpool_proxy_accepted_total"] for port in ports]
        assert sum(accepted) == 32
        status, text = group.stop()
    assert status == 0, text
