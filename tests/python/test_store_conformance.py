"""The store protocol, one suite for both stores (SQLite in tmp_path, PostgreSQL from storekit's server).

Time is a settable clock (``storekit.Clock``) given to the store, except in
the tests named ``…real_clock…``, which use the store's own clock: they check
"not before" with long delays and "after" by polling with a hang guard.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from pathlib import Path
from typing import Any

import natpool
import pytest
from natpool.extras import MissingExtra
from natpool.store import CONFIG_FIELDS, SCHEMA_VERSION, Claim, Grant, Store, open_store
from storekit import CONFIG, Clock, dump, fresh_postgres_url, open_kind, sql, wait_until

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl

TTL = 30.0
DELAY = 60.0


def joined(store: Store, *members: str, config: dict[str, Any] | None = None) -> None:
    for member in members:
        store.join("vip", member, CONFIG if config is None else config, ttl=TTL)


def claim(store: Store, member: str, ttl: float = TTL, delay: float = DELAY) -> Grant | None:
    return store.claim("vip", member, ttl=ttl, reclaim_delay=delay)


def head(grant: Grant | None) -> tuple[int, int, int] | None:
    """A grant without its expiry: (first, count, epoch)."""
    return None if grant is None else (grant.first, grant.count, grant.epoch)


def spans(store: Store) -> list[tuple[str, str, int, int, int, str]]:
    """The claims as (member, first ip, first port, last port, epoch, state)."""
    return [(c.member, c.first_ip, c.first_port, c.last_port, c.epoch, c.state) for c in store.claims("vip")]


# -- claiming --------------------------------------------------------------------------------


def test_the_first_claim_takes_initial_blocks_then_subpool_blocks(store: Store, clock: Clock) -> None:
    joined(store, "a")
    assert claim(store, "a") == Grant(0, 8, 1, clock.now + TTL)
    assert claim(store, "a") == Grant(8, 4, 2, clock.now + TTL)
    assert claim(store, "a") == Grant(12, 4, 3, clock.now + TTL)


def claim_at(store: Store, member: str, index: int, within: tuple[int, int] = (0, 64)) -> Grant | str:
    return store.claim_at("vip", member, index, within=within, ttl=TTL, reclaim_delay=DELAY)


def test_claim_at_takes_the_chunk_of_the_free_range_holding_the_index(store: Store, clock: Clock) -> None:
    joined(store, "a", "b")
    assert claim_at(store, "a", 20) == Grant(16, 8, 1, clock.now + TTL)  # initial_blocks, aligned in 0..64
    assert claim_at(store, "b", 17) == "taken"
    assert claim_at(store, "b", 30) == Grant(28, 4, 2, clock.now + TTL)  # subpool_blocks, aligned in 24..64
    assert claim_at(store, "b", 33, within=(33, 35)) == Grant(33, 2, 3, clock.now + TTL)  # clipped to within
    assert store.owner("vip", "10.0.0.1", 1020) == "a"
    assert claim(store, "b") == Grant(0, 4, 4, clock.now + TTL)  # first fit below
    store.release("vip", "a", 1)
    assert claim_at(store, "b", 16) == "taken"  # held
    clock.advance(DELAY)
    assert claim_at(store, "b", 16) == Grant(16, 4, 5, clock.now + TTL)  # free again: gap 4..28


def test_claim_at_cuts_to_the_room_left_then_answers_full(store: Store, clock: Clock) -> None:
    joined(store, "a", config=dict(CONFIG, max_blocks=10))
    assert claim_at(store, "a", 0) == Grant(0, 8, 1, clock.now + TTL)
    assert claim_at(store, "a", 41) == Grant(41, 2, 2, clock.now + TTL)  # room 2, from the index
    rows = dump(store)
    assert claim_at(store, "a", 50) == "full"
    assert dump(store) == rows


def test_claim_at_refuses_an_index_outside_within_or_the_space(store: Store) -> None:
    joined(store, "a")
    rows = dump(store)
    for index, within in ((5, (6, 10)), (10, (6, 10)), (64, (0, 65)), (-1, (-1, 3))):
        with pytest.raises(natpool.ArgumentError):
            claim_at(store, "a", index, within)
    assert dump(store) == rows
    with pytest.raises(natpool.StoreError):
        store.claim_at("unknown", "a", 0, within=(0, 1), ttl=TTL, reclaim_delay=DELAY)


def reclaim(store: Store, member: str, ranges: list[tuple[int, int]]) -> list[Grant] | None:
    return store.reclaim("vip", member, ranges, ttl=TTL, reclaim_delay=DELAY)


def test_reclaim_replaces_the_members_own_claims_live_or_held_and_takes_free_ranges(store: Store, clock: Clock) -> None:
    joined(store, "a", "b")
    claim(store, "a")  # 0-7, epoch 1
    claim(store, "a")  # 8-11, epoch 2
    claim(store, "b")  # 12-15, epoch 3
    store.release("vip", "a", 2)  # held for a
    assert reclaim(store, "a", [(8, 4), (0, 8), (20, 2)]) == [
        Grant(0, 8, 4, clock.now + TTL),  # ascending address order, fresh epochs
        Grant(8, 4, 5, clock.now + TTL),
        Grant(20, 2, 6, clock.now + TTL),
    ]
    assert spans(store) == [
        ("a", "10.0.0.1", 1000, 1007, 4, "claimed"),
        ("a", "10.0.0.1", 1008, 1011, 5, "claimed"),
        ("b", "10.0.0.1", 1012, 1015, 3, "claimed"),
        ("a", "10.0.0.1", 1020, 1021, 6, "claimed"),
    ]
    assert claim(store, "b") == Grant(16, 4, 7, clock.now + TTL)  # the next claim: after epoch 6


def test_reclaim_is_all_or_nothing(store: Store, clock: Clock) -> None:
    joined(store, "a", "b", config=dict(CONFIG, max_blocks=20))
    claim(store, "a")  # 0-7
    claim(store, "b")  # 8-11
    rows = dump(store)
    assert reclaim(store, "a", [(0, 8), (10, 1)]) is None  # b's range
    assert reclaim(store, "a", [(0, 4)]) is None  # a's own claim, but not within the range
    assert reclaim(store, "a", [(0, 8), (30, 9)]) is None  # b 4 + 8 + 9 claimed: over capacity 20
    assert dump(store) == rows
    for bad in ([(0, 8), (4, 2)], [(0, 0)], [(60, 5)], [(-1, 2)]):
        with pytest.raises(natpool.ArgumentError):
            reclaim(store, "a", bad)
    assert dump(store) == rows


def test_first_fit_across_members_skips_held_ranges(store: Store, clock: Clock) -> None:
    joined(store, "a", "b", "c")
    assert claim(store, "a") == Grant(0, 8, 1, clock.now + TTL)
    assert claim(store, "b") == Grant(8, 4, 2, clock.now + TTL)
    assert claim(store, "a") == Grant(12, 4, 3, clock.now + TTL)
    store.release("vip", "a", 1)
    # held: nobody gets it before reclaim_delay, however much is asked
    assert claim(store, "c") == Grant(16, 4, 4, clock.now + TTL)
    clock.advance(DELAY - 0.001)
    assert claim(store, "c") == Grant(20, 4, 5, clock.now + TTL)
    clock.advance(0.001)
    assert claim(store, "c") == Grant(0, 4, 6, clock.now + TTL)  # the lowest free interval again


def test_claims_are_listed_in_address_order_with_their_states(store: Store, clock: Clock) -> None:
    joined(store, "a", "b")
    claim(store, "a")  # 0-7
    claim(store, "b")  # 8-11
    claim(store, "a")  # 12-15
    store.release("vip", "b", 2)
    assert store.claims("vip") == [
        Claim("a", "10.0.0.1", 1000, "10.0.0.1", 1007, 8, 1, clock.now + TTL, "claimed"),
        Claim("b", "10.0.0.1", 1008, "10.0.0.1", 1011, 4, 2, clock.now + DELAY, "held"),
        Claim("a", "10.0.0.1", 1012, "10.0.0.1", 1015, 4, 3, clock.now + TTL, "claimed"),
    ]
    assert store.claims("nope") == []


def test_a_claim_can_span_two_ips(store: Store) -> None:
    config = dict(CONFIG, initial_blocks=30, subpool_blocks=4)
    joined(store, "a", config=config)
    claim(store, "a")  # 0-29
    assert head(claim(store, "a")) == (30, 4, 2)
    assert spans(store)[1] == ("a", "10.0.0.1", 1030, 1001, 2, "claimed")
    assert store.claims("vip")[1].last_ip == "10.0.0.2"


def test_claims_are_clipped_to_the_free_interval_and_to_capacity(store: Store, clock: Clock) -> None:
    config = dict(CONFIG, initial_blocks=2, subpool_blocks=4, max_blocks=12)
    joined(store, "a", config=config)
    assert head(claim(store, "a", ttl=1000)) == (0, 2, 1)
    assert head(claim(store, "a", ttl=1000)) == (2, 4, 2)
    store.release("vip", "a", 1)
    clock.advance(DELAY)
    assert head(claim(store, "a", ttl=1000)) == (0, 2, 3)  # the interval holds 2
    assert head(claim(store, "a", ttl=1000)) == (6, 4, 4)
    assert head(claim(store, "a", ttl=1000)) == (10, 2, 5)  # capacity 12: 2 left
    assert claim(store, "a", ttl=1000) is None  # the cluster is full
    assert [c.epoch for c in store.claims("vip")] == [3, 2, 4, 5]


def test_held_ranges_do_not_count_against_capacity(store: Store, clock: Clock) -> None:
    config = dict(CONFIG, initial_blocks=4, subpool_blocks=4, max_blocks=8)
    joined(store, "a", config=config)
    claim(store, "a")
    claim(store, "a")
    assert claim(store, "a") is None
    store.release("vip", "a", 1)
    assert claim(store, "a") == Grant(8, 4, 3, clock.now + TTL)


def test_a_full_address_space_grants_nothing(store: Store) -> None:
    config = dict(CONFIG, initial_blocks=64, max_blocks=1000)
    joined(store, "a", config=config)
    assert head(claim(store, "a")) == (0, 64, 1)
    assert claim(store, "a") is None


def test_epochs_increase_per_pool(store: Store) -> None:
    joined(store, "a")
    store.join("other", "a", dict(CONFIG, name="other"), ttl=TTL)
    assert [claim(store, "a").epoch for _ in range(3)] == [1, 2, 3]  # type: ignore[union-attr]
    assert store.claim("other", "a", ttl=TTL, reclaim_delay=DELAY).epoch == 1  # type: ignore[union-attr]
    store.release("vip", "a", 3)
    assert claim(store, "a").epoch == 4  # type: ignore[union-attr]
    assert store.pools() == ["other", "vip"]


def test_claiming_for_an_unregistered_pool_is_a_store_error(store: Store) -> None:
    with pytest.raises(natpool.StoreError, match="not registered"):
        store.claim("ghost", "a", ttl=TTL, reclaim_delay=DELAY)


# -- releasing, renewing, expiring -------------------------------------------------------------


def test_release_is_a_no_op_for_another_member_or_a_stale_epoch(store: Store) -> None:
    joined(store, "a", "b")
    claim(store, "a")
    before = store.claims("vip")
    store.release("vip", "b", 1)
    store.release("vip", "a", 99)
    store.release("ghost", "a", 1)
    assert store.claims("vip") == before
    store.release("vip", "a", 1)
    held = store.claims("vip")
    store.release("vip", "a", 1)  # already held: unchanged
    assert store.claims("vip") == held and held[0].state == "held"


def test_renew_extends_only_the_members_live_claims(store: Store, clock: Clock) -> None:
    joined(store, "a", "b")
    claim(store, "a")  # 1
    claim(store, "b")  # 2
    claim(store, "a")  # 3
    store.release("vip", "a", 3)
    clock.advance(10)
    assert store.renew("vip", "a", [1, 2, 3, 42], ttl=TTL) == {1: clock.now + TTL}
    assert [c.expires_at for c in store.claims("vip")] == [
        clock.now + TTL,
        clock.now - 10 + TTL,
        clock.now - 10 + DELAY,
    ]
    assert store.renew("vip", "a", [], ttl=TTL) == {}
    assert store.renew("ghost", "a", [1], ttl=TTL) == {}


def test_an_unrenewed_claim_lapses_is_held_then_free(store: Store, clock: Clock) -> None:
    config = dict(CONFIG, initial_blocks=64)
    joined(store, "a", "b", config=config)
    first = claim(store, "a")
    assert first is not None
    clock.advance(TTL - 0.001)
    assert spans(store)[0][-1] == "claimed" and store.owner("vip", "10.0.0.1", 1000) == "a"
    clock.advance(0.001)  # expires_at reached
    assert store.claims("vip") == [
        Claim("a", "10.0.0.1", 1000, "10.0.0.2", 1031, 64, 1, first.expires_at + DELAY, "held")
    ]
    assert store.owner("vip", "10.0.0.1", 1000) is None
    assert store.renew("vip", "a", [1], ttl=TTL) == {}  # lost: the member must fence it
    assert claim(store, "b") is None  # held: not before reclaim_delay, however full the pool
    clock.advance(DELAY - 0.001)
    assert claim(store, "b") is None
    clock.advance(0.001)
    assert store.claims("vip") == []
    assert claim(store, "b") == Grant(0, 4, 2, clock.now + TTL)  # subpool_blocks: not the first claim


def test_each_claim_is_held_by_its_own_reclaim_delay(store: Store, clock: Clock) -> None:
    joined(store, "a")
    claim(store, "a", delay=5)
    claim(store, "a", delay=500)
    store.release("vip", "a", 1)
    store.release("vip", "a", 2)
    assert [c.expires_at for c in store.claims("vip")] == [clock.now + 5, clock.now + 500]


def test_leave_returns_the_given_claims_and_leaves_the_others_to_lapse(store: Store, clock: Clock) -> None:
    joined(store, "a")
    claim(store, "a")
    claim(store, "a")
    store.leave("vip", "a", [2])
    assert spans(store) == [("a", "10.0.0.1", 1000, 1007, 1, "claimed"), ("a", "10.0.0.1", 1008, 1011, 2, "held")]
    assert store.status("vip").members == []
    joined(store, "a")  # the name is free again at once
    assert store.renew("vip", "a", [1], ttl=TTL) == {1: clock.now + TTL}  # an epoch is all it takes
    store.leave("ghost", "a")  # unknown pool: nothing to do


# -- members and configuration --------------------------------------------------------------


def test_two_live_members_may_not_share_a_name(store: Store, clock: Clock) -> None:
    joined(store, "a")
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError, match="live member") as caught:
        joined(store, "a")
    assert caught.value.field == "member"
    assert dump(store) == before
    clock.advance(TTL)  # its heartbeat ran out: a dead member's name may be taken
    joined(store, "a")


def test_claims_and_renewals_keep_the_heartbeat(store: Store, clock: Clock) -> None:
    joined(store, "a")
    clock.advance(TTL - 1)
    claim(store, "a")
    clock.advance(TTL - 1)
    store.renew("vip", "a", [], ttl=TTL)
    clock.advance(TTL - 1)
    with pytest.raises(natpool.PoolConfigError):
        joined(store, "a")
    assert [m.member for m in store.status("vip").members] == ["a"]


@pytest.mark.parametrize("field", [f for f in CONFIG_FIELDS if f != "name"])
def test_a_different_configuration_names_the_field(store: Store, field: str) -> None:
    changed = {
        "first_ip": "10.0.0.0",
        "last_ip": "10.0.0.3",
        "netmask": "255.255.0.0",
        "ports": (1000, 1032),
        "initial_blocks": 9,
        "max_blocks": 65,
        "subpool_blocks": 5,
        "grow_threshold": 1,
    }
    joined(store, "a")
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError, match="registered in the store") as caught:
        store.join("vip", "b", dict(CONFIG, **{field: changed[field]}), ttl=TTL)
    assert caught.value.field == field
    assert dump(store) == before


def test_the_first_differing_field_is_named(store: Store) -> None:
    joined(store, "a")
    with pytest.raises(natpool.PoolConfigError) as caught:
        store.join("vip", "b", dict(CONFIG, grow_threshold=3, ports=(1, 64), max_blocks=99), ttl=TTL)
    assert caught.value.field == "ports"


def test_equal_configurations_written_differently_agree(store: Store) -> None:
    joined(store, "a")
    same = dict(CONFIG, netmask=24, ports=[1000, 1031], first_ip=0x0A000001, last_ip="10.0.0.2")
    store.join("vip", "b", same, ttl=TTL)
    config = dict(CONFIG, subpool_blocks=None)
    store.join("p2", "a", dict(config, name="p2", subpool_blocks=8), ttl=TTL)
    store.join("p2", "b", dict(config, name="p2"), ttl=TTL)  # None: subpool_blocks = initial_blocks


def test_an_invalid_configuration_is_refused_before_anything_is_written(store: Store) -> None:
    before = dump(store)
    with pytest.raises(natpool.PoolConfigError) as caught:
        store.join("vip", "a", dict(CONFIG, initial_blocks=0), ttl=TTL)
    assert caught.value.field == "initial_blocks"
    with pytest.raises(natpool.PoolConfigError) as caught:
        store.join("other", "a", CONFIG, ttl=TTL)
    assert caught.value.field == "name"
    assert dump(store) == before


# -- owner and status -----------------------------------------------------------------------


def test_owner_names_the_member_of_a_live_claim(store: Store) -> None:
    joined(store, "a", "b")
    claim(store, "a")  # 10.0.0.1:1000-1007
    claim(store, "b")  # 10.0.0.1:1008-1011
    claim(store, "b")  # 10.0.0.1:1012-1015
    store.release("vip", "b", 3)
    assert store.owner("vip", "10.0.0.1", 1000) == "a"
    assert store.owner("vip", "10.0.0.1", 1007) == "a"
    assert store.owner("vip", 0x0A000001, 1008) == "b"
    assert store.owner("vip", "10.0.0.1", 1012) is None  # held
    assert store.owner("vip", "10.0.0.1", 1016) is None  # free
    assert store.owner("vip", "10.0.0.1", 999) is None  # outside the pool
    assert store.owner("vip", "10.0.0.9", 1000) is None
    assert store.owner("ghost", "10.0.0.1", 1000) is None
    with pytest.raises(natpool.ArgumentError):
        store.owner("vip", "10.0.0.300", 1000)
    with pytest.raises(TypeError):
        store.owner("vip", "10.0.0.1", "1000")  # type: ignore[arg-type]


def test_status_sums_up_a_pool(store: Store, clock: Clock) -> None:
    joined(store, "a", "b")
    claim(store, "a")
    claim(store, "b")
    claim(store, "b")
    store.release("vip", "b", 2)
    status = store.status("vip")
    assert status.name == "vip" and status.now == clock.now
    assert status.config == dict(CONFIG)
    assert (status.address_count, status.capacity) == (64, 64)
    assert [(m.member, m.claims, m.addresses) for m in status.members] == [("a", 1, 8), ("b", 1, 4)]
    assert (status.claimed, status.held, status.free) == (12, 4, 48)
    assert status.claims == store.claims("vip")
    with pytest.raises(natpool.StoreError, match="no pool"):
        store.status("ghost")


# -- several store objects, threads and processes on one store ----------------------------------


def test_concurrent_claims_never_overlap(url: str) -> None:
    stores = [open_kind(url) for _ in range(4)]
    config = dict(CONFIG, initial_blocks=3, subpool_blocks=1)
    for i, each in enumerate(stores):
        each.join("vip", f"m{i}", config, ttl=TTL)
    grants: list[list[Grant]] = [[] for _ in stores]

    def work(i: int) -> None:
        while (grant := stores[i].claim("vip", f"m{i}", ttl=TTL, reclaim_delay=DELAY)) is not None:
            grants[i].append(grant)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    addresses = [a for each in grants for g in each for a in range(g.first, g.first + g.count)]
    assert sorted(addresses) == list(range(64))
    assert sorted(g.epoch for each in grants for g in each) == list(range(1, 63))
    for each in stores:
        each.close()


def test_a_second_store_object_sees_the_same_state(url: str, store: Store, clock: Clock) -> None:
    joined(store, "a")
    claim(store, "a")
    other = open_kind(url, clock)
    assert other.claims("vip") == store.claims("vip")
    other.close()
    with pytest.raises(natpool.StoreError, match="closed"):
        other.claims("vip")
    other.close()  # idempotent


# -- the store's own clock --------------------------------------------------------------------


def test_a_lapsed_claim_is_held_by_the_real_clock(url: str) -> None:
    store = open_kind(url)
    config = dict(CONFIG, initial_blocks=32, subpool_blocks=32)
    store.join("vip", "a", config, ttl=TTL)
    store.join("vip", "b", config, ttl=TTL)
    assert head(store.claim("vip", "a", ttl=0.3, reclaim_delay=60.0)) == (0, 32, 1)
    wait_until(lambda: [c.state for c in store.claims("vip")] == ["held"], "the 0.3 s claim to lapse")
    # not before: held for 60 s, so right after it lapsed nobody gets it
    assert head(store.claim("vip", "b", ttl=TTL, reclaim_delay=DELAY)) == (32, 32, 2)
    assert store.claim("vip", "b", ttl=TTL, reclaim_delay=DELAY) is None
    assert store.renew("vip", "a", [1], ttl=TTL) == {}
    store.close()


def test_a_short_hold_ends_by_the_real_clock(url: str) -> None:
    store = open_kind(url)
    config = dict(CONFIG, initial_blocks=64)
    store.join("vip", "a", config, ttl=TTL)
    store.join("vip", "b", config, ttl=TTL)
    granted = store.claim("vip", "a", ttl=0.3, reclaim_delay=0.2)
    assert granted is not None
    grants: list[Grant] = []

    def claimed() -> bool:
        grant = store.claim("vip", "b", ttl=TTL, reclaim_delay=DELAY)
        if grant is not None:
            grants.append(grant)
        return grant is not None

    wait_until(claimed, "the lapsed range to be free after its hold")
    assert [head(g) for g in grants] == [(0, 4, 2)]
    assert grants[0].expires_at >= granted.expires_at + 0.2 + TTL  # granted after the hold ended
    store.close()


# -- bad input and unreachable stores -------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "store.db",
        "/abs/store.db",
        "sqlite:",
        "sqlite://",
        "sqlite:///",
        "sqlite://host/abs/store.db",
        "sqlite:///abs/dir/",
        "sqlite:///abs/store.db?mode=ro",
        "sqlite:///abs/store.db#x",
        "mysql://db/natpool",
        "http://example.com/",
        pytest.param("postgresql://host:99999999/db", marks=pytest.mark.extra("postgres")),  # parsed by libpq
        pytest.param(
            "postgresql://u@h/db?nonsense_parameter=1", marks=pytest.mark.extra("postgres")
        ),  # parsed by libpq
        pytest.param("postgresql://[::1", marks=pytest.mark.extra("postgres")),  # parsed by libpq
        pytest.param("postgresql://%zz@h/db", marks=pytest.mark.extra("postgres")),  # parsed by libpq
    ],
)
def test_a_malformed_url_is_a_config_error_for_the_store(bad: str) -> None:
    with pytest.raises(natpool.PoolConfigError) as caught:
        open_store(bad)
    assert caught.value.field == "store"
    assert isinstance(caught.value, natpool.ArgumentError)


def test_a_url_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        open_store(b"sqlite:///x.db")  # type: ignore[arg-type]


def test_a_sqlite_store_in_a_missing_directory_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(natpool.StoreError, match="cannot be opened"):
        open_store(f"sqlite://{tmp_path}/missing/store.db")
    assert not (tmp_path / "missing").exists()


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(natpool.StoreError):
        open_store(f"sqlite://{path}")
    assert path.read_bytes() == b"not a database" * 100


def test_sqlite_urls_name_absolute_paths(tmp_path: Path) -> None:
    spaced = tmp_path / "a dir"
    spaced.mkdir()
    store = open_store(f"sqlite://{spaced}/store%20one.db")
    assert (spaced / "store one.db").exists()
    assert open_store(store.url).url == store.url
    assert open_store(f"sqlite:///{spaced}/store%20one.db").url == store.url  # sqlite:////abs too


@pytest.mark.extra("postgres")
def test_a_closed_postgres_port_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(natpool.StoreError, match="failed"):
        open_store(f"postgresql://natpool:secret@127.0.0.1:{port}/natpool", timeout=2)


@pytest.mark.extra("postgres")
def test_a_postgres_url_hides_its_password() -> None:
    url = fresh_postgres_url()
    store = open_store(url)
    assert store.url == url.replace("postgres:@", "postgres:***@")
    store.close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(natpool.StoreError) as caught:
        open_store(f"postgresql://natpool:hunter2@127.0.0.1:{port}/natpool", timeout=2)
    assert "hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_without_psycopg_postgres_asks_for_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"natpool\[postgres\]"):
        open_store("postgresql://localhost/natpool")


def test_another_schema_version_is_refused_and_left_alone(url: str, store: Store) -> None:
    joined(store, "a")
    sql(store, "UPDATE natpool_meta SET value = %s WHERE key = %s", ("999", "schema_version"))
    before = dump(store)
    store.close()
    with pytest.raises(natpool.StoreError) as caught:
        open_store(url)
    message = str(caught.value)
    assert "schema version 999" in message and f"uses schema version {SCHEMA_VERSION}" in message
    assert "a newer natpool made it" in message and "new store" in message
    assert dump(store) == before


def test_natpool_tables_without_a_version_are_refused(url: str, store: Store) -> None:
    sql(store, "DROP TABLE natpool_meta")
    before = dump_without_meta(store)
    store.close()
    with pytest.raises(natpool.StoreError, match="no schema version"):
        open_store(url)
    assert dump_without_meta(store) == before


def dump_without_meta(store: Store) -> list[tuple[Any, ...]]:
    return [row for table in ("natpool_pools", "natpool_claims") for row in sql(store, f"SELECT * FROM {table}")]
