"""A pool's registered configuration and its address space, defined once by the reference control block.

The store keeps a pool's configuration as canonical JSON. A legacy IPv4 pool
without exclusions keeps the fields of ``CONFIG_FIELDS``, in that order (IPs
and the netmask dotted, ``ports`` a two-element list, ``subpool_blocks`` the
effective size): byte for byte what stores held before pools had shapes. Any
other pool (``ranges``, ``exclude``, IPv6: ``docs/shapes.md``) keeps the fields
of ``SHAPED_FIELDS`` instead: ``ranges`` the normalised ranges as
``[first, last]`` text pairs (sorted, touching ones merged, usable addresses),
and ``exclude`` the canonical exclusions: the space's excluded runs (each
maximal run of the ranges' (ip, port) pairs that the space leaves out), each
as the fewest items of ``exclude``'s syntax (``ip:low-high`` or
``[ip]:low-high`` for part of an IP's ports, ``ip`` or ``first-last`` for whole
IPs), in address order. So two pools with the same normalised ranges and the
same address space register the same configuration however their exclusions
were written (``"10.0.0.0/30"`` or four addresses; overlapping items).

Two configurations are the same when their canonical forms are:
``netmask=24`` and ``netmask="255.255.255.0"`` are, and so are
``subpool_blocks=None`` and ``subpool_blocks=initial_blocks``. A legacy IPv4
pool and a pool of ``ranges`` differ (``first_ip``), even over the same
addresses. Mapping an address index to (ip, port) goes through
``natpool.reference.config.ControlBlock``, so the store and both pool
implementations number the addresses the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from natpool.errors import PoolConfigError
from natpool.reference.config import ControlBlock, control_block, ip_str, prefix_to_mask
from natpool.shapes import address_text

__all__ = [
    "CONFIG_FIELDS",
    "SHAPED_FIELDS",
    "STORE_ADDRESSES",
    "config_of",
    "canonical_config",
    "control_block_of",
    "first_difference",
    "dumps",
    "loads",
]

STORE_ADDRESSES = 2**63 - 1
"""The most addresses a store-backed pool may have (the ledger counts in 64-bit integers)."""

CONFIG_FIELDS = (
    "name",
    "first_ip",
    "last_ip",
    "netmask",
    "ports",
    "initial_blocks",
    "max_blocks",
    "subpool_blocks",
    "grow_threshold",
)
"""The fields a legacy IPv4 pool without exclusions registers, in the reference model's validation order."""

SHAPED_FIELDS = (
    "name",
    "ranges",
    "exclude",
    "ports",
    "initial_blocks",
    "max_blocks",
    "subpool_blocks",
    "grow_threshold",
)
"""The fields any other pool registers (ranges, exclusions, IPv6)."""

_ALL_FIELDS = CONFIG_FIELDS[:4] + SHAPED_FIELDS[1:3] + CONFIG_FIELDS[4:]
"""Every field, in the order ``first_difference`` compares them."""


def _is_legacy(cb: ControlBlock) -> bool:
    """Whether the pool registers the legacy form: IPv4 ``first_ip, last_ip, netmask`` without exclusions."""
    space = cb.space
    unexcluded = space.address_count == sum((last - first + 1) * space.ports_per_ip for first, last in space.ranges)
    return cb.prefix is not None and cb.family == 4 and unexcluded


def _exclusion_items(cb: ControlBlock) -> list[str]:
    """The canonical ``exclude``: each excluded run as the fewest items, in address order (module docstring)."""
    space = cb.space
    low, high = space.ports
    family = space.family

    def ports(ip: int, first: int, last: int) -> str:
        text = address_text(family, ip)
        return f"[{text}]:{first}-{last}" if family == 6 else f"{text}:{first}-{last}"

    items = []
    for first_ip, first_port, last_ip, last_port in space.excluded():
        if first_ip == last_ip and (first_port, last_port) != (low, high):
            items.append(ports(first_ip, first_port, last_port))
            continue
        if first_port != low:
            items.append(ports(first_ip, first_port, high))
            first_ip += 1
        tail = None
        if last_port != high:
            tail = ports(last_ip, low, last_port)
            last_ip -= 1
        if first_ip == last_ip:
            items.append(address_text(family, first_ip))
        elif first_ip < last_ip:
            items.append(f"{address_text(family, first_ip)}-{address_text(family, last_ip)}")
        if tail is not None:
            items.append(tail)
    return items


def config_of(cb: ControlBlock) -> dict[str, Any]:
    """The canonical configuration of a control block (see the module docstring for its two forms)."""
    if not _is_legacy(cb):
        return {
            "name": cb.name,
            "ranges": [
                [address_text(cb.family, first), address_text(cb.family, last)] for first, last in cb.space.ranges
            ],
            "exclude": _exclusion_items(cb),
            "ports": [cb.ports[0], cb.ports[1]],
            "initial_blocks": cb.initial_blocks,
            "max_blocks": cb.max_blocks,
            "subpool_blocks": cb.subpool_blocks,
            "grow_threshold": cb.grow_threshold,
        }
    assert cb.prefix is not None
    return {
        "name": cb.name,
        "first_ip": ip_str(cb.first_ip),
        "last_ip": ip_str(cb.last_ip),
        "netmask": ip_str(prefix_to_mask(cb.prefix)),
        "ports": [cb.ports[0], cb.ports[1]],
        "initial_blocks": cb.initial_blocks,
        "max_blocks": cb.max_blocks,
        "subpool_blocks": cb.subpool_blocks,
        "grow_threshold": cb.grow_threshold,
    }


def control_block_of(config: Mapping[str, Any]) -> ControlBlock:
    """Validate a configuration (the pool constructor's rules and errors) into its control block."""
    shaped = "ranges" in config or "exclude" in config
    fields = SHAPED_FIELDS if "ranges" in config else CONFIG_FIELDS
    missing = [field for field in fields if field not in config and not (field == "exclude" and shaped)]
    if missing:
        raise PoolConfigError(missing[0], "missing from the configuration")
    ranges = config.get("ranges")
    return control_block(
        config["name"],
        config.get("first_ip"),
        config.get("last_ip"),
        config.get("netmask"),
        config["initial_blocks"],
        config["max_blocks"],
        tuple(config["ports"]) if isinstance(config["ports"], list) else config["ports"],
        config["subpool_blocks"],
        config["grow_threshold"],
        [tuple(item) if isinstance(item, list) else item for item in ranges] if isinstance(ranges, list) else ranges,
        config.get("exclude"),
    )


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form of a pool's configuration (validated)."""
    return config_of(control_block_of(config))


def first_difference(registered: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """The first field (``CONFIG_FIELDS`` order, ``ranges`` and ``exclude`` after ``netmask``) whose canonical
    values differ, or None."""
    return next((field for field in _ALL_FIELDS if registered.get(field) != wanted.get(field)), None)


def dumps(config: Mapping[str, Any]) -> str:
    """The canonical JSON text stored for a configuration."""
    fields = SHAPED_FIELDS if "ranges" in config else CONFIG_FIELDS
    return json.dumps({field: config[field] for field in fields}, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    """A stored configuration."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a stored configuration is not a JSON object")
    return value
