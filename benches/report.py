"""Write the benchmark report: natpool beside each anchor as a ratio, one run, one machine.

Reads the newest asv results file (``.asv/results/<machine>/*.json``), criterion's estimates
(``target/criterion/<group>/<case>/new/estimates.json``, the median), the Rust memory
counts (``target/bench-memory.json``), the 2-thread cases timed in interleaved rounds
(``target/bench-threads.json``, written by ``benches/threads.rs``), the Python pairs timed in interleaved rounds
(``target/bench-pair-ratio.json``, written by ``benches/pair_ratio.py``), the Rust pair beside its protocol floor and
the anchors in interleaved rounds (``target/bench-floor.json``, written by the ignored test ``the_floor_timed`` of
``src/core/pool/floor.rs``) and, if it is there, ``natpool proxy
--workers 2`` against ``--workers 1`` (``target/bench-proxy-workers.json``, written by
``benches/proxy_workers.py``), and writes ``report.md`` and PNG charts to the output
folder. Run by ``make bench``; ``python -m benches.report --help`` for the paths.
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import platform
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

NS = 1e-9
US = 1e-6
MIB = 1 << 20
CHURN_WAVE = 65536 // 10
OPS = 8192  # operations per timed call in benches/bench_pair.py
PYTHON_PAIR_GOAL = 0.8  # issue 13: the Python pair at most this many times the deque pair (benches/pair_ratio.py)
LEASES = 1_000_000
DEQUE_ADDRESSES_24 = 254 * 64512
LOAD = Path("target")  # make bench writes /proc/loadavg here before and after the run
ADDRESSES = {"/16": 65534 * 64512, "/8": 16777214 * 64512}


POLICIES = {"fifo": "fifo (the default)", "lifo": "lifo", "random": "random", "fifo+hold": "fifo, hold-down 100 µs"}
"""The pair's policy cases (``policies/*`` in criterion, ``PolicyPair`` in asv) and their labels."""
POLICY_GOAL = 1.2
"""Issue 11: every order's and the hold-down's pair at most this many times the LIFO pair (the order before it)."""


@dataclass
class Target:
    what: str
    measured: str
    met: bool


# -- inputs ---------------------------------------------------------------------------------


def newest_results(results_dir: Path) -> Path:
    """The newest results of `asv run --python=same` (what `make bench` runs)."""
    files = list(results_dir.glob("*/*-existing-*.json"))
    if not files:
        raise SystemExit(f"no asv results under {results_dir}: run `make bench`")
    return max(files, key=lambda p: p.stat().st_mtime)


def newest_mtime(results_dir: Path) -> float:
    return newest_results(results_dir).stat().st_mtime


def asv_results(results_dir: Path) -> dict[str, dict[tuple[Any, ...], float]]:
    """``{benchmark: {params: value}}`` from the newest results file."""
    data = json.loads(newest_results(results_dir).read_text())
    columns = data["result_columns"]
    out: dict[str, dict[tuple[Any, ...], float]] = {}
    for name, row in data["results"].items():
        record = dict(zip(columns, row, strict=False))
        params = [[ast.literal_eval(v) for v in values] for values in record["params"]]
        combos = list(itertools.product(*params)) if params else [()]
        values = record["result"] or []
        out[name] = {combo: v for combo, v in zip(combos, values, strict=False) if v is not None}
    return out


def criterion(root: Path) -> dict[str, float]:
    """``{"group/case": median seconds}``."""
    out: dict[str, float] = {}
    for path in root.glob("*/*/new/estimates.json"):
        case = path.parent.parent
        out[f"{case.parent.name}/{case.name}"] = json.loads(path.read_text())["median"]["point_estimate"] * NS
    if not out:
        raise SystemExit(f"no criterion estimates under {root}: run `make bench`")
    return out


def command(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine(lock: Path) -> list[tuple[str, str]]:
    lscpu = dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in command("lscpu").splitlines())
    )
    pyo3 = re.search(r'name = "pyo3"\nversion = "([^"]+)"', lock.read_text())
    return [
        ("CPU", lscpu.get("Model name", "unknown")),
        ("cores", f"{lscpu.get('Core(s) per socket', '?')} per socket x {lscpu.get('Socket(s)', '?')} socket(s)"),
        ("threads per core", lscpu.get("Thread(s) per core", "unknown")),
        ("kernel", platform.release()),
        ("rustc", command("rustc", "--version")),
        ("CPython", platform.python_version()),
        ("PyO3", pyo3.group(1) if pyo3 else "unknown"),
        *(
            (f"load average (1, 5, 15 min) {when} the run", path.read_text().strip())
            for when, path in [("before", LOAD / "bench-load-before.txt"), ("after", LOAD / "bench-load-after.txt")]
            if path.exists()
        ),
    ]


# -- formatting -----------------------------------------------------------------------------


def t(seconds: float) -> str:
    if seconds < US:
        return f"{seconds / NS:.1f} ns"
    if seconds < 1e-3:
        return f"{seconds / US:.2f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def size(n: float) -> str:
    if abs(n) >= 1 << 30:
        return f"{n / (1 << 30):.2f} GiB"
    if abs(n) >= MIB:
        return f"{n / MIB:.1f} MiB"
    if abs(n) >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def chart(path: Path, title: str, bars: dict[str, float], unit: str, scale: float) -> None:
    """A horizontal bar chart, natpool's bars highlighted."""
    # Imported here: asv imports every module of benches/ in its own environments, which have
    # no matplotlib.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * len(bars) + 1.2))
    names = list(bars)
    values = [bars[n] / scale for n in names]
    colors = ["#c0392b" if n.startswith("natpool") else "#7f8c8d" for n in names]
    ax.barh(names, values, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title)
    for y, value in enumerate(values):
        ax.text(value, y, f" {value:.3g}", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- the report -----------------------------------------------------------------------------


def threads_interleaved(results: dict[str, Any]) -> list[str]:
    """The 2-thread cases timed in interleaved rounds (``benches/threads.rs``)."""

    def spread(name: str) -> str:
        value = results[name]
        return f"{value['median']:.2f}x ({value['q1']:.2f}-{value['q3']:.2f})"

    lines = [
        "**Interleaved rounds** (`benches/threads.rs`): the criterion cases above are timed about two seconds",
        "each, one after the other, with two new threads per sample (each starts without a home subpool), and",
        "the cores this machine gives change from one second to the next. Here",
        f"two long-lived worker threads run the three cases in turn, {results['rounds']} rounds of",
        f"{results['pairs_per_worker']:,} pairs a worker and case (the order rotated each round); each round's",
        "ratios compare cases timed next to each other. Medians, with the middle half of the rounds in brackets:",
        "",
    ]
    lines += table(
        ["case", "per pair, each thread", "2-thread ÷ 1-thread"],
        [
            ["one thread, its own pool", t(results["one_ns"] * NS), ""],
            ["2 threads, a pool each", t(results["own_ns"] * NS), spread("own_scaling")],
            ["2 threads, one shared pool", t(results["shared_ns"] * NS), spread("shared_scaling")],
        ],
    )
    lines += [
        f"A shared pool's pair takes {spread('shared_over_own')} the time of a pair on a pool of one's own in the",
        "same round: what sharing costs, apart from what the machine gives two threads.",
        "",
    ]
    return lines


def proxy_workers(results: dict[str, Any]) -> list[str]:
    """The section on ``natpool proxy --workers 2`` against ``--workers 1`` (``benches/proxy_workers.py``)."""
    per_second, cores = results["per_second"], results["cores"]
    rounds, each = len(results["rounds"]), f"{results['connections']:,} connections, {results['concurrency']} at once"
    lines = [
        "## natpool proxy: 2 workers against 1",
        "",
        f"`benches/proxy_workers.py` ({results['when']}): `natpool proxy --workers 1` and `--workers 2` side by",
        f"side on loopback, each on its own temporary SQLite store, the same load sent to one or the other in {rounds}",
        f"alternating rounds (1, 2, 2, 1, ...) of {each}, {results['payload']} bytes answered each;",
        f"the clients and the backend are asyncio protocols in the benchmark's own process. {results['cpus']} CPUs;",
        f"load average {results['load_before']} before, {results['load_after']} after. *Cores busy*: CPU time over",
        "wall time, of the proxy's workers, of the load generator and of the whole machine (the kernel's loopback",
        "work and other jobs included); what the rest leaves of the cores is what a second worker can use.",
        "",
    ]
    lines += table(
        ["", "connections/s", "cores busy: proxy", "clients + backend", "whole machine"],
        (
            [
                f"--workers {n}",
                f"{per_second[n]:,.0f}",
                *(f"{cores[n][what]:.2f}" for what in ("proxy", "load", "machine")),
            ]
            for n in ("1", "2")
        ),
    )
    lines += [f"**--workers 2 ÷ --workers 1: {results['ratio']:.2f}x** connections per second.", ""]
    return lines


def spread_text(spread: list[float], unit: str = "") -> str:
    """``[median, q1, q3]`` of per-round ratios (``benches/pair_ratio.py``) as "median (q1-q3)", the median followed
    by ``unit``."""
    return f"{spread[0]:.2f}{unit} ({spread[1]:.2f}-{spread[2]:.2f})"


def policy_section(
    side: str,
    pair: dict[str, float],
    targets: list[Target],
    clock_reads: float,
    interleaved: dict[str, list[float]] | None = None,
) -> list[str]:
    """The pair in each reuse order and with a hold-down, as ratios to the default order's (fifo) and to LIFO's (the
    order before issue 11), all of one run; a target (issue 13): each within :data:`POLICY_GOAL` of the default's,
    judged on ``interleaved`` (each policy's ``[median, q1, q3]`` of per-round ratios to fifo) when given, with what
    the two clock reads of a held pair cost on their own (``clock_reads``, a fraction of the default pair)."""
    lines = [
        "### allocate + free with each reuse order and a hold-down",
        "",
        "The hold-down case holds each freed address 100 µs: some hundreds are held at once, within the resident",
        "subpool, so it measures the holds themselves (a clock read in each call, the held queue, the releases).",
        "",
    ]
    header = ["policy", "per pair", "÷ fifo", "÷ lifo"]
    rows = [[POLICIES[k], t(v), f"{v / pair['fifo']:.2f}", f"{v / pair['lifo']:.2f}"] for k, v in pair.items()]
    if interleaved is None:
        lines += table(header, rows)
        ratio = {k: v / pair["fifo"] for k, v in pair.items()}
        how = ""
    else:
        lines += table(
            [*header, "÷ fifo, interleaved (middle half)"],
            ([*row, spread_text(interleaved[k])] for row, k in zip(rows, pair, strict=True)),
        )
        lines += [
            "*Interleaved*: `benches/pair_ratio.py`'s rounds, each case timed next to the others (see the Python",
            "pair's section); the target is judged on these, asv's ratios (its cases timed minutes apart) beside them.",
            "",
        ]
        ratio = {k: interleaved[k][0] for k in pair}
        how = " interleaved"
    worst = max(ratio, key=lambda k: ratio[k])
    apart = f" (asv, timed apart: {pair[worst] / pair['fifo']:.2f}x)" if interleaved is not None else ""
    targets.append(
        Target(
            f"{side} pair in every order and with a hold-down within {POLICY_GOAL}x the default (fifo) pair",
            f"at most {POLICIES[worst]}:{how} {ratio[worst]:.2f}x{apart}; a held pair's two clock reads alone take "
            f"{clock_reads:.2f}x the default pair's time",
            ratio[worst] <= POLICY_GOAL,
        )
    )
    return lines


SHAPED_BUILD_GOAL = 10e-3
"""Issue 12: a pool of 1,000 ranges and 10,000 exclusions built in under this many seconds."""


def shapes_section(rust: dict[str, float], mem: dict[str, float], targets: list[Target]) -> list[str]:
    """Issue 12's pool shapes: building a pool of 1,000 ranges and 10,000 exclusions, its pair against one range's,
    and an IPv6 /32's memory against an IPv4 /8's."""
    single, shaped = rust["shapes/single_range"], rust["shapes/shaped"]
    built = mem["construct_shaped_seconds"]
    v6, v4 = mem["construct_v6_32_first_allocation_bytes"], mem["construct_8_first_allocation_bytes"]
    lines = ["### Pool shapes: 1,000 ranges and 10,000 exclusions, IPv6", ""]
    lines += table(
        ["case", "measured"],
        [
            ["build (validate, number) 1,000 ranges + 10,000 exclusions, `Pool::new`", t(built)],
            ["allocate + free, one range", t(single)],
            ["allocate + free, 1,000 ranges + 10,000 exclusions", f"{t(shaped)} ({shaped / single:.2f}x)"],
            ["IPv4 /8 pool + first allocation", size(v4)],
            ["IPv6 /32 pool + first allocation", size(v6)],
        ],
    )
    targets += [
        Target(
            "A pool of 1,000 ranges and 10,000 exclusions built in under 10 ms",
            t(built),
            built < SHAPED_BUILD_GOAL,
        ),
        Target(
            "Its pair within 1.2x a single-range pool's",
            f"{shaped / single:.2f}x",
            shaped <= 1.2 * single,
        ),
        Target("An IPv6 /32 pool costs no more memory than an IPv4 /8 pool", f"{size(v6)} vs {size(v4)}", v6 <= v4),
    ]
    return lines


def floor_section(floor: dict[str, Any]) -> list[str]:
    """The pair beside its protocol floor and the anchors, timed in interleaved rounds (``src/core/pool/floor.rs``)."""
    names = {
        "floor": "natpool's protocol floor",
        "natpool": "natpool",
        "array_queue": "ArrayQueue",
        "mutex_slab": "Mutex<Slab>",
    }
    queue, mutex = floor["ns"]["array_queue"], floor["ns"]["mutex_slab"]
    return [
        "Side by side (`the_floor_timed` in `src/core/pool/floor.rs`): natpool's pair, its protocol floor",
        "and the two anchors above in turn, the order rotated each round, "
        f"{floor['rounds']} rounds of {floor['ops']:,} pairs.",
        "The floor is the pair with only the steps every pool of the scheme takes (the availability map, the",
        "pinned slot load, the free list's reservation and take, the block's state, the count, the handle",
        "and the address; the state CAS and the return), calling the pool's own functions, and none of the",
        "contract's optional features (holds and the clock, clients, clusters, homes, growth, the deletion",
        "rule, phantoms, errors). The targets on ArrayQueue and Mutex<Slab> are judged on these ratios",
        "(medians of the per-round ratios, middle half in brackets), criterion's beside them:",
        "",
        *table(
            ["case", "median", "÷ ArrayQueue", "÷ Mutex<Slab>"],
            (
                [
                    label,
                    f"{floor['ns'][name]:.1f} ns",
                    f"{floor['ns'][name] / queue:.2f}",
                    f"{floor['ns'][name] / mutex:.2f}",
                ]
                for name, label in names.items()
            ),
        ),
        f"natpool ÷ its floor, per round: {spread_text(floor['natpool_over_floor'])}. In the same rounds a read of",
        f"the monotonic clock (`Clock::Monotonic`, a pool's default) took {floor['ns']['clock_read']:.1f} ns: the two",
        f"a held pair makes come to {spread_text(floor['two_clock_reads_over_natpool'])} of natpool's pair.",
        "",
    ]


def build(
    asv: dict[str, dict[tuple[Any, ...], float]],
    rust: dict[str, float],
    mem: dict[str, float],
    threads: dict[str, Any],
    pairs: dict[str, Any],
    floor: dict[str, Any],
) -> Any:
    """Sections of the report, charts to draw and targets, from the six inputs."""
    lines: list[str] = []
    charts: list[tuple[str, str, dict[str, float], str, float]] = []
    targets: list[Target] = []

    # Rust: one thread.
    pair = {name: rust[f"pair/{name}"] for name in ["natpool", "array_queue", "mutex_slab", "sharded_slab"]}
    lines += ["## Rust core (criterion)", "", "### allocate + free, one thread", ""]
    lines += table(
        ["case", "median", "natpool ÷ case"],
        ([name, t(v), f"{pair['natpool'] / v:.2f}"] for name, v in pair.items()),
    )
    charts.append(("rust_pair.png", "Rust: allocate + free pair, one thread", pair, "ns", NS))
    lines += floor_section(floor)
    targets.append(
        Target(
            "Rust pair at most 2.0x ArrayQueue pop+push (issue 13)",
            f"interleaved {spread_text(floor['natpool_over_queue'], 'x')}; the protocol floor alone "
            f"{spread_text(floor['floor_over_queue'], 'x')} (criterion, timed apart: "
            f"{pair['natpool'] / pair['array_queue']:.2f}x)",
            floor["natpool_over_queue"][0] <= 2.0,
        )
    )
    targets.append(
        Target(
            "Rust pair faster than Mutex<Slab> insert+remove (issue 13)",
            f"interleaved {spread_text(floor['natpool_over_mutex_slab'], 'x')} its time; the floor alone "
            f"{spread_text(floor['floor_over_mutex_slab'], 'x')} "
            f"(criterion: {pair['natpool'] / pair['mutex_slab']:.2f}x)",
            floor["natpool_over_mutex_slab"][0] < 1.0,
        )
    )

    rust_policies = {name: rust[f"policies/{name.replace('+', '_')}"] for name in POLICIES}
    lines += policy_section("Rust", rust_policies, targets, floor["two_clock_reads_over_natpool"][0])

    lines += shapes_section(rust, mem, targets)

    # Rust: threads.
    lines += ["### Threads", ""]
    lines += [
        "Time per iteration is the wall time for one pair on *each* thread; aggregate throughput is",
        "threads ÷ time. `natpool_own_pools`: each thread allocates from its own pool (its own",
        "subpools). `natpool_shared_pool`: both threads share one pool; a thread that loses a CAS to the",
        "other works from a home subpool of its own, and writes a line the other thread writes in 1 call",
        "of 64 (the in-flight count, in the sampled call, which also reads the other threads' activity",
        "counts); a thread without a home writes none. `taken`, `live` and the activity counts are per",
        "thread. The anchors are shared by both threads.",
        "",
    ]
    rows = []
    scaling: dict[str, float] = {}
    for base in ["natpool_own_pools", "array_queue", "mutex_slab", "sharded_slab"]:
        one, two = rust[f"threads/{base}_1"], rust[f"threads/{base}_2"]
        scaling[base] = 2 * one / two
        rows.append([base, t(one), t(two), f"{1 / one / 1e6:.1f}", f"{2 / two / 1e6:.1f}", f"{scaling[base]:.2f}"])
    shared = rust["threads/natpool_shared_pool_2"]
    one = rust["threads/natpool_own_pools_1"]
    rows.append(["natpool_shared_pool", "", t(shared), "", f"{2 / shared / 1e6:.1f}", f"{2 * one / shared:.2f}"])
    lines += table(["case", "1 thread", "2 threads", "Mpairs/s, 1", "Mpairs/s, 2", "2-thread ÷ 1-thread"], rows)
    lines += threads_interleaved(threads)
    own, shared_scaling = threads["own_scaling"], threads["shared_scaling"]
    targets.append(
        Target(
            "Rust 2 threads (own subpools): aggregate at least 1.6x one thread (interleaved rounds)",
            f"{own['median']:.2f}x (criterion, timed apart: {scaling['natpool_own_pools']:.2f}x)",
            own["median"] >= 1.6,
        )
    )
    targets.append(
        Target(
            "Rust 2 threads sharing one pool: aggregate at least 1.5x one thread (issue 13; interleaved rounds)",
            f"{shared_scaling['median']:.2f}x (criterion, timed apart: {2 * one / shared:.2f}x; "
            f"Mutex<Slab> shared: {scaling['mutex_slab']:.2f}x)",
            shared_scaling["median"] >= 1.5,
        )
    )

    lines += ["### Cross-thread frees", "", "One thread allocates, another frees (batches of 256 over a channel).", ""]
    cross = {name: rust[f"cross_thread/{name}"] for name in ["natpool", "array_queue", "mutex_slab", "sharded_slab"]}
    lines += table(
        ["case", "per lease", "natpool ÷ case"],
        ([name, t(v), f"{cross['natpool'] / v:.2f}"] for name, v in cross.items()),
    )

    lines += ["### Subpool create + delete, lookup", ""]
    create = rust["subpool/create_delete_1024"]
    hits = {n: rust[f"lookup/hit_{n}"] for n in [10, 1000, 100000]}
    lines += table(
        ["case", "median"],
        [
            ["allocate + free that creates and deletes a 1024-block subpool", t(create)],
            *([f"lookup hit, {n:,} subpools", t(v)] for n, v in hits.items()),
            ["lookup miss, 100,000 subpools", t(rust["lookup/miss_100000"])],
        ],
    )
    targets.append(Target("Rust subpool create+delete (1024 blocks) under 5 µs", t(create), create < 5 * US))
    growth = hits[100000] / hits[10]
    log_growth = math.log2(100000) / math.log2(10)
    targets.append(
        Target(
            "Rust lookup O(log subpools)",
            f"10 → 100,000 subpools: {growth:.1f}x slower (log2 ratio {log_growth:.1f}x); "
            f"10 → 1,000: {hits[1000] / hits[10]:.1f}x (log2 ratio 3.0x)",
            growth <= 2 * log_growth,
        )
    )

    # Python.
    lines += [
        "## Python (asv)",
        "",
        f"Each timed call runs {OPS:,} operations in a loop, the same loop for every implementation; the",
        "tables divide by the operation count. `floor` is `_Floor.noop()` in place of each call: the",
        "loop plus empty PyO3 method calls. `floor+lease` (the pair only) is `_Floor.lease()` in place of",
        "`allocate()`: a `Lease` object made as `allocate()` makes one, with no allocation, so the calls",
        "and the `Lease` object's life without the core's pair. `deque` is `benches/baselines.py`'s",
        "`DequePool`.",
        "",
    ]
    pyp = asv["bench_pair.Pair.time_allocate_free"]
    pair_py = {impl: pyp[(impl,)] / OPS for impl in ["natpool", "deque", "reference", "floor", "floor+lease"]}
    # Side by side in rounds (benches/pair_ratio.py): each case's per-round ratio to the deque pair.
    to_deque = pairs["to_deque"]
    # What no change to the core's pair or the binding's checks can go under: the calls with the
    # Lease object's life, plus the Rust core's pair, in deque pairs.
    py_bound = to_deque["floor+lease"][0] + pair["natpool"] / pairs["seconds"]["deque"]
    lines += ["### allocate() + free()", ""]
    lines += table(
        ["case", "per pair", "natpool ÷ case"],
        ([impl, t(v), f"{pair_py['natpool'] / v:.2f}"] for impl, v in pair_py.items()),
    )
    lines += [
        "**Interleaved rounds** (`benches/pair_ratio.py`): the cases above are asv's, each timed on its own, minutes",
        f"apart. Here every case runs {pairs['ops']:,} pairs in turn, {pairs['rounds']} rounds (the order rotated",
        "each round), in one process; each round's ratios compare cases timed next to each other. Medians, with the",
        "middle half of the rounds in brackets:",
        "",
    ]
    lines += table(
        ["case", "per pair", "÷ deque", "÷ natpool (fifo)"],
        (
            [
                name,
                t(seconds),
                spread_text(to_deque[name]),
                f"{pairs['to_fifo'][name][0]:.2f}",
            ]
            for name, seconds in pairs["seconds"].items()
        ),
    )
    charts.append(("python_pair.png", "Python: allocate() + free() pair", pair_py, "µs", US))
    targets.append(
        Target(
            f"Python pair at most {PYTHON_PAIR_GOAL}x the deque pair (interleaved rounds)",
            f"natpool ÷ deque = {to_deque['natpool'][0]:.2f} (asv, timed apart: "
            f"{pair_py['natpool'] / pair_py['deque']:.2f}); bound: floor+lease {to_deque['floor+lease'][0]:.2f} + "
            f"Rust pair {pair['natpool'] / pairs['seconds']['deque']:.2f} = {py_bound:.2f}",
            to_deque["natpool"][0] <= PYTHON_PAIR_GOAL,
        )
    )
    targets.append(
        Target(
            "Python pair at least 30x faster than the reference model (interleaved rounds)",
            f"reference ÷ natpool = {pairs['to_fifo']['reference'][0]:.1f} (asv, timed apart: "
            f"{pair_py['reference'] / pair_py['natpool']:.1f})",
            pairs["to_fifo"]["reference"][0] >= 30,
        )
    )

    py_policies = {name: asv["bench_pair.PolicyPair.time_allocate_free"][(name,)] / OPS for name in POLICIES}
    py_interleaved = {name: pairs["to_fifo"]["natpool" if name == "fifo" else name] for name in POLICIES}
    # The Python binding reads the same clock (the core's) for a held pair.
    py_clock_reads = 2 * floor["ns"]["clock_read"] * NS / pairs["seconds"]["natpool"]
    lines += policy_section("Python", py_policies, targets, py_clock_reads, py_interleaved)

    batch = asv["bench_pair.Batch.time_allocate_many_free_many"]
    lines += ["### allocate_many(n) + free_many, per lease", ""]
    rows = []
    for n in [64, 1024]:
        per = {impl: batch[(impl, n)] / OPS for impl in ["natpool", "deque", "reference"]}
        rows.append(
            [str(n)]
            + [t(per[impl]) for impl in per]
            + [f"{per['natpool'] / pair_py['deque']:.2f}", f"{per['natpool'] / per['deque']:.2f}"]
        )
        targets.append(
            Target(
                f"Python allocate_many({n}) + free_many per lease faster than the deque pair",
                f"{t(per['natpool'])} vs {t(pair_py['deque'])} (ratio {per['natpool'] / pair_py['deque']:.2f})",
                per["natpool"] < pair_py["deque"],
            )
        )
    lines += table(["n", "natpool", "deque (loop)", "reference", "natpool ÷ deque pair", "natpool ÷ deque batch"], rows)

    lines += ["### lookup(ip, port), ip as str", ""]
    rows = []
    for kind in ["hit", "miss"]:
        case = asv[f"bench_pair.Lookup.time_lookup_{kind}"]
        vals = {impl: case[(impl,)] / OPS for impl in ["natpool", "deque", "reference", "floor"]}
        rows.append([kind, *(t(v) for v in vals.values()), f"{vals['natpool'] / vals['deque']:.2f}"])
    lines += table(["lookup", "natpool", "deque (dict)", "reference", "floor", "natpool ÷ deque"], rows)

    # Construction.
    lines += ["### Construction (ports 1024-65535)", ""]
    first = asv["bench_construction.Construction.time_construct_first_allocation"]
    bare = asv["bench_construction.Construction.time_construct"]
    rss = asv["bench_construction.Construction.track_rss_growth"]
    deque_time = asv["bench_construction.DequeConstruction.time_construct_first_allocation"][("deque", "/24")]
    deque_rss = asv["bench_construction.DequeConstruction.track_rss_growth"][("deque", "/24")]
    scale = {network: count / DEQUE_ADDRESSES_24 for network, count in ADDRESSES.items()}
    rows = []
    for network in ["/24", "/16", "/8"]:
        rows.append(
            [
                network,
                t(bare[("natpool", network)]),
                t(first[("natpool", network)]),
                size(rss[("natpool", network)]),
                t(first[("reference", network)]),
                size(rss[("reference", network)]),
            ]
        )
    lines += table(
        ["network", "natpool new", "natpool + 1st allocate", "natpool RSS growth", "reference + 1st", "reference RSS"],
        rows,
    )
    lines += [
        "RSS growth is page-granular and depends on which heap pages the process already has; the",
        "Rust heap bytes below are exact.",
        "",
        f"The deque free list for a /24 ({DEQUE_ADDRESSES_24:,} tuples): {t(deque_time)}, "
        f"{size(deque_rss)} of RSS. Extrapolated by address count: a /16 {t(deque_time * scale['/16'])} and "
        f"{size(deque_rss * scale['/16'])}; a /8 {t(deque_time * scale['/8'])} and {size(deque_rss * scale['/8'])}.",
        "",
        "Rust heap bytes, counted exactly by `benches/memory.rs`: "
        f"/16 {size(mem['construct_16_bytes'])} empty, {size(mem['construct_16_first_allocation_bytes'])} "
        f"after the first allocation; /8 {size(mem['construct_8_bytes'])} and "
        f"{size(mem['construct_8_first_allocation_bytes'])}. Rust-only construction + first allocation "
        f"of a /8: {t(mem['construct_8_first_allocation_seconds'])} (fastest of 50).",
        "",
    ]
    slash8 = first[("natpool", "/8")]
    targets.append(
        Target(
            "/8 pool with 64,512 ports per IP: constructed (+ first allocation) in under 1 ms",
            f"{t(slash8)} from Python (deque, extrapolated: {t(deque_time * scale['/8'])})",
            slash8 < 1e-3,
        )
    )
    slash8_bytes = max(mem["construct_8_first_allocation_bytes"], rss[("natpool", "/8")])
    targets.append(
        Target(
            "/8 pool in under 1 MiB",
            f"Rust heap {size(mem['construct_8_first_allocation_bytes'])}, process RSS growth "
            f"{size(rss[('natpool', '/8')])} (deque, extrapolated: {size(deque_rss * scale['/8'])})",
            slash8_bytes < MIB,
        )
    )

    # Churn.
    churn = asv["bench_churn.Churn.time_churn"]
    left = asv["bench_churn.Churn.track_subpools_after_frees"]
    lines += [
        "### Churn (65,536 blocks in 64 subpools; per call 6,553 oldest leases freed, 6,553 allocated)",
        "",
    ]
    rows = []
    for occupancy in [0.9, 1.0]:
        per = {impl: churn[(impl, occupancy)] / CHURN_WAVE for impl in ["natpool", "deque", "reference"]}
        rows.append(
            [
                f"{occupancy:.0%}",
                *(t(v) for v in per.values()),
                f"{per['natpool'] / per['deque']:.2f}",
                f"{per['reference'] / per['natpool']:.1f}",
                f"{left[('natpool', occupancy)]:.0f}",
            ]
        )
    lines += table(
        ["occupancy", "natpool", "deque", "reference", "natpool ÷ deque", "reference ÷ natpool", "subpools left"],
        rows,
    )
    lines += ["Times are per free + allocate pair. *Subpools left*: after one wave of frees (of 64 at full).", ""]

    # Memory.
    peak = asv["bench_memory.LiveLeases.peakmem_live_leases"]
    per_lease = asv["bench_memory.LiveLeases.track_bytes_per_live_lease"]
    baseline = asv["bench_construction.peakmem_baseline"][()]
    lines += ["## Memory with 1,000,000 live leases", ""]
    lines += table(
        ["case", "peak RSS above the bare process", "RSS per live lease (pool + the caller's lease objects)"],
        (
            [impl, size(peak[(impl,)] - baseline), f"{per_lease[(impl,)]:.0f} B"]
            for impl in ["natpool", "deque", "reference"]
        ),
    )
    lines += [
        "Rust heap bytes per live lease, counted by a global allocator (`benches/memory.rs`; the pool's",
        "blocks, free-list links, subpool records and snapshots, over the lease count):",
        "",
    ]
    lines += table(
        ["structure", "bytes per entry"],
        [
            [
                "natpool, 8-byte data slot (as the Python binding stores it)",
                f"{mem['natpool_pointer_bytes_per_lease']:.1f}",
            ],
            ["natpool, no data (`Pool<()>`)", f"{mem['natpool_unit_bytes_per_lease']:.1f}"],
            ["ArrayQueue<u32> of block ids", f"{mem['array_queue_bytes_per_entry']:.1f}"],
            ["slab::Slab<(u32, u16)>", f"{mem['slab_bytes_per_entry']:.1f}"],
            ["sharded_slab::Slab<(u32, u16)>", f"{mem['sharded_slab_bytes_per_entry']:.1f}"],
        ],
    )
    charts.append(
        (
            "memory_per_lease.png",
            "Rust heap bytes per live lease / entry",
            {
                "natpool (8-byte data)": mem["natpool_pointer_bytes_per_lease"],
                "natpool (no data)": mem["natpool_unit_bytes_per_lease"],
                "ArrayQueue<u32>": mem["array_queue_bytes_per_entry"],
                "slab::Slab": mem["slab_bytes_per_entry"],
                "sharded_slab::Slab": mem["sharded_slab_bytes_per_entry"],
            },
            "bytes",
            1.0,
        )
    )
    targets.append(
        Target(
            "Under 32 bytes of Rust memory per live lease (excluding the user's data object)",
            f"{mem['natpool_pointer_bytes_per_lease']:.1f} B",
            mem["natpool_pointer_bytes_per_lease"] < 32,
        )
    )
    lines, targets = snapshot_section(asv, rust, lines, targets)
    lines, targets = store_section(asv, lines, targets, pairs)
    return lines, charts, targets


SNAPSHOT_GOAL = 1.0
"""Issue 12: snapshot and restore of a pool with 1,000,000 live leases, each under this many seconds."""


def snapshot_section(
    asv: dict[str, dict[tuple[Any, ...], float]], rust: dict[str, float], lines: list[str], targets: list[Target]
) -> tuple[list[str], list[Target]]:
    """``snapshot()`` and ``restore`` of 1,000,000 live leases, in the Rust core and through Python."""
    bench = "bench_snapshot.SnapshotRestore"
    times = {
        "Rust core (criterion, `snapshot/*`)": (rust["snapshot/write_1m"], rust["snapshot/restore_1m"]),
        "natpool.Pool (asv, `bench_snapshot`)": (
            asv[f"{bench}.time_snapshot"][("natpool",)],
            asv[f"{bench}.time_restore"][("natpool",)],
        ),
    }
    written = asv[f"{bench}.track_snapshot_bytes"][("natpool",)]
    lines += ["## Snapshot and restore, 1,000,000 live leases", ""]
    lines += [
        f"A /16 (ports 1024-65535) in 16 subpools of 65,536 blocks; the snapshot is {size(written)}.",
        "`restore` checks the bytes whole before it builds the pool from them (no replay).",
        "",
    ]
    lines += table(["case", "snapshot()", "restore"], ([case, t(a), t(b)] for case, (a, b) in times.items()))
    slowest = max(max(pair) for pair in times.values())
    targets.append(
        Target(
            f"snapshot and restore of 1,000,000 live leases each under {SNAPSHOT_GOAL:.0f} s",
            "; ".join(f"{case.split(' (')[0]}: {t(a)} and {t(b)}" for case, (a, b) in times.items()),
            slowest < SNAPSHOT_GOAL,
        )
    )
    return lines, targets


STORE_ROUND_TRIPS = 20  # claim + release round trips per timed call in benches/bench_store.py


def store_section(
    asv: dict[str, dict[tuple[Any, ...], float]], lines: list[str], targets: list[Target], pairs: dict[str, Any]
) -> tuple[list[str], list[Target]]:
    """The cluster store: a claim + return round trip per engine, and the pair with and without a store (the target
    judged on ``pairs``, the interleaved rounds of ``benches/pair_ratio.py``)."""
    round_trip = asv["bench_store.ClaimReturn.time_claim_release"]
    pair = asv["bench_store.StorePair.time_allocate_free"]
    lines += ["## The cluster store (`natpool.store`)", ""]
    lines += [
        "A claim + return round trip is what creating and then deleting a subpool costs in the store",
        "(one transaction each); it happens once per `subpool_blocks` connections, never per connection.",
        "",
    ]
    lines += table(
        ["engine", "claim + release"],
        ([engine, t(round_trip[(engine,)] / STORE_ROUND_TRIPS)] for engine in ["sqlite", "postgresql"]),
    )
    plain, on_store = pair[("natpool",)] / OPS, pair[("natpool+sqlite",)] / OPS
    median = pairs["store_over_none"][0]
    lines += table(
        ["natpool.Pool", "allocate + free (asv)", "÷ without a store (asv)", "÷ without a store, interleaved"],
        [
            ["without a store", t(plain), "1.00", "1.00"],
            [
                "one member of a SQLite store",
                t(on_store),
                f"{on_store / plain:.2f}",
                spread_text(pairs["store_over_none"]),
            ],
        ],
    )
    lines += [
        "*Interleaved*: the same two pools timed side by side in `benches/pair_ratio.py`'s rounds (the Python",
        "pair's section), the median of the rounds' ratios with their middle half; the target is judged on it.",
        "",
    ]
    targets.append(
        Target(
            "allocate + free on a store-backed pool within noise (1.1x) of the same pool without a store",
            f"interleaved {median:.2f}x (asv, timed apart: {t(on_store)} vs {t(plain)}, {on_store / plain:.2f}x)",
            median <= 1.1,
        )
    )
    return lines, targets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--asv-results", type=Path, default=Path(".asv/results"))
    parser.add_argument("--criterion", type=Path, default=Path("target/criterion"))
    parser.add_argument("--memory", type=Path, default=Path("target/bench-memory.json"))
    parser.add_argument("--threads", type=Path, default=Path("target/bench-threads.json"))
    parser.add_argument("--pairs", type=Path, default=Path("target/bench-pair-ratio.json"))
    parser.add_argument("--floor", type=Path, default=Path("target/bench-floor.json"))
    parser.add_argument("--proxy-workers", type=Path, default=Path("target/bench-proxy-workers.json"))
    parser.add_argument("--notes", type=Path, default=Path("benches/notes.md"))
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks"))
    args = parser.parse_args(argv)

    asv = asv_results(args.asv_results)
    rust = criterion(args.criterion)
    mem = json.loads(args.memory.read_text())
    threads = json.loads(args.threads.read_text())
    pairs = json.loads(args.pairs.read_text())
    floor = json.loads(args.floor.read_text())
    lines, charts, targets = build(asv, rust, mem, threads, pairs, floor)
    if args.proxy_workers.exists():
        lines += proxy_workers(json.loads(args.proxy_workers.read_text()))

    args.out.mkdir(parents=True, exist_ok=True)
    for name, title, bars, unit, scale in charts:
        chart(args.out / name, title, bars, unit, scale)
    when = datetime.fromtimestamp(newest_mtime(args.asv_results), UTC).strftime("%Y-%m-%d %H:%M UTC")
    report = [
        "# natpool benchmarks",
        "",
        f"Written by `make bench` (`benches/report.py`) from one run on {when}: the asv suite",
        "(`benches/bench_*.py`) and the Rust benches (`benches/core.rs`, `benches/memory.rs`,",
        "`benches/threads.rs`) ran back to back on the same machine. The machine is shared and noisy:",
        "read the ratios, which are measured within one run, rather than the absolute times. The",
        "2-thread cases need both cores: with other jobs running (a load average near 2 or above) they",
        "measure the competition for cores as much as natpool or its anchors.",
        "",
        *table(["machine", ""], ([k, v] for k, v in machine(Path("Cargo.lock")))),
        "## Targets",
        "",
        *table(
            ["target", "measured", "met"],
            ([tg.what, tg.measured, "yes" if tg.met else "**no**"] for tg in targets),
        ),
    ]
    if args.notes.exists():
        report += [args.notes.read_text().strip(), ""]
    report += lines
    report += [f"![{title}]({name})" for name, title, *_ in charts]
    (args.out / "report.md").write_text("\n".join(report).rstrip() + "\n")
    print(f"wrote {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
