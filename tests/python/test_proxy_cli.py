"""``natpool proxy`` as a command: bad input, SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest
from natpool.apps import cli
from natpool.apps.proxy import command as proxy_command
from natpool.apps.proxy import limits
from netkit import HANG_GUARD, LogReader, http_backend, pool_range, random_network

GOOD = ["--listen", "127.0.0.1:0", "--backend", "127.0.0.1:8080", "--pool", "127.0.100.0/24"]


def with_option(option: str, value: str) -> list[str]:
    args = list(GOOD)
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    return args


BAD = [
    ("--pool", "10.0.0.1/33"),
    ("--pool", "nonsense"),
    ("--pool", "10.0.0.9-10.0.0.1"),
    ("--pool", "10.0.0.1-10.0.0.256"),
    ("--backend", "localhost:80"),
    ("--backend", "127.0.0.1"),
    ("--backend", "127.0.0.1:0"),
    ("--backend", "127.0.0.1:65536"),
    ("--ports", "9-2"),
    ("--ports", "0-100"),
    ("--ports", "1024"),
    ("--listen", "127.0.0.1:http"),
    ("--metrics", "nowhere"),
    ("--max-blocks", "10"),  # below the default --initial-blocks
    ("--subpool-blocks", "0"),
    ("--bind-attempts", "0"),
    ("--connect-timeout", "0"),
    ("--drain-timeout", "-1"),
    ("--idle-timeout", "0"),
    ("--idle-timeout", "-2"),
    ("--idle-timeout", "inf"),
    ("--max-connections", "0"),
    ("--max-connections", "-5"),
    ("--max-connections", "1e3"),
    ("--max-connections", "100_000_000"),  # more than RLIMIT_NOFILE allows
    ("--max-per-client", "0"),
    ("--max-per-client", "-1"),
    ("--max-per-client", "two"),
    ("--order", "mru"),
    ("--hold-down", "-1"),
    ("--hold-down", "nan"),
    ("--seed", "-1"),
    ("--client-block", "0"),
    ("--client-block", "-8"),
    ("--client-block", "100000"),  # more than the 64,512 ports of one IP
    ("--block-log-max-bytes", "0"),
    ("--exclude", "nonsense"),
    ("--exclude", "[10.0.0.1]:80"),  # brackets are for IPv6
    ("--exclude", "127.0.100.1:9-2"),
    ("--backend", "::1:8080"),  # an IPv6 host goes in brackets
    ("--listen", "[::1:0"),
    ("--model", "java"),
]


@pytest.mark.parametrize(("option", "value"), BAD, ids=[f"{o}={v}" for o, v in BAD])
def test_bad_input_is_one_line_naming_the_option_and_exit_2_before_listening(
    option: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args: object) -> int:
        raise AssertionError("the proxy started despite a bad option")

    monkeypatch.setattr(proxy_command, "serve", must_not_run)
    assert cli.main(["proxy", *with_option(option, value)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and f"argument {option}:" in err


def test_max_connections_beyond_rlimit_nofile_says_by_how_much(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_command, "serve", None)
    monkeypatch.setattr(limits, "descriptor_limit", lambda: 200)  # (200 - 32) / 2 = 84 connections
    assert cli.main(["proxy", *GOOD, "--max-connections", "100"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "natpool proxy: error: argument --max-connections: 100 is 16 more than RLIMIT_NOFILE 200 allows "
        "(84: 2 descriptors a connection, 32 kept aside)"
    ]


@pytest.mark.parametrize(
    "extra",
    [
        ["--backend", "127.0.0.1:8080"],  # the same backend twice
        ["--listen", "127.0.0.1:8080"],  # the proxy would forward to itself
        ["--initial-blocks", "2048", "--max-blocks", "1024"],
        ["--client-block", "8", "--store", "sqlite:////nonexistent/natpool.db"],  # not on a store yet
        ["--client-block", "8", "--workers", "2"],
        ["--block-log", "/nonexistent/blocks.log"],  # without --client-block
        ["--seed", "7"],  # without --order random
        ["--paired", "--source", "kernel"],
        ["--max-per-client", "2", "--source", "kernel"],
        ["--pool", "127.0.100.128/25"],  # overlaps the first --pool
        ["--pool", "::1"],  # IPv6 and IPv4 in one pool
        ["--exclude", "10.9.9.9"],  # outside every --pool range
        ["--exclude", "127.0.100.1:80"],  # a port outside --ports
        ["--exclude", "127.0.100.0/24"],  # leaves no address
        ["--backend", "[::1]:8080"],  # an IPv6 backend for an IPv4 pool
        ["--exclude", "127.0.100.5:2000", "--source", "kernel"],  # the kernel chooses the ports
    ],
)
def test_impossible_combinations_exit_2(
    extra: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxy_command, "serve", None)
    args = GOOD + extra if extra[0] != "--listen" else with_option("--listen", extra[1])
    assert cli.main(["proxy", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "error: argument --" in err


@pytest.fixture
def backend() -> Iterator[tuple[str, int]]:
    with http_backend() as address:
        yield address


def scrape(url: str) -> dict[str, float]:
    """The proxy's metrics, by name."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:
        text = response.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.extra("metrics")  # it watches the proxy through /metrics
def test_sigterm_drains_closes_the_rest_frees_every_lease_and_logs_the_pool(backend: tuple[str, int]) -> None:
    spec, ports = pool_range(random_network(), ips=1, ports=16)
    args = ["--backend", "{}:{}".format(*backend), "--pool", f"{spec.first_ip}-{spec.last_ip}"]
    args += ["--ports", f"{ports[0]}-{ports[1]}", "--initial-blocks", "4", "--drain-timeout", "0.5"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "natpool", "proxy", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", *args],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    log = LogReader(process)
    try:
        match = log.until(r"listening on 127\.0\.0\.1:(\d+)")
        address = ("127.0.0.1", int(match[1]))
        metrics = "http://127.0.0.1:{}/metrics".format(log.until(r"on http://127\.0\.0\.1:(\d+)/")[1])
        with socket.create_connection(address, timeout=HANG_GUARD) as client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            with client.makefile("rb") as stream:  # closed, so that no unclosed-socket warning comes later
                answer = stream.read()
            assert answer.endswith(f"{spec.first_ip}".encode() + b" " + str(ports[0]).encode())
        idle = socket.create_connection(address, timeout=HANG_GUARD)  # relayed, but sends no request
        try:
            deadline = time.monotonic() + HANG_GUARD
            while (numbers := scrape(metrics))["natpool_proxy_relayed_total"] < 2:  # the idle one is relayed
                assert time.monotonic() < deadline, numbers
                time.sleep(0.01)
            assert numbers["natpool_live_leases"] == 1 and numbers["natpool_allocations_total"] == 2
            assert numbers["natpool_held_leases"] == 1  # the first connection's address: --hold-down 60 by default
            assert numbers["natpool_proxy_active_connections"] == 1 and numbers["natpool_exhaustion_events_total"] == 0
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=HANG_GUARD) == 0
            assert idle.recv(1) == b""  # closed by the proxy after the drain
        finally:
            idle.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = log.text()
    assert "signal received" in text
    stopped = re.search(r"stopped: (\d+) accepted.*pool: (\d+) live leases, (\d+) held down", text)
    assert stopped is not None and stopped[1] == "2" and stopped[2] == "0", text
    assert stopped[3] == "2", text  # both connected: the idle one closed at the drain is held down too
