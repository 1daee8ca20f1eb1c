"""The command-line options of every ``natpool`` command: each value parsed once into a typed value, and usage errors.

A command gives argparse one of the parsers here as an option's ``type``: the option's text is parsed once, when the
command line is, into the value the command runs with (a pool's range or exclusion, a port range, an endpoint, a
number).
A text a parser rejects is a usage error naming the option, exit status 2. The rules a parser applies to the value
(:func:`at_least`, :func:`positive`, :func:`non_negative`) also check a configuration built in code, where a
violation is an :class:`OptionError` naming the option, printed the same way by :func:`usage_error`.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from natpool import shapes
from natpool.errors import PoolConfigError
from natpool.extras import MissingExtra, require

__all__ = [
    "ORDERS",
    "CommandParser",
    "Endpoint",
    "Exclusion",
    "OptionError",
    "PoolAddresses",
    "PoolRange",
    "PortRange",
    "add_exclude",
    "add_hold_down",
    "add_order",
    "at_least",
    "count_at_least",
    "endpoint_family",
    "endpoint_text",
    "non_negative",
    "parse_endpoint",
    "parse_exclusion",
    "parse_fraction",
    "parse_ip",
    "parse_listen_endpoint",
    "parse_netmask",
    "parse_non_negative",
    "parse_number",
    "parse_pool",
    "parse_pool_range",
    "parse_ports",
    "parse_positive",
    "positive",
    "require_extra",
    "usage_error",
]

ORDERS = ("fifo", "lifo", "random")
"""The pool's reuse orders (``--order``): which free block of a subpool is handed out first."""

Endpoint = tuple[str, int]
"""``(IP address, port)``: an IPv4 address, or an IPv6 one in its compressed form."""
PortRange = tuple[int, int]
"""``(low, high)``, both in 1-65535, ``low <= high``."""


class OptionError(ValueError):
    """An unusable option value or combination; ``option`` names it (``--pool``)."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"argument {option}: {reason}")
        self.option = option
        self.reason = reason


def _error_line(prog: str, message: str) -> str:
    return f"{prog}: error: {message}\n"


def usage_error(parser: argparse.ArgumentParser, error: OptionError) -> int:
    """Print ``error`` as one line naming the option; the exit status of a usage error, 2."""
    print(_error_line(parser.prog, str(error)), end="", file=sys.stderr)
    return 2


class CommandParser(argparse.ArgumentParser):
    """The parser of one ``natpool`` command; with ``brief_errors`` a usage error is one line (no usage text).

    ``natpool proxy`` and ``natpool demo`` report every bad option as one line on stderr naming it, whether
    argparse or the command's own checks (:func:`usage_error`) found it.
    """

    def __init__(self, *args: Any, brief_errors: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.brief_errors = brief_errors

    def error(self, message: str) -> NoReturn:
        if not self.brief_errors:
            super().error(message)
        self.exit(2, _error_line(self.prog, message))


def require_extra(option: str, extra: str) -> None:
    """An :class:`OptionError` for ``option`` unless the optional extra ``natpool[extra]`` is installed."""
    try:
        require(extra)
    except MissingExtra as exc:
        raise OptionError(option, str(exc)) from None


# -- rules of values (a violation is an ArgumentTypeError with the reason) ------------------------


def at_least(minimum: int, value: int) -> int:
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{value} is less than {minimum}")
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value} is not a finite number")
    return value


def positive(value: float) -> float:
    if _finite(value) <= 0:
        raise argparse.ArgumentTypeError(f"{value:g} is not positive")
    return value


def non_negative(value: float) -> float:
    if _finite(value) < 0:
        raise argparse.ArgumentTypeError(f"{value:g} is negative")
    return value


# -- parsers of option texts (argparse ``type``s) --------------------------------------------------


def count_at_least(minimum: int) -> Callable[[str], int]:
    """A parser of integers (``_`` separators allowed) of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        return at_least(minimum, value)

    parse.__name__ = "integer"
    return parse


def parse_number(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def parse_positive(text: str) -> float:
    return positive(parse_number(text))


def parse_non_negative(text: str) -> float:
    return non_negative(parse_number(text))


def parse_fraction(text: str) -> float:
    """A number in ``[0, 1)``."""
    value = parse_number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{value:g} is outside [0, 1)")
    return value


def parse_ip(text: str) -> str:
    """An IPv4 address, in its normal dotted form."""
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def parse_netmask(text: str) -> int | str:
    """A prefix length (``24``, ``/24``) as an ``int``, or a dotted netmask as given (the pool checks contiguity)."""
    prefix = text.removeprefix("/")
    if prefix.isdigit():
        if not 0 <= int(prefix) <= 32:
            raise argparse.ArgumentTypeError(f"prefix length {prefix} is outside 0..32")
        return int(prefix)
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a prefix length nor a dotted netmask") from None
    return text


def parse_ports(text: str) -> PortRange:
    """``LO-HI``, both in 1-65535, ``LO <= HI``."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port range LO-HI")
    low, high = int(match[1]), int(match[2])
    if not (1 <= low <= 65535 and 1 <= high <= 65535):
        raise argparse.ArgumentTypeError(f"{text!r} is outside 1-65535")
    if low > high:
        raise argparse.ArgumentTypeError(f"{text!r} is reversed")
    return low, high


def _endpoint(text: str, lowest_port: int) -> Endpoint:
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(ipaddress.IPv6Address(host[1:-1]))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{host!r} is not an IPv6 address in brackets") from None
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"{text!r}: an IPv6 host goes in brackets, [{host}]:{port_text}")
    else:
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{host!r} is not an IPv4 address or [IPv6 address]") from None
    port = int(port_text)
    if not lowest_port <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside {lowest_port}-65535")
    return host, port


def parse_endpoint(text: str) -> Endpoint:
    """``HOST:PORT``, the host an IPv4 address or an IPv6 one in brackets (``127.0.0.1:8080``, ``[::1]:8080``),
    port 1-65535: an address to connect to."""
    return _endpoint(text, 1)


def parse_listen_endpoint(text: str) -> Endpoint:
    """``HOST:PORT`` to listen on: port 0 is any free port."""
    return _endpoint(text, 0)


def endpoint_text(endpoint: Endpoint) -> str:
    """An endpoint as :func:`parse_endpoint` takes it: ``127.0.0.1:8080``, ``[::1]:8080``."""
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint_family(endpoint: Endpoint) -> socket.AddressFamily:
    """The socket family of an endpoint's host: ``AF_INET6`` for an IPv6 address, else ``AF_INET``."""
    return socket.AF_INET6 if ":" in endpoint[0] else socket.AF_INET


def _address(family: int, value: int) -> str:
    return str(ipaddress.IPv4Address(value) if family == 4 else ipaddress.IPv6Address(value))


@dataclass(frozen=True)
class PoolRange:
    """One ``--pool``: a CIDR block, ``FIRST-LAST`` or one address, IPv4 or IPv6 (``docs/shapes.md``, "Ranges").

    ``first`` and ``last`` bound the addresses the pool hands out of it: a CIDR block without its network and
    broadcast addresses (IPv4, /30 and shorter) or its subnet-router anycast address (IPv6, /126 and shorter).
    """

    text: str
    """As the pool takes it: ``10.0.0.0/24``, ``10.0.0.10-10.0.0.20``, ``2001:db8::1``."""
    family: int
    first: int
    last: int

    def __str__(self) -> str:
        return self.text

    def legacy_arguments(self) -> dict[str, Any]:
        """The pool's ``first_ip, last_ip, netmask`` for this range alone (IPv4): a CIDR block's network,
        broadcast and prefix; ``FIRST-LAST`` with netmask /0, which keeps every address of it; one address as a
        /32. The form a cluster store registers (``docs/shapes.md``)."""
        if "/" in self.text:
            network = ipaddress.IPv4Network(self.text)
            return {
                "first_ip": str(network.network_address),
                "last_ip": str(network.broadcast_address),
                "netmask": network.prefixlen,
            }
        prefix = 0 if "-" in self.text else 32
        return {"first_ip": _address(4, self.first), "last_ip": _address(4, self.last), "netmask": prefix}


def parse_pool_range(text: str) -> PoolRange:
    """One ``--pool``: ``FIRST-LAST`` (``10.0.0.10-10.0.0.20``), a CIDR block (``127.0.100.0/24``; host bits are
    cleared: ``10.0.0.5/24`` is ``10.0.0.0/24``) or one address, IPv4 or IPv6; the pool's own parser says why
    it refuses one."""
    item = text.strip()
    if "/" in item:
        try:
            item = str(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR block") from None
    elif "-" in item:
        first, _, last = item.partition("-")
        item = f"{first.strip()}-{last.strip()}"
    try:
        ((family, first_value, last_value),) = shapes.parse_ranges([item])
    except PoolConfigError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None
    if "-" in item:  # normalised text: 10.0.0.010 is refused above, :: forms compressed here
        item = f"{_address(family, first_value)}-{_address(family, last_value)}"
    elif "/" not in item:
        item = _address(family, first_value)
    return PoolRange(item, family, first_value, last_value)


@dataclass(frozen=True)
class Exclusion:
    """One ``--exclude``: ``ip``, ``ip:port``, ``ip:lo-hi``, ``[ipv6]:port``, ``[ipv6]:lo-hi``, ``A-B`` or a network
    (``docs/shapes.md``, "Exclusions"): addresses the pool never hands out."""

    text: str
    family: int
    first: int
    last: int
    ports: PortRange | None
    """``None``: every port of ``first..last``."""

    def __str__(self) -> str:
        return self.text

    def covers(self, family: int, ip: int, port: int) -> bool:
        if family != self.family or not self.first <= ip <= self.last:
            return False
        return self.ports is None or self.ports[0] <= port <= self.ports[1]


def parse_exclusion(text: str) -> Exclusion:
    """One ``--exclude``; the pool's own parser says why it refuses one (a port outside ``--ports``, or an item
    outside every ``--pool`` range, is found when the pool is built)."""
    try:
        ((family, first, last, low, high),) = shapes.parse_exclusions([text.strip()])
    except PoolConfigError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None
    ports = None if low is None or high is None else (low, high)
    return Exclusion(text.strip(), family, first, last, ports)


@dataclass(frozen=True)
class PoolAddresses:
    """The client NAT addresses of a pool: its ranges (``--pool``, one or more) minus its exclusions
    (``--exclude``). Whether the ranges overlap or mix families, and whether an exclusion lies in them, the
    pool checks when it is built (``PoolConfigError``, field ``ranges`` or ``exclude``)."""

    ranges: tuple[PoolRange, ...]
    exclude: tuple[Exclusion, ...] = ()

    @property
    def family(self) -> int:
        """4 or 6 (the first range's)."""
        return self.ranges[0].family

    @property
    def first_ip(self) -> str:
        """The lowest address of the ranges the pool hands out."""
        low = min(self.ranges, key=lambda r: r.first)
        return _address(low.family, low.first)

    @property
    def last_ip(self) -> str:
        """The highest address of the ranges the pool hands out."""
        high = max(self.ranges, key=lambda r: r.last)
        return _address(high.family, high.last)

    @property
    def legacy(self) -> bool:
        """One IPv4 range and no exclusion: the pool is built in the ``first_ip, last_ip, netmask`` form, the
        only one a cluster store takes yet."""
        return len(self.ranges) == 1 and self.family == 4 and not self.exclude

    @property
    def text(self) -> str:
        """As the options give it: ``10.0.0.0/24, 10.0.1.0/28 minus 10.0.0.5``."""
        text = ", ".join(r.text for r in self.ranges)
        return text + (" minus " + ", ".join(e.text for e in self.exclude) if self.exclude else "")

    def __str__(self) -> str:
        return self.text

    def pool_arguments(self) -> dict[str, Any]:
        """The pool's address arguments: ``first_ip, last_ip, netmask`` when :attr:`legacy`, else ``ranges``
        and ``exclude``."""
        if self.legacy:
            return self.ranges[0].legacy_arguments()
        return {"ranges": [r.text for r in self.ranges], "exclude": [e.text for e in self.exclude] or None}

    def _in_ranges(self, ip: str) -> tuple[int, int] | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        value = int(address)
        if any(r.family == address.version and r.first <= value <= r.last for r in self.ranges):
            return address.version, value
        return None

    def __contains__(self, ip: object) -> bool:
        """Whether ``ip`` (text) lies in a range and no exclusion takes every port of it."""
        found = self._in_ranges(ip) if isinstance(ip, str) else None
        return found is not None and not any(e.ports is None and e.covers(*found, 0) for e in self.exclude)

    def holds(self, ip: str, port: int) -> bool:
        """Whether ``(ip, port)`` lies in a range and outside every exclusion (the pool's ``ports`` aside)."""
        found = self._in_ranges(ip)
        return found is not None and not any(e.covers(*found, port) for e in self.exclude)


def parse_pool(text: str) -> PoolAddresses:
    """The addresses of one ``--pool`` (:func:`parse_pool_range`), without exclusions."""
    return PoolAddresses((parse_pool_range(text),))


# -- options of the pool's policies, one definition for every command that offers them -----------


def add_order(group: Any, default: str = "fifo") -> None:
    """``--order``: the pool's ``order``, on ``group`` (a parser or an argument group)."""
    group.add_argument(
        "--order",
        choices=ORDERS,
        default=default,
        help="which free block of a subpool the pool reuses first: the one freed longest ago (fifo), the one freed "
        "last (lifo), or one drawn by the pool's seeded generator (random)",
    )


def add_exclude(group: Any) -> None:
    """``--exclude ITEM`` (repeated): the pool's ``exclude``, a list of :class:`Exclusion`, on ``group``."""
    group.add_argument(
        "--exclude",
        type=parse_exclusion,
        action="append",
        metavar="ITEM",
        help="addresses of the pool never handed out (repeat for more): IP, IP:PORT, IP:LO-HI, [IPv6]:PORT, "
        "[IPv6]:LO-HI, FIRST-LAST or a CIDR block (docs/shapes.md)",
    )


def add_hold_down(group: Any, default: float, help: str) -> None:
    """``--hold-down SECONDS``: the pool's ``hold_down``, a number of seconds of at least 0, on ``group``."""
    group.add_argument("--hold-down", type=parse_non_negative, default=default, metavar="SECONDS", help=help)
