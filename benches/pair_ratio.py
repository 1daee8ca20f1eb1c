"""The Python pair against the deque + dict free list, and each reuse order's pair against the default's, as ratios
measured side by side in one run.

``python -m benches.pair_ratio`` times ``free(allocate())`` on natpool (freeing the Lease, and freeing
``lease.handle``), on natpool in the LIFO and random orders and with a 100 µs hold-down (``bench_pair.POLICIES``),
on ``benches/bench_store.py``'s ``StorePair`` pools (``natpool.Pool`` without a store and as the one member of a
SQLite store), the same loop on the reference model, on ``benches/baselines.py``'s ``DequePool`` and on the PyO3
floor (``_Floor.noop()`` in place of each call; and ``_Floor.lease()``, a ``Lease`` made with no allocation, in
place of ``allocate()``), in rounds that run every case once in turn within one process. Each round's ratios compare
cases timed next to each other; it prints each case's median per pair and the median of its per-round ratio to the
deque's pair and to the default order's (FIFO) pair, with the middle half of the rounds, the store-backed pair's
ratio to the same pool's without a store, and the load average before and after. With ``--out FILE`` it writes them
as JSON for the report (``make bench``): the Python pair's targets (at most 0.8x the deque's, at least 30x faster
than the reference model's, every order within 1.2x of FIFO's) and the store target (within 1.1x) are judged on
these ratios, asv's timings of the same loops, taken minutes apart, shown beside them.

A benchmark, not a test: it never fails on its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import natpool

from benches.baselines import make_deque, make_floor, make_pool
from benches.bench_pair import BLOCKS, HOLD_DOWN, OPS
from benches.bench_store import BLOCKS as STORE_BLOCKS
from benches.bench_store import CONFIG, Engine

#: natpool's pair at most this many times the deque pair (issue 13).
TARGET = 0.8

Loop = Callable[[int], None]


def pair_loop(allocate: Callable[[], Any], free: Callable[[Any], Any]) -> Loop:
    """``free(allocate())``, ``ops`` times: the loop every case times."""

    def run(ops: int) -> None:
        for _ in range(ops):
            free(allocate())

    return run


def natpool_loop(by_handle: bool = False, order: str = "fifo", hold: bool = False) -> Loop:
    pool: Any = make_pool("natpool", initial_blocks=BLOCKS, order=order, seed=1, hold_down=HOLD_DOWN if hold else 0.0)
    return pool_loop(pool, by_handle)


def pool_loop(pool: Any, by_handle: bool = False) -> Loop:
    """The pair on `pool`, a `natpool.Pool` or the reference model's."""
    pool.free(pool.allocate())  # the resident subpool exists before timing starts
    if not by_handle:
        return pair_loop(pool.allocate, pool.free)
    allocate, free = pool.allocate, pool.free

    def run(ops: int) -> None:
        for _ in range(ops):
            free(allocate().handle)

    return run


def deque_loop() -> Loop:
    pool = make_deque(BLOCKS)
    return pair_loop(pool.allocate, pool.free)


def floor_loop(with_lease: bool) -> Loop:
    floor = make_floor(leases=with_lease)
    return pair_loop(floor.lease if with_lease else floor.noop, floor.noop)


def cases(engine: Engine) -> dict[str, Loop]:
    """Every case by name; ``natpool`` is the default order's (FIFO) pair. ``store: none`` and ``store: sqlite``
    are ``bench_store.StorePair``'s pools, the second a member of ``engine``'s store."""
    arguments: dict[str, Any] = dict(CONFIG, ports=(1024, 65535), initial_blocks=STORE_BLOCKS)
    on_store = dict(arguments, store=engine.store, member="m", renew_interval=0, claim_ttl=3600.0)
    return {
        "natpool": natpool_loop(),
        "natpool (free by handle)": natpool_loop(by_handle=True),
        "lifo": natpool_loop(order="lifo"),
        "random": natpool_loop(order="random"),
        "fifo+hold": natpool_loop(hold=True),
        "deque": deque_loop(),
        "reference": pool_loop(make_pool("reference", initial_blocks=BLOCKS)),
        "floor": floor_loop(with_lease=False),
        "floor+lease": floor_loop(with_lease=True),
        "store: none": pool_loop(natpool.Pool(**arguments)),
        "store: sqlite": pool_loop(natpool.Pool(**on_store)),
    }


def spread(samples: list[float]) -> list[float]:
    """``[median, first quartile, third quartile]``."""
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return [median, q1, q3]


def measure(rounds: int, ops: int) -> dict[str, Any]:
    """Over ``rounds`` rounds of ``ops`` pairs a case: each case's median seconds per pair, and the spread of its
    per-round ratio to the deque's pair and to the default order's pair."""
    engine = Engine("sqlite")
    try:
        loops = cases(engine)
        times: dict[str, list[float]] = {name: [] for name in loops}
        names = list(loops)
        for round_ in range(rounds):
            # Each round starts at another case, so that no case always runs first.
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                start = time.perf_counter()
                loops[name](ops)
                times[name].append((time.perf_counter() - start) / ops)
    finally:
        engine.close()

    def ratios(to: str) -> dict[str, list[float]]:
        return {
            name: spread([a / b for a, b in zip(samples, times[to], strict=True)]) for name, samples in times.items()
        }

    return {
        "seconds": {name: statistics.median(samples) for name, samples in times.items()},
        "to_deque": ratios("deque"),
        "to_fifo": ratios("natpool"),
        "store_over_none": ratios("store: none")["store: sqlite"],
        "rounds": rounds,
        "ops": ops,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31, help="rounds of every case (default 31)")
    parser.add_argument("--ops", type=int, default=OPS * 4, help=f"pairs per case a round (default {OPS * 4})")
    parser.add_argument("--out", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error("--rounds: at least 2 (the ratios' quartiles)")
    load_before = os.getloadavg()
    results = measure(args.rounds, args.ops)
    results["load"] = [load_before, os.getloadavg()]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, seconds in results["seconds"].items():
        deque, fifo = results["to_deque"][name], results["to_fifo"][name]
        print(
            f"{name:26} {seconds * 1e9:7.1f} ns a pair   ÷ deque {deque[0]:.2f} ({deque[1]:.2f}-{deque[2]:.2f})"
            f"   ÷ fifo {fifo[0]:.2f} ({fifo[1]:.2f}-{fifo[2]:.2f})"
        )
    store = results["store_over_none"]
    print(f"store: sqlite ÷ store: none = {store[0]:.2f} ({store[1]:.2f}-{store[2]:.2f})")
    ratio = results["to_deque"]["natpool"][0]
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"natpool ÷ deque = {ratio:.2f} (median of the rounds; target at most {TARGET}: {verdict})")
    load = results["load"]
    print(f"load average {load[0][0]:.2f} before, {load[1][0]:.2f} after ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
