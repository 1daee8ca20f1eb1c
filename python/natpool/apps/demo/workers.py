"""``natpool demo --workers N``: the demo's load through ``natpool proxy --workers N``, and the lease ledger.

The backends and the clients run here, as in :func:`~natpool.apps.demo.run.run_once`; the proxy is N worker
processes on one listening address (``SO_REUSEPORT``) sharing one pool through a SQLite store in a private
temporary directory (:class:`~natpool.apps.proxy.workers.Workers`), each noting the span of every lease it
held. After the drain the ledger (:mod:`~natpool.apps.demo.ledger`) checks that no NAT address was held by two
workers at once; ranges pass between workers during the run, since a returned range is held only
``reclaim_delay`` (1 s by default here) before the next claim may take it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from natpool.apps.demo import ledger
from natpool.apps.demo.backend import DemoBackend
from natpool.apps.demo.run import DemoConfig, RunResult, drive, verify_answers
from natpool.apps.proxy import WorkerExit, Workers
from natpool.store import PoolStatus

__all__ = ["WorkersRun", "run_workers"]


@dataclass
class WorkersRun:
    """One run through N workers: the load's result, how each worker ended, the ledger, the store after."""

    workers: int
    result: RunResult
    exits: list[WorkerExit] = field(default_factory=list)
    ledger: ledger.Ledger = field(default_factory=ledger.Ledger)
    store: PoolStatus | None = None
    """The pool in the store after every worker left (``None``: it could not be read)."""

    @property
    def passed(self) -> bool:
        return self.result.passed

    def served(self) -> list[int]:
        """Connections relayed by each worker, as it counted them."""
        return [e.report.counters.relayed if e.report is not None else 0 for e in self.exits]


async def run_workers(config: DemoConfig, count: int) -> WorkersRun:
    """Run ``config``'s load through ``count`` proxy workers, check the ledger and everything else."""
    result = RunResult(source="pool", connections=config.connections)
    run = WorkersRun(count, result)
    backends = [DemoBackend(i, lambda ip, port: "-") for i in range(config.backends)]
    for backend in backends:
        await backend.start(config.loopback)
    group = Workers(
        config.proxy_config([b.address for b in backends]),
        count,
        log_level="WARNING",  # as the demo logs: its workers' lines would bury the report
        journal=True,
    )
    try:
        group.prepare()
        try:
            await group.start()
            await drive(config, group.address, result, check_owner=False)
        finally:
            run.exits = await group.stop()
            run.store = group.store_status()
    finally:
        group.close()
        for backend in backends:
            await backend.stop()
    result.per_backend = [len(b.peers) for b in backends]
    spans = [
        ledger.Held(s.ip, s.port, e.index, s.client, s.opened, s.closed)
        for e in run.exits
        if e.report is not None
        for s in e.report.spans
    ]
    seen = [ledger.Seen(*peer) for b in backends for peer in b.peers]
    run.ledger = ledger.check(spans, seen, result.answers)
    result.owner_mismatches = len(run.ledger.unmatched)
    for e in run.exits:
        if e.report is not None:
            result.allocations += e.report.counters.allocations
            result.bind_retries += e.report.counters.bind_retries
            result.exhausted += e.report.counters.exhausted
    _verify(run)
    return run


def _verify(run: WorkersRun) -> None:
    r = run.result
    verify_answers(r)
    r.failures += run.ledger.failures()
    for e in run.exits:
        if not e.ok:
            r.failures.append(f"{e.describe()}")
        elif e.report is None or e.report.stats is None or e.report.stats.live != 0:
            r.failures.append(f"worker {e.index}: leases left after its drain: {e.report and e.report.stats}")
    if run.store is None:
        r.failures.append("the store could not be read after the workers left")
    elif run.store.claimed or run.store.members:
        r.failures.append(
            f"the store still has {len(run.store.members)} member(s) and {run.store.claimed} claimed addresses "
            "after every worker left"
        )
