"""The store protocol: what a pool asks of the cluster's shared interval list, and the records it answers with.

Only the interval list is shared (see ``docs/design.md``, "The cluster store"):
a **claim** is a range of the pool's address space owned by one member (a
pool instance), with an **epoch** (a fresh number per claim, the fencing
token) and an **expiry** by the store's clock. The connection blocks stay in
each member's memory; allocating, freeing and looking up never touch the store.

Addresses are numbered as ``natpool.reference.config.ControlBlock`` numbers
them: index 0 .. ``address_count - 1``, ip-major, port-minor. ``Grant`` speaks
in indices (the pool maps them with its own control block); ``Claim`` and
``owner`` speak in (ip, port), mapped by the store through the registered
configuration.

Every method is one transaction and reads the store's clock once inside it
(SQLite: the store's clock function, ``time.time`` unless one is injected;
PostgreSQL: the server's ``clock_timestamp()``, read after the pool's row is
locked). Every method raises ``natpool.StoreError`` when the store is
unreachable or fails, and then has changed nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

__all__ = ["Store", "Grant", "Claim", "MemberStatus", "PoolStatus", "CLAIMED", "HELD", "TAKEN", "FULL"]

CLAIMED = "claimed"
"""A claim's state: owned by its member until ``expires_at`` unless renewed."""
HELD = "held"
"""A claim's state: returned, or expired unrenewed; nobody may claim the range before ``expires_at``."""

TAKEN = "taken"
"""``Store.claim_at``'s answer when the address is in a claimed or held range."""
FULL = "full"
"""``Store.claim_at``'s answer when the cluster's capacity is claimed."""


class Grant(NamedTuple):
    """A claim just made for the caller: ``count`` addresses from index ``first``."""

    first: int
    count: int  # type: ignore[assignment]  # shadows tuple.count, as natpool.Interval does
    epoch: int
    expires_at: float
    """By the store's clock (seconds since the epoch)."""


class Claim(NamedTuple):
    """A range of the cluster's address space, as ``Store.claims`` lists it (address order)."""

    member: str
    first_ip: str
    first_port: int
    last_ip: str
    last_port: int
    count: int  # type: ignore[assignment]  # shadows tuple.count, as natpool.Interval does
    epoch: int
    expires_at: float
    """``claimed``: when the claim lapses unless renewed; ``held``: when the range becomes free again."""
    state: str
    """``"claimed"`` or ``"held"`` (returned or expired, waiting ``reclaim_delay``)."""


class MemberStatus(NamedTuple):
    """A live member of a pool (its heartbeat has not expired)."""

    member: str
    expires_at: float
    claims: int
    """How many live claims it holds."""
    addresses: int
    """How many addresses those claims cover."""


class PoolStatus(NamedTuple):
    """A pool's summary, as ``Store.status`` reads it (for ``natpool store status``)."""

    name: str
    config: dict[str, Any]
    """The registered configuration (the fields of ``natpool.store.space.CONFIG_FIELDS``)."""
    address_count: int
    capacity: int
    members: list[MemberStatus]
    claims: list[Claim]
    claimed: int
    """Addresses in live claims."""
    held: int
    """Addresses held (returned or expired, waiting ``reclaim_delay``)."""
    free: int
    """Addresses neither claimed nor held."""
    now: float
    """The store's clock when it was read."""


@runtime_checkable
class Store(Protocol):
    """The cluster's store: ``natpool.store.SQLiteStore`` or ``natpool.store.PostgresStore``.

    Write methods first expire what has lapsed (a claim whose ``expires_at`` is
    past becomes ``held`` until ``expires_at + its reclaim_delay``; a held range
    whose time is past is forgotten; a member whose heartbeat is past is
    forgotten), then do their work, all in the same transaction. Read methods
    show the same view without writing.
    """

    @property
    def url(self) -> str:
        """The store's URL, for display (a password is masked)."""
        ...

    def join(self, name: str, member: str, config: Mapping[str, Any], *, ttl: float) -> None:
        """Register the pool (first time) or check its configuration, then add a live member.

        One write transaction: the first join of ``name`` stores ``config``; a
        later one whose configuration differs raises ``PoolConfigError`` naming
        the first differing field (in ``CONFIG_FIELDS`` order); a live member of
        that name raises ``PoolConfigError("member", …)``. The member's heartbeat
        expires ``ttl`` seconds ahead; ``claim`` and ``renew`` extend it.
        """
        ...

    def claim(self, name: str, member: str, *, ttl: float, reclaim_delay: float) -> Grant | None:
        """Claim the first addresses of the lowest free range of the cluster (first fit).

        One write transaction: ``count = min(initial_blocks if the pool never had
        a claim else subpool_blocks, the free range's length, capacity minus the
        addresses claimed cluster-wide)``; a fresh epoch (per pool: 1, 2, 3, …);
        ``expires_at = now + ttl``; the range is held ``reclaim_delay`` seconds
        when returned or expired. ``None`` when nothing can be claimed (the
        cluster is full). Raises ``StoreError`` if the pool was never joined.
        """
        ...

    def claim_at(
        self, name: str, member: str, index: int, *, within: tuple[int, int], ttl: float, reclaim_delay: float
    ) -> Grant | str:
        """Claim the chunk of the free range that holds address ``index`` (``Pool.reserve``).

        One write transaction, as ``claim``: the free range (between claimed and
        held ranges) that holds ``index`` is cut into chunks of ``initial_blocks``
        if the pool never had a claim, else ``subpool_blocks``, from its first
        address; the claim is the chunk holding ``index``, clipped to ``within``
        (``first, end``: the member's own bounds, its drained IPs and subpools
        left out), and, if longer than the capacity left cluster-wide, cut to that
        many addresses from ``index``. Answers ``TAKEN`` if ``index`` is in a
        claimed or held range, ``FULL`` if the capacity is all claimed; raises
        ``ArgumentError`` unless ``first <= index < end`` within the space, and
        ``StoreError`` if the pool was never joined.
        """
        ...

    def reclaim(
        self, name: str, member: str, ranges: Iterable[tuple[int, int]], *, ttl: float, reclaim_delay: float
    ) -> list[Grant] | None:
        """Claim exactly ``ranges`` (``(first, count)`` each) for a restarted member (``Pool.restore``).

        One write transaction, all or nothing: every claimed or held range that
        meets one of ``ranges`` must be ``member``'s own (its claims from before
        the restart, live or held) and lie within that one range; those are
        replaced by one fresh claim per range (epochs ascending in address
        order, ``expires_at = now + ttl``), and the claimed total may not exceed
        the capacity. ``None`` (nothing written) if another member's range meets
        them, or the capacity would be exceeded. ``ArgumentError`` for ranges
        that overlap, are empty or leave the space; ``StoreError`` if the pool
        was never joined.
        """
        ...

    def release(self, name: str, member: str, epoch: int) -> None:
        """Return a claim: it is held until ``now + its reclaim_delay``.

        One write transaction; a no-op if ``epoch`` is not a live claim of ``member``.
        """
        ...

    def renew(self, name: str, member: str, epochs: Iterable[int], *, ttl: float) -> dict[int, float]:
        """Extend those of ``epochs`` that are live claims of ``member``, and its heartbeat, to ``now + ttl``.

        One write transaction. Returns epoch → new ``expires_at``; an epoch
        missing from the answer is lost (expired or never this member's): the
        member must stop allocating from it.
        """
        ...

    def leave(self, name: str, member: str, epochs: Iterable[int] = ()) -> None:
        """Return ``epochs`` (as ``release`` does) and remove the member, in one write transaction.

        Other live claims of the member are left to expire (their leases may
        still be in use).
        """
        ...

    def claims(self, name: str) -> list[Claim]:
        """The pool's claimed and held ranges in address order (``[]`` for an unknown pool)."""
        ...

    def owner(self, name: str, ip: Any, port: int) -> str | None:
        """The member whose live claim covers (ip, port); ``None`` if none does (free, held, outside)."""
        ...

    def pools(self) -> list[str]:
        """The names of the registered pools, sorted."""
        ...

    def status(self, name: str) -> PoolStatus:
        """A pool's summary; ``StoreError`` if no pool of that name is registered."""
        ...

    def close(self) -> None:
        """Release the store's connection; idempotent. Pools using the store must be closed first."""
        ...
