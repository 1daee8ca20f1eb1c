"""Phase-1 parsing of ``ranges`` and ``exclude`` items (natpool.shapes), shared by both implementations."""

from __future__ import annotations

import ipaddress

import natpool
import natpool.reference
import pytest
from natpool.errors import ArgumentError, PoolConfigError
from natpool.shapes import address_text, parse_address, parse_exclusions, parse_ranges, usable_bounds

V4 = int(ipaddress.IPv4Address("10.0.0.0"))
V6 = int(ipaddress.IPv6Address("2001:db8::"))


def test_each_range_form_parses_to_family_and_usable_bounds() -> None:
    assert parse_ranges(
        [
            "10.0.0.0/24",
            "10.0.1.5 - 10.0.1.9",
            ("10.0.2.1", "10.0.2.3"),
            ["10.0.2.9", ipaddress.IPv4Address("10.0.2.9")],
            "10.0.3.3",
            ipaddress.IPv4Network("10.0.4.0/31"),
            (V4 + 1280, V4 + 1281),
        ]
    ) == [
        (4, V4 + 1, V4 + 254),
        (4, V4 + 261, V4 + 265),
        (4, V4 + 513, V4 + 515),
        (4, V4 + 521, V4 + 521),
        (4, V4 + 771, V4 + 771),
        (4, V4 + 1024, V4 + 1025),
        (4, V4 + 1280, V4 + 1281),
    ]


def test_ipv6_networks_leave_out_the_subnet_router_anycast_address_up_to_126() -> None:
    assert usable_bounds(ipaddress.IPv6Network("2001:db8::/126")) == (V6 + 1, V6 + 3)
    assert usable_bounds(ipaddress.IPv6Network("2001:db8::/127")) == (V6, V6 + 1)
    assert parse_ranges(["2001:db8::/48"]) == [(6, V6 + 1, V6 + 2**80 - 1)]
    assert parse_ranges(["2001:db8::5-2001:db8::9"]) == [(6, V6 + 5, V6 + 9)]


@pytest.mark.parametrize(
    "ranges",
    [
        [],
        ["10.0.0.1/24"],
        ["10.0.0.9-10.0.0.1"],
        ["10.0.0.1-::1"],
        [("10.0.0.1",)],
        ["nonsense"],
        [("10.0.0.1", 2**32)],
    ],
)
def test_bad_range_items_name_the_ranges_field(ranges: list[object]) -> None:
    with pytest.raises(PoolConfigError) as raised:
        parse_ranges(ranges)
    assert raised.value.field == "ranges"


@pytest.mark.parametrize("ranges", ["10.0.0.0/24", 5, None, [5.0], [None]])
def test_ranges_of_the_wrong_type_raise_type_error(ranges: object) -> None:
    with pytest.raises(TypeError):
        parse_ranges(ranges)


def test_each_exclusion_form_parses() -> None:
    assert parse_exclusions(None) == []
    assert parse_exclusions(
        [
            "10.0.0.5",
            "10.0.0.6:80",
            "10.0.0.7:80-90",
            "10.0.0.8-10.0.0.9",
            "10.0.1.0/30",
            ipaddress.IPv4Address("10.0.0.3"),
            "[2001:db8::1]:5-6",
            "2001:db8::1-2001:db8::3",
            "2001:db8::7",
        ]
    ) == [
        (4, V4 + 5, V4 + 5, None, None),
        (4, V4 + 6, V4 + 6, 80, 80),
        (4, V4 + 7, V4 + 7, 80, 90),
        (4, V4 + 8, V4 + 9, None, None),
        (4, V4 + 256, V4 + 259, None, None),
        (4, V4 + 3, V4 + 3, None, None),
        (6, V6 + 1, V6 + 1, 5, 6),
        (6, V6 + 1, V6 + 3, None, None),
        (6, V6 + 7, V6 + 7, None, None),
    ]


@pytest.mark.parametrize("item", ["10.0.0.1:9-1", "[10.0.0.1]:5", "10.0.0.1:x", "[::1]5", "10.0.0.1/8", "?"])
def test_bad_exclusions_name_the_exclude_field(item: str) -> None:
    with pytest.raises(PoolConfigError) as raised:
        parse_exclusions([item])
    assert raised.value.field == "exclude"


def test_method_addresses_must_be_of_the_pools_family() -> None:
    assert parse_address("::1", 6) == 1
    assert parse_address(2**128 - 1, 6) == 2**128 - 1
    assert parse_address(ipaddress.IPv4Address("10.0.0.0"), 4) == V4
    for value, family in [("::1", 4), ("10.0.0.1", 6), (2**32, 4), (ipaddress.IPv6Address("::1"), 4), ("x", 4)]:
        with pytest.raises(ArgumentError):
            parse_address(value, family)
    with pytest.raises(TypeError):
        parse_address(1.5, 4)
    assert address_text(6, V6 + 1) == "2001:db8::1"
    assert address_text(4, V4 + 1) == "10.0.0.1"


def test_ipv4_mapped_ipv6_text_is_dotted_in_both_implementations() -> None:
    """``::ffff:a.b.c.d`` as Rust and Python 3.13 write it (3.11's ``ipaddress`` writes hex groups);
    an IPv4-compatible address (``::a.b.c.d``, deprecated) keeps hex groups in both."""
    assert address_text(6, int(ipaddress.IPv6Address("::ffff:1.2.3.4"))) == "::ffff:1.2.3.4"
    texts = []
    for impl in (natpool.Pool, natpool.reference.Pool):
        pool = impl(
            "m", ranges=["::1.2.3.4", "::ffff:1.2.3.4-::ffff:1.2.3.5"], initial_blocks=2, max_blocks=4, ports=(1, 1)
        )
        texts.append(([lease.ip for lease in pool.allocate_many(3)], pool.intervals(), pool.ranges))
    assert texts[0] == texts[1]
    assert texts[1][0] == ["::102:304", "::ffff:1.2.3.4", "::ffff:1.2.3.5"]
