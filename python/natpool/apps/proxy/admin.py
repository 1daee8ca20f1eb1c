"""The proxy's HTTP endpoint (``--metrics HOST:PORT``): ``/metrics``, ``/healthz`` and ``/lookup``.

``/lookup?ip=IP&port=PORT`` is the introspection of the return path: ``pool.lookup`` tells which client
connection holds that NAT address (JSON of its record; 404 if none). ``/healthz`` answers 200 ``ok`` while
serving and 503 ``draining`` once shutdown began. A minimal HTTP/1.0 responder on asyncio, one request per
connection, so that it runs in the proxy's event loop and needs no thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

from natpool.apps.listener import bound_address, close_server
from natpool.apps.options import endpoint_text
from natpool.apps.proxy.metrics import CONTENT_TYPE, exposition
from natpool.apps.proxy.server import Proxy

__all__ = ["Admin"]

log = logging.getLogger("natpool.proxy")

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class Admin:
    """Serves the endpoint for one proxy."""

    def __init__(self, proxy: Proxy, listen: tuple[str, int]) -> None:
        self.proxy = proxy
        self.listen = listen
        self._metrics = exposition(proxy)
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        return bound_address(self._server)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, *self.listen)
        log.info("metrics, /healthz and /lookup on http://%s/", endpoint_text(self.address))

    async def stop(self) -> None:
        await close_server(self._server)

    def respond(self, method: str, target: str) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"GET only\n"
        url = urlsplit(target)
        if url.path == "/metrics":
            return 200, CONTENT_TYPE, self._metrics()
        if url.path == "/healthz":
            return (503, "text/plain", b"draining\n") if self.proxy.draining else (200, "text/plain", b"ok\n")
        if url.path == "/lookup":
            query = parse_qs(url.query)
            try:
                ip, port = query["ip"][0], int(query["port"][0])
            except (KeyError, ValueError):
                return 400, "text/plain", b"expected /lookup?ip=IP&port=PORT\n"
            try:
                record = self.proxy.lookup(ip, port)
            except ValueError:
                return 400, "text/plain", b"not an address of the pool's family\n"
            if record is None:
                return 404, "application/json", b"null\n"
            return 200, "application/json", json.dumps(record.to_json()).encode() + b"\n"
        return 404, "text/plain", b"not found\n"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, kind, body = self.respond(method, target)
            writer.write(
                f"HTTP/1.0 {status} {_REASONS[status]}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (body if method != "HEAD" else b"")
            )
            await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
