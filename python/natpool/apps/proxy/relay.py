"""Relaying bytes both ways between a client and its backend until either side closes."""

from __future__ import annotations

import asyncio
import contextlib

from natpool.apps.proxy.record import ClientConnection

__all__ = ["close", "relay"]

CHUNK = 65536


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: ClientConnection, up: bool) -> None:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            return
        writer.write(data)
        if up:
            record.bytes_up += len(data)
        else:
            record.bytes_down += len(data)
        await writer.drain()


async def relay(
    client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    record: ClientConnection,
) -> str:
    """Copy both ways until either side closes (or fails); return who closed first: ``client`` or ``backend``.

    The caller closes both sockets. A backend that closes first keeps its connection's TIME_WAIT on the
    backend's host; when the client closes first, the proxy closes the upstream first and the TIME_WAIT of the
    NAT address's 4-tuple is on the proxy's host.
    """
    up = asyncio.ensure_future(_pump(client[0], upstream[1], record, up=True))
    down = asyncio.ensure_future(_pump(upstream[0], client[1], record, up=False))
    try:
        done, _ = await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
    return "backend" if down in done and up not in done else "client"


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a stream and wait for it, ignoring a peer that is already gone."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
