"""The implementations a command runs its pool on (``--model``): the Rust core and the pure-Python reference model.

Both have one API (the contract tests hold them to it), so ``natpool simulate`` and ``natpool proxy`` are written
once for both; the reference model is slower, and there to check the core against.
"""

from __future__ import annotations

from collections.abc import Callable

import natpool
import natpool.reference

__all__ = ["MODELS", "MODEL_NAMES", "LeaseLike", "PoolLike"]

PoolLike = natpool.Pool | natpool.reference.Pool
"""Either implementation."""
LeaseLike = natpool.Lease | natpool.reference.Lease
"""A lease of either implementation."""

MODELS: dict[str, Callable[..., PoolLike]] = {
    "rust": natpool.Pool,
    "reference": natpool.reference.Pool,
}
"""The pool class of each ``--model``."""

MODEL_NAMES = {"rust": "natpool.Pool", "reference": "natpool.reference.Pool"}
