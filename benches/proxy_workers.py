"""``natpool proxy --workers 2`` against ``--workers 1``: connections per second on the same loopback load.

Both proxies run side by side for the whole benchmark (each ``natpool proxy --workers N`` with its own temporary
SQLite store and its own pool in a random 127.X.Y.0/24), and the load goes to one or the other in alternating
rounds, 1, 2, 2, 1, 1, 2, ... (each pair mirrors the one before, so a drift of the shared machine weighs on both
alike); each setting's rounds are added up. The load: ``--concurrency`` clients at once, each connection opened,
answered by the backend (``--payload`` bytes, then the backend closes), read to its end and closed, until a
round's ``--connections`` are done. The clients and the backend are asyncio protocols in this process, on one
event loop, so the load generator takes a core's share too: on a 2-core machine the ratio says what a second
worker buys when the cores are shared with the rest of the stack, not what it would on idle cores. The CPU time
of the workers, of this process and of the whole machine (``/proc``) is reported per round, to say which.

Run by ``make bench`` before ``benches/report.py``, which puts the numbers in the report; alone:
``make bench-workers`` (about 10 s). A benchmark, not a test: it fails only if a
connection is not answered right or a proxy does not stop clean, never on its numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

HANG_GUARD = 60.0
"""Seconds after which a wait gives up: a guard against hangs, not a measurement."""


def order(rounds: int) -> list[int]:
    """The worker counts of ``rounds`` rounds: 1, 2, 2, 1, 1, 2, ..."""
    pairs = itertools.cycle([(1, 2), (2, 1)])
    return [count for pair in itertools.islice(pairs, (rounds + 1) // 2) for count in pair][:rounds]


class Answer(asyncio.Protocol):
    """The backend: sends the payload at once and closes first (so no lease is held down)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self.payload)
        transport.close()


class Reader(asyncio.Protocol):
    """A client: counts what it reads until the other side closes."""

    def __init__(self, done: asyncio.Future[int]) -> None:
        self.done = done
        self.received = 0

    def data_received(self, data: bytes) -> None:
        self.received += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.received)


async def connection(address: tuple[str, int], payload: int) -> bool:
    """One client connection through the proxy; whether it got the whole answer."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    transport, _ = await asyncio.wait_for(loop.create_connection(lambda: Reader(done), *address), HANG_GUARD)
    try:
        return await asyncio.wait_for(done, HANG_GUARD) == payload
    finally:
        transport.close()


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes ``pids`` have used so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O) since boot, all CPUs."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # without idle and iowait


@dataclass
class Round:
    workers: int
    connections: int
    seconds: float
    failed: int
    proxy_cpu: float
    """CPU seconds the proxy's workers used in the round."""
    load_cpu: float
    """CPU seconds this process (the clients and the backend) used in the round."""
    machine_cpu: float
    """CPU seconds the whole machine was busy in the round (the kernel's loopback work and others' too)."""

    @property
    def per_second(self) -> float:
        return self.connections / self.seconds


async def run_round(group: ProxyGroup, connections: int, concurrency: int, payload: int) -> Round:
    counter = itertools.count()
    failed = 0
    address = group.address

    async def client_loop() -> None:
        nonlocal failed
        while next(counter) < connections:
            try:
                ok = await connection(address, payload)
            except (OSError, TimeoutError):
                ok = False
            failed += not ok

    proxy_cpu, load_cpu, machine_cpu = cpu_seconds(group.pids), time.process_time(), machine_busy()
    start = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    seconds = time.perf_counter() - start
    proxy_cpu, load_cpu = cpu_seconds(group.pids) - proxy_cpu, time.process_time() - load_cpu
    return Round(group.workers, connections, seconds, failed, proxy_cpu, load_cpu, machine_busy() - machine_cpu)


class ProxyGroup:
    """``natpool proxy --workers N`` in a process of its own, its log drained by a thread."""

    def __init__(self, workers: int, backend: tuple[str, int], network: str) -> None:
        self.workers = workers
        args = ["--listen", "127.0.0.1:0", "--backend", f"{backend[0]}:{backend[1]}", "--pool", network]
        args += ["--hold-down", "0", "--drain-timeout", "5"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "natpool", "proxy", "--workers", str(workers), *args],
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        assert self.process.stderr is not None
        self.lines: list[str] = []
        listening = threading.Event()
        self.address = ("127.0.0.1", 0)
        self.pids: list[int] = []
        """The workers' processes."""

        def read() -> None:
            assert self.process.stderr is not None
            for line in self.process.stderr:
                self.lines.append(line)
                if found := re.search(rf"listening on 127\.0\.0\.1:(\d+) with {workers} workers", line):
                    self.address = ("127.0.0.1", int(found[1]))
                elif found := re.search(r"natpool.proxy INFO worker \d+: pid (\d+)", line):
                    self.pids.append(int(found[1]))
                    if len(self.pids) == workers:
                        listening.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not listening.wait(HANG_GUARD):
            self.process.kill()
            raise SystemExit(f"natpool proxy --workers {workers} did not start:\n{''.join(self.lines)}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(HANG_GUARD * 2)
        self.reader.join(HANG_GUARD)
        return status


def networks() -> Iterator[str]:
    """Distinct random /24s of 127.0.0.0/8, away from 127.0.0.0/16 (the tests draw from the same space)."""
    chooser = random.SystemRandom()
    seen: set[str] = set()
    while True:
        network = f"127.{chooser.randint(101, 254)}.{chooser.randint(0, 255)}.0/24"
        if network not in seen:
            seen.add(network)
            yield network


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


async def bench(args: argparse.Namespace) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    payload = b"x" * args.payload
    server = await loop.create_server(lambda: Answer(payload), "127.0.0.1", 0, backlog=1024)
    backend = server.sockets[0].getsockname()[:2]
    fresh = networks()
    before = loadavg()
    groups = {n: ProxyGroup(n, backend, next(fresh)) for n in (1, 2)}
    rounds: list[Round] = []
    statuses: dict[int, int] = {}
    try:
        for group in groups.values():  # warm up: the first subpools, the backend's accept queue
            await run_round(group, args.concurrency * 4, args.concurrency, args.payload)
        for n in order(args.rounds):
            done = await run_round(groups[n], args.connections, args.concurrency, args.payload)
            rounds.append(done)
            proxy, load, machine = (cpu / done.seconds for cpu in (done.proxy_cpu, done.load_cpu, done.machine_cpu))
            print(
                f"  round {len(rounds)}: --workers {n}: {done.per_second:,.0f} connections/s; cores busy: the proxy "
                f"{proxy:.2f}, the clients and the backend {load:.2f}, the machine {machine:.2f}",
                flush=True,
            )
    finally:
        for n, group in groups.items():
            statuses[n] = group.stop()
        server.close()
        await server.wait_closed()

    def total(n: int, what: str) -> float:
        return sum(getattr(r, what) for r in rounds if r.workers == n)  # type: ignore[no-any-return]

    per_second = {n: total(n, "connections") / total(n, "seconds") for n in (1, 2)}
    cores = {
        n: {what: total(n, f"{what}_cpu") / total(n, "seconds") for what in ("proxy", "load", "machine")}
        for n in (1, 2)
    }
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "connections": args.connections,
        "concurrency": args.concurrency,
        "payload": args.payload,
        "rounds": [asdict(r) for r in rounds],
        "per_second": {str(n): v for n, v in per_second.items()},
        "cores": {str(n): v for n, v in cores.items()},
        "ratio": per_second[2] / per_second[1],
        "failed": sum(r.failed for r in rounds),
        "exit_statuses": {str(n): s for n, s in statuses.items()},
        "load_before": before,
        "load_after": loadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=3000, help="connections per round")
    parser.add_argument("--concurrency", type=int, default=256, help="clients at once")
    parser.add_argument("--rounds", type=int, default=6, help="rounds, alternating 1 and 2 workers (even)")
    parser.add_argument("--payload", type=int, default=512, help="bytes the backend answers")
    parser.add_argument("--out", type=Path, default=Path("target/bench-proxy-workers.json"))
    args = parser.parse_args(argv)
    print(
        f"natpool proxy --workers 2 against --workers 1: {args.rounds} rounds of {args.connections:,} connections, "
        f"{args.concurrency} at once, {args.payload} bytes answered each",
        flush=True,
    )
    results = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    per_second = results["per_second"]
    assert isinstance(per_second, dict)
    print(
        f"  --workers 1: {per_second['1']:,.0f}/s, --workers 2: {per_second['2']:,.0f}/s: "
        f"{results['ratio']:.2f}x (load average {results['load_before']} before, {results['load_after']} after); "
        f"wrote {args.out}"
    )
    if results["failed"] or any(results["exit_statuses"].values()):  # type: ignore[attr-defined]
        print(f"FAILED: {results['failed']} connections, exit statuses {results['exit_statuses']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
