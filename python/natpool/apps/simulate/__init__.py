"""``natpool simulate``: replay a server load balancer's connection workload on a pool.

An SLB in directed mode takes a client NAT address from the pool for every new
connection and returns it when the connection closes. The simulation replays
such a workload in simulated time and reports on it. One idea per module:
:mod:`~natpool.apps.simulate.workload` (what is replayed: the pool and the
connections' arrivals and lifetimes), :mod:`~natpool.apps.simulate.engine` (the
replay and its counts), :mod:`~natpool.apps.simulate.invariants` (the checks of a
finished run), :mod:`~natpool.apps.simulate.report` (text and JSON) and
:mod:`~natpool.apps.simulate.command` (a run, and the command line).
"""

from __future__ import annotations

from natpool.apps.simulate.command import add_parser, command, run
from natpool.apps.simulate.engine import TIMELINE_SAMPLES, Results, SimulatedConnection, Timing, simulate
from natpool.apps.simulate.invariants import check_invariants
from natpool.apps.simulate.report import Report
from natpool.apps.simulate.workload import MODELS, PoolConfig, Workload

__all__ = [
    "MODELS",
    "TIMELINE_SAMPLES",
    "SimulatedConnection",
    "PoolConfig",
    "Report",
    "Results",
    "Timing",
    "Workload",
    "add_parser",
    "check_invariants",
    "command",
    "run",
    "simulate",
]
