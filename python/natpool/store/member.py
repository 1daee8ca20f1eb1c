"""A pool as one member of a cluster: its claims in the store, their renewal, and self-fencing.

This is the member side of ``natpool.store`` for the reference model
(``natpool.reference.Pool(…, store=…)``; the Rust core does the same, call for
call, in ``src/core/pool/cluster.rs``; ``docs/design.md``, "The cluster store",
has the summary). The pool (``natpool/reference/pool.py``) decides *when* a subpool is
created or deleted; this module does the talking to the store and keeps, per
subpool, the state of its claim:

* ``epoch``: the claim's fencing token, as the store granted it;
* ``deadline``: local monotonic time by which the claim must have been renewed.
  It is set to ``t0 + claim_ttl``, ``t0`` being the local monotonic time just
  *before* the claim or renew request was sent; the store set the claim's
  expiry to its own clock *during* the request plus ``claim_ttl``, so the local
  deadline comes first and the member stops using a range before the store
  may consider it lapsed;
* ``lost``: the store did not renew it (the claim expired there, or is not this
  member's any more);
* ``fenced``: the pool stopped allocating from it (set by the pool's own
  calls, never by the renewal thread).

The store's state is changed only by: ``join`` (construction), ``claim``
(subpool creation), ``release`` (subpool deletion, and a grant that overlaps a
subpool still held here, see ``Member.claim``), ``renew`` (the renewal thread
or ``Pool.renew()``) and ``leave`` (``Pool.close()``).

**Optional store work.** A store call that fails sets ``store_down``; one that
succeeds clears it. While it is set, the pool skips the store work that is
optional (growth at ``grow_threshold`` after a successful allocation; deleting
a subpool a free emptied), so an outage costs no time per allocation or free;
creating a subpool that an allocation needs is always tried (and raises
``StoreError`` if it fails).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from natpool.errors import NatPoolError, PoolConfigError, StoreError
from natpool.reference.config import ControlBlock
from natpool.store.protocol import Grant, Store
from natpool.store.space import config_of

__all__ = ["ClaimState", "Member", "Renewer", "Settings", "join", "settings"]

_T = TypeVar("_T")


@dataclass
class ClaimState:
    """The claim behind one subpool (see the module docstring)."""

    epoch: int
    deadline: float
    lost: bool = False
    fenced: bool = False


@dataclass(frozen=True)
class Settings:
    """The validated store arguments of a pool."""

    store: Store | str
    member: str
    claim_ttl: float
    reclaim_delay: float
    renew_interval: float
    """Seconds between renewals by the pool's thread; 0: no thread, the owner calls ``Pool.renew()``."""


def _seconds(value: Any, field: str, *, zero: bool = False) -> float:
    """A positive finite number of seconds (``zero``: 0 allowed too)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{field} must be int or float, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        kind = "a finite number of seconds, 0 or more" if zero else "a positive finite number of seconds"
        raise PoolConfigError(field, f"{value!r} is not {kind}")
    return number


def default_member() -> str:
    """``"{hostname}:{pid}"``: unique among the live processes of a cluster whose hosts have distinct names."""
    return f"{socket.gethostname()}:{os.getpid()}"


def settings(store: Any, member: Any, claim_ttl: Any, reclaim_delay: Any, renew_interval: Any) -> Settings | None:
    """Validate the store arguments, in the order store, member, claim_ttl, reclaim_delay, renew_interval.

    Each is checked for its type (``TypeError``), then its value
    (``PoolConfigError`` naming it). They are checked with or without a store;
    ``None`` is returned without one (the pool is then a plain local pool).
    """
    if store is not None and not isinstance(store, (str, Store)):
        raise TypeError(f"store must be a natpool.store.Store, a store URL or None, not {type(store).__name__}")
    if member is not None and not isinstance(member, str):
        raise TypeError(f"member must be str or None, not {type(member).__name__}")
    if member is not None and not member:
        raise PoolConfigError("member", "must not be empty")
    ttl = _seconds(claim_ttl, "claim_ttl")
    delay = _seconds(reclaim_delay, "reclaim_delay")
    interval = ttl / 3 if renew_interval is None else _seconds(renew_interval, "renew_interval", zero=True)
    if interval >= ttl:
        raise PoolConfigError("renew_interval", f"{renew_interval!r} is not below claim_ttl {claim_ttl!r}")
    if store is None:
        return None
    return Settings(store, default_member() if member is None else member, ttl, delay, interval)


def join(chosen: Settings, config: Mapping[str, Any]) -> tuple[Store, bool]:
    """Open the store (if given as a URL) and join the pool with its registered ``config``.

    Returns the store and whether it was opened here (then the pool closes it when
    it closes). Nothing else is written; a failed join closes a store opened here.
    Both implementations join through this (the Rust binding with the configuration
    it validated, in ``natpool.store.space.config_of``'s canonical form).
    """
    from natpool.store.url import open_store  # here: the engines import the reference control block

    owns_store = isinstance(chosen.store, str)
    store: Store = open_store(chosen.store) if isinstance(chosen.store, str) else chosen.store
    try:
        store.join(config["name"], chosen.member, config, ttl=chosen.claim_ttl)
    except BaseException:
        if owns_store:
            store.close()
        raise
    return store, owns_store


class Renewer:
    """A daemon thread that calls ``target.renew()`` every ``interval`` seconds until stopped.

    It holds ``target`` only weakly: once the pool that owns it is gone (dropped
    without ``close()``), the thread ends and the claims lapse. A failing renewal
    is left to the deadlines (``StoreError``), and a closed pool ends the thread.
    """

    def __init__(self, target: object, interval: float, name: str = "") -> None:
        self._target = weakref.ref(target)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"natpool-renew {name}".strip(), daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            target = self._target()
            if target is None:
                return
            try:
                target.renew()  # type: ignore[attr-defined]
            except StoreError:
                pass  # store_down is set; the claims' deadlines fence them if this goes on
            except NatPoolError:
                return  # the pool was closed
            finally:
                del target

    def stop(self) -> None:
        """Stop the thread and wait for it (unless called from it)."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join()


class Member:
    """A pool's membership of its cluster (see the module docstring)."""

    def __init__(self, cb: ControlBlock, chosen: Settings) -> None:
        """Open the store (if given as a URL) and join the pool; nothing else is written."""
        self.name = cb.name
        self.member = chosen.member
        self.claim_ttl = chosen.claim_ttl
        self.reclaim_delay = chosen.reclaim_delay
        self.renew_interval = chosen.renew_interval
        self.store_down = False
        self._lock = threading.Lock()
        """Guards ``_claims`` and the ``ClaimState`` fields against the renewal thread."""
        self._claims: dict[int, ClaimState] = {}
        """The live (not yet returned or dropped) claims of this member, by epoch."""
        self._renewer: Renewer | None = None
        self.store, self.owns_store = join(chosen, config_of(cb))

    def _call(self, method: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """One store call, keeping ``store_down`` up to date."""
        try:
            answer = method(*args, **kwargs)
        except StoreError:
            self.store_down = True
            raise
        self.store_down = False
        return answer

    # -- claims: the pool's subpool creation and deletion ------------------------------------
    def claim(self, is_free: Callable[[int, int], bool]) -> tuple[Grant, ClaimState] | None:
        """Claim a range for a new subpool; ``None`` if the cluster has nothing left.

        ``is_free(first, count)`` says whether the range is free locally. A grant
        that is not (it overlaps a subpool this member still has, whose claim
        lapsed in the store while its leases lived on, or an IP drained here) is
        returned at once, so it is held once more, and the claim is repeated. If
        the store grants a range this call already returned (its hold, shorter
        than the time between two transactions, is over: ``reclaim_delay`` near
        0), the claim gives up with ``None`` rather than loop: the store offers
        nothing else this member can use now.
        """
        returned: set[tuple[int, int]] = set()
        while True:
            t0 = time.monotonic()
            grant = self._call(
                self.store.claim, self.name, self.member, ttl=self.claim_ttl, reclaim_delay=self.reclaim_delay
            )
            if grant is None:
                return None
            if is_free(grant.first, grant.count):
                state = ClaimState(grant.epoch, t0 + self.claim_ttl)
                with self._lock:
                    self._claims[grant.epoch] = state
                return grant, state
            self._call(self.store.release, self.name, self.member, grant.epoch)
            if (grant.first, grant.count) in returned:
                return None
            returned.add((grant.first, grant.count))

    def claim_at(self, index: int, within: tuple[int, int]) -> tuple[Grant, ClaimState] | str:
        """Claim the chunk holding address ``index`` (``reserve``), clipped to ``within``: the grant and its
        state, or the store's ``TAKEN`` or ``FULL``."""
        t0 = time.monotonic()
        grant = self._call(
            self.store.claim_at,
            self.name,
            self.member,
            index,
            within=within,
            ttl=self.claim_ttl,
            reclaim_delay=self.reclaim_delay,
        )
        if isinstance(grant, str):
            return grant
        state = ClaimState(grant.epoch, t0 + self.claim_ttl)
        with self._lock:
            self._claims[grant.epoch] = state
        return grant, state

    def reclaim(self, ranges: list[tuple[int, int]]) -> list[ClaimState] | None:
        """Claim exactly ``ranges`` again after a restart (``restore``): their states in the order given, or
        ``None`` if the store refused (another member's range meets them, or the capacity)."""
        t0 = time.monotonic()
        grants = self._call(
            self.store.reclaim, self.name, self.member, ranges, ttl=self.claim_ttl, reclaim_delay=self.reclaim_delay
        )
        if grants is None:
            return None
        by_first = {grant.first: grant for grant in grants}
        states = [ClaimState(by_first[first].epoch, t0 + self.claim_ttl) for first, _ in ranges]
        with self._lock:
            for state in states:
                self._claims[state.epoch] = state
        return states

    def release(self, state: ClaimState) -> None:
        """Return a subpool's claim (``StoreError``: the claim stays, and so must the subpool)."""
        self._call(self.store.release, self.name, self.member, state.epoch)
        self.forget(state)

    def forget(self, state: ClaimState) -> None:
        """Stop tracking a claim without telling the store (a fenced subpool that is dropped)."""
        with self._lock:
            self._claims.pop(state.epoch, None)

    def lapsed(self, state: ClaimState) -> bool:
        """Whether a subpool must not serve allocations any more: fenced, lost, or past its deadline."""
        return state.fenced or state.lost or time.monotonic() >= state.deadline

    # -- renewal ------------------------------------------------------------------------
    def renew(self) -> None:
        """Renew every claim not lost (fenced ones too: while their leases live, the range stays
        theirs as long as the store agrees); mark the ones the store did not renew as lost.

        The epochs go in ascending order. The lock is held only to read the claims
        and to record the answer, never while the store is asked.
        """
        with self._lock:
            batch = sorted((s for s in self._claims.values() if not s.lost), key=lambda s: s.epoch)
        t0 = time.monotonic()
        renewed = self._call(self.store.renew, self.name, self.member, [s.epoch for s in batch], ttl=self.claim_ttl)
        with self._lock:
            for state in batch:
                if state.epoch in renewed:
                    state.deadline = max(state.deadline, t0 + self.claim_ttl)
                else:
                    state.lost = True

    def start_renewing(self) -> None:
        """Start the daemon thread that renews every ``renew_interval`` seconds (none if it is 0).

        It holds this member weakly, and the pool holds the member: a pool dropped
        without ``close()`` stops being renewed.
        """
        if self.renew_interval > 0:
            self._renewer = Renewer(self, self.renew_interval, self.name)

    def leave(self, idle: Iterable[ClaimState]) -> None:
        """Stop renewing; return the ``idle`` claims and leave the pool, in one store call.

        Claims not returned (subpools with live leases, fenced ones) are left to
        lapse and then be held ``reclaim_delay``, as for a member that died.
        """
        if self._renewer is not None:
            self._renewer.stop()
            self._renewer = None
        epochs = [state.epoch for state in idle]
        try:
            self._call(self.store.leave, self.name, self.member, epochs)
        finally:
            with self._lock:
                self._claims.clear()
            if self.owns_store:
                self.store.close()
