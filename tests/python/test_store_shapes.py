"""Shaped pools on a store (docs/shapes.md): ranges with a gap, exclusions, IPv6.

Every test runs on both stores (SQLite, PostgreSQL when enabled) and on every
pool class of ``storekit.POOL_IMPLS``.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import natpool
import pytest
from natpool.apps.store.command import status_text
from natpool.store import Store, space
from storekit import Failing, drain, dump, sql, store_pool

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl

PORTS = (1000, 1003)
SHAPES: dict[str, dict[str, Any]] = {
    # 10.0.0.1-3 and 10.0.0.8-9 (a gap), less 10.0.0.2 and two ports of 10.0.0.8: 14 addresses.
    "ipv4": {"ranges": ["10.0.0.1-10.0.0.3", "10.0.0.8-10.0.0.9"], "exclude": ["10.0.0.2", "10.0.0.8:1001-1002"]},
    # 2001:db8::1-3 and 2001:db8::10 (a gap), less two ports of 2001:db8::2: 14 addresses.
    "ipv6": {"ranges": ["2001:db8::1-2001:db8::3", "2001:db8::10"], "exclude": ["[2001:db8::2]:1000-1001"]},
}
EXPECTED = {
    "ipv4": {(f"10.0.0.{ip}", port) for ip in (1, 3, 9) for port in range(1000, 1004)}
    | {("10.0.0.8", 1000), ("10.0.0.8", 1003)},
    "ipv6": {(f"2001:db8::{ip}", port) for ip in ("1", "3", "10") for port in range(1000, 1004)}
    | {("2001:db8::2", 1002), ("2001:db8::2", 1003)},
}


@pytest.fixture(params=sorted(SHAPES))
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def shaped(pool_impl: str, store: Store, member: str, shape: str, **overrides: Any) -> Any:
    """A pool of ``SHAPES[shape]`` as ``member`` of ``store``."""
    arguments: dict[str, Any] = dict(
        first_ip=None, last_ip=None, netmask=None, ports=PORTS, initial_blocks=2, max_blocks=64, subpool_blocks=2
    )
    arguments.update(SHAPES[shape])
    arguments.update(overrides)
    return store_pool(pool_impl, store, member, **arguments)


def test_two_members_share_a_shaped_pool_without_overlap_or_excluded_addresses(
    pool_impl: str, store: Store, shape: str
) -> None:
    a = shaped(pool_impl, store, "a", shape)
    b = shaped(pool_impl, store, "b", shape)
    assert a.address_count == b.address_count == 14
    first = drain(a)  # a claims what it can first; b gets the rest
    second = drain(b)
    got_a = {lease.address for lease in first}
    got_b = {lease.address for lease in second}
    assert not got_a & got_b
    assert got_a | got_b == EXPECTED[shape]
    for lease in first:
        assert store.owner("vip", *lease.address) == "a"
    for lease in second:
        assert store.owner("vip", *lease.address) == "b"
    claimed = store.claims("vip")
    assert sum(c.count for c in claimed) == 14
    for claim in claimed:
        assert ipaddress.ip_address(claim.first_ip).version == (6 if shape == "ipv6" else 4)
        assert (claim.first_ip, claim.first_port) in EXPECTED[shape]
        assert (claim.last_ip, claim.last_port) in EXPECTED[shape]
    a.close()
    b.close()


def test_status_shows_a_shaped_pool(pool_impl: str, store: Store, shape: str) -> None:
    a = shaped(pool_impl, store, "a", shape)
    lease = a.allocate()
    status = store.status("vip")
    assert status.address_count == 14
    assert status.config["ranges"] == [list(pair) for pair in a.ranges]
    assert status.config["exclude"] == SHAPES[shape]["exclude"]
    text = status_text(store.url, [status])
    ip, port = lease.address
    if shape == "ipv6":
        assert "pool vip: 2001:db8::1-2001:db8::3, 2001:db8::10 excluding [2001:db8::2]:1000-1001" in text
        assert f"[{ip}]:{port}-" in text
    else:
        assert "pool vip: 10.0.0.1-10.0.0.3, 10.0.0.8-10.0.0.9 excluding 10.0.0.2, 10.0.0.8:1001-1002" in text
        assert f"{ip}:{port}-" in text
    a.close()


def test_the_same_space_written_otherwise_joins(pool_impl: str, store: Store) -> None:
    a = shaped(pool_impl, store, "a", "ipv4")
    # The same ranges and space: the exclusions split and overlapping, the ranges as tuples and in another order.
    b = shaped(
        pool_impl,
        store,
        "b",
        "ipv4",
        ranges=[("10.0.0.8", "10.0.0.9"), ("10.0.0.1", "10.0.0.3")],
        exclude=["10.0.0.8:1002", "10.0.0.2:1000-1001", "10.0.0.8:1001-1002", "10.0.0.2/32"],
    )
    assert {lease.address for lease in drain(a) + drain(b)} == EXPECTED["ipv4"]
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"exclude": ["10.0.0.2"]}, "exclude"),
        ({"exclude": None}, "exclude"),
        ({"ranges": ["10.0.0.1-10.0.0.3", "10.0.0.8-10.0.0.10"]}, "ranges"),
        ({"ranges": None, "exclude": None, "first_ip": "10.0.0.1", "last_ip": "10.0.0.3", "netmask": 24}, "first_ip"),
        ({"ports": (1000, 1004)}, "ports"),
    ],
)
def test_a_member_of_another_shape_is_refused(
    pool_impl: str, store: Store, overrides: dict[str, Any], field: str
) -> None:
    a = shaped(pool_impl, store, "a", "ipv4")
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError) as refused:
        shaped(pool_impl, store, "b", "ipv4", **overrides)
    assert refused.value.field == field
    assert dump(store) == before
    a.close()


def test_a_legacy_pool_with_exclusions_registers_its_shape(pool_impl: str, store: Store) -> None:
    a = store_pool(pool_impl, store, "a", exclude=["10.0.0.2:1000-1015"])
    assert a.address_count == 48
    [(config,)] = sql(store, "SELECT config FROM natpool_pools")
    assert space.loads(config)["ranges"] == [["10.0.0.1", "10.0.0.2"]]
    assert space.loads(config)["exclude"] == ["10.0.0.2:1000-1015"]
    assert all(lease.address[0] == "10.0.0.1" or lease.address[1] >= 1016 for lease in drain(a))
    a.close()


def test_a_legacy_pool_registers_the_legacy_configuration_unchanged(pool_impl: str, store: Store) -> None:
    a = store_pool(pool_impl, store, "a")
    [(config,)] = sql(store, "SELECT config FROM natpool_pools")
    assert config == (
        '{"name":"vip","first_ip":"10.0.0.1","last_ip":"10.0.0.2","netmask":"255.255.255.0",'
        '"ports":[1000,1031],"initial_blocks":8,"max_blocks":64,"subpool_blocks":4,"grow_threshold":0}'
    )
    a.close()


def test_an_ipv6_pool_beyond_the_ledger_is_refused(pool_impl: str, store: Store) -> None:
    before = dump(store)
    # 2**48 IPs x 2**15 ports = 2**63 addresses: one too many.
    with pytest.raises(natpool.PoolConfigError) as refused:
        shaped(
            pool_impl,
            store,
            "a",
            "ipv6",
            ranges=["2001:db8::-2001:db8::ffff:ffff:ffff"],
            exclude=None,
            ports=(1, 32768),
        )
    assert refused.value.field == "store"
    assert dump(store) == before
    # One address fewer joins.
    a = shaped(
        pool_impl,
        store,
        "a",
        "ipv6",
        ranges=["2001:db8::-2001:db8::ffff:ffff:ffff"],
        exclude=["[2001:db8::ffff:ffff:ffff]:1"],
        ports=(1, 32768),
    )
    assert a.address_count == 2**63 - 1
    assert a.allocate().address[0].startswith("2001:db8::")
    a.close()


def test_reserve_on_a_store_claims_the_chunk_that_holds_the_address(pool_impl: str, store: Store, shape: str) -> None:
    a = shaped(pool_impl, store, "a", shape)
    last_ip = {"ipv4": "10.0.0.9", "ipv6": "2001:db8::10"}[shape]
    wanted = (last_ip, 1003)  # the pool's last address: far from the first fit
    lease = a.reserve(*wanted, data="static")
    assert lease.address == wanted and lease.data == "static"
    assert store.owner("vip", *wanted) == "a"
    (claim,) = store.claims("vip")
    assert claim.member == "a" and claim.count == 2  # initial_blocks, from the free range's start
    assert (claim.last_ip, claim.last_port) == wanted
    assert [(s.first_ip, s.first_port, s.blocks) for s in a.subpools()] == [(claim.first_ip, claim.first_port, 2)]
    assert a.lookup(*wanted).handle == lease.handle
    # allocations are first fit: the reserved subpool's other block, then a claim from the bottom
    assert a.allocate().address == (last_ip, 1002)
    bottom = a.allocate().address
    assert bottom == min(EXPECTED[shape], key=lambda address: (ipaddress.ip_address(address[0]), address[1]))
    a.free(lease)
    assert len(store.claims("vip")) == 2
    with pytest.raises(natpool.LeaseError):
        a.reserve(*bottom)  # live
    a.close()


def test_reserve_of_an_address_another_member_claims_is_a_lease_error(pool_impl: str, store: Store) -> None:
    a = shaped(pool_impl, store, "a", "ipv4")
    b = shaped(pool_impl, store, "b", "ipv4")
    first = a.allocate()  # a claims 10.0.0.1:1000-1001
    rows = dump(store)
    for address in (first.address, ("10.0.0.1", 1001)):  # live there; free there but a's
        with pytest.raises(natpool.LeaseError):
            b.reserve(*address)
    assert dump(store) == rows
    assert b.subpools() == [] and len(b) == 0
    a.close()
    b.close()


def test_reserve_on_a_full_cluster_is_pool_exhausted(pool_impl: str, store: Store) -> None:
    a = shaped(pool_impl, store, "a", "ipv4", max_blocks=4)
    b = shaped(pool_impl, store, "b", "ipv4", max_blocks=4)
    drain(a)  # a claims the whole capacity (4 addresses) of the cluster
    with pytest.raises(natpool.PoolExhausted):
        b.reserve("10.0.0.9", 1000)
    assert b.subpools() == []
    a.close()
    b.close()


def test_reserve_keeps_off_a_drained_ip_and_local_subpools(pool_impl: str, store: Store) -> None:
    a = shaped(pool_impl, store, "a", "ipv4", initial_blocks=8, subpool_blocks=8)
    a.drain("10.0.0.3")
    lease = a.reserve("10.0.0.1", 1002)
    (claim,) = store.claims("vip")
    # the chunk of 8 from the space's start, cut at the drained IP: 10.0.0.1:1000-1003 only
    assert (claim.first_ip, claim.first_port, claim.last_ip, claim.last_port) == ("10.0.0.1", 1000, "10.0.0.1", 1003)
    assert lease.address == ("10.0.0.1", 1002)
    a.close()


def test_reserve_when_the_store_fails_is_a_store_error_and_changes_nothing(pool_impl: str, store: Store) -> None:
    a = shaped(pool_impl, Failing(store, "claim_at"), "a", "ipv4")  # type: ignore[arg-type]
    rows = dump(store)
    with pytest.raises(natpool.StoreError):
        a.reserve("10.0.0.9", 1000)
    assert dump(store) == rows
    assert a.subpools() == [] and len(a) == 0
    assert a.allocate().address == ("10.0.0.1", 1000)  # claims still work
    a.close()
