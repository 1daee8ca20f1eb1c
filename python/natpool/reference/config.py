"""The control block (Figure 3): parsing and validating a pool's configuration.

The pool's shape is either the legacy ``first_ip, last_ip, netmask`` (one range)
or ``ranges``, with ``exclude`` in both forms (``docs/shapes.md``); giving both
forms, or neither, is ``PoolConfigError("ranges")``, checked right after the
type of ``name``. Validation runs in three phases, in this order, and stops at
the first error:

1. each argument, in the order name, first_ip, last_ip, netmask (or ranges),
   exclude, ports, initial_blocks, max_blocks, subpool_blocks, grow_threshold,
   is checked for its type (``TypeError``) and parsed (an unparsable IP or
   netmask, an IP integer out of range, a non-contiguous mask, a netmask
   prefix outside 0..32 (IPv4) or 0..128 (IPv6), ``ports`` not of length two
   raise ``PoolConfigError``; ``ranges`` and ``exclude`` items are parsed by
   ``natpool.shapes``). In the legacy form ``first_ip`` and ``last_ip`` may be
   IPv4 (``str``, ``int``, ``IPv4Address``) or IPv6 (``str``,
   ``IPv6Address``); two families is ``PoolConfigError("first_ip")``, checked
   after ``last_ip`` parses, and an IPv6 pool's netmask must be an int prefix
   (a ``str`` is ``PoolConfigError("netmask")``);
2. each value, in that order, is range-checked: empty ``name``; ``ports``
   outside 1..65535 or reversed; ``initial_blocks < 1`` or above 2**32 - 1;
   ``max_blocks < initial_blocks``; ``subpool_blocks < 1`` or above 2**32 - 1;
   ``grow_threshold < 0``;
3. the relations: ``first_ip > last_ip`` (field ``last_ip``); first and last
   not in one subnet of ``netmask`` (field ``netmask``); no usable address
   (field ``first_ip``); or, for ``ranges``, their families and overlaps;
   then the exclusions and the size of the space (``space.py``).

``max_blocks`` and ``grow_threshold`` above 2**64 - 1 are taken as 2**64 - 1
(no pool reaches either), as the Rust core's 64-bit counters do.

The Rust binding performs phase 1 and the Rust core phases 2 and 3, in the
same order, so both implementations raise the same class for the same field.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from natpool.errors import ArgumentError, PoolConfigError
from natpool.reference.space import AddressSpace, address_space, ip_text, normalise_ranges
from natpool.shapes import parse_exclusions, parse_ranges, usable_bounds

MAX_SUBPOOL_BLOCKS = 2**32 - 1
_U64_MAX = 2**64 - 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_ip(value: Any, field: str, error: type[ArgumentError] = PoolConfigError) -> int:
    """An IPv4 address given as ``str``, ``int`` or ``IPv4Address``, as an int."""
    if isinstance(value, ipaddress.IPv4Address):
        return int(value)
    if _is_int(value):
        if not 0 <= value <= 0xFFFFFFFF:
            raise _error(error, field, f"{value} is not an IPv4 address")
        return int(value)
    if isinstance(value, str):
        try:
            return int(ipaddress.IPv4Address(value))
        except ValueError:
            raise _error(error, field, f"{value!r} is not an IPv4 address") from None
    raise TypeError(f"{field} must be str, int or IPv4Address, not {type(value).__name__}")


def _error(error: type[ArgumentError], field: str, reason: str) -> ArgumentError:
    if error is PoolConfigError:
        return PoolConfigError(field, reason)
    return error(f"{field}: {reason}")


def _legacy_ip(value: Any, field: str) -> tuple[int, int]:
    """``first_ip`` or ``last_ip`` of the legacy form: ``(family, address)``. An ``int`` is IPv4."""
    if isinstance(value, ipaddress.IPv6Address):
        return 6, int(value)
    if isinstance(value, str):
        try:
            return 4, int(ipaddress.IPv4Address(value))
        except ValueError:
            pass
        try:
            return 6, int(ipaddress.IPv6Address(value))
        except ValueError:
            raise PoolConfigError(field, f"{value!r} is not an IP address") from None
    return 4, parse_ip(value, field)


def parse_netmask(value: Any, family: int = 4) -> int:
    """A netmask as a dotted string or a prefix length (IPv6: a prefix length only); returns the prefix length."""
    if family == 6:
        if _is_int(value):
            if not 0 <= value <= 128:
                raise PoolConfigError("netmask", f"prefix length {value} is outside 0..128")
            return int(value)
        if isinstance(value, str):
            raise PoolConfigError("netmask", "an IPv6 pool's netmask is a prefix length (an int)")
        raise TypeError(f"netmask must be int, not {type(value).__name__}")
    if _is_int(value):
        if not 0 <= value <= 32:
            raise PoolConfigError("netmask", f"prefix length {value} is outside 0..32")
        return int(value)
    if isinstance(value, str):
        try:
            mask = int(ipaddress.IPv4Address(value))
        except ValueError:
            raise PoolConfigError("netmask", f"{value!r} is not a netmask") from None
        prefix = 32 - ((~mask & 0xFFFFFFFF).bit_length())
        if mask != prefix_to_mask(prefix):
            raise PoolConfigError("netmask", f"{value!r} is not contiguous")
        return prefix
    raise TypeError(f"netmask must be str or int, not {type(value).__name__}")


def prefix_to_mask(prefix: int) -> int:
    return (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF


def _parse_count(value: Any, field: str, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if not _is_int(value):
        kind = "int or None" if optional else "int"
        raise TypeError(f"{field} must be {kind}, not {type(value).__name__}")
    return int(value)


def _parse_ports(value: Any) -> tuple[int, int]:
    if not isinstance(value, (tuple, list)):
        raise TypeError(f"ports must be a (low, high) tuple, not {type(value).__name__}")
    if not all(_is_int(p) for p in value):
        raise TypeError("ports must hold two ints")
    if len(value) != 2:
        raise PoolConfigError("ports", f"expected (low, high), got {len(value)} values")
    return int(value[0]), int(value[1])


def ip_str(ip: int) -> str:
    return str(ipaddress.IPv4Address(ip))


@dataclass(frozen=True)
class ControlBlock:
    """The pool's control block: the inputs of Figure 3 and what follows from them."""

    name: str
    first_ip: int
    """The legacy form's ``first_ip`` as given; with ``ranges``, the first range's first address."""
    last_ip: int
    prefix: int | None
    """The legacy form's netmask as a prefix length; None with ``ranges``."""
    ports: tuple[int, int]
    initial_blocks: int
    max_blocks: int
    subpool_blocks: int
    grow_threshold: int
    space: AddressSpace
    """The numbered addresses: the ranges minus the exclusions (``space.py``)."""

    @property
    def family(self) -> int:
        return self.space.family

    @property
    def ports_per_ip(self) -> int:
        return self.ports[1] - self.ports[0] + 1

    @property
    def address_count(self) -> int:
        return self.space.address_count

    @property
    def capacity(self) -> int:
        return min(self.max_blocks, self.address_count)

    def address(self, index: int) -> tuple[int, int]:
        """The (ip, port) at ``index`` in the ordered address space."""
        return self.space.address(index)

    def index(self, ip: int, port: int) -> int | None:
        """The index of (ip, port) in the address space, or None if outside it."""
        return self.space.index(ip, port)


def control_block(
    name: Any,
    first_ip: Any,
    last_ip: Any,
    netmask: Any,
    initial_blocks: Any,
    max_blocks: Any,
    ports: Any,
    subpool_blocks: Any,
    grow_threshold: Any,
    ranges: Any = None,
    exclude: Any = None,
) -> ControlBlock:
    """Validate the constructor's arguments (see the module docstring for the order)."""
    # Phase 1: types and parsing, in the order of the module docstring.
    if not isinstance(name, str):
        raise TypeError(f"name must be str, not {type(name).__name__}")
    legacy = first_ip is not None or last_ip is not None or netmask is not None
    if legacy and ranges is not None:
        raise PoolConfigError("ranges", "give ranges or first_ip, last_ip and netmask, not both")
    if not legacy and ranges is None:
        raise PoolConfigError("ranges", "give ranges, or first_ip, last_ip and netmask")
    family, first, last, prefix = 4, 0, 0, None
    items: list[tuple[int, int, int]] = []
    if legacy:
        family, first = _legacy_ip(first_ip, "first_ip")
        last_family, last = _legacy_ip(last_ip, "last_ip")
        if family != last_family:
            raise PoolConfigError("first_ip", f"first_ip is IPv{family}, last_ip is IPv{last_family}")
        prefix = parse_netmask(netmask, family)
    else:
        items = parse_ranges(ranges)
    exclusions = parse_exclusions(exclude)
    low, high = _parse_ports(ports)
    initial = _parse_count(initial_blocks, "initial_blocks")
    maximum = _parse_count(max_blocks, "max_blocks")
    subpool = _parse_count(subpool_blocks, "subpool_blocks", optional=True)
    threshold = _parse_count(grow_threshold, "grow_threshold")
    assert initial is not None and maximum is not None and threshold is not None

    # Phase 2: ranges, in the same order.
    if not name:
        raise PoolConfigError("name", "must not be empty")
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise PoolConfigError("ports", f"({low}, {high}) is outside 1..65535")
    if low > high:
        raise PoolConfigError("ports", f"({low}, {high}) is reversed")
    if initial < 1:
        raise PoolConfigError("initial_blocks", f"{initial} is less than 1")
    if initial > MAX_SUBPOOL_BLOCKS:
        raise PoolConfigError("initial_blocks", f"{initial} is above {MAX_SUBPOOL_BLOCKS}")
    if maximum < initial:
        raise PoolConfigError("max_blocks", f"{maximum} is less than initial_blocks")
    if subpool is not None and subpool < 1:
        raise PoolConfigError("subpool_blocks", f"{subpool} is less than 1")
    if subpool is not None and subpool > MAX_SUBPOOL_BLOCKS:
        raise PoolConfigError("subpool_blocks", f"{subpool} is above {MAX_SUBPOOL_BLOCKS}")
    if threshold < 0:
        raise PoolConfigError("grow_threshold", f"{threshold} is less than 0")

    # Phase 3: relations; then the exclusions and the size of the space (space.py).
    if prefix is not None:
        space = address_space(family, [_legacy_range(family, first, last, prefix)], exclusions, (low, high), "first_ip")
    else:
        family, normalised = normalise_ranges(items)
        space = address_space(family, normalised, exclusions, (low, high))
        first, last = normalised[0][0], normalised[-1][1]

    return ControlBlock(
        name=name,
        first_ip=first,
        last_ip=last,
        prefix=prefix,
        ports=(low, high),
        initial_blocks=initial,
        max_blocks=min(maximum, _U64_MAX),
        subpool_blocks=initial if subpool is None else subpool,
        grow_threshold=min(threshold, _U64_MAX),
        space=space,
    )


def _legacy_range(family: int, first: int, last: int, prefix: int) -> tuple[int, int]:
    """The usable addresses of ``first .. last`` in their ``/prefix`` network (the legacy relations)."""
    text = ip_text(first, family)
    if first > last:
        raise PoolConfigError("last_ip", f"{ip_text(last, family)} is below first_ip {text}")
    bits = 32 if family == 4 else 128
    if first >> (bits - prefix) != last >> (bits - prefix):
        raise PoolConfigError("netmask", f"first_ip and last_ip are not in one /{prefix} subnet")
    base = first >> (bits - prefix) << (bits - prefix)
    network = ipaddress.IPv4Network((base, prefix)) if family == 4 else ipaddress.IPv6Network((base, prefix))
    usable_first, usable_last = usable_bounds(network)
    usable_first, usable_last = max(first, usable_first), min(last, usable_last)
    if usable_first > usable_last:
        kind = "network/broadcast" if family == 4 else "subnet-router anycast"
        raise PoolConfigError("first_ip", f"the range holds only {kind} addresses")
    return usable_first, usable_last
