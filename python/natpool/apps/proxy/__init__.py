"""``natpool proxy``: a small real server load balancer built on natpool.

One idea per module: :mod:`~natpool.apps.proxy.config` (what the proxy runs with, and the checks of its
combinations; the command line's values are parsed by :mod:`natpool.apps.options`),
:mod:`~natpool.apps.proxy.limits` (the descriptor budget: ``--max-connections``),
:mod:`~natpool.apps.proxy.acceptor` (accepting, up to the limit), :mod:`~natpool.apps.proxy.backends` (selection
and down-marking), :mod:`~natpool.apps.proxy.record` (a connection's record, the lease's ``data``, and the
counters), :mod:`~natpool.apps.proxy.lease` (the one owner of a connection's lease, which frees it with the pool's
hold-down), :mod:`~natpool.apps.proxy.source` (a lease or the kernel as the upstream's source address, bind-failure
quarantine), :mod:`~natpool.apps.proxy.relay` (copying
bytes both ways), :mod:`~natpool.apps.proxy.server` (the load balancer: a connection from accept to close,
exhaustion, drain), :mod:`~natpool.apps.proxy.metrics` (Prometheus, optional), :mod:`~natpool.apps.proxy.admin`
(the HTTP endpoint: ``/metrics``, ``/healthz``, ``/lookup``), :mod:`~natpool.apps.proxy.events` (log lines about
floods of events, rate-limited), :mod:`~natpool.apps.proxy.journal` (every lease's span, for the demo's ledger),
:mod:`~natpool.apps.proxy.service` (one proxy from start to exit: serve, drain, leave the store),
:mod:`~natpool.apps.proxy.state` (``--state``: the pool's state across restarts),
:mod:`~natpool.apps.proxy.workers` and :mod:`~natpool.apps.proxy.worker` (``--workers N``: the supervisor, and
the worker processes it starts) and :mod:`~natpool.apps.proxy.command` (the command line).
"""

from __future__ import annotations

from natpool.apps.options import OptionError, PoolAddresses
from natpool.apps.proxy.config import BALANCE, SOURCES, ProxyConfig
from natpool.apps.proxy.record import ClientConnection, Counters
from natpool.apps.proxy.server import Proxy
from natpool.apps.proxy.workers import WorkerExit, Workers, WorkersFailed

__all__ = [
    "BALANCE",
    "SOURCES",
    "ClientConnection",
    "Counters",
    "OptionError",
    "PoolAddresses",
    "Proxy",
    "ProxyConfig",
    "WorkerExit",
    "Workers",
    "WorkersFailed",
]
