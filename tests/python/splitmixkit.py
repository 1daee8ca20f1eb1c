"""SplitMix64 as ``natpool/reference/reuse.py`` specifies it, written again for the tests (shared by the
policy and shape tests): the expected ``order="random"`` draws, independent of either implementation."""

from __future__ import annotations

from collections.abc import Iterator

MASK = 2**64 - 1


def splitmix64(seed: int) -> Iterator[int]:
    """The generator's outputs from ``seed``."""
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)
