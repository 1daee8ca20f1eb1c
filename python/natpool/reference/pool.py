"""The reference model of a natpool pool: the executable specification.

Allocation order (the Rust core returns exactly the same, call for call, in
single-threaded use; under concurrency it skips rather than waits for the
optional threshold growth and idle-subpool deletion while another thread is
creating or deleting a subpool, see ``docs/design.md``):

* ``allocate()`` takes a block from the lowest-id subpool that has a free
  block; within a subpool, in the pool's reuse ``order`` (``reuse.py``):
  ``"fifo"`` the block freed longest ago, ``"lifo"`` the most recently freed,
  ``"random"`` one drawn by the pool's SplitMix64; a fresh subpool's blocks
  count as freed in ascending address order (``"random"``: drawn too).
* A free with a hold (``hold_down``, or ``hold=`` of ``free``) ends the lease
  but keeps its block out of use until the hold ends (``held.py``); held
  blocks count against ``capacity``. The clock is read at fixed points
  (``policy.py``).
* Leases for a client (``client=``) follow ``clients.py``: quotas, paired
  IPs, port blocks (subpools reserved for one client) and the block log.
* With no free block, a subpool is created (if the blocks in subpools are
  below ``capacity``); after any successful allocation that leaves
  ``free_blocks <= grow_threshold``, one more subpool is created.
* A new subpool gets the lowest unused id and the first addresses of the
  lowest free interval, ``initial_blocks`` of them for the first subpool and
  ``subpool_blocks`` later, clipped to the interval and to ``capacity``.
* When a subpool's last live lease is freed, it is deleted and its interval
  merged into the free space, unless the blocks left would be fewer than
  ``initial_blocks``.

A handle is ``generation << 64 | subpool_id << 32 | offset``. A block's
generation (32 bits, wrapping) is bumped on every free; a subpool made under
an id that was used before starts its blocks at the highest generation the
previous holder of that id reached, so no earlier handle matches again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from natpool.errors import ArgumentError, LeaseError, PoolExhausted, QuotaExceeded
from natpool.records import BlockEvent, Interval, PoolStats, Subpool
from natpool.reference.clients import Clients, carve, find_run
from natpool.reference.config import ControlBlock, control_block, ip_str, parse_ip
from natpool.reference.held import HeldQueue
from natpool.reference.interval_list import IntervalList
from natpool.reference.memory_pool import GENERATION_MASK, ConnectionBlock, MainPoolHeader, SubpoolHeader
from natpool.reference.policy import Policy, parse_hold, policy, read_clock
from natpool.reference.reuse import SplitMix64, entropy_seed, free_blocks

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
    def __init__(self, pool: Pool, data: Any, client: Any) -> None:
        self._pool = pool
        self._data = data
        self._client = client
        self._lease: Lease | None = None

    def __enter__(self) -> Lease:
        self._lease = self._pool.allocate(self._data, client=self._client)
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
        hold_down: float = 0.0,
        clock: Callable[[], float] | None = None,
        order: str = "fifo",
        seed: int | None = None,
        client_quota: int | None = None,
        paired: bool = False,
        client_block: int | None = None,
        event_queue: int = 65536,
    ) -> None:
        # None for ports or grow_threshold means the default, as in the Rust binding.
        ports = (1024, 65535) if ports is None else ports
        grow_threshold = 0 if grow_threshold is None else grow_threshold
        self._cb: ControlBlock = control_block(
            name, first_ip, last_ip, netmask, initial_blocks, max_blocks, ports, subpool_blocks, grow_threshold
        )
        self._policy: Policy = policy(
            hold_down,
            clock,
            order,
            seed,
            client_quota,
            paired,
            client_block,
            event_queue,
            ports_per_ip=self._cb.ports_per_ip,
        )
        self._intervals = IntervalList(self._cb.address_count)
        self._memory_pool: MainPoolHeader | None = None  # MPA: NULL until the first allocate()
        self._live = 0
        self._held = HeldQueue()
        self._clients = Clients(self._policy.event_queue)
        self._now: float | None = None
        """The clock's value read by the call in progress (None: it did not read it)."""
        self._rng: SplitMix64 | None = None
        if order == "random":
            self._rng = SplitMix64(entropy_seed() if self._policy.seed is None else self._policy.seed)

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
    hold_down = property(lambda self: self._policy.hold_down)
    order = property(lambda self: self._policy.order)
    client_quota = property(lambda self: self._policy.client_quota)
    paired = property(lambda self: self._policy.paired)
    client_block = property(lambda self: self._policy.client_block)
    event_queue = property(lambda self: self._policy.event_queue)

    def __len__(self) -> int:
        return self._live

    def __repr__(self) -> str:
        return f"Pool(name={self.name!r}, live={self._live}, capacity={self.capacity})"

    # -- allocation ----------------------------------------------------------------------
    def _blocks(self) -> int:
        return 0 if self._memory_pool is None else self._memory_pool.blocks

    def _free_blocks(self) -> int:
        return self._blocks() - self._live - len(self._held)

    def _shared_free(self) -> int:
        """Free blocks of shared subpools (not a client's port blocks)."""
        return 0 if self._memory_pool is None else sum(int(s.free) for s in self._memory_pool.shared())

    def _shared_room(self) -> int:
        """Leases a shared allocation may still get: shared free blocks and blocks not yet made."""
        return self._shared_free() + self._cb.capacity - self._blocks()

    def _exhausted(self, asked: int) -> PoolExhausted:
        left = self._shared_room()
        message = f"pool {self.name!r} has {left} of {self.capacity} addresses left, {asked} asked"
        if self._held and self._now is not None:
            end = self._held.first_end()
            message += f"; {len(self._held)} held, the first hold ends at {end!r} (in {end - self._now:.3f} s)"
        return PoolExhausted(message)

    def _begin(self, client: Any) -> None:
        """An allocation call's first step: read the clock if anything is held (or, with
        ``client_block``, for a client; see policy.py), then release the holds that ended."""
        self._now = None
        if not (self._held or (self._policy.client_block is not None and client is not None)):
            return
        now = self._now = read_clock(self._policy.clock)
        for _end, _sequence, subpool, offset in self._held.due(now):
            block = subpool.blocks[offset]
            client_of_block, block.client = block.client, None
            if client_of_block is not None:
                self._clients.states[client_of_block].held -= 1
            self._return_block(subpool, offset)
            if client_of_block is not None:
                self._clients.tidy(client_of_block)

    def _tracks(self, client: Any) -> bool:
        """Whether this allocation is a client's (and the pool keeps client states)."""
        if client is None:
            return False
        hash(client)  # TypeError for an unhashable client, before anything else
        return self._policy.tracks_clients

    def allocate(self, data: Any = None, *, client: Any = None) -> Lease:
        """Lease a free client NAT address; ``PoolExhausted`` when every address is live or held
        (``QuotaExceeded`` past the client's quota)."""
        tracked = self._tracks(client)
        self._begin(client)
        if not tracked:
            if self._shared_room() == 0:
                raise self._exhausted(1)
            return self._take(data)
        self._check_quota(client, 1)
        if self._policy.client_block is not None:
            self._check_blocks(client, 1)
            return self._take_from_blocks(client, data)
        if self._shared_room() == 0:
            raise self._exhausted(1)
        return self._take(data, client)

    def _take(self, data: Any, client: Any = None) -> Lease:
        """A lease from a shared subpool (paired: on the client's IP while it can), then the threshold rule."""
        subpool = None
        if self._policy.paired and client is not None and self._memory_pool is not None:
            state = self._clients.states.get(client)
            if state is not None and state.ip is not None:
                subpool = self._memory_pool.with_free_block(state.ip)
        if subpool is None:
            if self._shared_free() == 0:
                self._create_subpool()
            assert self._memory_pool is not None
            subpool = self._memory_pool.with_free_block()
            assert subpool is not None
        lease = self._occupy(subpool, data, client)
        if self._shared_free() <= self._cb.grow_threshold and self._blocks() < self.capacity:
            self._create_subpool()
        return lease

    def _occupy(self, subpool: SubpoolHeader, data: Any, client: Any) -> Lease:
        """Take a block of ``subpool`` in the reuse order and make it a live lease."""
        offset = subpool.pop()
        block = subpool.blocks[offset]
        block.live, block.data = True, data
        self._live += 1
        if client is not None:
            block.client = client
            state = self._clients.state(client)
            state.live += 1
            if self._policy.paired:
                state.ip = block.ip
        return Lease(self, _handle(block.generation, subpool.id, offset), block.ip, block.port, data)

    def allocate_many(self, n: int, *, client: Any = None) -> list[Lease]:
        """Lease ``n`` addresses (``data=None``), all or nothing."""
        if not isinstance(n, int) or isinstance(n, bool):
            raise TypeError(f"n must be int, not {type(n).__name__}")
        if n < 0:
            raise ArgumentError(f"n: {n} is negative")
        tracked = self._tracks(client)
        self._begin(client)
        if not tracked:
            if n > self._shared_room():
                raise self._exhausted(n)
            return [self._take(None) for _ in range(n)]
        self._check_quota(client, n)
        if self._policy.client_block is not None:
            self._check_blocks(client, n)
            return [self._take_from_blocks(client, None) for _ in range(n)]
        if n > self._shared_room():
            raise self._exhausted(n)
        return [self._take(None, client) for _ in range(n)]

    def lease(self, data: Any = None, *, client: Any = None) -> _LeaseContext:
        """A context manager that allocates on entry and frees on exit."""
        if client is not None:
            hash(client)
        return _LeaseContext(self, data, client)

    # -- clients: quotas and port blocks (clients.py) ------------------------------------
    def _check_quota(self, client: Any, asked: int) -> None:
        quota = self._policy.client_quota
        live, held = self._clients.counts(client)
        if quota is not None and live + held + asked > quota:
            raise QuotaExceeded(
                f"client {client!r} of pool {self.name!r} has {live} live and {held} held leases "
                f"of its quota {quota}, {asked} asked"
            )

    def _free_in_blocks(self, client: Any) -> int:
        state = self._clients.states.get(client)
        return 0 if state is None else sum(s.free for s in state.blocks)

    def _check_blocks(self, client: Any, asked: int) -> None:
        """``PoolExhausted`` unless the client's blocks, and the blocks it would be assigned, hold ``asked`` leases."""
        k = self._policy.client_block
        assert k is not None
        missing = asked - self._free_in_blocks(client)
        if missing > 0 and self._plan_blocks(client, -(-missing // k)) is None:
            raise PoolExhausted(
                f"pool {self.name!r} has no room for {-(-missing // k)} more port block(s) of {k} addresses "
                f"for client {client!r}"
            )

    def _plan_blocks(self, client: Any, count: int) -> list[int] | None:
        """Where ``count`` new blocks of the client would go, one after the other (clients.py), or None."""
        k = self._policy.client_block
        assert k is not None
        if self._blocks() + count * k > self.capacity:
            return None
        per_ip = self._cb.ports_per_ip
        free = [(e.first, e.count) for e in self._intervals if e.subpool is None]
        state = self._clients.states.get(client)
        ip = state.blocks[-1].interval.first // per_ip if state is not None and state.blocks else None
        plan = []
        for _ in range(count):
            first = None if ip is None else find_run(free, k, per_ip, ip)
            if first is None:
                first = find_run(free, k, per_ip, None)
            if first is None:
                return None
            plan.append(first)
            ip = first // per_ip
            free = carve(free, first, k)
        return plan

    def _take_from_blocks(self, client: Any, data: Any) -> Lease:
        """A lease from the client's lowest-id block with a free block, assigning a block if none has one."""
        state = self._clients.states.get(client)
        candidates = [] if state is None else [s for s in state.blocks if s.free > 0]
        subpool = min(candidates, key=lambda s: s.id, default=None)
        if subpool is None:
            plan = self._plan_blocks(client, 1)
            assert plan is not None, "checked by the caller"
            subpool = self._assign_block(client, plan[0])
        return self._occupy(subpool, data, client)

    def _assign_block(self, client: Any, first: int) -> SubpoolHeader:
        k = self._policy.client_block
        assert k is not None
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        memory_pool = self._memory_pool
        element = self._intervals.owner_of(first)
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(first + i), generation) for i in range(k)]
        subpool = SubpoolHeader(ident, element, blocks, free_blocks=free_blocks(self._policy.order, k, self._rng))
        subpool.owner = client
        subpool.interval = self._intervals.assign_range(element, first, k, subpool)
        memory_pool.subpools[ident] = subpool
        memory_pool.blocks += k
        self._clients.state(client).blocks.append(subpool)
        self._log("assigned", client, first, k)
        return subpool

    def _release_block(self, subpool: SubpoolHeader) -> None:
        """A client's block is all free: release it (its addresses go back to the free intervals)."""
        self._clients.states[subpool.owner].blocks.remove(subpool)
        self._log("released", subpool.owner, subpool.interval.first, len(subpool.blocks))
        self._delete_subpool(subpool)

    def _log(self, kind: str, client: Any, first: int, count: int) -> None:
        assert self._now is not None, "the call that changes a port block read the clock"
        self._clients.log(BlockEvent(self._now, kind, client, *self._record_bounds(first, count)))

    def events(self) -> list[BlockEvent]:
        """The port blocks assigned and released since the last call, oldest first."""
        return self._clients.drain()

    def _create_subpool(self) -> None:
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        memory_pool = self._memory_pool
        wanted = self._cb.subpool_blocks if memory_pool.shared_created else self._cb.initial_blocks
        memory_pool.shared_created = True
        element = self._intervals.first_free()
        assert element is not None
        count = min(wanted, element.count, self.capacity - memory_pool.blocks)
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(element.first + i), generation) for i in range(count)]
        subpool = SubpoolHeader(ident, element, blocks, free_blocks=free_blocks(self._policy.order, count, self._rng))
        self._intervals.assign(element, count, subpool)
        memory_pool.subpools[ident] = subpool
        memory_pool.blocks += count

    def _delete_subpool(self, subpool: SubpoolHeader) -> None:
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

    def _hold_end(self, seconds: float) -> float | None:
        """When a hold of ``seconds`` taken now ends, or None for no hold. Reads the clock for a
        hold, and with ``client_block`` (a port block may be released)."""
        self._now = None
        if seconds > 0 or self._policy.client_block is not None:
            self._now = read_clock(self._policy.clock)
        return self._now + seconds if self._now is not None and seconds > 0 else None

    def free(self, lease_or_handle: Lease | int, *, hold: float | None = None) -> None:
        """Return a live lease, held for ``hold`` seconds (None: ``hold_down``) before reuse;
        ``LeaseError`` (and no change) for anything but a live lease."""
        seconds = parse_hold(hold, self._policy.hold_down)
        handle = self._handle_of(lease_or_handle)
        end = self._hold_end(seconds)
        found = self._block_of(handle)
        if found is None:
            raise LeaseError(f"handle {handle:#x} is not a live lease of pool {self.name!r}")
        self._release(*found, end)

    def free_many(self, leases: Iterable[Lease | int], *, hold: float | None = None) -> None:
        """Free a batch, all or nothing: if any item is not a live lease of this pool
        (or appears twice), ``LeaseError`` is raised and nothing is freed. ``hold`` as for ``free``."""
        seconds = parse_hold(hold, self._policy.hold_down)
        handles = [self._handle_of(item) for item in leases]
        end = self._hold_end(seconds)
        if len(set(handles)) != len(handles):
            raise LeaseError("the batch names a lease twice")
        found = [self._block_of(h) for h in handles]
        for handle, hit in zip(handles, found, strict=True):
            if hit is None:
                raise LeaseError(f"handle {handle:#x} is not a live lease of pool {self.name!r}")
        for hit in found:
            assert hit is not None
            self._release(*hit, end)

    def _release(self, subpool: SubpoolHeader, offset: int, end: float | None = None) -> None:
        """End the lease of a live block; return the block, or hold it until ``end``."""
        block = subpool.blocks[offset]
        block.live, block.data = False, None
        block.generation = (block.generation + 1) & GENERATION_MASK
        self._live -= 1
        client = block.client
        if client is not None:
            state = self._clients.states[client]
            state.live -= 1
            state.held += end is not None
        if end is None:
            block.client = None
            self._return_block(subpool, offset)
        else:
            self._held.hold(end, subpool, offset)
        if client is not None:
            self._clients.tidy(client)

    def _return_block(self, subpool: SubpoolHeader, offset: int) -> None:
        """Give a block back to its subpool's free blocks, then apply the deletion rule
        (a port block: released when all free; a shared subpool: the keep rule)."""
        subpool.push(offset)
        if subpool.free != len(subpool.blocks):
            return
        if subpool.owner is not None:
            self._release_block(subpool)
            return
        assert self._memory_pool is not None
        shared_blocks = sum(len(s.blocks) for s in self._memory_pool.shared())
        if shared_blocks - subpool.free >= self._cb.initial_blocks:
            self._delete_subpool(subpool)

    # -- lookup and introspection --------------------------------------------------------
    def lookup(self, ip: Any, port: int) -> Lease | None:
        """The live lease holding (ip, port), with its data, or None."""
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
        """The interval list, in address order."""
        return [
            Interval(*self._record_bounds(e.first, e.count), e.count, None if e.subpool is None else e.subpool.id)
            for e in self._intervals
        ]

    def subpools(self) -> list[Subpool]:
        """The subpools, in address order."""
        return [
            Subpool(
                e.subpool.id,
                *self._record_bounds(e.first, e.count),
                len(e.subpool.blocks),
                e.subpool.free,
                e.subpool.held,
                e.subpool.owner,
            )
            for e in self._intervals
            if e.subpool is not None
        ]

    def stats(self) -> PoolStats:
        blocks = self._blocks()
        return PoolStats(
            live=self._live,
            free_blocks=self._free_blocks(),
            blocks=blocks,
            subpools=0 if self._memory_pool is None else len(self._memory_pool.subpools),
            intervals=self._intervals.length,
            free_addresses=self.address_count - blocks,
            address_count=self.address_count,
            capacity=self.capacity,
            held=len(self._held),
            events_dropped=self._clients.dropped,
        )
