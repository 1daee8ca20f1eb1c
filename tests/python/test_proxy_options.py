"""Parsing the proxy's option values (the command-line tests check the exit status and the message)."""

from __future__ import annotations

import pytest
from natpool.apps.proxy.options import OptionError, PoolSpec, ProxyConfig, parse_endpoint, parse_pool, parse_ports


def test_a_cidr_block_is_its_whole_subnet() -> None:
    assert parse_pool("127.0.100.0/24") == PoolSpec("127.0.100.0", "127.0.100.255", 24)
    assert parse_pool("10.1.2.3/32") == PoolSpec("10.1.2.3", "10.1.2.3", 32)


def test_a_range_keeps_every_address_in_it() -> None:
    assert parse_pool("10.0.0.10-10.0.0.20") == PoolSpec("10.0.0.10", "10.0.0.20", 0)
    assert parse_pool("10.0.0.7-10.0.0.7") == PoolSpec("10.0.0.7", "10.0.0.7", 0)
    for text, count in [("10.0.0.1-10.0.0.3", 3), ("10.0.0.255-10.0.1.0", 2), ("10.0.0.0-10.0.0.255", 256)]:
        spec = parse_pool(text)
        pool = ProxyConfig(listen=("127.0.0.1", 0), backends=(("127.0.0.1", 1),), pool=spec, ports=(1, 1)).check()
        assert pool.address_count == count  # no address of the range is left out


def test_a_cidr_block_leaves_out_its_network_and_broadcast_addresses() -> None:
    spec = parse_pool("10.0.0.0/24")
    pool = ProxyConfig(listen=("127.0.0.1", 0), backends=(("127.0.0.1", 1),), pool=spec, ports=(1, 1)).check()
    assert pool.address_count == 254 and spec.text == "10.0.0.0/24"


@pytest.mark.parametrize("text", ["", "10.0.0.1", "10.0.0.1-", "a-b", "10.0.0.2-10.0.0.1", "10.0.0.0/40", "x/8"])
def test_unparsable_pools_name_the_option(text: str) -> None:
    with pytest.raises(OptionError) as raised:
        parse_pool(text)
    assert raised.value.option == "--pool"


def test_endpoints_and_port_ranges() -> None:
    assert parse_endpoint("127.0.0.1:8080", "--backend") == ("127.0.0.1", 8080)
    assert parse_endpoint("0.0.0.0:0", "--listen", allow_port_zero=True) == ("0.0.0.0", 0)
    assert parse_ports(" 1024 - 2047 ") == (1024, 2047)
    for text in ("127.0.0.1:0", "[::1]:80", "127.0.0.1:-1", ":80"):
        with pytest.raises(OptionError):
            parse_endpoint(text, "--backend")
    for text in ("0-1", "2-1", "1-65536", "80"):
        with pytest.raises(OptionError):
            parse_ports(text)
