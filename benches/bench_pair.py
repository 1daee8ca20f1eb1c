"""One allocate() + free() pair (with each of the pool's reuse orders and a hold-down too), allocate_many(n) +
free_many per batch, lookup hit and miss.

Each case runs with natpool, the reference model, the deque free list and (where a call
shape exists) the PyO3 floor: ``floor.noop()`` takes the place of each call. The pair runs on
``floor+lease`` too: ``floor.lease()`` (a ``Lease`` object made as ``allocate()`` makes one, with
no allocation) in place of ``allocate()``, ``floor.noop`` of ``free()``: the calls and the
``Lease`` object's life, without the core's pair.

asv times a benchmark that has a ``setup`` one call per sample, so each call here runs
``OPS`` operations in a loop (the same loop for every implementation; the floor shows what
the loop and the calls cost) and the report divides by ``OPS``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

from benches.baselines import IMPLEMENTATIONS, make_deque, make_floor, make_pool

#: Blocks of the pools these cases use (one resident subpool).
BLOCKS = 65536
#: Operations (pairs, lookups; leases in a batch case) per timed call.
OPS = 8192
#: The pool's policies ``PolicyPair`` measures: each reuse order, and FIFO with a hold-down of ``HOLD_DOWN``.
POLICIES = ["fifo", "lifo", "random", "fifo+hold"]
#: The hold of ``fifo+hold``, seconds: at a few hundred ns a pair, some hundreds of addresses are held at once,
#: within the resident subpool (no subpool is created): the case measures the holds themselves.
HOLD_DOWN = 100e-6


def _pool(implementation: str) -> Any:
    if implementation == "deque":
        return make_deque(BLOCKS)
    if implementation == "floor":
        floor = make_floor()
        return SimpleNamespace(allocate=floor.noop, free=floor.noop, lookup=floor.noop)
    if implementation == "floor+lease":
        floor = make_floor(leases=True)
        return SimpleNamespace(allocate=floor.lease, free=floor.noop)
    pool: Any = make_pool(implementation, initial_blocks=BLOCKS)
    pool.free(pool.allocate())  # the memory pool exists before timing starts
    return pool


class Pair:
    """``free(allocate())``: one lease taken and given back."""

    params: ClassVar[Any] = [*IMPLEMENTATIONS, "floor+lease"]
    param_names: ClassVar[list[str]] = ["implementation"]

    def setup(self, implementation: str) -> None:
        pool = _pool(implementation)
        self.allocate: Callable[[], Any] = pool.allocate
        self.free: Callable[[Any], None] = pool.free

    def time_allocate_free(self, implementation: str) -> None:
        allocate, free = self.allocate, self.free
        for _ in range(OPS):
            free(allocate())


class PolicyPair(Pair):
    """``Pair`` on natpool in each reuse order and in FIFO order with a hold-down (``POLICIES``): what each policy
    costs against the default order's pair (fifo) of the same run."""

    params: ClassVar[Any] = POLICIES
    param_names: ClassVar[list[str]] = ["policy"]

    def setup(self, implementation: str) -> None:
        """``implementation``: the policy, one of ``POLICIES``."""
        order, hold = implementation.removesuffix("+hold"), implementation.endswith("+hold")
        hold_down = HOLD_DOWN if hold else 0.0
        pool: Any = make_pool("natpool", initial_blocks=BLOCKS, order=order, seed=1, hold_down=hold_down)
        pool.free(pool.allocate())  # the memory pool exists before timing starts
        self.allocate = pool.allocate
        self.free = pool.free


class Batch:
    """``free_many(allocate_many(n))``, OPS leases per call in batches of n."""

    params: ClassVar[Any] = (["natpool", "reference", "deque"], [64, 1024])
    param_names: ClassVar[list[str]] = ["implementation", "n"]

    def setup(self, implementation: str, n: int) -> None:
        pool = _pool(implementation)
        self.allocate_many: Callable[[int], list[Any]] = pool.allocate_many
        self.free_many: Callable[[list[Any]], None] = pool.free_many

    def time_allocate_many_free_many(self, implementation: str, n: int) -> None:
        allocate_many, free_many = self.allocate_many, self.free_many
        for _ in range(OPS // n):
            free_many(allocate_many(n))


class Lookup:
    """``lookup(ip, port)`` of a live lease (hit) and of a free address (miss), ip as str."""

    params: ClassVar[Any] = IMPLEMENTATIONS
    param_names: ClassVar[list[str]] = ["implementation"]

    def setup(self, implementation: str) -> None:
        pool = _pool(implementation)
        self.lookup: Callable[[str, int], Any] = pool.lookup
        self.leases = [pool.allocate(data=i) for i in range(4096)] if implementation != "floor" else []
        self.ip, self.hit_port, self.miss_port = "10.0.0.1", 1024 + 2048, 1024 + 8192
        if implementation != "floor":
            assert pool.lookup(self.ip, self.hit_port) is not None
            assert pool.lookup(self.ip, self.miss_port) is None

    def time_lookup_hit(self, implementation: str) -> None:
        lookup, ip, port = self.lookup, self.ip, self.hit_port
        for _ in range(OPS):
            lookup(ip, port)

    def time_lookup_miss(self, implementation: str) -> None:
        lookup, ip, port = self.lookup, self.ip, self.miss_port
        for _ in range(OPS):
            lookup(ip, port)
