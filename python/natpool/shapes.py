"""Parsing a pool's shape: the items of ``ranges`` and ``exclude`` (phase 1 of validation).

Both implementations call these functions, so an item is accepted, normalised or
refused the same way by ``natpool.Pool`` and ``natpool.reference.Pool``; the relations
between the items (overlaps, families, exclusions outside every range, ports outside
``ports``) are checked afterwards, by each implementation (phase 3, see
``docs/shapes.md``).

Addresses come back as integers with their family (4 or 6).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from natpool.errors import ArgumentError, PoolConfigError

__all__ = ["parse_ranges", "parse_exclusions", "parse_address", "address_text", "usable_bounds"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_MAX = {4: 2**32 - 1, 6: 2**128 - 1}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _items(value: Any, field: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{field} must be a list of items, not {type(value).__name__}")
    return list(value)


def usable_bounds(network: Network) -> tuple[int, int]:
    """The addresses of a network that a pool hands out.

    IPv4 /30 and shorter: without the network and broadcast addresses. IPv6 /126 and
    shorter: without the subnet-router anycast address (the prefix's all-zero host),
    as ``ipaddress``'s ``hosts()`` does. Longer prefixes: every address.
    """
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen <= 30:
        return first + 1, last - 1
    if network.version == 6 and network.prefixlen <= 126:
        return first + 1, last
    return first, last


def _address(value: Any, field: str) -> tuple[int, int]:
    """One address of a range item: ``str``, an ``ipaddress`` address, or an IPv4 ``int``."""
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value.version, int(value)
    if _is_int(value):
        if not 0 <= value <= _MAX[4]:
            raise PoolConfigError(field, f"{value} is not an IPv4 address (give IPv6 addresses as text)")
        return 4, int(value)
    if isinstance(value, str):
        try:
            parsed = ipaddress.ip_address(value.strip())
        except ValueError:
            raise PoolConfigError(field, f"{value!r} is not an IP address") from None
        return parsed.version, int(parsed)
    raise TypeError(f"{field}: an address must be str, int or an ipaddress address, not {type(value).__name__}")


def _network(text: str, field: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        raise PoolConfigError(field, f"{text!r} is not a network (host bits set, or unparsable)") from None


def _span(first: tuple[int, int], last: tuple[int, int], field: str, item: Any) -> tuple[int, int, int]:
    if first[0] != last[0]:
        raise PoolConfigError(field, f"{item!r} mixes IPv4 and IPv6")
    if first[1] > last[1]:
        raise PoolConfigError(field, f"{item!r} is reversed")
    return first[0], first[1], last[1]


def _range_item(item: Any) -> tuple[int, int, int]:
    field = "ranges"
    if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return (item.version, *usable_bounds(item))
    if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return item.version, int(item), int(item)
    if isinstance(item, str):
        if "/" in item:
            network = _network(item, field)
            return (network.version, *usable_bounds(network))
        if "-" in item:
            low, high = item.split("-", 1)
            return _span(_address(low, field), _address(high, field), field, item)
        family, value = _address(item, field)
        return family, value, value
    if isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise PoolConfigError(field, f"{item!r}: a range is (first, last)")
        return _span(_address(item[0], field), _address(item[1], field), field, item)
    raise TypeError(f"ranges: an item must be str, a 2-tuple or an ipaddress object, not {type(item).__name__}")


def parse_ranges(ranges: Any) -> list[tuple[int, int, int]]:
    """``(family, first, last)`` for each item of ``ranges``, in the order given.

    Networks are cut to their usable bounds (``usable_bounds``). Raises
    ``PoolConfigError`` (field ``ranges``) for an empty list or an item that does not
    parse or is reversed, and ``TypeError`` for values of the wrong type.
    """
    items = _items(ranges, "ranges")
    if not items:
        raise PoolConfigError("ranges", "is empty")
    return [_range_item(item) for item in items]


def _ports(text: str, item: Any) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    high = high if dash else low
    if not (low.strip().isdigit() and high.strip().isdigit()):
        raise PoolConfigError("exclude", f"{item!r}: ports must be 'port' or 'low-high'")
    lo, hi = int(low), int(high)
    if lo > hi:
        raise PoolConfigError("exclude", f"{item!r}: ports are reversed")
    return lo, hi


def _exclusion_item(item: Any) -> tuple[int, int, int, int | None, int | None]:
    field = "exclude"
    if isinstance(item, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return item.version, int(item.network_address), int(item.broadcast_address), None, None
    if isinstance(item, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return item.version, int(item), int(item), None, None
    if not isinstance(item, str):
        raise TypeError(f"exclude: an item must be str or an ipaddress object, not {type(item).__name__}")
    text = item.strip()
    if text.startswith("["):  # [IPv6]:port or [IPv6]:low-high
        address, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise PoolConfigError(field, f"{item!r}: expected '[address]:port' or '[address]:low-high'")
        family, value = _address(address, field)
        if family != 6:
            raise PoolConfigError(field, f"{item!r}: brackets are for IPv6 addresses")
        return (6, value, value, *_ports(rest[1:], item))
    if "/" in text:
        network = _network(text, field)
        return network.version, int(network.network_address), int(network.broadcast_address), None, None
    if text.count(":") == 1:  # IPv4:port or IPv4:low-high (an IPv6 address has two colons or more)
        address, _, ports = text.partition(":")
        family, value = _address(address, field)
        return (family, value, value, *_ports(ports, item))
    if "-" in text:
        low, high = text.split("-", 1)
        return (*_span(_address(low, field), _address(high, field), field, item), None, None)
    family, value = _address(text, field)
    return family, value, value, None, None


def parse_exclusions(exclude: Any) -> list[tuple[int, int, int, int | None, int | None]]:
    """``(family, first_ip, last_ip, port_low, port_high)`` for each item of ``exclude``.

    ``None`` gives no exclusion. The ports are ``None`` when the item names whole
    addresses. Whether a port lies within the pool's ``ports`` is checked later, with
    the other relations. Raises ``PoolConfigError`` (field ``exclude``) or ``TypeError``.
    """
    if exclude is None:
        return []
    return [_exclusion_item(item) for item in _items(exclude, "exclude")]


def parse_address(value: Any, family: int, field: str = "ip") -> int:
    """A method argument's address (``lookup``, ``reserve``, ``drain``) in a pool of ``family``.

    ``str``, an ``ipaddress`` address, or an ``int`` taken in the pool's family. Another
    family or an unparsable value: ``ArgumentError``; another type: ``TypeError``.
    """
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        if value.version != family:
            raise ArgumentError(f"{field}: {value} is not an IPv{family} address")
        return int(value)
    if _is_int(value):
        if not 0 <= value <= _MAX[family]:
            raise ArgumentError(f"{field}: {value} is not an IPv{family} address")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = ipaddress.ip_address(value)
        except ValueError:
            raise ArgumentError(f"{field}: {value!r} is not an IP address") from None
        if parsed.version != family:
            raise ArgumentError(f"{field}: {value!r} is not an IPv{family} address")
        return int(parsed)
    kind = "IPv4Address" if family == 4 else "IPv6Address"
    raise TypeError(f"{field} must be str, int or {kind}, not {type(value).__name__}")


def address_text(family: int, value: int) -> str:
    """The text form of an address: IPv6 compressed (RFC 5952), an IPv4-mapped IPv6 address as
    ``::ffff:a.b.c.d`` whatever the Python version (3.13's ``ipaddress`` and Rust's ``Ipv6Addr`` write it so;
    3.11's writes hex groups)."""
    if family == 4:
        return str(ipaddress.IPv4Address(value))
    if value >> 32 == 0xFFFF:
        return f"::ffff:{ipaddress.IPv4Address(value & 0xFFFFFFFF)}"
    return str(ipaddress.IPv6Address(value))
