"""Clients (issue 11, point 3): quotas, paired addresses, port blocks and the block log.

``allocate(..., client=c)`` and ``allocate_many(..., client=c)`` name the client a
lease is for: any hashable value (``hash(client)`` is taken first: an unhashable
client raises ``TypeError`` before anything else happens). The pool keeps a state
per client only when one of ``client_quota``, ``paired`` or ``client_block`` is set,
and forgets it when the client has no live lease, no held lease and no block.
Leases allocated without a client (or in a pool without these settings) behave as
before, and never come from a client's block.

* **Quota** (``client_quota=q``): an allocation that would give the client more
  than ``q`` leases live or held raises ``QuotaExceeded`` (a ``PoolExhausted``),
  checked before the pool's own exhaustion; nothing changed.
* **Paired** (``paired=True``, RFC 4787 REQ-2): the client's first live lease is
  placed as any lease (the lowest-id shared subpool with a free block), and its IP
  becomes the client's. While the client has a live lease, its next lease comes
  from the lowest-id shared subpool whose addresses all lie on that IP and that
  has a free block (within it, in the reuse order). When there is none (addresses
  of that IP in free intervals, or in a subpool that also covers another IP, do
  not count), the lease is placed as any lease: the client *moves*, and the new
  lease's IP becomes the client's (its older leases stay where they are). The IP
  is forgotten when the client's last live lease is freed.
* **Port blocks** (``client_block=k``): a client's leases come only from its
  blocks: subpools of exactly ``k`` addresses of one IP, reserved for it (their
  ids from the subpools' id space; they show in ``subpools()`` with ``client``
  set, and never serve other leases). An allocation takes from the client's
  lowest-id block with a free block (in the reuse order); when none has one, the
  client is assigned a new block: the lowest ``k`` free addresses (by address)
  that lie in one free interval and among the addresses of one IP (consecutive
  indices of the address space; an IP that exclusions leave with fewer than
  ``k`` addresses holds no block) that is not drained, on the IP of the
  client's most recently assigned block if there are such addresses there,
  else anywhere; it needs ``k`` blocks of room under ``capacity``. No room: ``PoolExhausted``,
  nothing changed. A block is *released* (deleted, its addresses merged back into
  the free intervals, whatever ``initial_blocks`` says) as soon as all of its
  blocks are free: the last lease in it freed and its holds ended. ``paired`` has
  no further effect with port blocks. ``allocate_many(n, client=c)`` is all or
  nothing: it first plans the blocks the ``n`` leases would need (the same rule,
  block after block) and raises ``PoolExhausted`` if they do not fit.
  Shared subpools are unaffected but for this: the threshold rule and the choice
  of subpool count shared subpools only, the first *shared* subpool has
  ``initial_blocks`` blocks, and the keep rule counts shared blocks.
* **Block log**: each assignment and release appends a ``BlockEvent(time, kind,
  client, first_ip, first_port, last_ip, last_port)`` (``kind`` ``"assigned"`` or
  ``"released"``, ``time`` the clock's value read by the call) to a queue of at
  most ``event_queue`` events; one more is dropped and counted in
  ``stats().events_dropped``. ``events()`` returns the queued events, oldest
  first, and empties the queue. With ``client_block`` set, the clock is also read
  by every allocation call with a client and by every free call (see
  ``policy.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container
from typing import TYPE_CHECKING, Any

from natpool.records import BlockEvent

if TYPE_CHECKING:
    from natpool.reference.memory_pool import SubpoolHeader
    from natpool.reference.space import AddressSpace

__all__ = ["ClientState", "Clients", "find_run", "carve"]


class ClientState:
    """What the pool knows of one client."""

    __slots__ = ("live", "held", "ip", "blocks")

    def __init__(self) -> None:
        self.live = 0
        self.held = 0
        self.ip: int | None = None
        """Paired: the IP of the client's leases (None with no live lease)."""
        self.blocks: list[SubpoolHeader] = []
        """Port blocks: the client's blocks, in the order they were assigned."""

    def idle(self) -> bool:
        return not (self.live or self.held or self.blocks)


class Clients:
    """The client states and the block log."""

    def __init__(self, event_queue: int) -> None:
        self.states: dict[Any, ClientState] = {}
        self.events: deque[BlockEvent] = deque()
        self.event_queue = event_queue
        self.dropped = 0

    def counts(self, client: Any) -> tuple[int, int]:
        """(live, held) leases of ``client``."""
        state = self.states.get(client)
        return (0, 0) if state is None else (state.live, state.held)

    def state(self, client: Any) -> ClientState:
        state = self.states.get(client)
        if state is None:
            state = self.states[client] = ClientState()
        return state

    def tidy(self, client: Any) -> None:
        """Forget the pairing IP with the last live lease, and an idle client altogether."""
        state = self.states[client]
        if state.live == 0:
            state.ip = None
        if state.idle():
            del self.states[client]

    def log(self, event: BlockEvent) -> None:
        if len(self.events) < self.event_queue:
            self.events.append(event)
        else:
            self.dropped += 1

    def drain(self) -> list[BlockEvent]:
        events = list(self.events)
        self.events.clear()
        return events


def find_run(
    free: list[tuple[int, int]], k: int, space: AddressSpace, drained: Container[int], ip: int | None
) -> int | None:
    """The lowest address index ``p`` such that ``p .. p + k - 1`` lie in one of the free
    intervals ``free`` (``(first, count)`` in address order) and among the addresses of one IP
    (``space.ip_indices``) that is not ``drained``, of ``ip`` when given."""
    if ip is not None and ip in drained:
        return None
    for first, count in free:
        end = first + count
        p = first if ip is None else max(first, space.ip_indices(ip)[0])
        while p < end:
            on = space.ip_of(p) if ip is None else ip
            ip_end = space.ip_indices(on)[1]
            if on not in drained and min(end, ip_end) - p >= k:
                return p
            if ip is not None:
                break
            p = ip_end
    return None


def carve(free: list[tuple[int, int]], first: int, count: int) -> list[tuple[int, int]]:
    """``free`` without the addresses ``first .. first + count - 1`` (which lie in one of them)."""
    out = []
    for start, length in free:
        if start <= first < start + length:
            if first > start:
                out.append((start, first - start))
            if first + count < start + length:
                out.append((first + count, start + length - first - count))
        else:
            out.append((start, length))
    return out
