"""Relaying bytes both ways between a client and its backend until either side closes, fails or idles too long."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from natpool.apps.proxy.record import ClientConnection

__all__ = ["CLIENT", "BACKEND", "IDLE", "close", "relay"]

CHUNK = 65536

CLIENT, BACKEND, IDLE = "client", "backend", "idle"
"""What ended a relay: the client side (closed, reset, or failed to take bytes), the backend side, or idleness."""

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _pump(
    source: str, reader: asyncio.StreamReader, sink: str, writer: asyncio.StreamWriter, moved: Callable[[int], None]
) -> str:
    """Copy from ``reader`` to ``writer`` until one fails or ``reader`` ends; return the side that ended it."""
    while True:
        try:
            data = await reader.read(CHUNK)
        except OSError:
            return source
        if not data:
            return source
        moved(len(data))
        try:
            writer.write(data)
            await writer.drain()
        except OSError:
            return sink


async def relay(client: Stream, upstream: Stream, record: ClientConnection, idle_timeout: float) -> str:
    """Copy both ways until either side closes or fails, or no byte moved for ``idle_timeout`` seconds.

    Returns what ended it: :data:`CLIENT`, :data:`BACKEND` or :data:`IDLE` (both sides at once count as the
    client). The caller closes both streams. When the backend ended it, its connection's TIME_WAIT is on the
    backend's host; otherwise the proxy closes the upstream first and the TIME_WAIT of the NAT address's 4-tuple
    is on the proxy's host.
    """
    loop = asyncio.get_running_loop()
    last = loop.time()

    def up(n: int) -> None:
        nonlocal last
        last = loop.time()
        record.bytes_up += n

    def down(n: int) -> None:
        nonlocal last
        last = loop.time()
        record.bytes_down += n

    pumps = (
        asyncio.ensure_future(_pump(CLIENT, client[0], BACKEND, upstream[1], up)),
        asyncio.ensure_future(_pump(BACKEND, upstream[0], CLIENT, client[1], down)),
    )
    try:
        while (left := last + idle_timeout - loop.time()) > 0:
            done, _ = await asyncio.wait(pumps, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            if done:
                ended = {task.result() for task in done}
                return CLIENT if CLIENT in ended else BACKEND
        return IDLE
    finally:
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def close(writer: asyncio.StreamWriter, grace: float) -> None:
    """Close a stream: deliver what is still buffered for at most ``grace`` seconds, then reset it.

    Ignores a peer that is already gone. Cancelled, it resets the stream before it gives way, so that the
    socket is closed either way.
    """
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), grace)
    except TimeoutError:
        writer.transport.abort()
    except OSError:
        pass
    except BaseException:
        writer.transport.abort()
        raise
    with contextlib.suppress(OSError):
        await writer.wait_closed()  # after an abort: the socket is closed on the loop's next turn
