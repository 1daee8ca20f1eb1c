"""One running proxy from start to exit: listen, serve until a signal, drain, close the pool (leave the store).

``natpool proxy`` runs :func:`serve` in its own process; with ``--workers N`` each worker process runs it
(:mod:`~natpool.apps.proxy.worker`) on a listening socket of its own bound with ``SO_REUSEPORT``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from natpool.apps.models import PoolLike
from natpool.apps.proxy.config import ProxyConfig
from natpool.apps.proxy.journal import LeaseJournal
from natpool.errors import StoreError

if TYPE_CHECKING:
    from natpool.apps.proxy.admin import Admin
    from natpool.apps.proxy.server import Proxy

__all__ = ["STOP_SIGNALS", "exit_status", "leave", "serve"]

log = logging.getLogger("natpool.proxy")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""The signals that drain and stop a proxy."""


def leave(pool: PoolLike) -> None:
    """Close ``pool``: a member of a cluster store returns the ranges of its idle subpools and leaves.

    A store that fails now is logged: the member's claims then lapse after ``claim_ttl`` like a dead member's, and
    their ranges are held ``reclaim_delay`` before anyone claims them again; nothing else is lost.
    """
    member = pool.member
    try:
        pool.close()
    except StoreError as exc:
        log.warning("could not leave the cluster store as %s (%s): its claims lapse on their own", member, exc)
        return
    if member is not None:
        log.info("left the cluster store as member %s: the ranges of its subpools returned", member)


def exit_status(proxy: Proxy) -> int:
    """0 when the proxy's pool has no live lease left after the stop (and its state was written to ``--state``,
    if it has one), else 1."""
    return 0 if len(proxy.pool) == 0 and proxy.state_saved is not False else 1


async def serve(
    config: ProxyConfig,
    ready: Callable[[Proxy, Admin | None], None] | None = None,
    *,
    pool: PoolLike | None = None,
    listener: socket.socket | None = None,
    stop: asyncio.Event | None = None,
    journal: LeaseJournal | None = None,
) -> Proxy:
    """Run the proxy (and its endpoint) until SIGTERM or SIGINT, or until ``stop`` is set; then drain, stop and
    close the pool (:func:`leave`). Returns the stopped proxy.

    ``pool`` (default: the one ``config`` builds), ``listener`` (default: a socket on ``config.listen``) and
    ``journal`` go to the :class:`~natpool.apps.proxy.server.Proxy`; ``ready`` is called once it listens.
    """
    from natpool.apps.proxy.server import Proxy

    proxy = Proxy(config, pool, journal)
    admin = None
    if config.metrics is not None:
        from natpool.apps.proxy.admin import Admin

        admin = Admin(proxy, config.metrics)
    stopping = asyncio.Event() if stop is None else stop
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(proxy.events.asyncio_handler)

    def on_signal(sig: signal.Signals) -> None:
        log.info("signal received (%s): stopping", sig.name)
        stopping.set()

    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await proxy.start(listener)
        if admin is not None:
            await admin.start()
        if ready is not None:
            ready(proxy, admin)
        await stopping.wait()
        await proxy.stop()
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        if admin is not None:
            await admin.stop()
        leave(proxy.pool)
    return proxy
