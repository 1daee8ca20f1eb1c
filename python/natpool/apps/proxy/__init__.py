"""``natpool proxy``: a small real server load balancer built on natpool.

One idea per module: :mod:`~natpool.apps.proxy.options` (parsing and validating the options),
:mod:`~natpool.apps.proxy.backends` (selection and down-marking), :mod:`~natpool.apps.proxy.record` (a connection's
record, the lease's ``data``, and the counters), :mod:`~natpool.apps.proxy.source` (a lease or the kernel as the
upstream's source address, bind-failure quarantine), :mod:`~natpool.apps.proxy.holding` (leases kept out of use for
a while), :mod:`~natpool.apps.proxy.relay` (copying bytes both ways), :mod:`~natpool.apps.proxy.server` (the load
balancer: lease lifecycle, exhaustion, drain), :mod:`~natpool.apps.proxy.metrics` (Prometheus, optional),
:mod:`~natpool.apps.proxy.admin` (the HTTP endpoint: ``/metrics``, ``/healthz``, ``/lookup``) and
:mod:`~natpool.apps.proxy.command` (the command line).
"""

from __future__ import annotations

from natpool.apps.proxy.options import OptionError, PoolSpec, ProxyConfig
from natpool.apps.proxy.record import Connection, Counters
from natpool.apps.proxy.server import Proxy

__all__ = ["Connection", "Counters", "OptionError", "PoolSpec", "Proxy", "ProxyConfig"]
