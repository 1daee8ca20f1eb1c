"""``natpool simulate`` on the command line: a run (build the pool, replay, check, report) and its options."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from natpool.apps.options import (
    add_exclude,
    add_hold_down,
    add_order,
    count_at_least,
    parse_fraction,
    parse_ip,
    parse_netmask,
    parse_non_negative,
    parse_pool_range,
    parse_ports,
    parse_positive,
)
from natpool.apps.simulate.engine import SimulatedClock, simulate
from natpool.apps.simulate.invariants import check_invariants
from natpool.apps.simulate.report import Report
from natpool.apps.simulate.workload import LIFETIME_SHAPES, MODELS, PoolConfig, Workload
from natpool.errors import PoolConfigError
from natpool.extras import MissingExtra, require

__all__ = ["add_parser", "command", "run"]

_OPTIONS = {"ranges": "--pool", "exclude": "--exclude"}
"""The option of each pool field that is not ``--`` and the field's name (``first_ip``: ``--first-ip``)."""


def run(
    config: PoolConfig,
    workload: Workload,
    model: str = "rust",
    progress: TextIO | None = None,
    timeline: list[tuple[float, int, int]] | None = None,
) -> Report:
    """Build the pool on a simulated clock, replay the workload on it and check the invariants."""
    clock = SimulatedClock()
    pool = config.build(model, clock)
    results, timing = simulate(pool, workload, progress, timeline, clock)
    failures = check_invariants(pool, config, results)
    return Report(model, config, pool.address_count, pool.capacity, workload, results, timing, failures)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``simulate`` command to the ``natpool`` parser's subparsers."""
    pool, work = PoolConfig(), Workload()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="replay an SLB connection workload on a pool and report",
        description=(
            "Replay a server load balancer's connection workload (seeded Poisson arrivals in load waves, "
            "heavy-tailed lifetimes) on a client NAT pool in simulated time, and report connections served, "
            "allocation rate, peak live leases, subpool churn, interval-list length, exhaustion events and the "
            "reuse distance (allocations between two uses of an address). Exits 1 if an invariant fails."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="rust",
        help="the implementation: the Rust core (natpool.Pool) or the pure-Python reference model",
    )
    group = parser.add_argument_group(
        "pool",
        f"its addresses: --pool (repeat for more ranges), or --first-ip, --last-ip and --netmask "
        f"(default: {pool.first_ip}-{pool.last_ip} /{pool.netmask}); --exclude takes addresses out of either",
    )
    group.add_argument(
        "--pool",
        type=parse_pool_range,
        action="append",
        metavar="CIDR|FIRST-LAST|IP",
        help="a range of the pool, IPv4 or IPv6 (docs/shapes.md)",
    )
    add_exclude(group)
    group.add_argument("--first-ip", type=parse_ip, metavar="IP")
    group.add_argument("--last-ip", type=parse_ip, metavar="IP")
    group.add_argument("--netmask", type=parse_netmask, help="prefix length or dotted mask")
    group.add_argument(
        "--ports", type=parse_ports, default=pool.ports, metavar="LO-HI", help="port range, e.g. 1024-65535"
    )
    group.add_argument(
        "--initial-blocks",
        type=count_at_least(1),
        metavar="N",
        help=f"blocks of the first subpool (default: {pool.initial_blocks}, at most --max-blocks)",
    )
    group.add_argument(
        "--subpool-blocks",
        type=count_at_least(1),
        metavar="N",
        help=f"blocks of each later subpool (default: {pool.subpool_blocks}, at most --max-blocks)",
    )
    group.add_argument("--max-blocks", type=count_at_least(1), default=pool.max_blocks, metavar="N")
    group.add_argument(
        "--grow-threshold",
        type=count_at_least(0),
        metavar="N",
        help=f"grow when free blocks fall to N (default: {pool.grow_threshold}, at most --max-blocks)",
    )
    group = parser.add_argument_group("the pool's policies")
    add_order(group, pool.order)
    add_hold_down(
        group, pool.hold_down, "a freed address is held this long, in simulated seconds, before it is handed out again"
    )
    group = parser.add_argument_group("workload")
    group.add_argument("--connections", type=count_at_least(1), default=work.connections, metavar="N")
    group.add_argument("--rate", type=parse_positive, default=work.rate, help="mean arrivals per simulated second")
    group.add_argument(
        "--mean-lifetime", type=parse_positive, default=work.mean_lifetime, metavar="SECONDS", help="mean lifetime"
    )
    group.add_argument(
        "--lifetime",
        choices=sorted(LIFETIME_SHAPES),
        default=work.lifetime,
        help="lifetime distribution (Pareto alpha 1.5, lognormal sigma 1.2)",
    )
    group.add_argument(
        "--wave-period",
        type=parse_non_negative,
        default=work.wave_period,
        metavar="SECONDS",
        help="period of the load cycle in simulated seconds (0: constant rate)",
    )
    group.add_argument("--swing", type=parse_fraction, default=work.swing, help="amplitude of the load cycles")
    group.add_argument(
        "--seed", type=int, default=work.seed, help="seeds the workload and, with --order random, the pool's order"
    )
    group.add_argument(
        "--lookup-every",
        type=count_at_least(1),
        default=work.lookup_every,
        metavar="N",
        help="check lookup() on every N-th connection",
    )
    group = parser.add_argument_group("output")
    group.add_argument("--json", action="store_true", help="print the report as JSON")
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress on stderr (default: when stderr is a terminal)",
    )
    group.add_argument("--plot", metavar="FILE.png", help="draw live leases and subpools over simulated time")
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool simulate`` with parsed arguments; bad combinations are usage errors."""
    defaults = PoolConfig()
    maximum: int = args.max_blocks

    def default(value: int | None, fallback: int) -> int:
        return min(fallback, maximum) if value is None else value

    if args.pool and (args.first_ip, args.last_ip, args.netmask) != (None, None, None):
        parser.error("argument --pool: not with --first-ip, --last-ip or --netmask (one form of the addresses)")
    config = PoolConfig(
        first_ip=defaults.first_ip if args.first_ip is None else args.first_ip,
        last_ip=defaults.last_ip if args.last_ip is None else args.last_ip,
        netmask=defaults.netmask if args.netmask is None else args.netmask,
        ranges=tuple(r.text for r in args.pool or ()),
        exclude=tuple(e.text for e in args.exclude or ()),
        ports=args.ports,
        initial_blocks=default(args.initial_blocks, defaults.initial_blocks),
        subpool_blocks=default(args.subpool_blocks, defaults.subpool_blocks),
        max_blocks=maximum,
        grow_threshold=default(args.grow_threshold, defaults.grow_threshold),
        order=args.order,
        seed=args.seed if args.order == "random" else None,
        hold_down=args.hold_down,
    )
    workload = Workload(
        connections=args.connections,
        rate=args.rate,
        mean_lifetime=args.mean_lifetime,
        lifetime=args.lifetime,
        wave_period=args.wave_period,
        swing=args.swing,
        seed=args.seed,
        lookup_every=args.lookup_every,
    )
    try:
        config.build(args.model)  # validate the configuration before the run
    except PoolConfigError as exc:
        parser.error(f"argument {_OPTIONS.get(exc.field, '--' + exc.field.replace('_', '-'))}: {exc.reason}")
    except (ValueError, OverflowError) as exc:
        parser.error(f"invalid pool configuration: {exc}")
    if args.plot:
        try:
            require("plot")
        except MissingExtra as exc:
            parser.error(f"argument --plot: {exc}")
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    timeline: list[tuple[float, int, int]] | None = [] if args.plot else None
    report = run(config, workload, args.model, sys.stderr if show else None, timeline)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.to_text())
    if timeline is not None:
        from natpool.apps.plot import plot_timeline

        plot_timeline(
            args.plot,
            f"natpool simulate: {workload.connections:,} connections, model {args.model}",
            [t for t, _, _ in timeline],
            [live for _, live, _ in timeline],
            [subpools for _, _, subpools in timeline],
            time_label="simulated seconds",
        )
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 0 if report.ok else 1
