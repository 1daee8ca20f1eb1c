"""Issue 11, points 3 and 4: clients (quota, paired, port blocks, the block log) and their bad input.

Every test runs on both implementations (the ``impl`` fixture). Expected values are
literals worked out from the specification (``natpool/reference/clients.py``).
"""

from __future__ import annotations

from typing import Any

import pytest
from clockkit import Clock
from natpool import BlockEvent, PoolConfigError, PoolExhausted, QuotaExceeded, Subpool


def two_ips(impl: Any, ports: int, initial: int, **options: Any) -> Any:
    """10.0.0.1 and 10.0.0.2, ports 1..ports each: index i is (ip i // ports, port i % ports + 1)."""
    return impl("c", "10.0.0.1", "10.0.0.2", 24, initial, 1000, ports=(1, ports), **options)


def snapshot(pool: Any) -> tuple[Any, ...]:
    return (pool.intervals(), pool.subpools(), pool.stats(), len(pool))


def addresses(leases: list[Any]) -> list[tuple[str, int]]:
    return [lease.address for lease in leases]


# -- point 3: quotas -----------------------------------------------------------------------------


def test_quota_counts_live_and_held_leases_per_client(impl: Any) -> None:
    clock = Clock()
    pool = two_ips(impl, 8, 4, client_quota=2, clock=clock)
    assert pool.client_quota == 2
    a1, a2 = pool.allocate(client="a"), pool.allocate(client="a")
    before = snapshot(pool)
    with pytest.raises(QuotaExceeded) as info:
        pool.allocate(client="a")
    assert isinstance(info.value, PoolExhausted)
    assert snapshot(pool) == before
    pool.allocate(client="b")  # another client: its own quota
    pool.allocate()  # no client: no quota
    pool.allocate_many(3)
    pool.free(a1, hold=5)  # held: still counts
    with pytest.raises(QuotaExceeded):
        pool.allocate(client="a")
    clock.now = 5  # the hold ends at the next allocation call
    pool.allocate(client="a")
    pool.free(a2)
    with pytest.raises(QuotaExceeded):
        pool.allocate_many(2, client="a")  # one left: two asked, none given
    assert len(pool.allocate_many(1, client="a")) == 1


def test_equal_clients_are_one_client(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, client_quota=2)
    pool.allocate(client=1)
    pool.allocate(client=1.0)  # 1 == 1.0, hash(1) == hash(1.0): the same client, as in a dict
    with pytest.raises(QuotaExceeded):
        pool.allocate(client=True)
    pool.allocate(client=(1, "x"))


def test_client_without_client_settings_changes_nothing(impl: Any) -> None:
    plain, with_client = two_ips(impl, 8, 4), two_ips(impl, 8, 4)
    assert addresses(plain.allocate_many(5)) == addresses([with_client.allocate(client=f"c{i % 2}") for i in range(5)])
    assert plain.subpools() == with_client.subpools()
    assert with_client.events() == []
    with pytest.raises(TypeError):
        with_client.allocate(client=["unhashable"])


@pytest.mark.parametrize("call", ["allocate", "allocate_many", "lease"])
def test_unhashable_client_is_a_type_error_and_changes_nothing(impl: Any, call: str) -> None:
    clock = Clock()
    pool = two_ips(impl, 8, 4, client_block=2, clock=clock)
    pool.allocate(client="a")
    reads, before = clock.calls, snapshot(pool)
    with pytest.raises(TypeError):
        if call == "allocate":
            pool.allocate(client={"a": 1})
        elif call == "allocate_many":
            pool.allocate_many(1, client=[])
        else:
            pool.lease(client=set())
    assert (clock.calls, snapshot(pool)) == (reads, before)


# -- point 3: paired --------------------------------------------------------------------------------


def test_paired_client_stays_on_its_ip_while_a_subpool_there_has_a_free_block(impl: Any) -> None:
    # Subpools of one address: 0 = 10.0.0.1:1, then growth makes one per allocation.
    pool = two_ips(impl, 2, 1, subpool_blocks=1, paired=True)
    assert pool.paired is True
    a = [pool.allocate(client="a") for _ in range(2)]
    assert addresses(a) == [("10.0.0.1", 1), ("10.0.0.1", 2)]
    # 10.0.0.1 has no free block left: "a" moves to the lowest-id subpool with one (10.0.0.2:1).
    moved = pool.allocate(client="a")
    assert moved.address == ("10.0.0.2", 1)
    pool.free(a[0])  # 10.0.0.1:1 is free again, but "a" now lives on 10.0.0.2
    assert pool.allocate(client="a").address == ("10.0.0.2", 2)
    # "b" has no lease: placed as any lease, on the lowest-id subpool with a free block.
    assert pool.allocate(client="b").address == ("10.0.0.1", 1)


def test_paired_client_prefers_its_ip_over_lower_subpools(impl: Any) -> None:
    # Subpools of two addresses, one per IP: 0 = 10.0.0.1:1-2, 1 = 10.0.0.2:1-2.
    pool = two_ips(impl, 2, 2, paired=True)
    x = pool.allocate_many(2)  # subpool 0 full; growth makes subpool 1
    assert pool.allocate(client="b").address == ("10.0.0.2", 1)
    pool.free(x[0])  # subpool 0, the lowest id, has a free block again
    # "b" has a live lease on 10.0.0.2: a subpool there with a free block goes first.
    assert pool.allocate(client="b").address == ("10.0.0.2", 2)
    assert pool.allocate().address == ("10.0.0.1", 1)


def test_a_subpool_across_two_ips_does_not_keep_a_pair(impl: Any) -> None:
    # One subpool of 4 addresses across both IPs: no subpool lies wholly on either IP.
    pool = two_ips(impl, 2, 4, paired=True)
    first = pool.allocate(client="a")
    assert first.address == ("10.0.0.1", 1)
    # No subpool wholly on 10.0.0.1: placed as any lease (which happens to be on 10.0.0.1).
    assert pool.allocate(client="a").address == ("10.0.0.1", 2)
    assert pool.allocate(client="a").address == ("10.0.0.2", 1)  # the move


def test_a_paired_client_picks_anew_once_it_has_no_live_lease(impl: Any) -> None:
    pool = two_ips(impl, 2, 2, paired=True)  # one subpool per IP
    filler = pool.allocate_many(2)  # 10.0.0.1 full
    a = pool.allocate(client="a")
    assert a.address == ("10.0.0.2", 1)
    pool.free(a)  # subpool 1 all free: deleted (subpool 0 keeps initial_blocks)
    pool.free(filler[0])
    assert pool.allocate(client="a").address == ("10.0.0.1", 1)


# -- point 3: port blocks ------------------------------------------------------------------------


def test_port_blocks_are_reserved_logged_and_released(impl: Any) -> None:
    clock = Clock(10.0)
    pool = two_ips(impl, 8, 4, client_block=3, clock=clock)
    assert pool.client_block == 3
    a = [pool.allocate(f"a{i}", client="a") for i in range(4)]
    # Block 1 of "a": 10.0.0.1:1-3; full after three leases, block 2 on the same IP: 4-6.
    assert addresses(a) == [("10.0.0.1", 1), ("10.0.0.1", 2), ("10.0.0.1", 3), ("10.0.0.1", 4)]
    clock.now = 11.0
    b = pool.allocate(client="b")  # the lowest free run of 3 on one IP: 10.0.0.1:7-8 is too short
    assert b.address == ("10.0.0.2", 1)
    shared = pool.allocate()  # a lease without a client: a shared subpool, never a client's block
    assert shared.address == ("10.0.0.1", 7)
    assert [s.client for s in pool.subpools()] == ["a", "a", None, "b"]
    assert pool.events() == [
        BlockEvent(10.0, "assigned", "a", "10.0.0.1", 1, "10.0.0.1", 3),
        BlockEvent(10.0, "assigned", "a", "10.0.0.1", 4, "10.0.0.1", 6),
        BlockEvent(11.0, "assigned", "b", "10.0.0.2", 1, "10.0.0.2", 3),
    ]
    assert pool.events() == []  # drained
    clock.now = 12.0
    pool.free(a[3])  # block 2 all free: released
    pool.free_many(a[:2])
    assert pool.events() == [BlockEvent(12.0, "released", "a", "10.0.0.1", 4, "10.0.0.1", 6)]
    pool.free(a[2], hold=2)  # block 1's last lease held: the block stays until the hold ends
    assert [s.client for s in pool.subpools()].count("a") == 1
    clock.now = 14.0
    pool.allocate(client="b")  # the allocation call releases the hold: block 1 all free
    assert pool.events() == [BlockEvent(14.0, "released", "a", "10.0.0.1", 1, "10.0.0.1", 3)]
    assert "a" not in [s.client for s in pool.subpools()]


def test_port_block_subpools(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, client_block=3, clock=Clock())
    pool.allocate_many(4, client="a")
    pool.allocate(client="b")
    # The first shared subpool: initial_blocks 4 clipped to the lowest free interval, 10.0.0.1:7-8.
    shared = pool.allocate()
    assert shared.address == ("10.0.0.1", 7)
    assert pool.subpools() == [
        Subpool(0, "10.0.0.1", 1, "10.0.0.1", 3, 3, 0, 0, "a"),
        Subpool(1, "10.0.0.1", 4, "10.0.0.1", 6, 3, 2, 0, "a"),
        Subpool(3, "10.0.0.1", 7, "10.0.0.1", 8, 2, 1, 0, None),
        Subpool(2, "10.0.0.2", 1, "10.0.0.2", 3, 3, 2, 0, "b"),
    ]


def test_a_new_block_goes_to_another_ip_only_when_its_ip_is_full(impl: Any) -> None:
    pool = two_ips(impl, 4, 1, client_block=2, clock=Clock())
    b = pool.allocate(client="b")  # 10.0.0.1:1-2
    a = pool.allocate_many(3, client="a")  # 10.0.0.1:3-4, then 10.0.0.1 is full: 10.0.0.2:1-2
    assert addresses([b, *a]) == [("10.0.0.1", 1), ("10.0.0.1", 3), ("10.0.0.1", 4), ("10.0.0.2", 1)]
    pool.free(b)  # b's block released: 10.0.0.1:1-2 free again
    # a's newest block is on 10.0.0.2: its next block stays there (3-4), not on the lower 10.0.0.1:1-2.
    assert addresses(pool.allocate_many(3, client="a")) == [("10.0.0.2", 2), ("10.0.0.2", 3), ("10.0.0.2", 4)]


def test_port_block_batches_are_all_or_nothing(impl: Any) -> None:
    pool = two_ips(impl, 4, 1, client_block=4, clock=Clock())
    pool.allocate(client="a")  # 10.0.0.1:1-4
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate_many(8, client="b")  # needs two blocks: one IP is left
    assert snapshot(pool) == before
    assert pool.events()[1:] == []
    assert len(pool.allocate_many(4, client="b")) == 4


def test_port_blocks_need_room_under_capacity(impl: Any) -> None:
    pool = impl("c", "10.0.0.1", "10.0.0.2", 24, 1, 5, ports=(1, 4), client_block=3, clock=Clock())
    pool.allocate(client="a")
    before = snapshot(pool)
    with pytest.raises(PoolExhausted):
        pool.allocate(client="b")  # 3 + 3 blocks > capacity 5
    assert snapshot(pool) == before
    assert pool.allocate().address == ("10.0.0.1", 4)  # shared leases still get the rest


def test_the_block_log_is_bounded(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, client_block=1, event_queue=2, clock=Clock())
    assert pool.event_queue == 2
    leases = [pool.allocate(client=c) for c in "abcd"]
    assert pool.stats().events_dropped == 2
    assert [e.client for e in pool.events()] == ["a", "b"]
    pool.free_many(leases)
    assert [(e.kind, e.client) for e in pool.events()] == [("released", "a"), ("released", "b")]
    assert pool.stats().events_dropped == 4


def test_port_blocks_read_the_clock_once_per_call(impl: Any) -> None:
    clock = Clock()
    pool = two_ips(impl, 8, 4, client_block=2, clock=clock)
    pool.allocate()  # no client, nothing held: no read
    assert clock.calls == 0
    a = pool.allocate_many(3, client="a")
    assert clock.calls == 1
    pool.free_many(a)  # a free call with port blocks reads it (a block may be released)
    assert clock.calls == 2
    pool.free(pool.allocate(client="b"))
    assert clock.calls == 4


def test_quota_with_port_blocks(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, client_block=2, client_quota=3, clock=Clock())
    pool.allocate_many(3, client="a")
    with pytest.raises(QuotaExceeded):
        pool.allocate(client="a")
    assert [s.blocks - s.free for s in pool.subpools() if s.client == "a"] == [2, 1]


def test_lease_context_with_a_client(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, client_block=2, clock=Clock())
    with pool.lease("x", client="a") as lease:
        assert pool.subpools()[0].client == "a"
        assert lease.data == "x"
    assert pool.subpools() == []
    assert [e.kind for e in pool.events()] == ["assigned", "released"]


# -- point 4: bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"client_quota": 0}, "client_quota", id="quota-0"),
        pytest.param({"client_quota": -3}, "client_quota", id="quota-negative"),
        pytest.param({"client_block": 0}, "client_block", id="block-0"),
        pytest.param({"client_block": 9}, "client_block", id="block-beyond-the-ports-of-one-ip"),
        pytest.param({"event_queue": -1}, "event_queue", id="events-negative"),
        pytest.param({"client_quota": 0, "client_block": 0}, "client_quota", id="quota-before-block"),
        pytest.param({"order": "x", "client_quota": 0}, "order", id="order-before-quota"),
    ],
)
def test_bad_client_settings(impl: Any, options: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolConfigError) as info:
        two_ips(impl, 8, 4, **options)
    assert info.value.field == field


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"client_quota": 1.0}, id="quota-float"),
        pytest.param({"client_quota": True}, id="quota-bool"),
        pytest.param({"paired": 1}, id="paired-int"),
        pytest.param({"paired": "yes"}, id="paired-str"),
        pytest.param({"client_block": "2"}, id="block-str"),
        pytest.param({"event_queue": 1.5}, id="events-float"),
        pytest.param({"client_quota": 0, "paired": 1}, id="quota-value-before-paired-type"),
    ],
)
def test_bad_client_setting_types(impl: Any, options: dict[str, Any]) -> None:
    expected: type[Exception] = PoolConfigError if options.get("client_quota") == 0 else TypeError
    with pytest.raises(expected):
        two_ips(impl, 8, 4, **options)


def test_client_settings_read_back_and_none_means_the_default(impl: Any) -> None:
    pool = two_ips(impl, 8, 4, paired=None, event_queue=None)
    assert (pool.client_quota, pool.paired, pool.client_block, pool.event_queue) == (None, False, None, 65536)
    pool = two_ips(impl, 8, 4, client_quota=2**70, client_block=8, event_queue=0)
    assert (pool.client_quota, pool.client_block, pool.event_queue) == (2**64 - 1, 8, 0)
