"""The pure-Python reference model: natpool's executable specification."""

from natpool.reference.pool import Lease, Pool

__all__ = ["Pool", "Lease"]
