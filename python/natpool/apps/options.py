"""The command-line options of every ``natpool`` command: each value parsed once into a typed value, and usage errors.

A command gives argparse one of the parsers here as an option's ``type``: the option's text is parsed once, when the
command line is, into the value the command runs with (:class:`PoolAddresses`, a port range, an endpoint, a number).
A text a parser rejects is a usage error naming the option, exit status 2. The rules a parser applies to the value
(:func:`at_least`, :func:`positive`, :func:`non_negative`) also check a configuration built in code, where a
violation is an :class:`OptionError` naming the option, printed the same way by :func:`usage_error`.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from natpool.extras import MissingExtra, require

__all__ = [
    "ORDERS",
    "CommandParser",
    "Endpoint",
    "OptionError",
    "PoolAddresses",
    "PortRange",
    "add_hold_down",
    "add_order",
    "at_least",
    "count_at_least",
    "non_negative",
    "parse_endpoint",
    "parse_fraction",
    "parse_ip",
    "parse_listen_endpoint",
    "parse_netmask",
    "parse_non_negative",
    "parse_number",
    "parse_pool",
    "parse_ports",
    "parse_positive",
    "positive",
    "require_extra",
    "usage_error",
]

ORDERS = ("fifo", "lifo", "random")
"""The pool's reuse orders (``--order``): which free block of a subpool is handed out first."""

Endpoint = tuple[str, int]
"""``(IPv4 address, port)``."""
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
    try:
        host = str(ipaddress.IPv4Address(host))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{host!r} is not an IPv4 address") from None
    port = int(port_text)
    if not lowest_port <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside {lowest_port}-65535")
    return host, port


def parse_endpoint(text: str) -> Endpoint:
    """``HOST:PORT`` with an IPv4 host (``127.0.0.1:8080``), port 1-65535: an address to connect to."""
    return _endpoint(text, 1)


def parse_listen_endpoint(text: str) -> Endpoint:
    """``HOST:PORT`` to listen on: port 0 is any free port."""
    return _endpoint(text, 0)


@dataclass(frozen=True)
class PoolAddresses:
    """The IPv4 addresses of a client NAT pool (``--pool``): ``first_ip`` to ``last_ip``, in one subnet of ``prefix``.

    ``prefix`` is 0 for a ``FIRST-LAST`` range: the pool then keeps every address of it.
    """

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


def parse_pool(text: str) -> PoolAddresses:
    """``FIRST-LAST`` (e.g. ``10.0.0.10-10.0.0.20``) or a CIDR block (``127.0.100.0/24``).

    A CIDR block leaves out its network and broadcast addresses for /30 and shorter, as any pool does. A range
    keeps every address in it: it is given to the pool with netmask /0, whose only excluded addresses are
    0.0.0.0 and 255.255.255.255.
    """
    if "/" in text:
        try:
            network = ipaddress.IPv4Network(text.strip(), strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR block") from None
        return PoolAddresses(str(network.network_address), str(network.broadcast_address), network.prefixlen)
    first_text, sep, last_text = text.partition("-")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is neither FIRST-LAST nor a CIDR block")
    try:
        first = ipaddress.IPv4Address(first_text.strip())
        last = ipaddress.IPv4Address(last_text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range of two IPv4 addresses") from None
    if first > last:
        raise argparse.ArgumentTypeError(f"{text!r} is reversed")
    return PoolAddresses(str(first), str(last), 0)


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


def add_hold_down(group: Any, default: float, help: str) -> None:
    """``--hold-down SECONDS``: the pool's ``hold_down``, a number of seconds of at least 0, on ``group``."""
    group.add_argument("--hold-down", type=parse_non_negative, default=default, metavar="SECONDS", help=help)
