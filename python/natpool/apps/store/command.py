"""``natpool store status URL [--pool NAME] [--json]``: a cluster store's pools, members, claims and free space.

It only reads (``Store.pools`` and ``Store.status``), and never creates a store:
a ``sqlite:///`` URL whose file does not exist is an error. Exit status: 0, 1
when the store cannot be read or has no pool of that name, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from natpool.apps.options import CommandParser, OptionError, usage_error
from natpool.errors import NatPoolError, PoolConfigError
from natpool.extras import MissingExtra
from natpool.store import PoolStatus, Store, open_store
from natpool.store.url import sqlite_path

__all__ = ["add_parser", "command", "status_json", "status_text"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``store`` command (with its ``status`` subcommand) to the ``natpool`` parser's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "store",
        help="look at a cluster store (the shared interval list of pools on several processes or hosts)",
        description="Look at a cluster store: natpool store status URL.",
    )
    actions = parser.add_subparsers(title="actions", metavar="ACTION", required=True, parser_class=CommandParser)
    status = actions.add_parser(
        "status",
        help="pools, members, claims, held ranges and free addresses",
        description=(
            "Print a store's pools: their members, claims (claimed or held, in address order), and how many "
            "addresses are claimed, held and free. Reads only; never creates a store."
        ),
        brief_errors=True,
    )
    status.add_argument("url", metavar="URL", help="sqlite:///ABS/PATH or postgresql://USER@HOST:PORT/DATABASE")
    status.add_argument("--pool", metavar="NAME", help="only this pool (default: every pool in the store)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")
    status.set_defaults(handler=command, subparser=status)
    return parser


def _open(url: str) -> Store:
    """Open an existing store (a SQLite file must exist: status never creates one)."""
    if url.partition("://")[0].lower() == "sqlite":
        path = Path(sqlite_path(url))
        if not path.is_file():
            raise NatPoolError(f"no store at {path}: the file does not exist")
    return open_store(url)


def _claim(claim: Any) -> dict[str, Any]:
    return claim._asdict()  # type: ignore[no-any-return]


def status_json(url: str, statuses: list[PoolStatus]) -> dict[str, Any]:
    """The JSON form of the statuses."""
    pools = []
    for status in statuses:
        entry = status._asdict()
        entry["members"] = [member._asdict() for member in status.members]
        entry["claims"] = [_claim(claim) for claim in status.claims]
        pools.append(entry)
    return {"store": url, "pools": pools}


def _seconds(until: float, now: float) -> str:
    left = until - now
    return f"in {left:.1f} s" if left >= 0 else f"{-left:.1f} s ago"


def _addresses(config: dict[str, Any]) -> str:
    """A registered configuration's addresses: ``first-last`` (legacy), or its ranges and exclusions."""
    if "ranges" not in config:
        return f"{config['first_ip']}-{config['last_ip']}"
    text = ", ".join(first if first == last else f"{first}-{last}" for first, last in config["ranges"])
    excluded = config.get("exclude") or []
    return text + (f" excluding {', '.join(excluded)}" if excluded else "")


def _at(ip: str, port: int) -> str:
    """``ip:port``, the IPv6 address bracketed."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def status_text(url: str, statuses: list[PoolStatus]) -> str:
    """The human-readable form of the statuses."""
    lines = [f"store {url}"]
    if not statuses:
        lines.append("no pools")
    for status in statuses:
        config = status.config
        ports = config["ports"]
        lines.append("")
        lines.append(
            f"pool {status.name}: {_addresses(config)} ports {ports[0]}-{ports[1]}, "
            f"{status.address_count} addresses, capacity {status.capacity}"
        )
        lines.append(f"  {status.claimed} claimed, {status.held} held, {status.free} free")
        lines.append(f"  members: {len(status.members)}")
        for member in status.members:
            lines.append(
                f"    {member.member}: {member.claims} claims, {member.addresses} addresses, "
                f"heartbeat expires {_seconds(member.expires_at, status.now)}"
            )
        lines.append(f"  claims: {len(status.claims)}")
        for claim in status.claims:
            until = "expires" if claim.state == "claimed" else "free again"
            when = _seconds(claim.expires_at, status.now)
            lines.append(
                f"    {_at(claim.first_ip, claim.first_port)}-{_at(claim.last_ip, claim.last_port)} ({claim.count}) "
                f"{claim.state} by {claim.member}, epoch {claim.epoch}, {until} {when}"
            )
    return "\n".join(lines) + "\n"


def command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run ``natpool store status``; returns the exit status."""
    try:
        store = _open(args.url)
    except PoolConfigError as error:  # a malformed URL (field "store")
        return usage_error(parser, OptionError("URL", error.reason))
    except (NatPoolError, MissingExtra) as error:
        print(f"natpool store status: {error}", file=sys.stderr)
        return 1
    try:
        names = [args.pool] if args.pool is not None else store.pools()
        statuses = [store.status(name) for name in names]
    except NatPoolError as error:
        print(f"natpool store status: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(status_json(store.url, statuses), indent=2))
    else:
        print(status_text(store.url, statuses), end="")
    return 0
