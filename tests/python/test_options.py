"""The shared option parsers of ``natpool simulate``, ``proxy`` and ``demo``, and the values the commands keep.

The command-line tests check the exit status and the message of each command; these check the parsers alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
from natpool.apps.cli import parser
from natpool.apps.options import (
    OptionError,
    PoolAddresses,
    count_at_least,
    parse_endpoint,
    parse_fraction,
    parse_ip,
    parse_listen_endpoint,
    parse_netmask,
    parse_non_negative,
    parse_number,
    parse_pool,
    parse_ports,
    parse_positive,
)
from natpool.apps.proxy import ProxyConfig


def test_a_cidr_block_is_its_whole_subnet() -> None:
    assert parse_pool("127.0.100.0/24") == PoolAddresses("127.0.100.0", "127.0.100.255", 24)
    assert parse_pool("10.1.2.3/32") == PoolAddresses("10.1.2.3", "10.1.2.3", 32)


def test_a_range_keeps_every_address_in_it() -> None:
    assert parse_pool("10.0.0.10-10.0.0.20") == PoolAddresses("10.0.0.10", "10.0.0.20", 0)
    assert parse_pool("10.0.0.7-10.0.0.7") == PoolAddresses("10.0.0.7", "10.0.0.7", 0)
    for text, count in [("10.0.0.1-10.0.0.3", 3), ("10.0.0.255-10.0.1.0", 2), ("10.0.0.0-10.0.0.255", 256)]:
        spec = parse_pool(text)
        pool = ProxyConfig(listen=("127.0.0.1", 0), backends=(("127.0.0.1", 1),), pool=spec, ports=(1, 1)).check()
        assert pool.address_count == count  # no address of the range is left out


def test_a_cidr_block_leaves_out_its_network_and_broadcast_addresses() -> None:
    spec = parse_pool("10.0.0.0/24")
    pool = ProxyConfig(listen=("127.0.0.1", 0), backends=(("127.0.0.1", 1),), pool=spec, ports=(1, 1)).check()
    assert pool.address_count == 254 and spec.text == "10.0.0.0/24"


def test_a_pool_prints_as_given_and_knows_its_addresses() -> None:
    for text in ("127.0.100.0/24", "10.0.0.10-10.0.0.20"):
        assert str(parse_pool(text)) == text
    assert "10.0.0.10" in parse_pool("10.0.0.10-10.0.0.20") and "10.0.0.21" not in parse_pool("10.0.0.10-10.0.0.20")
    assert "127.0.100.255" in parse_pool("127.0.100.0/24") and "127.0.101.0" not in parse_pool("127.0.100.0/24")


@pytest.mark.parametrize("text", ["", "10.0.0.1", "10.0.0.1-", "a-b", "10.0.0.2-10.0.0.1", "10.0.0.0/40", "x/8"])
def test_unparsable_pools(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_pool(text)


def test_endpoints_and_port_ranges() -> None:
    assert parse_endpoint("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen_endpoint("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_ports(" 1024 - 2047 ") == (1024, 2047)
    for text in ("127.0.0.1:0", "[::1]:80", "127.0.0.1:-1", ":80", "127.0.0.1:65536"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_endpoint(text)
    for text in ("0-1", "2-1", "1-65536", "80"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ports(text)


Parser = Callable[[str], object]


@pytest.mark.parametrize(
    ("parse", "text", "value"),
    [
        (parse_ip, "010.0.0.1", None),
        (parse_ip, "10.0.0.1", "10.0.0.1"),
        (parse_netmask, "/24", 24),
        (parse_netmask, "255.255.255.0", "255.255.255.0"),
        (parse_number, "1e3", 1000.0),
        (parse_positive, "0.5", 0.5),
        (parse_non_negative, "0", 0.0),
        (parse_fraction, "0", 0.0),
        (count_at_least(0), "1_000", 1000),
    ],
)
def test_values_parse_to_their_types(parse: Parser, text: str, value: object) -> None:
    if value is None:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
    else:
        assert parse(text) == value


@pytest.mark.parametrize(
    ("parse", "text", "reason"),
    [
        (parse_number, "x", "'x' is not a number"),
        (parse_number, "nan", "'nan' is not a finite number"),
        (parse_positive, "0", "0 is not positive"),
        (parse_non_negative, "-1.5", "-1.5 is negative"),
        (parse_fraction, "1", "1 is outside [0, 1)"),
        (parse_netmask, "33", "prefix length 33 is outside 0..32"),
        (count_at_least(1), "0", "0 is less than 1"),
        (count_at_least(1), "1.5", "'1.5' is not an integer"),
    ],
)
def test_a_rejected_value_says_why(parse: Parser, text: str, reason: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        parse(text)
    assert str(raised.value) == reason


def test_the_commands_keep_typed_values_parsed_once() -> None:
    demo = parser().parse_args(["demo", "--pool", "127.0.100.1-127.0.100.5", "--ports", "2000-2999"])
    assert demo.pool == PoolAddresses("127.0.100.1", "127.0.100.5", 0) and demo.ports == (2000, 2999)
    assert parser().parse_args(["demo"]).pool == PoolAddresses("127.0.100.0", "127.0.100.255", 24)
    proxy = parser().parse_args(
        ["proxy", "--listen", "127.0.0.1:0", "--backend", "127.0.0.1:80", "--pool", "10.0.0.0/24", "--hold-down", "1"]
    )
    assert proxy.listen == ("127.0.0.1", 0) and proxy.backend == [("127.0.0.1", 80)]
    assert proxy.pool == PoolAddresses("10.0.0.0", "10.0.0.255", 24) and proxy.ports == (1024, 65535)
    assert proxy.hold_down == 1.0 and proxy.metrics is None
    simulate = parser().parse_args(["simulate", "--netmask", "/28", "--ports", "1-2"])
    assert simulate.netmask == 28 and simulate.ports == (1, 2)


def test_a_configuration_built_in_code_is_checked_by_the_same_rules() -> None:
    good = {"listen": ("127.0.0.1", 0), "backends": (("127.0.0.1", 1),), "pool": parse_pool("10.0.0.0/24")}
    for field, value, message in [
        ("initial_blocks", 0, "argument --initial-blocks: 0 is less than 1"),
        ("bind_attempts", 0, "argument --bind-attempts: 0 is less than 1"),
        ("connect_timeout", 0.0, "argument --connect-timeout: 0 is not positive"),
        ("hold_down", float("inf"), "argument --hold-down: inf is not a finite number"),
        ("quarantine", -1.0, "argument --quarantine: -1 is negative"),
    ]:
        with pytest.raises(OptionError) as raised:
            ProxyConfig(**good, **{field: value}).check()  # type: ignore[arg-type]
        assert str(raised.value) == message
