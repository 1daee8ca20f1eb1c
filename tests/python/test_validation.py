"""Contract points 1-3: the constructor, its read-only attributes, and validation.

Every case runs on both implementations (the ``impl`` fixture). Errors are checked
by exception type and by ``PoolConfigError.field``, never by message text.
"""

from __future__ import annotations

import ipaddress
import pickle
from typing import Any

import natpool
import pytest
from natpool import ArgumentError, NatPoolError, PoolConfigError

BASE: dict[str, Any] = {
    "name": "p",
    "first_ip": "192.0.2.1",
    "last_ip": "192.0.2.3",
    "netmask": 24,
    "initial_blocks": 2,
    "max_blocks": 100,
    "ports": (1000, 1009),
    "subpool_blocks": None,
    "grow_threshold": 0,
}

POSITIONAL = ("name", "first_ip", "last_ip", "netmask", "initial_blocks", "max_blocks")
KEYWORD = ("ports", "subpool_blocks", "grow_threshold")
ATTRIBUTES = (*POSITIONAL, *KEYWORD, "address_count", "capacity")


def build(impl: Any, **overrides: Any) -> Any:
    """Construct ``impl`` from BASE with overrides: the six positional parameters positionally."""
    config = {**BASE, **overrides}
    return impl(*(config[k] for k in POSITIONAL), **{k: config[k] for k in KEYWORD})


def attributes(pool: Any) -> dict[str, Any]:
    return {name: getattr(pool, name) for name in ATTRIBUTES}


def config_error(impl: Any, **overrides: Any) -> PoolConfigError:
    with pytest.raises(PoolConfigError) as info:
        build(impl, **overrides)
    return info.value


# -- PoolConfigError: (overrides, field) ---------------------------------------------------

CONFIG_ERRORS: list[tuple[str, dict[str, Any], str]] = [
    # empty name
    ("empty-name", {"name": ""}, "name"),
    # unparsable IP strings
    ("first-ip-octet-300", {"first_ip": "192.0.2.300"}, "first_ip"),
    ("first-ip-words", {"first_ip": "not an ip"}, "first_ip"),
    ("first-ip-empty", {"first_ip": ""}, "first_ip"),
    ("first-ip-three-octets", {"first_ip": "192.0.2"}, "first_ip"),
    ("first-ip-ipv6-text", {"first_ip": "::1"}, "first_ip"),
    ("first-ip-ipv6", {"first_ip": ipaddress.IPv6Address("::1")}, "first_ip"),  # IPv6 with an IPv4 last_ip
    ("last-ip-words", {"last_ip": "last"}, "last_ip"),
    ("last-ip-five-octets", {"last_ip": "192.0.2.3.4"}, "last_ip"),
    # out-of-range int IPs
    ("first-ip-int-negative", {"first_ip": -1}, "first_ip"),
    ("first-ip-int-2**32", {"first_ip": 2**32}, "first_ip"),
    ("last-ip-int-2**32", {"last_ip": 2**32}, "last_ip"),
    ("last-ip-int-huge", {"last_ip": 2**80}, "last_ip"),
    # unparsable netmask
    ("netmask-octet-256", {"netmask": "255.255.255.256"}, "netmask"),
    ("netmask-words", {"netmask": "mask"}, "netmask"),
    ("netmask-empty", {"netmask": ""}, "netmask"),
    ("netmask-slash", {"netmask": "/24"}, "netmask"),
    # non-contiguous masks
    ("netmask-hole", {"netmask": "255.0.255.0"}, "netmask"),
    ("netmask-low-bit", {"netmask": "255.255.255.1"}, "netmask"),
    ("netmask-inverse", {"netmask": "0.0.0.255"}, "netmask"),
    # prefix outside 0..32
    ("prefix-33", {"netmask": 33}, "netmask"),
    ("prefix-negative", {"netmask": -1}, "netmask"),
    ("prefix-huge", {"netmask": 2**70}, "netmask"),
    # first_ip > last_ip
    ("first-above-last", {"first_ip": "192.0.2.3", "last_ip": "192.0.2.1"}, "last_ip"),
    ("first-above-last-int", {"first_ip": 0xC0000203, "last_ip": 0xC0000202}, "last_ip"),
    # first and last in different subnets
    ("different-/24", {"first_ip": "192.0.2.1", "last_ip": "192.0.3.1"}, "netmask"),
    ("different-/30", {"first_ip": "192.0.2.2", "last_ip": "192.0.2.5", "netmask": 30}, "netmask"),
    ("different-/32", {"first_ip": "192.0.2.2", "last_ip": "192.0.2.3", "netmask": "255.255.255.255"}, "netmask"),
    # ports outside 1..65535, reversed, wrong length
    ("ports-zero", {"ports": (0, 10)}, "ports"),
    ("ports-negative", {"ports": (-5, 10)}, "ports"),
    ("ports-above-65535", {"ports": (1000, 65536)}, "ports"),
    ("ports-both-above", {"ports": (70000, 80000)}, "ports"),
    ("ports-huge", {"ports": (1, 2**70)}, "ports"),
    ("ports-reversed", {"ports": (2000, 1000)}, "ports"),
    ("ports-reversed-list", {"ports": [2, 1]}, "ports"),
    ("ports-three", {"ports": (1000, 1001, 1002)}, "ports"),
    ("ports-one", {"ports": (1000,)}, "ports"),
    ("ports-empty-tuple", {"ports": ()}, "ports"),
    ("ports-empty-list", {"ports": []}, "ports"),
    # initial_blocks < 1 (and above a subpool's u32 size)
    ("initial-zero", {"initial_blocks": 0}, "initial_blocks"),
    ("initial-negative", {"initial_blocks": -3}, "initial_blocks"),
    ("initial-above-u32", {"initial_blocks": 2**32, "max_blocks": 2**33}, "initial_blocks"),
    # max_blocks < initial_blocks
    ("max-below-initial", {"initial_blocks": 5, "max_blocks": 4}, "max_blocks"),
    ("max-zero", {"max_blocks": 0}, "max_blocks"),
    ("max-negative", {"max_blocks": -1}, "max_blocks"),
    # subpool_blocks < 1 (and above u32)
    ("subpool-zero", {"subpool_blocks": 0}, "subpool_blocks"),
    ("subpool-negative", {"subpool_blocks": -2}, "subpool_blocks"),
    ("subpool-above-u32", {"subpool_blocks": 2**32}, "subpool_blocks"),
    # grow_threshold < 0
    ("threshold-negative", {"grow_threshold": -1}, "grow_threshold"),
    ("threshold-very-negative", {"grow_threshold": -(2**70)}, "grow_threshold"),
    # no usable address
    ("only-network-/24", {"first_ip": "192.0.2.0", "last_ip": "192.0.2.0"}, "first_ip"),
    ("only-broadcast-/24", {"first_ip": "192.0.2.255", "last_ip": "192.0.2.255"}, "first_ip"),
    ("only-network-/30", {"first_ip": "192.0.2.4", "last_ip": "192.0.2.4", "netmask": 30}, "first_ip"),
    ("only-broadcast-/30", {"first_ip": "192.0.2.7", "last_ip": "192.0.2.7", "netmask": 30}, "first_ip"),
    ("only-network-/0", {"first_ip": "0.0.0.0", "last_ip": "0.0.0.0", "netmask": 0}, "first_ip"),
]


@pytest.mark.parametrize(("overrides", "field"), [pytest.param(o, f, id=i) for i, o, f in CONFIG_ERRORS])
def test_config_error_names_the_field(impl: Any, overrides: dict[str, Any], field: str) -> None:
    error = config_error(impl, **overrides)
    assert error.field == field
    assert isinstance(error, ValueError)
    assert isinstance(error, ArgumentError)
    assert isinstance(error, NatPoolError)


def test_config_error_pickles_with_its_field(impl: Any) -> None:
    error = config_error(impl, ports=(5, 1))
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is PoolConfigError
    assert copy.field == "ports"
    assert copy.reason == error.reason


def test_config_error_hierarchy() -> None:
    assert issubclass(PoolConfigError, ValueError)
    assert issubclass(PoolConfigError, ArgumentError)
    assert issubclass(PoolConfigError, NatPoolError)
    assert natpool.PoolConfigError is PoolConfigError


# -- TypeError ------------------------------------------------------------------------------

TYPE_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("name-none", {"name": None}),
    ("name-bytes", {"name": b"p"}),
    ("name-int", {"name": 1}),
    ("first-ip-float", {"first_ip": 3221225985.0}),
    ("first-ip-bytes", {"first_ip": b"\xc0\x00\x02\x01"}),
    ("first-ip-bytearray", {"first_ip": bytearray(b"\xc0\x00\x02\x01")}),
    ("first-ip-bool", {"first_ip": True}),
    ("first-ip-none", {"first_ip": None}),
    ("first-ip-tuple", {"first_ip": (192, 0, 2, 1)}),
    ("last-ip-float", {"last_ip": 3.0}),
    ("last-ip-bytes", {"last_ip": b"192.0.2.3"}),
    ("netmask-float", {"netmask": 24.0}),
    ("netmask-none", {"netmask": None}),
    ("netmask-bool", {"netmask": True}),
    ("netmask-bytes", {"netmask": b"255.255.255.0"}),
    ("initial-bool", {"initial_blocks": True}),
    ("initial-float", {"initial_blocks": 2.0}),
    ("initial-str", {"initial_blocks": "2"}),
    ("initial-none", {"initial_blocks": None}),
    ("max-bool", {"max_blocks": True, "initial_blocks": 1}),
    ("max-float", {"max_blocks": 100.0}),
    ("max-none", {"max_blocks": None}),
    ("ports-int", {"ports": 1024}),
    ("ports-str", {"ports": "1000-2000"}),
    ("ports-set", {"ports": {1000, 2000}}),
    ("ports-floats", {"ports": (1000.0, 2000.0)}),
    ("ports-strs", {"ports": ("1000", "2000")}),
    ("ports-bools", {"ports": (True, True)}),
    ("ports-none-items", {"ports": (None, None)}),
    ("subpool-bool", {"subpool_blocks": True}),
    ("subpool-float", {"subpool_blocks": 3.0}),
    ("subpool-str", {"subpool_blocks": "3"}),
    ("threshold-float", {"grow_threshold": 0.5}),
    ("threshold-bool", {"grow_threshold": False}),
]


@pytest.mark.parametrize("overrides", [pytest.param(o, id=i) for i, o in TYPE_ERRORS])
def test_wrong_type_raises_type_error(impl: Any, overrides: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as info:
        build(impl, **overrides)
    assert not isinstance(info.value, NatPoolError)


# -- the three validation phases and their order ----------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # phase 1 (types and parsing) runs before phase 2 (ranges)
        pytest.param({"name": "", "initial_blocks": 1.5}, TypeError, id="type-before-empty-name"),
        pytest.param({"name": "", "first_ip": "bad"}, "first_ip", id="parse-before-empty-name"),
        pytest.param({"name": "", "netmask": "255.0.255.0"}, "netmask", id="mask-before-empty-name"),
        pytest.param({"grow_threshold": -1, "ports": (1, 2, 3)}, "ports", id="ports-length-before-threshold"),
        # phase 1 runs in signature order
        pytest.param({"first_ip": "bad", "last_ip": "bad"}, "first_ip", id="first-before-last"),
        pytest.param({"first_ip": 1.5, "last_ip": "bad"}, TypeError, id="first-type-before-last-parse"),
        pytest.param({"first_ip": "bad", "last_ip": 1.5}, "first_ip", id="first-parse-before-last-type"),
        pytest.param({"last_ip": -1, "netmask": 33}, "last_ip", id="last-before-netmask"),
        pytest.param({"netmask": 33, "grow_threshold": None}, "netmask", id="netmask-before-threshold-type"),
        # phase 2 (ranges) runs before phase 3 (relations), in the documented order
        pytest.param({"name": "", "ports": (2, 1)}, "name", id="name-before-ports"),
        pytest.param({"ports": (2, 1), "initial_blocks": 0}, "ports", id="ports-before-initial"),
        pytest.param({"initial_blocks": 0, "max_blocks": -1}, "initial_blocks", id="initial-before-max"),
        pytest.param({"max_blocks": 1, "initial_blocks": 2, "subpool_blocks": 0}, "max_blocks", id="max-before-sub"),
        pytest.param({"subpool_blocks": 0, "grow_threshold": -1}, "subpool_blocks", id="sub-before-threshold"),
        pytest.param(
            {"first_ip": "192.0.2.9", "last_ip": "192.0.2.1", "grow_threshold": -1},
            "grow_threshold",
            id="ranges-before-relations",
        ),
        # phase 3 order: first > last, then one subnet, then a usable address
        pytest.param({"first_ip": "192.0.3.1", "last_ip": "192.0.2.1"}, "last_ip", id="order-before-subnet"),
        pytest.param({"first_ip": "192.0.2.0", "last_ip": "192.0.3.0"}, "netmask", id="subnet-before-usable-address"),
    ],
)
def test_validation_phase_order(impl: Any, overrides: dict[str, Any], expected: Any) -> None:
    if expected is TypeError:
        with pytest.raises(TypeError):
            build(impl, **overrides)
    else:
        assert config_error(impl, **overrides).field == expected


# -- accepted forms ------------------------------------------------------------------------


def test_attributes_of_a_valid_pool(impl: Any) -> None:
    pool = build(impl, subpool_blocks=3, grow_threshold=1)
    assert attributes(pool) == {
        "name": "p",
        "first_ip": "192.0.2.1",
        "last_ip": "192.0.2.3",
        "netmask": "255.255.255.0",
        "initial_blocks": 2,
        "max_blocks": 100,
        "ports": (1000, 1009),
        "subpool_blocks": 3,
        "grow_threshold": 1,
        "address_count": 30,
        "capacity": 30,
    }
    assert type(pool.ports) is tuple
    assert type(pool.first_ip) is str
    assert type(pool.netmask) is str


def test_defaults(impl: Any) -> None:
    pool = impl("default", "198.51.100.1", "198.51.100.1", 24, 3, 10)
    assert pool.ports == (1024, 65535)
    assert pool.subpool_blocks == 3  # defaults to initial_blocks
    assert pool.grow_threshold == 0
    assert pool.address_count == 65535 - 1024 + 1
    assert pool.capacity == 10


def test_none_means_the_default_for_options(impl: Any) -> None:
    pool = impl("n", "198.51.100.1", "198.51.100.1", 24, 3, 10, ports=None, subpool_blocks=None, grow_threshold=None)
    assert (pool.ports, pool.subpool_blocks, pool.grow_threshold) == ((1024, 65535), 3, 0)


def test_keyword_arguments(impl: Any) -> None:
    pool = impl(
        name="kw",
        first_ip="192.0.2.1",
        last_ip="192.0.2.2",
        netmask=24,
        initial_blocks=1,
        max_blocks=4,
        ports=(5, 6),
        subpool_blocks=2,
        grow_threshold=0,
    )
    assert (pool.name, pool.address_count, pool.capacity, pool.subpool_blocks) == ("kw", 4, 4, 2)


def test_ports_and_options_are_keyword_only(impl: Any) -> None:
    with pytest.raises(TypeError):
        impl("p", "192.0.2.1", "192.0.2.3", 24, 2, 100, (1000, 1009))


@pytest.mark.parametrize(
    ("first_ip", "last_ip"),
    [
        pytest.param("192.0.2.1", "192.0.2.3", id="str"),
        pytest.param(0xC0000201, 0xC0000203, id="int"),
        pytest.param(ipaddress.IPv4Address("192.0.2.1"), ipaddress.IPv4Address("192.0.2.3"), id="IPv4Address"),
        pytest.param("192.0.2.1", 0xC0000203, id="mixed"),
    ],
)
@pytest.mark.parametrize("netmask", [24, "255.255.255.0"], ids=["prefix", "dotted"])
def test_accepted_forms_give_equal_attributes(impl: Any, first_ip: Any, last_ip: Any, netmask: Any) -> None:
    reference = attributes(build(impl))
    assert attributes(build(impl, first_ip=first_ip, last_ip=last_ip, netmask=netmask)) == reference


def test_ports_as_list(impl: Any) -> None:
    pool = build(impl, ports=[1000, 1009])
    assert pool.ports == (1000, 1009)
    assert type(pool.ports) is tuple


@pytest.mark.parametrize(
    ("prefix", "dotted"), [(0, "0.0.0.0"), (8, "255.0.0.0"), (31, "255.255.255.254"), (32, "255.255.255.255")]
)
def test_netmask_prefix_and_dotted_agree(impl: Any, prefix: int, dotted: str) -> None:
    a = impl("m", "10.0.0.4", "10.0.0.4", prefix, 1, 1, ports=(1, 1))
    b = impl("m", "10.0.0.4", "10.0.0.4", dotted, 1, 1, ports=(1, 1))
    assert a.netmask == b.netmask == dotted
    assert attributes(a) == attributes(b)


def test_extreme_ports_and_ips_are_accepted(impl: Any) -> None:
    pool = impl("edge", 0, "0.0.0.0", 32, 1, 1, ports=(1, 65535))
    assert (pool.first_ip, pool.last_ip, pool.address_count) == ("0.0.0.0", "0.0.0.0", 65535)
    pool = impl("edge", "255.255.255.255", 2**32 - 1, 32, 1, 1, ports=(65535, 65535))
    assert (pool.first_ip, pool.address_count, pool.capacity) == ("255.255.255.255", 1, 1)


def test_huge_max_blocks_is_clipped_to_u64(impl: Any) -> None:
    pool = build(impl, max_blocks=2**70)
    assert pool.max_blocks == 2**64 - 1
    assert pool.capacity == pool.address_count == 30


def test_initial_blocks_may_exceed_the_address_space(impl: Any) -> None:
    pool = build(impl, initial_blocks=50, max_blocks=60)
    assert (pool.initial_blocks, pool.max_blocks, pool.capacity) == (50, 60, 30)


# -- address_count and capacity ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_ip", "last_ip", "netmask", "ports", "address_count"),
    [
        pytest.param("192.0.2.1", "192.0.2.3", 24, (1000, 1009), 30, id="/24-inside"),
        pytest.param("192.0.2.0", "192.0.2.255", 24, (7, 7), 254, id="/24-whole-subnet"),
        pytest.param("192.0.2.0", "192.0.2.1", 24, (7, 8), 2, id="/24-network-left-out"),
        pytest.param("192.0.2.254", "192.0.2.255", 24, (7, 8), 2, id="/24-broadcast-left-out"),
        pytest.param("192.0.2.4", "192.0.2.7", 30, (1, 3), 6, id="/30-whole"),
        pytest.param("192.0.2.4", "192.0.2.5", 30, (1, 3), 3, id="/30-network-left-out"),
        pytest.param("192.0.2.6", "192.0.2.7", 30, (1, 3), 3, id="/30-broadcast-left-out"),
        pytest.param("192.0.2.5", "192.0.2.6", 30, (1, 3), 6, id="/30-inside"),
        pytest.param("192.0.2.4", "192.0.2.5", 31, (1, 3), 6, id="/31-both-usable"),
        pytest.param("192.0.2.4", "192.0.2.4", 31, (1, 3), 3, id="/31-even"),
        pytest.param("192.0.2.5", "192.0.2.5", 31, (1, 3), 3, id="/31-odd"),
        pytest.param("192.0.2.4", "192.0.2.4", 32, (1, 3), 3, id="/32"),
        pytest.param("192.0.2.255", "192.0.2.255", "255.255.255.255", (1, 1), 1, id="/32-dotted"),
        pytest.param("0.0.0.0", "0.0.0.2", 0, (1, 2), 4, id="/0-network-left-out"),
        pytest.param("255.255.255.254", "255.255.255.255", 0, (1, 2), 2, id="/0-broadcast-left-out"),
        pytest.param("10.0.0.0", "10.0.1.255", 23, (1, 1), 510, id="/23"),
    ],
)
def test_address_count(
    impl: Any, first_ip: str, last_ip: str, netmask: Any, ports: tuple[int, int], address_count: int
) -> None:
    big = impl("c", first_ip, last_ip, netmask, 1, 10**6, ports=ports)
    assert big.address_count == address_count
    assert big.capacity == address_count
    small = impl("c", first_ip, last_ip, netmask, 1, 2, ports=ports)
    assert small.address_count == address_count
    assert small.capacity == min(2, address_count)
    # the attributes keep the configured range, not the usable one
    assert (big.first_ip, big.last_ip) == (first_ip, last_ip)


def test_capacity_is_min_of_max_blocks_and_address_count(impl: Any) -> None:
    assert build(impl, max_blocks=7).capacity == 7
    assert build(impl, max_blocks=30).capacity == 30
    assert build(impl, max_blocks=31).capacity == 30


# -- read-only attributes ------------------------------------------------------------------------


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_pool_attributes_are_read_only(impl: Any, attribute: str) -> None:
    pool = build(impl)
    before = attributes(pool)
    with pytest.raises(AttributeError):
        setattr(pool, attribute, before[attribute])
    assert attributes(pool) == before


@pytest.mark.parametrize("attribute", ["ip", "port", "address", "data", "handle"])
def test_lease_attributes_are_read_only(impl: Any, attribute: str) -> None:
    pool = build(impl)
    lease = pool.allocate("payload")
    with pytest.raises(AttributeError):
        setattr(lease, attribute, getattr(lease, attribute))
    assert (lease.ip, lease.port, lease.data) == ("192.0.2.1", 1000, "payload")
