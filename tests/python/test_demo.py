"""``natpool demo`` as a command: its own verification, pools in each form ``--pool`` takes, bad input."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from natpool.apps import cli
from natpool.apps.demo.compare import order
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


def test_the_demo_passes_its_own_verification_both_ways() -> None:
    args = ["--connections", "300", "--concurrency", "12", "--backends", "3", "--compare"]
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
    ],
)
def test_the_demo_rejects_bad_input_with_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", *args]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_the_comparison_alternates_the_sources_in_mirrored_pairs() -> None:
    assert order(2) == ["pool", "kernel"]
    assert order(6) == ["pool", "kernel", "kernel", "pool", "pool", "kernel"]
