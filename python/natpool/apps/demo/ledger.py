"""The ledger of ``natpool demo --workers N``: was any NAT address held by two workers at once?

Each worker notes the span of every lease it held (:class:`~natpool.apps.proxy.journal.LeaseJournal`): the NAT
address, the client connection, from just after ``allocate`` to just after ``free``, so a span covers every use
of the address. The backends note each peer address they saw and when. All times are ``time.monotonic()``, one
clock for every process of the host (``CLOCK_MONOTONIC`` on Linux). The ledger puts them together:

* no two spans of one address overlap, whichever workers held them (two workers holding one address at once is
  what the cluster store exists to prevent; one worker holding it twice, what the pool does);
* every connection a backend saw came from an address that a worker held at that moment (and is counted for
  that worker: the backends' view of the workers);
* every answered connection's peer address is one its worker leased for that very client.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["Held", "Ledger", "Seen", "check"]

Address = tuple[str, int]


class Held(NamedTuple):
    """A span during which ``worker`` held NAT address ``(ip, port)`` for ``client``."""

    ip: str
    port: int
    worker: int
    client: Address
    opened: float
    closed: float


class Seen(NamedTuple):
    """A backend saw a connection from ``(ip, port)`` at ``at``."""

    ip: str
    port: int
    at: float


@dataclass
class Ledger:
    """What the check found."""

    spans: int = 0
    addresses: int = 0
    """Distinct NAT addresses leased."""
    shared: int = 0
    """Addresses held by more than one worker over the run (one after the other)."""
    overlaps: list[tuple[Held, Held]] = field(default_factory=list)
    """Pairs of spans of one address at the same time."""
    unheld: list[Seen] = field(default_factory=list)
    """Connections a backend saw from an address no worker held then."""
    seen_by_worker: dict[int, int] = field(default_factory=dict)
    """The backends' connections, by the worker that held the peer address then."""
    unmatched: list[tuple[Address, Address]] = field(default_factory=list)
    """Answered connections (client, peer) whose peer address no worker leased for that client."""

    @property
    def ok(self) -> bool:
        return not (self.overlaps or self.unheld or self.unmatched)

    def failures(self) -> list[str]:
        """One line per kind of finding, with its first example."""
        lines = []
        if self.overlaps:
            a, b = self.overlaps[0]
            lines.append(
                f"{len(self.overlaps)} time(s) an address was held twice at once, e.g. {a.ip}:{a.port} by worker "
                f"{a.worker} ({a.opened:.6f}-{a.closed:.6f}) and worker {b.worker} ({b.opened:.6f}-{b.closed:.6f})"
            )
        if self.unheld:
            s = self.unheld[0]
            lines.append(
                f"{len(self.unheld)} connection(s) reached a backend from an address no worker held then, "
                f"e.g. {s.ip}:{s.port} at {s.at:.6f}"
            )
        if self.unmatched:
            client, peer = self.unmatched[0]
            lines.append(
                f"{len(self.unmatched)} answer(s) came from a NAT address not leased for their client, e.g. "
                f"{peer[0]}:{peer[1]} for {client[0]}:{client[1]}"
            )
        return lines


def check(spans: Iterable[Held], seen: Iterable[Seen], answers: Iterable[tuple[Address, Address]]) -> Ledger:
    """Put the workers' spans, the backends' observations and the clients' answers together (see the module)."""
    ledger = Ledger(seen_by_worker=defaultdict(int))
    by_address: dict[Address, list[Held]] = defaultdict(list)
    leased_for: set[tuple[Address, Address]] = set()
    for span in spans:
        ledger.spans += 1
        by_address[(span.ip, span.port)].append(span)
        leased_for.add((span.client, (span.ip, span.port)))
    ledger.addresses = len(by_address)
    starts: dict[Address, list[float]] = {}
    for address, held in by_address.items():
        held.sort(key=lambda span: span.opened)
        starts[address] = [span.opened for span in held]
        ledger.shared += len({span.worker for span in held}) > 1
        latest = held[0]  # the span that closes last among those opened so far
        for span in held[1:]:
            if span.opened < latest.closed:
                ledger.overlaps.append((latest, span))
            if span.closed > latest.closed:
                latest = span
    for observation in seen:
        address = (observation.ip, observation.port)
        held = by_address.get(address, [])
        i = bisect.bisect_right(starts.get(address, []), observation.at) - 1
        if i >= 0 and observation.at <= held[i].closed:
            ledger.seen_by_worker[held[i].worker] += 1
        else:
            ledger.unheld.append(observation)
    ledger.seen_by_worker = dict(ledger.seen_by_worker)
    ledger.unmatched = [answer for answer in answers if answer not in leased_for]
    return ledger
