"""Issue 12, point 6: ``pool.snapshot()`` and ``Pool.restore()`` (``docs/shapes.md``, "Snapshot format").

Every contract test takes the ``impl`` fixture and so runs on both implementations
(``-k reference`` selects the reference model's). The central check is the *twin*:
a pool restored from a snapshot in the middle of a sequence of calls, and a pool that
was never snapshotted, given the same remaining calls, give the same results and the
same records, and their snapshots at the end are the same bytes. The format itself is
pinned by one snapshot written out field by field from the document. The hypothesis
tests at the end restore random sequences at a random point (on each implementation),
and feed random and mutated snapshots to both: they must refuse the same ones, with
``SnapshotError`` only, and restore the same pools from the others.
"""

from __future__ import annotations

import ipaddress
import random
import struct
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import natpool
import natpool.reference
import pytest
from clockkit import Clock
from hypothesis import given
from hypothesis import strategies as st
from natpool import (
    LeaseError,
    NatPoolError,
    PoolExhausted,
    SnapshotError,
)

MAGIC = b"NATPSNAP"


def ip(text: str) -> int:
    return int(ipaddress.ip_address(text))


def records(pool: Any) -> tuple[Any, ...]:
    """Everything observable about a pool's state but its events."""
    return (pool.intervals(), pool.subpools(), pool.stats(), len(pool), pool.drained())


def reseal(body: bytes) -> bytes:
    """A snapshot's bytes with the header's length and the checksum made to fit (``body`` includes the header)."""
    out = bytearray(body)
    out[12:20] = struct.pack("<Q", len(out) + 4)
    return bytes(out + struct.pack("<I", zlib.crc32(bytes(out))))


def round_trip(impl: Any, pool: Any, **options: Any) -> Any:
    """The pool restored from ``pool``'s snapshot, whose own snapshot must be the same bytes."""
    snapshot = pool.snapshot()
    restored = impl.restore(snapshot, **options)
    assert restored.snapshot() == snapshot
    return restored


# -- a pool driven by steps, and its twin ------------------------------------------------------------


class Driven:
    """A pool, its clock and the handles it leased, driven step by step; each step's outcome is returned."""

    def __init__(self, pool: Any, clock: Clock, live: list[int] | None = None) -> None:
        self.pool = pool
        self.clock = clock
        self.live = [] if live is None else list(live)

    def restored(self, impl: Any) -> Driven:
        """The pool restored from this one's snapshot, on a clock of its own reading the same time."""
        clock = Clock(self.clock.now)
        return Driven(impl.restore(self.pool.snapshot(), clock=clock), clock, self.live)

    def step(self, step: tuple[Any, ...]) -> Any:
        kind, *args = step
        pool = self.pool
        try:
            if kind == "allocate":
                lease = pool.allocate(client=args[0])
                self.live.append(lease.handle)
                return lease.address, lease.handle
            if kind == "many":
                leases = pool.allocate_many(args[0], client=args[1])
                self.live.extend(lease.handle for lease in leases)
                return [(lease.address, lease.handle) for lease in leases]
            if kind == "free":
                if not self.live:
                    return None
                handle = self.live.pop(args[0] % len(self.live))
                pool.free(handle, hold=args[1])
                return handle
            if kind == "reserve":
                lease = pool.reserve(args[0], args[1])
                self.live.append(lease.handle)
                return lease.address, lease.handle
            if kind in ("drain", "undrain"):
                return getattr(pool, kind)(args[0])
            if kind == "tick":
                self.clock.now += args[0]
                return None
            if kind == "events":
                return pool.events()
            if kind == "lookup":
                found = pool.lookup(*args)
                return None if found is None else (found.address, found.handle)
        except (NatPoolError, TypeError) as exc:
            return type(exc)
        raise AssertionError(f"unknown step {step!r}")


def check_twins(impl: Any, make: Any, steps: list[tuple[Any, ...]], split: int, now: float = 0.0) -> Driven:
    """Run ``steps`` on a pool never snapshotted and on one restored after ``steps[:split]``: same outcomes,
    same records after every step, and the same snapshot at the end. Returns the restored pool."""
    twin_clock, clock = Clock(now), Clock(now)
    twin, first = Driven(make(twin_clock), twin_clock), Driven(make(clock), clock)
    for step in steps[:split]:
        assert first.step(step) == twin.step(step)
    restored = first.restored(impl)
    assert records(restored.pool) == records(twin.pool)
    for step in steps[split:]:
        assert restored.step(step) == twin.step(step), step
        assert records(restored.pool) == records(twin.pool)
    assert restored.step(("events",)) == twin.step(("events",))
    assert restored.pool.snapshot() == twin.pool.snapshot()
    return restored


def script(seed: int, count: int, ips: list[str], ports: tuple[int, int], clients: list[Any]) -> list[tuple[Any, ...]]:
    """A deterministic random sequence of steps over the given IPs, ports and clients."""
    rng = random.Random(seed)
    steps: list[tuple[Any, ...]] = []
    for _ in range(count):
        kind = rng.choice(["allocate", "allocate", "allocate", "many", "free", "free", "reserve", "drain", "tick"])
        if kind == "allocate":
            steps.append(("allocate", rng.choice(clients)))
        elif kind == "many":
            steps.append(("many", rng.randint(0, 3), rng.choice(clients)))
        elif kind == "free":
            steps.append(("free", rng.randrange(1000), rng.choice([None, None, 0, 3])))
        elif kind == "reserve":
            steps.append(("reserve", rng.choice(ips), rng.randint(*ports)))
        elif kind == "drain":
            steps.append((rng.choice(["drain", "undrain"]), rng.choice(ips)))
        else:
            steps.append(("tick", rng.choice([1, 2, 5])))
    return steps


# -- the format ---------------------------------------------------------------------------------


def test_snapshot_error_is_a_natpool_error_and_a_value_error() -> None:
    assert issubclass(SnapshotError, NatPoolError)
    assert issubclass(SnapshotError, ValueError)
    assert natpool.SnapshotError is natpool.errors.SnapshotError
    assert "SnapshotError" in natpool.__all__


def u128(value: int) -> bytes:
    return value.to_bytes(16, "little")


def test_the_format_field_by_field(impl: Any) -> None:
    """A small pool of every section, written out from docs/shapes.md: both implementations give these bytes."""
    clock = Clock(10.0)
    pool = impl(
        "g",
        "10.0.0.0",
        "10.0.0.3",
        "255.255.255.252",  # /30: 10.0.0.1 and 10.0.0.2
        initial_blocks=2,
        max_blocks=6,
        exclude=["10.0.0.2:3"],
        ports=(1, 4),
        hold_down=2.0,
        clock=clock,
        order="lifo",
        client_quota=3,
        client_block=2,
        event_queue=4,
    )
    assert pool.allocate(client="c").address == ("10.0.0.1", 1)  # port block 0: 10.0.0.1 ports 1-2
    shared = pool.allocate()  # shared subpool 1: 10.0.0.1 ports 3-4
    assert shared.address == ("10.0.0.1", 3)
    pool.free(shared)  # held until 12.0
    pool.drain("10.0.0.2")
    clock.now = 11.0
    a1, a2 = ip("10.0.0.1"), ip("10.0.0.2")
    body = b"".join(
        [
            MAGIC,
            struct.pack("<IQ", 1, 0),  # version; the length is filled in by reseal
            struct.pack("<I", 1) + b"g",
            struct.pack("<BB", 4, 1),  # IPv4, the legacy form
            u128(ip("10.0.0.0")) + u128(ip("10.0.0.3")) + struct.pack("<B", 30),
            struct.pack("<HH", 1, 4),
            struct.pack("<Q", 1) + u128(a1) + u128(a2),  # ranges
            struct.pack("<Q", 1) + u128(a2) + struct.pack("<H", 3) + u128(a2) + struct.pack("<H", 3),  # excluded
            struct.pack("<IQIQ", 2, 6, 2, 0),  # initial, max, subpool blocks, grow_threshold
            struct.pack("<dBB", 2.0, 1, 2 | 8),  # hold_down, lifo, options: client_quota and client_block
            struct.pack("<QQIQ", 0, 3, 2, 4),  # seed, client_quota, client_block, event_queue
            struct.pack("<QQB", 1, 0, 1),  # live, generator, a shared subpool was created
            struct.pack("<I", 0),  # no generation floor
            struct.pack("<Q", 1) + u128(a2),  # drained
            struct.pack("<I", 1),  # one client: "c", 1 live, 0 held, no IP, block 0
            b"\x05" + struct.pack("<I", 1) + b"c" + struct.pack("<QQB", 1, 0, 0) + u128(0) + struct.pack("<II", 1, 0),
            struct.pack("<I", 2),  # two subpools
            struct.pack("<I", 0) + u128(0) + struct.pack("<IIB", 2, 0, 0),  # id 0 at index 0, 2 blocks, client 0
            struct.pack("<2I", 0, 0) + bytes([1, 0]) + struct.pack("<2I", 0, 0xFFFFFFFF) + struct.pack("<II", 1, 1),
            struct.pack("<I", 1) + u128(2) + struct.pack("<IIB", 2, 0xFFFFFFFF, 0),  # id 1 at index 2, shared
            struct.pack("<2I", 1, 0) + bytes([2, 0]) + struct.pack("<2I", 0xFFFFFFFF, 0xFFFFFFFF),
            struct.pack("<II", 1, 1),  # free list: offset 1
            struct.pack("<QIId", 1, 1, 0, 1.0),  # held: subpool 1 offset 0, 1.0 s left
            struct.pack("<QQ", 0, 1),  # no event dropped, one event
            struct.pack("<dB", 10.0, 0) + b"\x05" + struct.pack("<I", 1) + b"c",
            u128(a1) + struct.pack("<H", 1) + u128(a1) + struct.pack("<H", 2),
        ]
    )
    assert pool.snapshot() == reseal(body)
    assert clock.calls == 3  # the allocation for a client, the free with a hold, the snapshot


def test_header_length_and_checksum(impl: Any) -> None:
    snapshot = impl("h", ranges=["10.0.0.1"], initial_blocks=1, max_blocks=1).snapshot()
    magic, version, length = struct.unpack_from("<8sIQ", snapshot)
    assert (magic, version, length) == (MAGIC, 1, len(snapshot))
    assert struct.unpack_from("<I", snapshot, len(snapshot) - 4)[0] == zlib.crc32(snapshot[:-4])


# -- restored pools -----------------------------------------------------------------------------


def test_a_fresh_pool_round_trips_with_its_configuration(impl: Any) -> None:
    pool = impl(
        "cfg",
        "10.0.0.0",
        "10.0.0.255",
        "255.255.255.0",
        initial_blocks=3,
        max_blocks=500,
        ports=(2000, 2009),
        subpool_blocks=5,
        grow_threshold=2,
        hold_down=1.5,
        order="random",
        seed=99,
        client_quota=4,
        paired=True,
        event_queue=7,
    )
    restored = round_trip(impl, pool)
    names = [name for name, value in vars(natpool.reference.Pool).items() if isinstance(value, property)]
    assert {"ranges", "netmask", "hold_down", "client_block", "event_queue"} <= set(names)
    assert [getattr(restored, n) for n in names] == [getattr(pool, n) for n in names]
    assert (restored.first_ip, restored.last_ip, restored.netmask) == ("10.0.0.0", "10.0.0.255", "255.255.255.0")
    assert records(restored) == records(pool)


def test_restored_leases_are_live_found_freed_and_stale_handles_stay_stale(impl: Any) -> None:
    pool = impl("l", ranges=["10.0.0.1-10.0.0.2"], ports=(1, 4), initial_blocks=4, max_blocks=8)
    leases = pool.allocate_many(6)  # subpools 0 (10.0.0.1) and 1 (10.0.0.2)
    stale = [leases[0].handle, leases[5].handle]
    pool.free(leases[0])
    pool.free(leases[5])
    for lease in leases[4:5]:
        pool.free(lease)  # subpool 1 is now empty: deleted (4 blocks are left: the keep rule is met)
    assert [s.id for s in pool.subpools()] == [0]
    gone = leases[4].handle
    restored = round_trip(impl, pool)
    assert len(restored) == 3
    for lease in leases[1:4]:
        found = restored.lookup(lease.ip, lease.port)
        assert found is not None and found.handle == lease.handle and found.data is None
        assert found.address == lease.address
    for handle in [*stale, gone]:
        with pytest.raises(LeaseError):
            restored.free(handle)
    # subpool id 1 is made again: its blocks start past the generations of the deleted one
    again = restored.allocate_many(5)
    assert all(lease.handle not in (gone, *stale) for lease in again)
    with pytest.raises(LeaseError):
        restored.free(gone)
    restored.free(leases[1].handle)
    assert restored.lookup(leases[1].ip, leases[1].port) is None
    with pytest.raises(LeaseError):
        restored.free(leases[1].handle)
    pool.free_many(leases[1:4])  # the original is untouched by its restored copy
    assert len(pool) == 0


def test_data_is_attached_by_handle(impl: Any) -> None:
    pool = impl("d", ranges=["10.0.0.1"], ports=(1, 4), initial_blocks=4, max_blocks=4)
    first, second = pool.allocate("one"), pool.allocate("two")
    snapshot = pool.snapshot()
    restored = impl.restore(snapshot, data={second.handle: ["payload"]})
    assert restored.lookup("10.0.0.1", second.port).data == ["payload"]
    assert restored.lookup("10.0.0.1", first.port).data is None  # data is not in a snapshot
    assert impl.restore(snapshot, data={}).lookup("10.0.0.1", 1).data is None


def test_bad_restore_arguments_are_typed_errors(impl: Any) -> None:
    pool = impl("d", ranges=["10.0.0.1"], ports=(1, 4), initial_blocks=4, max_blocks=4)
    lease = pool.allocate()
    pool.free(pool.allocate())
    snapshot = pool.snapshot()
    with pytest.raises(TypeError):
        impl.restore(snapshot.decode("latin-1"))
    with pytest.raises(TypeError):
        impl.restore(snapshot, data=[(lease.handle, 1)])
    with pytest.raises(TypeError):
        impl.restore(snapshot, data={str(lease.handle): 1})
    with pytest.raises(TypeError):
        impl.restore(snapshot, data={True: 1})
    with pytest.raises(TypeError):
        impl.restore(snapshot, clock=5)
    with pytest.raises(LeaseError):
        impl.restore(snapshot, data={lease.handle + (1 << 32): 1})  # no subpool 1
    with pytest.raises(LeaseError):
        impl.restore(snapshot, data={(1 << 64) | 1: 1})  # block 1 was freed: generation 1, not live
    assert impl.restore(bytearray(snapshot)).snapshot() == snapshot
    assert impl.restore(memoryview(snapshot)).snapshot() == snapshot


def test_a_closed_pool_writes_no_snapshot(impl: Any) -> None:
    pool = impl("c", ranges=["10.0.0.1"], initial_blocks=1, max_blocks=1)
    pool.close()
    with pytest.raises(NatPoolError) as caught:
        pool.snapshot()
    assert type(caught.value) is NatPoolError
    # (a pool on a store writes one: test_store_snapshot.py)


# -- continuing after a restore ---------------------------------------------------------------------


@pytest.mark.parametrize("order", ["fifo", "lifo", "random"])
@pytest.mark.parametrize("split", [0, 7, 20, 39])
def test_continuing_after_a_restore_equals_a_pool_never_snapshotted(impl: Any, order: str, split: int) -> None:
    def make(clock: Clock) -> Any:
        return impl(
            "t",
            ranges=["10.0.0.1-10.0.0.3"],
            ports=(1, 5),
            initial_blocks=3,
            max_blocks=12,
            subpool_blocks=2,
            grow_threshold=1,
            order=order,
            seed=2024,
            clock=clock,
        )

    steps = script(split, 60, ["10.0.0.1", "10.0.0.2", "10.0.0.3"], (1, 5), [None])
    check_twins(impl, make, steps, split)


def test_an_unseeded_random_pool_continues_its_own_draws(impl: Any) -> None:
    pool = impl("u", ranges=["10.0.0.1"], ports=(1, 64), initial_blocks=64, max_blocks=64, order="random")
    for lease in pool.allocate_many(20)[::2]:
        pool.free(lease)
    restored = impl.restore(pool.snapshot())
    assert [lease.address for lease in restored.allocate_many(30)] == [
        lease.address for lease in pool.allocate_many(30)
    ]


def test_holds_keep_the_time_they_had_left(impl: Any) -> None:
    clock = Clock(100.0)
    pool = impl("h", ranges=["10.0.0.1"], ports=(1, 2), initial_blocks=2, max_blocks=2, hold_down=10, clock=clock)
    first, second = pool.allocate_many(2)
    pool.free(first)  # ends at 110
    clock.now = 104.0
    pool.free(second, hold=3)  # ends at 107
    clock.now = 105.0
    calls = clock.calls
    snapshot = pool.snapshot()
    assert clock.calls == calls + 1  # the snapshot read the clock once: blocks are held
    later = Clock(1000.0)
    with pytest.raises(LeaseError):  # data is checked before the clock is read
        impl.restore(snapshot, data={first.handle: "freed"}, clock=later)
    assert later.calls == 0
    restored = impl.restore(snapshot, clock=later)
    assert later.calls == 1
    assert restored.stats().held == 2
    later.now = 1001.5  # 2 s had been left on `second`'s hold, 5 s on `first`'s
    with pytest.raises(PoolExhausted):
        restored.allocate()
    later.now = 1002.0
    assert restored.allocate().address == second.address
    assert restored.stats().held == 1
    later.now = 1005.0
    assert restored.allocate().address == first.address
    # without holds, neither snapshot nor restore reads the clock
    quiet = Clock(0.0)
    idle = impl("q", ranges=["10.0.0.1"], ports=(1, 2), initial_blocks=2, max_blocks=2, hold_down=10, clock=quiet)
    idle.allocate()
    idle_snapshot = idle.snapshot()
    impl.restore(idle_snapshot, clock=quiet)
    assert quiet.calls == 0


def test_holds_that_ended_before_the_snapshot_are_released_by_the_next_allocation(impl: Any) -> None:
    clock = Clock(0.0)
    pool = impl("e", ranges=["10.0.0.1"], ports=(1, 1), initial_blocks=1, max_blocks=1, hold_down=1, clock=clock)
    pool.free(pool.allocate())
    clock.now = 5.0  # the hold ended 4 s ago; still counted as held
    restored = impl.restore(pool.snapshot(), clock=Clock(50.0))
    assert restored.stats().held == 1
    assert restored.allocate().address == ("10.0.0.1", 1)


@pytest.mark.parametrize("split", [3, 25])
def test_clients_quota_paired_port_blocks_and_events_continue(impl: Any, split: int) -> None:
    ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"]
    clients = [None, "a", 7, ("b", 1)]

    def paired(clock: Clock) -> Any:
        return impl(
            "p",
            ranges=["10.0.0.1-10.0.0.4"],
            ports=(1, 3),
            initial_blocks=2,
            max_blocks=12,
            client_quota=3,
            paired=True,
            hold_down=2,
            clock=clock,
        )

    def blocks(clock: Clock) -> Any:
        return impl(
            "b",
            ranges=["10.0.0.1-10.0.0.4"],
            ports=(1, 4),
            initial_blocks=2,
            max_blocks=16,
            client_block=2,
            client_quota=5,
            event_queue=3,
            order="lifo",
            hold_down=1,
            clock=clock,
        )

    steps = script(split, 50, ips, (1, 4), clients)
    check_twins(impl, paired, steps, split)
    check_twins(impl, blocks, [*steps, ("events",)], split, now=3.0)


def test_client_identities_round_trip_with_their_types(impl: Any) -> None:
    clients = ["s", "", -(2**70), 2**64, 255, b"\x00b", True, 1.5, -0.0, ("t", (None, 2), b""), ()]
    pool = impl("i", ranges=["10.0.0.1-10.0.0.20"], ports=(1, 2), initial_blocks=2, max_blocks=40, client_block=1)
    for client in clients:
        pool.allocate(client=client)
    restored = round_trip(impl, pool)
    owners = [record.client for record in restored.subpools()]
    assert owners == clients
    assert [type(owner) for owner in owners] == [type(client) for client in clients]
    assert restored.events() == pool.events()


@pytest.mark.parametrize(
    "client", [object(), frozenset({1}), float("nan"), ("a", float("nan")), ("a", object()), "\udc80"], ids=repr
)
def test_a_client_the_format_cannot_write_refuses_the_snapshot(impl: Any, client: Any) -> None:
    clock = Clock(0.0)
    pool = impl("x", ranges=["10.0.0.1"], ports=(1, 4), initial_blocks=4, max_blocks=4, client_quota=5, clock=clock)
    pool.allocate(client=client)
    pool.free(pool.allocate(), hold=5)
    before, calls = records(pool), clock.calls
    with pytest.raises(SnapshotError):
        pool.snapshot()
    assert records(pool) == before
    assert clock.calls == calls  # refused before the clock was read


# -- shapes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", [4, 30])
def test_ranges_exclusions_drain_and_reserve_continue(impl: Any, split: int) -> None:
    ips = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.1.1", "10.0.1.2"]

    def make(clock: Clock) -> Any:
        return impl(
            "s",
            ranges=["10.0.0.1-10.0.0.3", "10.0.1.1-10.0.1.2"],
            exclude=["10.0.0.2:2-3", "10.0.1.1:1"],
            ports=(1, 4),
            initial_blocks=3,
            max_blocks=14,
            subpool_blocks=3,
            order="random",
            seed=5,
            hold_down=1,
            clock=clock,
        )

    check_twins(impl, make, script(100 + split, 60, ips, (1, 4), [None]), split)


@pytest.mark.parametrize("order", ["fifo", "lifo", "random"])
def test_reserved_phantoms_keep_their_place_in_the_free_list(impl: Any, order: str) -> None:
    def make(clock: Clock) -> Any:
        return impl(
            "r", ranges=["10.0.0.1"], ports=(1, 8), initial_blocks=8, max_blocks=8, order=order, seed=3, clock=clock
        )

    steps = [
        ("many", 3, None),
        ("free", 1, None),
        ("reserve", "10.0.0.1", 6),  # a phantom in the free list
        ("reserve", "10.0.0.1", 2),  # the freed block: a phantom too
        ("free", 3, 2),  # a reserved lease held while its phantom is listed
        ("tick", 1),
        ("allocate", None),
        ("tick", 1),
        ("many", 3, None),
        ("free", 0, None),
        ("allocate", None),
    ]
    for split in range(len(steps) + 1):
        check_twins(impl, make, steps, split)


def test_ipv6_pool_with_exclusions_and_drain(impl: Any) -> None:
    def make(clock: Clock) -> Any:
        return impl(
            "v6",
            ranges=["2001:db8::/126", ("2001:db8::10", "2001:db8::11")],
            exclude=["[2001:db8::2]:3-4", "2001:db8::10-2001:db8::10"],
            ports=(1, 4),
            initial_blocks=3,
            max_blocks=40,
            hold_down=1,
            clock=clock,
        )

    ips = ["2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::11"]
    restored = check_twins(impl, make, script(6, 50, ips, (1, 4), [None]), 25)
    assert restored.pool.family == 6
    assert restored.pool.ranges == [("2001:db8::1", "2001:db8::3"), ("2001:db8::10", "2001:db8::11")]


def test_a_wide_ipv6_pool_round_trips(impl: Any) -> None:
    pool = impl("w", "2001:db8::", "2001:db8:0:ffff:ffff:ffff:ffff:ffff", 48, initial_blocks=4, max_blocks=2**40)
    leases = pool.allocate_many(6)
    pool.drain(leases[0].ip)  # fences subpool 0 (leases still live there)
    restored = round_trip(impl, pool)
    assert restored.address_count == pool.address_count == (2**80 - 1) * 64512
    assert restored.drained() == ["2001:db8::1"]
    assert records(restored) == records(pool)


# -- refused snapshots ------------------------------------------------------------------------------


def rich_snapshot() -> bytes:
    """The snapshot of a reference pool with a bit of everything: clients, port blocks, holds, phantoms,
    events, a drained IP, an exclusion, generation floors."""
    clock = Clock(0.0)
    pool = natpool.reference.Pool(
        "rich",
        ranges=["10.0.0.1-10.0.0.4"],
        exclude=["10.0.0.3:2"],
        ports=(1, 4),
        initial_blocks=3,
        max_blocks=15,
        subpool_blocks=2,
        hold_down=2,
        client_block=2,
        client_quota=4,
        order="random",
        seed=11,
        event_queue=2,
        clock=clock,
    )
    driven = Driven(pool, clock)
    for step in script(77, 60, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"], (1, 4), [None, "a", 2, (b"x",)]):
        driven.step(step)
    return pool.snapshot()


RICH = rich_snapshot()


def test_the_rich_snapshot_holds_every_section() -> None:
    pool = natpool.reference.Pool.restore(RICH, clock=Clock(0.0))
    stats = pool.stats()
    assert stats.live and stats.held and stats.events_dropped and pool.drained()
    assert any(record.client is not None for record in pool.subpools())
    assert any(record.client is None for record in pool.subpools())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: b"X" + s[1:], "magic"),
        (lambda s: reseal(s[:8] + struct.pack("<I", 2) + s[12:-4]), "version 2"),
        (lambda s: s[:-1], "truncated"),
        (lambda s: s + b"\x00", "extended"),
        (lambda s: s[:30] + bytes([s[30] ^ 1]) + s[31:], "checksum"),
        (lambda s: reseal(s[:-5]), "truncated"),
        (lambda s: reseal(s[:-4] + b"\x00"), "after the last field"),
        (lambda s: b"", "truncated"),
    ],
    ids=["magic", "version", "cut", "extended", "flipped", "cut-resealed", "trailing", "empty"],
)
def test_a_bad_snapshot_is_refused(impl: Any, mutate: Any, message: str) -> None:
    with pytest.raises(SnapshotError) as caught:
        impl.restore(mutate(RICH))
    if impl is natpool.reference.Pool:  # the words are the reference model's
        assert message in str(caught.value)


class Watched(Mapping[int, Any]):
    """An empty ``data`` mapping that counts how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    def __getitem__(self, key: int) -> Any:
        self.reads += 1
        raise KeyError(key)

    def __iter__(self) -> Iterator[int]:
        self.reads += 1
        return iter(())

    def __len__(self) -> int:
        self.reads += 1
        return 0


def restore_or_refuse(snapshot: bytes, impl: Any = natpool.reference.Pool) -> list[Any] | None:
    """Restore ``snapshot`` on ``impl``; a refusal must be a ``SnapshotError`` that read neither the clock nor
    ``data`` (``None``). A snapshot it accepts must be canonical (its pool writes it back byte for byte) and
    usable: the outcomes of a few allocations and frees, and the snapshot after them, are returned."""
    clock, data = Clock(0.0), Watched()
    try:
        pool = impl.restore(snapshot, data=data, clock=clock)
    except SnapshotError:
        assert (clock.calls, data.reads) == (0, 0)
        return None
    assert pool.snapshot() == snapshot
    outcomes: list[Any] = []
    for n in range(40):  # the pool works: allocate what is left, free some of it again
        try:
            lease = pool.allocate(client=None if n % 2 else "a")
        except NatPoolError as exc:
            outcomes.append(type(exc))
            break
        outcomes.append((lease.address, lease.handle))
        if n % 3 == 0:
            pool.free(lease)
    outcomes.append(pool.snapshot())
    impl.restore(pool.snapshot(), clock=clock)
    return outcomes


def both_restore_or_refuse(snapshot: bytes) -> list[Any] | None:
    """``restore_or_refuse`` on both implementations: they refuse the same snapshots, and continue alike from
    the ones they accept."""
    reference = restore_or_refuse(snapshot)
    assert restore_or_refuse(snapshot, natpool.Pool) == reference
    return reference


def test_floors_and_ids_in_use_are_every_id_ever_given(impl: Any) -> None:
    """Subpool 1 was deleted: its floor is written (and a zero floor too); a snapshot whose ids in use and
    floors leave a gap, or name an id twice, is refused."""
    pool = impl("f", ranges=["10.0.0.1"], ports=(1, 8), initial_blocks=2, max_blocks=8)
    leases = pool.allocate_many(6)  # subpools 0, 1, 2
    pool.free_many(leases[2:4])  # subpool 1 is deleted: 4 blocks are left
    snapshot = pool.snapshot()
    floors = struct.pack("<QQB", 4, 0, 1) + struct.pack("<III", 1, 1, 1)  # live, generator, shared; floor (1, 1)
    assert snapshot.count(floors) == 1
    at = snapshot.index(floors) + 17

    def floored(*pairs: tuple[int, int]) -> bytes:
        body = struct.pack("<I", len(pairs)) + b"".join(struct.pack("<II", *pair) for pair in pairs)
        return reseal(snapshot[:at] + body + snapshot[at + 12 : -4])

    assert floored((1, 1)) == snapshot
    zero = impl.restore(floored((1, 0)))
    assert zero.snapshot() == floored((1, 0))
    third = zero.allocate_many(3)[2]  # subpool 3 serves two, then id 1 is made again, at generation 0
    assert (third.handle >> 64, third.handle >> 32 & 0xFFFFFFFF) == (0, 1)
    for pairs in [(), ((3, 1),), ((1, 1), (3, 1)), ((1, 1), (2, 1)), ((0, 1),)]:
        with pytest.raises(SnapshotError):
            impl.restore(floored(*pairs))


# -- hypothesis ---------------------------------------------------------------------------------------
# Random sequences restored at a random point (on either implementation), and a fuzz of random and mutated
# snapshots fed to both: the same refusals (SnapshotError only), the same pools from the same snapshots.

SHAPES = [
    {"ranges": ["10.0.0.1-10.0.0.3"], "ports": (1, 4)},
    {"ranges": ["10.0.0.1", "10.0.0.3-10.0.0.4"], "exclude": ["10.0.0.3:2-3"], "ports": (1, 3)},
    {"first_ip": "10.0.0.0", "last_ip": "10.0.0.7", "netmask": 29, "exclude": ["10.0.0.2"], "ports": (5, 7)},
    {"ranges": ["2001:db8::1-2001:db8::3"], "exclude": ["[2001:db8::2]:1"], "ports": (1, 4)},
]
SHAPE_IPS = [
    ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
    ["10.0.0.1", "10.0.0.3", "10.0.0.4"],
    ["10.0.0.1", "10.0.0.2", "10.0.0.6"],
    ["2001:db8::1", "2001:db8::2", "2001:db8::3"],
]


@st.composite
def pool_makers(draw: st.DrawFn, impl: Any) -> tuple[Any, list[str], tuple[int, int]]:
    """A random small pool of ``impl`` (as a function of its clock), its IPs and its ports."""
    n = draw(st.integers(0, len(SHAPES) - 1))
    shape = SHAPES[n]
    options = {
        "initial_blocks": draw(st.integers(1, 4)),
        "subpool_blocks": draw(st.integers(1, 3)),
        "grow_threshold": draw(st.integers(0, 2)),
        "order": draw(st.sampled_from(["fifo", "lifo", "random"])),
        "seed": draw(st.integers(0, 2**64 - 1)),
        "hold_down": draw(st.sampled_from([0, 0, 1, 2.5])),
        "client_quota": draw(st.sampled_from([None, 2, 4])),
        "paired": draw(st.booleans()),
        "client_block": draw(st.sampled_from([None, None, 1, 2])),
        "event_queue": draw(st.integers(0, 3)),
    }
    options["max_blocks"] = options["initial_blocks"] + draw(st.integers(0, 12))

    def make(clock: Clock) -> Any:
        return impl(f"p{n}", clock=clock, **shape, **options)

    return make, SHAPE_IPS[n], shape["ports"]


def steps_strategy(ips: list[str], ports: tuple[int, int]) -> Any:
    clients = st.sampled_from([None, "a", 3, ("t", 1)])
    return st.lists(
        st.one_of(
            st.tuples(st.just("allocate"), clients),
            st.tuples(st.just("many"), st.integers(0, 3), clients),
            st.tuples(st.just("free"), st.integers(0, 50), st.sampled_from([None, 0, 1, 3])),
            st.tuples(st.just("reserve"), st.sampled_from(ips), st.integers(ports[0], ports[1])),
            st.tuples(st.sampled_from(["drain", "undrain"]), st.sampled_from(ips)),
            st.tuples(st.just("tick"), st.sampled_from([0.5, 1, 3])),
            st.tuples(st.just("events")),
        ),
        max_size=30,
    )


@pytest.mark.parametrize("pool_class", [natpool.Pool, natpool.reference.Pool], ids=["rust", "reference"])
@given(data=st.data())
def test_restored_mid_sequence_equals_its_twin(pool_class: Any, data: st.DataObject) -> None:
    make, ips, ports = data.draw(pool_makers(pool_class))
    steps = data.draw(steps_strategy(ips, ports))
    split = data.draw(st.integers(0, len(steps)))
    check_twins(pool_class, make, steps, split, now=data.draw(st.sampled_from([0.0, 7.0])))


@given(snapshot=st.binary(max_size=300))
def test_random_bytes_are_refused_by_both(snapshot: bytes) -> None:
    assert both_restore_or_refuse(snapshot) is None
    assert both_restore_or_refuse(MAGIC + snapshot) is None


@given(body=st.binary(max_size=400))
def test_a_random_body_behind_a_good_header_is_refused_or_restored_alike(body: bytes) -> None:
    both_restore_or_refuse(reseal(RICH[:20] + body))


MUTATIONS = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2**20), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2**20), st.just(0)),
    st.tuples(st.just("drop"), st.integers(0, 2**20), st.integers(1, 16)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.integers(0, 255)),
)


@given(mutations=st.lists(MUTATIONS, min_size=1, max_size=3), sealed=st.booleans())
def test_mutated_snapshots_are_refused_or_restored_alike(mutations: list[tuple[str, int, int]], sealed: bool) -> None:
    """Bit flips, bytes set, cuts, drops and inserts, resealed (length and checksum made to fit, so the
    checks behind the checksum are reached) or not: ``SnapshotError`` from both, or a canonical usable pool
    from both that continues alike."""
    out = bytearray(RICH[:-4] if sealed else RICH)
    for kind, where, value in mutations:
        at = 20 + where % max(1, len(out) - 20) if sealed else where % max(1, len(out))
        if kind in ("flip", "set") and at >= len(out):
            continue
        if kind == "flip":
            out[at] ^= 1 << value
        elif kind == "set":
            out[at] = value
        elif kind == "cut":
            del out[at:]
        elif kind == "drop":
            del out[at : at + value]
        else:
            out.insert(at, value)
    mutated = reseal(bytes(out)) if sealed else bytes(out)
    outcome = both_restore_or_refuse(mutated)
    if not sealed:
        assert outcome is None or mutated == RICH
