"""Issue 12, points 1-5: pool shapes (ranges, exclusions, reserve, drain, IPv6) and their bad input.

Every contract test takes the ``impl`` fixture and so runs on both implementations
(``-k reference`` selects the reference model's). Expected values are literals worked
out from ``docs/shapes.md``, or computed here by brute force over every (ip, port) of
small shapes, independently of either implementation. The hypothesis properties at
the end run on the reference model (``test_reference_*``).
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import natpool.reference
import pytest
from clockkit import Clock
from hypothesis import assume, given
from hypothesis import strategies as st
from natpool import (
    ArgumentError,
    BlockEvent,
    Interval,
    LeaseError,
    NatPoolError,
    PoolConfigError,
    PoolExhausted,
    Subpool,
)
from splitmixkit import splitmix64

LAST_48 = "2001:db8:0:ffff:ffff:ffff:ffff:ffff"
"""The last address of 2001:db8::/48."""


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def snapshot(pool: Any) -> tuple[Any, ...]:
    """Everything observable about a pool's state."""
    return (pool.intervals(), pool.subpools(), pool.stats(), len(pool), pool.drained())


def addresses(leases: list[Any]) -> list[tuple[str, int]]:
    return [lease.address for lease in leases]


def ports_of(leases: list[Any]) -> list[int]:
    return [lease.port for lease in leases]


def single(impl: Any, ports: int, initial: int, maximum: int = 1000, **options: Any) -> Any:
    """10.0.0.1 alone, ports 1..ports: address index i is port i + 1."""
    return impl("s", ranges=["10.0.0.1"], initial_blocks=initial, max_blocks=maximum, ports=(1, ports), **options)


def three_ips(impl: Any, initial: int = 4, **options: Any) -> Any:
    """10.0.0.1-10.0.0.3, ports 1..4: 12 addresses, four per IP."""
    return impl("d", ranges=["10.0.0.1-10.0.0.3"], initial_blocks=initial, max_blocks=1000, ports=(1, 4), **options)


# -- point 1: ranges ---------------------------------------------------------------------------------


def test_each_range_form_reads_back_sorted(impl: Any) -> None:
    pool = impl(
        "r",
        ranges=[
            "10.0.5.1",
            ("10.0.2.1", "10.0.2.2"),
            ipaddress.IPv4Network("10.0.3.0/31"),  # /31: both addresses usable
            "10.0.0.0/30",  # network and broadcast left out
            "10.0.1.5 - 10.0.1.6",
            [ip("10.0.4.1"), ipaddress.IPv4Address("10.0.4.2")],
            ipaddress.IPv4Address("10.0.6.1"),
        ],
        initial_blocks=1,
        max_blocks=100,
        ports=(1, 2),
    )
    assert pool.ranges == [
        ("10.0.0.1", "10.0.0.2"),
        ("10.0.1.5", "10.0.1.6"),
        ("10.0.2.1", "10.0.2.2"),
        ("10.0.3.0", "10.0.3.1"),
        ("10.0.4.1", "10.0.4.2"),
        ("10.0.5.1", "10.0.5.1"),
        ("10.0.6.1", "10.0.6.1"),
    ]
    assert (pool.first_ip, pool.last_ip, pool.netmask, pool.family) == ("10.0.0.1", "10.0.6.1", None, 4)
    assert (pool.address_count, pool.capacity) == (24, 24)


def test_touching_ranges_merge_and_a_subpool_across_a_gap_shows_as_two_intervals(impl: Any) -> None:
    pool = impl(
        "m",
        ranges=["10.0.0.7", "10.0.0.3-10.0.0.6", ("10.0.0.1", "10.0.0.2"), "10.0.0.9"],
        initial_blocks=9,
        max_blocks=100,
        ports=(1, 1),
    )
    assert pool.ranges == [("10.0.0.1", "10.0.0.7"), ("10.0.0.9", "10.0.0.9")]
    assert pool.intervals() == [
        Interval("10.0.0.1", 1, "10.0.0.7", 1, 7, None),
        Interval("10.0.0.9", 1, "10.0.0.9", 1, 1, None),
    ]
    leases = pool.allocate_many(8)  # one subpool of the 8 addresses
    assert [lease.ip for lease in leases] == [f"10.0.0.{i}" for i in (1, 2, 3, 4, 5, 6, 7, 9)]
    assert pool.intervals() == [
        Interval("10.0.0.1", 1, "10.0.0.7", 1, 7, 0),
        Interval("10.0.0.9", 1, "10.0.0.9", 1, 1, 0),
    ]
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 1, "10.0.0.9", 1, 8, 0)]
    assert pool.stats().intervals == 2
    # Two /25s do not touch: their network and broadcast addresses are left out.
    halves = impl("h", ranges=["10.0.0.128/25", "10.0.0.0/25"], initial_blocks=1, max_blocks=1)
    assert halves.ranges == [("10.0.0.1", "10.0.0.126"), ("10.0.0.129", "10.0.0.254")]


def test_the_legacy_form_is_one_range_and_reads_back_as_configured(impl: Any) -> None:
    pool = impl("l", "192.0.2.0", "192.0.2.255", 24, 1, 10, ports=(1, 1))
    assert pool.ranges == [("192.0.2.1", "192.0.2.254")]
    assert (pool.first_ip, pool.last_ip, pool.netmask, pool.family) == ("192.0.2.0", "192.0.2.255", "255.255.255.0", 4)
    excluded = impl("l", "192.0.2.1", "192.0.2.3", 24, 1, 10, ports=(1, 2), exclude=["192.0.2.2"])
    assert excluded.address_count == 4
    assert addresses(excluded.allocate_many(4)) == [
        ("192.0.2.1", 1),
        ("192.0.2.1", 2),
        ("192.0.2.3", 1),
        ("192.0.2.3", 2),
    ]


def test_legacy_ipv6_leaves_out_the_subnet_router_anycast_address_up_to_126(impl: Any) -> None:
    pool = impl("v6", "2001:db8::", "2001:db8::ff", 120, 1, 10, ports=(1, 2))
    assert pool.ranges == [("2001:db8::1", "2001:db8::ff")]
    assert (pool.first_ip, pool.last_ip, pool.netmask, pool.family) == ("2001:db8::", "2001:db8::ff", 120, 6)
    assert pool.address_count == 255 * 2
    assert pool.allocate().address == ("2001:db8::1", 1)
    assert impl("v6", "2001:db8::", "2001:db8::1", 127, 1, 10, ports=(1, 2)).address_count == 4
    objects = impl("v6", ipaddress.IPv6Address("2001:db8::"), ipaddress.IPv6Address("2001:db8::3"), 126, 1, 10)
    assert objects.ranges == [("2001:db8::1", "2001:db8::3")]
    # the legacy /32 and the largest space, exactly
    assert impl("v6", "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 32, 1, 10).address_count == (
        (2**96 - 1) * 64512
    )
    everything = impl("all", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 0, 1, 10, ports=(1, 1))
    assert everything.address_count == 2**128 - 1


def test_ipv6_range_forms(impl: Any) -> None:
    pool = impl(
        "v6",
        ranges=[
            ipaddress.IPv6Network("2001:db8::40/127"),
            ("2001:db8::20", ipaddress.IPv6Address("2001:db8::21")),
            "2001:db8::10-2001:db8::11",
            "2001:db8::/126",
            "2001:0db8::0050",
        ],
        initial_blocks=1,
        max_blocks=10,
        ports=(7, 7),
    )
    assert pool.ranges == [
        ("2001:db8::1", "2001:db8::3"),
        ("2001:db8::10", "2001:db8::11"),
        ("2001:db8::20", "2001:db8::21"),
        ("2001:db8::40", "2001:db8::41"),
        ("2001:db8::50", "2001:db8::50"),
    ]
    assert (pool.family, pool.netmask, pool.address_count) == (6, None, 10)


# -- bad input: (overrides, field) --------------------------------------------------------------------

BASE: dict[str, Any] = {"name": "b", "initial_blocks": 1, "max_blocks": 10, "ports": (1000, 1003)}
LEGACY: dict[str, Any] = {"first_ip": "10.0.0.1", "last_ip": "10.0.0.2", "netmask": 24}
V6: dict[str, Any] = {"first_ip": "2001:db8::1", "last_ip": "2001:db8::2", "netmask": 64}
WHOLE_V6 = ("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")

CONFIG_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    # the form: ranges or the legacy three
    ("both-forms", {**LEGACY, "ranges": ["10.0.0.1"]}, "ranges"),
    ("ranges-and-netmask", {"netmask": 24, "ranges": ["10.0.0.1"]}, "ranges"),
    ("neither-form", {}, "ranges"),
    ("both-before-bad-first-ip", {"first_ip": "bad", "ranges": ["10.0.0.1"]}, "ranges"),
    # ranges items
    ("ranges-empty", {"ranges": []}, "ranges"),
    ("ranges-unparsable", {"ranges": ["10.0.0.300"]}, "ranges"),
    ("ranges-host-bits", {"ranges": ["10.0.0.1/24"]}, "ranges"),
    ("ranges-reversed", {"ranges": ["10.0.0.9-10.0.0.1"]}, "ranges"),
    ("ranges-reversed-tuple", {"ranges": [("10.0.0.9", "10.0.0.1")]}, "ranges"),
    ("ranges-tuple-of-three", {"ranges": [("10.0.0.1", "10.0.0.2", "10.0.0.3")]}, "ranges"),
    ("ranges-int-beyond-ipv4", {"ranges": [(0, 2**32)]}, "ranges"),
    ("ranges-item-mixes-families", {"ranges": ["10.0.0.1-2001:db8::1"]}, "ranges"),
    ("ranges-overlap", {"ranges": ["10.0.0.1-10.0.0.5", "10.0.0.5"]}, "ranges"),
    ("ranges-overlap-networks", {"ranges": ["10.0.0.0/24", "10.0.0.128/25"]}, "ranges"),
    ("ranges-twice", {"ranges": ["10.0.0.1", "10.0.0.1"]}, "ranges"),
    ("ranges-two-families", {"ranges": ["10.0.0.1", "2001:db8::1"]}, "ranges"),
    ("ranges-too-many-addresses", {"ranges": [WHOLE_V6], "ports": (1, 1)}, "ranges"),
    # exclude items
    ("exclude-unparsable", {**LEGACY, "exclude": ["10.0.0.x"]}, "exclude"),
    ("exclude-port-below", {**LEGACY, "exclude": ["10.0.0.1:80"]}, "exclude"),
    ("exclude-ports-past-high", {**LEGACY, "exclude": ["10.0.0.1:1003-1004"]}, "exclude"),
    ("exclude-ports-reversed", {**LEGACY, "exclude": ["10.0.0.1:1003-1001"]}, "exclude"),
    ("exclude-outside", {**LEGACY, "exclude": ["10.0.0.3"]}, "exclude"),
    ("exclude-network-outside", {**LEGACY, "exclude": ["10.0.1.0/24"]}, "exclude"),
    ("exclude-other-family", {**LEGACY, "exclude": ["2001:db8::1"]}, "exclude"),
    ("exclude-bracketed-in-ipv4", {**LEGACY, "exclude": ["[2001:db8::1]:1000"]}, "exclude"),
    ("exclude-ipv4-in-ipv6", {**V6, "exclude": ["10.0.0.1"]}, "exclude"),
    ("exclude-ipv6-port-outside", {**V6, "exclude": ["[2001:db8::1]:2000"]}, "exclude"),
    ("exclude-everything", {"ranges": ["10.0.0.1-10.0.0.2"], "exclude": ["10.0.0.1-10.0.0.2"]}, "exclude"),
    (
        "exclude-every-port",
        {"ranges": ["10.0.0.1"], "exclude": ["10.0.0.1:1000-1001", "10.0.0.1:1002-1003"]},
        "exclude",
    ),
    ("exclude-before-too-many", {"ranges": [WHOLE_V6], "ports": (1, 2), "exclude": ["10.0.0.1"]}, "exclude"),
    # the legacy form with IPv6
    ("legacy-v6-dotted-netmask", {**V6, "netmask": "255.255.255.0"}, "netmask"),
    ("legacy-v6-prefix-129", {**V6, "netmask": 129}, "netmask"),
    ("legacy-v4-prefix-33", {**LEGACY, "netmask": 33}, "netmask"),
    ("legacy-families-text", {**LEGACY, "last_ip": "2001:db8::2"}, "first_ip"),
    ("legacy-families-object", {**LEGACY, "first_ip": ipaddress.IPv6Address("::1")}, "first_ip"),
    ("legacy-families-int", {**V6, "first_ip": 1}, "first_ip"),
    ("legacy-v6-reversed", {**V6, "first_ip": "2001:db8::9"}, "last_ip"),
    ("legacy-v6-two-subnets", {**V6, "last_ip": "2001:db8:1::1"}, "netmask"),
    ("legacy-v6-only-anycast", {**V6, "first_ip": "2001:db8::", "last_ip": "2001:db8::"}, "first_ip"),
    ("legacy-too-many-addresses", {"first_ip": WHOLE_V6[0], "last_ip": WHOLE_V6[1], "netmask": 0}, "first_ip"),
    # the phases' order
    ("phase-1-before-empty-name", {"name": "", "ranges": ["bad"]}, "ranges"),
    ("exclude-parse-before-ports", {**LEGACY, "exclude": ["x"], "ports": (1, 2, 3)}, "exclude"),
    ("phase-2-before-overlap", {"ranges": ["10.0.0.1", "10.0.0.1"], "grow_threshold": -1}, "grow_threshold"),
    ("overlap-before-exclusions", {"ranges": ["10.0.0.1", "10.0.0.1"], "exclude": ["10.9.9.9"]}, "ranges"),
]


@pytest.mark.parametrize(("overrides", "field"), [pytest.param(o, f, id=i) for i, o, f in CONFIG_ERRORS])
def test_bad_shape_is_a_config_error_naming_the_field(impl: Any, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolConfigError) as info:
        impl(**{**BASE, **overrides})
    assert info.value.field == field


TYPE_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("ranges-int", {"ranges": 5}),
    ("ranges-str", {"ranges": "10.0.0.1"}),
    ("ranges-item-float", {"ranges": [5.0]}),
    ("ranges-item-none", {"ranges": [None]}),
    ("exclude-int", {**LEGACY, "exclude": 5}),
    ("exclude-str", {**LEGACY, "exclude": "10.0.0.1"}),
    ("exclude-item-tuple", {**LEGACY, "exclude": [("10.0.0.1", "10.0.0.2")]}),
    ("ranges-without-initial-blocks", {"ranges": ["10.0.0.1"], "initial_blocks": None}),
    ("ranges-without-max-blocks", {"ranges": ["10.0.0.1"], "max_blocks": None}),
    ("legacy-v6-netmask-float", {**V6, "netmask": 64.0}),
]


@pytest.mark.parametrize("overrides", [pytest.param(o, id=i) for i, o in TYPE_ERRORS])
def test_shape_of_the_wrong_type_is_a_type_error(impl: Any, overrides: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as info:
        impl(**{**BASE, **overrides})
    assert not isinstance(info.value, NatPoolError)


# -- point 2: exclusions ------------------------------------------------------------------------------


def test_each_exclusion_form_removes_its_addresses(impl: Any) -> None:
    pool = impl(
        "x",
        ranges=["10.0.0.1-10.0.0.6"],
        exclude=[
            "10.0.0.1",  # every port
            "10.0.0.2:2",
            "10.0.0.3:2-3",
            "10.0.0.4/31",  # .4 and .5 (an exclusion network keeps every address)
            ipaddress.IPv4Address("10.0.0.5"),  # overlaps the network: fine
            "10.0.0.5-10.0.0.5",
        ],
        initial_blocks=9,
        max_blocks=9,
        ports=(1, 4),
    )
    assert (pool.address_count, pool.capacity) == (9, 9)
    leases = pool.allocate_many(9)
    assert addresses(leases) == [
        ("10.0.0.2", 1),
        ("10.0.0.2", 3),
        ("10.0.0.2", 4),
        ("10.0.0.3", 1),
        ("10.0.0.3", 4),
        ("10.0.0.6", 1),
        ("10.0.0.6", 2),
        ("10.0.0.6", 3),
        ("10.0.0.6", 4),
    ]
    with pytest.raises(PoolExhausted):
        pool.allocate()
    # one subpool, shown in the runs of consecutive addresses
    assert pool.intervals() == [
        Interval("10.0.0.2", 1, "10.0.0.2", 1, 1, 0),
        Interval("10.0.0.2", 3, "10.0.0.3", 1, 3, 0),
        Interval("10.0.0.3", 4, "10.0.0.3", 4, 1, 0),
        Interval("10.0.0.6", 1, "10.0.0.6", 4, 4, 0),
    ]
    assert pool.stats().intervals == 4
    assert pool.subpools() == [Subpool(0, "10.0.0.2", 1, "10.0.0.6", 4, 9, 0)]
    assert pool.lookup("10.0.0.2", 2) is None
    assert pool.lookup("10.0.0.3", 4) == leases[4]


def test_ipv6_exclusions_with_ports(impl: Any) -> None:
    pool = impl(
        "x6",
        ranges=["2001:db8::/126"],
        exclude=["[2001:db8::2]:2-3", "[2001:db8::3]:4"],
        initial_blocks=9,
        max_blocks=9,
        ports=(1, 4),
    )
    assert pool.address_count == 9
    assert addresses(pool.allocate_many(9)) == [
        ("2001:db8::1", 1),
        ("2001:db8::1", 2),
        ("2001:db8::1", 3),
        ("2001:db8::1", 4),
        ("2001:db8::2", 1),
        ("2001:db8::2", 4),
        ("2001:db8::3", 1),
        ("2001:db8::3", 2),
        ("2001:db8::3", 3),
    ]


def test_a_16_excluded_from_an_8_is_two_runs(impl: Any) -> None:
    pool = impl("big", ranges=["10.0.0.0/8"], exclude=["10.1.0.0/16"], initial_blocks=1, max_blocks=10)
    low, high = 65535, 2**24 - 2 * 65536 - 1  # 10.0.0.1-10.0.255.255, 10.2.0.0-10.255.255.254
    assert pool.address_count == (low + high) * 64512
    assert pool.intervals() == [
        Interval("10.0.0.1", 1024, "10.0.255.255", 65535, low * 64512, None),
        Interval("10.2.0.0", 1024, "10.255.255.254", 65535, high * 64512, None),
    ]
    assert pool.stats().intervals == 2
    assert pool.allocate().address == ("10.0.0.1", 1024)
    assert pool.reserve("10.2.0.0", 1024).address == ("10.2.0.0", 1024)
    assert pool.stats().intervals == 5
    assert pool.lookup("10.1.2.3", 2000) is None
    with pytest.raises(ArgumentError):
        pool.reserve("10.1.0.0", 1024)


def test_a_48_ipv6_pool_has_exact_indices(impl: Any) -> None:
    pool = impl("v6", ranges=["2001:db8::/48"], initial_blocks=4, max_blocks=100)
    count = (2**80 - 1) * 64512
    assert (pool.address_count, pool.capacity) == (count, 100)
    last = pool.reserve(LAST_48, 65535, "last")
    assert (last.ip, last.port, last.data) == (LAST_48, 65535, "last")
    # the chunk of initial_blocks holding the last index: the last four addresses
    assert pool.subpools() == [Subpool(0, LAST_48, 65532, LAST_48, 65535, 4, 3)]
    assert pool.intervals() == [
        Interval("2001:db8::1", 1024, LAST_48, 65531, count - 4, None),
        Interval(LAST_48, 65532, LAST_48, 65535, 4, 0),
    ]
    assert pool.lookup(ip(LAST_48), 65535) == last
    assert pool.allocate().address == (LAST_48, 65532)
    assert pool.stats().free_addresses == count - 4


# -- point 3: reserve ---------------------------------------------------------------------------------


def test_reserve_in_a_subpool_takes_that_block(impl: Any) -> None:
    pool = single(impl, 8, 4)
    pool.allocate()  # subpool 0: ports 1-4
    reserved = pool.reserve("10.0.0.1", 3, "static")
    assert (reserved.address, reserved.data, len(pool)) == (("10.0.0.1", 3), "static", 2)
    assert pool.lookup("10.0.0.1", 3) == reserved
    assert pool.lookup("10.0.0.1", 3).data == "static"
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 1, "10.0.0.1", 4, 4, 2)]
    assert ports_of(pool.allocate_many(3)) == [2, 4, 5]  # 3's phantom discarded; then subpool 1
    pool.free(reserved)
    assert pool.allocate().port == 3
    with pytest.raises(LeaseError):
        pool.free(reserved)  # freed like any lease: its handle is stale now


def test_reserve_in_a_free_interval_makes_the_chunk_holding_it(impl: Any) -> None:
    pool = single(impl, 20, 4, subpool_blocks=3)
    reserved = pool.reserve("10.0.0.1", 10)  # index 9: chunk [8, 12) of initial_blocks 4
    assert reserved.port == 10
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 9, "10.0.0.1", 12, 4, 3)]
    assert ports_of(pool.allocate_many(3)) == [9, 11, 12]
    assert pool.allocate().port == 1  # first fit: subpool 1, ports 1-3 (subpool_blocks)
    pool.reserve("10.0.0.1", 7)  # index 6 in the free interval [3, 8): chunk [6, 8) of 3, cut to the interval
    assert pool.subpools() == [
        Subpool(1, "10.0.0.1", 1, "10.0.0.1", 3, 3, 2),
        Subpool(2, "10.0.0.1", 7, "10.0.0.1", 8, 2, 1),
        Subpool(0, "10.0.0.1", 9, "10.0.0.1", 12, 4, 0),
    ]
    assert len(pool) == 6


def test_reserve_chunk_is_cut_to_the_room_under_capacity(impl: Any) -> None:
    pool = single(impl, 20, 4, maximum=6)
    pool.allocate()  # 4 blocks made: room for 2
    pool.reserve("10.0.0.1", 10)  # chunk [8, 12) cut to [9, 11)
    assert pool.subpools() == [
        Subpool(0, "10.0.0.1", 1, "10.0.0.1", 4, 4, 3),
        Subpool(1, "10.0.0.1", 10, "10.0.0.1", 11, 2, 1),
    ]
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.reserve("10.0.0.1", 15)  # no room: nothing changed
    assert snapshot(pool) == before
    assert pool.reserve("10.0.0.1", 11).port == 11  # a free block of a subpool: no room needed


def test_reserve_chunk_is_cut_at_drained_ips(impl: Any) -> None:
    pool = impl("c", ranges=["10.0.0.1-10.0.0.4"], initial_blocks=8, max_blocks=100, ports=(1, 2))
    pool.drain("10.0.0.2")
    pool.drain("10.0.0.4")
    pool.reserve("10.0.0.3", 2)  # chunk [0, 8), cut to [4, 6) between the drained IPs
    assert pool.subpools() == [Subpool(0, "10.0.0.3", 1, "10.0.0.3", 2, 2, 1)]


def test_reserve_errors_change_nothing(impl: Any) -> None:
    pool = impl(
        "e",
        ranges=["10.0.0.1-10.0.0.3"],
        exclude=["10.0.0.2:2"],
        initial_blocks=2,
        max_blocks=100,
        ports=(1, 4),
        client_block=2,
        clock=Clock(),
    )
    pool.allocate()  # 10.0.0.1:1 live; subpool 0 is 10.0.0.1:1-2
    pool.free(pool.allocate(), hold=10)  # 10.0.0.1:2 held; the threshold made subpool 1, 10.0.0.1:3-4
    assert pool.allocate(client="c").address == ("10.0.0.2", 1)  # the client's block: 10.0.0.2:1 and :3
    pool.drain("10.0.0.3")
    before = snapshot(pool)
    cases: list[tuple[Any, Any, type[Exception]]] = [
        ("10.0.0.1", 1, LeaseError),  # live
        ("10.0.0.1", 2, LeaseError),  # held
        ("10.0.0.2", 1, LeaseError),  # live in a port block
        ("10.0.0.2", 3, LeaseError),  # free in a client's port block
        ("10.0.0.2", 2, ArgumentError),  # excluded
        ("10.0.0.4", 1, ArgumentError),  # outside the ranges
        ("10.0.0.2", 5, ArgumentError),  # port outside ports
        ("10.0.0.2", 0, ArgumentError),
        ("10.0.0.2", -1, ArgumentError),
        ("10.0.0.3", 1, ArgumentError),  # drained
        ("2001:db8::1", 1, ArgumentError),  # the other family
        (ipaddress.IPv6Address("::1"), 1, ArgumentError),
        (2**32, 1, ArgumentError),
        ("10.0.0.x", 1, ArgumentError),
        ("10.0.0.2", "1", TypeError),
        ("10.0.0.2", 1.0, TypeError),
        ("10.0.0.2", True, TypeError),
        (1.5, 1, TypeError),
        (None, 1, TypeError),
    ]
    for address, port, error in cases:
        with pytest.raises(error) as info:
            pool.reserve(address, port)
        assert not isinstance(info.value, PoolConfigError)
        assert snapshot(pool) == before, (address, port)
    assert pool.reserve("10.0.0.1", 3).address == ("10.0.0.1", 3)  # free in a shared subpool


def test_fifo_phantom_discarded_then_the_freed_block_goes_to_the_tail(impl: Any) -> None:
    pool = single(impl, 8, 4)
    pool.allocate()  # offset 0
    reserved = pool.reserve("10.0.0.1", 2)  # offset 1: a phantom in the queue
    third, _fourth = pool.allocate_many(2)
    assert (third.port, _fourth.port) == (3, 4)
    pool.free(reserved)  # its phantom was discarded: it joins the tail
    pool.free(third)
    assert ports_of(pool.allocate_many(2)) == [2, 3]


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_a_phantom_still_listed_becomes_a_free_entry_where_it_stands(impl: Any, order: str) -> None:
    pool = single(impl, 8, 4, order=order)
    pool.free(pool.reserve("10.0.0.1", 2))  # a fresh subpool of 1-4; the phantom of 2 is freed in place
    assert ports_of(pool.allocate_many(4)) == [1, 2, 3, 4]  # not 1, 3, 4, 2 (fifo) nor 2, 1, 3, 4 (lifo)


def test_lifo_phantom_discarded_then_the_freed_block_is_on_top(impl: Any) -> None:
    pool = single(impl, 8, 4, order="lifo")
    reserved = pool.reserve("10.0.0.1", 2)
    assert ports_of(pool.allocate_many(2)) == [1, 3]
    pool.free(reserved)
    assert pool.allocate().port == 2


def random_takes(seed: int, size: int, phantoms: set[int], takes: int) -> list[int]:
    """The ports ``takes`` allocations get from a fresh random subpool of ``size`` (ports 1..size),
    ``phantoms`` the offsets reserved in it: each phantom drawn is discarded and the draw repeated."""
    draws = splitmix64(seed)
    array = list(range(size))
    ports = []
    while len(ports) < takes:
        j = (next(draws) * len(array)) >> 64
        offset = array[j]
        array[j] = array[-1]
        array.pop()
        if offset in phantoms:
            phantoms.discard(offset)
            continue
        ports.append(offset + 1)
    return ports


@pytest.mark.parametrize("seed", [1, 20261130, 2**64 - 7])
def test_random_phantoms_are_drawn_and_discarded(impl: Any, seed: int) -> None:
    pool = single(impl, 8, 8, maximum=8, order="random", seed=seed)
    pool.reserve("10.0.0.1", 4)  # offset 3
    assert ports_of(pool.allocate_many(7)) == random_takes(seed, 8, {3}, 7)
    again = single(impl, 8, 8, maximum=8, order="random", seed=seed)
    again.free(again.reserve("10.0.0.1", 4))  # freed in place: as if never reserved
    assert ports_of(again.allocate_many(8)) == random_takes(seed, 8, set(), 8)


def test_a_reserved_block_freed_with_a_hold(impl: Any) -> None:
    clock = Clock()
    pool = single(impl, 8, 4, clock=clock)
    pool.free(pool.reserve("10.0.0.1", 2), hold=10)
    assert pool.stats().held == 1
    clock.now = 10  # the hold ends while the phantom is listed: a free entry where it stands
    assert ports_of(pool.allocate_many(4)) == [1, 2, 3, 4]

    clock.now = 0
    ended = single(impl, 8, 4, clock=clock)
    ended.free(ended.allocate(), hold=5)
    clock.now = 5  # reserve releases the holds that ended, as an allocation does
    assert ended.reserve("10.0.0.1", 1).port == 1
    assert ended.stats().held == 0

    clock.now = 10
    other = single(impl, 8, 4, clock=clock)
    other.free(other.reserve("10.0.0.1", 2), hold=10)  # held until 20
    assert ports_of(other.allocate_many(3)) == [1, 3, 4]  # the phantom met and discarded
    clock.now = 20  # the hold ends: the block returns by the usual rule
    assert other.allocate().port == 2


# -- point 4: drain -----------------------------------------------------------------------------------


def test_a_drained_ip_is_never_handed_out(impl: Any) -> None:
    pool = three_ips(impl)
    pool.drain("10.0.0.2")
    assert pool.drained() == ["10.0.0.2"]
    assert pool.stats().drained == 4
    assert (pool.address_count, pool.capacity) == (12, 12)
    leases = pool.allocate_many(8)
    assert {lease.ip for lease in leases} == {"10.0.0.1", "10.0.0.3"}
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate()  # len() is 8 of a capacity of 12
    with pytest.raises(PoolExhausted):
        pool.allocate_many(1)
    assert snapshot(pool) == before
    pool.undrain("10.0.0.2")
    assert (pool.drained(), pool.stats().drained) == ([], 0)
    assert pool.allocate().address == ("10.0.0.2", 1)


def test_every_ip_drained_exhausts_an_empty_pool(impl: Any) -> None:
    pool = three_ips(impl)
    for address in ("10.0.0.3", ip("10.0.0.1"), ipaddress.IPv4Address("10.0.0.2")):
        pool.drain(address)
    assert pool.drained() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert pool.stats().drained == 12
    with pytest.raises(PoolExhausted):
        pool.allocate()
    assert len(pool) == 0


def test_a_drain_fenced_subpool_is_deleted_when_its_last_lease_is_freed(impl: Any) -> None:
    pool = three_ips(impl)
    lease = pool.allocate()  # subpool 0 on 10.0.0.1
    pool.drain("10.0.0.1")
    assert pool.lookup("10.0.0.1", 1) == lease
    assert pool.allocate().address == ("10.0.0.2", 1)  # subpool 0 serves no allocation
    pool.free(lease)  # the keep rule does not keep a drain-fenced subpool
    assert pool.subpools() == [Subpool(1, "10.0.0.2", 1, "10.0.0.2", 4, 4, 3)]
    assert pool.intervals()[0] == Interval("10.0.0.1", 1, "10.0.0.1", 4, 4, None)
    assert [lease.ip for lease in pool.allocate_many(7)] == ["10.0.0.2"] * 3 + ["10.0.0.3"] * 4


def test_drain_deletes_an_empty_subpool_at_once(impl: Any) -> None:
    pool = three_ips(impl)
    pool.free(pool.allocate())
    assert len(pool.subpools()) == 1  # kept by the keep rule
    pool.drain("10.0.0.1")
    assert pool.subpools() == []
    assert pool.stats().intervals == 1


def test_drain_fences_a_subpool_that_spans_two_ips(impl: Any) -> None:
    pool = three_ips(impl, initial=6)  # subpool 0: 10.0.0.1:1 .. 10.0.0.2:2
    first = pool.allocate()
    pool.drain("10.0.0.2")
    # first fit skips the drained rest of 10.0.0.2: 10.0.0.3, up to the end of the space
    assert pool.allocate().address == ("10.0.0.3", 1)
    assert pool.subpools() == [
        Subpool(0, "10.0.0.1", 1, "10.0.0.2", 2, 6, 5),
        Subpool(1, "10.0.0.3", 1, "10.0.0.3", 4, 4, 3),
    ]
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.reserve("10.0.0.1", 2)  # not drained, but in a drain-fenced subpool
    assert snapshot(pool) == before
    pool.drain("10.0.0.1")
    pool.undrain("10.0.0.2")  # 10.0.0.1 still fences it
    assert pool.allocate().address == ("10.0.0.3", 2)
    pool.undrain("10.0.0.1")  # reopened: its free blocks in the order they were
    assert addresses(pool.allocate_many(2)) == [("10.0.0.1", 2), ("10.0.0.1", 3)]
    pool.free(first)
    assert len(pool.subpools()) == 2


def test_held_blocks_of_a_drain_fenced_subpool_run_out_their_holds(impl: Any) -> None:
    clock = Clock()
    pool = three_ips(impl, clock=clock)
    a, b = pool.allocate_many(2)
    pool.drain("10.0.0.1")
    pool.free(a, hold=5)
    pool.free(b)
    assert [s.id for s in pool.subpools()] == [0]  # one block still held
    clock.now = 5
    assert pool.allocate().address == ("10.0.0.2", 1)  # the hold ends: subpool 0 goes
    assert [(s.id, s.first_ip) for s in pool.subpools()] == [(0, "10.0.0.2")]  # its id is free again


def test_port_blocks_leave_a_drained_ip(impl: Any) -> None:
    clock = Clock()
    pool = three_ips(impl, client_block=2, clock=clock)
    a = pool.allocate(client="c")
    assert a.address == ("10.0.0.1", 1)
    pool.drain("10.0.0.1")
    assert pool.allocate(client="c").address == ("10.0.0.2", 1)  # not from the fenced block, nor on .1
    pool.free(a)  # the fenced block is released
    assert pool.allocate(client="d").address == ("10.0.0.2", 3)
    assert pool.allocate().address == ("10.0.0.3", 1)  # shared growth skips 10.0.0.1 too
    assert pool.events() == [
        BlockEvent(0, "assigned", "c", "10.0.0.1", 1, "10.0.0.1", 2),
        BlockEvent(0, "assigned", "c", "10.0.0.2", 1, "10.0.0.2", 2),
        BlockEvent(0, "released", "c", "10.0.0.1", 1, "10.0.0.1", 2),
        BlockEvent(0, "assigned", "d", "10.0.0.2", 3, "10.0.0.2", 4),
    ]


def test_drain_arguments(impl: Any) -> None:
    pool = impl("a", ranges=["10.0.0.1-10.0.0.2"], exclude=["10.0.0.2"], initial_blocks=1, max_blocks=10)
    before = snapshot(pool)
    for method in (pool.drain, pool.undrain):
        for address in ("10.0.0.3", "10.0.0.2", "::1", ipaddress.IPv6Address("::1"), 2**32, "x"):
            with pytest.raises(ArgumentError):
                method(address)  # outside, every address excluded, the other family, unparsable
        for address in (1.5, None, b"10.0.0.1"):
            with pytest.raises(TypeError):
                method(address)
    pool.undrain("10.0.0.1")  # not drained: nothing to do
    assert snapshot(pool) == before
    pool.drain(ip("10.0.0.1"))
    drained = snapshot(pool)
    pool.drain("10.0.0.1")  # drained already: nothing to do
    assert snapshot(pool) == drained
    assert pool.drained() == ["10.0.0.1"]


# -- port blocks and paired over shapes ---------------------------------------------------------------


def short_ip(impl: Any, **options: Any) -> Any:
    """10.0.0.1 with ports 1 and 4 (2 and 3 excluded), then 10.0.0.2 with ports 1-4."""
    return impl(
        "pb",
        ranges=["10.0.0.1-10.0.0.2"],
        exclude=["10.0.0.1:2-3"],
        initial_blocks=1,
        max_blocks=100,
        ports=(1, 4),
        clock=Clock(),
        **options,
    )


def test_an_ip_left_with_too_few_addresses_holds_no_port_block(impl: Any) -> None:
    pool = short_ip(impl, client_block=3)
    assert pool.allocate(client="c").address == ("10.0.0.2", 1)
    assert pool.events() == [BlockEvent(0, "assigned", "c", "10.0.0.2", 1, "10.0.0.2", 3)]


def test_a_port_block_is_consecutive_indices_of_one_ip(impl: Any) -> None:
    pool = short_ip(impl, client_block=2)
    assert addresses(pool.allocate_many(2, client="c")) == [("10.0.0.1", 1), ("10.0.0.1", 4)]
    assert pool.events() == [BlockEvent(0, "assigned", "c", "10.0.0.1", 1, "10.0.0.1", 4)]
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 1, "10.0.0.1", 4, 2, 0, 0, "c")]
    assert pool.stats().intervals == 3  # the block shown as two runs, then 10.0.0.2


def test_paired_client_moves_across_ranges(impl: Any) -> None:
    pool = impl("pr", ranges=["10.0.0.1", "10.0.0.3"], initial_blocks=2, max_blocks=100, ports=(1, 2), paired=True)
    assert pool.allocate(client="x").address == ("10.0.0.1", 1)
    assert pool.allocate().address == ("10.0.0.1", 2)
    assert pool.allocate(client="x").address == ("10.0.0.3", 1)  # no room on 10.0.0.1: the client moves
    assert pool.allocate(client="x").address == ("10.0.0.3", 2)


# -- point 5: IPv6 ------------------------------------------------------------------------------------


def test_ipv6_leases_and_address_arguments(impl: Any) -> None:
    pool = impl("v6", ranges=["2001:db8::/126"], initial_blocks=2, max_blocks=10, ports=(1000, 1001))
    lease = pool.allocate()
    assert (lease.ip, lease.port, lease.address) == ("2001:db8::1", 1000, ("2001:db8::1", 1000))
    for form in ("2001:db8::1", "2001:0db8:0000::0001", ip("2001:db8::1"), ipaddress.IPv6Address("2001:db8::1")):
        assert pool.lookup(form, 1000) == lease
    for bad in ("10.0.0.1", ipaddress.IPv4Address("10.0.0.1"), 2**128, -1):
        with pytest.raises(ArgumentError):
            pool.lookup(bad, 1000)
    reserved = pool.reserve(ipaddress.IPv6Address("2001:db8::3"), 1001)
    assert reserved.address == ("2001:db8::3", 1001)
    pool.drain(ip("2001:db8::2"))
    assert pool.drained() == ["2001:db8::2"]
    assert pool.subpools()[-1] == Subpool(1, "2001:db8::3", 1000, "2001:db8::3", 1001, 2, 1)


def ipv6_loopback_port() -> int:
    """A port free on ::1 just now; skips the test if the host has no IPv6 loopback."""
    if not socket.has_ipv6:
        pytest.skip("Python was built without IPv6")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
            return int(probe.getsockname()[1])
    except OSError as error:
        pytest.skip(f"the host has no IPv6 loopback (binding ::1 failed: {error})")


def test_an_ipv6_lease_binds_an_af_inet6_socket(impl: Any) -> None:
    port = ipv6_loopback_port()
    pool = impl("lo6", ranges=["::1"], initial_blocks=1, max_blocks=1, ports=(port, port))
    lease = pool.allocate()
    assert lease.address == ("::1", port)
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as bound:
        bound.bind(lease.address)
        assert bound.getsockname()[:2] == ("::1", port)


# -- properties of the reference model ---------------------------------------------------------------

PORT_LOW = 7


@st.composite
def shapes(draw: st.DrawFn) -> dict[str, Any]:
    """A random small shape: some of 12 IPs (IPv4 or IPv6) given as shuffled items of mixed forms,
    exclusions of every form, up to 4 ports per IP. ``exclusions`` holds each exclusion as
    ``(first n, last n, ports or None)``, IPs numbered from ``base``."""
    family = draw(st.sampled_from([4, 6]))
    base = ip("10.0.0.0") if family == 4 else ip("2001:db8::")

    def text(n: int) -> str:
        return str(ipaddress.ip_address(base + n))

    members = sorted(draw(st.sets(st.integers(1, 12), min_size=1)))
    items: list[Any] = []
    run: list[int] = []
    for n in [*members, None]:
        if run and (n is None or n != run[-1] + 1 or draw(st.booleans())):
            first, last = text(run[0]), text(run[-1])
            forms = [f"{first}-{last}", (first, last), [first, last]] if run[0] != run[-1] else [first]
            items.append(draw(st.sampled_from(forms)))
            run = []
        if n is not None:
            run.append(n)
    high = PORT_LOW + draw(st.integers(0, 3))
    exclude: list[str] = []
    exclusions: list[tuple[int, int, range | None]] = []
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.sampled_from(members))
        kind = draw(st.sampled_from(["ip", "port", "ports", "span"]))
        lo = draw(st.integers(PORT_LOW, high))
        hi = draw(st.integers(lo, high))
        host = text(n) if family == 4 else f"[{text(n)}]"
        if kind == "ip":
            exclude.append(text(n))
            exclusions.append((n, n, None))
        elif kind == "port":
            exclude.append(f"{host}:{lo}")
            exclusions.append((n, n, range(lo, lo + 1)))
        elif kind == "ports":
            exclude.append(f"{host}:{lo}-{hi}")
            exclusions.append((n, n, range(lo, hi + 1)))
        else:
            last = draw(st.integers(n, 13))
            exclude.append(f"{text(n)}-{text(last)}")
            exclusions.append((n, last, None))
    return {
        "family": family,
        "base": base,
        "members": members,
        "ranges": draw(st.permutations(items)),
        "exclude": exclude,
        "exclusions": exclusions,
        "ports": (PORT_LOW, high),
    }


def universe(shape: dict[str, Any]) -> list[tuple[int, int]]:
    """Every (ip, port) of the shape, by brute force, in ip-major order."""
    low, high = shape["ports"]
    out = []
    for n in shape["members"]:
        for port in range(low, high + 1):
            excluded = any(
                first <= n <= last and (ports is None or port in ports) for first, last, ports in shape["exclusions"]
            )
            if not excluded:
                out.append((shape["base"] + n, port))
    return out


def build(shape: dict[str, Any], **options: Any) -> Any:
    count = len(universe(shape))
    return natpool.reference.Pool(
        "h",
        ranges=shape["ranges"],
        exclude=shape["exclude"],
        initial_blocks=options.pop("initial_blocks", max(count, 1)),
        max_blocks=options.pop("max_blocks", max(count, 1)),
        ports=shape["ports"],
        **options,
    )


def flat(shape: dict[str, Any], address: str, port: int) -> int:
    return ip(address) * (shape["ports"][1] - shape["ports"][0] + 1) + port - shape["ports"][0]


@given(shape=shapes())
def test_reference_index_and_address_are_a_bijection_over_random_shapes(shape: dict[str, Any]) -> None:
    expected = universe(shape)
    if not expected:
        with pytest.raises(PoolConfigError) as info:
            build(shape)
        assert info.value.field == "exclude"
        return
    pool = build(shape)
    assert pool.address_count == len(expected)
    leases = pool.allocate_many(len(expected))  # one subpool, taken in index order
    assert [(ip(lease.ip), lease.port) for lease in leases] == expected
    low, high = shape["ports"]
    for n in range(0, 14):
        for port in range(low - 1, high + 2):
            found = pool.lookup(shape["base"] + n, port)
            if (shape["base"] + n, port) in expected:
                assert found == leases[expected.index((shape["base"] + n, port))]
            else:
                assert found is None
    # no interval record spans a gap: its addresses are consecutive
    records = pool.intervals()
    assert pool.stats().intervals == len(records)
    assert sum(record.count for record in records) == len(expected)
    for record in records:
        span = flat(shape, record.last_ip, record.last_port) - flat(shape, record.first_ip, record.first_port)
        assert span + 1 == record.count


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["allocate", "client", "free", "drain", "undrain", "reserve"]),
        st.integers(0, 13),
        st.integers(PORT_LOW - 1, PORT_LOW + 4),
    ),
    max_size=40,
)


@given(
    shape=shapes(),
    steps=STEPS,
    order=st.sampled_from(["fifo", "lifo", "random"]),
    sizes=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    client_block=st.sampled_from([None, 1, 2]),
)
def test_reference_never_hands_out_an_excluded_or_drained_address(
    shape: dict[str, Any], steps: list[tuple[str, int, int]], order: str, sizes: tuple[int, int], client_block: Any
) -> None:
    space = set(universe(shape))
    assume(space)
    assume(client_block is None or client_block <= shape["ports"][1] - shape["ports"][0] + 1)
    pool = build(
        shape,
        initial_blocks=sizes[0],
        max_blocks=max(len(space), sizes[0]),
        subpool_blocks=sizes[1],
        order=order,
        seed=7,
        client_block=client_block,
        clock=Clock(),
    )
    base = shape["base"]
    drained: set[int] = set()
    live: dict[tuple[int, int], Any] = {}

    def handed_out(lease: Any) -> None:
        address = (ip(lease.ip), lease.port)
        assert address in space, "an address outside the space (or excluded)"
        assert address[0] not in drained, "an address of a drained IP"
        assert address not in live
        live[address] = lease

    for action, n, port in steps:
        address = base + n
        on_space = any(a[0] == address for a in space)
        if action in ("allocate", "client"):
            try:
                handed_out(pool.allocate(client="c" if action == "client" else None))
            except PoolExhausted:
                pass
        elif action == "free" and live:
            key = sorted(live)[n % len(live)]
            pool.free(live.pop(key))
        elif action in ("drain", "undrain"):
            if not on_space:
                with pytest.raises(ArgumentError):
                    getattr(pool, action)(address)
                continue
            getattr(pool, action)(address)
            (drained.add if action == "drain" else drained.discard)(address)
        elif action == "reserve":
            if (address, port) not in space or address in drained:
                with pytest.raises(ArgumentError):
                    pool.reserve(address, port)
            elif (address, port) in live:
                with pytest.raises(LeaseError):
                    pool.reserve(address, port)
            else:
                try:
                    lease = pool.reserve(address, port)
                except (LeaseError, PoolExhausted):
                    continue  # in a client's port block, or no room
                assert (ip(lease.ip), lease.port) == (address, port)
                handed_out(lease)
        assert pool.drained() == [str(ipaddress.ip_address(a)) for a in sorted(drained)]
        assert pool.stats().drained == sum(1 for a in space if a[0] in drained)
        assert len(pool) == len(live)
    for record in pool.intervals():
        span = flat(shape, record.last_ip, record.last_port) - flat(shape, record.first_ip, record.first_port)
        assert span + 1 == record.count
