"""Pools on a store: several members of one pool in one process, fencing, renewal, closing, outages.

Every test runs on both stores (SQLite, PostgreSQL) and on every pool class of
``storekit.POOL_IMPLS``. The store's clock is a ``storekit.Clock`` unless a
test needs the real one; pools renew by hand (``renew_interval=0``) unless a
test is about the renewal thread.
"""

from __future__ import annotations

import gc
import os
import random
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import natpool
import natpool.reference
import pytest
from natpool.store import Grant, SQLiteStore, Store, open_store
from storekit import (
    CONFIG,
    DELAY,
    TTL,
    Clock,
    PrivateServer,
    Recorder,
    drain,
    dump,
    fresh_url,
    indices,
    make_pool,
    open_kind,
    ranges,
    store_pool,
    wait_until,
)

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl

pool = store_pool


# -- arguments ------------------------------------------------------------------------------


def test_without_a_store_a_pool_has_no_member_and_renews_nothing(pool_impl: str) -> None:
    plain = natpool.reference.Pool(**CONFIG)
    assert plain.member is None
    plain.renew()
    lease = plain.allocate()
    with plain:
        assert plain.lookup(*lease.address) == lease
    with pytest.raises(natpool.NatPoolError, match="closed"):
        plain.allocate()
    plain.close()  # idempotent


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"store": 5}, TypeError, None),
        ({"store": b"sqlite:///x"}, TypeError, None),
        ({"member": 5}, TypeError, None),
        ({"member": ""}, natpool.PoolConfigError, "member"),
        ({"claim_ttl": "30"}, TypeError, None),
        ({"claim_ttl": True}, TypeError, None),
        ({"claim_ttl": 0}, natpool.PoolConfigError, "claim_ttl"),
        ({"claim_ttl": -1.0}, natpool.PoolConfigError, "claim_ttl"),
        ({"claim_ttl": float("inf")}, natpool.PoolConfigError, "claim_ttl"),
        ({"claim_ttl": float("nan")}, natpool.PoolConfigError, "claim_ttl"),
        ({"reclaim_delay": None}, TypeError, None),
        ({"reclaim_delay": 0.0}, natpool.PoolConfigError, "reclaim_delay"),
        ({"reclaim_delay": float("-inf")}, natpool.PoolConfigError, "reclaim_delay"),
        ({"renew_interval": "1"}, TypeError, None),
        ({"renew_interval": -0.5}, natpool.PoolConfigError, "renew_interval"),
        ({"renew_interval": float("nan")}, natpool.PoolConfigError, "renew_interval"),
        ({"renew_interval": 30.0}, natpool.PoolConfigError, "renew_interval"),
        ({"claim_ttl": 3, "renew_interval": 5}, natpool.PoolConfigError, "renew_interval"),
        ({"initial_blocks": 0}, natpool.PoolConfigError, "initial_blocks"),
    ],
)
def test_bad_store_arguments_are_typed_errors_and_write_nothing(
    pool_impl: str, store: Store, arguments: dict[str, Any], error: type[Exception], field: str | None
) -> None:
    before = dump(store)
    given = dict(arguments)
    with pytest.raises(error) as caught:
        pool(pool_impl, given.pop("store", store), given.pop("member", "a"), **given)
    if field is not None:
        assert caught.value.field == field  # type: ignore[attr-defined]
    assert dump(store) == before
    if "store" not in arguments:  # the same arguments are checked without a store too
        with pytest.raises(error):
            natpool.reference.Pool(**dict(CONFIG, **arguments))


def test_a_malformed_store_url_is_a_config_error_for_the_store(pool_impl: str, tmp_path: Path) -> None:
    with pytest.raises(natpool.PoolConfigError) as caught:
        pool(pool_impl, "sqlite://relative/store.db", "a")
    assert caught.value.field == "store"
    with pytest.raises(natpool.StoreError):
        pool(pool_impl, f"sqlite://{tmp_path}/missing/store.db", "a")
    assert list(tmp_path.iterdir()) == []


def test_a_store_url_is_opened_and_closed_by_the_pool(pool_impl: str, url: str) -> None:
    with pool(pool_impl, url, "a") as member:
        lease = member.allocate()
        watcher = open_kind(url)
        assert watcher.owner("vip", *lease.address) == "a"
    assert watcher.status("vip").members == []
    watcher.close()


def test_the_default_member_name_is_host_and_pid(pool_impl: str, store: Store) -> None:
    member = make_pool(pool_impl, store, None)
    assert member.member == f"{socket.gethostname()}:{os.getpid()}"
    member.close()


def test_two_live_pools_may_not_share_a_member_name(pool_impl: str, store: Store) -> None:
    first = pool(pool_impl, store, "a")
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError) as caught:
        pool(pool_impl, store, "a")
    assert caught.value.field == "member"
    assert dump(store) == before
    first.close()
    pool(pool_impl, store, "a").close()  # a closed member's name is free at once


def test_a_differing_configuration_is_refused_naming_the_field(pool_impl: str, store: Store) -> None:
    pool(pool_impl, store, "a")
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError) as caught:
        pool(pool_impl, store, "b", max_blocks=32)
    assert caught.value.field == "max_blocks"
    with pytest.raises(natpool.PoolConfigError) as caught:
        pool(pool_impl, store, "b", netmask="255.255.0.0")
    assert caught.value.field == "netmask"
    assert dump(store) == before
    pool(pool_impl, store, "b", netmask=24, subpool_blocks=4)  # the same, written otherwise


# -- members sharing a pool -------------------------------------------------------------------


def test_one_member_allocates_as_a_pool_without_a_store(pool_impl: str, store: Store) -> None:
    plain = natpool.reference.Pool(**CONFIG)
    member = pool(pool_impl, store, "a")
    for _ in range(40):
        ours, theirs = member.allocate(), plain.allocate()
        assert (ours.address, ours.handle) == (theirs.address, theirs.handle)
    assert member.intervals() == plain.intervals()
    assert member.subpools() == plain.subpools()
    assert member.stats() == plain.stats()
    assert [c.member for c in store.claims("vip")] == ["a"] * len(plain.subpools())


def test_members_share_the_address_space_first_fit(pool_impl: str, store: Store) -> None:
    a, b = pool(pool_impl, store, "a"), pool(pool_impl, store, "b")
    assert indices([a.allocate()]) == [0]  # the cluster's first claim: initial_blocks 0-7
    assert indices([b.allocate()]) == [8]  # then subpool_blocks: 8-11
    assert indices([b.allocate() for _ in range(3)]) == [9, 10, 11]  # the last block: b grows to 12-15
    assert indices([a.allocate() for _ in range(7)]) == [1, 2, 3, 4, 5, 6, 7]  # a grows to 16-19
    assert ranges(store) == [
        ("a", 0, 8, 1, "claimed"),
        ("b", 8, 4, 2, "claimed"),
        ("b", 12, 4, 3, "claimed"),
        ("a", 16, 4, 4, "claimed"),
    ]
    # each pool sees its own subpools; every other address is not its own (subpool None)
    assert [(i.first_port, i.last_port, i.subpool) for i in a.intervals()] == [
        (1000, 1007, 0),
        (1008, 1015, None),
        (1016, 1019, 1),
        (1020, 1031, None),
    ]
    assert [(s.id, s.first_port, s.blocks) for s in b.subpools()] == [(0, 1008, 4), (1, 1012, 4)]
    assert (len(a), len(b), a.capacity, b.capacity, a.max_blocks) == (8, 4, 64, 64, 64)
    assert a.stats().blocks == 12 and b.stats().blocks == 8
    assert a.lookup("10.0.0.1", 1008) is None and b.lookup("10.0.0.1", 1008) is not None
    assert store.owner("vip", "10.0.0.1", 1008) == "b"


def test_together_the_members_lease_exactly_the_capacity(pool_impl: str, store: Store) -> None:
    members = [pool(pool_impl, store, name, subpool_blocks=3, max_blocks=50) for name in "abc"]
    leases: dict[str, list[Any]] = {m.member: [] for m in members}
    exhausted: set[str] = set()
    rng = random.Random(7)
    while len(exhausted) < len(members):
        member = rng.choice(members)
        try:
            leases[member.member].append(member.allocate())
        except natpool.PoolExhausted:
            # only when this member has no free block and the cluster has nothing to claim
            assert member.stats().free_blocks == 0
            assert store.status("vip").claimed == 50
            exhausted.add(member.member)
    addresses = [lease.address for each in leases.values() for lease in each]
    assert len(addresses) == len(set(addresses)) == 50
    for name, each in leases.items():
        assert {store.owner("vip", *lease.address) for lease in each} == {name}
    assert sum(len(m) for m in members) == 50


def test_pool_exhausted_waits_for_held_ranges(pool_impl: str, store: Store, clock: Clock) -> None:
    a, b = pool(pool_impl, store, "a"), pool(pool_impl, store, "b")
    a_leases = drain(a)
    assert len(a_leases) == 64 and drain(b) == []
    for lease in a_leases[8:]:
        a.free(lease)  # a's subpools beyond the initial 8 are returned: held for reclaim_delay
    assert len(a.subpools()) == 1
    assert drain(b) == []  # nobody gets held addresses before reclaim_delay, however full the pool
    clock.advance(DELAY)
    assert indices(drain(b)) == list(range(8, 64))


@pytest.mark.parametrize("order", ["lifo", "fifo"])
def test_allocate_many_with_a_store_is_all_or_nothing(pool_impl: str, store: Store, order: str) -> None:
    a, b = pool(pool_impl, store, "a", order=order), pool(pool_impl, store, "b", order=order)
    a.allocate_many(50)  # a claimed 0-51
    assert indices(b.allocate_many(3)) == [52, 53, 54]  # b claimed 52-55
    with pytest.raises(natpool.PoolExhausted):
        b.allocate_many(10)  # 9 are left to b: 55 and 56-63
    assert len(b) == 3 and b.stats().live == 3
    assert [s.first_port for s in b.subpools()] == [1020, 1024, 1028]  # the subpools it claimed stay
    # The failed batch's leases were freed again, last first: LIFO puts every free list back as it
    # was (the order the batch took them); FIFO queues them as frees, so in each subpool they come
    # back after its other free blocks, last freed last.
    expected = list(range(55, 64)) if order == "lifo" else [55, 59, 58, 57, 56, 63, 62, 61, 60]
    assert indices(b.allocate_many(9)) == expected


# -- fencing ------------------------------------------------------------------------------------


def test_a_lost_claim_is_fenced_its_leases_live_on(pool_impl: str, store: Store, clock: Clock) -> None:
    a = pool(pool_impl, store, "a")
    leases = [a.allocate(data=i) for i in range(3)]  # subpool 0: 0-7
    clock.advance(TTL)  # the store lapses the claim (the member's own deadline is far off)
    a.renew()  # the store does not renew epoch 1: lost, fenced
    assert ranges(store) == [("a", 0, 8, 1, "held")]
    assert indices([a.allocate()]) == [8]  # not from subpool 0 any more: a new claim (8-11)
    assert a.lookup(*leases[0].address).data == 0  # the fenced subpool's leases stay valid
    assert len(a) == 4 and a.stats().subpools == 2
    for lease in leases:
        a.free(lease)  # the last free drops the fenced subpool, without telling the store
    assert [s.first_port for s in a.subpools()] == [1008]
    assert ranges(store) == [("a", 0, 8, 1, "held"), ("a", 8, 4, 2, "claimed")]
    with pytest.raises(natpool.LeaseError):
        a.free(leases[0])


def test_an_idle_fenced_subpool_is_dropped_at_once(pool_impl: str, store: Store, clock: Clock) -> None:
    a = pool(pool_impl, store, "a")
    a.free(a.allocate())  # subpool 0 stays (initial_blocks), empty
    clock.advance(TTL)
    a.renew()
    assert a.subpools() == [] and a.stats().blocks == 0
    assert indices([a.allocate()]) == [8]


def test_a_member_past_its_own_deadline_stops_allocating(pool_impl: str, store: Store) -> None:
    # The store's clock stands still, so only the member's own deadline (claim_ttl after it
    # asked, by its monotonic clock) can fence the subpool.
    recorder = Recorder(store)
    a = pool(pool_impl, recorder, "a", claim_ttl=0.2, renew_interval=0)
    lease = a.allocate()
    time.sleep(0.25)  # waits past the deadline; asserts nothing about durations
    assert indices([a.allocate()]) == [8]
    assert [s.first_port for s in a.subpools()] == [1000, 1008]
    assert a.lookup(*lease.address) == lease
    a.free(lease)  # drops subpool 0 without a release: the store lets it lapse
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "claimed")]
    a.renew()
    assert [call[:4] for call in recorder.calls[1:]] == [
        ("claim", "vip", "a", {"ttl": 0.2, "reclaim_delay": DELAY}),
        ("claim", "vip", "a", {"ttl": 0.2, "reclaim_delay": DELAY}),
        ("renew", "vip", "a", [2]),  # subpool 0's claim is no longer renewed
    ]


def test_a_grant_over_a_fenced_subpool_is_returned_and_claimed_again(
    pool_impl: str, store: Store, clock: Clock
) -> None:
    a = pool(pool_impl, store, "a")
    lease = a.allocate()  # subpool 0: 0-7
    clock.advance(TTL + DELAY)  # lapsed and no longer even held: the store may grant 0-7 again
    a.renew()
    assert store.claims("vip") == []
    assert indices([a.allocate()]) == [8]  # grants 0-3 and 4-7 overlap subpool 0: returned, held again
    assert ranges(store) == [("a", 0, 4, 2, "held"), ("a", 4, 4, 3, "held"), ("a", 8, 4, 4, "claimed")]
    a.free(lease)


# -- renewal --------------------------------------------------------------------------------------


def test_a_pools_store_calls(pool_impl: str, store: Store, clock: Clock) -> None:
    """Which store call each pool call makes, with which arguments (the Rust core makes the same)."""
    recorder = Recorder(store)
    a = pool(pool_impl, recorder, "a", claim_ttl=TTL, reclaim_delay=DELAY)
    leases = a.allocate_many(8)  # 0-7; the 8th takes subpool 0's last block: the threshold growth claims 8-11
    ninth = a.allocate()  # 8
    a.free(leases[0])  # no store call
    a.renew()
    a.free(a.allocate())  # index 0 again: no store call
    a.free(ninth)  # subpool 1 is empty and 12 - 4 >= initial_blocks: deleted, its claim returned
    a.close()
    config = {**CONFIG, "ports": [1000, 1031]}
    ttl = {"ttl": TTL}
    claim = {"ttl": TTL, "reclaim_delay": DELAY}
    at = clock.now + TTL
    assert recorder.calls == [
        ("join", "vip", "a", config, ttl, None),
        ("claim", "vip", "a", claim, Grant(0, 8, 1, at)),
        ("claim", "vip", "a", claim, Grant(8, 4, 2, at)),
        ("renew", "vip", "a", [1, 2], ttl, {1: at, 2: at}),
        ("release", "vip", "a", 2, {}, None),
        ("leave", "vip", "a", [], {}, None),
    ]


def test_renew_keeps_the_claims(pool_impl: str, store: Store, clock: Clock) -> None:
    a = pool(pool_impl, store, "a")
    a.allocate_many(9)  # 0-7 and 8-11
    for _ in range(5):
        clock.advance(TTL - 1)
        a.renew()
    assert [state for *_, state in ranges(store)] == ["claimed", "claimed"]
    assert indices(a.allocate_many(3)) == [9, 10, 11]


def test_the_renewal_thread_renews_and_stops_on_close(pool_impl: str, url: str) -> None:
    store = open_kind(url)  # the real clock
    before = set(threading.enumerate())
    a = pool(pool_impl, store, "a", claim_ttl=20.0, renew_interval=0.05)
    a.allocate_many(9)  # claims 0-7 and 8-11
    first = [c.expires_at for c in store.claims("vip")]
    wait_until(lambda: [c.expires_at for c in store.claims("vip")] > first, "the thread to renew the claims")
    a.close()
    after_close = store.claims("vip")
    time.sleep(0.3)  # six renewal intervals: a thread still running would have renewed (not a timing assertion)
    assert store.claims("vip") == after_close
    if pool_impl == "reference":  # a Python thread: close() joined it
        assert not [t for t in threading.enumerate() if t not in before and t.name == "natpool-renew"]
    store.close()


def test_the_renewal_thread_ends_with_a_dropped_pool(pool_impl: str, url: str) -> None:
    store = open_kind(url)  # the real clock
    a = pool(pool_impl, store, "a", claim_ttl=0.5, renew_interval=0.05)
    a.allocate()
    del a
    gc.collect()
    wait_until(lambda: [c.state for c in store.claims("vip")] == ["held"], "the dropped pool's claim to lapse")
    store.close()


# -- closing -------------------------------------------------------------------------------------


def test_close_returns_idle_subpools_and_leaves_busy_ones_to_lapse(pool_impl: str, store: Store, clock: Clock) -> None:
    a = pool(pool_impl, store, "a")
    leases = a.allocate_many(12)  # 0-7, 8-11 full; the threshold growth claimed 12-15
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "claimed"), ("a", 12, 4, 3, "claimed")]
    a.close()
    assert ranges(store) == [("a", 0, 8, 1, "claimed"), ("a", 8, 4, 2, "claimed"), ("a", 12, 4, 3, "held")]
    assert store.status("vip").members == []
    a.close()  # idempotent
    for call in (a.allocate, a.stats, a.intervals, a.subpools, a.renew, lambda: a.free(leases[0])):
        with pytest.raises(natpool.NatPoolError, match="closed"):
            call()
    with pytest.raises(natpool.NatPoolError):
        a.lookup(*leases[0].address)
    assert len(a) == 12 and a.member == "a"
    clock.advance(TTL)
    assert [state for *_, state in ranges(store)] == ["held", "held", "held"]


def test_a_pool_is_a_context_manager(pool_impl: str, store: Store) -> None:
    with pool(pool_impl, store, "a") as a:
        a.free(a.allocate())
    assert ranges(store) == [("a", 0, 8, 1, "held")]
    with pytest.raises(natpool.NatPoolError):
        a.allocate()


# -- the store down -------------------------------------------------------------------------------


def outage(a: Any, store_down: Any, store_up: Any) -> None:
    """A pool with a free block in its one subpool rides out an outage, then grows again."""
    first = [a.allocate() for _ in range(6)]  # subpool 0 (0-7): 2 blocks left
    store_down()
    before = (a.stats(), a.intervals())
    extra = [a.allocate(), a.allocate()]  # existing subpools keep serving (the growth after fails quietly)
    assert indices(extra) == [6, 7]
    stats, intervals = a.stats(), a.intervals()
    with pytest.raises(natpool.StoreError):
        a.allocate()  # a subpool is needed: the store must be asked
    assert (a.stats(), a.intervals()) == (stats, intervals)  # changed nothing
    assert a.lookup(*first[0].address) == first[0]
    a.free(extra[1])
    extra[1] = a.allocate()
    with pytest.raises(natpool.StoreError):
        a.renew()
    assert before[1] == a.intervals()
    store_up()
    a.renew()  # the store answers again
    assert indices([a.allocate()]) == [8]  # growth resumes
    for lease in [*first, *extra]:
        a.free(lease)


def test_sqlite_gone_and_back(pool_impl: str, tmp_path: Path, clock: Clock) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    store = SQLiteStore(directory / "store.db", clock=clock)
    a = pool(pool_impl, store, "a")
    outage(a, lambda: directory.rename(tmp_path / "away"), lambda: (tmp_path / "away").rename(directory))
    a.close()


def test_sqlite_locked_and_released(pool_impl: str, tmp_path: Path, clock: Clock) -> None:
    store = SQLiteStore(tmp_path / "store.db", clock=clock, timeout=0.1)
    a = pool(pool_impl, store, "a")
    locker = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    outage(a, lambda: locker.execute("BEGIN EXCLUSIVE"), lambda: locker.execute("ROLLBACK"))
    locker.close()
    a.close()


@pytest.mark.extra("postgres")
def test_postgres_stopped_and_started(pool_impl: str, clock: Clock) -> None:
    server = PrivateServer()
    try:
        store = open_store(server.url, clock=clock, timeout=2)
        a = pool(pool_impl, store, "a")
        outage(a, server.stop, server.start)
        a.close()
        store.close()
    finally:
        server.cleanup()


def test_a_free_during_an_outage_keeps_the_subpool(pool_impl: str, tmp_path: Path, clock: Clock) -> None:
    directory = tmp_path / "store"
    directory.mkdir()
    store = SQLiteStore(directory / "store.db", clock=clock)
    a = pool(pool_impl, store, "a")
    leases = a.allocate_many(9)  # 0-7, 8-11
    directory.rename(tmp_path / "away")
    a.free(leases[8])  # would delete subpool 1: the store cannot take it back, so it stays
    assert len(a.subpools()) == 2
    with pytest.raises(natpool.StoreError):
        a.close()  # closed all the same: the claims will lapse
    with pytest.raises(natpool.NatPoolError):
        a.allocate()
    (tmp_path / "away").rename(directory)
    assert [state for *_, state in ranges(store)] == ["claimed", "claimed"]


# -- the same sequence, the same results ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_equal_fresh_stores_give_equal_results(kind: str, tmp_path: Path, seed: int) -> None:
    """One single-threaded sequence on equal fresh stores, run by the reference model and by the Rust core:
    the same leases, the same store calls, the same store state."""
    results = []
    for pool_impl in ("reference", "rust"):
        clock = Clock()
        store = open_kind(fresh_url(kind, tmp_path), clock)
        recorder = Recorder(store)
        members = [pool(pool_impl, recorder, name, subpool_blocks=3, grow_threshold=1) for name in "ab"]
        rng = random.Random(seed)
        live: list[tuple[Any, Any]] = []
        trace = []
        for _ in range(300):
            member = rng.choice(members)
            step = rng.random()
            if step < 0.55:
                try:
                    lease = member.allocate()
                    live.append((member, lease))
                    trace.append((member.member, lease.address, lease.handle))
                except natpool.PoolExhausted:
                    trace.append((member.member, "exhausted"))
            elif step < 0.95 and live:
                owner, lease = live.pop(rng.randrange(len(live)))
                owner.free(lease)
            else:
                clock.advance(rng.choice([1.0, TTL / 2, DELAY]))
                for each in members:
                    each.renew()
        trace.append([m.intervals() for m in members])
        for each in members:
            each.close()
        results.append((trace, recorder.calls, dump(store)))
        store.close()
    assert results[0] == results[1]
