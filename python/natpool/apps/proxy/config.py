"""What ``natpool proxy`` runs with (:class:`ProxyConfig`), and the checks of its combinations.

The command line's values are parsed by :mod:`natpool.apps.options`; :meth:`ProxyConfig.check` validates the
configuration, however it was built, before anything listens. A bad value or combination raises
:class:`~natpool.apps.options.OptionError`, which names the option; the command prints it on one line and exits 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import natpool
from natpool.apps.options import Endpoint, OptionError, PoolAddresses, PortRange, at_least, non_negative, positive
from natpool.apps.proxy.limits import connection_limit
from natpool.errors import PoolConfigError

__all__ = ["BALANCE", "SOURCES", "ProxyConfig"]

BALANCE = ("round-robin", "least-connections")
"""The backend selection policies (``--balance``)."""
SOURCES = ("pool", "kernel")
"""Where an upstream socket's source address comes from (``--source``): a natpool lease, or the kernel."""

V = TypeVar("V")


def _check(option: str, rule: Callable[[V], object], value: V) -> None:
    """Apply one of the options' value rules to a configured value; a violation is an :class:`OptionError`."""
    try:
        rule(value)
    except argparse.ArgumentTypeError as exc:
        raise OptionError(option, str(exc)) from None


@dataclass(frozen=True)
class ProxyConfig:
    """Everything ``natpool proxy`` runs with; :meth:`check` validates the combinations."""

    listen: Endpoint
    backends: tuple[Endpoint, ...]
    pool: PoolAddresses
    ports: PortRange = (1024, 65535)
    initial_blocks: int = 1024
    max_blocks: int = 65536
    subpool_blocks: int | None = None
    """Blocks of each subpool after the first (default: the pool's, ``initial_blocks``)."""
    balance: str = "round-robin"
    metrics: Endpoint | None = None
    source: str = "pool"
    bind_attempts: int = 8
    """Leases tried for one client connection when addresses cannot be bound."""
    quarantine: float = 30.0
    """Seconds an address that could not be bound is kept out of use."""
    hold_down: float = 60.0
    """Seconds a lease is held after the proxy closed its upstream first (its 4-tuple is in TIME_WAIT here)."""
    down_time: float = 5.0
    """Seconds a backend that refused or timed out a connect is left out of the rotation."""
    connect_timeout: float = 3.0
    drain_timeout: float = 10.0
    idle_timeout: float = 300.0
    """Seconds without a byte either way after which a relayed connection is closed, both sides."""
    max_connections: int | None = None
    """Client connections open at once at most; ``None``: what ``RLIMIT_NOFILE`` allows (:mod:`.limits`)."""
    name: str = "proxy"

    def connection_limit(self) -> int:
        """``max_connections``, or the default RLIMIT_NOFILE gives; :class:`OptionError` if RLIMIT_NOFILE is short."""
        if self.max_connections is not None:
            _check("--max-connections", partial(at_least, 1), self.max_connections)
        return connection_limit(self.max_connections)

    def build_pool(self) -> natpool.Pool:
        """The client NAT pool; a configuration the pool rejects is an :class:`OptionError`."""
        try:
            return natpool.Pool(
                self.name,
                self.pool.first_ip,
                self.pool.last_ip,
                self.pool.prefix,
                self.initial_blocks,
                self.max_blocks,
                ports=self.ports,
                subpool_blocks=self.subpool_blocks,
            )
        except PoolConfigError as exc:
            option = {"first_ip": "--pool", "last_ip": "--pool", "netmask": "--pool"}.get(
                exc.field, "--" + exc.field.replace("_", "-")
            )
            raise OptionError(option, exc.reason) from None

    def check(self) -> natpool.Pool:
        """Validate the combinations and return the pool built from them (not yet used)."""
        if not self.backends:
            raise OptionError("--backend", "at least one backend is required")
        if len(set(self.backends)) != len(self.backends):
            raise OptionError("--backend", "a backend is given twice")
        if self.balance not in BALANCE:
            raise OptionError("--balance", f"{self.balance!r} is not one of {', '.join(BALANCE)}")
        if self.source not in SOURCES:
            raise OptionError("--source", f"{self.source!r} is not one of {', '.join(SOURCES)}")
        _check("--initial-blocks", partial(at_least, 1), self.initial_blocks)
        if self.max_blocks < self.initial_blocks:
            raise OptionError("--max-blocks", f"{self.max_blocks} is less than --initial-blocks {self.initial_blocks}")
        if self.subpool_blocks is not None and not 1 <= self.subpool_blocks <= self.max_blocks:
            raise OptionError("--subpool-blocks", f"{self.subpool_blocks} is outside 1..--max-blocks")
        _check("--bind-attempts", partial(at_least, 1), self.bind_attempts)
        if self.metrics is not None and self.metrics == self.listen and self.listen[1] != 0:
            raise OptionError("--metrics", "is the same address as --listen")
        if self.listen in self.backends:
            raise OptionError("--backend", "is the proxy's own --listen address")
        _check("--connect-timeout", positive, self.connect_timeout)
        _check("--idle-timeout", positive, self.idle_timeout)
        self.connection_limit()
        for option, seconds in (
            ("--drain-timeout", self.drain_timeout),
            ("--quarantine", self.quarantine),
            ("--hold-down", self.hold_down),
            ("--down-time", self.down_time),
        ):
            _check(option, non_negative, seconds)
        return self.build_pool()
