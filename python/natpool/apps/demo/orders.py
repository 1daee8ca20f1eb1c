"""``natpool demo --orders``: the demo's load split among the pool's reuse orders, each through a fresh proxy.

Each entry of ``--orders`` is a reuse order (``fifo``, ``lifo``, ``random``), or one with the demo's hold-down
(``fifo+hold``: the proxy's ``--hold-down`` is the demo's ``--hold-down``; the others run without one). Each runs
its share of the connections through a proxy and pool of its own, verified as any run is; what its backends saw
tells the orders apart: the distinct 4-tuples (NAT ip, NAT port, backend ip, backend port) and, per backend, the
reuse distance (:mod:`natpool.apps.reuse`: that backend's connections between two from one NAT address).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from natpool.apps.demo.run import DemoConfig, RunResult, run_once
from natpool.apps.options import ORDERS

__all__ = ["DEFAULT_ORDERS", "DemoOrder", "OrderRun", "parse_orders", "run_orders"]

HOLD = "+hold"


@dataclass(frozen=True)
class DemoOrder:
    """One run of ``--orders``: the pool's reuse order, with the demo's hold-down or without one."""

    order: str
    hold: bool = False

    def __str__(self) -> str:
        return self.order + (HOLD if self.hold else "")


def parse_orders(text: str) -> tuple[DemoOrder, ...]:
    """``ORDER[+hold],...``: each an order of the pool, at most once each."""
    orders = []
    for item in text.split(","):
        name, hold = item.strip().removesuffix(HOLD), item.strip().endswith(HOLD)
        if name not in ORDERS:
            raise argparse.ArgumentTypeError(f"{item.strip()!r} is not one of {', '.join(ORDERS)} (each +hold or not)")
        orders.append(DemoOrder(name, hold))
    if len(set(orders)) != len(orders):
        raise argparse.ArgumentTypeError(f"{text!r} names an order twice")
    return tuple(orders)


DEFAULT_ORDERS = "fifo,lifo,random,fifo+hold"
"""The default (fifo, the pool's default, first): the order before issue 11, lifo, and the two remedies."""


@dataclass
class OrderRun:
    """One order's run: its configuration (its share of the load, its order and hold-down) and its result."""

    order: DemoOrder
    config: DemoConfig
    result: RunResult


async def run_orders(config: DemoConfig, orders: tuple[DemoOrder, ...], hold_down: float) -> list[OrderRun]:
    """``config``'s load split evenly among ``orders``, one after the other, each through a fresh proxy and pool;
    ``hold_down``: the proxy's ``--hold-down`` in the runs with ``+hold``."""
    share = max(1, config.connections // len(orders))
    runs = []
    for order in orders:
        each = dataclasses.replace(
            config, connections=share, order=order.order, hold_down=hold_down if order.hold else 0.0
        )
        runs.append(OrderRun(order, each, await run_once(each, "pool")))
    return runs
