"""Contract points 4-7: the interval list, the memory pool, leases and the allocation order.

Every test runs on both implementations (the ``impl`` fixture). Expected values are
literals worked out by hand from the specification (the reference model's docstrings),
not computed by calling the model.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import natpool
import pytest
from natpool import (
    ArgumentError,
    Interval,
    LeaseError,
    NatPoolError,
    PoolConfigError,
    PoolExhausted,
    PoolStats,
    Subpool,
)

G = 1 << 64  # one generation in a handle
S = 1 << 32  # one subpool id in a handle


def snapshot(pool: Any) -> tuple[Any, ...]:
    """Everything observable about a pool's state."""
    return (pool.intervals(), pool.subpools(), pool.stats(), len(pool))


def single_ip(impl: Any, ports: int, initial: int, maximum: int = 1000, **options: Any) -> Any:
    """A pool on 10.0.0.1/32 with ports 1..ports: address index i is port i + 1."""
    return impl("t", "10.0.0.1", "10.0.0.1", 32, initial, maximum, ports=(1, ports), **options)


def free_iv(first_port: int, last_port: int) -> Interval:
    """A free interval of a ``single_ip`` pool."""
    return Interval("10.0.0.1", first_port, "10.0.0.1", last_port, last_port - first_port + 1, None)


def owned_iv(first_port: int, last_port: int, subpool: int) -> Interval:
    return Interval("10.0.0.1", first_port, "10.0.0.1", last_port, last_port - first_port + 1, subpool)


def sp(ident: int, first_port: int, last_port: int, free: int) -> Subpool:
    """A subpool record of a ``single_ip`` pool."""
    return Subpool(ident, "10.0.0.1", first_port, "10.0.0.1", last_port, last_port - first_port + 1, free)


def ports_of(leases: list[Any]) -> list[int]:
    return [lease.port for lease in leases]


def check_stats_add_up(pool: Any) -> None:
    stats = pool.stats()
    intervals = pool.intervals()
    subpools = pool.subpools()
    assert stats.live == len(pool)
    assert stats.blocks == sum(s.blocks for s in subpools)
    assert stats.free_blocks == sum(s.free for s in subpools) == stats.blocks - stats.live
    assert stats.subpools == len(subpools)
    assert stats.intervals == len(intervals)
    assert stats.free_addresses == sum(i.count for i in intervals if i.subpool is None)
    assert stats.free_addresses == stats.address_count - stats.blocks
    assert stats.address_count == pool.address_count == sum(i.count for i in intervals)
    assert stats.capacity == pool.capacity
    assert stats.blocks <= stats.capacity


# -- exceptions and records --------------------------------------------------------------------


def test_exception_hierarchy() -> None:
    for cls in (ArgumentError, PoolConfigError, PoolExhausted, LeaseError):
        assert issubclass(cls, NatPoolError)
    assert issubclass(NatPoolError, Exception)
    assert issubclass(LeaseError, LookupError)
    assert issubclass(ArgumentError, ValueError)
    assert issubclass(PoolConfigError, ValueError)
    assert not issubclass(PoolExhausted, (ValueError, LookupError))
    assert not issubclass(LeaseError, ValueError)


def test_records_are_the_shared_named_tuples(impl: Any) -> None:
    pool = single_ip(impl, 4, 1)
    pool.allocate()
    assert all(type(i) is natpool.Interval for i in pool.intervals())
    assert all(type(s) is natpool.Subpool for s in pool.subpools())
    assert type(pool.stats()) is natpool.PoolStats


# -- point 4: the interval list before the first allocation ----------------------------------------


def test_before_first_allocation_one_free_interval_and_no_memory_pool(impl: Any) -> None:
    pool = impl("e", "10.0.0.1", "10.0.0.2", 24, 2, 10, ports=(1000, 1002))
    assert pool.intervals() == [Interval("10.0.0.1", 1000, "10.0.0.2", 1002, 6, None)]
    assert pool.subpools() == []
    assert pool.stats() == PoolStats(
        live=0, free_blocks=0, blocks=0, subpools=0, intervals=1, free_addresses=6, address_count=6, capacity=6
    )
    assert len(pool) == 0
    assert pool.lookup("10.0.0.1", 1000) is None


def test_interval_bounds_leave_out_network_and_broadcast(impl: Any) -> None:
    pool = impl("n", "192.0.2.4", "192.0.2.7", 30, 1, 10, ports=(5, 6))
    assert pool.intervals() == [Interval("192.0.2.5", 5, "192.0.2.6", 6, 4, None)]
    lease = pool.allocate()
    assert lease.address == ("192.0.2.5", 5)
    assert pool.lookup("192.0.2.4", 5) is None
    assert pool.lookup("192.0.2.7", 5) is None


# -- the worked example: exact allocation order, handles, subpools and intervals --------------------


def test_worked_example(impl: Any) -> None:
    """Six addresses (two IPs x three ports), initial_blocks=2, subpool_blocks=3, grow_threshold=0, LIFO."""
    pool = impl("ex", "10.0.0.1", "10.0.0.2", 24, 2, 10, ports=(1000, 1002), subpool_blocks=3, order="lifo")

    def got(lease: Any) -> tuple[str, int, int]:
        return (lease.ip, lease.port, lease.handle)

    # The first allocate creates subpool 0 with initial_blocks=2 (indices 0-1).
    a1 = pool.allocate("a1")
    assert got(a1) == ("10.0.0.1", 1000, 0)
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 1000, "10.0.0.1", 1001, 2, 1)]
    assert pool.intervals() == [
        Interval("10.0.0.1", 1000, "10.0.0.1", 1001, 2, 0),
        Interval("10.0.0.1", 1002, "10.0.0.2", 1002, 4, None),
    ]
    # Taking the last free block leaves free_blocks == 0 <= grow_threshold: subpool 1 (3 blocks).
    a2 = pool.allocate("a2")
    assert got(a2) == ("10.0.0.1", 1001, 1)
    assert pool.subpools() == [
        Subpool(0, "10.0.0.1", 1000, "10.0.0.1", 1001, 2, 0),
        Subpool(1, "10.0.0.1", 1002, "10.0.0.2", 1001, 3, 3),
    ]
    assert pool.intervals() == [
        Interval("10.0.0.1", 1000, "10.0.0.1", 1001, 2, 0),
        Interval("10.0.0.1", 1002, "10.0.0.2", 1001, 3, 1),
        Interval("10.0.0.2", 1002, "10.0.0.2", 1002, 1, None),
    ]
    a3 = pool.allocate("a3")
    assert got(a3) == ("10.0.0.1", 1002, S)
    # Freed block of the lowest-id subpool comes back first, one generation up.
    pool.free(a1)
    a4 = pool.allocate("a4")
    assert got(a4) == ("10.0.0.1", 1000, G)
    a5 = pool.allocate("a5")
    assert got(a5) == ("10.0.0.2", 1000, S + 1)
    # Subpool 2 is clipped to the one address left (and to capacity - blocks = 1).
    a6 = pool.allocate("a6")
    assert got(a6) == ("10.0.0.2", 1001, S + 2)
    assert pool.subpools()[-1] == Subpool(2, "10.0.0.2", 1002, "10.0.0.2", 1002, 1, 1)
    a7 = pool.allocate("a7")
    assert got(a7) == ("10.0.0.2", 1002, 2 * S)
    assert pool.stats() == PoolStats(6, 0, 6, 3, 3, 0, 6, 6)
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate("a8")
    assert snapshot(pool) == before

    # Subpool 1 loses its last lease: deleted, its interval returned (neighbours are owned).
    pool.free(a3)
    pool.free(a5)
    assert pool.stats().subpools == 3
    pool.free(a6)
    assert pool.intervals() == [
        Interval("10.0.0.1", 1000, "10.0.0.1", 1001, 2, 0),
        Interval("10.0.0.1", 1002, "10.0.0.2", 1001, 3, None),
        Interval("10.0.0.2", 1002, "10.0.0.2", 1002, 1, 2),
    ]
    # Subpool 2 deleted too (2 blocks stay, == initial_blocks): its interval merges.
    pool.free(a7)
    assert pool.intervals() == [
        Interval("10.0.0.1", 1000, "10.0.0.1", 1001, 2, 0),
        Interval("10.0.0.1", 1002, "10.0.0.2", 1002, 4, None),
    ]
    # Subpool 0 is the initial allocation: kept resident once empty.
    pool.free(a2)
    pool.free(a4)
    assert pool.subpools() == [Subpool(0, "10.0.0.1", 1000, "10.0.0.1", 1001, 2, 2)]
    assert pool.stats() == PoolStats(0, 2, 2, 1, 2, 4, 6, 6)

    # LIFO within subpool 0: a4's block (freed last) first, then a2's.
    b1 = pool.allocate("b1")
    assert got(b1) == ("10.0.0.1", 1000, 2 * G)
    b2 = pool.allocate("b2")
    assert got(b2) == ("10.0.0.1", 1001, G + 1)
    # Id 1 is reused; its blocks start at the generation the old subpool 1 reached (1).
    assert pool.subpools()[-1] == Subpool(1, "10.0.0.1", 1002, "10.0.0.2", 1001, 3, 3)
    b3 = pool.allocate("b3")
    assert got(b3) == ("10.0.0.1", 1002, G + S)
    # a3's handle named the same block before the reuse: it is stale now.
    before = snapshot(pool)
    with pytest.raises(LeaseError):
        pool.free(a3.handle)
    with pytest.raises(LeaseError):
        pool.free(a3)
    assert snapshot(pool) == before
    found = pool.lookup("10.0.0.1", 1002)
    assert found == b3
    assert found.data == "b3"
    check_stats_add_up(pool)


# -- point 5: the memory pool --------------------------------------------------------------


def test_first_subpool_has_initial_blocks_later_ones_subpool_blocks(impl: Any) -> None:
    pool = single_ip(impl, 20, 3, subpool_blocks=2)
    assert ports_of([pool.allocate()]) == [1]
    assert pool.subpools() == [sp(0, 1, 3, 2)]
    assert ports_of([pool.allocate(), pool.allocate()]) == [2, 3]
    assert pool.subpools() == [sp(0, 1, 3, 0), sp(1, 4, 5, 2)]
    assert pool.stats() == PoolStats(3, 2, 5, 2, 3, 15, 20, 20)
    assert pool.intervals() == [owned_iv(1, 3, 0), owned_iv(4, 5, 1), free_iv(6, 20)]


def test_subpool_blocks_defaults_to_initial_blocks(impl: Any) -> None:
    pool = single_ip(impl, 20, 3)
    pool.allocate_many(3)
    assert pool.subpools() == [sp(0, 1, 3, 0), sp(1, 4, 6, 3)]


def test_new_subpool_clipped_to_capacity(impl: Any) -> None:
    pool = single_ip(impl, 20, 2, maximum=3, subpool_blocks=5)
    assert ports_of(pool.allocate_many(2)) == [1, 2]
    assert pool.subpools() == [sp(0, 1, 2, 0), sp(1, 3, 3, 1)]
    assert pool.intervals() == [owned_iv(1, 2, 0), owned_iv(3, 3, 1), free_iv(4, 20)]
    assert pool.allocate().port == 3
    assert pool.stats() == PoolStats(3, 0, 3, 2, 3, 17, 20, 3)
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate()
    assert snapshot(pool) == before


def test_first_subpool_clipped_to_the_address_space(impl: Any) -> None:
    pool = single_ip(impl, 3, 5, maximum=8)
    assert pool.capacity == 3
    pool.allocate()
    assert pool.subpools() == [sp(0, 1, 3, 2)]
    assert pool.intervals() == [owned_iv(1, 3, 0)]
    pool.allocate_many(2)
    with pytest.raises(PoolExhausted):
        pool.allocate()
    pool.free_many(pool.lookup("10.0.0.1", p) for p in (1, 2, 3))
    # blocks 3 < initial_blocks 5: the only subpool stays
    assert pool.subpools() == [sp(0, 1, 3, 3)]


def test_new_subpool_takes_lowest_free_interval_clipped_to_it(impl: Any) -> None:
    pool = single_ip(impl, 20, 1, subpool_blocks=3)
    a1 = pool.allocate()  # subpool 0 = port 1; then subpool 1 = ports 2-4
    assert pool.subpools() == [sp(0, 1, 1, 0), sp(1, 2, 4, 3)]
    assert ports_of(pool.allocate_many(3)) == [2, 3, 4]  # then subpool 2 = ports 5-7
    pool.free(a1)  # subpool 0 deleted: 6 blocks stay >= initial_blocks
    assert pool.intervals() == [free_iv(1, 1), owned_iv(2, 4, 1), owned_iv(5, 7, 2), free_iv(8, 20)]
    assert ports_of(pool.allocate_many(3)) == [5, 6, 7]
    # No free block left: the lowest unused id (0) takes the lowest free interval, 1 address long.
    assert pool.subpools() == [sp(0, 1, 1, 1), sp(1, 2, 4, 0), sp(2, 5, 7, 0)]
    assert pool.intervals() == [owned_iv(1, 1, 0), owned_iv(2, 4, 1), owned_iv(5, 7, 2), free_iv(8, 20)]
    lease = pool.allocate()
    assert (lease.port, lease.handle) == (1, G)  # id 0 reused at generation 1
    assert pool.subpools()[-1] == sp(3, 8, 10, 3)


def test_grow_threshold_creates_one_subpool_per_allocation(impl: Any) -> None:
    pool = single_ip(impl, 20, 2, subpool_blocks=2, grow_threshold=3)
    blocks = []
    for _ in range(4):
        pool.allocate()
        blocks.append(pool.stats().blocks)
    # free after each allocation: 1 -> grow, 2 -> grow, 3 -> grow, 4 -> no growth
    assert blocks == [4, 6, 8, 8]
    assert pool.stats().free_blocks == 4


def test_grow_threshold_one(impl: Any) -> None:
    pool = single_ip(impl, 20, 2, subpool_blocks=2, grow_threshold=1)
    pool.allocate()
    assert pool.subpools() == [sp(0, 1, 2, 1), sp(1, 3, 4, 2)]
    pool.allocate()
    assert pool.stats().subpools == 2
    assert pool.allocate().port == 3
    assert pool.subpools() == [sp(0, 1, 2, 0), sp(1, 3, 4, 1), sp(2, 5, 6, 2)]


def test_grow_threshold_stops_at_capacity(impl: Any) -> None:
    pool = single_ip(impl, 20, 2, maximum=5, subpool_blocks=2, grow_threshold=10)
    pool.allocate()
    assert pool.stats().blocks == 4
    pool.allocate()
    assert pool.subpools() == [sp(0, 1, 2, 0), sp(1, 3, 4, 2), sp(2, 5, 5, 1)]
    pool.allocate_many(3)
    assert pool.stats() == PoolStats(5, 0, 5, 3, 4, 15, 20, 5)
    with pytest.raises(PoolExhausted):
        pool.allocate()


def test_default_threshold_grows_when_the_last_free_block_is_taken(impl: Any) -> None:
    pool = single_ip(impl, 20, 2)
    pool.allocate()
    assert pool.stats().subpools == 1
    pool.allocate()
    assert pool.stats().subpools == 2
    assert pool.stats().free_blocks == 2


def test_deletion_merges_both_free_neighbours_and_keeps_initial_blocks(impl: Any) -> None:
    pool = single_ip(impl, 4, 1, subpool_blocks=1)
    a1, a2, a3, a4 = pool.allocate_many(4)
    assert [(x.port, x.handle) for x in (a1, a2, a3, a4)] == [(1, 0), (2, S), (3, 2 * S), (4, 3 * S)]
    assert pool.intervals() == [owned_iv(p, p, p - 1) for p in (1, 2, 3, 4)]
    pool.free(a1)
    assert pool.intervals() == [free_iv(1, 1), owned_iv(2, 2, 1), owned_iv(3, 3, 2), owned_iv(4, 4, 3)]
    pool.free(a3)
    assert pool.intervals() == [free_iv(1, 1), owned_iv(2, 2, 1), free_iv(3, 3), owned_iv(4, 4, 3)]
    assert pool.stats().intervals == 4
    pool.free(a2)  # merges with the free intervals on both sides
    assert pool.intervals() == [free_iv(1, 3), owned_iv(4, 4, 3)]
    assert pool.stats() == PoolStats(1, 0, 1, 1, 2, 3, 4, 4)
    pool.free(a4)  # the last subpool stays: deleting it would leave 0 < initial_blocks blocks
    assert pool.subpools() == [sp(3, 4, 4, 1)]
    assert pool.stats() == PoolStats(0, 1, 1, 1, 2, 3, 4, 4)
    again = pool.allocate()
    assert (again.port, again.handle) == (4, G + 3 * S)
    assert pool.subpools() == [sp(0, 1, 1, 1), sp(3, 4, 4, 0)]


def test_keep_initial_counts_blocks_not_the_first_subpool(impl: Any) -> None:
    pool = single_ip(impl, 10, 2, subpool_blocks=1)
    a1, a2, a3 = pool.allocate_many(3)  # subpool 0 = ports 1-2, 1 = port 3, 2 = port 4
    assert pool.subpools() == [sp(0, 1, 2, 0), sp(1, 3, 3, 0), sp(2, 4, 4, 1)]
    pool.free(a3)  # 3 blocks stay >= 2: subpool 1 deleted
    assert pool.subpools() == [sp(0, 1, 2, 0), sp(2, 4, 4, 1)]
    pool.free(a1)
    pool.free(a2)  # only 1 block would stay: subpool 0 kept
    assert pool.subpools() == [sp(0, 1, 2, 2), sp(2, 4, 4, 1)]
    assert pool.intervals() == [owned_iv(1, 2, 0), free_iv(3, 3), owned_iv(4, 4, 2), free_iv(5, 10)]


def test_first_subpool_may_be_deleted_when_others_hold_initial_blocks(impl: Any) -> None:
    pool = single_ip(impl, 10, 3)
    first = pool.allocate_many(3)  # subpool 0 = 1-3, then subpool 1 = 4-6 (empty)
    pool.free_many(first)  # 3 blocks stay in subpool 1 >= initial_blocks: subpool 0 deleted
    assert pool.subpools() == [sp(1, 4, 6, 3)]
    assert pool.intervals() == [free_iv(1, 3), owned_iv(4, 6, 1), free_iv(7, 10)]
    lease = pool.allocate()
    pool.free(lease)  # blocks would drop to 0: kept
    assert pool.subpools() == [sp(1, 4, 6, 3)]


def test_lifo_within_a_subpool_and_lowest_id_first(impl: Any) -> None:
    pool = single_ip(impl, 10, 5, order="lifo")
    leases = pool.allocate_many(5)  # subpool 0 = 1-5, then subpool 1 = 6-10
    pool.free(leases[1])
    pool.free(leases[3])
    assert ports_of([pool.allocate() for _ in range(3)]) == [4, 2, 6]
    pool.free(leases[0])  # subpool 0 has a free block again: it goes before subpool 1
    assert pool.allocate().port == 1
    assert pool.allocate().port == 7


def test_order_runs_across_ips_then_ports(impl: Any) -> None:
    pool = impl("o", "10.0.0.8", "10.0.0.10", 24, 4, 100, ports=(65534, 65535))
    got = [pool.allocate().address for _ in range(6)]
    assert got == [
        ("10.0.0.8", 65534),
        ("10.0.0.8", 65535),
        ("10.0.0.9", 65534),
        ("10.0.0.9", 65535),
        ("10.0.0.10", 65534),
        ("10.0.0.10", 65535),
    ]
    assert pool.subpools() == [
        Subpool(0, "10.0.0.8", 65534, "10.0.0.9", 65535, 4, 0),
        Subpool(1, "10.0.0.10", 65534, "10.0.0.10", 65535, 2, 0),
    ]


# -- point 6: leases --------------------------------------------------------------------------


def test_lease_attributes(impl: Any) -> None:
    pool = impl("l", "192.0.2.1", "192.0.2.2", 24, 2, 10, ports=(4000, 4001))
    payload = object()
    lease = pool.allocate(payload)
    assert lease.ip == "192.0.2.1"
    assert type(lease.ip) is str
    assert lease.port == 4000
    assert type(lease.port) is int
    assert lease.address == ("192.0.2.1", 4000)
    assert type(lease.address) is tuple
    assert lease.data is payload
    assert type(lease.handle) is int
    assert lease.handle == 0
    assert isinstance(lease, natpool.Lease if impl is natpool.Pool else natpool.reference.Lease)
    second = pool.allocate()
    assert second.data is None
    assert second.address == ("192.0.2.1", 4001)
    assert second.handle == 1


def test_lease_knows_its_pool(impl: Any) -> None:
    pool = single_ip(impl, 4, 1)
    assert pool.allocate().pool is pool


def test_lease_repr_shows_ip_and_port(impl: Any) -> None:
    pool = impl("r", "198.51.100.7", "198.51.100.7", 32, 1, 5, ports=(43210, 43219))
    text = repr(pool.allocate())
    assert "198.51.100.7" in text
    assert "43210" in text


def test_lease_equality_and_hash(impl: Any) -> None:
    pool = single_ip(impl, 4, 2)
    twin = single_ip(impl, 4, 2)
    a = pool.allocate("x")
    b = pool.allocate("y")
    t = twin.allocate("x")
    assert a == a
    assert a != b
    assert a.handle == t.handle == 0
    assert a != t  # same handle, another pool
    found = pool.lookup("10.0.0.1", 1)
    assert found == a
    assert hash(found) == hash(a)
    assert found is not a
    assert {a, b, found} == {a, b}
    assert a != a.handle
    assert a != (a.ip, a.port)
    # after a free and a reuse of the block, the new lease is a different lease
    pool.free(a)
    c = pool.allocate()
    assert c.address == a.address
    assert c != a
    assert pool.lookup("10.0.0.1", 1) == c


def test_exhaustion_exactly_at_capacity(impl: Any) -> None:
    for pool in (
        single_ip(impl, 7, 2, subpool_blocks=3),
        single_ip(impl, 7, 2, maximum=4, subpool_blocks=3),
        single_ip(impl, 2, 3, maximum=3),
        impl("x", "10.0.0.4", "10.0.0.5", 31, 1, 9, ports=(1, 2), grow_threshold=2),
    ):
        leases = [pool.allocate() for _ in range(pool.capacity)]
        assert len(pool) == pool.capacity
        assert len({x.address for x in leases}) == pool.capacity
        before = snapshot(pool)
        with pytest.raises(PoolExhausted):
            pool.allocate("nope")
        with pytest.raises(PoolExhausted):
            pool.allocate_many(1)
        with pytest.raises(PoolExhausted), pool.lease():
            pytest.fail("the context must not be entered")
        assert snapshot(pool) == before
        pool.free(leases[-1])
        assert pool.allocate().address == leases[-1].address
        check_stats_add_up(pool)


def test_pool_exhausted_is_a_natpool_error(impl: Any) -> None:
    pool = single_ip(impl, 1, 1)
    pool.allocate()
    with pytest.raises(NatPoolError) as info:
        pool.allocate()
    assert info.type is PoolExhausted


# -- free errors ------------------------------------------------------------------------------


@pytest.fixture
def busy(impl: Any) -> Any:
    """A pool with some history: live handles G (block 0 reused), 1 and S; S + 1 is a free block."""
    pool = single_ip(impl, 10, 2, subpool_blocks=2)
    leases = pool.allocate_many(3)
    pool.free(leases[0])
    reused = pool.allocate()
    assert sorted(x.handle for x in (reused, *leases[1:])) == [1, S, G]
    return pool


def test_free_by_lease_and_by_handle(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    a, b = pool.allocate(), pool.allocate()
    pool.free(a)
    pool.free(b.handle)
    assert len(pool) == 0
    assert pool.lookup("10.0.0.1", 1) is None
    assert pool.lookup("10.0.0.1", 2) is None


def test_double_free(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    keep = pool.allocate()
    lease = pool.allocate()
    pool.free(lease)
    before = snapshot(pool)
    with pytest.raises(LeaseError) as info:
        pool.free(lease)
    assert info.type is LeaseError
    with pytest.raises(LeaseError):
        pool.free(lease.handle)
    assert snapshot(pool) == before
    assert pool.lookup("10.0.0.1", 1) == keep


def test_stale_handle_after_reuse(impl: Any) -> None:
    pool = single_ip(impl, 10, 1, maximum=1)  # one block: it is the one reused, in every order
    old = pool.allocate("old")
    pool.free(old)
    new = pool.allocate("new")
    assert new.address == old.address
    assert new.handle != old.handle
    before = snapshot(pool)
    with pytest.raises(LeaseError):
        pool.free(old)
    with pytest.raises(LeaseError):
        pool.free(old.handle)
    assert snapshot(pool) == before
    assert pool.lookup(*old.address).data == "new"


def test_another_pools_lease(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    other = single_ip(impl, 10, 2)
    mine = pool.allocate()
    theirs = other.allocate()
    assert mine.handle == theirs.handle
    before, other_before = snapshot(pool), snapshot(other)
    with pytest.raises(LeaseError):
        pool.free(theirs)
    assert snapshot(pool) == before
    assert snapshot(other) == other_before
    other.free(theirs)
    pool.free(mine)


@pytest.mark.parametrize(
    "handle",
    [
        pytest.param(0, id="stale-generation"),
        pytest.param(5, id="offset-beyond-subpool"),
        pytest.param(S + 1, id="free-block-of-live-subpool"),
        pytest.param(7 * S, id="unknown-subpool"),
        pytest.param(2 * G, id="future-generation"),
        pytest.param(-1, id="negative"),
        pytest.param(-(2**80), id="very-negative"),
        pytest.param(2**96, id="beyond-96-bits"),
        pytest.param(2**200, id="huge"),
    ],
)
def test_non_live_int_handle(busy: Any, handle: int) -> None:
    before = snapshot(busy)
    with pytest.raises(LeaseError):
        busy.free(handle)
    assert snapshot(busy) == before


@pytest.mark.parametrize("bad", ["0", 0.0, None, True, False, b"\x00", (0,), [0], object()])
def test_free_wrong_type(busy: Any, bad: Any) -> None:
    before = snapshot(busy)
    with pytest.raises(TypeError):
        busy.free(bad)
    assert snapshot(busy) == before


def test_free_on_an_empty_pool(impl: Any) -> None:
    pool = single_ip(impl, 4, 1)
    before = snapshot(pool)
    with pytest.raises(LeaseError):
        pool.free(0)
    assert snapshot(pool) == before


# -- lookup -------------------------------------------------------------------------------------


def test_lookup_hit_in_every_ip_form(impl: Any) -> None:
    pool = impl("k", "192.0.2.10", "192.0.2.11", 24, 4, 100, ports=(7000, 7001))
    leases = [pool.allocate(f"conn{i}") for i in range(4)]
    target = leases[3]
    assert target.address == ("192.0.2.11", 7001)
    for ip in ("192.0.2.11", 0xC000020B, ipaddress.IPv4Address("192.0.2.11")):
        found = pool.lookup(ip, 7001)
        assert found == target
        assert found.data == "conn3"
        assert found.handle == target.handle
        assert found.address == target.address


def test_lookup_miss_and_outside(impl: Any) -> None:
    pool = impl("k", "192.0.2.4", "192.0.2.7", 30, 2, 100, ports=(7000, 7002))
    a, _ = pool.allocate(), pool.allocate()
    pool.free(a)
    before = snapshot(pool)
    assert pool.lookup("192.0.2.5", 7000) is None  # in a subpool, block free
    assert pool.lookup("192.0.2.5", 7002) is None  # in a subpool, never allocated
    assert pool.lookup("192.0.2.6", 7001) is None  # free interval
    assert pool.lookup("192.0.2.4", 7000) is None  # network address, left out
    assert pool.lookup("192.0.2.7", 7000) is None  # broadcast address, left out
    assert pool.lookup("192.0.2.8", 7000) is None  # above the range
    assert pool.lookup("10.0.0.1", 7000) is None
    assert pool.lookup("192.0.2.5", 6999) is None  # port below the range
    assert pool.lookup("192.0.2.5", 7003) is None  # port above
    assert pool.lookup("192.0.2.5", 0) is None
    assert pool.lookup("192.0.2.5", 65535) is None
    assert pool.lookup(0, 7000) is None
    assert pool.lookup("255.255.255.255", 7000) is None
    assert pool.lookup("192.0.2.5", 7001) is not None
    assert snapshot(pool) == before


@pytest.mark.parametrize(
    ("ip", "port"),
    [
        pytest.param("192.0.2.300", 7000, id="bad-ip-str"),
        pytest.param("nonsense", 7000, id="words"),
        pytest.param("", 7000, id="empty-ip"),
        pytest.param("::1", 7000, id="ipv6-text"),
        pytest.param(ipaddress.IPv6Address("::1"), 7000, id="ipv6-ip"),  # another family: a value error (shapes.md)
        pytest.param(-1, 7000, id="negative-int-ip"),
        pytest.param(2**32, 7000, id="int-ip-too-big"),
        pytest.param("192.0.2.5", -1, id="negative-port"),
        pytest.param("192.0.2.5", 65536, id="port-too-big"),
        pytest.param("192.0.2.5", 2**70, id="port-huge"),
    ],
)
def test_lookup_bad_value_is_argument_error(impl: Any, ip: Any, port: Any) -> None:
    pool = impl("k", "192.0.2.5", "192.0.2.6", 24, 2, 100, ports=(7000, 7001))
    pool.allocate()
    before = snapshot(pool)
    with pytest.raises(ArgumentError) as info:
        pool.lookup(ip, port)
    assert not isinstance(info.value, PoolConfigError)
    assert snapshot(pool) == before


@pytest.mark.parametrize(
    ("ip", "port"),
    [
        pytest.param(1.5, 7000, id="float-ip"),
        pytest.param(b"\xc0\x00\x02\x05", 7000, id="bytes-ip"),
        pytest.param(None, 7000, id="none-ip"),
        pytest.param(True, 7000, id="bool-ip"),
        pytest.param("192.0.2.5", "7000", id="str-port"),
        pytest.param("192.0.2.5", 7000.0, id="float-port"),
        pytest.param("192.0.2.5", None, id="none-port"),
        pytest.param("192.0.2.5", True, id="bool-port"),
    ],
)
def test_lookup_wrong_type(impl: Any, ip: Any, port: Any) -> None:
    pool = impl("k", "192.0.2.5", "192.0.2.6", 24, 2, 100, ports=(7000, 7001))
    pool.allocate()
    with pytest.raises(TypeError):
        pool.lookup(ip, port)


# -- the lease() context manager ------------------------------------------------------------------


def test_lease_context_frees_on_exit(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    with pool.lease("ctx") as lease:
        assert lease.data == "ctx"
        assert len(pool) == 1
        assert pool.lookup(*lease.address) == lease
    assert len(pool) == 0
    assert pool.lookup(*lease.address) is None
    with pytest.raises(LeaseError):
        pool.free(lease)


def test_lease_context_frees_on_exception(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), pool.lease() as lease:
        assert len(pool) == 1
        raise Boom
    assert len(pool) == 0
    assert pool.lookup(*lease.address) is None


def test_lease_context_tolerates_a_free_inside(impl: Any) -> None:
    pool = single_ip(impl, 10, 1, maximum=1)  # one block: it is the one reused, in every order
    with pool.lease() as lease:
        pool.free(lease)
        assert len(pool) == 0
    assert len(pool) == 0
    # freed inside and the block reused inside: the new lease survives the exit
    with pool.lease() as lease:
        pool.free(lease)
        again = pool.allocate("again")
        assert again.address == lease.address
    assert len(pool) == 1
    assert pool.lookup(*again.address) == again


def test_len(impl: Any) -> None:
    pool = single_ip(impl, 10, 3)
    assert len(pool) == 0
    leases = [pool.allocate() for _ in range(7)]
    assert len(pool) == 7
    pool.free(leases[2])
    assert len(pool) == 6
    pool.free_many(leases[3:])
    assert len(pool) == 2


# -- allocate_many -------------------------------------------------------------------------------


def test_allocate_many_equals_repeated_allocate(impl: Any) -> None:
    one = single_ip(impl, 12, 2, subpool_blocks=3, grow_threshold=1)
    many = single_ip(impl, 12, 2, subpool_blocks=3, grow_threshold=1)
    singles = [one.allocate() for _ in range(9)]
    batch = many.allocate_many(9)
    assert [(x.address, x.handle) for x in batch] == [(x.address, x.handle) for x in singles]
    assert all(x.data is None for x in batch)
    assert snapshot(one) == snapshot(many)


def test_allocate_many_all_or_nothing(impl: Any) -> None:
    pool = single_ip(impl, 10, 2, maximum=6)
    pool.allocate_many(4)
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate_many(3)
    assert snapshot(pool) == before
    assert len(pool.allocate_many(2)) == 2
    assert len(pool) == 6


def test_allocate_many_zero(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    assert pool.allocate_many(0) == []
    assert pool.stats().subpools == 0  # no memory pool is created
    pool.allocate_many(10)
    assert pool.allocate_many(0) == []  # also when exhausted


def test_allocate_many_more_than_capacity_on_a_fresh_pool(impl: Any) -> None:
    pool = single_ip(impl, 10, 2)
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate_many(11)
    assert snapshot(pool) == before


@pytest.mark.parametrize("n", [-1, -(2**70)])
def test_allocate_many_negative(impl: Any, n: int) -> None:
    pool = single_ip(impl, 10, 2)
    before = snapshot(pool)
    with pytest.raises(ArgumentError):
        pool.allocate_many(n)
    assert snapshot(pool) == before


@pytest.mark.parametrize("n", [1.0, "2", None, True, [1]])
def test_allocate_many_wrong_type(impl: Any, n: Any) -> None:
    pool = single_ip(impl, 10, 2)
    before = snapshot(pool)
    with pytest.raises(TypeError):
        pool.allocate_many(n)
    assert snapshot(pool) == before


@pytest.mark.parametrize("n", [11, 2**32, 2**63, 2**64 - 1, 2**64, 2**70], ids=lambda n: f"n={n}")
def test_allocate_many_huge_n_is_exhaustion(impl: Any, n: int) -> None:
    pool = single_ip(impl, 10, 2)
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate_many(n)
    assert snapshot(pool) == before


# -- free_many -------------------------------------------------------------------------------


def test_free_many_frees_in_order(impl: Any) -> None:
    pool = single_ip(impl, 10, 5)
    a, b, c, d = pool.allocate_many(4)
    pool.free_many([b, d.handle])  # leases and handles mix; FIFO: queued behind port 5, b's block before d's
    assert len(pool) == 2
    assert ports_of([pool.allocate(), pool.allocate(), pool.allocate()]) == [5, 2, 4]
    pool.free_many(iter([a, c]))  # any iterable
    assert len(pool) == 3
    pool.free_many([])
    assert len(pool) == 3


def test_free_many_frees_in_order_lifo(impl: Any) -> None:
    pool = single_ip(impl, 10, 5, order="lifo")
    _, b, _, d = pool.allocate_many(4)
    pool.free_many([b, d.handle])  # d's block is pushed last: on top
    assert ports_of([pool.allocate(), pool.allocate(), pool.allocate()]) == [4, 2, 5]


def test_free_many_deletes_and_merges_like_free(impl: Any) -> None:
    one = single_ip(impl, 8, 1, subpool_blocks=2)
    many = single_ip(impl, 8, 1, subpool_blocks=2)
    for pool in (one, many):
        pool.allocate_many(5)
    picks = [("10.0.0.1", p) for p in (3, 1, 2)]
    for ip, port in picks:
        one.free(one.lookup(ip, port))
    many.free_many([many.lookup(ip, port) for ip, port in picks])
    assert snapshot(one) == snapshot(many)


def test_free_many_all_or_nothing(impl: Any) -> None:
    pool = single_ip(impl, 10, 3)
    other = single_ip(impl, 10, 3)
    live = pool.allocate_many(4)
    dead = pool.allocate()
    pool.free(dead)
    foreign = other.allocate()
    before = snapshot(pool)
    bad_batches = [
        [*live, dead],  # a double free
        [dead.handle, *live],  # first item invalid
        [*live[:2], live[0]],  # duplicate lease
        [live[1], live[1].handle],  # the same lease as lease and as handle
        [*live, foreign],  # another pool's lease
        [*live, 7 * S],  # never issued
        [*live, -1],
    ]
    for batch in bad_batches:
        with pytest.raises(LeaseError):
            pool.free_many(batch)
        assert snapshot(pool) == before
    for batch in ([*live, "x"], [live[0], None], [*live, 1.0]):
        with pytest.raises(TypeError):
            pool.free_many(batch)
        assert snapshot(pool) == before
    with pytest.raises(TypeError):
        pool.free_many(5)
    assert snapshot(pool) == before
    pool.free_many(live)
    assert len(pool) == 0
    assert snapshot(other)[3] == 1


# -- stats --------------------------------------------------------------------------------------


def test_stats_add_up(impl: Any) -> None:
    pool = impl("s", "10.1.0.1", "10.1.0.3", 24, 2, 10, ports=(1, 3), subpool_blocks=3, grow_threshold=1)
    check_stats_add_up(pool)
    assert pool.stats() == PoolStats(0, 0, 0, 0, 1, 9, 9, 9)
    leases = pool.allocate_many(8)
    check_stats_add_up(pool)
    # subpools 0 (2 blocks), 1 (3), 2 (3), 3 (clipped to the last address)
    assert pool.stats() == PoolStats(8, 1, 9, 4, 4, 0, 9, 9)
    pool.free_many(leases[2:6])  # empties subpool 1: deleted
    check_stats_add_up(pool)
    assert pool.stats() == PoolStats(4, 2, 6, 3, 4, 3, 9, 9)
    pool.free_many([*leases[:2], *leases[6:]])  # subpool 0 deleted, subpool 2 kept (1 block < 2 would stay)
    check_stats_add_up(pool)
    assert pool.stats() == PoolStats(0, 4, 4, 2, 3, 5, 9, 9)
    assert [s.id for s in pool.subpools()] == [2, 3]


def test_allocate_many_beyond_memory_is_memory_error() -> None:
    """Rust only: a batch the pool could hold but the process cannot is a ``MemoryError``, not an abort.

    (The reference model would try to build the 2**39 leases one by one.)
    """
    pool = natpool.Pool("big", "10.0.0.0", "10.255.255.255", 8, 1, 2**62)
    assert pool.capacity > 2**39
    with pytest.raises(MemoryError):
        pool.allocate_many(2**39)
    assert len(pool) == 0
    assert pool.stats().blocks == 0
    assert len(pool.allocate_many(3)) == 3
