"""Snapshot and restore of a pool on a store (docs/shapes.md, "Snapshot format"; ``Store.reclaim``).

A member that restarts from its snapshot joins the cluster again and claims exactly its subpools' ranges
back: its own claims from before the restart, still claimed or held for it, or free ranges. A range that
another member took meanwhile makes the restore a ``SnapshotError``, and nothing is built. Every test runs on
both stores and both pool classes (``storefixtures``).
"""

from __future__ import annotations

from typing import Any

import natpool
import pytest
from natpool.store import Store
from storekit import DELAY, TTL, Clock, Failing, drain, store_pool

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl


def claims(store: Store) -> list[tuple[str, int, int, str]]:
    """The claims as (member, first port of 10.0.0.1 or 32 + port of 10.0.0.2, count, state)."""
    return [
        (c.member, (c.first_ip == "10.0.0.2") * 32 + c.first_port - 1000, c.count, c.state) for c in store.claims("vip")
    ]


def served(pool_impl: str, store: Store) -> tuple[Any, list[Any], bytes]:
    """Member a with leases in two subpools (one freed: a block of the second is free) and its snapshot."""
    a = store_pool(pool_impl, store, "a")
    leases = [a.allocate(data=i) for i in range(10)]  # 0-7 (8 blocks), then 8-11 (4)
    a.free(leases.pop(3))
    return a, leases, a.snapshot()


def crash(store: Store, clock: Clock) -> None:
    """Member a dies: its heartbeat and claims lapse in the store (the claims held for it, ``DELAY``)."""
    clock.advance(TTL)
    store.release("vip", "nobody", 0)  # a write transaction (a no-op) expires what lapsed


def restore(pool_impl: str, snapshot: bytes, store: Store, member: str = "a", **options: Any) -> Any:
    cls = natpool.Pool if pool_impl == "rust" else natpool.reference.Pool
    return cls.restore(
        snapshot, store=store, member=member, claim_ttl=TTL, reclaim_delay=DELAY, renew_interval=0, **options
    )


def test_a_restarted_member_claims_its_held_ranges_back_and_serves_its_leases(
    pool_impl: str, store: Store, clock: Clock
) -> None:
    _, leases, snapshot = served(pool_impl, store)
    crash(store, clock)
    assert claims(store) == [("a", 0, 8, "held"), ("a", 8, 4, "held")]
    b = store_pool(pool_impl, store, "b")
    assert b.allocate().address == ("10.0.0.1", 1012)  # not in a's held ranges
    restored = restore(pool_impl, snapshot, store, data={lease.handle: lease.data for lease in leases})
    assert claims(store) == [("a", 0, 8, "claimed"), ("a", 8, 4, "claimed"), ("b", 12, 4, "claimed")]
    assert restored.member == "a" and restored.snapshot() == snapshot
    for lease in leases:
        found = restored.lookup(*lease.address)
        assert found is not None and found.handle == lease.handle and found.data == lease.data
    assert restored.allocate().address == ("10.0.0.1", 1003)  # the freed block, in its subpool
    for lease in leases:
        restored.free(lease.handle)  # the second subpool empties: its claim is returned (held)
    assert [(first, state) for member, first, _, state in claims(store) if member == "a"] == [
        (0, "claimed"),  # 1003 lives on
        (8, "held"),
    ]
    restored.close()
    b.close()


def test_a_member_restored_after_a_clean_stop_takes_back_its_busy_claims(pool_impl: str, store: Store) -> None:
    a, leases, snapshot = served(pool_impl, store)
    a.close()  # both subpools have live leases: their claims stay a's
    restored = restore(pool_impl, snapshot, store)
    assert [(member, state) for member, *_, state in claims(store)] == [("a", "claimed"), ("a", "claimed")]
    assert len(restored) == len(leases)
    restored.close()


def test_ranges_another_member_took_make_the_restore_a_snapshot_error_and_nothing_is_built(
    pool_impl: str, store: Store, clock: Clock
) -> None:
    _, _, snapshot = served(pool_impl, store)
    crash(store, clock)
    clock.advance(DELAY)  # a's holds end: its ranges are free
    b = store_pool(pool_impl, store, "b")
    drain(b)  # b claims the whole cluster
    before = claims(store)
    with pytest.raises(natpool.SnapshotError):
        restore(pool_impl, snapshot, store)
    assert claims(store) == before
    assert [m.member for m in store.status("vip").members] == ["b"]  # a joined and left again
    b.close()


def test_a_live_member_of_the_same_name_refuses_the_restore(pool_impl: str, store: Store) -> None:
    a, _, snapshot = served(pool_impl, store)
    before = claims(store)
    with pytest.raises(natpool.PoolConfigError) as refused:
        restore(pool_impl, snapshot, store)
    assert refused.value.field == "member"
    assert claims(store) == before
    a.close()


def test_a_store_that_fails_the_reclaim_is_a_store_error_and_the_member_leaves(
    pool_impl: str, store: Store, clock: Clock
) -> None:
    _, _, snapshot = served(pool_impl, store)
    crash(store, clock)
    before = claims(store)
    with pytest.raises(natpool.StoreError):
        restore(pool_impl, snapshot, Failing(store, "reclaim"))  # type: ignore[arg-type]
    assert claims(store) == before
    assert store.status("vip").members == []
    restored = restore(pool_impl, snapshot, store)  # the store is back: the ranges are still a's
    assert len(restored) == 9
    restored.close()


def test_a_snapshot_without_subpools_joins_without_a_claim(pool_impl: str, store: Store) -> None:
    a = store_pool(pool_impl, store, "a")
    snapshot = a.snapshot()
    a.close()
    restored = restore(pool_impl, snapshot, store)
    assert claims(store) == [] and [m.member for m in store.status("vip").members] == ["a"]
    assert restored.allocate().address == ("10.0.0.1", 1000)
    restored.close()


def test_bad_store_arguments_to_restore_are_refused_before_the_snapshot_is_read(pool_impl: str, store: Store) -> None:
    cls = natpool.Pool if pool_impl == "rust" else natpool.reference.Pool
    with pytest.raises(TypeError):
        cls.restore(b"not a snapshot", store=42)
    with pytest.raises(natpool.PoolConfigError) as refused:
        cls.restore(b"not a snapshot", store=store, member="")
    assert refused.value.field == "member"
    with pytest.raises(natpool.SnapshotError):
        cls.restore(b"not a snapshot", store=store, member="a")
    assert "vip" not in store.pools()  # nothing reached the store
