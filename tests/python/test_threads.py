"""Contract point 8 (a first check): one ``natpool.Pool`` shared by 8 threads.

Each thread runs a fixed number of random operations (seeded per thread): allocate,
free its own leases, hand leases to other threads through a queue and free the ones it
receives, double-free, look up, allocate_many and free_many. A shared ledger records every
live (ip, port) and flags one that is handed out while still live. At the end everything
is freed and the counters must add up. Nothing here depends on timing.
"""

from __future__ import annotations

import itertools
import queue
import random
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import natpool
import pytest
from natpool import LeaseError, PoolExhausted

THREADS = 8
ITERATIONS = 2500


class Ledger:
    """Who holds which address, as the threads see it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live: dict[tuple[str, int], int] = {}
        self.violations: list[str] = []

    def take(self, lease: Any, who: int) -> None:
        with self.lock:
            if lease.address in self.live:
                self.violations.append(f"{lease.address} handed to {who} while held by {self.live[lease.address]}")
            self.live[lease.address] = who

    def release(self, lease: Any) -> None:
        """Called before the pool frees the lease, so no other thread can get the address yet."""
        with self.lock:
            if self.live.pop(lease.address, None) is None:
                self.violations.append(f"{lease.address} released but not recorded as live")


@pytest.fixture
def fine_switching() -> Iterator[None]:
    """Switch threads often, so that operations interleave as much as possible."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def worker(
    pool: Any,
    who: int,
    ledger: Ledger,
    handoff: queue.Queue[Any],
    start: threading.Barrier,
    held: list[list[Any]],
    errors: list[str],
    counts: list[int],
) -> None:
    rng = random.Random(who)
    mine: list[Any] = []
    first, last = pool.intervals()[0], pool.intervals()[-1]
    low, high = pool.ports
    try:
        start.wait()
        for step in range(ITERATIONS):
            roll = rng.random()
            if roll < 0.30:
                try:
                    lease = pool.allocate((who, step))
                except PoolExhausted:
                    continue
                assert lease.data == (who, step)
                ledger.take(lease, who)
                mine.append(lease)
                counts[who] += 1
            elif roll < 0.45 and mine:
                lease = mine.pop(rng.randrange(len(mine)))
                ledger.release(lease)
                pool.free(lease if rng.random() < 0.5 else lease.handle)
                if rng.random() < 0.2:
                    try:
                        pool.free(lease)
                    except LeaseError:
                        pass
                    else:
                        raise AssertionError(f"double free of {lease!r} succeeded")
            elif roll < 0.55 and mine:
                handoff.put(mine.pop(rng.randrange(len(mine))))
            elif roll < 0.65:
                try:
                    lease = handoff.get_nowait()
                except queue.Empty:
                    continue
                ledger.release(lease)
                pool.free(lease)
            elif roll < 0.75 and mine:
                lease = mine[rng.randrange(len(mine))]
                found = pool.lookup(lease.ip, lease.port)
                assert found == lease, (found, lease)
                assert found.data == lease.data
            elif roll < 0.82:
                ip = rng.choice([first.first_ip, last.last_ip])
                port = rng.randint(low - 1, high + 1)
                found = pool.lookup(ip, port)
                assert found is None or found.address == (ip, port)
            elif roll < 0.91:
                try:
                    batch = pool.allocate_many(rng.randint(1, 5))
                except PoolExhausted:
                    continue
                for lease in batch:
                    assert lease.data is None
                    ledger.take(lease, who)
                mine.extend(batch)
                counts[who] += len(batch)
            elif mine:
                rng.shuffle(mine)
                cut = rng.randint(1, len(mine))
                batch, mine = mine[:cut], mine[cut:]
                for lease in batch:
                    ledger.release(lease)
                pool.free_many([lease if rng.random() < 0.5 else lease.handle for lease in batch])
    except BaseException:
        errors.append(f"thread {who}:\n{traceback.format_exc()}")
    finally:
        held[who] = mine


def check_counters(pool: Any) -> None:
    stats = pool.stats()
    intervals, subpools = pool.intervals(), pool.subpools()
    assert stats.live == len(pool)
    assert stats.blocks == sum(s.blocks for s in subpools) <= stats.capacity
    assert stats.free_blocks == sum(s.free for s in subpools) == stats.blocks - stats.live
    assert stats.subpools == len(subpools)
    assert stats.intervals == len(intervals)
    assert sum(i.count for i in intervals) == stats.address_count == pool.address_count
    assert stats.free_addresses == sum(i.count for i in intervals if i.subpool is None)
    assert stats.free_addresses == stats.address_count - stats.blocks
    assert [i.subpool for i in intervals if i.subpool is not None] == [s.id for s in subpools]
    for a, b in itertools.pairwise(intervals):
        assert a.subpool is not None or b.subpool is not None


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"initial_blocks": 4, "max_blocks": 100, "subpool_blocks": 4, "grow_threshold": 1}, id="roomy"),
        pytest.param({"initial_blocks": 1, "max_blocks": 40, "subpool_blocks": 1, "grow_threshold": 0}, id="tight"),
    ],
)
def test_eight_threads_share_one_pool(options: dict[str, Any], fine_switching: None) -> None:
    pool = natpool.Pool(
        "threads",
        "10.9.0.1",
        "10.9.0.2",
        24,
        options["initial_blocks"],
        options["max_blocks"],
        ports=(20000, 20063),
        subpool_blocks=options["subpool_blocks"],
        grow_threshold=options["grow_threshold"],
    )
    ledger = Ledger()
    handoff: queue.Queue[Any] = queue.Queue()
    start = threading.Barrier(THREADS)
    held: list[list[Any]] = [[] for _ in range(THREADS)]
    errors: list[str] = []
    counts = [0] * THREADS
    threads = [
        threading.Thread(target=worker, args=(pool, k, ledger, handoff, start, held, errors, counts))
        for k in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert ledger.violations == []
    # Not every thread: in the tight pool one thread can be starved by the others' hoarding
    # (seen: 1 lease in 2,500 steps), which is scheduling, not a fault.
    assert sum(counts) > 0
    remaining = [lease for leases in held for lease in leases]
    while not handoff.empty():
        remaining.append(handoff.get_nowait())
    assert len(pool) == len(remaining) == len(ledger.live)
    assert {lease.address for lease in remaining} == set(ledger.live)
    for lease in remaining:
        assert pool.lookup(*lease.address) == lease
    check_counters(pool)

    # Exhaustion still comes exactly at capacity.
    extra = pool.allocate_many(pool.capacity - len(pool))
    with pytest.raises(PoolExhausted):
        pool.allocate()
    check_counters(pool)
    assert len({lease.address for lease in remaining + extra}) == pool.capacity

    pool.free_many(remaining)
    pool.free_many(extra)
    stats = pool.stats()
    assert stats.live == 0 == len(pool)
    assert stats.free_blocks == stats.blocks
    assert stats.blocks >= min(pool.initial_blocks, pool.address_count)
    check_counters(pool)
    lease = pool.allocate()
    pool.free(lease)
    with pytest.raises(LeaseError):
        pool.free_many([lease])


def test_batches_release_the_gil() -> None:
    """While one thread is inside ``allocate_many``/``free_many``, another runs Python.

    With the GIL held for the whole call, the watcher could only ever see the pool empty
    or the whole batch live; it sees counts in between, which it can only read while the
    core is part-way through the batch, i.e. while the GIL is released.
    """
    n = 300_000
    pool = natpool.Pool("gil", "10.8.0.1", "10.8.0.254", 24, 4096, n, subpool_blocks=4096)
    batches: list[Any] = []
    seen: set[int] = set()
    done = threading.Event()

    def batch_worker() -> None:
        try:
            for _ in range(3):
                batches.append(pool.allocate_many(n))
                pool.free_many(batches.pop())
        finally:
            done.set()

    worker = threading.Thread(target=batch_worker)
    worker.start()
    while not done.is_set():
        seen.add(len(pool))
    worker.join()
    assert len(pool) == 0
    assert any(0 < count < n for count in seen), sorted(seen)[:10]


def test_lease_context_exit_races_a_free_from_another_thread() -> None:
    """``lease()``'s exit and another thread's ``free_many`` of the same lease: one of them frees it.

    ``free_many`` releases the GIL, so its free can land in the middle of the exit. The exit makes one
    attempt and accepts "already freed"; it used to check ``is_live`` and then free, and raised
    ``LeaseError`` when the other free landed in between. The window is a few instructions wide: with
    the old exit and 100,000 rounds, 1 run in 8 failed here (2 cores), so this test catches the bug
    often, not always; it never fails with the single-attempt exit. The other side may lose and get
    ``LeaseError``; the lease is freed exactly once either way.
    """
    # Two addresses: the next round may start while the other free of the last one is still landing.
    pool = natpool.Pool("exit-race", "10.0.0.1", "10.0.0.1", 32, 2, 2, ports=(1000, 1001))
    rounds = 200_000
    slot: list[Any] = [None]
    start = threading.Barrier(2)
    other_errors: list[BaseException] = []

    def other() -> None:
        for _ in range(rounds):
            start.wait()
            try:
                pool.free_many([slot[0]])
            except LeaseError:
                pass  # the exit freed it first
            except BaseException as exc:  # pragma: no cover - reported below
                other_errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    try:
        for _ in range(rounds):
            with pool.lease() as lease:
                slot[0] = lease
                start.wait()
            assert pool.lookup(*lease.address) is None
    finally:
        start.abort()
        thread.join()
    assert other_errors == []
    assert len(pool) == 0


def _fill_from_threads(pool: Any, threads: int) -> list[Any]:
    """Each thread fills ``pool`` with ``allocate_many`` until a batch no longer fits,
    then with single allocations until ``PoolExhausted``; all threads' leases."""
    start = threading.Barrier(threads)
    got: list[list[Any]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def fill(index: int) -> None:
        try:
            start.wait()
            while True:
                try:
                    got[index].extend(pool.allocate_many(37 + index))
                except PoolExhausted:
                    break
            while True:
                try:
                    got[index].append(pool.allocate())
                except PoolExhausted:
                    return
        except BaseException:
            errors.append(traceback.format_exc())

    workers = [threading.Thread(target=fill, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors, errors[0]
    return [lease for mine in got for lease in mine]


def test_threads_filling_one_pool_with_batches_get_exactly_capacity() -> None:
    """Overlapping batch calls (GIL released) may take from home subpools (issue 13).

    Four threads fill one pool at once, again and again: exactly ``capacity`` leases,
    every address once, and ``PoolExhausted`` only then.
    """
    capacity = 6_000
    for _ in range(10):
        pool = natpool.Pool("homes", "10.9.0.1", "10.9.0.254", 24, 256, capacity, subpool_blocks=128)
        leases = _fill_from_threads(pool, 4)
        assert len(leases) == capacity
        assert len({lease.address for lease in leases}) == capacity
        assert len(pool) == capacity
        with pytest.raises(PoolExhausted):
            pool.allocate()
        pool.free_many(leases)
        assert len(pool) == 0
