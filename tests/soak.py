"""The soak (``make soak``, ``SOAK_MINUTES=N``): natpool proxy on loopback under a mixed load, checked as it runs.

The proxy runs in a process of its own, with ``RLIMIT_NOFILE`` 512 (so ``--max-connections`` is derived: 240),
``--idle-timeout 2``, ``--hold-down 2``, ``--down-time 1`` and its metrics endpoint. This process runs the
backends (natpool demo's: they read ``TOKEN SIZE``, answer a line and SIZE bytes, and close first) and a bounded
load, on one event loop:

- requests: 8 clients in a loop, each asking for 4 KiB; every answer is checked (token, length);
- resets mid-transfer: 10 clients a second ask for 1 MiB, read 64 KiB and reset (``SO_LINGER`` 0);
- idle clients: 4 a second connect and say nothing; the proxy must close them (``--idle-timeout``);
- a backend that dies and returns: the second backend stops listening for 5 s, at 10 s and 40 s of each minute;
- a flood past ``--max-connections``: at 30 s of each minute, 300 clients connect at once, then each asks.

Every minute it scrapes ``/metrics`` and checks that live leases equal the connections holding one (the addresses
held down or quarantined are the pool's, neither live nor free). At the end, once the last hold-down is over and one
more request has let the pool release the ended holds: the pool back at its baseline, the proxy's RSS flat, its log
bounded, SIGTERM answered with exit status 0 and no live lease. The report goes to stdout; the exit status is 1 if
a check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import re
import resource
import signal
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields

from natpool.apps.demo.backend import DemoBackend, parse_answer

RLIMIT = 512
IDLE_TIMEOUT, HOLD_DOWN, DOWN_TIME = 2.0, 2.0, 1.0
INITIAL_BLOCKS = SUBPOOL_BLOCKS = 64
REQUEST_LOOPS, REQUEST_BYTES = 8, 4096
RESETS_PER_SECOND, RESET_ASKED, RESET_READ = 10, 1 << 20, 64 << 10
IDLE_PER_SECOND = 4
DEATHS_AT, DEATH_LASTS = (10.0, 40.0), 5.0
FLOOD, FLOOD_AT = 300, 30.0
GUARD = 30.0
"""Seconds after which a client gives up on the proxy: a hang guard, not a measurement."""
RSS_GROWTH = 0.10
"""The most the proxy's RSS may grow from the end of the first minute (of a run of 2 minutes or more; else from
10 s after the first flood) to the end, and still be flat."""
LOG_LINES_PER_MINUTE = 60
"""At most a line a second on average: every flood of events is rate-limited."""
LIVE, LEASED, HELD = "natpool_live_leases", "natpool_proxy_leased_connections", "natpool_held_leases"
ACTIVE = "natpool_proxy_active_connections"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass
class Tally:
    """What the load saw in a minute (or in all)."""

    answered: int = 0
    no_answer: int = 0
    """Closed without an answer: sent to the dead backend before the proxy marked it down."""
    wrong: int = 0
    resets: int = 0
    idle_closed: int = 0
    idle_stuck: int = 0
    flood_opened: int = 0
    flood_answered: int = 0
    deaths: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def right(data: bytes, token: str, size: int) -> bool:
    """Whether ``data`` is the backend's answer to ``token``: its line, then ``size`` bytes."""
    line, _, body = data.partition(b"\n")
    try:
        return parse_answer(line).token == token and len(body) == size
    except ValueError:
        return False


@dataclass
class Load:
    """The load on the proxy at ``address``; ``tally[-1]`` counts the current minute."""

    address: tuple[str, int]
    backend: DemoBackend
    """The backend that dies and returns."""
    started: float = 0.0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tally: list[Tally] = field(default_factory=lambda: [Tally()])
    clients: set[asyncio.Task[None]] = field(default_factory=set)
    tokens: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def now(self) -> Tally:
        return self.tally[-1]

    def run(self) -> list[asyncio.Task[None]]:
        self.started = asyncio.get_running_loop().time()
        return [asyncio.ensure_future(c) for c in [*(self.requests() for _ in range(REQUEST_LOOPS)), *self.rest()]]

    def rest(self) -> list[Awaitable[None]]:
        return [
            self.every(1 / RESETS_PER_SECOND, self.reset_midway),
            self.every(1 / IDLE_PER_SECOND, self.stay_idle),
            self.backend_dies_and_returns(),
            self.floods(),
        ]

    async def until(self, second_of_minute: float, minute: int) -> bool:
        """Wait for that second of that minute of the load, unless it stops first; whether it goes on."""
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.started + minute * 60 + second_of_minute - loop.time())
        return not self.stop.is_set()

    async def every(self, seconds: float, client: Callable[[], Awaitable[None]]) -> None:
        for n in itertools.count(1):
            if not await self.until(n * seconds, 0):
                return
            task = asyncio.ensure_future(client())
            self.clients.add(task)
            task.add_done_callback(self.clients.discard)

    async def connect(self) -> Streams | None:
        """A connection to the proxy, or ``None`` (counted as a client left without an answer)."""
        try:
            return await asyncio.wait_for(asyncio.open_connection(*self.address), GUARD)
        except (OSError, TimeoutError):
            self.now.no_answer += 1
            return None

    async def ask(self, size: int, streams: Streams | None = None) -> None:
        """One request for ``size`` bytes through the proxy (on ``streams`` if connected), its answer checked."""
        token, data, flood = f"t{next(self.tokens)}", b"", streams is not None
        if streams is None and (streams := await self.connect()) is None:
            return
        reader, writer = streams
        try:
            writer.write(f"{token} {size}\n".encode())
            data = await asyncio.wait_for(reader.read(), GUARD)
        except (OSError, TimeoutError):
            pass
        finally:
            writer.close()
        if not data:
            self.now.no_answer += 1
        elif right(data, token, size):
            self.now.answered += 1
            if flood:
                self.now.flood_answered += 1
        else:
            self.now.wrong += 1

    async def requests(self) -> None:
        while not self.stop.is_set():
            await self.ask(REQUEST_BYTES)

    async def reset_midway(self) -> None:
        if (streams := await self.connect()) is None:
            return
        reader, writer = streams
        try:
            writer.write(f"r{next(self.tokens)} {RESET_ASKED}\n".encode())
            await asyncio.wait_for(reader.readexactly(RESET_READ), GUARD)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # its close is a reset
            self.now.resets += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            self.now.no_answer += 1
        finally:
            writer.transport.abort()

    async def stay_idle(self) -> None:
        if (streams := await self.connect()) is None:
            return
        reader, writer = streams
        try:
            await asyncio.wait_for(reader.read(), IDLE_TIMEOUT + GUARD)  # until the proxy closes it
            self.now.idle_closed += 1
        except ConnectionResetError:
            self.now.idle_closed += 1
        except TimeoutError:
            self.now.idle_stuck += 1
        finally:
            writer.close()

    async def backend_dies_and_returns(self) -> None:
        port = self.backend.address[1]
        for minute in itertools.count():
            for second in DEATHS_AT:
                if not await self.until(second, minute):
                    return
                await self.backend.stop()
                self.now.deaths += 1
                await asyncio.sleep(DEATH_LASTS)
                await self.backend.start(port=port)

    async def floods(self) -> None:
        for minute in itertools.count():
            if not await self.until(FLOOD_AT, minute):
                return
            opened = await asyncio.gather(
                *(asyncio.wait_for(asyncio.open_connection(*self.address), GUARD) for _ in range(FLOOD)),
                return_exceptions=True,
            )
            streams = [s for s in opened if isinstance(s, tuple)]  # more than --max-connections: some wait
            self.now.flood_opened += len(streams)
            self.now.no_answer += FLOOD - len(streams)
            await asyncio.gather(*(self.ask(64, s) for s in streams))

    async def end(self, load: list[asyncio.Task[None]]) -> Tally:
        self.stop.set()
        await asyncio.gather(*load)
        if self.clients:
            await asyncio.wait(set(self.clients), timeout=GUARD * 2)
        return sum(self.tally, Tally())


class ProxyProcess:
    """``natpool proxy`` in a process of its own: its log (stderr, read as it comes), metrics and memory."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done when the metrics endpoint listens (the proxy's last line on starting)."""
        self.reading = asyncio.ensure_future(self._read())
        self.metrics_port = 0

    @classmethod
    async def start(cls, pool: str, backends: list[DemoBackend]) -> ProxyProcess:
        rlimit = f"import resource, sys; resource.setrlimit(resource.RLIMIT_NOFILE, ({RLIMIT}, {RLIMIT}))"
        code = rlimit + "; from natpool.apps.cli import main; sys.exit(main(sys.argv[1:]))"
        args = ["proxy", "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--pool", pool]
        args += [arg for b in backends for arg in ("--backend", "{}:{}".format(*b.address))]
        args += [
            "--idle-timeout",
            f"{IDLE_TIMEOUT:g}",
            "--hold-down",
            f"{HOLD_DOWN:g}",
            "--down-time",
            f"{DOWN_TIME:g}",
        ]
        args += [
            "--connect-timeout",
            "1",
            "--initial-blocks",
            f"{INITIAL_BLOCKS}",
            "--subpool-blocks",
            f"{SUBPOOL_BLOCKS}",
        ]
        proxy = cls(
            await asyncio.create_subprocess_exec(sys.executable, "-c", code, *args, stderr=asyncio.subprocess.PIPE)
        )
        await asyncio.wait_for(proxy.ready, GUARD)
        proxy.metrics_port = proxy.found(r"on http://127\.0\.0\.1:(\d+)/")
        return proxy

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while line := (await self.process.stderr.readline()).decode():
            self.lines.append(line)
            if not self.ready.done() and "on http://" in line:
                self.ready.set_result(None)
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("the proxy ended: " + "".join(self.lines)))

    def found(self, pattern: str) -> int:
        """The number in group 1 of the first log line matching ``pattern``."""
        return int(next(m[1] for line in self.lines if (m := re.search(pattern, line))).replace(",", ""))

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

    async def metrics(self) -> dict[str, float]:
        """The proxy's ``/metrics`` (unlabelled samples), from one scrape: one consistent moment of the proxy."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.metrics_port), GUARD)
        try:
            writer.write(b"GET /metrics HTTP/1.0\r\n\r\n")
            text = (await asyncio.wait_for(reader.read(), GUARD)).decode()
        finally:
            writer.close()
        samples = (line.split() for line in text.partition("\r\n\r\n")[2].splitlines() if line[:1].isalpha())
        return {name: float(value) for name, value in samples if "{" not in name}

    async def stop(self) -> int:
        """SIGTERM; the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            status = await asyncio.wait_for(self.process.wait(), GUARD)
        except TimeoutError:
            self.process.kill()
            status = await self.process.wait()
        await self.reading
        return status


def pool_network() -> str:
    """A /24 in 127.0.0.0/8 away from 127.0.0.0/16, drawn at random (as the tests do), so runs side by side differ."""
    draw = random.SystemRandom()
    return f"127.{draw.randint(101, 254)}.{draw.randint(0, 255)}.0/24"


def header(minutes: float, pid: int, derived: int, pool: str) -> str:
    return "\n".join(
        [
            f"natpool soak: {minutes:g} minute(s) of mixed load through natpool proxy on loopback (pid {pid})",
            f"  proxy: RLIMIT_NOFILE {RLIMIT} -> --max-connections {derived} (derived), --idle-timeout "
            f"{IDLE_TIMEOUT:g}s, --hold-down {HOLD_DOWN:g}s, --down-time {DOWN_TIME:g}s",
            f"  pool {pool}, ports 1024-65535, initial_blocks {INITIAL_BLOCKS}, subpool_blocks {SUBPOOL_BLOCKS}",
            f"  load: {REQUEST_LOOPS} request loops ({REQUEST_BYTES:,} B answers), {RESETS_PER_SECOND} resets/s "
            f"mid-transfer ({RESET_READ >> 10} KiB of {RESET_ASKED >> 20} MiB read), {IDLE_PER_SECOND} idle clients/s,",
            f"        backend 2 of 2 down {DEATH_LASTS:g}s at {' and '.join(f'{s:g}' for s in DEATHS_AT)}s of each "
            f"minute, {FLOOD} clients at once at {FLOOD_AT:g}s of each minute",
            "",
            "  minute  answered  no answer  wrong  resets  idle closed  flood answered  deaths"
            "  live = leased  held      active  RSS MiB  log lines",
        ]
    )


def row(minute: int, t: Tally, m: dict[str, float], rss: float, lines: int) -> str:
    live, leased, held = int(m[LIVE]), int(m[LEASED]), int(m[HELD])
    accounted = "ok" if live == leased else "NO"
    return (
        f"  {minute:>6}  {t.answered:>8,}  {t.no_answer:>9,}  {t.wrong:>5}  {t.resets:>6,}  {t.idle_closed:>11,}"
        f"  {t.flood_answered:>7,} of {t.flood_opened:<4}  {t.deaths:>6}"
        f"  {live:>4} = {leased:>6}  {accounted}  {held:>4}  {int(m[ACTIVE]):>6}  {rss:>7.1f}  {lines:>9}"
    )


async def settle(proxy: ProxyProcess, load: Load) -> dict[str, float]:
    """The metrics once no connection is open and the last hold-down is over (or the hang guard is up).

    The pool releases ended holds at an allocation: after the hold-down, one more request lets it release them.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD
    while ((m := await proxy.metrics())[LIVE] or m[ACTIVE]) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(HOLD_DOWN)
    await load.ask(REQUEST_BYTES)
    while ((m := await proxy.metrics())[LIVE] or m[ACTIVE]) and loop.time() < deadline:
        await asyncio.sleep(0.2)
    return m


async def soak(minutes: float) -> int:
    backends = [DemoBackend(i, lambda ip, port: "-") for i in range(2)]
    for backend in backends:
        await backend.start()
    pool = pool_network()
    proxy = await ProxyProcess.start(pool, backends)
    failures: list[str] = []
    try:
        print(header(minutes, proxy.process.pid, proxy.found(r"at most ([\d,]+) connections"), pool), flush=True)
        load = Load(("127.0.0.1", proxy.found(r"listening on 127\.0\.0\.1:(\d+)")), backends[1])
        tasks = load.run()
        loop = asyncio.get_running_loop()
        end = load.started + minutes * 60
        rss: list[tuple[float, float]] = []
        while (left := end - loop.time()) > 0:
            await asyncio.sleep(min(10.0, left))
            rss.append((loop.time() - load.started, proxy.rss_mib()))
            if loop.time() - load.started < len(load.tally) * 60 - 0.5 and loop.time() < end:
                continue
            m = await proxy.metrics()  # once a minute
            if m[LIVE] != m[LEASED]:
                failures.append(f"minute {len(load.tally)}: {m[LIVE]:g} live leases, {m[LEASED]:g} leased")
            prefix = pool.rsplit(".", 1)[0] + "."
            if outside := sum(not peer.ip.startswith(prefix) for b in backends for peer in b.peers):
                failures.append(f"minute {len(load.tally)}: {outside} peer addresses outside the pool")
            for backend in backends:
                backend.peers.clear()
            print(row(len(load.tally), load.now, m, rss[-1][1], len(proxy.lines)), flush=True)
            load.tally.append(Tally())
        total = await load.end(tasks)
        m = await settle(proxy, load)
    finally:
        status = await proxy.stop()
        for backend in backends:
            await backend.stop()

    print()
    print(
        f"  in all        {total.answered:,} answered right, {total.no_answer:,} closed without an answer, "
        f"{total.wrong} wrong; {total.resets:,} resets mid-transfer; {total.idle_closed:,} idle clients closed "
        f"by the proxy ({total.idle_stuck} not); floods: {total.flood_answered:,} of {total.flood_opened:,} "
        f"answered; {total.deaths} backend deaths"
    )
    print(
        f"  proxy counts  {m['natpool_proxy_accepted_total']:,.0f} accepted, {m['natpool_allocations_total']:,.0f} "
        f"allocations, {m['natpool_bind_retries_total']:,.0f} bind retries, "
        f"{m['natpool_proxy_backend_failures_total']:,.0f} backend failures, "
        f"{m['natpool_proxy_idle_timeouts_total']:,.0f} idle timeouts, "
        f"{m['natpool_proxy_resource_failures_total']:,.0f} out of descriptors, "
        f"{m['natpool_proxy_errors_total']:,.0f} errors"
    )
    for what, bad in [
        (f"{total.wrong} wrong answers", total.wrong),
        (f"{total.idle_stuck} idle clients not closed by the proxy", total.idle_stuck),
        ("the load did not run", not total.answered or not total.flood_opened),
        ("the flood never reached --max-connections", not any("accepting paused" in x for x in proxy.lines)),
    ]:
        if bad:
            failures.append(what)

    free, held, blocks = m["natpool_free_blocks"], m[HELD], m["natpool_blocks"]
    baseline = m[LIVE] == m[ACTIVE] == 0 and free + held == blocks <= INITIAL_BLOCKS and held <= 1
    print(
        f"  after load    pool: {m[LIVE]:.0f} live leases, {held:.0f} held (the last request's), {free:.0f} free of "
        f"{m['natpool_blocks']:.0f} blocks in {m['natpool_subpools']:.0f} subpool(s), "
        f"{m['natpool_intervals']:.0f} interval(s): {'baseline' if baseline else 'NOT AT BASELINE'}"
    )
    if not baseline:
        failures.append("the pool is not back at its baseline")

    at = 60.0 if minutes >= 2 else FLOOD_AT + 10  # after the first minute, or at least after the first flood
    before = [r for t, r in rss if t <= at + 1][-1]
    after, peak = rss[-1][1], max(r for _, r in rss)
    flat = after <= before * (1 + RSS_GROWTH)
    print(
        f"  memory (RSS)  {before:.1f} MiB at {at:g}s, {after:.1f} MiB at the end "
        f"({(after / before - 1) * 100:+.1f}%), peak {peak:.1f} MiB: {'flat' if flat else 'GROWING'}"
    )
    if not flat:
        failures.append(f"the proxy's RSS grew more than {RSS_GROWTH:.0%}")

    traceback = any("Traceback" in line for line in proxy.lines)
    paused = sum("accepting paused" in line for line in proxy.lines)
    bounded = len(proxy.lines) <= LOG_LINES_PER_MINUTE * max(1.0, minutes) + 10 and not traceback
    print(
        f"  log           {len(proxy.lines)} lines in {minutes:g} min ({paused} on accepting paused at "
        f"--max-connections), {'a' if traceback else 'no'} traceback: {'bounded' if bounded else 'NOT BOUNDED'}"
    )
    if not bounded:
        failures.append("the proxy's log is not bounded")

    final = proxy.lines[-1].strip() if proxy.lines else ""
    live = re.search(r"pool: (\d+) live leases", final)
    print(f"  SIGTERM       exit status {status}; its last line: {final[final.find('stopped:') :]}")
    if status != 0 or live is None or live[1] != "0":
        failures.append("the proxy did not stop cleanly with no live lease")

    for failure in failures:
        print(f"  FAILED: {failure}")
    if failures:
        print("  the proxy's log, last lines:\n" + "".join(f"    {line}" for line in proxy.lines[-20:]), end="")
    print(f"soak: {'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="how long the load runs (5)")
    args = parser.parse_args()
    if not args.minutes > 0:
        parser.error("--minutes must be positive")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard or (soft < 4096 and hard == resource.RLIM_INFINITY):  # the flood's sockets, both ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    return asyncio.run(soak(args.minutes))


if __name__ == "__main__":
    raise SystemExit(main())
