"""The reference model of a natpool pool: the executable specification.

Allocation order (the Rust core returns exactly the same, call for call, in
single-threaded use; under concurrency it skips rather than waits for the
optional threshold growth and idle-subpool deletion while another thread is
creating or deleting a subpool, see ``docs/design.md``):

* ``allocate()`` takes a block from the lowest-id subpool that has a free
  block; within a subpool, the most recently freed block first (a fresh
  subpool hands out its addresses in ascending order).
* With no free block, a subpool is created (if the blocks in subpools are
  below ``capacity``); after any successful allocation that leaves
  ``free_blocks <= grow_threshold``, one more subpool is created.
* A new subpool gets the lowest unused id and the first addresses of the
  lowest free interval, ``initial_blocks`` of them for the first subpool and
  ``subpool_blocks`` later, clipped to the interval and to ``capacity``.
* When a subpool's last live lease is freed, it is deleted and its interval
  merged into the free space, unless the blocks left would be fewer than
  ``initial_blocks``.

With a store (``store=``, see ``natpool.store`` and ``natpool/store/member.py``) the pool
is one member of a cluster sharing the address space:

* Creating a subpool **claims** its range from the store (``Store.claim``: the
  cluster-wide first fit, ``initial_blocks`` for the cluster's first claim,
  ``subpool_blocks`` later, clipped to the free interval and to ``capacity``
  minus what the cluster has claimed). ``None`` from the store means the
  cluster is full: the allocation that needed the subpool raises
  ``PoolExhausted``; a failing store raises ``StoreError``; either way nothing
  changed. The growth at ``grow_threshold`` after a successful allocation is
  optional: it is skipped when the store has nothing or fails, and not tried
  while the last store call failed (``Member.store_down``).
* Deleting a subpool **returns** its claim (``Store.release``) first; if the
  store fails (or is known down) the subpool simply stays, as an idle subpool
  stays when the keep rule says so.
* **Self-fencing**: at the start of every allocation (and in ``renew()``), a
  subpool whose claim was lost (the store did not renew it) or whose local
  deadline passed is fenced: it serves no more allocations; its live leases
  stay valid, can be looked up and freed; one without live leases is dropped
  at once, and one with leases when its last lease is freed, without telling
  the store (which holds, or will hold, the range). Fenced subpools still
  count in ``len``, ``stats()``, ``subpools()`` and ``intervals()``, and their
  claims are still renewed (only lost ones are not).
* ``capacity`` and ``max_blocks`` are the cluster's; ``len(pool)``,
  ``stats()``, ``subpools()`` and ``intervals()`` are this member's:
  ``intervals()`` shows this member's subpools at their claimed ranges and
  every other address as an interval with ``subpool None`` (not this
  member's: free in the cluster, or another member's, or held).
* ``close()`` stops the renewal, returns the claims of the subpools without
  live leases and leaves the pool (``Store.leave``, one call); later calls
  raise ``NatPoolError``.

A handle is ``generation << 64 | subpool_id << 32 | offset``. A block's
generation (32 bits, wrapping) is bumped on every free; a subpool made under
an id that was used before starts its blocks at the highest generation the
previous holder of that id reached, so no earlier handle matches again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from natpool.errors import ArgumentError, LeaseError, NatPoolError, PoolExhausted, StoreError
from natpool.records import Interval, PoolStats, Subpool
from natpool.reference.config import ControlBlock, control_block, ip_str, parse_ip
from natpool.reference.interval_list import IntervalList
from natpool.reference.memory_pool import GENERATION_MASK, ConnectionBlock, MainPoolHeader, SubpoolHeader
from natpool.store import member as cluster

__all__ = ["Pool", "Lease"]


class Lease:
    """A client NAT address held by one connection."""

    __slots__ = ("_pool", "_handle", "_ip", "_port", "_data")

    def __init__(self, pool: Pool, handle: int, ip: int, port: int, data: Any) -> None:
        self._pool = pool
        self._handle = handle
        self._ip = ip
        self._port = port
        self._data = data

    pool = property(lambda self: self._pool, doc="The pool that issued the lease.")
    handle = property(lambda self: self._handle, doc="The lease's handle (an int).")
    ip = property(lambda self: ip_str(self._ip), doc="The NAT IP as a dotted string.")
    port = property(lambda self: self._port, doc="The NAT port.")
    data = property(lambda self: self._data, doc="The object given to allocate().")

    @property
    def address(self) -> tuple[str, int]:
        """``(ip, port)``, as ``socket.bind`` takes it."""
        return (self.ip, self._port)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Lease):
            return NotImplemented
        return self._pool is other._pool and self._handle == other._handle

    def __hash__(self) -> int:
        return hash((id(self._pool), self._handle))

    def __repr__(self) -> str:
        return f"Lease(ip={self.ip!r}, port={self._port}, handle={self._handle:#x})"


class _LeaseContext:
    def __init__(self, pool: Pool, data: Any) -> None:
        self._pool = pool
        self._data = data
        self._lease: Lease | None = None

    def __enter__(self) -> Lease:
        self._lease = self._pool.allocate(self._data)
        return self._lease

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease, self._lease = self._lease, None
        if lease is not None:
            # One attempt: a lease already freed inside the block is fine (as in the Rust core).
            with contextlib.suppress(LeaseError):
                self._pool.free(lease)


def _handle(generation: int, ident: int, offset: int) -> int:
    return generation << 64 | ident << 32 | offset


class Pool:
    """A client NAT address pool (pure Python; see the module docstring)."""

    def __init__(
        self,
        name: str,
        first_ip: Any,
        last_ip: Any,
        netmask: str | int,
        initial_blocks: int,
        max_blocks: int,
        *,
        ports: tuple[int, int] = (1024, 65535),
        subpool_blocks: int | None = None,
        grow_threshold: int = 0,
        store: Any = None,
        member: str | None = None,
        claim_ttl: float = 30.0,
        reclaim_delay: float = 120.0,
        renew_interval: float | None = None,
    ) -> None:
        # None for ports or grow_threshold means the default, as in the Rust binding.
        ports = (1024, 65535) if ports is None else ports
        grow_threshold = 0 if grow_threshold is None else grow_threshold
        self._cb: ControlBlock = control_block(
            name, first_ip, last_ip, netmask, initial_blocks, max_blocks, ports, subpool_blocks, grow_threshold
        )
        # The store arguments are validated after the control block, then the store is
        # opened (a URL) and joined: nothing reaches the store before every argument is valid.
        chosen = cluster.settings(store, member, claim_ttl, reclaim_delay, renew_interval)
        self._intervals = IntervalList(self._cb.address_count)
        self._memory_pool: MainPoolHeader | None = None  # MPA: NULL until the first allocate()
        self._live = 0
        self._closed = False
        self._member: cluster.Member | None = None if chosen is None else cluster.Member(self._cb, chosen)
        if self._member is not None:
            self._member.start_renewing()

    # -- the control block's read-only attributes ---------------------------------------
    name = property(lambda self: self._cb.name)
    first_ip = property(lambda self: ip_str(self._cb.first_ip))
    last_ip = property(lambda self: ip_str(self._cb.last_ip))
    netmask = property(lambda self: ip_str((0xFFFFFFFF << (32 - self._cb.prefix)) & 0xFFFFFFFF))
    initial_blocks = property(lambda self: self._cb.initial_blocks)
    max_blocks = property(lambda self: self._cb.max_blocks)
    ports = property(lambda self: self._cb.ports)
    subpool_blocks = property(lambda self: self._cb.subpool_blocks)
    grow_threshold = property(lambda self: self._cb.grow_threshold)
    address_count = property(lambda self: self._cb.address_count)
    capacity = property(lambda self: self._cb.capacity)
    member = property(
        lambda self: None if self._member is None else self._member.member,
        doc="This pool instance's name in the cluster (None without a store).",
    )

    def __len__(self) -> int:
        return self._live

    def __repr__(self) -> str:
        return f"Pool(name={self.name!r}, live={self._live}, capacity={self.capacity})"

    # -- allocation ----------------------------------------------------------------------
    def _blocks(self) -> int:
        return 0 if self._memory_pool is None else self._memory_pool.blocks

    def _serving_free(self) -> int:
        """Free blocks that can be allocated: those of subpools not fenced (all of them without a store)."""
        if self._memory_pool is None:
            return 0
        fenced = sum(s.free for s in self._memory_pool.subpools.values() if s.claim is not None and s.claim.fenced)
        return self._blocks() - self._live - fenced

    def allocate(self, data: Any = None) -> Lease:
        """Lease a free client NAT address; ``PoolExhausted`` when ``len(pool) == capacity``
        (with a store: when no subpool of this member has a free block and the cluster has no range left)."""
        self._check_open()
        self._fence()
        if self._live == self.capacity:
            raise PoolExhausted(f"pool {self.name!r} has all {self.capacity} addresses leased")
        subpool = None if self._memory_pool is None else self._memory_pool.with_free_block()
        if subpool is None:
            subpool = self._create_subpool(required=True)
            assert subpool is not None
        offset = subpool.pop()
        block = subpool.blocks[offset]
        block.live, block.data = True, data
        self._live += 1
        if self._serving_free() <= self._cb.grow_threshold and self._blocks() < self.capacity:
            self._create_subpool(required=False)
        return Lease(self, _handle(block.generation, subpool.id, offset), block.ip, block.port, data)

    def allocate_many(self, n: int) -> list[Lease]:
        """Lease ``n`` addresses (``data=None``), all or nothing."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n must be int, not {type(n).__name__}")
        if n < 0:
            raise ArgumentError(f"n: {n} is negative")
        self._check_open()
        if n > self.capacity - self._live:
            raise PoolExhausted(f"pool {self.name!r} has {self.capacity - self._live} addresses left, {n} asked")
        if self._member is None:
            return [self.allocate() for _ in range(n)]
        # With a store the cluster may run out (or the store fail) part-way: the batch's
        # leases are freed again, last first (so every free list is as before); the
        # subpools it claimed stay, empty, for the next allocations.
        leases: list[Lease] = []
        try:
            for _ in range(n):
                leases.append(self.allocate())
        except (PoolExhausted, StoreError):
            for lease in reversed(leases):
                found = self._block_of(lease.handle)
                assert found is not None
                self._release(*found, tidy=False)
            raise
        return leases

    def lease(self, data: Any = None) -> _LeaseContext:
        """A context manager that allocates on entry and frees on exit."""
        self._check_open()
        return _LeaseContext(self, data)

    def _create_subpool(self, required: bool) -> SubpoolHeader | None:
        """Create a subpool: ``required`` when an allocation needs it, else the optional threshold growth.

        Without a store this always succeeds (the callers checked ``capacity``).
        """
        if self._member is not None:
            return self._claim_subpool(required)
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
            wanted = self._cb.initial_blocks
        else:
            wanted = self._cb.subpool_blocks
        memory_pool = self._memory_pool
        element = self._intervals.first_free()
        assert element is not None
        count = min(wanted, element.count, self.capacity - memory_pool.blocks)
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(element.first + i), generation) for i in range(count)]
        subpool = SubpoolHeader(ident, element, blocks)
        self._intervals.assign(element, count, subpool)
        memory_pool.subpools[ident] = subpool
        memory_pool.blocks += count
        return subpool

    def _claim_subpool(self, required: bool) -> SubpoolHeader | None:
        """With a store: create a subpool on a range claimed from the cluster (see the module docstring)."""
        member = self._member
        assert member is not None
        if not required and member.store_down:
            return None
        try:
            claimed = member.claim(self._intervals.is_free)
        except StoreError:
            if required:
                raise
            return None
        if claimed is None:
            if required:
                raise PoolExhausted(
                    f"pool {self.name!r}: member {member.member!r} has no free block and the cluster has no "
                    f"address left to claim (capacity {self.capacity})"
                )
            return None
        grant, state = claimed
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        memory_pool = self._memory_pool
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(grant.first + i), generation) for i in range(grant.count)]
        subpool = SubpoolHeader(ident, self._intervals.owner_of(grant.first), blocks)
        subpool.interval = self._intervals.assign_at(grant.first, grant.count, subpool)
        subpool.claim = state
        memory_pool.subpools[ident] = subpool
        memory_pool.blocks += grant.count
        return subpool

    def _delete_subpool(self, subpool: SubpoolHeader) -> None:
        """Delete an idle subpool; with a store, only once its claim is returned (else it stays)."""
        if subpool.claim is not None:
            member = self._member
            assert member is not None
            if member.store_down:
                return
            try:
                member.release(subpool.claim)
            except StoreError:
                return
        self._remove_subpool(subpool)

    def _drop_subpool(self, subpool: SubpoolHeader) -> None:
        """Remove a fenced subpool without live leases, without telling the store (it holds the range)."""
        assert self._member is not None and subpool.claim is not None
        self._member.forget(subpool.claim)
        self._remove_subpool(subpool)

    def _remove_subpool(self, subpool: SubpoolHeader) -> None:
        memory_pool = self._memory_pool
        assert memory_pool is not None
        memory_pool.generation_floor[subpool.id] = max(b.generation for b in subpool.blocks)
        del memory_pool.subpools[subpool.id]
        memory_pool.blocks -= len(subpool.blocks)
        self._intervals.release(subpool.interval)

    # -- freeing -------------------------------------------------------------------------
    def _handle_of(self, lease_or_handle: Any) -> int:
        if isinstance(lease_or_handle, Lease):
            if lease_or_handle.pool is not self:
                raise LeaseError(f"{lease_or_handle!r} belongs to another pool")
            return int(lease_or_handle.handle)
        if isinstance(lease_or_handle, int) and not isinstance(lease_or_handle, bool):
            return int(lease_or_handle)
        raise TypeError(f"expected a Lease or an int handle, not {type(lease_or_handle).__name__}")

    def _block_of(self, handle: int) -> tuple[SubpoolHeader, int] | None:
        """The subpool and offset of the live block ``handle`` names, or None."""
        if self._memory_pool is None or not 0 <= handle < 1 << 96:
            return None
        generation, ident, offset = handle >> 64, (handle >> 32) & 0xFFFFFFFF, handle & 0xFFFFFFFF
        subpool = self._memory_pool.subpools.get(ident)
        if subpool is None or offset >= len(subpool.blocks):
            return None
        block = subpool.blocks[offset]
        if not block.live or block.generation != generation:
            return None
        return subpool, offset

    def free(self, lease_or_handle: Lease | int) -> None:
        """Return a live lease; ``LeaseError`` (and no change) for anything else."""
        self._check_open()
        handle = self._handle_of(lease_or_handle)
        found = self._block_of(handle)
        if found is None:
            raise LeaseError(f"handle {handle:#x} is not a live lease of pool {self.name!r}")
        self._release(*found)

    def free_many(self, leases: Iterable[Lease | int]) -> None:
        """Free a batch, all or nothing: if any item is not a live lease of this pool
        (or appears twice), ``LeaseError`` is raised and nothing is freed."""
        self._check_open()
        handles = [self._handle_of(item) for item in leases]
        if len(set(handles)) != len(handles):
            raise LeaseError("the batch names a lease twice")
        found = [self._block_of(h) for h in handles]
        for handle, hit in zip(handles, found, strict=True):
            if hit is None:
                raise LeaseError(f"handle {handle:#x} is not a live lease of pool {self.name!r}")
        for hit in found:
            assert hit is not None
            self._release(*hit)

    def _release(self, subpool: SubpoolHeader, offset: int, tidy: bool = True) -> None:
        """Free a live block; if that empties its subpool (and ``tidy``), delete or drop the subpool."""
        block = subpool.blocks[offset]
        block.live, block.data = False, None
        block.generation = (block.generation + 1) & GENERATION_MASK
        subpool.push(offset)
        self._live -= 1
        if not tidy or subpool.free != len(subpool.blocks):
            return
        if subpool.claim is not None and self._member is not None and self._member.lapsed(subpool.claim):
            subpool.claim.fenced = True
            self._drop_subpool(subpool)
        elif self._blocks() - subpool.free >= self._cb.initial_blocks:
            self._delete_subpool(subpool)

    # -- the cluster: fencing, renewal, closing -----------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise NatPoolError(f"pool {self.name!r} is closed")

    def _fence(self) -> None:
        """With a store: fence every subpool whose claim lapsed (lost, or past its deadline), in id order,
        and drop the fenced subpools without live leases."""
        if self._member is None or self._memory_pool is None:
            return
        for ident in sorted(self._memory_pool.subpools):
            subpool = self._memory_pool.subpools[ident]
            claim = subpool.claim
            if claim is None:
                continue
            if not claim.fenced and self._member.lapsed(claim):
                claim.fenced = True
            if claim.fenced and subpool.free == len(subpool.blocks):
                self._drop_subpool(subpool)

    def renew(self) -> None:
        """Renew this member's claims now, then fence the lapsed ones; nothing without a store.

        The renewal thread does the same every ``renew_interval`` seconds (without
        the fencing, which the next allocation does); with ``renew_interval=0``
        the owner calls this before ``claim_ttl`` runs out. ``StoreError`` if the
        store fails (claims whose deadline passes meanwhile are fenced).
        """
        self._check_open()
        if self._member is None:
            return
        try:
            self._member.renew()
        finally:
            self._fence()

    def close(self) -> None:
        """Close the pool; idempotent. Later calls raise ``NatPoolError``.

        With a store: stop the renewal, return the claims of the subpools without
        live leases and leave the cluster, in one store call. If the store fails,
        the pool is closed all the same and ``StoreError`` is raised: its claims
        lapse ``claim_ttl`` later and are held ``reclaim_delay`` more, as a dead
        member's are.
        """
        if self._closed:
            return
        self._closed = True
        member = self._member
        if member is None:
            return
        subpools = (
            []
            if self._memory_pool is None
            else [self._memory_pool.subpools[i] for i in sorted(self._memory_pool.subpools)]
        )
        idle = [
            s.claim for s in subpools if s.claim is not None and s.free == len(s.blocks) and not member.lapsed(s.claim)
        ]
        member.leave(idle)

    def __enter__(self) -> Pool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- lookup and introspection --------------------------------------------------------
    def lookup(self, ip: Any, port: int) -> Lease | None:
        """The live lease holding (ip, port), with its data, or None."""
        self._check_open()
        address = parse_ip(ip, "ip", ArgumentError)
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"port must be int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise ArgumentError(f"port: {port} is outside 0..65535")
        index = self._cb.index(address, port)
        if index is None:
            return None
        element = self._intervals.owner_of(index)
        subpool = element.subpool
        if subpool is None:
            return None
        offset = index - element.first
        block = subpool.blocks[offset]
        if not block.live:
            return None
        return Lease(self, _handle(block.generation, subpool.id, offset), block.ip, block.port, block.data)

    def _record_bounds(self, first: int, count: int) -> tuple[str, int, str, int]:
        first_ip, first_port = self._cb.address(first)
        last_ip, last_port = self._cb.address(first + count - 1)
        return ip_str(first_ip), first_port, ip_str(last_ip), last_port

    def intervals(self) -> list[Interval]:
        """The interval list, in address order (with a store: this member's view, see the module docstring)."""
        self._check_open()
        return [
            Interval(*self._record_bounds(e.first, e.count), e.count, None if e.subpool is None else e.subpool.id)
            for e in self._intervals
        ]

    def subpools(self) -> list[Subpool]:
        """The subpools, in address order."""
        self._check_open()
        return [
            Subpool(e.subpool.id, *self._record_bounds(e.first, e.count), len(e.subpool.blocks), e.subpool.free)
            for e in self._intervals
            if e.subpool is not None
        ]

    def stats(self) -> PoolStats:
        self._check_open()
        blocks = self._blocks()
        return PoolStats(
            live=self._live,
            free_blocks=blocks - self._live,
            blocks=blocks,
            subpools=0 if self._memory_pool is None else len(self._memory_pool.subpools),
            intervals=self._intervals.length,
            free_addresses=self.address_count - blocks,
            address_count=self.address_count,
            capacity=self.capacity,
        )
