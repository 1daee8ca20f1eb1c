"""``natpool proxy``: the command line of the load balancer, its signal handling and its exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from natpool.apps.logs import start_logging
from natpool.apps.options import (
    OptionError,
    count_at_least,
    parse_endpoint,
    parse_listen_endpoint,
    parse_non_negative,
    parse_pool,
    parse_ports,
    parse_positive,
    require_extra,
    usage_error,
)
from natpool.apps.proxy.config import BALANCE, SOURCES, ProxyConfig
from natpool.apps.proxy.limits import (
    DESCRIPTORS_PER_CONNECTION,
    RESERVED_DESCRIPTORS,
    connections_allowed,
    descriptor_limit,
)

__all__ = ["add_parser", "command", "config_from_args", "serve"]

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
            "when the connection ends. SIGTERM or SIGINT drains and stops it. Bad options exit 2."
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
        help="where clients connect (port 0: any)",
    )
    parser.add_argument(
        "--backend",
        type=parse_endpoint,
        action="append",
        required=True,
        metavar="HOST:PORT",
        help="a real server (repeat for more)",
    )
    parser.add_argument(
        "--pool", type=parse_pool, required=True, metavar="FIRST-LAST|CIDR", help="the client NAT addresses"
    )
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
        help="serve /metrics, /healthz and /lookup here",
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
    parser.add_argument(
        "--hold-down",
        type=parse_non_negative,
        default=d.hold_down,
        metavar="SECONDS",
        help="a lease is held this long before reuse when the proxy closed its upstream first (TIME_WAIT)",
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
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging")
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """The configuration the parsed arguments give (not yet checked)."""
    return ProxyConfig(
        listen=args.listen,
        backends=tuple(args.backend),
        pool=args.pool,
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
    )


async def serve(config: ProxyConfig, ready: asyncio.Event | None = None) -> int:
    """Run the proxy (and its endpoint) until SIGTERM or SIGINT, then drain and stop; returns the exit status."""
    from natpool.apps.proxy.server import Proxy

    proxy = Proxy(config)
    admin = None
    if config.metrics is not None:
        from natpool.apps.proxy.admin import Admin

        admin = Admin(proxy, config.metrics)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(proxy.events.asyncio_handler)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await proxy.start()
        if admin is not None:
            await admin.start()
        if ready is not None:
            ready.set()
        await stop.wait()
        log.info("signal received: stopping")
        await proxy.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if admin is not None:
            await admin.stop()
    return 0 if len(proxy.pool) == 0 else 1


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool proxy``; a bad option is one line on stderr and exit status 2, before anything listens."""
    try:
        config = config_from_args(args)
        config.check()
        if config.metrics is not None:
            require_extra("--metrics", "metrics")
    except OptionError as exc:
        return usage_error(parser, exc)
    start_logging(args.log_level)
    try:
        return asyncio.run(serve(config))
    except OSError as exc:  # e.g. --listen already in use
        log.error("%s", exc)
        return 1
