"""Helpers shared by the applications' asyncio servers: the proxy, its endpoint and the demo's backends."""

from __future__ import annotations

import asyncio
import contextlib
import socket

__all__ = ["bound_address", "close_server", "missing_ipv6_loopback"]


def bound_address(server: asyncio.Server | None) -> tuple[str, int]:
    """The address a started server listens on (the port the kernel chose for port 0)."""
    assert server is not None, "the server is not started"
    host, port = server.sockets[0].getsockname()[:2]
    return host, port


async def close_server(server: asyncio.Server | None) -> None:
    """Stop listening; wait a moment for the server to close (open connections are the caller's)."""
    if server is not None:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1.0)


def missing_ipv6_loopback() -> str | None:
    """Why nothing can listen on ``::1`` here (no IPv6, or no IPv6 loopback), or ``None`` when it can."""
    if not socket.has_ipv6:
        return "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"::1 cannot be bound ({exc.strerror or exc})"
    return None
