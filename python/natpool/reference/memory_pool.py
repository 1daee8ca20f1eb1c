"""The memory pool: a main pool header chaining subpool headers of connection blocks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natpool.reference.interval_list import IntervalElement
from natpool.reference.reuse import FreeBlocks

if TYPE_CHECKING:
    from natpool.store.member import ClaimState

GENERATION_MASK = 2**32 - 1


class ConnectionBlock:
    """A fixed-length block holding one client NAT address, set when its subpool is made."""

    __slots__ = ("ip", "port", "generation", "live", "held", "data", "client")

    def __init__(self, ip: int, port: int, generation: int) -> None:
        self.ip = ip
        self.port = port
        self.generation = generation
        self.live = False
        self.held = False
        """Its lease was freed with a hold that has not ended (``held.py``)."""
        self.data: Any = None
        self.client: Any = None
        """With client settings: the client of the lease (live or held) in this block."""


class SubpoolHeader:
    """A subpool: its blocks, its free blocks in the pool's reuse order (``reuse.py``), its interval.

    A block taken by ``reserve`` stays in the free blocks as a *phantom*
    (``docs/shapes.md``): ``free`` does not count it, a take that meets it
    discards it and takes again, and a return of its block while it is still
    listed makes it a free entry where it stands.
    """

    def __init__(
        self, ident: int, interval: IntervalElement, blocks: list[ConnectionBlock], *, free_blocks: FreeBlocks
    ) -> None:
        self.id = ident
        self.interval = interval
        self.blocks = blocks
        self.free = len(blocks)
        self.free_blocks = free_blocks
        self.held = 0
        """Blocks whose lease was freed with a hold that has not ended yet."""
        self.owner: Any = None
        """``client_block``: the client this subpool is a port block of (None: shared)."""
        self.claim: ClaimState | None = None
        """With a store: the claim this subpool's addresses come from."""
        self.drain_fenced = False
        """It holds an address of a drained IP: it serves no allocation and goes when all its blocks are free."""
        self.phantoms: set[int] = set()
        """Offsets of reserved blocks whose entry is still in ``free_blocks``."""

    def pop(self) -> int:
        """Take a free block in the reuse order, discarding the phantoms met on the way."""
        while True:
            offset = self.free_blocks.take()
            if offset not in self.phantoms:
                break
            self.phantoms.discard(offset)
        self.free -= 1
        return offset

    def push(self, offset: int) -> None:
        """Return a block: its phantom, if still listed, becomes its free entry; else it is given back."""
        if offset in self.phantoms:
            self.phantoms.discard(offset)
        else:
            self.free_blocks.give(offset)
        self.free += 1

    def take_at(self, offset: int) -> None:
        """Take the free block ``offset`` out of turn (``reserve``): its entry becomes a phantom."""
        self.phantoms.add(offset)
        self.free -= 1


class MainPoolHeader:
    """The memory pool (MPA in Figure 3): subpool headers by id, and totals."""

    def __init__(self) -> None:
        self.subpools: dict[int, SubpoolHeader] = {}
        self.generation_floor: dict[int, int] = {}
        """For each subpool id ever used: the generation its next blocks start at."""
        self.blocks = 0
        self.shared_created = False
        """Whether a shared subpool was ever created (the first has ``initial_blocks``)."""

    def next_id(self) -> int:
        """Subpool ids are the lowest id not in use."""
        ident = 0
        while ident in self.subpools:
            ident += 1
        return ident

    def with_free_block(self, ip: int | None = None) -> SubpoolHeader | None:
        """The lowest-id shared subpool that has a free block and is not fenced (with a store, or by a
        drain), all of whose addresses are on ``ip`` if given."""
        candidates = [
            s
            for s in self.subpools.values()
            if s.free > 0 and s.owner is None and not s.drain_fenced and not (s.claim is not None and s.claim.fenced)
        ]
        if ip is not None:
            candidates = [s for s in candidates if s.blocks[0].ip == s.blocks[-1].ip == ip]
        return min(candidates, key=lambda s: s.id, default=None)

    def shared(self) -> list[SubpoolHeader]:
        return [s for s in self.subpools.values() if s.owner is None]
