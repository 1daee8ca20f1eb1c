"""The proxy's options: parsing and validating ``HOST:PORT``, ``--pool``, ``--ports`` and their combinations.

Every check here runs before anything listens. A bad value raises :class:`OptionError`, which names the
option; the command prints it on one line and exits 2.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass

import natpool
from natpool.errors import PoolConfigError
from natpool.extras import MissingExtra, require

__all__ = [
    "BALANCE",
    "SOURCES",
    "OptionError",
    "PoolSpec",
    "ProxyConfig",
    "parse_endpoint",
    "parse_pool",
    "parse_ports",
    "require_extra",
]

BALANCE = ("round-robin", "least-connections")
"""The backend selection policies (``--balance``)."""
SOURCES = ("pool", "kernel")
"""Where an upstream socket's source address comes from (``--source``): a natpool lease, or the kernel."""

Endpoint = tuple[str, int]


class OptionError(ValueError):
    """An unusable option value or combination; ``option`` names it (``--pool``)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"argument {option}: {reason}")
        self.option = option
        self.reason = reason


def parse_endpoint(text: str, option: str, *, allow_port_zero: bool = False) -> Endpoint:
    """``HOST:PORT`` with an IPv4 host (``127.0.0.1:8080``); port 0 (any free port) only for listen sockets."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise OptionError(option, f"{text!r} is not HOST:PORT")
    try:
        host = str(ipaddress.IPv4Address(host))
    except ValueError:
        raise OptionError(option, f"{host!r} is not an IPv4 address") from None
    port = int(port_text)
    if not (0 if allow_port_zero else 1) <= port <= 65535:
        raise OptionError(option, f"port {port} is outside {0 if allow_port_zero else 1}-65535")
    return host, port


@dataclass(frozen=True)
class PoolSpec:
    """The pool's addresses: ``first_ip`` to ``last_ip`` in one subnet of ``prefix`` (0 for a range)."""

    first_ip: str
    last_ip: str
    prefix: int

    @property
    def text(self) -> str:
        """As ``--pool`` takes it: ``FIRST-LAST``, or the CIDR block."""
        if self.prefix == 0:
            return f"{self.first_ip}-{self.last_ip}"
        return f"{ipaddress.IPv4Network((self.first_ip, self.prefix), strict=False)}"

    def __str__(self) -> str:
        return self.text

    def __contains__(self, ip: object) -> bool:
        """Whether ``ip`` (an IPv4 address as ``str``) lies in ``first_ip..last_ip``."""
        if not isinstance(ip, str):
            return False
        first, last = ipaddress.IPv4Address(self.first_ip), ipaddress.IPv4Address(self.last_ip)
        return first <= ipaddress.IPv4Address(ip) <= last


def parse_pool(text: str, option: str = "--pool") -> PoolSpec:
    """``FIRST-LAST`` (e.g. ``10.0.0.10-10.0.0.20``) or a CIDR block (``127.0.100.0/24``).

    A CIDR block leaves out its network and broadcast addresses for /30 and shorter, as any pool does. A range
    keeps every address in it: it is given to the pool with netmask /0, whose only excluded addresses are
    0.0.0.0 and 255.255.255.255.
    """
    if "/" in text:
        try:
            network = ipaddress.IPv4Network(text.strip(), strict=False)
        except ValueError:
            raise OptionError(option, f"{text!r} is not a CIDR block") from None
        return PoolSpec(str(network.network_address), str(network.broadcast_address), network.prefixlen)
    first_text, sep, last_text = text.partition("-")
    if not sep:
        raise OptionError(option, f"{text!r} is neither FIRST-LAST nor a CIDR block")
    try:
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address(last_text.strip())
    except ValueError:
        raise OptionError(option, f"{text!r} is not a range of two IPv4 addresses") from None
    if first > last:
        raise OptionError(option, f"{text!r} is reversed")
    return PoolSpec(str(first), str(last), 0)


def parse_ports(text: str, option: str = "--ports") -> tuple[int, int]:
    """``LO-HI``, both in 1-65535, ``LO <= HI``."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise OptionError(option, f"{text!r} is not a port range LO-HI")
    low, high = int(match[1]), int(match[2])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise OptionError(option, f"{text!r} is outside 1-65535")
    if low > high:
        raise OptionError(option, f"{text!r} is reversed")
    return low, high


def require_extra(option: str, module: str, extra: str) -> None:
    """An :class:`OptionError` for ``option`` unless the optional ``module`` is installed."""
    try:
        require(module, extra)
    except MissingExtra as exc:
        raise OptionError(option, str(exc)) from None


def positive(value: float, option: str) -> float:
    if not math.isfinite(value) or value <= 0:
        raise OptionError(option, f"{value} is not a positive number")
    return value


def non_negative(value: float, option: str) -> float:
    if not math.isfinite(value) or value < 0:
        raise OptionError(option, f"{value} is not a non-negative number")
    return value


@dataclass(frozen=True)
class ProxyConfig:
    """Everything ``natpool proxy`` runs with; :meth:`check` validates the combinations."""

    listen: Endpoint
    backends: tuple[Endpoint, ...]
    pool: PoolSpec
    ports: tuple[int, int] = (1024, 65535)
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
    name: str = "proxy"

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
        if self.initial_blocks < 1:
            raise OptionError("--initial-blocks", f"{self.initial_blocks} is less than 1")
        if self.max_blocks < self.initial_blocks:
            raise OptionError("--max-blocks", f"{self.max_blocks} is less than --initial-blocks {self.initial_blocks}")
        if self.subpool_blocks is not None and not 1 <= self.subpool_blocks <= self.max_blocks:
            raise OptionError("--subpool-blocks", f"{self.subpool_blocks} is outside 1..--max-blocks")
        if self.bind_attempts < 1:
            raise OptionError("--bind-attempts", f"{self.bind_attempts} is less than 1")
        if self.metrics is not None and self.metrics == self.listen and self.listen[1] != 0:
            raise OptionError("--metrics", "is the same address as --listen")
        if self.listen in self.backends:
            raise OptionError("--backend", "is the proxy's own --listen address")
        positive(self.connect_timeout, "--connect-timeout")
        non_negative(self.drain_timeout, "--drain-timeout")
        non_negative(self.quarantine, "--quarantine")
        non_negative(self.hold_down, "--hold-down")
        non_negative(self.down_time, "--down-time")
        return self.build_pool()
