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
  lowest free interval (the lowest free address on no drained IP, up to the
  next owned or drained address), ``initial_blocks`` of them for the first
  subpool and ``subpool_blocks`` later, clipped to the interval and to
  ``capacity``.
* When a subpool's last live lease is freed, it is deleted and its interval
  merged into the free space, unless the blocks left would be fewer than
  ``initial_blocks``.

The pool's shape (``docs/shapes.md``): its addresses are an address space
(``space.py``: several ranges, minus exclusions, IPv4 or IPv6) numbered from 0,
and every rule above works on those indices. ``intervals()`` shows each element
of the interval list cut where the space has a gap. ``reserve(ip, port)`` leases
one given address (a block taken out of its subpool's free list, which keeps it
as a phantom; in a free interval, a shared subpool is made for it by the chunk
rule). ``drain(ip)`` fences every subpool holding an address of the IP
(``drain.py``): it serves no allocation and is deleted, whatever the keep rule,
once none of its blocks is live or held; growth and port blocks skip drained
IPs; ``undrain(ip)`` reopens the subpools no drained IP touches any more.

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
  live leases (or held blocks) and leaves the pool (``Store.leave``, one call); later calls
  raise ``NatPoolError``.
* The policies compose with a store: the reuse order, ``hold_down`` and
  ``hold=``, ``client_quota`` and ``paired`` act as without one (they change no
  claim). A held block is not free: a subpool with held blocks is not deleted
  (its claim is not returned, nor by ``close()``), and a fenced subpool is
  dropped only once every block is free again (its holds ended, released by
  an allocation). ``client_block`` is not supported with a store yet: the
  constructor raises ``PoolConfigError`` naming it, before the store is opened.

A handle is ``generation << 64 | subpool_id << 32 | offset``. A block's
generation (32 bits, wrapping) is bumped on every free; a subpool made under
an id that was used before starts its blocks at the highest generation the
previous holder of that id reached, so no earlier handle matches again.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from natpool.errors import (
    ArgumentError,
    LeaseError,
    NatPoolError,
    PoolConfigError,
    PoolExhausted,
    QuotaExceeded,
    StoreError,
)
from natpool.records import BlockEvent, Interval, PoolStats, Subpool
from natpool.reference import snapshot as snapshot_format
from natpool.reference.clients import Clients, carve, find_run
from natpool.reference.config import ControlBlock, control_block, prefix_to_mask
from natpool.reference.drain import DrainedIps
from natpool.reference.held import HeldQueue
from natpool.reference.interval_list import IntervalElement, IntervalList
from natpool.reference.memory_pool import GENERATION_MASK, ConnectionBlock, MainPoolHeader, SubpoolHeader
from natpool.reference.policy import Policy, parse_hold, policy, read_clock
from natpool.reference.reuse import SplitMix64, entropy_seed, free_blocks
from natpool.shapes import parse_address
from natpool.store import member as cluster
from natpool.store.member import ClaimState
from natpool.store.protocol import FULL, TAKEN, Grant
from natpool.store.space import STORE_ADDRESSES

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
    ip = property(
        lambda self: self._pool._cb.space.ip_text(self._ip),
        doc="The NAT IP as text (IPv4 dotted, IPv6 compressed).",
    )
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
        first_ip: Any = None,
        last_ip: Any = None,
        netmask: str | int | None = None,
        initial_blocks: int | None = None,
        max_blocks: int | None = None,
        *,
        ranges: Any = None,
        exclude: Any = None,
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
        store: Any = None,
        member: str | None = None,
        claim_ttl: float = 30.0,
        reclaim_delay: float = 120.0,
        renew_interval: float | None = None,
    ) -> None:
        # initial_blocks and max_blocks default to None only so that ranges= can leave out the legacy
        # three: None for either is a TypeError in its turn of phase 1 (config.py).
        # None for ports or grow_threshold means the default, as in the Rust binding.
        ports = (1024, 65535) if ports is None else ports
        grow_threshold = 0 if grow_threshold is None else grow_threshold
        self._cb: ControlBlock = control_block(
            name,
            first_ip,
            last_ip,
            netmask,
            initial_blocks,
            max_blocks,
            ports,
            subpool_blocks,
            grow_threshold,
            ranges,
            exclude,
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
        # The store arguments are validated after the policies; a store does not take port
        # blocks yet, nor more addresses than its 64-bit integers count. Then the store is opened
        # (a URL) and joined: nothing reaches the store before every argument is valid.
        chosen = cluster.settings(store, member, claim_ttl, reclaim_delay, renew_interval)
        if chosen is not None:
            self._check_store(chosen)
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
        self._drained = DrainedIps()
        self._closed = False
        self._member: cluster.Member | None = None
        if chosen is not None:
            self._join(chosen)

    def _check_store(self, chosen: cluster.Settings) -> None:
        """What a store does not take: port blocks yet, nor more addresses than its 64-bit integers count."""
        if self._policy.client_block is not None:
            raise PoolConfigError("client_block", "is not supported with a store yet")
        if self._cb.address_count > STORE_ADDRESSES:
            # The store's ledger counts in 64-bit integers (docs/shapes.md).
            raise PoolConfigError(
                "store", f"the pool has {self._cb.address_count} addresses; a store numbers at most {STORE_ADDRESSES}"
            )

    def _join(self, chosen: cluster.Settings) -> None:
        """Join the cluster (the store opened if a URL) and start renewing (the constructor, ``restore``)."""
        self._member = cluster.Member(self._cb, chosen)
        self._member.start_renewing()

    # -- the control block's read-only attributes ---------------------------------------
    name = property(lambda self: self._cb.name)
    first_ip = property(
        lambda self: self._cb.space.ip_text(self._cb.first_ip),
        doc="The legacy form's first_ip as configured; with ranges, the first usable address.",
    )
    last_ip = property(
        lambda self: self._cb.space.ip_text(self._cb.last_ip),
        doc="The legacy form's last_ip as configured; with ranges, the last usable address.",
    )
    family = property(lambda self: self._cb.family, doc="4 or 6.")

    @property
    def netmask(self) -> str | int | None:
        """The legacy form's netmask: dotted (IPv4) or the prefix length (IPv6); None for ``ranges``."""
        prefix = self._cb.prefix
        if prefix is None:
            return None
        return prefix if self._cb.family == 6 else str(ipaddress.IPv4Address(prefix_to_mask(prefix)))

    @property
    def ranges(self) -> list[tuple[str, str]]:
        """The normalised ranges (sorted, touching ones merged, usable addresses), exclusions not taken out."""
        text = self._cb.space.ip_text
        return [(text(first), text(last)) for first, last in self._cb.space.ranges]

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

    def _free_blocks(self) -> int:
        return self._blocks() - self._live - len(self._held)

    def _shared_free(self) -> int:
        """Free blocks of shared subpools (not a client's port blocks) that no drain fenced."""
        if self._memory_pool is None:
            return 0
        return sum(int(s.free) for s in self._memory_pool.shared() if not s.drain_fenced)

    def _serving_free(self) -> int:
        """Free blocks a shared allocation can take: those of shared subpools not fenced (with a store, or by a
        drain)."""
        if self._memory_pool is None:
            return 0
        return sum(
            int(s.free)
            for s in self._memory_pool.shared()
            if not s.drain_fenced and not (s.claim is not None and s.claim.fenced)
        )

    def _shared_room(self) -> int:
        """Leases a shared allocation may still get: shared free blocks, and blocks not yet made that
        the free addresses on no drained IP can hold."""
        growth = self._cb.capacity - self._blocks()
        if self._drained:
            undrained = sum(e.count - self._drained.count_in(e.first, e.first + e.count) for e in self._free_elements())
            growth = min(growth, undrained)
        return self._shared_free() + growth

    def _free_elements(self) -> list[IntervalElement]:
        return [e for e in self._intervals if e.subpool is None]

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
        (``QuotaExceeded`` past the client's quota; with a store also when no subpool of this
        member has a free block and the cluster has no range left)."""
        self._check_open()
        tracked = self._tracks(client)
        self._begin(client)
        self._fence()
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
        if subpool is None and self._memory_pool is not None:
            subpool = self._memory_pool.with_free_block()
        if subpool is None:
            subpool = self._create_subpool(required=True)
            assert subpool is not None
        lease = self._occupy(subpool, data, client)
        if self._serving_free() <= self._cb.grow_threshold and self._blocks() < self.capacity:
            self._create_subpool(required=False)
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
        self._check_open()
        tracked = self._tracks(client)
        self._begin(client)
        if tracked:
            self._check_quota(client, n)
        if tracked and self._policy.client_block is not None:
            self._check_blocks(client, n)
            return [self._take_from_blocks(client, None) for _ in range(n)]
        if n > self._shared_room():
            raise self._exhausted(n)
        taken: Any = client if tracked else None
        if self._member is None:
            return [self._take(None, taken) for _ in range(n)]
        # With a store the cluster may run out (or the store fail) part-way: the batch's
        # leases are freed again (without a hold), last first (in LIFO order every free list
        # is as before; in the others they are frees); the subpools it claimed stay, empty,
        # for the next allocations.
        leases: list[Lease] = []
        try:
            for _ in range(n):
                self._fence()
                leases.append(self._take(None, taken))
        except (PoolExhausted, StoreError):
            for lease in reversed(leases):
                found = self._block_of(lease.handle)
                assert found is not None
                self._release(*found, tidy=False)
            raise
        return leases

    def lease(self, data: Any = None, *, client: Any = None) -> _LeaseContext:
        """A context manager that allocates on entry and frees on exit."""
        self._check_open()
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
        return 0 if state is None else sum(s.free for s in state.blocks if not s.drain_fenced)

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
        space = self._cb.space
        free = [(e.first, e.count) for e in self._free_elements()]
        state = self._clients.states.get(client)
        ip = state.blocks[-1].blocks[0].ip if state is not None and state.blocks else None
        plan = []
        for _ in range(count):
            first = None if ip is None else find_run(free, k, space, self._drained, ip)
            if first is None:
                first = find_run(free, k, space, self._drained, None)
            if first is None:
                return None
            plan.append(first)
            ip = space.ip_of(first)
            free = carve(free, first, k)
        return plan

    def _take_from_blocks(self, client: Any, data: Any) -> Lease:
        """A lease from the client's lowest-id block with a free block, assigning a block if none has one."""
        state = self._clients.states.get(client)
        candidates = [] if state is None else [s for s in state.blocks if s.free > 0 and not s.drain_fenced]
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
        subpool.interval = self._intervals.assign_at(first, k, subpool)
        memory_pool.subpools[ident] = subpool
        memory_pool.blocks += k
        self._clients.state(client).blocks.append(subpool)
        self._log("assigned", client, first, k)
        return subpool

    def _release_block(self, subpool: SubpoolHeader) -> None:
        """A client's block is all free: release it (its addresses go back to the free intervals)."""
        self._clients.states[subpool.owner].blocks.remove(subpool)
        self._log("released", subpool.owner, subpool.interval.first, len(subpool.blocks))
        self._remove_subpool(subpool)

    def _log(self, kind: str, client: Any, first: int, count: int) -> None:
        assert self._now is not None, "the call that changes a port block read the clock"
        self._clients.log(BlockEvent(self._now, kind, client, *self._record_bounds(first, count)))

    def events(self) -> list[BlockEvent]:
        """The port blocks assigned and released since the last call, oldest first."""
        self._check_open()
        return self._clients.drain()

    def _create_subpool(self, required: bool) -> SubpoolHeader | None:
        """Create a subpool: ``required`` when an allocation needs it, else the optional threshold growth.

        First fit: at the lowest free address on no drained IP, up to the next owned or drained
        address. Without a store this succeeds when an allocation needs it (the callers checked
        ``_shared_room``); the threshold growth finds nothing when every free address is drained.
        """
        if self._member is not None:
            return self._claim_subpool(required)
        found = self._first_fit()
        if found is None:
            assert not required, "the caller checked _shared_room"
            return None
        first, end = found
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        wanted = self._cb.subpool_blocks if self._memory_pool.shared_created else self._cb.initial_blocks
        return self._make_shared(first, min(wanted, end - first, self.capacity - self._memory_pool.blocks))

    def _first_fit(self) -> tuple[int, int] | None:
        """The lowest free index on no drained IP, and the end of its free run before a drained address."""
        for element in self._free_elements():
            end = element.first + element.count
            first = self._drained.lowest_free(element.first, end)
            if first is not None:
                return self._drained.around(first, first, end)
        return None

    def _make_shared(self, first: int, count: int) -> SubpoolHeader:
        """A shared subpool on the free addresses ``first .. first + count - 1``."""
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        memory_pool = self._memory_pool
        memory_pool.shared_created = True
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(first + i), generation) for i in range(count)]
        element = self._intervals.owner_of(first)
        subpool = SubpoolHeader(ident, element, blocks, free_blocks=free_blocks(self._policy.order, count, self._rng))
        subpool.interval = self._intervals.assign_at(first, count, subpool)
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
            claimed = member.claim(
                lambda first, count: (
                    self._intervals.is_free(first, count) and not self._drained.touches(first, first + count)
                )
            )
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
        return self._claimed_subpool(*claimed)

    def _claimed_subpool(self, grant: Grant, state: ClaimState) -> SubpoolHeader:
        """The shared subpool made on a range just claimed from the cluster."""
        if self._memory_pool is None:
            self._memory_pool = MainPoolHeader()
        memory_pool = self._memory_pool
        memory_pool.shared_created = True  # as without a store (the snapshot writes it; the store sizes claims)
        ident = memory_pool.next_id()
        generation = memory_pool.generation_floor.get(ident, 0)
        blocks = [ConnectionBlock(*self._cb.address(grant.first + i), generation) for i in range(grant.count)]
        subpool = SubpoolHeader(
            ident,
            self._intervals.owner_of(grant.first),
            blocks,
            free_blocks=free_blocks(self._policy.order, grant.count, self._rng),
        )
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
        self._check_open()
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
        self._check_open()
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

    def _release(self, subpool: SubpoolHeader, offset: int, end: float | None = None, *, tidy: bool = True) -> None:
        """End the lease of a live block; return the block (if that empties its subpool, and
        ``tidy``, apply the deletion rule), or hold it until ``end``."""
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
            self._return_block(subpool, offset, tidy=tidy)
        else:
            self._held.hold(end, subpool, offset)
        if client is not None:
            self._clients.tidy(client)

    def _return_block(self, subpool: SubpoolHeader, offset: int, *, tidy: bool = True) -> None:
        """Give a block back to its subpool's free blocks, then (``tidy``) apply the deletion rule
        when all its blocks are free (none live, none held): a port block is released; a subpool
        whose claim lapsed is fenced and dropped; a shared subpool is deleted unless the keep
        rule keeps it (with a store, only once its claim is returned)."""
        subpool.push(offset)
        if not tidy or subpool.free != len(subpool.blocks):
            return
        if subpool.owner is not None:
            self._release_block(subpool)
            return
        if subpool.claim is not None and self._member is not None and self._member.lapsed(subpool.claim):
            subpool.claim.fenced = True
            self._drop_subpool(subpool)
            return
        if subpool.drain_fenced:
            self._delete_subpool(subpool)
            return
        assert self._memory_pool is not None
        shared_blocks = sum(len(s.blocks) for s in self._memory_pool.shared())
        if shared_blocks - subpool.free >= self._cb.initial_blocks:
            self._delete_subpool(subpool)

    # -- snapshot and restore (snapshot.py, docs/shapes.md "Snapshot format") -------------
    def snapshot(self) -> bytes:
        """The pool's state as bytes (``docs/shapes.md``, "Snapshot format"); changes nothing.

        Reads the clock if, and only if, a block is held (each hold is written as the
        time left). ``SnapshotError`` for a pool with a store, or a client the format
        cannot write.
        """
        self._check_open()
        return snapshot_format.write(self)

    @classmethod
    def restore(
        cls,
        snapshot: bytes,
        *,
        data: Any = None,
        clock: Callable[[], float] | None = None,
        store: Any = None,
        member: str | None = None,
        claim_ttl: float = 30.0,
        reclaim_delay: float = 120.0,
        renew_interval: float | None = None,
    ) -> Pool:
        """The pool a snapshot holds: every lease live with its handle and address, every hold
        running on ``clock`` (as the constructor's) from the time left at the snapshot.

        ``data`` maps live handles to the objects to attach (``TypeError`` for a key that
        is not an int, ``LeaseError`` for one that is not a live handle of the snapshot).
        ``SnapshotError`` for bytes that are not a snapshot this version reads, or
        corrupt, truncated or inconsistent ones; nothing is built then.

        With ``store`` (and the other store arguments, as the constructor takes
        them), the pool joins the cluster as ``member`` and claims exactly its
        subpools' ranges again in one store call (``Store.reclaim``): they must be
        free or this member's own from before the restart (live or held), else
        ``SnapshotError`` and the pool leaves the cluster; a store that fails:
        ``StoreError``. Nothing is built in either case.
        """
        cluster_arguments = (store, member, claim_ttl, reclaim_delay, renew_interval)
        return snapshot_format.restore(cls, snapshot, data, clock, cluster_arguments)

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
            if subpool.drain_fenced and subpool.free == len(subpool.blocks) and not self._member.lapsed(claim):
                self._delete_subpool(subpool)  # its claim's return failed when it emptied: tried again
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
        address = parse_address(ip, self._cb.family, "ip")
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

    # -- reserve and drain (docs/shapes.md) -------------------------------------------------
    def reserve(self, ip: Any, port: int, data: Any = None) -> Lease:
        """A lease of exactly (ip, port), for no client, freed like any lease.

        ``ArgumentError`` if the address is not in the pool or on a drained IP;
        then, as an allocation call does, the holds that ended are released;
        ``LeaseError`` if it is live, held, or in a client's port block;
        ``PoolExhausted`` in a drain-fenced subpool, or when no block may be made
        for it. In a free interval, a shared subpool is made for it by the chunk
        rule of ``docs/shapes.md``; with a store, on the range the store grants
        for it (``Store.claim_at``): ``LeaseError`` if another member claims or
        holds it, ``PoolExhausted`` if the cluster's capacity is claimed,
        ``StoreError`` if the store fails (nothing changed). No threshold
        growth follows.
        """
        self._check_open()
        address = parse_address(ip, self._cb.family, "ip")
        if not isinstance(port, int) or isinstance(port, bool):
            raise TypeError(f"port must be int, not {type(port).__name__}")
        where = f"{self._cb.space.ip_text(address)} port {port}"
        index = self._cb.index(address, port)
        if index is None:
            raise ArgumentError(f"ip: {where} is not an address of pool {self.name!r}")
        if address in self._drained:
            raise ArgumentError(f"ip: {where} is on a drained IP")
        self._begin(None)
        element = self._intervals.owner_of(index)
        subpool = element.subpool
        if subpool is None:
            subpool = self._reserve_subpool(index, element, where)
        else:
            block = subpool.blocks[index - element.first]
            if block.live or block.held:
                raise LeaseError(f"{where} is {'live' if block.live else 'held'} in pool {self.name!r}")
            if subpool.owner is not None:
                raise LeaseError(f"{where} is in a port block of client {subpool.owner!r}")
            if subpool.drain_fenced or (
                subpool.claim is not None and self._member is not None and self._member.lapsed(subpool.claim)
            ):
                raise PoolExhausted(f"{where} is in a subpool fenced by a drained IP or a lapsed claim")
            if self._live >= self.capacity:
                raise self._exhausted(1)
        offset = index - subpool.interval.first
        subpool.take_at(offset)
        block = subpool.blocks[offset]
        block.live, block.data = True, data
        self._live += 1
        return Lease(self, _handle(block.generation, subpool.id, offset), block.ip, block.port, data)

    def _reserve_subpool(self, index: int, element: IntervalElement, where: str) -> SubpoolHeader:
        """The shared subpool made for a reserved address in the free interval ``element`` (the chunk rule;
        with a store, the store applies it to the cluster's free range, within this member's bounds)."""
        if self._member is not None:
            within = self._drained.around(index, element.first, element.first + element.count)
            claimed = self._member.claim_at(index, within)
            if claimed == TAKEN:
                raise LeaseError(f"{where} is in a range another member of the cluster claims or holds")
            if claimed == FULL:
                raise self._exhausted(1)
            assert not isinstance(claimed, str)
            return self._claimed_subpool(*claimed)
        shared_created = self._memory_pool is not None and self._memory_pool.shared_created
        size = self._cb.subpool_blocks if shared_created else self._cb.initial_blocks
        first = element.first + (index - element.first) // size * size
        end = min(first + size, element.first + element.count)
        first, end = self._drained.around(index, first, end)
        room = self.capacity - self._blocks()
        if room <= 0:
            raise self._exhausted(1)
        if end - first > room:
            first, end = index, min(index + room, end)
        return self._make_shared(first, end - first)

    def _ip_argument(self, ip: Any) -> int:
        """An IP of the pool's family with an address in the space (``drain``, ``undrain``)."""
        address = parse_address(ip, self._cb.family, "ip")
        first, end = self._cb.space.ip_indices(address)
        if first == end:
            raise ArgumentError(f"ip: {self._cb.space.ip_text(address)} has no address in pool {self.name!r}")
        return address

    def drain(self, ip: Any) -> None:
        """No new lease on ``ip`` from now on; live leases stay valid (``docs/shapes.md``, "Drain").

        Every subpool holding an address of it is drain-fenced: it serves no
        allocation and is deleted once none of its blocks is live or held (at
        once if that is already so). Draining a drained IP changes nothing.
        """
        self._check_open()
        address = self._ip_argument(ip)
        if address in self._drained:
            return
        first, end = self._cb.space.ip_indices(address)
        self._drained.add(address, (first, end))
        if self._memory_pool is None:
            return
        for ident in sorted(self._memory_pool.subpools):
            subpool = self._memory_pool.subpools[ident]
            start = subpool.interval.first
            if not (start < end and first < start + len(subpool.blocks)):
                continue
            subpool.drain_fenced = True
            if subpool.free == len(subpool.blocks):  # never a port block: it goes with its last lease
                if subpool.claim is not None and self._member is not None and self._member.lapsed(subpool.claim):
                    subpool.claim.fenced = True
                    self._drop_subpool(subpool)
                else:
                    self._delete_subpool(subpool)

    def undrain(self, ip: Any) -> None:
        """``ip`` may be handed out again; the drain-fenced subpools no drained IP touches any more serve
        again (their free blocks in the order they were). Undraining an IP not drained changes nothing."""
        self._check_open()
        address = self._ip_argument(ip)
        if address not in self._drained:
            return
        self._drained.remove(address)
        if self._memory_pool is None:
            return
        for subpool in self._memory_pool.subpools.values():
            start = subpool.interval.first
            if subpool.drain_fenced and not self._drained.touches(start, start + len(subpool.blocks)):
                subpool.drain_fenced = False

    def drained(self) -> list[str]:
        """The drained IPs, ascending."""
        self._check_open()
        return [self._cb.space.ip_text(ip) for ip in self._drained.ips()]

    def _record_bounds(self, first: int, count: int) -> tuple[str, int, str, int]:
        first_ip, first_port = self._cb.address(first)
        last_ip, last_port = self._cb.address(first + count - 1)
        text = self._cb.space.ip_text
        return text(first_ip), first_port, text(last_ip), last_port

    def intervals(self) -> list[Interval]:
        """The interval list, in address order, each element split where the address space has a gap
        (with a store: this member's view, see the module docstring)."""
        self._check_open()
        return [
            Interval(*self._record_bounds(first, count), count, None if e.subpool is None else e.subpool.id)
            for e in self._intervals
            for first, count in self._cb.space.split(e.first, e.count)
        ]

    def subpools(self) -> list[Subpool]:
        """The subpools, in address order."""
        self._check_open()
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
        self._check_open()
        blocks = self._blocks()
        return PoolStats(
            live=self._live,
            free_blocks=self._free_blocks(),
            blocks=blocks,
            subpools=0 if self._memory_pool is None else len(self._memory_pool.subpools),
            intervals=sum(len(self._cb.space.split(e.first, e.count)) for e in self._intervals),
            free_addresses=self.address_count - blocks,
            address_count=self.address_count,
            capacity=self.capacity,
            held=len(self._held),
            events_dropped=self._clients.dropped,
            drained=self._drained.addresses(),
        )
