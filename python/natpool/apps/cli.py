"""The ``natpool`` command (also ``python -m natpool``).

``natpool simulate`` replays a server load balancer's connection workload on a
client NAT pool and reports on it; see :mod:`~natpool.apps.simulate`. ``natpool proxy``
runs a TCP load balancer with client NAT (:mod:`~natpool.apps.proxy`); ``natpool demo``
runs it on loopback under real connections and verifies it (:mod:`~natpool.apps.demo`).
Exit status: 0 on success, 1 when a run's invariant fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

import natpool
from natpool.apps import simulate
from natpool.apps.demo import command as demo
from natpool.apps.options import CommandParser
from natpool.apps.proxy import command as proxy
from natpool.apps.store import command as store

__all__ = ["main", "parser"]


def parser() -> argparse.ArgumentParser:
    """The ``natpool`` argument parser."""
    top = argparse.ArgumentParser(
        prog="natpool",
        description="Client NAT address pools for server load balancers (US patent 7,089,328).",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {natpool.__version__}")
    commands = top.add_subparsers(title="commands", metavar="COMMAND", required=True, parser_class=CommandParser)
    simulate.add_parser(commands)
    proxy.add_parser(commands)
    demo.add_parser(commands)
    store.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the ``natpool`` command with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    try:
        args = parser().parse_args(argv)
        status: int = args.handler(args, args.subparser)
    except SystemExit as exc:  # argparse: --help, --version and usage errors (status 2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("\nnatpool: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the report went away (`natpool simulate | head`)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
