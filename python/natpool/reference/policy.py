"""The pool's policies (issue 11): hold-down and its clock, reuse order, clients.

Validation of the policy arguments runs after the control block's three phases
(``config.py``), one argument at a time in the order ``hold_down, clock, order,
seed, client_quota, paired, client_block, event_queue``, each its type
(``TypeError``) and then its value (``PoolConfigError`` naming it):

* ``hold_down``: an int or float (not bool), finite and ``>= 0``;
* ``clock``: ``None`` or a callable;
* ``order``: a str, one of ``"fifo"``, ``"lifo"``, ``"random"``;
* ``seed``: ``None`` or an int (not bool), taken mod 2**64;
* ``client_quota``: ``None`` or an int (not bool), ``>= 1`` (above 2**64 - 1 taken as that);
* ``paired``: a bool;
* ``client_block``: ``None`` or an int (not bool), from 1 to the ports of one IP;
* ``event_queue``: an int (not bool), ``>= 0`` (above 2**64 - 1 taken as that).

``None`` for ``hold_down``, ``order``, ``paired`` or ``event_queue`` means the
default (0.0, ``"fifo"``, False, 65536), as for ``ports`` and ``grow_threshold``.

The Rust binding checks them in the same order after ``Config::validate``.

**The clock.** ``clock=None`` is the monotonic clock (``time.monotonic()``; the
Rust core reads the same clock, CLOCK_MONOTONIC, through ``std::time::Instant``,
counting from its own origin: only differences matter). A callable must return
an int or float (not bool): anything else raises ``TypeError``, a value that is
not finite ``ArgumentError``; an exception the callable raises propagates. In
each case the call that read the clock changed nothing. Both implementations
read it at exactly these points, at most once per call:

* ``allocate``, ``allocate_many`` and ``lease().__enter__``: first thing after
  the arguments are checked, if any block is held, or if ``client_block`` is set
  and the call names a client;
* ``reserve``: after its ``ArgumentError`` checks (``docs/shapes.md``), if any
  block is held;
* ``free`` and ``free_many``: after the argument types (and the batch's items)
  are checked and before the leases are checked to be live, if the effective
  hold is above 0 or ``client_block`` is set;
* ``snapshot``: after the pool is found writable (no store, clients of the
  types a snapshot writes), if any block is held (each hold is written as
  ``end - now``);
* ``Pool.restore``: the restored pool's clock, after the snapshot is checked
  whole (and ``data``), if the snapshot holds a held block (each hold then
  ends at ``now + remaining``).

Nothing else reads it (``stats()``, ``lookup()`` and the rest never do).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from natpool.errors import ArgumentError, PoolConfigError
from natpool.reference.reuse import MASK64, ORDERS

__all__ = ["Policy", "policy", "parse_hold", "read_clock"]


@dataclass(frozen=True)
class Policy:
    hold_down: float
    clock: Callable[[], Any] | None
    order: str
    seed: int | None
    client_quota: int | None = None
    paired: bool = False
    client_block: int | None = None
    event_queue: int = 65536

    @property
    def tracks_clients(self) -> bool:
        """Whether the pool keeps a state per client."""
        return self.client_quota is not None or self.paired or self.client_block is not None


def _is_real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: int | float) -> float | None:
    """``value`` as a float, or None when it is not finite (or beyond a float's range)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def policy(
    hold_down: Any,
    clock: Any,
    order: Any,
    seed: Any,
    client_quota: Any = None,
    paired: Any = False,
    client_block: Any = None,
    event_queue: Any = 65536,
    *,
    ports_per_ip: int = 65535,
) -> Policy:
    """Validate the policy arguments (see the module docstring for the order)."""
    hold_down = 0.0 if hold_down is None else hold_down
    order = "fifo" if order is None else order
    paired = False if paired is None else paired
    event_queue = 65536 if event_queue is None else event_queue
    if not _is_real(hold_down):
        raise TypeError(f"hold_down must be int or float, not {type(hold_down).__name__}")
    hold = _finite(hold_down)
    if hold is None or hold < 0:
        raise PoolConfigError("hold_down", f"{hold_down!r} is not a finite number >= 0")
    if clock is not None and not callable(clock):
        raise TypeError(f"clock must be callable or None, not {type(clock).__name__}")
    if not isinstance(order, str):
        raise TypeError(f"order must be str, not {type(order).__name__}")
    if order not in ORDERS:
        raise PoolConfigError("order", f"{order!r} is not one of 'fifo', 'lifo', 'random'")
    if seed is not None and not _is_int(seed):
        raise TypeError(f"seed must be int or None, not {type(seed).__name__}")
    if client_quota is not None and not _is_int(client_quota):
        raise TypeError(f"client_quota must be int or None, not {type(client_quota).__name__}")
    if client_quota is not None and client_quota < 1:
        raise PoolConfigError("client_quota", f"{client_quota} is less than 1")
    if not isinstance(paired, bool):
        raise TypeError(f"paired must be bool, not {type(paired).__name__}")
    if client_block is not None and not _is_int(client_block):
        raise TypeError(f"client_block must be int or None, not {type(client_block).__name__}")
    if client_block is not None and not 1 <= client_block <= ports_per_ip:
        raise PoolConfigError("client_block", f"{client_block} is outside 1..{ports_per_ip} (the ports of one IP)")
    if not _is_int(event_queue):
        raise TypeError(f"event_queue must be int, not {type(event_queue).__name__}")
    if event_queue < 0:
        raise PoolConfigError("event_queue", f"{event_queue} is less than 0")
    return Policy(
        hold,
        clock,
        order,
        None if seed is None else seed & MASK64,
        None if client_quota is None else min(client_quota, MASK64),
        paired,
        client_block,
        min(event_queue, MASK64),
    )


def parse_hold(hold: Any, default: float) -> float:
    """The effective hold of a ``free``/``free_many`` call: ``hold``, or the pool's when None."""
    if hold is None:
        return default
    if not _is_real(hold):
        raise TypeError(f"hold must be int, float or None, not {type(hold).__name__}")
    seconds = _finite(hold)
    if seconds is None or seconds < 0:
        raise ArgumentError(f"hold: {hold!r} is not a finite number >= 0")
    return seconds


def read_clock(clock: Callable[[], Any] | None) -> float:
    """The clock's value now, checked (see the module docstring)."""
    value = time.monotonic() if clock is None else clock()
    if not _is_real(value):
        raise TypeError(f"clock must return int or float, not {type(value).__name__}")
    now = _finite(value)
    if now is None:
        raise ArgumentError(f"clock: returned {value!r}, not a finite number")
    return now
