"""natpool's exception classes, defined once and raised by both implementations.

The Rust core (``natpool.Pool``) raises these very classes through its single
error conversion; the reference model (``natpool.reference.Pool``) raises them
directly.
"""

from __future__ import annotations

__all__ = [
    "NatPoolError",
    "ArgumentError",
    "PoolConfigError",
    "PoolExhausted",
    "QuotaExceeded",
    "LeaseError",
    "StoreError",
    "SnapshotError",
]


class NatPoolError(Exception):
    """Base class of every error natpool raises on purpose."""


class ArgumentError(NatPoolError, ValueError):
    """An argument has the right type but an unusable value (an unparsable IP, n < 0)."""


class PoolConfigError(ArgumentError):
    """A pool's configuration is invalid; ``field`` names the offending parameter."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self) -> tuple[type[PoolConfigError], tuple[str, str]]:
        return (type(self), (self.field, self.reason))


class PoolExhausted(NatPoolError):
    """Every address the pool may hand out is leased or held; nothing was changed."""


class QuotaExceeded(PoolExhausted):
    """The client already has ``client_quota`` leases live or held; nothing was changed."""


class LeaseError(NatPoolError, LookupError):
    """The lease or handle is not a live lease of this pool; nothing was changed."""


class StoreError(NatPoolError):
    """The cluster's store (``natpool.store``) is unreachable, failing, or of an incompatible schema version.

    Raised when a subpool must be created or returned and the store cannot do it
    (the pool is then unchanged), and when a store cannot be opened.
    """


class SnapshotError(NatPoolError, ValueError):
    """A snapshot (``Pool.snapshot``, ``Pool.restore``) cannot be written or read.

    ``restore`` raises it for bytes that are not a snapshot of a format version it
    reads, or that are corrupt, truncated or inconsistent; it then builds nothing.
    ``snapshot`` raises it for a pool whose state a snapshot cannot hold (a
    store-backed pool, a client of a type the format does not write); nothing changes.
    """
