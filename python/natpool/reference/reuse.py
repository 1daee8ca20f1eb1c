"""Reuse order within a subpool (``order=``) and the generator behind ``order="random"``.

Each subpool keeps its free blocks (block offsets, 0 for its first address) in
one of three structures, chosen by the pool's ``order``; a fresh subpool holds
every offset, and a block whose lease is freed (or whose hold ends) is
*returned* to it (a block ``reserve`` takes stays listed as a phantom, which a
take discards: ``memory_pool.SubpoolHeader``):

* ``"fifo"`` (the default): a queue. A fresh subpool's queue is its offsets
  in ascending order; a returned block joins the tail; a block is taken from
  the head. So the block freed longest ago is reused first.
* ``"lifo"``: a stack. A fresh subpool's stack pops its offsets in
  ascending order; a returned block is pushed on top and taken first.
* ``"random"``: an array ``A``, for a fresh subpool ``[0, 1, ..., n - 1]``.
  Taking a block draws ``x = next()`` from the pool's generator and takes
  ``A[j]`` with ``j = (x * len(A)) >> 64``; the last element of ``A`` moves
  to position ``j`` and ``A`` shrinks by one. A returned block is appended.

The generator is **SplitMix64** (Steele, Lea and Flood, 2014), one per pool:
a 64-bit state ``s``; ``next()`` sets ``s = (s + 0x9E3779B97F4A7C15) mod
2**64`` and returns ``mix(s)``, where ``mix(z)`` is ``z ^= z >> 30; z *=
0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^= z >> 31``
(products mod 2**64). The state starts at ``seed mod 2**64``, or, with
``seed=None``, at ``int.from_bytes(os.urandom(8), "little")``. Every block an
allocation takes from a ``"random"`` subpool draws exactly one value, in the
order the blocks are taken (``allocate_many``: the order of the returned
list), plus one for each phantom it draws and discards (a block ``reserve``
took out of turn, see ``memory_pool.SubpoolHeader``); nothing else draws. The state after ``k`` draws is ``seed + k *
0x9E3779B97F4A7C15``. The Rust core follows this sequence for calls ordered
one after another (one thread, a lock, the GIL); two draws that overlap in
time, in different subpools, may repeat a value (it advances the state
with a load and a store, no locked instruction).

SplitMix64 is a statistically good generator, not a cryptographic one: each
output is an invertible function of a counter, so it hides the order from an
observer of the addresses, not from one who can recover the state. What an
observer faces per allocation is at most ``log2(F)`` bits, ``F`` the free
blocks of the serving subpool (see ``docs/design.md``, "Reuse order").
"""

from __future__ import annotations

import os
from collections import deque
from typing import Protocol

__all__ = ["ORDERS", "SplitMix64", "FreeBlocks", "free_blocks", "listed_free_blocks", "entropy_seed"]

ORDERS = ("fifo", "lifo", "random")
MASK64 = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15


def entropy_seed() -> int:
    """The seed of ``order="random"`` when none is given: 8 bytes of ``os.urandom``, little-endian."""
    return int.from_bytes(os.urandom(8), "little")


class SplitMix64:
    """The pool's generator (see the module docstring)."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + GAMMA) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """A draw mapped onto ``0..n`` by multiply-shift: ``(next() * n) >> 64``."""
        return (self.next() * n) >> 64


class FreeBlocks(Protocol):
    """A subpool's free blocks in one reuse order."""

    def take(self) -> int: ...
    def give(self, offset: int) -> None: ...
    def listed(self) -> list[int]:
        """The entries (phantoms included) as a snapshot writes them: FIFO and LIFO in the order they would be
        taken (the queue's head, the stack's top first), random as the array ``A`` from ``A[0]``."""
        ...


class _Fifo:
    __slots__ = ("queue",)

    def __init__(self, n: int) -> None:
        self.queue = deque(range(n))

    def take(self) -> int:
        return self.queue.popleft()

    def give(self, offset: int) -> None:
        self.queue.append(offset)

    def listed(self) -> list[int]:
        return list(self.queue)


class _Lifo:
    __slots__ = ("stack",)

    def __init__(self, n: int) -> None:
        self.stack = list(range(n - 1, -1, -1))  # the top (the end) is offset 0

    def take(self) -> int:
        return self.stack.pop()

    def give(self, offset: int) -> None:
        self.stack.append(offset)

    def listed(self) -> list[int]:
        return self.stack[::-1]


class _Random:
    __slots__ = ("array", "rng")

    def __init__(self, n: int, rng: SplitMix64) -> None:
        self.array = list(range(n))
        self.rng = rng

    def take(self) -> int:
        array = self.array
        j = self.rng.below(len(array))
        offset = array[j]
        array[j] = array[-1]
        array.pop()
        return offset

    def give(self, offset: int) -> None:
        self.array.append(offset)

    def listed(self) -> list[int]:
        return list(self.array)


def free_blocks(order: str, n: int, rng: SplitMix64 | None) -> FreeBlocks:
    """The free blocks of a fresh subpool of ``n`` blocks, in ``order``."""
    if order == "fifo":
        return _Fifo(n)
    if order == "lifo":
        return _Lifo(n)
    assert order == "random" and rng is not None
    return _Random(n, rng)


def listed_free_blocks(order: str, listed: list[int], rng: SplitMix64 | None) -> FreeBlocks:
    """Free blocks in ``order`` whose entries are ``listed`` (as ``FreeBlocks.listed`` returns them)."""
    blocks = free_blocks(order, 0, rng)
    for offset in listed if order != "lifo" else reversed(listed):
        blocks.give(offset)
    return blocks
