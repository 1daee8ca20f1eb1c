"""The memory pool: a main pool header chaining subpool headers of connection blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natpool.reference.interval_list import IntervalElement

if TYPE_CHECKING:
    from natpool.store.member import ClaimState

GENERATION_MASK = 2**32 - 1


class ConnectionBlock:
    """A fixed-length block holding one client NAT address, set when its subpool is made."""

    __slots__ = ("ip", "port", "generation", "live", "data", "next_free")

    def __init__(self, ip: int, port: int, generation: int) -> None:
        self.ip = ip
        self.port = port
        self.generation = generation
        self.live = False
        self.data: Any = None
        self.next_free: int | None = None


class SubpoolHeader:
    """A subpool: its blocks, a LIFO free list threaded through them, its interval."""

    def __init__(self, ident: int, interval: IntervalElement, blocks: list[ConnectionBlock]) -> None:
        self.id = ident
        self.interval = interval
        self.blocks = blocks
        self.free = len(blocks)
        # Initially the free list runs in address order, lowest first.
        for offset, block in enumerate(blocks):
            block.next_free = offset + 1 if offset + 1 < len(blocks) else None
        self.free_head: int | None = 0
        self.claim: ClaimState | None = None
        """With a store: the claim this subpool's addresses come from."""

    def pop(self) -> int:
        offset = self.free_head
        assert offset is not None
        self.free_head = self.blocks[offset].next_free
        self.free -= 1
        return offset

    def push(self, offset: int) -> None:
        self.blocks[offset].next_free = self.free_head
        self.free_head = offset
        self.free += 1


class MainPoolHeader:
    """The memory pool (MPA in Figure 3): subpool headers by id, and totals."""

    def __init__(self) -> None:
        self.subpools: dict[int, SubpoolHeader] = {}
        self.generation_floor: dict[int, int] = {}
        """For each subpool id ever used: the generation its next blocks start at."""
        self.blocks = 0

    def next_id(self) -> int:
        """Subpool ids are the lowest id not in use."""
        ident = 0
        while ident in self.subpools:
            ident += 1
        return ident

    def with_free_block(self) -> SubpoolHeader | None:
        """The lowest-id subpool that has a free block (and, with a store, is not fenced)."""
        candidates = [s for s in self.subpools.values() if s.free > 0 and not (s.claim is not None and s.claim.fenced)]
        return min(candidates, key=lambda s: s.id, default=None)
