"""Snapshots (issue 12, point 6): a pool's state as bytes, and a pool rebuilt from them.

The format is specified in ``docs/shapes.md``, "Snapshot format": a header (magic,
version, length), fixed-width little-endian fields in a fixed order, one array
per subpool for its blocks, and a CRC-32 of everything before it. ``write``
writes a pool's snapshot; ``restore`` reads one in three steps, and builds a pool
only if all three pass:

1. ``_parse``: the header, the checksum and every field's width and range
   (truncated, corrupt or another version: ``SnapshotError``);
2. ``_configured``: the configuration, through the pool's own constructor (its
   errors become ``SnapshotError``), which must give back exactly the ranges and
   exclusions written;
3. ``_check``: the state against the configuration and itself (ids, indices,
   counts, free lists, clients, holds, events), so that no input builds a pool
   that breaks an invariant the model keeps.

Then the clock is read (only if a block is held) and the state put in place.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import math
import struct
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natpool.errors import LeaseError, NatPoolError, SnapshotError, StoreError
from natpool.records import BlockEvent
from natpool.reference.clients import Clients, ClientState
from natpool.reference.held import HeldQueue
from natpool.reference.memory_pool import ConnectionBlock, MainPoolHeader, SubpoolHeader
from natpool.reference.policy import read_clock
from natpool.reference.reuse import ORDERS, listed_free_blocks
from natpool.store import member as cluster

if TYPE_CHECKING:
    from natpool.reference.pool import Pool

__all__ = ["MAGIC", "VERSION", "write", "restore"]

MAGIC = b"NATPSNAP"
VERSION = 1
HEADER = struct.Struct("<8sIQ")
"""Magic, format version, total length in bytes."""
CHECKSUM = struct.Struct("<I")
NONE = 0xFFFFFFFF
"""No client (a subpool's owner, a block's client)."""
FREE, LIVE, HELD = 0, 1, 2
KINDS = ("assigned", "released")
MAX_DEPTH = 32
"""The deepest nesting of tuples in a client identity."""
SEEDED, QUOTA, PAIRED, BLOCKS = 1, 2, 4, 8
"""The bits of the configuration's ``options`` byte."""

_U8, _U16, _U32, _U64, _F64 = (struct.Struct(code) for code in ("<B", "<H", "<I", "<Q", "<d"))
_ITEM = {"B": 1, "I": 4}


# -- client identities ------------------------------------------------------------------------


def encode_client(value: Any, depth: int = 0) -> bytes:
    """A client's canonical encoding (tag, then payload); ``SnapshotError`` for any other type."""
    kind = type(value)
    if value is None:
        return b"\x00"
    if kind is bool:
        return b"\x02" if value else b"\x01"
    if kind is int:
        size = (value if value >= 0 else ~value).bit_length() // 8 + 1
        return b"\x03" + _sized(value.to_bytes(size, "little", signed=True))
    if kind is float:
        if math.isnan(value):
            raise SnapshotError("a client that is a NaN float cannot be written in a snapshot")
        return b"\x04" + _F64.pack(value)
    if kind is str:
        try:
            return b"\x05" + _sized(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise SnapshotError(f"client {value!r} is not valid UTF-8 (a lone surrogate)") from None
    if kind is bytes:
        return b"\x06" + _sized(value)
    if kind is tuple:
        if depth == MAX_DEPTH:
            raise SnapshotError(f"a client's tuples nest deeper than {MAX_DEPTH}")
        return b"\x07" + _U32.pack(len(value)) + b"".join(encode_client(item, depth + 1) for item in value)
    raise SnapshotError(
        f"a client of type {kind.__name__} cannot be written in a snapshot "
        "(clients must be None, bool, int, float, str, bytes or tuples of these)"
    )


def _sized(raw: bytes) -> bytes:
    if len(raw) > 0xFFFFFFFF:
        raise SnapshotError("a client's encoding is longer than 2**32 - 1 bytes")
    return _U32.pack(len(raw)) + raw


def _client(reader: _Reader, depth: int = 0) -> Any:
    tag = reader.u8()
    if tag == 0:
        return None
    if tag in (1, 2):
        return tag == 2
    if tag == 3:
        raw = reader.take(reader.u32())
        value = int.from_bytes(raw, "little", signed=True)
        if len(raw) != (value if value >= 0 else ~value).bit_length() // 8 + 1:
            raise SnapshotError("a client int is not in its shortest encoding")
        return value
    if tag == 4:
        number = reader.f64()
        if math.isnan(number):
            raise SnapshotError("a client float is NaN")
        return number
    if tag == 5:
        try:
            return reader.take(reader.u32()).decode("utf-8")
        except UnicodeDecodeError:
            raise SnapshotError("a client str is not valid UTF-8") from None
    if tag == 6:
        return reader.take(reader.u32())
    if tag == 7:
        if depth == MAX_DEPTH:
            raise SnapshotError(f"a client's tuples nest deeper than {MAX_DEPTH}")
        return tuple(_client(reader, depth + 1) for _ in range(reader.count(1)))
    raise SnapshotError(f"client tag {tag} is not one of 0..7")


# -- writing ----------------------------------------------------------------------------------


class _Writer:
    def __init__(self) -> None:
        self.out = bytearray()

    def u8(self, value: int) -> None:
        self.out += _U8.pack(value)

    def u16(self, value: int) -> None:
        self.out += _U16.pack(value)

    def u32(self, value: int) -> None:
        self.out += _U32.pack(value)

    def u64(self, value: int) -> None:
        self.out += _U64.pack(value)

    def u128(self, value: int) -> None:
        self.out += value.to_bytes(16, "little")

    def f64(self, value: float) -> None:
        self.out += _F64.pack(value)

    def array(self, code: str, values: list[int] | bytes) -> None:
        self.out += struct.pack(f"<{len(values)}{code}", *values)

    def raw(self, value: bytes) -> None:
        self.out += value


def write(pool: Pool) -> bytes:
    """The snapshot of ``pool`` (open; with a store or without): see ``docs/shapes.md``, "Snapshot format"."""
    # Everything that can refuse is done before the clock is read.
    try:
        name = pool.name.encode("utf-8")
    except UnicodeEncodeError:
        raise SnapshotError(f"pool name {pool.name!r} is not valid UTF-8 (a lone surrogate)") from None
    states = pool._clients.states
    clients = sorted(((encode_client(key), key) for key in states), key=lambda item: item[0])
    number = {key: n for n, (_, key) in enumerate(clients)}
    if len(clients) >= NONE:
        raise SnapshotError(f"a snapshot holds at most {NONE - 1} clients")
    events = [(event, encode_client(event.client)) for event in pool._clients.events]
    held = pool._held.ordered()
    now = read_clock(pool._policy.clock) if held else 0.0

    w = _Writer()
    w.u32(len(name))
    w.raw(name)
    _write_config(w, pool)
    memory_pool = pool._memory_pool or MainPoolHeader()
    w.u64(pool._live)
    w.u64(0 if pool._rng is None else pool._rng.state)
    w.u8(1 if memory_pool.shared_created else 0)
    # Every id a subpool ever had and none has now (ids are handed out lowest first, so these and the
    # ids in use are 0..N-1), zeros included.
    floors = sorted((i, g) for i, g in memory_pool.generation_floor.items() if i not in memory_pool.subpools)
    w.u32(len(floors))
    for ident, generation in floors:
        w.u32(ident)
        w.u32(generation)
    drained = pool._drained.ips()
    w.u64(len(drained))
    for ip in drained:
        w.u128(ip)

    w.u32(len(clients))
    for encoded, key in clients:
        state = states[key]
        w.raw(encoded)
        w.u64(state.live)
        w.u64(state.held)
        w.u8(0 if state.ip is None else 1)
        w.u128(0 if state.ip is None else state.ip)
        w.u32(len(state.blocks))
        w.array("I", [subpool.id for subpool in state.blocks])

    w.u32(len(memory_pool.subpools))
    for ident in sorted(memory_pool.subpools):
        subpool = memory_pool.subpools[ident]
        blocks = subpool.blocks
        w.u32(ident)
        w.u128(subpool.interval.first)
        w.u32(len(blocks))
        w.u32(NONE if subpool.owner is None else number[subpool.owner])
        w.u8(1 if subpool.drain_fenced else 0)
        w.array("I", [b.generation for b in blocks])
        w.array("B", bytes(LIVE if b.live else HELD if b.held else FREE for b in blocks))
        w.array("I", [NONE if b.client is None else number[b.client] for b in blocks])
        listed = subpool.free_blocks.listed()
        w.u32(len(listed))
        w.array("I", listed)

    w.u64(len(held))
    for end, _sequence, subpool, offset in held:
        w.u32(subpool.id)
        w.u32(offset)
        w.f64(end - now)

    w.u64(pool._clients.dropped)
    w.u64(len(events))
    for event, encoded in events:
        w.f64(event.time)
        w.u8(KINDS.index(event.kind))
        w.raw(encoded)
        w.u128(int(ipaddress.ip_address(event.first_ip)))
        w.u16(event.first_port)
        w.u128(int(ipaddress.ip_address(event.last_ip)))
        w.u16(event.last_port)

    out = bytearray(HEADER.pack(MAGIC, VERSION, HEADER.size + len(w.out) + CHECKSUM.size))
    out += w.out
    out += CHECKSUM.pack(zlib.crc32(out))
    return bytes(out)


def _write_config(w: _Writer, pool: Pool) -> None:
    """The configuration after the name."""
    cb, policy = pool._cb, pool._policy
    legacy = cb.prefix is not None
    w.u8(cb.family)
    w.u8(1 if legacy else 0)
    w.u128(cb.first_ip if legacy else 0)
    w.u128(cb.last_ip if legacy else 0)
    w.u8(cb.prefix if cb.prefix is not None else 0)
    w.u16(cb.ports[0])
    w.u16(cb.ports[1])
    w.u64(len(cb.space.ranges))
    for first, last in cb.space.ranges:
        w.u128(first)
        w.u128(last)
    excluded = cb.space.excluded()
    w.u64(len(excluded))
    for first_ip, first_port, last_ip, last_port in excluded:
        w.u128(first_ip)
        w.u16(first_port)
        w.u128(last_ip)
        w.u16(last_port)
    w.u32(cb.initial_blocks)
    w.u64(cb.max_blocks)
    w.u32(cb.subpool_blocks)
    w.u64(cb.grow_threshold)
    w.f64(policy.hold_down + 0.0)  # -0.0 is written as 0.0
    w.u8(ORDERS.index(policy.order))
    w.u8(
        (SEEDED if policy.seed is not None else 0)
        | (QUOTA if policy.client_quota is not None else 0)
        | (PAIRED if policy.paired else 0)
        | (BLOCKS if policy.client_block is not None else 0)
    )
    w.u64(policy.seed or 0)
    w.u64(policy.client_quota or 0)
    w.u32(policy.client_block or 0)
    w.u64(policy.event_queue)


# -- reading: the fields ---------------------------------------------------------------------


class _Reader:
    """Reads fixed-width little-endian fields; ``SnapshotError`` past the end of the body."""

    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.pos = HEADER.size
        self.end = end

    def take(self, size: int) -> bytes:
        if size > self.end - self.pos:
            raise SnapshotError(f"truncated: a field of {size} bytes at offset {self.pos} runs past the body")
        self.pos += size
        return self.data[self.pos - size : self.pos]

    def _unpack(self, form: struct.Struct) -> Any:
        return form.unpack(self.take(form.size))[0]

    def u8(self) -> int:
        return int(self._unpack(_U8))

    def u16(self) -> int:
        return int(self._unpack(_U16))

    def u32(self) -> int:
        return int(self._unpack(_U32))

    def u64(self) -> int:
        return int(self._unpack(_U64))

    def u128(self) -> int:
        return int.from_bytes(self.take(16), "little")

    def f64(self) -> float:
        return float(self._unpack(_F64))

    def finite(self, what: str) -> float:
        value = self.f64()
        if not math.isfinite(value):
            raise SnapshotError(f"{what} is not a finite number")
        return value

    def flag(self, what: str) -> bool:
        value = self.u8()
        if value > 1:
            raise SnapshotError(f"{what} is {value}, not 0 or 1")
        return value == 1

    def count(self, item_size: int, wide: bool = False) -> int:
        """A count (u32, or u64 if ``wide``) of items of at least ``item_size`` bytes that the body can hold."""
        n = self.u64() if wide else self.u32()
        if n * item_size > self.end - self.pos:
            raise SnapshotError(f"truncated: {n} items at offset {self.pos} run past the body")
        return n

    def array(self, code: str, n: int) -> tuple[int, ...]:
        return struct.unpack(f"<{n}{code}", self.take(n * _ITEM[code]))

    def text(self) -> str:
        try:
            return self.take(self.u32()).decode("utf-8")
        except UnicodeDecodeError:
            raise SnapshotError("the pool name is not valid UTF-8") from None


@dataclass
class _Config:
    name: str
    family: int
    legacy: tuple[int, int, int] | None
    ports: tuple[int, int]
    ranges: list[tuple[int, int]]
    excluded: list[tuple[int, int, int, int]]
    initial_blocks: int
    max_blocks: int
    subpool_blocks: int
    grow_threshold: int
    hold_down: float
    order: str
    seed: int | None
    client_quota: int | None
    paired: bool
    client_block: int | None
    event_queue: int


@dataclass
class _Client:
    identity: Any
    live: int
    held: int
    ip: int | None
    blocks: tuple[int, ...]


@dataclass
class _Subpool:
    ident: int
    first: int
    owner: int | None
    fenced: bool
    generations: tuple[int, ...]
    states: bytes
    clients: tuple[int, ...]
    listed: tuple[int, ...]


@dataclass
class _Image:
    """A snapshot's fields, parsed but not yet checked against each other."""

    config: _Config
    live: int = 0
    rng_state: int = 0
    shared_created: bool = False
    floors: list[tuple[int, int]] = field(default_factory=list)
    drained: list[int] = field(default_factory=list)
    clients: list[_Client] = field(default_factory=list)
    subpools: list[_Subpool] = field(default_factory=list)
    held: list[tuple[int, int, float]] = field(default_factory=list)
    dropped: int = 0
    events: list[tuple[float, str, Any, int, int, int, int]] = field(default_factory=list)


def _parse(snapshot: bytes) -> _Image:
    """The fields of a snapshot, after the header and checksum are checked (step 1)."""
    if len(snapshot) < HEADER.size + CHECKSUM.size:
        raise SnapshotError(f"truncated: {len(snapshot)} bytes is shorter than a snapshot's header and checksum")
    magic, version, length = HEADER.unpack_from(snapshot)
    if magic != MAGIC:
        raise SnapshotError("not a natpool snapshot (wrong magic)")
    if version != VERSION:
        raise SnapshotError(f"format version {version} is not supported (this natpool reads version {VERSION})")
    if length != len(snapshot):
        raise SnapshotError(f"truncated or extended: the header says {length} bytes, {len(snapshot)} given")
    body_end = length - CHECKSUM.size
    if CHECKSUM.unpack_from(snapshot, body_end)[0] != zlib.crc32(snapshot[:body_end]):
        raise SnapshotError("corrupt: the checksum does not match")
    reader = _Reader(snapshot, body_end)
    image = _Image(_parse_config(reader))
    image.live = reader.u64()
    image.rng_state = reader.u64()
    image.shared_created = reader.flag("shared_created")
    image.floors = [(reader.u32(), reader.u32()) for _ in range(reader.count(8))]
    image.drained = [reader.u128() for _ in range(reader.count(16, wide=True))]
    for _ in range(reader.count(38)):
        identity = _client(reader)
        live, held = reader.u64(), reader.u64()
        has_ip = reader.flag("a client's IP flag")
        ip = reader.u128()
        blocks = reader.array("I", reader.count(4))
        image.clients.append(_Client(identity, live, held, ip if has_ip else None, blocks))
        if identity is None:
            raise SnapshotError("a client of the client table is None")
        if not has_ip and ip:
            raise SnapshotError("a client without an IP has a nonzero IP field")
    for _ in range(reader.count(33)):
        ident, first, n, owner = reader.u32(), reader.u128(), reader.u32(), reader.u32()
        fenced = reader.flag("a subpool's flags")
        if n == 0 or n * 9 > reader.end - reader.pos:
            raise SnapshotError(f"subpool {ident} has {n} blocks (none, or more than the body holds)")
        generations, states, clients = reader.array("I", n), reader.take(n), reader.array("I", n)
        listed = reader.array("I", reader.count(4))
        if any(state > HELD for state in states):
            raise SnapshotError(f"subpool {ident}: a block state is not 0 (free), 1 (live) or 2 (held)")
        image.subpools.append(
            _Subpool(ident, first, None if owner == NONE else owner, fenced, generations, states, clients, listed)
        )
    for _ in range(reader.count(16, wide=True)):
        ident, offset, remaining = reader.u32(), reader.u32(), reader.finite("a hold's remaining time")
        image.held.append((ident, offset, remaining))
    image.dropped = reader.u64()
    for _ in range(reader.count(46, wide=True)):
        time, kind = reader.finite("an event's time"), reader.u8()
        if kind >= len(KINDS):
            raise SnapshotError(f"event kind {kind} is not 0 (assigned) or 1 (released)")
        client = _client(reader)
        image.events.append((time, KINDS[kind], client, reader.u128(), reader.u16(), reader.u128(), reader.u16()))
    if reader.pos != body_end:
        raise SnapshotError(f"{body_end - reader.pos} bytes after the last field")
    return image


def _parse_config(reader: _Reader) -> _Config:
    name, family, legacy = reader.text(), reader.u8(), reader.flag("the shape's form")
    if family not in (4, 6):
        raise SnapshotError(f"family {family} is not 4 or 6")
    first, last, prefix = reader.u128(), reader.u128(), reader.u8()
    if not legacy and (first or last or prefix):
        raise SnapshotError("a pool of ranges has nonzero legacy fields")
    ports = (reader.u16(), reader.u16())
    ranges = [(reader.u128(), reader.u128()) for _ in range(reader.count(32, wide=True))]
    excluded = [(reader.u128(), reader.u16(), reader.u128(), reader.u16()) for _ in range(reader.count(36, wide=True))]
    initial, maximum, subpool, threshold = reader.u32(), reader.u64(), reader.u32(), reader.u64()
    hold_down = reader.f64()
    order = reader.u8()
    if order >= len(ORDERS):
        raise SnapshotError(f"order {order} is not 0 (fifo), 1 (lifo) or 2 (random)")
    options = reader.u8()
    if options & ~(SEEDED | QUOTA | PAIRED | BLOCKS):
        raise SnapshotError(f"options {options:#x} has unknown bits")
    seed, quota, block, event_queue = reader.u64(), reader.u64(), reader.u32(), reader.u64()
    for bit, value, what in ((SEEDED, seed, "seed"), (QUOTA, quota, "client_quota"), (BLOCKS, block, "client_block")):
        if not options & bit and value:
            raise SnapshotError(f"{what} is not set but its field is {value}")
    top = 2**32 if family == 4 else 2**128
    ips = [first, last] + [ip for pair in ranges for ip in pair] + [run[k] for run in excluded for k in (0, 2)]
    if any(ip >= top for ip in ips):
        raise SnapshotError(f"an address of the configuration is not an IPv{family} address")
    return _Config(
        name=name,
        family=family,
        legacy=(first, last, prefix) if legacy else None,
        ports=ports,
        ranges=ranges,
        excluded=excluded,
        initial_blocks=initial,
        max_blocks=maximum,
        subpool_blocks=subpool,
        grow_threshold=threshold,
        hold_down=hold_down,
        order=ORDERS[order],
        seed=seed if options & SEEDED else None,
        client_quota=quota if options & QUOTA else None,
        paired=bool(options & PAIRED),
        client_block=block if options & BLOCKS else None,
        event_queue=event_queue,
    )


# -- reading: the configuration (step 2) ---------------------------------------------------------


def _exclude_items(config: _Config) -> list[str]:
    """The normalised exclusions as ``exclude`` items: each run as up to three (a partial first IP, whole IPs,
    a partial last IP)."""
    low, high = config.ports

    def text(ip: int) -> str:
        return str(ipaddress.IPv6Address(ip) if config.family == 6 else ipaddress.IPv4Address(ip))

    def ports(ip: int, first: int, last: int) -> str:
        address = f"[{text(ip)}]" if config.family == 6 else text(ip)
        return f"{address}:{first}-{last}"

    items = []
    for first_ip, first_port, last_ip, last_port in config.excluded:
        if first_ip == last_ip:
            items.append(ports(first_ip, first_port, last_port))
            continue
        whole_first, whole_last = first_ip + (first_port != low), last_ip - (last_port != high)
        if first_port != low:
            items.append(ports(first_ip, first_port, high))
        if whole_first <= whole_last:
            items.append(f"{text(whole_first)}-{text(whole_last)}")
        if last_port != high:
            items.append(ports(last_ip, low, last_port))
    return items


def _configured(cls: type[Pool], config: _Config, clock: Callable[[], Any] | None) -> Pool:
    """A fresh pool of the snapshot's configuration, built by the constructor (its checks), which must give back
    exactly the normalised ranges and exclusions written."""
    if math.copysign(1.0, config.hold_down) < 0 and config.hold_down == 0:
        raise SnapshotError("hold_down is -0.0 (a snapshot writes 0.0)")

    def address(ip: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.IPv4Address(ip) if config.family == 4 else ipaddress.IPv6Address(ip)

    shape: dict[str, Any]
    if config.legacy is not None:
        first, last, prefix = config.legacy
        shape = {"first_ip": address(first), "last_ip": address(last), "netmask": prefix}
    else:
        shape = {"ranges": [(address(first), address(last)) for first, last in config.ranges]}
    try:
        pool = cls(
            config.name,
            initial_blocks=config.initial_blocks,
            max_blocks=config.max_blocks,
            exclude=_exclude_items(config) or None,
            ports=config.ports,
            subpool_blocks=config.subpool_blocks,
            grow_threshold=config.grow_threshold,
            hold_down=config.hold_down,
            clock=clock,
            order=config.order,
            seed=config.seed,
            client_quota=config.client_quota,
            paired=config.paired,
            client_block=config.client_block,
            event_queue=config.event_queue,
            **shape,
        )
    except (NatPoolError, TypeError, ValueError) as exc:
        raise SnapshotError(f"the configuration is invalid: {exc}") from None
    space = pool._cb.space
    if space.ranges != config.ranges:
        raise SnapshotError("the ranges are not normalised (sorted, touching ones merged) or not the legacy range")
    if space.excluded() != config.excluded:
        raise SnapshotError("the exclusions are not normalised (maximal runs within the ranges, ascending)")
    if pool._cb.max_blocks != config.max_blocks or pool._cb.grow_threshold != config.grow_threshold:
        raise SnapshotError("max_blocks or grow_threshold is not as a pool keeps it")
    return pool


# -- reading: the state (step 3) ---------------------------------------------------------------


def _ascending(values: list[Any], what: str) -> None:
    if any(a >= b for a, b in itertools.pairwise(values)):
        raise SnapshotError(f"the {what} are not in strictly ascending order")


def _check(pool: Pool, image: _Image) -> None:
    """``SnapshotError`` unless the image's state is one the pool of its configuration can be in."""
    cb, policy, space = pool._cb, pool._policy, pool._cb.space
    if policy.order != "random" and image.rng_state:
        raise SnapshotError(f"a pool of order {policy.order!r} has a generator state")
    _ascending(image.drained, "drained IPs")
    for ip in image.drained:
        first, end = space.ip_indices(ip)
        if first == end:
            raise SnapshotError(f"drained IP {ip:#x} has no address in the pool")
        pool._drained.add(ip, (first, end))  # the fresh pool's, thrown away with it on an error

    clients = image.clients
    if clients and not policy.tracks_clients:
        raise SnapshotError("a pool without client settings has client states")
    keys = [encode_client(client.identity) for client in clients]
    _ascending(keys, "clients")
    if len({client.identity for client in clients}) != len(clients):
        raise SnapshotError("two clients of the client table are equal keys (1 and 1.0, say)")

    subpools = {subpool.ident: subpool for subpool in image.subpools}
    _ascending([subpool.ident for subpool in image.subpools], "subpool ids")
    cursor, blocks = 0, 0
    for subpool in sorted(image.subpools, key=lambda s: s.first):
        if subpool.first < cursor or subpool.first + len(subpool.states) > cb.address_count:
            raise SnapshotError(f"subpool {subpool.ident} overlaps another or runs past the address space")
        cursor = subpool.first + len(subpool.states)
        blocks += len(subpool.states)
    if blocks > cb.capacity:
        raise SnapshotError(f"the subpools hold {blocks} blocks, more than the capacity {cb.capacity}")
    live = [0] * len(clients)
    held = [0] * len(clients)
    for subpool in image.subpools:
        _check_subpool(pool, subpool, len(clients), live, held)
    if image.live != sum(state.count(LIVE) for state in (s.states for s in image.subpools)):
        raise SnapshotError(f"len() is {image.live}, not the number of live blocks")
    if any(s.owner is None for s in image.subpools) and not image.shared_created:
        raise SnapshotError("a shared subpool exists but shared_created is 0")

    owners = sorted((s.owner, s.ident) for s in image.subpools if s.owner is not None)
    listed = sorted((n, ident) for n, client in enumerate(clients) for ident in client.blocks)
    if owners != listed:
        raise SnapshotError("the clients' port blocks are not exactly the subpools they own")
    for n, client in enumerate(clients):
        if (client.live, client.held) != (live[n], held[n]):
            raise SnapshotError(f"client {n} counts {client.live} live and {client.held} held leases, not its blocks'")
        if not (client.live or client.held or client.blocks):
            raise SnapshotError(f"client {n} has no lease and no block (the pool forgets such a client)")
        if (client.ip is not None) != (policy.paired and client.live > 0):
            raise SnapshotError(f"client {n} has an IP without paired live leases, or none with them")
        if client.ip is not None and space.ip_indices(client.ip)[0] == space.ip_indices(client.ip)[1]:
            raise SnapshotError(f"client {n}'s IP has no address in the pool")

    seen = set()
    for ident, offset, _remaining in image.held:
        found = subpools.get(ident)
        if found is None or offset >= len(found.states) or found.states[offset] != HELD:
            raise SnapshotError(f"held entry ({ident}, {offset}) is not a held block")
        seen.add((ident, offset))
    if len(seen) != len(image.held) or len(seen) != sum(s.states.count(HELD) for s in image.subpools):
        raise SnapshotError("the held queue does not name every held block exactly once")
    remaining = [entry[2] for entry in image.held]
    if any(a > b for a, b in itertools.pairwise(remaining)) or any(
        r == 0 and math.copysign(1.0, r) < 0 for r in remaining
    ):
        raise SnapshotError("the held queue is not in release order (or holds -0.0)")

    for ident, generation in image.floors:
        if ident in subpools:
            raise SnapshotError(f"generation floor ({ident}, {generation}) is of an id in use")
    _ascending([ident for ident, _ in image.floors], "generation floors")
    if sorted([*subpools, *(ident for ident, _ in image.floors)]) != list(range(len(subpools) + len(image.floors))):
        raise SnapshotError("the subpool ids and the generation floors' ids are not 0..N-1 (the ids ever used)")
    _check_events(pool, image)


def _check_subpool(pool: Pool, subpool: _Subpool, clients: int, live: list[int], held: list[int]) -> None:
    """One subpool against the configuration; counts its blocks' live and held leases per client."""
    policy, space = pool._policy, pool._cb.space
    ident, n, states = subpool.ident, len(subpool.states), subpool.states
    where = f"subpool {ident}"
    if subpool.fenced != pool._drained.touches(subpool.first, subpool.first + n):
        raise SnapshotError(f"{where}: its drain fence does not match the drained IPs")
    all_free = states.count(FREE) == n
    if all_free and (subpool.fenced or subpool.owner is not None):
        raise SnapshotError(f"{where} is all free, drain-fenced or a port block (the pool would have deleted it)")
    owner = subpool.owner
    if owner is not None:
        if owner >= clients or policy.client_block != n:
            raise SnapshotError(f"{where}: a port block of an unknown client, or not of client_block addresses")
        if space.ip_of(subpool.first) != space.ip_of(subpool.first + n - 1):
            raise SnapshotError(f"{where}: a port block on more than one IP")
    for offset, (state, client) in enumerate(zip(states, subpool.clients, strict=True)):
        if client == NONE:
            continue
        if state == FREE or not policy.tracks_clients or client >= clients:
            raise SnapshotError(f"{where}: block {offset} names a client it cannot have")
        (live if state == LIVE else held)[client] += 1
    if owner is not None and any(c != owner for s, c in zip(states, subpool.clients, strict=True) if s != FREE):
        raise SnapshotError(f"{where}: a lease in a port block is not its client's")
    listed = subpool.listed
    if len(set(listed)) != len(listed) or any(offset >= n for offset in listed):
        raise SnapshotError(f"{where}: the free list repeats an offset or names one past its blocks")
    free = {offset for offset in range(n) if states[offset] == FREE}
    phantoms = set(listed) - free
    if not free <= set(listed):
        raise SnapshotError(f"{where}: a free block is not in the free list")
    if phantoms and (owner is not None or any(subpool.clients[o] != NONE for o in phantoms)):
        raise SnapshotError(f"{where}: a phantom (reserved) entry in a port block, or of a client's lease")


def _check_events(pool: Pool, image: _Image) -> None:
    policy, space = pool._policy, pool._cb.space
    if policy.client_block is None and (image.events or image.dropped):
        raise SnapshotError("a pool without client_block has block events")
    if len(image.events) > policy.event_queue:
        raise SnapshotError(f"{len(image.events)} events is more than event_queue {policy.event_queue}")
    for _time, _kind, client, first_ip, first_port, last_ip, last_port in image.events:
        first, last = space.index(first_ip, first_port), space.index(last_ip, last_port)
        if client is None or first is None or last is None or last - first + 1 != policy.client_block:
            raise SnapshotError("an event is not of a client's port block of the pool")


# -- restoring -------------------------------------------------------------------------------


def _attached(data: Any, image: _Image) -> dict[int, Any]:
    """The ``data`` mapping, checked: int keys that are handles of the snapshot's live leases."""
    if data is None:
        return {}
    handles = {
        generation << 64 | s.ident << 32 | offset
        for s in image.subpools
        for offset, (state, generation) in enumerate(zip(s.states, s.generations, strict=True))
        if state == LIVE
    }
    attached = {}
    for handle, value in data.items():
        if not isinstance(handle, int) or isinstance(handle, bool):
            raise TypeError(f"data: a key must be an int handle, not {type(handle).__name__}")
        if handle not in handles:
            raise LeaseError(f"data: handle {handle:#x} is not a live lease of the snapshot")
        attached[int(handle)] = value
    return attached


def restore(cls: type[Pool], snapshot: Any, data: Any, clock: Any, cluster_arguments: tuple[Any, ...]) -> Pool:
    """The pool a snapshot holds (see the module docstring for the steps); with a store, a member that
    has claimed its subpools' ranges again."""
    if not isinstance(snapshot, (bytes, bytearray, memoryview)):
        raise TypeError(f"snapshot must be bytes, not {type(snapshot).__name__}")
    if data is not None and not isinstance(data, Mapping):
        raise TypeError(f"data must be a mapping of handles or None, not {type(data).__name__}")
    if clock is not None and not callable(clock):
        raise TypeError(f"clock must be callable or None, not {type(clock).__name__}")
    chosen = cluster.settings(*cluster_arguments)
    image = _parse(bytes(snapshot))
    pool = _configured(cls, image.config, clock)
    _check(pool, image)
    attached = _attached(data, image)
    now = read_clock(pool._policy.clock) if image.held else 0.0
    ends = [now + remaining for _, _, remaining in image.held]
    if not all(math.isfinite(end) for end in ends):
        raise SnapshotError("a hold ends beyond the range of the clock's numbers")
    claims = _reclaimed(pool, image, chosen) if chosen is not None else None
    _install(pool, image, ends, attached)
    if claims is not None:
        assert pool._memory_pool is not None or not claims
        for part, claim in zip(sorted(image.subpools, key=lambda s: s.first), claims, strict=True):
            assert pool._memory_pool is not None
            pool._memory_pool.subpools[part.ident].claim = claim
    return pool


def _reclaimed(pool: Pool, image: _Image, chosen: cluster.Settings) -> list[cluster.ClaimState]:
    """Join the cluster and claim the snapshot's subpools' ranges again (address order); on a refusal or a
    failure, leave it again and raise (``SnapshotError``, ``StoreError``): nothing is built."""
    pool._check_store(chosen)
    pool._join(chosen)
    member = pool._member
    assert member is not None
    ranges = [(part.first, len(part.states)) for part in sorted(image.subpools, key=lambda s: s.first)]
    try:
        states = member.reclaim(ranges) if ranges else []
    except BaseException:
        _leave(pool)
        raise
    if states is None:
        _leave(pool)
        raise SnapshotError(
            f"the cluster of pool {pool.name!r} has given addresses of the snapshot's subpools to other members "
            "(or has no capacity left for them)"
        )
    return states


def _leave(pool: Pool) -> None:
    """Leave the cluster just joined (a store that fails now lets the heartbeat lapse)."""
    with contextlib.suppress(StoreError):
        pool.close()


def _install(pool: Pool, image: _Image, ends: list[float], attached: dict[int, Any]) -> None:
    """Put a checked image's state into the fresh pool of its configuration."""
    cb, policy = pool._cb, pool._policy
    if pool._rng is not None:
        pool._rng.state = image.rng_state
    keys = [client.identity for client in image.clients]
    clients = pool._clients = Clients(policy.event_queue)
    for record in image.clients:
        state = clients.states[record.identity] = ClientState()
        state.live, state.held, state.ip = record.live, record.held, record.ip
    clients.dropped = image.dropped
    text = cb.space.ip_text
    for time, kind, who, first_ip, first_port, last_ip, last_port in image.events:
        clients.events.append(BlockEvent(time, kind, who, text(first_ip), first_port, text(last_ip), last_port))
    if not (image.subpools or image.floors or image.shared_created):
        pool._live = 0
        return
    memory_pool = pool._memory_pool = MainPoolHeader()
    memory_pool.shared_created = image.shared_created
    memory_pool.generation_floor = dict(image.floors)
    for part in sorted(image.subpools, key=lambda s: s.first):
        n = len(part.states)
        blocks = [ConnectionBlock(*cb.address(part.first + i), part.generations[i]) for i in range(n)]
        for offset, (block, block_state, number) in enumerate(zip(blocks, part.states, part.clients, strict=True)):
            block.live = block_state == LIVE
            block.client = None if number == NONE else keys[number]
            if block.live:
                block.data = attached.get(block.generation << 64 | part.ident << 32 | offset)
        free_blocks = listed_free_blocks(policy.order, list(part.listed), pool._rng)
        subpool = SubpoolHeader(part.ident, pool._intervals.owner_of(part.first), blocks, free_blocks=free_blocks)
        subpool.interval = pool._intervals.assign_at(part.first, n, subpool)
        subpool.free = part.states.count(FREE)
        subpool.phantoms = {offset for offset in part.listed if part.states[offset] != FREE}
        subpool.owner = None if part.owner is None else keys[part.owner]
        subpool.drain_fenced = part.fenced
        memory_pool.subpools[part.ident] = subpool
        memory_pool.blocks += n
    for record in image.clients:
        clients.states[record.identity].blocks = [memory_pool.subpools[ident] for ident in record.blocks]
    held = pool._held = HeldQueue()
    for (ident, offset, _remaining), end in zip(image.held, ends, strict=True):
        held.hold(end, memory_pool.subpools[ident], offset)
    pool._live = image.live
