"""``natpool proxy``: the command line of the load balancer and its exit status.

Without ``--workers`` the proxy runs in this process (:func:`~natpool.apps.proxy.service.serve`), its pool a
member of the cluster in ``--store`` if one is given. With ``--workers N`` this process supervises N worker
processes sharing the listening address and one pool through a store (:mod:`~natpool.apps.proxy.workers`).

With ``--state FILE`` the pool's state outlives the process (:mod:`~natpool.apps.proxy.state`): restored from
FILE at the start, written to it on a timer and at the stop.

Exit status: 0 after a clean stop (every lease freed, the state written; with workers, every worker stopped when
asked and exited 0), 1 when the proxy could not start (the address in use, the store unreachable, a ``--state``
file that is no snapshot) or did not stop clean, 2 for a bad option (before anything listens; a ``--state`` file
of another pool configuration is one).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from typing import Any

from natpool.apps.logs import start_logging
from natpool.apps.models import MODELS
from natpool.apps.options import (
    OptionError,
    PoolAddresses,
    add_exclude,
    add_hold_down,
    add_order,
    count_at_least,
    endpoint_text,
    parse_endpoint,
    parse_listen_endpoint,
    parse_non_negative,
    parse_pool,
    parse_pool_range,
    parse_ports,
    parse_positive,
    require_extra,
    usage_error,
)
from natpool.apps.proxy.config import BALANCE, SOURCES, ProxyConfig, option_error
from natpool.apps.proxy.limits import (
    DESCRIPTORS_PER_CONNECTION,
    RESERVED_DESCRIPTORS,
    connections_allowed,
    descriptor_limit,
)
from natpool.apps.proxy.service import exit_status, serve
from natpool.apps.proxy.state import restore_state
from natpool.apps.proxy.workers import Workers, check_workers, supervise
from natpool.errors import PoolConfigError, SnapshotError, StoreError

__all__ = ["add_parser", "command", "config_from_args", "serve"]

CLUSTER_OPTIONS = ("member", "claim_ttl", "reclaim_delay")
"""The options that only mean something for a pool in a cluster store (``--store`` or ``--workers``)."""

log = logging.getLogger("natpool.proxy")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``proxy`` command to the ``natpool`` parser's subparsers, of parser class CommandParser."""
    d = ProxyConfig(listen=("127.0.0.1", 0), backends=(), pool=parse_pool("127.0.100.0/24"))
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "proxy",
        help="run a TCP load balancer with client NAT from a natpool pool",
        description=(
            "An asyncio TCP load balancer in directed mode: each client connection gets a NAT address (ip, port) "
            "from the pool, its upstream socket is bound to it and connected to a backend, and the lease is freed "
            "when the connection ends. SIGTERM or SIGINT drains and stops it. --store makes the pool one member of a "
            "cluster sharing its interval list; --workers N runs N such processes on one listening address; --state "
            "keeps the pool's state across restarts. Bad options exit 2; a store that cannot be reached or a --state "
            "file that is no snapshot exits 1 at the start."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        brief_errors=True,
    )
    blocks = count_at_least(1)
    parser.add_argument(
        "--listen",
        type=parse_listen_endpoint,
        required=True,
        metavar="HOST:PORT",
        help="where clients connect (port 0: any); an IPv6 host in brackets, [::1]:8080",
    )
    parser.add_argument(
        "--backend",
        type=parse_endpoint,
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="a real server (repeat for more), of the pool's family",
    )
    parser.add_argument(
        "--pool",
        type=parse_pool_range,
        action="append",
        required=True,
        metavar="CIDR|FIRST-LAST|IP",
        help="client NAT addresses, IPv4 or IPv6 (repeat for more ranges of one family; docs/shapes.md)",
    )
    add_exclude(parser)
    parser.add_argument(
        "--ports", type=parse_ports, default="1024-65535", metavar="LO-HI", help="the NAT ports of each address"
    )
    parser.add_argument(
        "--initial-blocks", type=blocks, default=d.initial_blocks, metavar="N", help="blocks of the first subpool"
    )
    parser.add_argument("--max-blocks", type=blocks, default=d.max_blocks, metavar="N", help="live leases at most")
    parser.add_argument("--subpool-blocks", type=blocks, metavar="N", help="blocks of each later subpool")
    parser.add_argument("--balance", choices=BALANCE, default=d.balance, help="backend selection")
    parser.add_argument("--source", choices=SOURCES, default=d.source, help="pool: natpool leases; kernel: (ip, 0)")
    parser.add_argument(
        "--metrics",
        type=parse_listen_endpoint,
        metavar="HOST:PORT",
        help="serve /metrics, /healthz and /lookup here (with --workers: worker K on PORT + K - 1)",
    )
    parser.add_argument(
        "--bind-attempts",
        type=count_at_least(1),
        default=d.bind_attempts,
        metavar="N",
        help="NAT addresses tried per connection",
    )
    parser.add_argument(
        "--quarantine",
        type=parse_non_negative,
        default=d.quarantine,
        metavar="SECONDS",
        help="unbindable address kept out",
    )
    add_hold_down(
        parser,
        d.hold_down,
        "an address whose upstream connected is held this long after its connection before reuse (TIME_WAIT at "
        "either end; RFC 6888's port reuse delay)",
    )
    parser.add_argument(
        "--down-time",
        type=parse_non_negative,
        default=d.down_time,
        metavar="SECONDS",
        help="a failed backend is skipped",
    )
    parser.add_argument(
        "--connect-timeout", type=parse_positive, default=d.connect_timeout, metavar="SECONDS", help="to a backend"
    )
    parser.add_argument(
        "--idle-timeout",
        type=parse_positive,
        default=d.idle_timeout,
        metavar="SECONDS",
        help="a connection with no byte either way this long is closed, both sides",
    )
    parser.add_argument(
        "--drain-timeout",
        type=parse_non_negative,
        default=d.drain_timeout,
        metavar="SECONDS",
        help="on SIGTERM/SIGINT",
    )
    parser.add_argument(
        "--max-connections",
        type=count_at_least(1),
        metavar="N",
        help=(
            f"client connections open at once, more wait in the listen backlog; None: what RLIMIT_NOFILE allows "
            f"({DESCRIPTORS_PER_CONNECTION} descriptors a connection, {RESERVED_DESCRIPTORS} kept aside: "
            f"{connections_allowed(descriptor_limit()):,} here)"
        ),
    )
    clients = parser.add_argument_group(
        "clients",
        "the pool's policies for each client IP (--source pool); a connection over --max-per-client is closed at once",
    )
    clients.add_argument(
        "--max-per-client",
        type=count_at_least(1),
        metavar="N",
        help="live or held leases of one client IP at most, the pool's client_quota (its connections, and its "
        "addresses held down or quarantined until their hold ends); None: no limit",
    )
    add_order(clients, d.order)
    clients.add_argument("--seed", type=count_at_least(0), metavar="N", help="the seed of --order random")
    clients.add_argument(
        "--paired", action="store_true", help="a client IP's leases stay on one NAT IP while it has a free block there"
    )
    clients.add_argument(
        "--client-block",
        type=count_at_least(1),
        metavar="N",
        help="port-block allocation: each client IP's leases from its own blocks of N ports of one NAT IP",
    )
    clients.add_argument(
        "--block-log",
        metavar="FILE",
        help="append each port block assigned or released to FILE (time, kind, client, NAT IP, ports); "
        "needs --client-block",
    )
    clients.add_argument(
        "--block-log-max-bytes",
        type=count_at_least(1),
        default=d.block_log_max_bytes,
        metavar="N",
        help="--block-log is renamed FILE.1 (one backup) at this size",
    )
    cluster = parser.add_argument_group(
        "processes and hosts",
        "one pool for several proxies: each is a member of the cluster in a store that shares the interval list",
    )
    cluster.add_argument(
        "--workers",
        type=count_at_least(1),
        metavar="N",
        help=(
            "N worker processes accept on --listen (each its own socket, SO_REUSEPORT) and share one pool through "
            "--store, or a SQLite store in a private temporary directory; this process supervises them"
        ),
    )
    cluster.add_argument(
        "--store",
        metavar="URL",
        help="the cluster store (sqlite:///ABS/PATH, postgresql://USER@HOST:PORT/DATABASE): the pool is one member",
    )
    cluster.add_argument(
        "--member",
        metavar="NAME",
        help="this proxy's member name in the store (default {hostname}:{pid}); with --workers: NAME-1 ... NAME-N",
    )
    cluster.add_argument("--pool-name", default=d.name, metavar="NAME", help="the pool's name in the store")
    cluster.add_argument(
        "--claim-ttl",
        type=parse_positive,
        metavar="SECONDS",
        help=f"a claim of the store lapses unless renewed (every third of it); None: {d.claim_ttl:g}",
    )
    cluster.add_argument(
        "--reclaim-delay",
        type=parse_positive,
        metavar="SECONDS",
        help=f"a returned or lapsed range is held this long before it is claimed again; None: {d.reclaim_delay:g}",
    )
    state = parser.add_argument_group("state", "the pool's state across restarts (not with --workers)")
    state.add_argument(
        "--state",
        metavar="FILE",
        help="restore the pool from FILE at the start if it exists (the same pool options, or exit 2; not a "
        "snapshot: exit 1), its leases freed with --hold-down since their connections are gone; write it "
        "(atomically) every --state-interval and at the stop",
    )
    state.add_argument(
        "--state-interval",
        type=parse_positive,
        default=d.state_interval,
        metavar="SECONDS",
        help="between two writes of --state while serving",
    )
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default=d.model,
        help="the pool's implementation: the Rust core (natpool.Pool) or the pure-Python reference model (slower)",
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging")
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """The configuration the parsed arguments give (not yet checked)."""
    return ProxyConfig(
        listen=args.listen,
        backends=tuple(args.backend),
        pool=PoolAddresses(tuple(args.pool), tuple(args.exclude or ())),
        ports=args.ports,
        initial_blocks=args.initial_blocks,
        max_blocks=args.max_blocks,
        subpool_blocks=args.subpool_blocks,
        balance=args.balance,
        metrics=args.metrics,
        source=args.source,
        bind_attempts=args.bind_attempts,
        quarantine=args.quarantine,
        hold_down=args.hold_down,
        down_time=args.down_time,
        connect_timeout=args.connect_timeout,
        drain_timeout=args.drain_timeout,
        idle_timeout=args.idle_timeout,
        max_connections=args.max_connections,
        name=args.pool_name,
        store=args.store,
        member=args.member,
        claim_ttl=ProxyConfig.claim_ttl if args.claim_ttl is None else args.claim_ttl,
        reclaim_delay=ProxyConfig.reclaim_delay if args.reclaim_delay is None else args.reclaim_delay,
        max_per_client=args.max_per_client,
        order=args.order,
        seed=args.seed,
        paired=args.paired,
        client_block=args.client_block,
        block_log=args.block_log,
        block_log_max_bytes=args.block_log_max_bytes,
        state=args.state,
        state_interval=args.state_interval,
        model=args.model,
    )


def _check_cluster_options(args: argparse.Namespace) -> None:
    """``--member``, ``--claim-ttl`` and ``--reclaim-delay`` need a store: ``--store`` or ``--workers``."""
    if args.store is None and args.workers is None:
        for name in CLUSTER_OPTIONS:
            if getattr(args, name) is not None:
                option = "--" + name.replace("_", "-")
                raise OptionError(option, "needs --store or --workers (a pool in a cluster store)")
    if args.client_block is not None and args.workers is not None:
        raise OptionError("--client-block", "is not supported with --store or --workers (a cluster store) yet")


def _cannot_start(parser: argparse.ArgumentParser, why: object) -> int:
    """One line on stderr for what keeps the proxy from starting (a store that cannot be reached): exit 1."""
    message = "; ".join(line.strip() for line in str(why).splitlines() if line.strip())
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 1


def _run_workers(config: ProxyConfig, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    group = Workers(config, args.workers, log_level=args.log_level)
    try:
        group.prepare()
    except OptionError as exc:
        return usage_error(parser, exc)
    except StoreError as exc:
        return _cannot_start(parser, exc)
    except OSError as exc:
        return _cannot_start(parser, f"--listen {endpoint_text(config.listen)}: {exc}")
    start_logging(args.log_level)
    try:
        return asyncio.run(supervise(group))
    finally:
        group.close()


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool proxy``; a bad option is one line on stderr and exit status 2, before anything listens; a
    store that cannot be reached at the start is one line and exit status 1."""
    try:
        config = config_from_args(args)
        config.validate()
        if config.metrics is not None:
            require_extra("--metrics", "metrics")
        _check_cluster_options(args)
        if args.workers is not None:
            check_workers(config, args.workers)
    except OptionError as exc:
        return usage_error(parser, exc)
    if args.workers is not None:
        return _run_workers(config, args, parser)
    # With --store and a --state file, the restored pool joins the cluster (and claims its ranges back): the
    # pool from the command line, built only to compare, stays out of it.
    rejoin = config.store is not None and config.state is not None and os.path.exists(config.state)
    try:
        pool = config.build_pool(join=not rejoin)  # with --store: joins the cluster
    except OptionError as exc:
        return usage_error(parser, exc)
    except StoreError as exc:
        return _cannot_start(parser, exc)
    start_logging(args.log_level)
    if config.state is not None:
        try:
            pool = restore_state(config.state, pool, config.cluster_options() if rejoin else {})
        except OptionError as exc:
            pool.close()
            return usage_error(parser, exc)
        except PoolConfigError as exc:  # the store's: another live member of that name, another configuration
            pool.close()
            return usage_error(parser, option_error(exc))
        except (SnapshotError, StoreError, OSError) as exc:
            pool.close()
            return _cannot_start(parser, f"--state {config.state}: {exc}")
    try:
        proxy = asyncio.run(serve(config, pool=pool))
    except OSError as exc:  # e.g. --listen already in use (serve has closed the pool)
        log.error("%s", exc)
        return 1
    return exit_status(proxy)
