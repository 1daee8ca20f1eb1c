"""The policies of issue 11 on a store (issue 10): how they compose, on both implementations.

Every test runs on both stores and on every pool class of ``storekit.POOL_IMPLS`` with the
same expectations, so the Rust core is held to the reference model here too. The store's
clock is a ``storekit.Clock``; holds are timed by a ``clockkit.Clock`` of their own.
"""

from __future__ import annotations

import itertools
from typing import Any

import natpool
import pytest
from clockkit import Clock as HoldClock
from natpool.store import SQLiteStore, Store
from storekit import TTL, Clock, dump, indices, ranges, store_pool

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl

pool = store_pool


@pytest.mark.parametrize("client_block", [1, 4])
def test_client_block_is_refused_with_a_store_and_nothing_is_written(
    pool_impl: str, store: Store, client_block: int
) -> None:
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError) as refused:
        pool(pool_impl, store, "a", client_block=client_block)
    assert refused.value.field == "client_block"
    assert "store" in str(refused.value)
    assert dump(store) == before
    # Every other argument is checked first: a bad one is reported instead.
    with pytest.raises(natpool.PoolConfigError) as refused:
        pool(pool_impl, store, "a", client_block=client_block, claim_ttl=-1.0)
    assert refused.value.field == "claim_ttl"
    with pytest.raises(natpool.PoolConfigError) as refused:
        pool(pool_impl, store, "a", client_block=0)
    assert refused.value.field == "client_block"
    assert dump(store) == before
    # Without it, the same pool joins.
    with pool(pool_impl, store, "a", client_quota=2) as a:
        a.free(a.allocate(client="c"))


def test_a_subpool_with_held_blocks_keeps_its_claim_until_the_holds_end(pool_impl: str, store: Store) -> None:
    hold = HoldClock(100.0)
    a = pool(pool_impl, store, "a", hold_down=5.0, clock=hold)
    leases = a.allocate_many(12)  # 0-7, 8-11 full; the threshold growth claimed 12-15
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "claimed"), ("a", 12, 4, 3, "claimed")]
    a.free_many(leases[8:])  # subpool 1 has no live lease, but four held blocks: not idle
    assert a.stats().held == 4 and [s.held for s in a.subpools()] == [0, 4, 0]
    assert ranges(store)[1] == ("a", 8, 4, 2, "claimed")
    hold.now = 104.0
    assert indices([a.allocate()]) == [12]  # the holds have not ended: subpool 1 serves nothing
    assert ranges(store)[1] == ("a", 8, 4, 2, "claimed")
    hold.now = 105.0
    # The holds end in the allocation's first step: subpool 1 is all free and deleted (the keep
    # rule allows it), its claim returned, before the allocation takes 13.
    assert indices([a.allocate()]) == [13]
    assert a.stats().held == 0
    assert [s.first_port for s in a.subpools()] == [1000, 1012]
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "held"), ("a", 12, 4, 3, "claimed")]


def test_close_does_not_return_a_claim_with_held_blocks(pool_impl: str, store: Store) -> None:
    a = pool(pool_impl, store, "a", clock=HoldClock())
    leases = a.allocate_many(12)  # 0-7, 8-11 full; 12-15 idle
    a.free_many(leases[8:], hold=30.0)
    a.close()  # returns the idle 12-15 only: 8-11 has held blocks
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "claimed"), ("a", 12, 4, 3, "held")]


def test_a_fenced_subpool_goes_only_when_its_holds_have_ended(pool_impl: str, store: Store, clock: Clock) -> None:
    hold = HoldClock(0.0)
    a = pool(pool_impl, store, "a", hold_down=5.0, clock=hold)
    a.free(a.allocate())  # subpool 0 (0-7): no live lease, one held block
    clock.advance(TTL)  # the store lapses the claim
    a.renew()  # lost: fenced; not dropped while a block is held
    assert [(s.first_port, s.free, s.held) for s in a.subpools()] == [(1000, 7, 1)]
    assert indices([a.allocate()]) == [8]  # a new claim (8-11); the fenced subpool serves nothing
    assert [s.first_port for s in a.subpools()] == [1000, 1008]
    hold.now = 5.0
    # The hold ends in this allocation's first step: the fenced subpool is all free and
    # dropped, without a store call (the store holds the range).
    assert indices([a.allocate()]) == [9]
    assert [s.first_port for s in a.subpools()] == [1008]
    assert a.stats().held == 0
    assert ranges(store) == [("a", 0, 8, 1, "held"), ("a", 8, 4, 2, "claimed")]


@pytest.mark.parametrize("order", ["fifo", "lifo", "random"])
def test_reuse_order_on_claimed_ranges(pool_impl: str, store: Store, order: str) -> None:
    a = pool(pool_impl, store, "a", order=order, seed=7)
    b = pool(pool_impl, store, "b", order=order, seed=7)
    first = a.allocate_many(8)  # a's subpool 0 (0-7), in the order's sequence
    assert sorted(indices(first)) == list(range(8))
    if order != "random":
        assert indices(first) == list(range(8))
    assert sorted(indices(b.allocate_many(4))) == list(range(12, 16))  # a grew into 8-11 first
    a.free(first[2])
    a.free(first[5])
    expected = {"fifo": [2, 5, 8, 9, 10], "lifo": [5, 2, 8, 9, 10]}.get(order)  # subpool 0 first
    got = indices(a.allocate_many(5))
    if expected is not None:
        assert got == expected
    else:
        assert sorted(got) == sorted([*indices([first[2], first[5]]), 8, 9, 10])


def test_quota_and_paired_on_a_store(pool_impl: str, store: Store) -> None:
    a = pool(pool_impl, store, "a", client_quota=3, paired=True)
    x = a.allocate_many(2, client="c")
    y = a.allocate(client="c")
    assert {lease.ip for lease in [*x, y]} == {"10.0.0.1"}
    with pytest.raises(natpool.QuotaExceeded):
        a.allocate(client="c")
    with pytest.raises(natpool.QuotaExceeded):
        a.allocate_many(1, client="c")
    a.free(y)
    assert a.allocate(client="c").ip == "10.0.0.1"
    assert len(a.allocate_many(3, client="d")) == 3


def test_a_claim_that_finds_only_a_drained_range_again_gives_up_instead_of_looping(
    pool_impl: str, tmp_path: Any
) -> None:
    """A range handed back is held ``reclaim_delay``; on a store whose clock passes that between two transactions
    (here 1 s a read, a delay of 0.5 s) the store's first fit grants the same range again: the claim once looped
    forever on a range of a drained IP (the differential test hung on it). It now gives up when a range comes back
    a second time, and the allocation raises ``PoolExhausted``; nothing else changes."""
    store = SQLiteStore(f"{tmp_path}/s.db", clock=itertools.count(1_000_000).__next__)
    pool = store_pool(pool_impl, store, "m", claim_ttl=1e9, reclaim_delay=0.5)
    pool.drain("10.0.0.1")
    with pytest.raises(natpool.PoolExhausted):
        pool.allocate()
    assert len(pool) == 0 and pool.stats().blocks == 0
    assert [claim for claim in store.claims("vip") if claim.state == "claimed"] == []
    pool.undrain("10.0.0.1")
    assert pool.allocate().ip == "10.0.0.1"
    pool.close()
    store.close()
