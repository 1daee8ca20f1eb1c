"""The demo's real servers: each answers with the peer address it saw, then the bytes asked for, and closes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import NamedTuple

from natpool.apps.listener import bound_address, close_server
from natpool.apps.reuse import ReuseDistances

__all__ = ["Answer", "DemoBackend", "Peer", "parse_answer"]

Owner = Callable[[str, int], str]
"""Who holds a peer address, as ``ip:port`` of the client (the demo asks the proxy's ``lookup``), or ``-``."""


class Peer(NamedTuple):
    """A connection a backend accepted: the peer address it saw, and when (``time.monotonic()``: on Linux one
    clock for every process of the host)."""

    ip: str
    port: int
    at: float


class Answer:
    """What a backend answered: the peer address it saw, its index, the owner of that address, the token."""

    __slots__ = ("backend", "owner", "peer_ip", "peer_port", "token")

    def __init__(self, peer_ip: str, peer_port: int, backend: int, owner: str, token: str) -> None:
        self.peer_ip, self.peer_port, self.backend, self.owner, self.token = peer_ip, peer_port, backend, owner, token


def parse_answer(line: bytes) -> Answer:
    """Parse the backend's first line, ``PEER_IP PEER_PORT BACKEND OWNER TOKEN``; ``ValueError`` if malformed."""
    ip, port, backend, owner, token = line.decode().split()
    return Answer(ip, int(port), int(backend), owner, token)


class DemoBackend:
    """One of the demo's servers: reads ``TOKEN SIZE\\n``, writes its answer line and ``SIZE`` bytes, closes first."""

    def __init__(self, index: int, owner: Owner) -> None:
        self.index = index
        self.owner = owner
        self.peers: list[Peer] = []
        """Every peer address this backend saw, in order, with the time it saw it."""
        self.reuse = ReuseDistances()
        """The reuse distance of its peer addresses: its connections between one's close and that peer's next."""
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self._server)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (port 0: any free port; a stopped backend can return on its port)."""
        self._server = await asyncio.start_server(self._handle, host, port, backlog=1024)

    async def stop(self) -> None:
        await close_server(self._server)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ip, port = writer.get_extra_info("peername")[:2]
        self.peers.append(Peer(ip, port, time.monotonic()))
        self.reuse.allocated((ip, port))
        try:
            token, size = (await reader.readline()).decode().split()
            writer.write(f"{ip} {port} {self.index} {self.owner(ip, port)} {token}\n".encode())
            writer.write(b"x" * int(size))
            await writer.drain()
        except (OSError, ValueError):
            pass
        finally:
            writer.close()  # first: the proxy frees the address after this
            self.reuse.freed((ip, port))
            with contextlib.suppress(OSError):
                await writer.wait_closed()
