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
from typing import Any, TypeVar

from natpool.apps.models import MODELS, PoolLike
from natpool.apps.options import (
    ORDERS,
    Endpoint,
    OptionError,
    PoolAddresses,
    PortRange,
    at_least,
    endpoint_text,
    non_negative,
    positive,
)
from natpool.apps.proxy.limits import connection_limit
from natpool.errors import PoolConfigError
from natpool.extras import MissingExtra

__all__ = ["BALANCE", "BLOCK_LOG_MAX_BYTES", "SOURCES", "STATE_INTERVAL", "ProxyConfig"]

_OPTIONS = {
    "first_ip": "--pool",
    "last_ip": "--pool",
    "netmask": "--pool",
    "ranges": "--pool",
    "exclude": "--exclude",
    "name": "--pool-name",
    "client_quota": "--max-per-client",
}
"""The option of each pool field that is not ``--`` and the field's name (``claim_ttl``: ``--claim-ttl``)."""


def option_error(exc: PoolConfigError) -> OptionError:
    """The pool's refusal of a field, as a usage error naming its option."""
    return OptionError(_OPTIONS.get(exc.field, "--" + exc.field.replace("_", "-")), exc.reason)


BALANCE = ("round-robin", "least-connections")
"""The backend selection policies (``--balance``)."""
SOURCES = ("pool", "kernel")
"""Where an upstream socket's source address comes from (``--source``): a natpool lease, or the kernel."""
BLOCK_LOG_MAX_BYTES = 10_000_000
"""The size at which ``--block-log`` is rotated (one ``.1`` backup), by default."""
STATE_INTERVAL = 60.0
"""Seconds between two snapshots written to ``--state`` while the proxy serves, by default."""

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
    """The client NAT addresses: ranges (``--pool``) minus exclusions (``--exclude``), IPv4 or IPv6; the
    backends are of the same family."""
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
    """Seconds an address whose upstream connected is held after its connection before reuse (the pool's
    ``hold_down``): its 4-tuple is in TIME_WAIT at one end or the other, whoever closed first."""
    down_time: float = 5.0
    """Seconds a backend that refused or timed out a connect is left out of the rotation."""
    connect_timeout: float = 3.0
    drain_timeout: float = 10.0
    idle_timeout: float = 300.0
    """Seconds without a byte either way after which a relayed connection is closed, both sides."""
    max_connections: int | None = None
    """Client connections open at once at most; ``None``: what ``RLIMIT_NOFILE`` allows (:mod:`.limits`)."""
    name: str = "proxy"
    """The pool's name: in a cluster store, every member of one pool has the same name and configuration."""
    store: str | None = None
    """The cluster store's URL (``sqlite:///ABS/PATH``, ``postgresql://…``): the pool is one member of the cluster
    sharing its interval list there; ``None``: a pool of this process alone."""
    member: str | None = None
    """This pool's member name in the store (``None``: ``"{hostname}:{pid}"``)."""
    claim_ttl: float = 30.0
    """Seconds a claim of the store lives unless renewed (renewed every third of it)."""
    reclaim_delay: float = 120.0
    """Seconds a returned or lapsed range is held in the store before anyone may claim it again."""
    max_per_client: int | None = None
    """Live or held leases of one client IP at most (the pool's ``client_quota``): its connections, and its
    addresses held down or quarantined until their hold ends."""
    order: str = "fifo"
    """The pool's reuse order of free blocks: ``fifo``, ``lifo`` or ``random``."""
    seed: int | None = None
    """The seed of ``order="random"`` (``None``: from ``os.urandom``)."""
    paired: bool = False
    """A client IP's leases stay on one NAT IP while it has a free block there (the pool's ``paired``)."""
    client_block: int | None = None
    """Port-block allocation: each client IP's leases from its own blocks of this many ports of one NAT IP."""
    block_log: str | None = None
    """The file the pool's block events (``client_block``) are appended to, one line each."""
    block_log_max_bytes: int = BLOCK_LOG_MAX_BYTES
    """``block_log`` is renamed to ``block_log + ".1"`` (one backup) when it reaches this size."""
    state: str | None = None
    """The file the pool's state is kept in across restarts (:mod:`~natpool.apps.proxy.state`): read at the
    start, written every ``state_interval`` seconds and at the stop."""
    state_interval: float = STATE_INTERVAL
    model: str = "rust"
    """The pool's implementation (:data:`~natpool.apps.models.MODELS`): ``rust``, or ``reference``, the
    pure-Python model (slower; for checking the core)."""

    @property
    def by_client(self) -> bool:
        """Whether leases are allocated for the client's IP (a client policy is on)."""
        return self.max_per_client is not None or self.paired or self.client_block is not None

    def connection_limit(self) -> int:
        """``max_connections``, or the default RLIMIT_NOFILE gives; :class:`OptionError` if RLIMIT_NOFILE is short."""
        if self.max_connections is not None:
            _check("--max-connections", partial(at_least, 1), self.max_connections)
        return connection_limit(self.max_connections)

    def build_pool(self, *, join: bool = True) -> PoolLike:
        """The client NAT pool, a member of the cluster in ``store`` if there is one (``join=False``: a pool of
        this process alone, with the same configuration and store settings checked).

        A configuration the pool rejects is an :class:`OptionError` naming the option: a malformed store URL
        (``--store``), a member name that is live in the store already (``--member``), a configuration that
        differs from the one the store registered for ``name``. A store that cannot be reached or fails raises
        :class:`~natpool.StoreError`; a PostgreSQL URL without psycopg installed is an :class:`OptionError`.
        """
        try:
            return MODELS[self.model](
                self.name,
                **self.pool.pool_arguments(),
                initial_blocks=self.initial_blocks,
                max_blocks=self.max_blocks,
                ports=self.ports,
                subpool_blocks=self.subpool_blocks,
                store=self.store if join else None,
                member=self.member,
                claim_ttl=self.claim_ttl,
                reclaim_delay=self.reclaim_delay,
                hold_down=self.hold_down,
                order=self.order,
                seed=self.seed,
                client_quota=self.max_per_client,
                paired=self.paired,
                client_block=self.client_block,
            )
        except PoolConfigError as exc:
            raise option_error(exc) from None
        except MissingExtra as exc:
            raise OptionError("--store", str(exc)) from None

    def cluster_options(self) -> dict[str, Any]:
        """The store arguments of the pool (``Pool.restore`` takes them as the constructor does)."""
        return {
            "store": self.store,
            "member": self.member,
            "claim_ttl": self.claim_ttl,
            "reclaim_delay": self.reclaim_delay,
        }

    def validate(self) -> None:
        """Check everything that can be checked without joining the store (nothing is opened)."""
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
        if self.order not in ORDERS:
            raise OptionError("--order", f"{self.order!r} is not one of {', '.join(ORDERS)}")
        if self.seed is not None and self.order != "random":
            raise OptionError("--seed", "needs --order random")
        for option, count in (("--max-per-client", self.max_per_client), ("--client-block", self.client_block)):
            if count is not None:
                _check(option, partial(at_least, 1), count)
        if self.client_block is not None and self.store is not None:
            raise OptionError("--client-block", "is not supported with --store or --workers (a cluster store) yet")
        if self.block_log is not None and self.client_block is None:
            raise OptionError("--block-log", "needs --client-block (only port blocks make block events)")
        _check("--block-log-max-bytes", partial(at_least, 1), self.block_log_max_bytes)
        if self.source == "kernel" and self.by_client:
            option = (
                "--max-per-client"
                if self.max_per_client is not None
                else ("--paired" if self.paired else "--client-block")
            )
            raise OptionError(option, "needs --source pool (the kernel's addresses are not the pool's)")
        self._validate_addresses()
        self._validate_state()
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
        self.build_pool(join=False).close()

    def _validate_addresses(self) -> None:
        """The backends are of the pool's family; the kernel chooses ports."""
        family = self.pool.family
        for backend in self.backends:
            if (6 if ":" in backend[0] else 4) != family:
                raise OptionError("--backend", f"{endpoint_text(backend)} is not an IPv{family} address, as --pool is")
        if self.source == "kernel" and any(e.ports is not None for e in self.pool.exclude):
            raise OptionError("--exclude", "ports are excluded with --source pool only (the kernel chooses them)")

    def _validate_state(self) -> None:
        """``--state``: a pool with leases of its own (not the kernel's addresses); with ``--store``, the member
        claims its subpools' ranges back at the start (``Pool.restore(…, store=…)``)."""
        if self.model not in MODELS:
            raise OptionError("--model", f"{self.model!r} is not one of {', '.join(MODELS)}")
        _check("--state-interval", positive, self.state_interval)
        if self.state is None:
            return
        if self.source == "kernel":
            raise OptionError("--state", "needs --source pool (the kernel's addresses are not the pool's)")

    def check(self) -> PoolLike:
        """Validate the combinations and return the pool built from them (not yet used), joined to the store
        if there is one; see :meth:`build_pool` for the errors."""
        self.validate()
        return self.build_pool()
