"""A lease's fields as Python reads them: the IP text for every octet width, ``data`` and ``pool``.

The Rust ``Lease`` writes an IPv4 address's text itself (not through ``Ipv4Addr``'s ``Display``) and keeps
``pool`` and ``data`` as struct members; both implementations must read the same.
"""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import pytest

#: Octets at each boundary of the text's width (1, 2 and 3 digits).
OCTETS = [0, 1, 9, 10, 11, 99, 100, 101, 199, 200, 249, 250, 254, 255]


@pytest.mark.parametrize("first, second", list(itertools.product(OCTETS, repeat=2)))
def test_ip_text(impl: Any, first: int, second: int) -> None:
    for octets in ((first, second, second, first), (second, first, first, second), (first, 0, 255, second)):
        ip = ".".join(map(str, octets))
        assert str(ipaddress.IPv4Address(ip)) == ip
        pool = impl("t", ip, ip, 32, 1, 1, ports=(7, 7))
        lease = pool.allocate()
        assert type(lease.ip) is str
        assert (lease.ip, lease.address) == (ip, (ip, 7))
        assert repr(lease).startswith(f"Lease(ip='{ip}', port=7, ")


@pytest.mark.parametrize("ip", ["2001:db8::1", "::2", "fe80::1:0:0:1", "2001:db8:0:1:1:1:1:1", "::1.2.3.4"])
def test_ipv6_text(impl: Any, ip: str) -> None:
    pool = impl("t", ip, ip, 128, 1, 1, ports=(7, 7))
    lease = pool.allocate()
    text = str(ipaddress.IPv6Address(ip))
    assert (lease.ip, lease.address) == (text, (text, 7))


def test_data_and_pool_are_read_only(impl: Any) -> None:
    pool = impl("t", "10.0.0.1", "10.0.0.1", 32, 2, 2, ports=(1, 2))
    payload = object()
    with_data, without = pool.allocate(payload), pool.allocate()
    assert with_data.data is payload and without.data is None
    assert with_data.pool is pool and without.pool is pool
    for lease, name in itertools.product((with_data, without), ("data", "pool", "ip", "port", "handle")):
        with pytest.raises(AttributeError):
            setattr(lease, name, 1)
