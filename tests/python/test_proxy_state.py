"""``natpool proxy --state FILE``: the pool's state across a restart (``natpool.apps.proxy.state``).

The proxy snapshots its pool to FILE on a timer and at its stop, and restores it at the start (with ``--store``,
rejoining its cluster). Each test runs on both pool implementations (``--model``).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from natpool.apps import cli
from natpool.apps.models import MODELS
from natpool.apps.options import OptionError, endpoint_text
from natpool.apps.proxy import Proxy
from natpool.apps.proxy import command as proxy_command
from natpool.apps.proxy.service import exit_status
from natpool.apps.proxy.state import check_same_pool, free_restored, restore_state, write_snapshot
from natpool.store import open_store
from netkit import (
    HANG_GUARD,
    PeerEchoBackend,
    config,
    http_backend,
    http_get,
    peer_of,
    pool_range,
    proxy_process,
    random_network,
    request,
    run,
    running,
    until,
)

MODEL_PARAMS = [pytest.param("reference"), pytest.param("rust")]


@pytest.fixture(params=MODEL_PARAMS)
def model(request: pytest.FixtureRequest) -> str:
    """The ``--model`` under test."""
    name: str = request.param
    return name


def snapshot_of(path: Path, model: str) -> Any:
    """The pool ``path`` holds, restored (to look at, not to serve with)."""
    return MODELS[model].restore(path.read_bytes())  # type: ignore[union-attr]


@pytest.mark.parametrize("on_store", [False, True], ids=["alone", "store"])
def test_the_proxy_restarted_with_state_holds_the_restored_leases_down_then_serves(
    tmp_path: Path, model: str, on_store: bool
) -> None:
    """One NAT address. Run 1 relays an idle connection and is killed after the timer wrote its lease to FILE.
    Run 2 restores FILE: the lease's connection is gone, so the address is held down for --hold-down, refused
    meanwhile, then served again; its stop writes the held address to FILE. On a store, run 2 starts once run
    1's heartbeat has lapsed (--claim-ttl), and claims its range back (held for run 1's member name)."""
    spec, ports = pool_range(random_network(), ips=1, ports=1)
    state, hold = tmp_path / "pool.state", 2.0
    common = ["--pool", spec.first_ip, "--ports", f"{ports[0]}-{ports[1]}", "--initial-blocks", "1"]
    common += ["--hold-down", str(hold), "--model", model, "--state", str(state), "--state-interval", "0.05"]
    url = f"sqlite:///{tmp_path / 'cluster.db'}"
    if on_store:
        common += ["--store", url, "--member", "m", "--claim-ttl", "1"]
    with http_backend() as first, http_backend() as second:  # run 2 another backend: run 1's 4-tuple may linger
        with proxy_process("--listen", "127.0.0.1:0", "--backend", endpoint_text(first), *common) as running1:
            process, log, address = running1
            idle = socket.create_connection(address, timeout=HANG_GUARD)  # relayed, no request: its lease is live
            try:
                deadline = time.monotonic() + HANG_GUARD
                while not (state.exists() and len(snapshot_of(state, model)) == 1):
                    assert time.monotonic() < deadline, log.text()
                    time.sleep(0.02)
                process.send_signal(signal.SIGKILL)  # no stop: FILE keeps the live lease
                assert process.wait(timeout=HANG_GUARD) == -signal.SIGKILL
            finally:
                idle.close()
        if on_store:
            store = open_store(url)
            until_no_member = time.monotonic() + HANG_GUARD
            while store.status("proxy").members:
                assert time.monotonic() < until_no_member, "run 1's heartbeat did not lapse"
                time.sleep(0.05)
            assert [claim.state for claim in store.claims("proxy")] == ["held"]  # run 1's, held for it
        started = time.monotonic()
        with proxy_process("--listen", "127.0.0.1:0", "--backend", endpoint_text(second), *common) as running2:
            process, log, address = running2
            assert http_get(address) == b""  # the only address is held down: exhausted
            while not (answer := http_get(address)):
                assert time.monotonic() - started < HANG_GUARD, log.text()
                time.sleep(0.05)
            assert time.monotonic() - started >= hold
            assert peer_of(answer) == (spec.first_ip, ports[0])
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=HANG_GUARD) == 0
            text = log.text()
    assert "0 addresses held down from before the restart, 1 leases whose connections did not survive it" in text
    assert re.search(r"pool state written to --state .*: 0 live leases, 1 held down", text), text
    restored = snapshot_of(state, model)
    assert len(restored) == 0 and restored.stats().held == 1  # held down across the next restart too
    if on_store:
        # run 2 claimed the range back (a fresh epoch) and kept it at its stop (an address held down in it);
        # unrenewed since, it lapses --claim-ttl later and is held for m
        (claim,) = store.claims("proxy")
        assert (claim.member, claim.count, claim.epoch) == ("m", 1, 2)
        store.close()


GOOD = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:8080", "--pool", "10.0.0.0/24", "--pool", "10.0.2.7"]
GOOD += ["--exclude", "10.0.0.9", "--ports", "2000-2999", "--hold-down", "5"]


def write_state(path: Path, model: str, args: list[str]) -> None:
    """The state file of a proxy with ``args`` that has served (a lease live, another held down)."""
    parsed = cli.parser().parse_args(["proxy", *args, "--model", model])
    pool = proxy_command.config_from_args(parsed).check()
    leases = [pool.allocate(), pool.allocate()]
    pool.free(leases[0].handle)
    write_snapshot(pool.snapshot(), str(path))  # type: ignore[union-attr]


def must_not_serve(*args: object, **kwargs: object) -> Any:
    raise AssertionError("the proxy started")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--ports", "2000-2998"),
        ("--pool", "10.0.0.0/23"),
        ("--exclude", "10.0.0.10"),  # as many addresses as before, other ones
        ("--hold-down", "6"),
        ("--pool-name", "other"),
        ("--order", "lifo"),
        ("--initial-blocks", "512"),
        ("--max-per-client", "3"),
    ],
)
def test_a_state_file_of_another_pool_is_refused_naming_the_option(
    option: str, value: str, model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    state = tmp_path / "pool.state"
    write_state(state, model, GOOD)
    before = state.read_bytes()
    monkeypatch.setattr(proxy_command, "serve", must_not_serve)
    args = list(GOOD)
    if option in args:
        args[args.index(option) + 1] = value  # the first one given
    else:
        args += [option, value]
    assert cli.main(["proxy", *args, "--model", model, "--state", str(state)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"argument {option}: the pool in --state" in err[0]
    assert state.read_bytes() == before


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty", "text"])
def test_a_state_file_that_is_no_snapshot_stops_the_start_with_exit_1(
    damage: str, model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    state = tmp_path / "pool.state"
    write_state(state, model, GOOD)
    data = state.read_bytes()
    state.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "flipped": data[:40] + bytes([data[40] ^ 1]) + data[41:],
            "empty": b"",
            "text": b"not a snapshot\n",
        }[damage]
    )
    monkeypatch.setattr(proxy_command, "serve", must_not_serve)
    assert cli.main(["proxy", *GOOD, "--model", model, "--state", str(state)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"natpool proxy: error: --state {state}: ")


def test_restoring_frees_every_live_lease_with_the_hold_down_across_ranges_and_exclusions(model: str) -> None:
    """The restored leases are found by walking the subpools' addresses: here a subpool spans two ranges and an
    exclusion, and an IPv6 pool's /64."""
    pool_class = MODELS[model]
    for shape in (
        {"ranges": ["10.0.0.1-10.0.0.2", "10.0.0.5"], "exclude": ["10.0.0.2:2"], "ports": (1, 3)},
        {"ranges": ["2001:db8::/64"], "exclude": ["[2001:db8::1]:1-2"], "ports": (1, 3)},
    ):
        pool = pool_class("restart", **shape, initial_blocks=6, max_blocks=8, hold_down=30.0)
        leases = [pool.allocate() for _ in range(6)]
        held = leases.pop(2)
        pool.free(held.handle)
        restored = pool_class.restore(pool.snapshot())  # type: ignore[union-attr]
        check_same_pool(restored, pool)
        assert free_restored(restored) == 5
        stats = restored.stats()
        assert (stats.live, stats.held) == (0, 6)
        assert all(restored.lookup(lease.ip, lease.port) is None for lease in leases)


def test_an_exclusion_of_other_addresses_is_another_pool(model: str) -> None:
    pool_class = MODELS[model]
    shape: dict[str, Any] = {"ranges": ["10.0.0.0/29"], "initial_blocks": 2, "max_blocks": 8, "ports": (1, 2)}
    one = pool_class("p", **shape, exclude=["10.0.0.5"])
    restored = pool_class.restore(one.snapshot())  # type: ignore[union-attr]
    check_same_pool(restored, one)
    with pytest.raises(OptionError) as raised:
        check_same_pool(restored, pool_class("p", **shape, exclude=["10.0.0.6"]))
    assert raised.value.option == "--exclude"


def test_no_state_file_yet_is_a_new_pool(tmp_path: Path, impl: Any) -> None:
    pool = impl("p", ranges=["10.0.0.1"], initial_blocks=1, max_blocks=2)
    assert restore_state(str(tmp_path / "absent.state"), pool) is pool


def test_a_write_is_atomic_the_old_file_stays_whole_when_a_step_fails(tmp_path: Path, monkeypatch: Any) -> None:
    state = tmp_path / "pool.state"
    write_snapshot(b"first", str(state))
    write_snapshot(b"second", str(state))
    assert state.read_bytes() == b"second"

    def failing_fsync(descriptor: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_snapshot(b"third", str(state))
    assert state.read_bytes() == b"second" and os.listdir(tmp_path) == ["pool.state"]  # no temporary left


def test_the_proxy_writes_its_state_on_the_timer_and_at_the_stop(tmp_path: Path, model: str) -> None:
    spec, ports = pool_range(random_network(), ips=1, ports=8)
    state = tmp_path / "pool.state"
    backend = PeerEchoBackend()

    async def body() -> None:
        await backend.start()
        options = {"state": str(state), "state_interval": 0.05, "model": model, "hold_down": 30.0}
        proxy = Proxy(config([backend.address], spec, ports, **options))
        async with running(proxy, backend):
            assert (await request(proxy.address)).startswith(spec.first_ip.encode())
            await until(lambda: proxy.counters.state_writes >= 2, "two writes of the timer")
            assert snapshot_of(state, model).stats().held == 1
        assert proxy.state_saved is True and proxy.counters.state_write_failures == 0
        assert len(snapshot_of(state, model)) == 0

    run(body)


def test_a_last_write_that_fails_makes_the_exit_status_1(tmp_path: Path, model: str) -> None:
    spec, ports = pool_range(random_network(), ips=1, ports=8)
    backend = PeerEchoBackend()
    missing = tmp_path / "gone" / "pool.state"  # its directory does not exist: every write fails

    async def body() -> Proxy:
        await backend.start()
        options = {"state": str(missing), "state_interval": 60.0, "model": model}
        proxy = Proxy(config([backend.address], spec, ports, **options))
        async with running(proxy, backend):
            await request(proxy.address)
        return proxy

    proxy = asyncio.run(body())
    assert proxy.state_saved is False and proxy.counters.state_write_failures == 1
    assert exit_status(proxy) == 1


@pytest.mark.parametrize(
    "extra",
    [
        ["--workers", "2"],
        ["--source", "kernel"],
        ["--state-interval", "0"],
    ],
)
def test_state_with_workers_or_the_kernels_addresses_is_refused(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.setattr(proxy_command, "serve", must_not_serve)
    args = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:8080", "--pool", "10.0.0.0/24", "--model", "reference"]
    assert cli.main(["proxy", *args, "--state", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and ("argument --state" in err[0] or "argument --state-interval" in err[0])
