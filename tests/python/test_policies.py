"""Issue 11, points 1, 2 and 4: reuse order, hold-down and its clock, and their bad input.

Every test runs on both implementations (the ``impl`` fixture). Expected values are
literals worked out from the specification (``reuse.py``, ``held.py``, ``policy.py`` of
the reference model) or computed by models written here, independently of either
implementation: a deque, a stack, and SplitMix64 with a swap-remove array.
"""

from __future__ import annotations

import math
import time
from collections import deque
from typing import Any

import natpool
import natpool.reference
import pytest
from clockkit import Clock
from hypothesis import given
from hypothesis import strategies as st
from natpool import ArgumentError, PoolConfigError, PoolExhausted, PoolStats, Subpool
from splitmixkit import MASK, splitmix64


def single_ip(impl: Any, ports: int, initial: int, maximum: int = 1000, **options: Any) -> Any:
    """A pool on 10.0.0.1/32 with ports 1..ports: address index i is port i + 1."""
    return impl("t", "10.0.0.1", "10.0.0.1", 32, initial, maximum, ports=(1, ports), **options)


def ports_of(leases: list[Any]) -> list[int]:
    return [lease.port for lease in leases]


# -- point 2: reuse order ------------------------------------------------------------------------


def test_order_defaults_to_fifo_and_reads_back(impl: Any) -> None:
    assert single_ip(impl, 4, 2).order == "fifo"
    for order in ("fifo", "lifo", "random"):
        assert single_ip(impl, 4, 2, order=order).order == order
    assert single_ip(impl, 4, 2, order=None).order == "fifo"


def test_fifo_within_a_subpool_and_lowest_id_first(impl: Any) -> None:
    pool = single_ip(impl, 10, 5)
    leases = pool.allocate_many(5)  # subpool 0 = 1-5, then subpool 1 = 6-10
    pool.free(leases[3])
    pool.free(leases[1])
    # The block freed longest ago first: port 4, then port 2; then subpool 1.
    assert ports_of([pool.allocate() for _ in range(3)]) == [4, 2, 6]
    pool.free(leases[0])  # subpool 0 has a free block again: it goes before subpool 1
    assert pool.allocate().port == 1
    assert pool.allocate().port == 7


def test_fifo_fresh_blocks_come_before_freed_ones(impl: Any) -> None:
    pool = single_ip(impl, 10, 6, maximum=6)
    a, b = pool.allocate_many(2)
    pool.free(b)
    pool.free(a)
    # 3..6 were never used: they were "freed" first, in ascending order.
    assert ports_of(pool.allocate_many(6)) == [3, 4, 5, 6, 2, 1]


def test_random_takes_the_specified_splitmix64_draw(impl: Any) -> None:
    seed = 20261130
    pool = single_ip(impl, 8, 8, maximum=8, order="random", seed=seed)
    draws = splitmix64(seed)
    array = list(range(8))

    def take() -> int:
        j = (next(draws) * len(array)) >> 64
        offset = array[j]
        array[j] = array[-1]
        array.pop()
        return offset + 1  # port = offset + 1

    expected = [take() for _ in range(5)]
    leases = [pool.allocate() for _ in range(5)]
    assert ports_of(leases) == expected
    pool.free(leases[0])
    array.append(leases[0].port - 1)
    pool.free(leases[2])
    array.append(leases[2].port - 1)
    expected = [take() for _ in range(5)]
    assert ports_of(pool.allocate_many(5)) == expected
    assert len(pool) == 8


def test_random_seeds_are_taken_mod_2_to_the_64(impl: Any) -> None:
    def ports(seed: int) -> list[int]:
        pool = single_ip(impl, 64, 64, maximum=64, order="random", seed=seed)
        return ports_of(pool.allocate_many(64))

    assert ports(-1) == ports(2**64 - 1)
    assert ports(2**70 + 5) == ports(5)
    assert sorted(ports(5)) == list(range(1, 65))


def test_random_same_seed_same_leases_across_implementations_other_seed_other_leases() -> None:
    def run(impl: Any, seed: int) -> list[tuple[str, int]]:
        pool = impl("r", "10.0.0.1", "10.0.0.4", 24, 16, 64, ports=(1000, 1015), order="random", seed=seed)
        first = pool.allocate_many(40)
        pool.free_many(first[::3])
        return [lease.address for lease in first + pool.allocate_many(10) + [pool.allocate() for _ in range(5)]]

    for seed in (0, 1, 2**63, 987654321):
        assert run(natpool.Pool, seed) == run(natpool.reference.Pool, seed)
    runs = {tuple(run(natpool.Pool, seed)) for seed in range(20)}
    assert len(runs) == 20, "every seed its own order"


def test_random_without_a_seed_differs_between_pools(impl: Any) -> None:
    orders = {tuple(ports_of(single_ip(impl, 64, 64, order="random").allocate_many(64))) for _ in range(5)}
    assert len(orders) == 5  # os.urandom seeds: 5 of 64! orders, equal with negligible probability


@pytest.mark.parametrize("order", ["fifo", "lifo", "random"])
def test_batches_take_what_single_calls_take(impl: Any, order: str) -> None:
    def run(batched: bool) -> list[int]:
        pool = single_ip(impl, 40, 8, subpool_blocks=4, grow_threshold=2, order=order, seed=3)
        first = pool.allocate_many(20) if batched else [pool.allocate() for _ in range(20)]
        pool.free_many(first[1::2])
        again = pool.allocate_many(13) if batched else [pool.allocate() for _ in range(13)]
        return ports_of(first + again)

    assert run(True) == run(False)


ORDERS = st.sampled_from(["fifo", "lifo", "random"])


class FreeModel:
    """A subpool's free blocks in one order, modelled here: a deque, a stack, or the
    swap-remove array drawing from SplitMix64."""

    def __init__(self, order: str, n: int, seed: int) -> None:
        self.order = order
        self.draws = splitmix64(seed)
        self.queue = deque(range(n))
        self.stack = list(range(n - 1, -1, -1))
        self.array = list(range(n))

    def __len__(self) -> int:
        return len({"fifo": self.queue, "lifo": self.stack, "random": self.array}[self.order])

    def give(self, offset: int) -> None:
        {"fifo": self.queue, "lifo": self.stack, "random": self.array}[self.order].append(offset)

    def take(self) -> int:
        if self.order == "fifo":
            return self.queue.popleft()
        if self.order == "lifo":
            return self.stack.pop()
        j = (next(self.draws) * len(self.array)) >> 64
        offset = self.array[j]
        self.array[j] = self.array[-1]
        self.array.pop()
        return offset


STEPS = st.tuples(st.sampled_from(["allocate", "free", "advance"]), st.integers(0, 99), st.sampled_from([0, 0, 1, 2.5]))


@given(order=ORDERS, seed=st.integers(0, MASK), steps=st.lists(STEPS, max_size=60))
def test_reuse_order_matches_an_independent_model(order: str, seed: int, steps: list[Any]) -> None:
    """One subpool of 8 blocks that is never deleted or grown: every allocation is the block
    the independent model of the order says, with holds released in (end, sequence) order."""
    for impl in (natpool.Pool, natpool.reference.Pool):
        clock = Clock(10.0)
        pool = single_ip(impl, 8, 8, maximum=8, order=order, seed=seed, clock=clock)
        free = FreeModel(order, 8, seed)
        held: list[tuple[float, int, int]] = []  # (end, sequence, offset)
        sequence = 0
        live: list[Any] = []
        for kind, pick, amount in steps:
            if kind == "advance":
                clock.now += amount
            elif kind == "free" and live:
                lease = live.pop(pick % len(live))
                pool.free(lease, hold=amount)
                if amount > 0:
                    held.append((clock.now + amount, sequence, lease.port - 1))
                    sequence += 1
                else:
                    free.give(lease.port - 1)
            elif kind == "allocate":
                for entry in sorted(e for e in held if e[0] <= clock.now):
                    held.remove(entry)
                    free.give(entry[2])
                if not free:
                    with pytest.raises(PoolExhausted):
                        pool.allocate()
                    continue
                lease = pool.allocate()
                assert lease.port - 1 == free.take()
                live.append(lease)
            assert pool.stats().held == len(held)


# -- point 2: statistics of the random order (fixed seeds: deterministic) ----------------------------

CHI2_15_P001 = 37.697  # chi-square, 15 degrees of freedom, p = 0.001


def lag1(xs: list[float]) -> float:
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs)
    return sum((xs[i] - mean) * (xs[i + 1] - mean) for i in range(n - 1)) / var


@pytest.mark.parametrize("seed", [1, 42, 2**64 - 7])
@pytest.mark.parametrize("impl_class", [natpool.Pool, natpool.reference.Pool], ids=["rust", "reference"])
def test_random_order_is_uniform_and_uncorrelated(impl_class: Any, seed: int) -> None:
    """Rounds on one subpool of 16 blocks: take all 16, then free them in ascending order (so
    the free array is [0..15] again). The first take of each round is uniform over the 16
    blocks (chi-square below its p = 0.001 point, 15 degrees of freedom), and successive
    first takes are uncorrelated (lag-1). Every take is at some index j of the free array
    (the specified swap-remove array, tracked here): (j + 1/2) / len must look like
    independent uniform draws, so its lag-1 correlation is small too (the takes themselves are
    not independent: a round samples without replacement). The seeds are fixed, so the test
    cannot flake."""
    pool = single_ip(impl_class, 16, 16, maximum=16, order="random", seed=seed)
    rounds = 2000
    firsts: list[float] = []
    positions: list[float] = []
    for _ in range(rounds):
        leases = pool.allocate_many(16)
        firsts.append(leases[0].port - 1)
        array = list(range(16))
        for lease in leases[:15]:  # the 16th is forced
            j = array.index(lease.port - 1)
            positions.append((j + 0.5) / len(array))
            array[j] = array[-1]
            array.pop()
        pool.free_many(sorted(leases, key=lambda lease: lease.port))
    expected = rounds / 16
    chi2 = sum((firsts.count(k) - expected) ** 2 / expected for k in range(16))
    assert chi2 < CHI2_15_P001, chi2
    assert abs(lag1(firsts)) < 4 / math.sqrt(rounds)
    assert abs(lag1(positions)) < 4 / math.sqrt(len(positions))
    assert abs(sum(positions) / len(positions) - 0.5) < 0.01


# -- point 1: hold-down -------------------------------------------------------------------------


def test_a_held_block_is_neither_live_nor_free_until_its_hold_ends(impl: Any) -> None:
    clock = Clock(100.0)
    pool = single_ip(impl, 4, 2, maximum=3, clock=clock)
    a, b, c = pool.allocate_many(3)  # subpool 0 = ports 1-2, subpool 1 = port 3
    assert clock.calls == 0
    pool.free(a, hold=5)
    assert clock.calls == 1
    assert pool.stats() == PoolStats(2, 0, 3, 2, 3, 1, 4, 3, held=1)
    assert pool.subpools()[0] == Subpool(0, "10.0.0.1", 1, "10.0.0.1", 2, 2, 0, 1)
    assert pool.lookup("10.0.0.1", 1) is None
    with pytest.raises(natpool.LeaseError):
        pool.free(a)  # the lease ended: its handle is stale at once
    assert clock.calls == 1  # hold 0 (the default): no read
    clock.now = 104.5
    with pytest.raises(PoolExhausted, match="1 held"):
        pool.allocate()
    assert clock.calls == 2
    clock.now = 105.0  # end <= now: released by the next allocation call
    assert pool.stats().held == 1
    assert pool.allocate().port == 1
    assert clock.calls == 3
    assert pool.stats() == PoolStats(3, 0, 3, 2, 3, 1, 4, 3, held=0)
    pool.free_many([b, c])
    assert pool.allocate().port == 2  # nothing held: no read
    assert clock.calls == 3


def test_holds_end_in_order_of_end_then_sequence(impl: Any) -> None:
    clock = Clock(0.0)
    pool = single_ip(impl, 10, 6, maximum=6, clock=clock)
    leases = pool.allocate_many(6)
    pool.free(leases[0], hold=3)  # ends 3
    pool.free_many([leases[1], leases[2]], hold=2)  # end 2, sequence 1 then 2
    pool.free(leases[3], hold=2)  # end 2, sequence 3
    pool.free(leases[4])  # no hold: free at once (FIFO: first)
    clock.now = 2.5
    assert ports_of(pool.allocate_many(4)) == [5, 2, 3, 4]
    clock.now = 3
    assert ports_of([pool.allocate()]) == [1]


def test_lifo_releases_holds_onto_the_stack_in_end_order(impl: Any) -> None:
    clock = Clock(0.0)
    pool = single_ip(impl, 10, 4, maximum=4, clock=clock, order="lifo")
    leases = pool.allocate_many(4)
    pool.free(leases[0], hold=1)
    pool.free(leases[1], hold=2)
    clock.now = 5
    assert ports_of(pool.allocate_many(2)) == [2, 1]  # released 1 then 2: 2 is on top


def test_a_subpool_with_held_blocks_is_kept_until_they_are_free(impl: Any) -> None:
    clock = Clock(0.0)
    pool = single_ip(impl, 10, 2, subpool_blocks=2, clock=clock)
    leases = pool.allocate_many(4)  # subpools 0 = 1-2 and 1 = 3-4 full, 2 = 5-6 empty
    assert [s.id for s in pool.subpools()] == [0, 1, 2]
    pool.free(leases[2], hold=1)
    pool.free(leases[3])
    assert [s.id for s in pool.subpools()] == [0, 1, 2]  # not deleted: it holds a block
    assert pool.subpools()[1] == Subpool(1, "10.0.0.1", 3, "10.0.0.1", 4, 2, 1, 1)
    clock.now = 1
    lease = pool.allocate()  # the hold ended: subpool 1 is all free and deleted first
    assert [s.id for s in pool.subpools()] == [0, 2]
    assert lease.port == 5


def test_hold_down_is_the_default_hold(impl: Any) -> None:
    clock = Clock(0.0)
    pool = single_ip(impl, 4, 4, maximum=4, hold_down=30, clock=clock)
    assert pool.hold_down == 30.0
    a, b, c = pool.allocate_many(3)
    pool.free(a)
    pool.free(b, hold=0)  # no hold, no clock read
    assert clock.calls == 1
    with pool.lease() as lease:  # the clock is read on entry (one block is held)
        assert lease.port == 4
    assert clock.calls == 3  # entry, and the exit's free with hold_down
    assert pool.stats().held == 2
    assert ports_of(pool.allocate_many(1)) == [2]
    assert clock.calls == 4
    pool.free(c, hold=None)
    assert pool.stats().held == 3
    clock.now = 30
    assert ports_of(pool.allocate_many(3)) == [1, 4, 3]


def test_exhaustion_message_says_how_many_are_held_and_when_the_first_ends(impl: Any) -> None:
    clock = Clock(10.0)
    pool = single_ip(impl, 2, 2, maximum=2, clock=clock)
    a, b = pool.allocate_many(2)
    pool.free_many([a, b], hold=4)
    clock.now = 12.0
    with pytest.raises(PoolExhausted) as info:
        pool.allocate_many(1)
    assert "2 held" in str(info.value)
    assert "14.0" in str(info.value)  # the first hold ends at 14.0
    assert "2.000 s" in str(info.value)


def test_the_monotonic_clock(impl: Any) -> None:
    pool = single_ip(impl, 2, 2, maximum=2)
    a, b = pool.allocate_many(2)
    pool.free(a, hold=3600)
    pool.free(b, hold=0.001)
    time.sleep(0.01)
    assert pool.allocate().port == 2  # b's hold ended; a's has an hour to go
    with pytest.raises(PoolExhausted):
        pool.allocate()
    assert pool.stats().held == 1


def test_a_clock_returning_an_int_is_accepted(impl: Any) -> None:
    pool = single_ip(impl, 2, 2, maximum=2, clock=lambda: 7)
    lease = pool.allocate()
    pool.free(lease, hold=1)
    assert pool.stats().held == 1


# -- point 4: bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"hold_down": -1}, "hold_down", id="hold_down-negative"),
        pytest.param({"hold_down": float("nan")}, "hold_down", id="hold_down-nan"),
        pytest.param({"hold_down": float("inf")}, "hold_down", id="hold_down-inf"),
        pytest.param({"hold_down": 10**400}, "hold_down", id="hold_down-beyond-float"),
        pytest.param({"order": "FIFO"}, "order", id="order-unknown"),
        pytest.param({"order": ""}, "order", id="order-empty"),
    ],
)
def test_bad_policy_values(impl: Any, options: dict[str, Any], field: str) -> None:
    with pytest.raises(PoolConfigError) as info:
        single_ip(impl, 4, 2, **options)
    assert info.value.field == field


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"hold_down": "1"}, id="hold_down-str"),
        pytest.param({"hold_down": True}, id="hold_down-bool"),
        pytest.param({"clock": 5}, id="clock-not-callable"),
        pytest.param({"order": 1}, id="order-int"),
        pytest.param({"seed": 1.5}, id="seed-float"),
        pytest.param({"seed": True}, id="seed-bool"),
        pytest.param({"seed": "1"}, id="seed-str"),
    ],
)
def test_bad_policy_types(impl: Any, options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        single_ip(impl, 4, 2, **options)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # the control block first, then the policies in the order hold_down, clock, order, seed
        pytest.param({"initial_blocks": 0, "hold_down": -1}, "initial_blocks", id="control-block-first"),
        pytest.param({"ports": (2, 1), "order": 5}, "ports", id="control-block-before-policy-types"),
        pytest.param({"hold_down": -1, "clock": 5}, "hold_down", id="hold_down-before-clock"),
        pytest.param({"clock": 5, "order": "x"}, TypeError, id="clock-before-order"),
        pytest.param({"order": "x", "seed": 1.5}, "order", id="order-before-seed"),
        pytest.param({"hold_down": "x", "order": "x"}, TypeError, id="hold_down-type-before-order"),
    ],
)
def test_policy_validation_order(impl: Any, options: dict[str, Any], expected: Any) -> None:
    config: dict[str, Any] = {"initial_blocks": 2, "ports": (1, 4), **options}
    initial, ports = config.pop("initial_blocks"), config.pop("ports")
    if expected is TypeError:
        with pytest.raises(TypeError):
            impl("t", "10.0.0.1", "10.0.0.1", 32, initial, 10, ports=ports, **config)
    else:
        with pytest.raises(PoolConfigError) as info:
            impl("t", "10.0.0.1", "10.0.0.1", 32, initial, 10, ports=ports, **config)
        assert info.value.field == expected


@pytest.mark.parametrize(
    ("hold", "error"),
    [
        (-1, ArgumentError),
        (-0.001, ArgumentError),
        (float("nan"), ArgumentError),
        (float("-inf"), ArgumentError),
        (10**400, ArgumentError),
        ("1", TypeError),
        (True, TypeError),
        ([1], TypeError),
    ],
)
def test_bad_hold_changes_nothing(impl: Any, hold: Any, error: type[Exception]) -> None:
    clock = Clock()
    pool = single_ip(impl, 4, 4, clock=clock)
    lease = pool.allocate()
    before = (pool.stats(), pool.subpools())
    with pytest.raises(error):
        pool.free(lease, hold=hold)
    with pytest.raises(error):
        pool.free_many([lease], hold=hold)
    assert (pool.stats(), pool.subpools()) == before
    assert clock.calls == 0
    pool.free(lease, hold=-0.0)  # minus zero is zero: no hold
    assert pool.stats().held == 0


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ArgumentError),
        (float("inf"), ArgumentError),
        (10**400, ArgumentError),
        ("now", TypeError),
        (None, TypeError),
        (True, TypeError),
    ],
)
def test_a_bad_clock_value_fails_the_call_and_changes_nothing(impl: Any, value: Any, error: type[Exception]) -> None:
    readings = [0.0]
    pool = single_ip(impl, 4, 4, clock=lambda: readings[-1])
    a, b = pool.allocate_many(2)
    pool.free(a, hold=1)
    readings.append(value)
    before = (pool.stats(), pool.subpools(), pool.intervals())
    for call in (lambda: pool.free(b, hold=1), pool.allocate, lambda: pool.allocate_many(1), pool.lease().__enter__):
        with pytest.raises(error):
            call()
        assert (pool.stats(), pool.subpools(), pool.intervals()) == before
    pool.free(b)  # no hold: the clock is not read
    readings.append(5.0)
    assert pool.allocate().port == 3


def test_an_exception_from_the_clock_propagates(impl: Any) -> None:
    class Stopped(Exception):
        pass

    def broken() -> float:
        raise Stopped

    pool = single_ip(impl, 4, 4, clock=broken)
    lease = pool.allocate()  # nothing held: not read
    with pytest.raises(Stopped):
        pool.free(lease, hold=2)
    assert len(pool) == 1
