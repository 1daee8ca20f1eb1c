"""Held blocks (hold-down): freed blocks that no allocation may return before their hold ends.

A ``free`` whose effective hold ``h`` is above 0 reads the clock (``now``),
ends the lease exactly as a free without a hold does (the block's generation is
bumped, its data dropped, ``len()`` falls by one) but, instead of returning the
block to its subpool's free blocks, puts it in the pool's held queue with
``end = now + h`` and the next sequence number (one counter per pool, one
number per held block; ``free_many`` numbers its leases in the order given).

A held block is neither live nor free: ``stats().held`` counts it,
``stats().free_blocks`` does not, ``lookup`` does not find it, and its
subpool is not deleted while it holds one (it cannot be all free).

An allocation call that reads the clock (``policy.py``) first releases every
held block whose ``end <= now``, in the order of ``(end, sequence number)``:
each is returned to its subpool's free blocks as a free without a hold would
return it (``reuse.py``), and then the subpool deletion rule is applied to
that subpool, exactly as after a free. A hold that has ended is still counted
as held until an allocation call releases it.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from natpool.reference.memory_pool import SubpoolHeader

__all__ = ["HeldQueue", "HeldBlock"]

HeldBlock = tuple[float, int, "SubpoolHeader", int]
"""``(end, sequence number, subpool, offset)``."""


class HeldQueue:
    """The held blocks, ordered by ``(end, sequence number)``."""

    def __init__(self) -> None:
        self._heap: list[HeldBlock] = []
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._heap)

    def hold(self, end: float, subpool: SubpoolHeader, offset: int) -> None:
        heapq.heappush(self._heap, (end, self._sequence, subpool, offset))
        self._sequence += 1
        subpool.held += 1
        subpool.blocks[offset].held = True

    def ordered(self) -> list[HeldBlock]:
        """Every held block, in the order of ``(end, sequence number)`` (the order they are released in)."""
        return sorted(self._heap, key=lambda entry: entry[:2])

    def first_end(self) -> float:
        """When the earliest hold ends (the queue must not be empty)."""
        return self._heap[0][0]

    def due(self, now: float) -> list[HeldBlock]:
        """Remove and return the blocks whose hold ended by ``now``, earliest first."""
        released = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            entry[2].held -= 1
            entry[2].blocks[entry[3]].held = False
            released.append(entry)
        return released
