"""Helpers shared by the applications' asyncio servers: the proxy, its endpoint and the demo's backends."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["bound_address", "close_server"]


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
