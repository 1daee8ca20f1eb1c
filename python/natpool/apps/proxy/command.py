"""``natpool proxy``: the command line of the load balancer, its signal handling and its exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from natpool.apps.proxy.options import (
    BALANCE,
    SOURCES,
    OptionError,
    ProxyConfig,
    parse_endpoint,
    parse_pool,
    parse_ports,
    require_extra,
)

__all__ = ["LOG_FORMAT", "add_parser", "config_from_args", "serve", "usage_error"]

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"

log = logging.getLogger("natpool.proxy")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``proxy`` command to the ``natpool`` parser's subparsers."""
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
    )
    parser.add_argument("--listen", required=True, metavar="HOST:PORT", help="where clients connect (port 0: any)")
    parser.add_argument(
        "--backend", action="append", required=True, metavar="HOST:PORT", help="a real server (repeat for more)"
    )
    parser.add_argument("--pool", required=True, metavar="FIRST-LAST|CIDR", help="the client NAT addresses")
    parser.add_argument("--ports", default="1024-65535", metavar="LO-HI", help="the NAT ports of each address")
    parser.add_argument(
        "--initial-blocks", type=int, default=d.initial_blocks, metavar="N", help="blocks of the first subpool"
    )
    parser.add_argument("--max-blocks", type=int, default=d.max_blocks, metavar="N", help="live leases at most")
    parser.add_argument("--subpool-blocks", type=int, metavar="N", help="blocks of each later subpool")
    parser.add_argument("--balance", choices=BALANCE, default=d.balance, help="backend selection")
    parser.add_argument("--source", choices=SOURCES, default=d.source, help="pool: natpool leases; kernel: (ip, 0)")
    parser.add_argument("--metrics", metavar="HOST:PORT", help="serve /metrics, /healthz and /lookup here")
    parser.add_argument(
        "--bind-attempts", type=int, default=d.bind_attempts, metavar="N", help="NAT addresses tried per connection"
    )
    parser.add_argument(
        "--quarantine", type=float, default=d.quarantine, metavar="SECONDS", help="unbindable address kept out"
    )
    parser.add_argument(
        "--hold-down",
        type=float,
        default=d.hold_down,
        metavar="SECONDS",
        help="a lease is held this long before reuse when the proxy closed its upstream first (TIME_WAIT)",
    )
    parser.add_argument(
        "--down-time", type=float, default=d.down_time, metavar="SECONDS", help="a failed backend is skipped"
    )
    parser.add_argument(
        "--connect-timeout", type=float, default=d.connect_timeout, metavar="SECONDS", help="to a backend"
    )
    parser.add_argument(
        "--drain-timeout", type=float, default=d.drain_timeout, metavar="SECONDS", help="on SIGTERM/SIGINT"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="logging")
    parser.set_defaults(handler=command, subparser=parser)
    return parser


def config_from_args(args: argparse.Namespace) -> ProxyConfig:
    """The configuration the arguments give; :class:`OptionError` for an unparsable value."""
    return ProxyConfig(
        listen=parse_endpoint(args.listen, "--listen", allow_port_zero=True),
        backends=tuple(parse_endpoint(text, "--backend") for text in args.backend),
        pool=parse_pool(args.pool),
        ports=parse_ports(args.ports),
        initial_blocks=args.initial_blocks,
        max_blocks=args.max_blocks,
        subpool_blocks=args.subpool_blocks,
        balance=args.balance,
        metrics=None if args.metrics is None else parse_endpoint(args.metrics, "--metrics", allow_port_zero=True),
        source=args.source,
        bind_attempts=args.bind_attempts,
        quarantine=args.quarantine,
        hold_down=args.hold_down,
        down_time=args.down_time,
        connect_timeout=args.connect_timeout,
        drain_timeout=args.drain_timeout,
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


def usage_error(parser: argparse.ArgumentParser, error: OptionError) -> int:
    """Print ``error`` as one line naming the option; the exit status of a usage error, 2."""
    print(f"{parser.prog}: error: {error}", file=sys.stderr)
    return 2


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool proxy``; a bad option is one line on stderr and exit status 2, before anything listens."""
    try:
        config = config_from_args(args)
        config.check()
        if config.metrics is not None:
            require_extra("--metrics", "prometheus_client", "metrics")
    except OptionError as exc:
        return usage_error(parser, exc)
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)
    try:
        return asyncio.run(serve(config))
    except OSError as exc:  # e.g. --listen already in use
        log.error("%s", exc)
        return 1
