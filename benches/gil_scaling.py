"""Do batches scale across Python threads? (`make scaling`)

`Pool.allocate_many` and `Pool.free_many` release the GIL around the core's
work; `allocate()` and `free()` do not (an O(1) call is cheaper than the GIL
handoff). This script runs the same total work on 1 and on 2 threads and
reports the aggregate throughput of 2 threads as a ratio of 1 thread's, for
batches and, as the contrast, for single calls. 1 and 2 threads alternate
within one run and the median ratio is reported, since the machine is noisy.

A benchmark, not a test: it never fails on its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

import natpool

Work = Callable[[natpool.Pool, int, int], None]


def batches(pool: natpool.Pool, rounds: int, batch: int) -> None:
    for _ in range(rounds):
        pool.free_many(pool.allocate_many(batch))


def pairs(pool: natpool.Pool, rounds: int, batch: int) -> None:
    allocate, free = pool.allocate, pool.free
    for _ in range(rounds * batch):
        free(allocate())


def new_pool(threads: int, batch: int) -> natpool.Pool:
    # Every thread's batch fits in the initial subpool: the run measures
    # allocation and freeing, not subpool creation.
    blocks = threads * batch
    return natpool.Pool("scaling", "198.51.100.1", "198.51.100.254", 24, blocks, blocks)


def run(work: Work, threads: int, rounds: int, batch: int) -> float:
    """Leases per second, all threads together, for `rounds` per thread."""
    pool = new_pool(threads, batch)
    start = threading.Barrier(threads + 1)

    def thread_body() -> None:
        start.wait()
        work(pool, rounds, batch)

    workers = [threading.Thread(target=thread_body) for _ in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    assert len(pool) == 0
    return threads * rounds * batch / elapsed


def measure(work: Work, rounds: int, batch: int, repeats: int) -> dict[str, float | list[float]]:
    one: list[float] = []
    two: list[float] = []
    for _ in range(repeats):
        one.append(run(work, 1, rounds, batch))
        two.append(run(work, 2, rounds, batch))
    ratios = [b / a for a, b in zip(one, two, strict=True)]
    return {
        "one_thread_per_s": statistics.median(one),
        "two_threads_per_s": statistics.median(two),
        "ratio": statistics.median(ratios),
        "ratios": ratios,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024, help="leases per allocate_many call")
    parser.add_argument("--rounds", type=int, default=400, help="batches per thread per measurement")
    parser.add_argument("--repeats", type=int, default=7, help="alternating 1-/2-thread measurements")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    results = {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "batch": args.batch,
        "allocate_many+free_many": measure(batches, args.rounds, args.batch, args.repeats),
        "allocate()+free()": measure(pairs, max(1, args.rounds // 4), args.batch, args.repeats),
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"CPython {results['python']}, {results['cpus']} CPUs, batch {args.batch}, {args.repeats} alternating runs")
    print(f"{'work':<26}{'1 thread /s':>14}{'2 threads /s':>14}{'2 vs 1':>9}  all ratios")
    for name in ("allocate_many+free_many", "allocate()+free()"):
        r = results[name]
        assert isinstance(r, dict)
        ratios = " ".join(f"{x:.2f}" for x in r["ratios"])
        print(f"{name:<26}{r['one_thread_per_s']:>14,.0f}{r['two_threads_per_s']:>14,.0f}{r['ratio']:>8.2f}x  {ratios}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
