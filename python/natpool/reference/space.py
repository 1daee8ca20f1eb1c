"""A pool's address space (``docs/shapes.md``): its ranges, minus its exclusions, numbered from 0.

The space is a set of (ip, port) pairs of one family, in ip-major, port-minor
order. Each pair has a *flat* coordinate ``ip * P + (port - ports.low)`` (``P``
the ports of one IP), so that order is the order of flat coordinates and
(ip, ``ports.high``) is followed by (ip + 1, ``ports.low``). A range is the flat
interval ``[first * P, (last + 1) * P)``; an exclusion the flat interval of its
IPs (all ports) or, per IP, of its ports. The space is the ranges' union minus
the exclusions', kept as *segments*: maximal runs of consecutive flat
coordinates, each with the index of its first address. Indices number the space
contiguously (an excluded address has none); every lookup is a binary search
over the segments, and nothing is kept per address: a /16 excluded from a /8
is two segments, a /48 IPv6 range with 64,512 ports one.

Phase 3 of the configuration's validation (``config.py``) happens here, in this
order, stopping at the first error: the ranges' families agree and they do not
overlap (field ``ranges``); then each exclusion, in the order given, is of the
ranges' family, has its ports within ``ports`` and shares an address with the
ranges (field ``exclude``); the exclusions leave an address (``exclude``); the
space has at most 2**128 - 1 addresses (``ranges``, or ``first_ip`` for the
legacy form).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from natpool.errors import PoolConfigError
from natpool.shapes import address_text

__all__ = ["AddressSpace", "address_space", "normalise_ranges", "ip_text", "MAX_ADDRESSES"]

MAX_ADDRESSES = 2**128 - 1
"""The most addresses a space may have (the Rust core counts them in a u128)."""

RangeItem = tuple[int, int, int]
"""``(family, first_ip, last_ip)``: one parsed item of ``ranges`` (its usable addresses)."""
ExclusionItem = tuple[int, int, int, int | None, int | None]
"""``(family, first_ip, last_ip, port_lo, port_hi)``: one parsed item of ``exclude`` (no ports: all ports)."""


def ip_text(ip: int, family: int) -> str:
    """An IP's text: dotted for IPv4, the compressed form for IPv6 (``natpool.shapes.address_text``)."""
    return address_text(family, ip)


def normalise_ranges(items: Sequence[RangeItem]) -> tuple[int, list[tuple[int, int]]]:
    """The family and the normalised ranges of parsed ``ranges`` items: sorted, touching ones merged.

    ``PoolConfigError("ranges")`` for no item, items of both families, or two that overlap.
    """
    if not items:
        raise PoolConfigError("ranges", "holds no range")
    family = items[0][0]
    for item_family, first, last in items:
        if item_family != family:
            raise PoolConfigError(
                "ranges", f"{ip_text(first, item_family)}-{ip_text(last, item_family)} is not IPv{family}"
            )
    ordered = sorted((first, last) for _, first, last in items)
    merged: list[tuple[int, int]] = []
    for first, last in ordered:
        if merged and first <= merged[-1][1]:
            low, high = merged[-1]
            raise PoolConfigError(
                "ranges",
                f"{ip_text(first, family)}-{ip_text(last, family)} overlaps "
                f"{ip_text(low, family)}-{ip_text(high, family)}",
            )
        if merged and first == merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return family, merged


class AddressSpace:
    """The numbered addresses of a pool (see the module docstring)."""

    __slots__ = ("family", "ports", "ranges", "address_count", "_index", "_flat", "_count")

    def __init__(
        self, family: int, ports: tuple[int, int], ranges: list[tuple[int, int]], segments: list[tuple[int, int]]
    ) -> None:
        """``segments``: the space's maximal flat runs ``(first flat coordinate, count)``, ascending."""
        self.family = family
        self.ports = ports
        self.ranges = ranges
        """The normalised ranges ``(first_ip, last_ip)``, exclusions not taken out."""
        self._index: list[int] = []
        self._flat: list[int] = []
        self._count: list[int] = []
        index = 0
        for flat, count in segments:
            self._index.append(index)
            self._flat.append(flat)
            self._count.append(count)
            index += count
        self.address_count = index

    @property
    def ports_per_ip(self) -> int:
        return self.ports[1] - self.ports[0] + 1

    @property
    def segment_count(self) -> int:
        return len(self._index)

    def _flat_of(self, ip: int, port: int) -> int:
        return ip * self.ports_per_ip + port - self.ports[0]

    def address(self, index: int) -> tuple[int, int]:
        """The (ip, port) numbered ``index`` (``0 <= index < address_count``)."""
        assert 0 <= index < self.address_count, index
        k = bisect_right(self._index, index) - 1
        ip, offset = divmod(self._flat[k] + index - self._index[k], self.ports_per_ip)
        return ip, self.ports[0] + offset

    def index(self, ip: int, port: int) -> int | None:
        """The index of (ip, port), or None if it is not in the space."""
        if not self.ports[0] <= port <= self.ports[1]:
            return None
        flat = self._flat_of(ip, port)
        k = bisect_right(self._flat, flat) - 1
        if k < 0 or flat >= self._flat[k] + self._count[k]:
            return None
        return self._index[k] + flat - self._flat[k]

    def _rank(self, flat: int) -> int:
        """How many addresses of the space have a flat coordinate below ``flat``."""
        k = bisect_right(self._flat, flat) - 1
        if k < 0:
            return 0
        return self._index[k] + min(flat - self._flat[k], self._count[k])

    def ip_indices(self, ip: int) -> tuple[int, int]:
        """The indices of the addresses of ``ip``: ``(first, end)``, end exclusive; ``first == end`` if none."""
        per_ip = self.ports_per_ip
        return self._rank(ip * per_ip), self._rank((ip + 1) * per_ip)

    def ip_of(self, index: int) -> int:
        """The IP of the address numbered ``index``."""
        return self.address(index)[0]

    def split(self, first: int, count: int) -> list[tuple[int, int]]:
        """``first .. first + count - 1`` cut at segment boundaries: ``(first, count)`` pieces, ascending."""
        pieces = []
        end = first + count
        k = bisect_right(self._index, first) - 1
        while first < end:
            segment_end = self._index[k] + self._count[k]
            piece_end = min(end, segment_end)
            pieces.append((first, piece_end - first))
            first = piece_end
            k += 1
        return pieces

    def ip_text(self, ip: int) -> str:
        return ip_text(ip, self.family)

    def excluded(self) -> list[tuple[int, int, int, int]]:
        """The exclusions as normalised: within each range, each maximal run of its addresses that are not in
        the space, ascending, as ``(first_ip, first_port, last_ip, last_port)``."""
        per_ip, low = self.ports_per_ip, self.ports[0]
        runs = []
        k = 0
        for first, last in self.ranges:
            cursor, end = first * per_ip, (last + 1) * per_ip
            while k < len(self._flat) and self._flat[k] < end:
                if self._flat[k] > cursor:
                    runs.append((cursor, self._flat[k]))
                cursor = self._flat[k] + self._count[k]
                k += 1
            if cursor < end:
                runs.append((cursor, end))
        return [(*divmod_port(start, per_ip, low), *divmod_port(end - 1, per_ip, low)) for start, end in runs]


def divmod_port(flat: int, per_ip: int, low: int) -> tuple[int, int]:
    """The (ip, port) of a flat coordinate."""
    ip, offset = divmod(flat, per_ip)
    return ip, low + offset


def _union(holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Flat intervals ``(start, end)`` merged into sorted, disjoint, non-touching ones."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(holes):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _subtract(ranges: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Flat intervals ``(start, end)`` minus ``holes``, both sorted and disjoint, as ``(start, count)`` runs."""
    runs = []
    h = 0
    for start, end in ranges:
        cursor = start
        while h < len(holes) and holes[h][1] <= cursor:
            h += 1
        while h < len(holes) and holes[h][0] < end:
            hole_start, hole_end = holes[h]
            if hole_start > cursor:
                runs.append((cursor, hole_start - cursor))
            cursor = max(cursor, hole_end)
            if hole_end > end:
                break  # the hole runs on into the next range
            h += 1
        if cursor < end:
            runs.append((cursor, end - cursor))
    return runs


def _check_exclusion(item: ExclusionItem, family: int, ports: tuple[int, int], ranges: list[tuple[int, int]]) -> None:
    item_family, first, last, low, high = item
    if item_family != family:
        raise PoolConfigError("exclude", f"{ip_text(first, item_family)} is not an IPv{family} address")
    where = ip_text(first, family) if first == last else f"{ip_text(first, family)}-{ip_text(last, family)}"
    if low is not None and high is not None and not (ports[0] <= low <= high <= ports[1]):
        raise PoolConfigError("exclude", f"{where}: ports {low}-{high} are not within ports {ports[0]}-{ports[1]}")
    k = bisect_right(ranges, (last, MAX_ADDRESSES)) - 1  # the last range starting at or below ``last``
    if k < 0 or ranges[k][1] < first:
        raise PoolConfigError("exclude", f"{where} is outside every range")


def address_space(
    family: int,
    ranges: list[tuple[int, int]],
    exclusions: Sequence[ExclusionItem],
    ports: tuple[int, int],
    count_field: str = "ranges",
) -> AddressSpace:
    """The space of normalised ``ranges`` minus parsed ``exclusions``, validated (see the module docstring).

    ``count_field`` names the field of a space of more than 2**128 - 1 addresses.
    """
    per_ip = ports[1] - ports[0] + 1
    holes = []
    for item in exclusions:
        _check_exclusion(item, family, ports, ranges)
        _, first, last, low, high = item
        if low is None or high is None:
            holes.append((first * per_ip, (last + 1) * per_ip))
        else:
            holes.extend(
                (ip * per_ip + low - ports[0], ip * per_ip + high - ports[0] + 1) for ip in range(first, last + 1)
            )
    segments = _subtract([(first * per_ip, (last + 1) * per_ip) for first, last in ranges], _union(holes))
    if not segments:
        raise PoolConfigError("exclude", "the exclusions leave no address")
    space = AddressSpace(family, ports, ranges, segments)
    if space.address_count > MAX_ADDRESSES:
        raise PoolConfigError(count_field, f"{space.address_count} addresses is more than 2**128 - 1")
    return space
