"""``natpool demo``: its options, parsed once into typed values, and runs on pools in each form ``--pool`` takes."""

from __future__ import annotations

import subprocess
import sys

from netkit import HANG_GUARD, random_network


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
