"""The Python pair against the deque + dict free list, as a ratio measured in one run.

``python -m benches.pair_ratio`` times ``free(allocate())`` on natpool (freeing the Lease, and
freeing ``lease.handle``), the same loop on ``benches/baselines.py``'s ``DequePool`` and on the
PyO3 floor (``_Floor.noop()`` in place of each call; and ``_Floor.lease()``, a ``Lease`` made
with no allocation, in place of ``allocate()``), in rounds that run every case once in
turn within one process, and prints each case's median per pair, natpool ÷ deque (issue 13's
target: at most 0.8x) and the load average before and after. The machine is shared and
noisy: read the ratio. asv's ``bench_pair.Pair`` times the same loop for the report
(``make bench``); this is the quick check between two builds.

A benchmark, not a test: it never fails on its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from benches.baselines import make_deque, make_floor, make_pool
from benches.bench_pair import BLOCKS, OPS

#: natpool's pair at most this many times the deque pair (issue 13).
TARGET = 0.8

Loop = Callable[[int], None]


def natpool_loop(by_handle: bool) -> Loop:
    pool: Any = make_pool("natpool", initial_blocks=BLOCKS)
    pool.free(pool.allocate())  # the memory pool exists before timing starts
    allocate, free = pool.allocate, pool.free
    if by_handle:

        def run(ops: int) -> None:
            for _ in range(ops):
                free(allocate().handle)

    else:

        def run(ops: int) -> None:
            for _ in range(ops):
                free(allocate())

    return run


def deque_loop() -> Loop:
    pool = make_deque(BLOCKS)
    allocate, free = pool.allocate, pool.free

    def run(ops: int) -> None:
        for _ in range(ops):
            free(allocate())

    return run


def floor_loop(with_lease: bool) -> Loop:
    floor = make_floor(leases=with_lease)
    noop = floor.noop
    allocate = floor.lease if with_lease else noop

    def run(ops: int) -> None:
        for _ in range(ops):
            noop(allocate())

    return run


def measure(rounds: int, ops: int) -> dict[str, float]:
    """Median seconds per pair of each case over ``rounds`` rounds of ``ops`` pairs each."""
    cases = {
        "natpool": natpool_loop(by_handle=False),
        "natpool (free by handle)": natpool_loop(by_handle=True),
        "deque": deque_loop(),
        "floor": floor_loop(with_lease=False),
        "floor + Lease": floor_loop(with_lease=True),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for round_ in range(rounds):
        # Each round starts at another case, so that no case always runs first.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            start = time.perf_counter()
            cases[name](ops)
            times[name].append((time.perf_counter() - start) / ops)
    return {name: statistics.median(samples) for name, samples in times.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31, help="rounds of every case (default 31)")
    parser.add_argument("--ops", type=int, default=OPS * 4, help=f"pairs per case a round (default {OPS * 4})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    medians = measure(args.rounds, args.ops)
    load_after = os.getloadavg()
    ratio = medians["natpool"] / medians["deque"]
    if args.json:
        print(json.dumps({"seconds": medians, "ratio": ratio, "load": [load_before, load_after]}))
        return
    for name, seconds in medians.items():
        print(f"{name:26} {seconds * 1e9:7.1f} ns a pair   ÷ deque {seconds / medians['deque']:.2f}")
    verdict = "met" if ratio <= TARGET else "missed"
    print(f"natpool ÷ deque = {ratio:.2f} (target at most {TARGET}: {verdict})")
    print(f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
