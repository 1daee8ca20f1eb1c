"""``natpool demo`` as a command: its own verification, pools in each form ``--pool`` takes, bad input."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from natpool.apps import cli
from natpool.apps.demo import command as demo_command
from natpool.apps.demo import ledger
from natpool.apps.demo.compare import order
from netkit import HANG_GUARD, needs_ipv6, random_network


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    """``natpool demo`` with a small load, in a process of its own so that the hang guard can stop it."""
    small = ["--connections", "60", "--concurrency", "4", "--backends", "2"]
    return subprocess.run(
        [sys.executable, "-m", "natpool", "demo", *small, *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD * 2,
        check=False,
    )


def test_the_demo_runs_on_a_pool_given_as_first_last() -> None:
    first = random_network().network_address + 1
    pool = f"{first}-{first + 4}"
    done = demo("--pool", pool)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"pool {pool}, ports 1024-65535" in done.stdout
    assert f"0 outside {pool}" in done.stdout
    assert "verification                ok" in done.stdout


def test_the_demo_runs_on_two_ranges_minus_an_exclusion() -> None:
    one, two = random_network().network_address + 1, random_network().network_address + 1
    pools = ["--pool", f"{one}-{one + 1}", "--pool", f"{two}", "--exclude", f"{one + 1}", "--exclude", f"{two}:1024"]
    done = demo(*pools, "--orders", "fifo,lifo")
    assert done.returncode == 0, done.stdout + done.stderr
    shape = f"{one}-{one + 1}, {two} minus {one + 1}, {two}:1024"
    assert f"pool {shape}, ports 1024-65535" in done.stdout and f"0 outside {shape}" in done.stdout


@needs_ipv6
def test_the_demo_on_ipv6_loopback() -> None:
    done = demo("--ipv6", "--compare")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "pool ::1, ports 1024-32767" in done.stdout and "0 outside ::1" in done.stdout
    assert "verification                ok" in done.stdout and "FAILED" not in done.stdout


def test_the_demo_on_ipv6_is_skipped_with_a_message_where_the_host_has_no_ipv6_loopback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_command, "missing_ipv6_loopback", lambda: "::1 cannot be bound (no IPv6)")
    assert cli.main(["demo", "--ipv6"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        "natpool demo: skipped: --ipv6 needs IPv6 loopback, and this host has none: ::1 cannot be bound (no IPv6)"
    ]


def test_the_demo_passes_its_own_verification_both_ways() -> None:
    args = ["--connections", "300", "--concurrency", "12", "--backends", "3", "--orders", "fifo", "--compare"]
    done = subprocess.run(  # a process of its own, so that the hang guard can stop it
        [sys.executable, "-m", "natpool", "demo", *args], capture_output=True, text=True, timeout=HANG_GUARD * 4
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert out.count("verification                ok") == 2  # the natpool run, and both sources' rounds compared
    assert "connections answered        300 of 300" in out
    assert "0 outside 127.0.100.0/24" in out
    assert "lookup(peer) named client   300 of 300" in out
    assert re.search(r"connections per second\s+[\d,]+\s+[\d,]+\s+[\d.]+x", out)


@pytest.mark.parametrize(
    "args",
    [
        ["--pool", "10.0.0.0/24"],
        ["--pool", "127.255.255.250-128.0.0.5"],
        ["--pool", "127.0.100.0-127.0.100.256"],
        ["--connections", "x"],
        ["--connections", "0"],
        ["--ports", "5-1"],
        ["--initial-blocks", "0"],
        ["--compare", "--rounds", "3"],
        ["--workers", "0"],
        ["--workers", "2", "--compare"],
        ["--workers", "2", "--plot", "timeline.png"],
        ["--workers", "2", "--reclaim-delay", "0"],
        ["--orders", "mru"],
        ["--orders", "fifo,lifo,fifo"],
        ["--orders", "fifo+hold+hold"],
        ["--orders", ""],
        ["--hold-down", "-1"],
        ["--workers", "2", "--orders", "fifo"],
        ["--pool", "::1"],  # an IPv6 pool needs --ipv6
        ["--ipv6", "--pool", "127.0.100.1"],
        ["--ipv6", "--pool", "::2"],  # not loopback
        ["--pool", "127.0.100.0/24", "--pool", "127.0.100.5"],  # overlapping ranges
        ["--exclude", "10.0.0.1"],  # outside the pool
    ],
)
def test_the_demo_rejects_bad_input_with_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", *args]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def orders_table(out: str) -> dict[str, list[str]]:
    """The rows of the ``--orders`` table: each order's label and its columns (4-tuples, NAT addresses, shortest
    reuse per backend, median reuse per backend, peak blocks, verification)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  order  "))
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[start + 1 :] if line.strip()]
    return {row[0]: row[1:] for row in rows}


def test_by_default_the_demo_runs_each_order_and_fifo_with_a_hold_down_and_reports_them() -> None:
    done = demo()
    assert done.returncode == 0, done.stdout + done.stderr
    table = orders_table(done.stdout)
    assert list(table) == ["fifo", "lifo", "random", "fifo, hold-down 1 s"]
    assert all(row[-1] == "ok" for row in table.values())
    assert "4 run(s) of 15 connections" in done.stdout  # the load split among them
    assert "order fifo; 4,096 bytes" in done.stdout  # the first is reported in full


def test_a_hold_down_longer_than_the_run_makes_every_connection_a_new_4_tuple_where_lifo_reuses_them() -> None:
    done = demo("--orders", "lifo,fifo+hold", "--hold-down", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    table = orders_table(done.stdout)
    lifo, held = table["lifo"], table["fifo, hold-down 60 s"]
    assert int(held[0]) == int(held[1]) == 30 and held[2:4] == ["-, -", "-, -"]  # 30 connections, none reused
    assert int(lifo[1]) <= int(lifo[0]) < 30 and int(lifo[1]) <= 8  # 4 at once: a few NAT addresses
    assert lifo[2].split(", ") == ["0", "0"]  # LIFO: the next connection after a close reuses its 4-tuple


def test_the_comparison_alternates_the_sources_in_mirrored_pairs() -> None:
    assert order(2) == ["pool", "kernel"]
    assert order(6) == ["pool", "kernel", "kernel", "pool", "pool", "kernel"]


def test_the_demo_through_two_workers_finds_no_address_held_by_both_at_once() -> None:
    """The ledger of the workers' leases and the backends' observations: nothing held twice at once, every peer
    address leased for its client, both workers served, the store empty of claims after."""
    args = ["--connections", "400", "--concurrency", "16", "--workers", "2", "--reclaim-delay", "0.2"]
    done = subprocess.run(  # a process of its own, so that the hang guard can stop it
        [sys.executable, "-m", "natpool", "demo", *args], capture_output=True, text=True, timeout=HANG_GUARD * 4
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "through natpool proxy --workers 2" in out
    assert "connections answered        400 of 400" in out
    per_worker = re.search(r"connections per worker\s+([\d,]+), ([\d,]+) \(members 1: \S+, 2: \S+\)", out)
    assert per_worker is not None, out
    served = [int(n.replace(",", "")) for n in per_worker.groups()]
    assert all(n > 0 for n in served) and sum(served) == 400  # 400 connections: both workers get some
    assert f"backends saw, by worker     {served[0]:,}, {served[1]:,}" in out
    assert re.search(
        r"lease ledger\s+400 leases of [\d,]+ addresses; [\d,]+ addresses held by more than one worker", out
    )
    assert "; 0 held by two at once" in out
    assert "peer leased for its client  400 of 400" in out
    assert "workers after the drain     1: ok, 0 live; 2: ok, 0 live" in out
    assert re.search(r"store after shutdown\s+0 members, 0 addresses claimed", out)
    assert "verification                ok" in out


def held(ip: str, port: int, worker: int, opened: float, closed: float, client: int = 1) -> ledger.Held:
    return ledger.Held(ip, port, worker, ("127.0.0.1", client), opened, closed)


def test_the_ledger_finds_an_address_held_twice_at_once() -> None:
    spans = [
        held("127.0.100.1", 1024, 1, 0.0, 1.0),
        held("127.0.100.1", 1024, 2, 2.0, 3.0),  # after worker 1: fine
        held("127.0.100.1", 1025, 1, 0.0, 10.0),
        held("127.0.100.1", 1025, 1, 1.0, 2.0),  # inside the first span
        held("127.0.100.1", 1025, 2, 5.0, 6.0),  # inside it too, another worker
        held("127.0.100.1", 1025, 2, 10.0, 11.0),  # touches its end: fine
    ]
    book = ledger.check(spans, [], [])
    assert (book.spans, book.addresses, book.shared) == (6, 2, 2)
    assert [(a.worker, a.opened, b.worker, b.opened) for a, b in book.overlaps] == [(1, 0.0, 1, 1.0), (1, 0.0, 2, 5.0)]
    assert not book.ok and "2 time(s) an address was held twice at once" in book.failures()[0]


def test_the_ledger_attributes_each_observation_to_the_worker_holding_the_address() -> None:
    spans = [held("127.0.100.1", 1024, 1, 0.0, 1.0, client=5), held("127.0.100.1", 1024, 2, 2.0, 3.0, client=6)]
    seen = [
        ledger.Seen("127.0.100.1", 1024, 0.5),
        ledger.Seen("127.0.100.1", 1024, 2.5),
        ledger.Seen("127.0.100.1", 1024, 1.5),  # between the spans: nobody held it
        ledger.Seen("127.0.100.2", 1024, 0.5),  # never leased
    ]
    answers = [
        (("127.0.0.1", 5), ("127.0.100.1", 1024)),
        (("127.0.0.1", 6), ("127.0.100.1", 1024)),
        (("127.0.0.1", 7), ("127.0.100.1", 1024)),  # not leased for this client
    ]
    book = ledger.check(spans, seen, answers)
    assert book.seen_by_worker == {1: 1, 2: 1}
    assert [(s.port, s.at) for s in book.unheld] == [(1024, 1.5), (1024, 0.5)]
    assert book.unmatched == [(("127.0.0.1", 7), ("127.0.100.1", 1024))]
    assert not book.overlaps and not book.ok and len(book.failures()) == 2
    assert ledger.check(spans, seen[:2], answers[:2]).ok
