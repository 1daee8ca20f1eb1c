"""What ``natpool simulate`` replays: the simulated pool (either implementation) and the connection workload.

Arrivals are a seeded Poisson process whose rate follows a slow load cycle; lifetimes are heavy-tailed (Pareto with
shape 1.5 by default, or lognormal, or exponential) of a given mean, so a few long-lived connections pin the
subpools they hold. :func:`lifetime_sampler` draws them; the engine (:mod:`~natpool.apps.simulate.engine`) draws
the arrivals.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from natpool.apps.models import MODEL_NAMES, MODELS, PoolLike

__all__ = ["LIFETIME_SHAPES", "MODELS", "MODEL_NAMES", "PoolConfig", "PoolLike", "Workload", "lifetime_sampler"]

LIFETIME_SHAPES = {"pareto": 1.5, "lognormal": 1.2, "exponential": 1.0}
"""Shape of each lifetime distribution: Pareto's alpha, lognormal's sigma (exponential has none)."""


@dataclass(frozen=True)
class PoolConfig:
    """The simulated pool: the embedded default is 203.0.113.0/24, ports 1024-65535, the pool's default policies.

    Its addresses are ``first_ip, last_ip, netmask`` (IPv4), or ``ranges`` when given (``docs/shapes.md``: CIDR
    blocks, ``A-B``, single addresses, IPv4 or IPv6); ``exclude`` takes addresses out of either.
    """

    name: str = "simulate"
    first_ip: str = "203.0.113.0"
    last_ip: str = "203.0.113.255"
    netmask: int | str = 24
    ranges: tuple[str, ...] = ()
    """The pool's ranges; empty: ``first_ip, last_ip, netmask``."""
    exclude: tuple[str, ...] = ()
    ports: tuple[int, int] = (1024, 65535)
    initial_blocks: int = 4096
    subpool_blocks: int = 64
    max_blocks: int = 65536
    grow_threshold: int = 16
    order: str = "fifo"
    """The pool's reuse order (``fifo``, ``lifo``, ``random``)."""
    seed: int | None = None
    """The seed of ``order="random"``."""
    hold_down: float = 0.0
    """Seconds a freed address is held before reuse, on the simulated clock."""

    def build(self, model: str, clock: Callable[[], float] | None = None) -> PoolLike:
        """The pool of ``model``; ``clock``: the simulated clock it times its holds by (``None``: the monotonic one)."""
        addresses: dict[str, object] = (
            {"ranges": list(self.ranges)}
            if self.ranges
            else {"first_ip": self.first_ip, "last_ip": self.last_ip, "netmask": self.netmask}
        )
        return MODELS[model](
            self.name,
            **addresses,
            initial_blocks=self.initial_blocks,
            max_blocks=self.max_blocks,
            exclude=list(self.exclude) or None,
            ports=self.ports,
            subpool_blocks=self.subpool_blocks,
            grow_threshold=self.grow_threshold,
            hold_down=self.hold_down,
            clock=clock,
            order=self.order,
            seed=self.seed,
        )


@dataclass(frozen=True)
class Workload:
    """The replayed connection workload."""

    connections: int = 3_000_000
    rate: float = 2000.0
    """Mean arrival rate, connections per simulated second."""
    mean_lifetime: float = 5.0
    """Mean connection lifetime, simulated seconds."""
    lifetime: str = "pareto"
    wave_period: float = 200.0
    """Period of the load cycle, simulated seconds (0: a constant-rate Poisson process)."""
    swing: float = 0.8
    """Amplitude of the load cycles, as a fraction of the mean rate."""
    seed: int = 1
    lookup_every: int = 16


def lifetime_sampler(rng: random.Random, workload: Workload) -> Callable[[], float]:
    """A sampler of connection lifetimes with mean ``workload.mean_lifetime``."""
    mean = workload.mean_lifetime
    shape = LIFETIME_SHAPES[workload.lifetime]
    if workload.lifetime == "pareto":
        scale = mean * (shape - 1) / shape  # a Pareto(alpha) of minimum x_m has mean alpha * x_m / (alpha - 1)
        pareto = rng.paretovariate
        return lambda: scale * pareto(shape)
    if workload.lifetime == "lognormal":
        mu = math.log(mean) - shape * shape / 2
        lognormal = rng.lognormvariate
        return lambda: lognormal(mu, shape)
    rate = 1 / mean
    exponential = rng.expovariate
    return lambda: exponential(rate)
