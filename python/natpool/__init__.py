"""natpool: client NAT address pools for server load balancers (US 7,089,328).

``natpool.Pool`` is the Rust core; ``natpool.reference.Pool`` is the pure-Python
reference model that specifies it. Both take the same arguments, return the same
records and raise the same exceptions.
"""

from natpool._natpool import Lease, Pool
from natpool.errors import ArgumentError, LeaseError, NatPoolError, PoolConfigError, PoolExhausted, QuotaExceeded
from natpool.records import BlockEvent, Interval, PoolStats, Subpool

__all__ = [
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
]
