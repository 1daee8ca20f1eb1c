"""A pool's registered configuration and its address space, defined once by the reference control block.

The store keeps a pool's configuration as canonical JSON (the fields of
``CONFIG_FIELDS``, in that order: IPs and the netmask dotted, ``ports`` a
two-element list, ``subpool_blocks`` the effective size). Two configurations
are the same when their canonical forms are: ``netmask=24`` and
``netmask="255.255.255.0"`` are, and so are ``subpool_blocks=None`` and
``subpool_blocks=initial_blocks``. Mapping an address index to (ip, port) goes
through ``natpool.reference.config.ControlBlock``, so the store and both pool
implementations number the addresses the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from natpool.errors import PoolConfigError
from natpool.reference.config import ControlBlock, control_block, ip_str, prefix_to_mask

__all__ = ["CONFIG_FIELDS", "config_of", "canonical_config", "control_block_of", "first_difference", "dumps", "loads"]

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
"""The fields a pool registers, in the reference model's validation order."""


def config_of(cb: ControlBlock) -> dict[str, Any]:
    """The canonical configuration of a control block (the legacy IPv4 form: the only one a store takes yet)."""
    assert cb.prefix is not None and cb.family == 4, "a store takes legacy IPv4 pools only (docs/shapes.md)"
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
    missing = [field for field in CONFIG_FIELDS if field not in config]
    if missing:
        raise PoolConfigError(missing[0], "missing from the configuration")
    return control_block(
        config["name"],
        config["first_ip"],
        config["last_ip"],
        config["netmask"],
        config["initial_blocks"],
        config["max_blocks"],
        tuple(config["ports"]) if isinstance(config["ports"], list) else config["ports"],
        config["subpool_blocks"],
        config["grow_threshold"],
    )


def canonical_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form of a pool's configuration (validated)."""
    return config_of(control_block_of(config))


def first_difference(registered: Mapping[str, Any], wanted: Mapping[str, Any]) -> str | None:
    """The first field (in ``CONFIG_FIELDS`` order) whose canonical values differ, or None."""
    return next((field for field in CONFIG_FIELDS if registered.get(field) != wanted.get(field)), None)


def dumps(config: Mapping[str, Any]) -> str:
    """The canonical JSON text stored for a configuration."""
    return json.dumps({field: config[field] for field in CONFIG_FIELDS}, separators=(",", ":"))


def loads(text: str) -> dict[str, Any]:
    """A stored configuration."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a stored configuration is not a JSON object")
    return value
