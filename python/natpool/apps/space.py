"""A pool's address space as the applications read it from ``intervals()`` (``docs/shapes.md``, "Runs").

A record of ``intervals()`` never spans a gap (between two ranges, or an exclusion), and its addresses are
consecutive: ip-major, port-minor within the pool's ``ports``, ``(ip, high)`` followed by ``(ip + 1, low)``. So
the space is the records joined where one's last address is followed by the next's first (:func:`runs`), and a
record's addresses can be walked one by one (:func:`addresses`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from natpool.records import Interval

__all__ = ["addresses", "following", "ip_spans", "runs"]

Run = tuple[str, int, str, int]
"""``(first_ip, first_port, last_ip, last_port)``."""


def following(ip: str, port: int, ports: tuple[int, int]) -> tuple[str, int] | None:
    """The address after ``(ip, port)`` in a pool of ``ports`` (``None`` after the family's last address)."""
    if port < ports[1]:
        return ip, port + 1
    try:
        return str(ipaddress.ip_address(ip) + 1), ports[0]
    except ValueError:
        return None


def runs(records: Iterable[Interval], ports: tuple[int, int]) -> list[Run]:
    """The maximal runs of consecutive addresses of ``records`` (a pool's ``intervals()``): the ranges minus the
    exclusions, whoever owns them."""
    joined: list[Run] = []
    for record in records:
        if joined and following(joined[-1][2], joined[-1][3], ports) == (record.first_ip, record.first_port):
            joined[-1] = (joined[-1][0], joined[-1][1], record.last_ip, record.last_port)
        else:
            joined.append((record.first_ip, record.first_port, record.last_ip, record.last_port))
    return joined


def addresses(record: Interval, ports: tuple[int, int]) -> Iterator[tuple[str, int]]:
    """The addresses of one record of ``intervals()``, in order."""
    low, high = ports
    ip, port = ipaddress.ip_address(record.first_ip), record.first_port
    text = str(ip)
    yield text, port
    for _ in range(record.count - 1):
        if port < high:
            port += 1
        else:
            ip, port = ip + 1, low
            text = str(ip)
        yield text, port


def ip_spans(records: Iterable[Interval]) -> list[tuple[int, int]]:
    """The IPs of ``records`` as ascending spans ``(first, last)`` of integers, apart from each other (an IP split
    by an exclusion of some of its ports is one IP)."""
    spans: list[tuple[int, int]] = []
    for record in records:
        first, last = int(ipaddress.ip_address(record.first_ip)), int(ipaddress.ip_address(record.last_ip))
        if spans and first <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(last, spans[-1][1]))
        else:
            spans.append((first, last))
    return spans
