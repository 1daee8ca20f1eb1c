"""``--plot FILE.png``: the timeline of live leases and subpools, drawn by matplotlib (the extra natpool[plot])."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import natpool.apps.simulate
import pytest
from natpool.apps import cli
from netkit import HANG_GUARD


@pytest.mark.extra("plot")
def test_simulate_plots_its_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "simulate.png"
    assert cli.main(["simulate", "--connections", "20000", "--plot", str(plot)]) == 0
    assert f"plot written to {plot}" in capsys.readouterr().out
    assert plot.read_bytes().startswith(b"\x89PNG")


@pytest.mark.extra("plot")
def test_the_demo_plots_its_timeline(tmp_path: Path) -> None:
    plot = tmp_path / "demo.png"
    args = ["--connections", "100", "--concurrency", "8", "--plot", str(plot)]
    done = subprocess.run(  # a process of its own, so that the hang guard can stop it
        [sys.executable, "-m", "natpool", "demo", *args], capture_output=True, text=True, timeout=HANG_GUARD * 2
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"plot written to {plot}" in done.stdout
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_the_timeline_follows_the_simulation() -> None:
    timeline: list[tuple[float, int, int]] = []
    report = natpool.apps.simulate.run(
        natpool.apps.simulate.PoolConfig(initial_blocks=64, subpool_blocks=16),
        natpool.apps.simulate.Workload(connections=20000),
        timeline=timeline,
    )
    assert report.ok
    assert len(timeline) == natpool.apps.simulate.TIMELINE_SAMPLES
    times = [t for t, _, _ in timeline]
    assert times == sorted(times)
    assert max(live for _, live, _ in timeline) <= report.results.peak_live
    assert max(subpools for _, _, subpools in timeline) <= report.results.peak_subpools
    assert min(subpools for _, _, subpools in timeline[1:]) >= 1
