"""The shared option parsers of ``natpool simulate``, ``proxy`` and ``demo``, and the values the commands keep.

The command-line tests check the exit status and the message of each command; these check the parsers alone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
from natpool.apps.cli import parser
from natpool.apps.options import (
    OptionError,
    PoolAddresses,
    count_at_least,
    endpoint_text,
    parse_endpoint,
    parse_exclusion,
    parse_fraction,
    parse_ip,
    parse_listen_endpoint,
    parse_netmask,
    parse_non_negative,
    parse_number,
    parse_pool,
    parse_pool_range,
    parse_ports,
    parse_positive,
)
from natpool.apps.proxy import ProxyConfig


def pool_of(*ranges: str, exclude: tuple[str, ...] = (), ports: tuple[int, int] = (1, 1)) -> Any:
    """The pool ``natpool proxy --pool R1 --pool R2 ... --exclude E ...`` builds."""
    addresses = PoolAddresses(tuple(map(parse_pool_range, ranges)), tuple(map(parse_exclusion, exclude)))
    backend = "::1" if addresses.family == 6 else "127.0.0.1"
    return ProxyConfig(listen=("127.0.0.1", 0), backends=((backend, 1),), pool=addresses, ports=ports).check()


def test_one_ipv4_pool_is_given_to_the_pool_as_before_first_last_netmask() -> None:
    assert parse_pool("127.0.100.0/24").pool_arguments() == {
        "first_ip": "127.0.100.0",
        "last_ip": "127.0.100.255",
        "netmask": 24,
    }
    assert parse_pool("10.0.0.5/24").pool_arguments()["first_ip"] == "10.0.0.0"  # host bits cleared, as before
    assert parse_pool("10.0.0.10-10.0.0.20").pool_arguments() == {
        "first_ip": "10.0.0.10",
        "last_ip": "10.0.0.20",
        "netmask": 0,
    }
    assert parse_pool("10.1.2.3/32").pool_arguments()["netmask"] == 32


def test_a_range_keeps_every_address_in_it_and_a_cidr_block_leaves_out_network_and_broadcast() -> None:
    for text, count in [("10.0.0.1-10.0.0.3", 3), ("10.0.0.255-10.0.1.0", 2), ("10.0.0.0-10.0.0.255", 256)]:
        assert pool_of(text).address_count == count
    assert pool_of("10.0.0.0/24").address_count == 254 and parse_pool("10.0.0.0/24").text == "10.0.0.0/24"
    assert pool_of("10.0.0.7").address_count == 1


def test_ipv6_ranges_in_each_form() -> None:
    assert pool_of("2001:db8::/126").address_count == 3  # without the subnet-router anycast address
    assert pool_of("2001:db8::1-2001:db8::4", ports=(1000, 1009)).address_count == 40
    one = parse_pool("0:0::1")
    assert one.text == "::1" and one.family == 6 and one.pool_arguments() == {"ranges": ["::1"], "exclude": None}
    assert pool_of("::1", ports=(2000, 2999)).ranges == [("::1", "::1")]


def test_several_ranges_minus_exclusions() -> None:
    ranges, exclude = ("10.0.1.0/30", "10.0.0.1-10.0.0.2"), ("10.0.1.1", "10.0.0.2:5-6")
    pool = pool_of(*ranges, exclude=exclude, ports=(1, 10))
    assert pool.ranges == [("10.0.0.1", "10.0.0.2"), ("10.0.1.1", "10.0.1.2")]
    assert pool.address_count == 40 - 10 - 2
    addresses = PoolAddresses(tuple(map(parse_pool_range, ranges)), tuple(map(parse_exclusion, exclude)))
    assert addresses.pool_arguments() == {"ranges": list(ranges), "exclude": list(exclude)}
    assert addresses.text == "10.0.1.0/30, 10.0.0.1-10.0.0.2 minus 10.0.1.1, 10.0.0.2:5-6"
    assert (addresses.first_ip, addresses.last_ip) == ("10.0.0.1", "10.0.1.2")
    assert addresses.holds("10.0.0.2", 4) and not addresses.holds("10.0.0.2", 5)
    assert not addresses.holds("10.0.1.1", 4) and addresses.holds("10.0.1.2", 4) and not addresses.holds("::1", 4)
    assert "10.0.0.2" in addresses and "10.0.1.1" not in addresses and "10.0.1.3" not in addresses


def test_a_pool_prints_as_given_and_knows_its_addresses() -> None:
    for text in ("127.0.100.0/24", "10.0.0.10-10.0.0.20", "2001:db8::1-2001:db8::9", "::1"):
        assert str(parse_pool(text)) == text
    assert "10.0.0.10" in parse_pool("10.0.0.10-10.0.0.20") and "10.0.0.21" not in parse_pool("10.0.0.10-10.0.0.20")
    assert "127.0.100.254" in parse_pool("127.0.100.0/24") and "127.0.100.255" not in parse_pool("127.0.100.0/24")


@pytest.mark.parametrize(
    "text", ["", "10.0.0.1-", "a-b", "10.0.0.2-10.0.0.1", "10.0.0.0/40", "x/8", "10.0.0.1-::1", "::1-::"]
)
def test_unparsable_pools(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_pool_range(text)


def test_exclusions_in_each_form() -> None:
    for text, ports in [
        ("10.0.0.5", None),
        ("10.0.0.5:80", (80, 80)),
        ("10.0.0.5:1000-2000", (1000, 2000)),
        ("[2001:db8::1]:1000-2000", (1000, 2000)),
        ("10.0.0.0/30", None),
        ("10.0.0.1-10.0.0.3", None),
        ("2001:db8::/64", None),
    ]:
        assert parse_exclusion(text).ports == ports and parse_exclusion(text).text == text
    for text in ("", "x", "[10.0.0.1]:80", "10.0.0.1:9-2", "[::1]80", "10.0.0.1/8"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_exclusion(text)


def test_endpoints_and_port_ranges() -> None:
    assert parse_endpoint("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_endpoint("[::1]:80") == ("::1", 80)
    assert parse_listen_endpoint("[0::0]:0") == ("::", 0)
    assert parse_listen_endpoint("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_ports(" 1024 - 2047 ") == (1024, 2047)
    for endpoint in [("127.0.0.1", 8080), ("2001:db8::1", 443)]:
        assert parse_endpoint(endpoint_text(endpoint)) == endpoint
    for text in ("127.0.0.1:0", "::1:80", "[127.0.0.1]:80", "[::1:80", "127.0.0.1:-1", ":80", "127.0.0.1:65536"):
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
    assert demo.pool == [parse_pool_range("127.0.100.1-127.0.100.5")] and demo.ports == (2000, 2999)
    pools = ["--pool", "2001:db8::/64", "--pool", "2001:db8:1::5", "--exclude", "[2001:db8::1]:80"]
    proxy = parser().parse_args(
        ["proxy", "--listen", "[::1]:0", "--backend", "[::1]:80", *pools, "--hold-down", "1", "--state", "pool.state"]
    )
    assert proxy.listen == ("::1", 0) and proxy.backend == [("::1", 80)]
    assert [r.text for r in proxy.pool] == ["2001:db8::/64", "2001:db8:1::5"] and proxy.ports == (1024, 65535)
    assert proxy.exclude == [parse_exclusion("[2001:db8::1]:80")] and proxy.exclude[0].family == 6
    assert proxy.hold_down == 1.0 and proxy.metrics is None and proxy.state == "pool.state"
    assert proxy.state_interval == 60.0 and proxy.model == "rust"
    simulate = parser().parse_args(["simulate", "--netmask", "/28", "--ports", "1-2", "--pool", "10.0.0.0/8"])
    assert simulate.netmask == 28 and simulate.ports == (1, 2) and simulate.pool == [parse_pool_range("10.0.0.0/8")]


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
