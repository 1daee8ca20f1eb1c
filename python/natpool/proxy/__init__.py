"""``natpool proxy``: a small real server load balancer built on natpool.

One idea per module: :mod:`~natpool.proxy.options` (parsing and validating the options),
:mod:`~natpool.proxy.backends` (selection and down-marking), :mod:`~natpool.proxy.record` (a connection's
record, the lease's ``data``, and the counters), :mod:`~natpool.proxy.source` (a lease or the kernel as the
upstream's source address, bind-failure quarantine), :mod:`~natpool.proxy.holding` (leases kept out of use for a
while), :mod:`~natpool.proxy.relay` (copying bytes both ways), :mod:`~natpool.proxy.server` (the load balancer:
lease lifecycle, exhaustion, drain), :mod:`~natpool.proxy.metrics` (Prometheus, optional),
:mod:`~natpool.proxy.admin` (the HTTP endpoint: ``/metrics``, ``/healthz``, ``/lookup``) and
:mod:`~natpool.proxy.command` (the command line).
"""

from __future__ import annotations

from natpool.proxy.options import OptionError, PoolSpec, ProxyConfig
from natpool.proxy.record import Connection, Counters
from natpool.proxy.server import Proxy

__all__ = ["Connection", "Counters", "OptionError", "PoolSpec", "Proxy", "ProxyConfig"]
