"""The store's operations, written once over an engine's transaction (``schema.Tx``).

Each function is the body of one transaction. Write operations lock the pool's
row first (PostgreSQL: ``SELECT … FOR UPDATE``; SQLite: ``BEGIN IMMEDIATE``
already serialises writers), so the operations on one pool are serialised
across every process and host; then they read the clock (``tx.now``, once)
and expire what has lapsed (``_expire``) before their own work. Read
operations take no lock and show the same view without writing.

The free ranges are not stored: they are the gaps between a pool's claimed
and held ranges, found by one ordered scan (``_first_gap``). A claim is the
patent's interval-list assignment, cluster-wide: the first addresses of the
lowest free interval.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from natpool.errors import ArgumentError, PoolConfigError, StoreError
from natpool.reference.config import ControlBlock, parse_ip
from natpool.shapes import address_text, parse_address
from natpool.store import space
from natpool.store.protocol import CLAIMED, FULL, HELD, TAKEN, Claim, Grant, MemberStatus, PoolStatus
from natpool.store.schema import Tx

__all__ = ["join", "claim", "claim_at", "reclaim", "release", "renew", "leave", "claims", "owner", "pools", "status"]

_CHUNK = 500
"""Epochs per ``IN (…)`` list (far below SQLite's limit on parameters)."""


def _lock_pool(tx: Tx, name: str) -> tuple[ControlBlock, dict[str, Any], int] | None:
    """Lock the pool's row; its control block, configuration and next epoch, or None if unregistered."""
    found = tx.rows(f"SELECT config, next_epoch FROM natpool_pools WHERE name = %s{tx.for_update}", (name,))
    if not found:
        return None
    config = space.loads(found[0][0])
    return space.control_block_of(config), config, int(found[0][1])


def _expire(tx: Tx, name: str) -> None:
    """Lapsed claims become held until their expiry plus their reclaim delay; ended holds and heartbeats go."""
    now = tx.now
    tx.run(
        "UPDATE natpool_claims SET state = %s, expires_at = expires_at + reclaim_delay "
        "WHERE pool = %s AND state = %s AND expires_at <= %s",
        (HELD, name, CLAIMED, now),
    )
    tx.run("DELETE FROM natpool_claims WHERE pool = %s AND state = %s AND expires_at <= %s", (name, HELD, now))
    tx.run("DELETE FROM natpool_members WHERE pool = %s AND expires_at <= %s", (name, now))


def _heartbeat(tx: Tx, name: str, member: str, expires_at: float) -> None:
    tx.run(
        "INSERT INTO natpool_members (pool, member, expires_at, joined_at) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (pool, member) DO UPDATE SET expires_at = excluded.expires_at",
        (name, member, expires_at, tx.now),
    )


def _chunks(epochs: Iterable[int]) -> list[list[int]]:
    ordered = sorted({int(epoch) for epoch in epochs})
    return [ordered[i : i + _CHUNK] for i in range(0, len(ordered), _CHUNK)]


def _in_list(values: list[int]) -> str:
    return "(" + ", ".join(["%s"] * len(values)) + ")"


def _hold(tx: Tx, name: str, member: str, epochs: Iterable[int]) -> None:
    """Live claims of ``member`` among ``epochs`` become held until now + their reclaim delay."""
    for chunk in _chunks(epochs):
        tx.run(
            "UPDATE natpool_claims SET state = %s, expires_at = %s + reclaim_delay "
            f"WHERE pool = %s AND member = %s AND state = %s AND epoch IN {_in_list(chunk)}",
            (HELD, tx.now, name, member, CLAIMED, *chunk),
        )


# -- write operations (each the body of one write transaction) -----------------------------


def join(tx: Tx, name: str, member: str, config: Mapping[str, Any], ttl: float) -> None:
    """Register the pool or compare its configuration; then add ``member`` (see ``Store.join``)."""
    wanted = space.canonical_config(config)
    if wanted["name"] != name:
        raise PoolConfigError("name", f"the configuration names pool {wanted['name']!r}, not {name!r}")
    tx.run(
        "INSERT INTO natpool_pools (name, config, next_epoch, created_at) VALUES (%s, %s, 1, %s) "
        "ON CONFLICT (name) DO NOTHING",
        (name, space.dumps(wanted), tx.now),
    )
    locked = _lock_pool(tx, name)
    assert locked is not None
    _, registered, _ = locked
    field = space.first_difference(registered, wanted)
    if field is not None:
        raise PoolConfigError(
            field,
            f"pool {name!r} is registered in the store with {field} {registered.get(field)!r}, "
            f"this pool has {wanted[field]!r}; every member of a pool must have the same configuration",
        )
    _expire(tx, name)
    live = tx.rows("SELECT expires_at FROM natpool_members WHERE pool = %s AND member = %s", (name, member))
    if live:
        raise PoolConfigError(
            "member",
            f"{member!r} is a live member of pool {name!r} (its heartbeat runs until {live[0][0]:.3f} by the "
            "store's clock): another pool instance uses that name; give each instance its own member name",
        )
    _heartbeat(tx, name, member, tx.now + ttl)


def _first_gap(ranges: list[tuple[int, int]], address_count: int) -> tuple[int, int] | None:
    """The lowest free interval (first index, length) between ranges sorted by first index."""
    cursor = 0
    for first, count in ranges:
        if first > cursor:
            return cursor, first - cursor
        cursor = max(cursor, first + count)
    return (cursor, address_count - cursor) if cursor < address_count else None


def claim(tx: Tx, name: str, member: str, ttl: float, reclaim_delay: float) -> Grant | None:
    """First fit over the whole cluster (see ``Store.claim``)."""
    locked = _lock_pool(tx, name)
    if locked is None:
        raise StoreError(f"pool {name!r} is not registered in the store: a pool joins before it claims")
    cb, _, epoch = locked
    _expire(tx, name)
    found = tx.rows(
        "SELECT first_index, addresses, state FROM natpool_claims WHERE pool = %s ORDER BY first_index", (name,)
    )
    claimed = sum(int(count) for _, count, state in found if state == CLAIMED)
    gap = _first_gap([(int(first), int(count)) for first, count, _ in found], cb.address_count)
    room = cb.capacity - claimed
    if gap is None or room <= 0:
        return None
    wanted = cb.initial_blocks if epoch == 1 else cb.subpool_blocks
    first, count = gap[0], min(wanted, gap[1], room)
    expires_at = tx.now + ttl
    tx.run("UPDATE natpool_pools SET next_epoch = %s WHERE name = %s", (epoch + 1, name))
    tx.run(
        "INSERT INTO natpool_claims (pool, first_index, addresses, member, epoch, state, expires_at, reclaim_delay) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (name, first, count, member, epoch, CLAIMED, expires_at, reclaim_delay),
    )
    _heartbeat(tx, name, member, expires_at)
    return Grant(first, count, epoch, expires_at)


def claim_at(
    tx: Tx, name: str, member: str, index: int, within: tuple[int, int], ttl: float, reclaim_delay: float
) -> Grant | str:
    """The chunk of the free range holding ``index`` (see ``Store.claim_at``)."""
    locked = _lock_pool(tx, name)
    if locked is None:
        raise StoreError(f"pool {name!r} is not registered in the store: a pool joins before it claims")
    cb, _, epoch = locked
    lo, hi = within
    if not (0 <= lo <= index < hi <= cb.address_count):
        raise ArgumentError(f"index {index} must lie in within {within} inside 0..{cb.address_count}")
    _expire(tx, name)
    found = tx.rows(
        "SELECT first_index, addresses, state FROM natpool_claims WHERE pool = %s ORDER BY first_index", (name,)
    )
    gap_first, gap_end = 0, cb.address_count
    for first, count, _ in found:
        first, end = int(first), int(first) + int(count)
        if first <= index < end:
            return TAKEN
        if end <= index:
            gap_first = max(gap_first, end)
        else:
            gap_end = min(gap_end, first)
            break
    room = cb.capacity - sum(int(count) for _, count, state in found if state == CLAIMED)
    if room <= 0:
        return FULL
    size = cb.initial_blocks if epoch == 1 else cb.subpool_blocks
    first = gap_first + (index - gap_first) // size * size
    first, end = max(first, lo), min(first + size, gap_end, hi)
    if end - first > room:
        first, end = index, min(index + room, end)
    expires_at = tx.now + ttl
    tx.run("UPDATE natpool_pools SET next_epoch = %s WHERE name = %s", (epoch + 1, name))
    tx.run(
        "INSERT INTO natpool_claims (pool, first_index, addresses, member, epoch, state, expires_at, reclaim_delay) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (name, first, end - first, member, epoch, CLAIMED, expires_at, reclaim_delay),
    )
    _heartbeat(tx, name, member, expires_at)
    return Grant(first, end - first, epoch, expires_at)


def reclaim(
    tx: Tx, name: str, member: str, ranges: Iterable[tuple[int, int]], ttl: float, reclaim_delay: float
) -> list[Grant] | None:
    """Claim exactly ``ranges`` again for a restarted member (see ``Store.reclaim``)."""
    locked = _lock_pool(tx, name)
    if locked is None:
        raise StoreError(f"pool {name!r} is not registered in the store: a pool joins before it claims")
    cb, _, epoch = locked
    wanted = sorted((int(first), int(count)) for first, count in ranges)
    cursor = 0
    for first, count in wanted:
        if first < cursor or count < 1 or first + count > cb.address_count:
            raise ArgumentError(f"ranges must be disjoint, non-empty and inside 0..{cb.address_count}: {wanted}")
        cursor = first + count
    _expire(tx, name)
    found = tx.rows(
        "SELECT first_index, addresses, member, state, epoch FROM natpool_claims WHERE pool = %s ORDER BY first_index",
        (name,),
    )
    replaced: list[int] = []
    claimed = 0
    for first, count, owner, state, row_epoch in found:
        first, end = int(first), int(first) + int(count)
        meets = [(a, a + n) for a, n in wanted if a < end and first < a + n]
        if not meets:
            claimed += int(count) if state == CLAIMED else 0
        elif owner == member and len(meets) == 1 and meets[0][0] <= first and end <= meets[0][1]:
            replaced.append(int(row_epoch))  # this member's own claim from before its restart
        else:
            return None  # another member's, or not within one of the ranges
    if claimed + sum(count for _, count in wanted) > cb.capacity:
        return None
    for chunk in _chunks(replaced):
        tx.run(f"DELETE FROM natpool_claims WHERE pool = %s AND epoch IN {_in_list(chunk)}", (name, *chunk))
    expires_at = tx.now + ttl
    grants = []
    for first, count in wanted:
        tx.run(
            "INSERT INTO natpool_claims (pool, first_index, addresses, member, epoch, state, expires_at, "
            "reclaim_delay) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (name, first, count, member, epoch, CLAIMED, expires_at, reclaim_delay),
        )
        grants.append(Grant(first, count, epoch, expires_at))
        epoch += 1
    tx.run("UPDATE natpool_pools SET next_epoch = %s WHERE name = %s", (epoch, name))
    _heartbeat(tx, name, member, expires_at)
    return grants


def release(tx: Tx, name: str, member: str, epoch: int) -> None:
    """Return one claim (see ``Store.release``)."""
    if _lock_pool(tx, name) is None:
        return
    _expire(tx, name)
    _hold(tx, name, member, [epoch])


def renew(tx: Tx, name: str, member: str, epochs: Iterable[int], ttl: float) -> dict[int, float]:
    """Extend the member's live claims among ``epochs`` and its heartbeat (see ``Store.renew``)."""
    if _lock_pool(tx, name) is None:
        return {}
    _expire(tx, name)
    expires_at = tx.now + ttl
    renewed: dict[int, float] = {}
    for chunk in _chunks(epochs):
        where = f"WHERE pool = %s AND member = %s AND state = %s AND epoch IN {_in_list(chunk)}"
        params = (name, member, CLAIMED, *chunk)
        live = tx.rows(f"SELECT epoch FROM natpool_claims {where}", params)
        tx.run(f"UPDATE natpool_claims SET expires_at = %s {where}", (expires_at, *params))
        renewed.update((int(epoch), expires_at) for (epoch,) in live)
    _heartbeat(tx, name, member, expires_at)
    return renewed


def leave(tx: Tx, name: str, member: str, epochs: Iterable[int]) -> None:
    """Return ``epochs`` and remove the member (see ``Store.leave``)."""
    if _lock_pool(tx, name) is None:
        return
    _expire(tx, name)
    _hold(tx, name, member, epochs)
    tx.run("DELETE FROM natpool_members WHERE pool = %s AND member = %s", (name, member))


# -- read operations (each the body of one read transaction) -------------------------------


def _config(tx: Tx, name: str) -> tuple[ControlBlock, dict[str, Any]] | None:
    found = tx.rows("SELECT config FROM natpool_pools WHERE name = %s", (name,))
    if not found:
        return None
    config = space.loads(found[0][0])
    return space.control_block_of(config), config


def _effective(state: str, expires_at: float, reclaim_delay: float, now: float) -> tuple[str, float] | None:
    """A stored claim as ``_expire`` would leave it at ``now``: (state, expires_at), or None if forgotten."""
    if state == CLAIMED and expires_at <= now:
        state, expires_at = HELD, expires_at + reclaim_delay
    if state == HELD and expires_at <= now:
        return None
    return state, expires_at


def _claims(tx: Tx, name: str, cb: ControlBlock) -> list[Claim]:
    now = tx.now
    found = tx.rows(
        "SELECT first_index, addresses, member, epoch, state, expires_at, reclaim_delay "
        "FROM natpool_claims WHERE pool = %s ORDER BY first_index",
        (name,),
    )
    listed = []
    for first, count, member, epoch, state, expires_at, delay in found:
        effective = _effective(state, float(expires_at), float(delay), now)
        if effective is None:
            continue
        first_ip, first_port = cb.address(int(first))
        last_ip, last_port = cb.address(int(first) + int(count) - 1)
        listed.append(
            Claim(
                member,
                address_text(cb.family, first_ip),
                first_port,
                address_text(cb.family, last_ip),
                last_port,
                int(count),
                int(epoch),
                effective[1],
                effective[0],
            )
        )
    return listed


def claims(tx: Tx, name: str) -> list[Claim]:
    """The pool's claimed and held ranges in address order (see ``Store.claims``)."""
    found = _config(tx, name)
    return [] if found is None else _claims(tx, name, found[0])


def owner(tx: Tx, name: str, ip: Any, port: int) -> str | None:
    """The member whose live claim covers (ip, port) (see ``Store.owner``)."""
    found = _config(tx, name)
    if found is None or found[0].family == 4:
        address = parse_ip(ip, "ip", ArgumentError)
    else:
        address = parse_address(ip, 6)
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be int, not {type(port).__name__}")
    if found is None:
        return None
    index = found[0].index(address, port)
    if index is None:
        return None
    hit = tx.rows(
        "SELECT member FROM natpool_claims WHERE pool = %s AND state = %s AND expires_at > %s "
        "AND first_index <= %s AND first_index + addresses > %s",
        (name, CLAIMED, tx.now, index, index),
    )
    return str(hit[0][0]) if hit else None


def pools(tx: Tx) -> list[str]:
    """The registered pools' names, sorted."""
    return [str(name) for (name,) in tx.rows("SELECT name FROM natpool_pools ORDER BY name")]


def status(tx: Tx, name: str) -> PoolStatus:
    """A pool's summary (see ``Store.status``)."""
    found = _config(tx, name)
    if found is None:
        raise StoreError(f"the store has no pool {name!r}")
    cb, config = found
    listed = _claims(tx, name, cb)
    now = tx.now
    members = []
    for member, expires_at in tx.rows(
        "SELECT member, expires_at FROM natpool_members WHERE pool = %s AND expires_at > %s ORDER BY member",
        (name, now),
    ):
        own = [c for c in listed if c.member == member and c.state == CLAIMED]
        members.append(MemberStatus(member, float(expires_at), len(own), sum(c.count for c in own)))
    claimed = sum(c.count for c in listed if c.state == CLAIMED)
    held = sum(c.count for c in listed if c.state == HELD)
    config = dict(config, ports=tuple(config["ports"]))
    return PoolStatus(
        name=name,
        config=config,
        address_count=cb.address_count,
        capacity=cb.capacity,
        members=members,
        claims=listed,
        claimed=claimed,
        held=held,
        free=cb.address_count - claimed - held,
        now=now,
    )
