"""The proxy's budget of file descriptors: how many client connections it may hold at once (``--max-connections``).

Each relayed connection holds two descriptors, the client's socket and the upstream socket. A few more are
needed whatever the load: stdin, stdout and stderr (the log), the event loop's selector and wake-up pair, the
listener, the metrics listener and its requests. The default limit is what ``RLIMIT_NOFILE`` (the soft limit,
read when the proxy is configured) leaves for connections once those are kept aside; a larger
``--max-connections`` is a usage error, since the proxy would run out of descriptors before reaching it.
"""

from __future__ import annotations

import errno
import resource

from natpool.apps.options import OptionError

__all__ = [
    "DESCRIPTORS_PER_CONNECTION",
    "RESERVED_DESCRIPTORS",
    "RESOURCE_ERRNOS",
    "connection_limit",
    "connections_allowed",
    "descriptor_limit",
]

DESCRIPTORS_PER_CONNECTION = 2
"""The client's socket and the upstream socket."""
RESERVED_DESCRIPTORS = 32
"""Kept out of the connections' budget: standard streams, the event loop's own, the listener, metrics, logs."""
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
"""What ``socket()`` and ``accept()`` fail with when the process or the system is out of descriptors or buffers."""

_UNLIMITED = 1 << 20
"""Descriptors assumed for ``RLIM_INFINITY`` (Linux's default ``fs.nr_open``)."""


def descriptor_limit() -> int:
    """The process's soft ``RLIMIT_NOFILE``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED if soft == resource.RLIM_INFINITY else soft


def connections_allowed(descriptors: int) -> int:
    """How many connections ``descriptors`` allow, the reserved ones kept aside."""
    return max(0, (descriptors - RESERVED_DESCRIPTORS) // DESCRIPTORS_PER_CONNECTION)


def connection_limit(requested: int | None, descriptors: int | None = None) -> int:
    """``requested`` (``--max-connections``), or by default the most ``RLIMIT_NOFILE`` allows.

    An :class:`OptionError` naming ``--max-connections`` when ``requested`` is more than the descriptors allow
    (saying by how much), or when they allow no connection at all.
    """
    limit = descriptor_limit() if descriptors is None else descriptors
    allowed = connections_allowed(limit)
    budget = f"{DESCRIPTORS_PER_CONNECTION} descriptors a connection, {RESERVED_DESCRIPTORS} kept aside"
    if allowed == 0:
        raise OptionError(
            "--max-connections", f"RLIMIT_NOFILE {limit:,} leaves no descriptor for a connection ({budget})"
        )
    if requested is None:
        return allowed
    if requested > allowed:
        raise OptionError(
            "--max-connections",
            f"{requested:,} is {requested - allowed:,} more than RLIMIT_NOFILE {limit:,} allows "
            f"({allowed:,}: {budget})",
        )
    return requested
