"""Several processes share one pool through a store: disjoint leases, exact capacity, crashes.

The members are spawned processes (``multiprocessing``'s spawn start method),
each with a pool of ``storekit.POOL_IMPLS`` on the same store. Nothing is
asserted about durations: "not before" is checked with long delays right
after the event, "after" by polling with a hang guard, and the boundaries of a
hold exactly, with a settable clock on a store object of the test's own.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import signal
from pathlib import Path
from typing import Any

import natpool
from natpool.store import open_store
from storekit import WIDE, doomed_member, fresh_url, make_pool, sharing_member, wait_until

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl

SPAWN = multiprocessing.get_context("spawn")
GUARD = 120.0  # seconds: a hang guard, never a timing assertion


def collect(reports: Any, count: int) -> list[Any]:
    return [reports.get(timeout=GUARD) for _ in range(count)]


def test_four_processes_share_one_pool(pool_impl: str, kind: str, tmp_path: Path) -> None:
    url = fresh_url(kind, tmp_path)
    open_store(url).close()  # the tables, once, before the members race to join
    barrier = SPAWN.Barrier(4, timeout=GUARD)
    reports = SPAWN.Queue()
    freers = (0, 1)
    # initial_blocks 2: a member keeps little resident, so the freers return most of what they had
    overrides = {"initial_blocks": 2, "claim_ttl": 60.0, "reclaim_delay": 0.3, "renew_interval": 0}
    members = [
        SPAWN.Process(target=sharing_member, args=(pool_impl, url, i, freers, barrier, reports, overrides))
        for i in range(4)
    ]
    for process in members:
        process.start()
    try:
        # Sorted by kind: the queue does not keep one process's report behind another's
        # (each process's feeder thread sends it when it gets to it).
        messages = collect(reports, 12)
        full = {m[1]: m[2] for m in messages if m[0] == "full"}
        again = {m[1]: (m[2], m[3]) for m in messages if m[0] == "again"}
        ledgers = {m[1]: m[2] for m in messages if m[0] == "ledger"}
    finally:
        for process in members:
            process.join(GUARD)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in members] == [0, 0, 0, 0]

    # Phase 1: together exactly the capacity, every address once.
    first = [address for addresses in full.values() for address in addresses]
    assert len(first) == len(set(first)) == WIDE["max_blocks"]
    # Phase 2: p0 and p1 freed everything (keeping a subpool resident); p2 and p3 took what
    # they returned once its hold ended, and again every address is held by one member only.
    live = [address for addresses, _ in again.values() for address in addresses]
    assert len(live) == len(set(live))
    assert again["p0"][0] == again["p1"][0] == []
    kept = again["p0"][1] + again["p1"][1]
    assert len(live) + kept == WIDE["max_blocks"]
    gained = set(live) - set(full["p2"] + full["p3"])
    assert gained <= set(full["p0"] + full["p1"])
    assert len(gained) == len(full["p0"]) + len(full["p1"]) - kept
    # The ledgers: no address was ever held by two leases at once.
    spans = sorted(
        (address, start, end, member) for member, ledger in ledgers.items() for address, start, end in ledger
    )
    for (address, _, end, member), (next_address, start, _, next_member) in itertools.pairwise(spans):
        if address == next_address:
            assert end < start, f"{address} held by {member} and {next_member} at once"


def test_a_killed_members_ranges_wait_claim_ttl_plus_reclaim_delay(pool_impl: str, kind: str, tmp_path: Path) -> None:
    """Not before: right after the kill (claim_ttl 30 s, reclaim_delay 60 s) nobody gets the ranges,
    and by a clock set to the hold's last instant neither; by the hold's end they are free."""
    url = fresh_url(kind, tmp_path)
    victim_addresses = kill_a_member(pool_impl, url, {"claim_ttl": 30.0, "reclaim_delay": 60.0})
    store = open_store(url)
    victims = [c for c in store.claims("vip") if c.member == "victim"]
    assert [c.state for c in victims] == ["claimed"] * 2
    survivor = make_pool(pool_impl, store, "survivor", **WIDE, claim_ttl=30.0, reclaim_delay=60.0)
    got = []
    while True:
        try:
            got.append(survivor.allocate().address)
        except natpool.PoolExhausted:
            break
    assert len(got) == WIDE["max_blocks"] - 12 and not set(got) & set(victim_addresses)
    survivor.close()
    store.close()

    end = max(c.expires_at for c in victims) + 60.0  # the last renewal's expiry + reclaim_delay
    before = open_store(url, clock=lambda: end - 0.001)
    assert [c.state for c in before.claims("vip") if c.member == "victim"] == ["held"] * 2
    before.close()
    after = open_store(url, clock=lambda: end)
    assert [c for c in after.claims("vip") if c.member == "victim"] == []
    after.close()


def test_a_killed_members_ranges_are_claimed_after_the_hold(pool_impl: str, kind: str, tmp_path: Path) -> None:
    """After: with claim_ttl 0.5 s and reclaim_delay 0.3 s, a survivor polling for addresses gets the
    killed member's ranges, and the store granted them no earlier than the hold's end."""
    url = fresh_url(kind, tmp_path)
    victim_addresses = kill_a_member(pool_impl, url, {"claim_ttl": 0.5, "reclaim_delay": 0.3})
    store = open_store(url)
    last_expiry = max(c.expires_at for c in store.claims("vip") if c.member == "victim")
    survivor = make_pool(pool_impl, store, "survivor", **WIDE, claim_ttl=60.0, reclaim_delay=60.0)
    got: list[tuple[str, int]] = []

    def reached_the_victims_range() -> bool:
        try:
            got.append(survivor.allocate().address)
        except natpool.PoolExhausted:
            return False
        return victim_addresses[0] in got

    wait_until(reached_the_victims_range, "the survivor to get the killed member's addresses", GUARD, 0.005)
    claim = next(c for c in store.claims("vip") if c.member == "survivor" and c.first_port == 1000)
    assert claim.expires_at - 60.0 >= last_expiry + 0.3 - 1e-6  # granted at the hold's end or later
    survivor.close()
    store.close()


def kill_a_member(pool_impl: str, url: str, overrides: dict[str, Any]) -> list[tuple[str, int]]:
    """Start ``doomed_member``, wait for its addresses, SIGKILL it; return its addresses."""
    open_store(url).close()
    reports = SPAWN.Queue()
    process = SPAWN.Process(target=doomed_member, args=(pool_impl, url, overrides, reports))
    process.start()
    try:
        addresses: list[tuple[str, int]] = reports.get(timeout=GUARD)
    except queue.Empty:
        process.kill()
        raise
    finally:
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join(GUARD)
    assert process.exitcode == -signal.SIGKILL
    return addresses
