"""natpool: client NAT address pools for server load balancers (US 7,089,328).

``natpool.Pool`` is the Rust core; ``natpool.reference.Pool`` is the pure-Python
reference model that specifies it. Both take the same arguments, return the same
records and raise the same exceptions.
"""

from importlib.metadata import PackageNotFoundError as _NotInstalled
from importlib.metadata import version as _installed_version

from natpool._natpool import Lease, Pool
from natpool.errors import (
    ArgumentError,
    LeaseError,
    NatPoolError,
    PoolConfigError,
    PoolExhausted,
    QuotaExceeded,
    SnapshotError,
    StoreError,
)
from natpool.records import BlockEvent, Interval, PoolStats, Subpool

# The version is pyproject.toml's, its one source, as the installed distribution's metadata gives it.
try:
    __version__ = _installed_version("natpool")
except _NotInstalled:  # the sources imported without an installation
    __version__ = "unknown"

__all__ = [
    "__version__",
    "Pool",
    "Lease",
    "Interval",
    "Subpool",
    "PoolStats",
    "BlockEvent",
    "NatPoolError",
    "ArgumentError",
    "PoolConfigError",
    "PoolExhausted",
    "QuotaExceeded",
    "LeaseError",
    "StoreError",
    "SnapshotError",
]
