"""``natpool demo``: the proxy on loopback under concurrent clients, verified and reported (``make run``).

``--ipv6`` runs it on ``::1`` (the backends, the proxy, the clients and the pool: on Linux ``::1`` is IPv6's only
loopback address, so the pool is ``::1`` with a range of ports); on a host without IPv6 loopback it says so and
exits 0, skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from natpool.apps.demo.compare import compare
from natpool.apps.demo.orders import DEFAULT_ORDERS, parse_orders, run_orders
from natpool.apps.demo.report import compare_text, orders_text, run_text, workers_text
from natpool.apps.demo.run import IPV6_POOL, IPV6_PORTS, DemoConfig
from natpool.apps.demo.workers import run_workers
from natpool.apps.listener import missing_ipv6_loopback
from natpool.apps.logs import start_logging
from natpool.apps.options import (
    OptionError,
    PoolAddresses,
    PoolRange,
    add_exclude,
    add_hold_down,
    count_at_least,
    parse_pool,
    parse_pool_range,
    parse_ports,
    parse_positive,
    require_extra,
    usage_error,
)
from natpool.apps.proxy import BALANCE, WorkersFailed
from natpool.apps.proxy.workers import check_workers
from natpool.errors import NatPoolError

__all__ = ["add_parser", "command"]

LOOPBACK = parse_pool("127.0.0.0/8").ranges[0]
HOLD_DOWN = 1.0
"""The hold-down of the ``+hold`` runs of ``--orders`` by default: shorter than a run, so that addresses come back."""


def parse_loopback_range(text: str) -> PoolRange:
    """A ``--pool`` range in 127.0.0.0/8, or ``::1``: the demo runs on loopback."""
    pool = parse_pool_range(text)
    if pool.family == 6:
        if pool.first != 1 or pool.last != 1:
            raise argparse.ArgumentTypeError("the demo runs on loopback: IPv6's is ::1 alone")
    elif not (LOOPBACK.first <= pool.first and pool.last <= LOOPBACK.last):
        raise argparse.ArgumentTypeError("the demo runs on loopback: the pool must lie in 127.0.0.0/8")
    return pool


def parse_rounds(text: str) -> int:
    """Rounds of ``--compare``: an even number (as many for each source), at least 2."""
    rounds = count_at_least(2)(text)
    if rounds % 2:
        raise argparse.ArgumentTypeError(f"{rounds} is odd: each source needs as many rounds")
    return rounds


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``demo`` command to the ``natpool`` parser's subparsers, of parser class CommandParser."""
    d = DemoConfig()
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="run the proxy on loopback with backends and clients, verify and report",
        description=(
            "Start backends (each answers with the peer address it saw), natpool proxy with a client NAT pool and "
            "concurrent clients, all on loopback with no setup or privileges; verify that every backend saw only "
            "pool addresses, every answer was right and every lease came back; report. The load is split among the "
            "reuse orders of --orders, each through a fresh proxy: the first is reported in full, then every order's "
            "distinct 4-tuples and reuse distance per backend. Exits 1 if a check fails."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        brief_errors=True,
    )
    one_or_more, any_count = count_at_least(1), count_at_least(0)
    parser.add_argument(
        "--connections", type=one_or_more, default=d.connections, metavar="N", help="client connections"
    )
    parser.add_argument(
        "--concurrency", type=one_or_more, default=d.concurrency, metavar="N", help="clients at the top of a load wave"
    )
    parser.add_argument("--waves", type=any_count, default=d.waves, metavar="N", help="load cycles (0: constant)")
    parser.add_argument(
        "--backends", type=one_or_more, default=d.backends, metavar="N", help="servers behind the proxy"
    )
    parser.add_argument("--payload", type=any_count, default=d.payload, metavar="BYTES", help="answered per connection")
    parser.add_argument(
        "--pool",
        type=parse_loopback_range,
        action="append",
        metavar="CIDR|FIRST-LAST|IP",
        help=f"in 127.0.0.0/8, or ::1 with --ipv6; repeat for more ranges (default: {d.pool}, with --ipv6 {IPV6_POOL})",
    )
    add_exclude(parser)
    parser.add_argument(
        "--ports",
        type=parse_ports,
        metavar="LO-HI",
        help=f"NAT ports (default: {d.ports[0]}-{d.ports[1]}, with --ipv6 {IPV6_PORTS[0]}-{IPV6_PORTS[1]})",
    )
    parser.add_argument(
        "--ipv6",
        action="store_true",
        help="on ::1: the backends, the proxy, the clients and the pool (skipped, exit 0, without IPv6 loopback)",
    )
    group = parser.add_argument_group("the pool and the proxy")
    group.add_argument(
        "--initial-blocks", type=one_or_more, default=d.initial_blocks, metavar="N", help="first subpool"
    )
    group.add_argument(
        "--subpool-blocks", type=one_or_more, default=d.subpool_blocks, metavar="N", help="later subpools"
    )
    group.add_argument("--max-blocks", type=one_or_more, default=d.max_blocks, metavar="N", help="live leases at most")
    group.add_argument("--balance", choices=BALANCE, default=d.balance, help="policy")
    group.add_argument(
        "--orders",
        type=parse_orders,
        metavar="ORDER[+hold],...",
        help=f"the pool's reuse orders (fifo, lifo, random), each +hold with --hold-down or not; the connections "
        f"are split among them (default: {DEFAULT_ORDERS})",
    )
    add_hold_down(group, HOLD_DOWN, "the proxy's --hold-down in the +hold runs of --orders")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="then run the load again, in rounds alternating natpool and the kernel choosing the port, and compare",
    )
    parser.add_argument(
        "--rounds",
        type=parse_rounds,
        default=4,
        metavar="N",
        help="rounds of --compare (even), the load split among them",
    )
    parser.add_argument("--plot", metavar="FILE.png", help="draw live leases and subpools over time")
    workers = parser.add_argument_group("workers")
    workers.add_argument(
        "--workers",
        type=one_or_more,
        metavar="N",
        help=(
            "run the proxy as natpool proxy --workers N (N processes on one address, one pool in a SQLite store) and "
            "check from the workers' leases and what the backends saw that no NAT address was held by two at once"
        ),
    )
    workers.add_argument(
        "--reclaim-delay",
        type=parse_positive,
        default=d.reclaim_delay,
        metavar="SECONDS",
        help="with --workers: a returned range is held this long in the store before a worker claims it again",
    )
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def _config(args: argparse.Namespace) -> DemoConfig:
    """The demo's configuration from the parsed arguments; the pool and proxy settings checked as the proxy would."""
    defaults = DemoConfig()
    ranges = tuple(args.pool) if args.pool else (IPV6_POOL if args.ipv6 else defaults.pool).ranges
    pool = PoolAddresses(ranges, tuple(args.exclude or ()))
    if (pool.family == 6) != args.ipv6:
        raise OptionError("--pool", "with --ipv6 the pool is ::1" if args.ipv6 else "an IPv6 pool needs --ipv6")
    config = DemoConfig(
        connections=args.connections,
        concurrency=args.concurrency,
        backends=args.backends,
        payload=args.payload,
        pool=pool,
        ports=args.ports or (IPV6_PORTS if args.ipv6 else defaults.ports),
        initial_blocks=args.initial_blocks,
        subpool_blocks=args.subpool_blocks,
        max_blocks=args.max_blocks,
        balance=args.balance,
        waves=args.waves,
        reclaim_delay=args.reclaim_delay,
    )
    if args.workers is not None:
        for option, given in (("--compare", args.compare), ("--plot", args.plot), ("--orders", args.orders)):
            if given:
                raise OptionError(option, "not with --workers (the pool is in the workers' processes)")
        check_workers(config.proxy_config([(config.loopback, 1)]), args.workers)
    config.proxy_config([(config.loopback, 1)]).validate()
    return config


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool demo``; exit 0 when every check passed, 1 otherwise, 2 for a bad option."""
    try:
        config = _config(args)
        if args.plot:
            require_extra("--plot", "plot")
    except OptionError as exc:
        return usage_error(parser, exc)
    if args.ipv6 and (missing := missing_ipv6_loopback()) is not None:
        print(f"{parser.prog}: skipped: --ipv6 needs IPv6 loopback, and this host has none: {missing}", file=sys.stderr)
        return 0
    start_logging(logging.WARNING)
    if args.workers is not None:
        try:
            run = asyncio.run(run_workers(config, args.workers))
        except (WorkersFailed, NatPoolError, OSError) as exc:
            print(f"{parser.prog}: error: {exc}", file=sys.stderr)
            return 1
        print(workers_text(config, run), flush=True)
        return 0 if run.passed else 1
    runs = asyncio.run(run_orders(config, args.orders or parse_orders(DEFAULT_ORDERS), args.hold_down))
    result = runs[0].result
    print(run_text(runs[0].config, result), flush=True)
    print()
    print(orders_text(config, runs), flush=True)
    passed = all(run.result.passed for run in runs)
    if args.compare:
        pool, kernel = asyncio.run(compare(config, args.rounds))
        print()
        print(compare_text(config, args.rounds, pool, kernel))
        passed = passed and pool.passed and kernel.passed
    if args.plot:
        from natpool.apps.plot import plot_timeline

        plot_timeline(
            args.plot,
            f"natpool demo: {runs[0].config.connections:,} connections through natpool proxy, order {runs[0].order}",
            [s.t for s in result.samples],
            [s.live for s in result.samples],
            [s.subpools for s in result.samples],
        )
        print(f"\nplot written to {args.plot}")
    return 0 if passed else 1
