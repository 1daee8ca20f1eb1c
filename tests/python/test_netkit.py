"""The loopback test kit draws its random networks and ports from one seed, logged and settable, so a run replays."""

from __future__ import annotations

import os
import subprocess
import sys

import netkit
import pytest


def draws() -> list[object]:
    return [(netkit.random_network(), netkit.pool_range(netkit.random_network(), ips=2, ports=4)) for _ in range(8)]


def test_a_tests_networks_and_ports_follow_from_the_seed_and_its_name() -> None:
    netkit.reseed("a test")
    first = draws()
    netkit.reseed("a test")
    assert draws() == first
    netkit.reseed("another test")
    assert draws() != first


def test_the_seed_is_in_the_header_and_natpool_test_seed_sets_it(request: pytest.FixtureRequest) -> None:
    here = os.path.dirname(__file__)
    env = dict(os.environ, NATPOOL_TEST_SEED="4242")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-p",
            "no:cacheprovider",
            os.path.join(here, "test_netkit.py"),
        ],
        cwd=request.config.rootpath,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "natpool test seed: 4242 (NATPOOL_TEST_SEED=4242 replays" in done.stdout
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
    seed = subprocess.run(
        [sys.executable, "-c", "import netkit; print(netkit.SEED)"], env=env, capture_output=True, text=True, check=True
    )
    assert seed.stdout == "4242\n"
