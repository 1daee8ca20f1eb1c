"""The ``natpool`` command: ``natpool simulate`` on both implementations, its report and its errors."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import natpool
import natpool.apps.simulate
import natpool.reference
import pytest
from natpool.apps.cli import main

MODELS = ["rust", "reference"]

# A small pool (4 IPs x 100 ports = 400 addresses) with tiny subpools, and a workload whose
# load cycle makes it grow and release subpools many times.
SMALL = [
    "simulate",
    "--first-ip",
    "198.51.100.1",
    "--last-ip",
    "198.51.100.4",
    "--netmask",
    "24",
    "--ports",
    "1000-1099",
    "--initial-blocks",
    "32",
    "--subpool-blocks",
    "8",
    "--grow-threshold",
    "2",
    "--connections",
    "3000",
    "--rate",
    "50",
    "--mean-lifetime",
    "2",
    "--wave-period",
    "40",
    "--lookup-every",
    "4",
]


def simulate_json(capsys: pytest.CaptureFixture[str], *args: str, status: int = 0) -> dict[str, Any]:
    """Run ``natpool simulate --json`` in-process; check the exit status and return the parsed report."""
    assert main([*args, "--json"]) == status
    out = capsys.readouterr().out
    report: dict[str, Any] = json.loads(out)
    return report


@pytest.mark.parametrize("model", MODELS)
def test_report_numbers_are_consistent(capsys: pytest.CaptureFixture[str], model: str) -> None:
    report = simulate_json(capsys, *SMALL, "--model", model)
    results = report["results"]
    assert report["model"] == model
    assert report["invariants"] == {"ok": True, "failures": []}
    assert report["pool"]["address_count"] == 400
    assert report["pool"]["capacity"] == 400
    assert results["offered"] == 3000
    assert results["served"] + results["refused"] == results["offered"]
    assert results["refused"] == 0
    assert 0 < results["peak_live"] <= report["pool"]["capacity"]
    # The load cycle makes subpools come and go while the workload runs, not only in the close-out.
    assert results["subpools_created"] > results["peak_subpools"] > 1
    assert results["subpools_deleted"] - results["subpools_deleted_at_end"] > 0
    assert results["subpools_created"] - results["subpools_deleted"] == results["final_subpools"] >= 1
    assert results["final_blocks"] >= 32  # the initial allocation stays resident
    assert 1 <= results["final_intervals"] <= results["peak_intervals"]
    assert results["peak_intervals"] >= results["peak_subpools"]
    assert results["lookups"] > 0
    assert results["lookup_mismatches"] == 0
    assert results["accounting_errors"] == 0
    timing = report["timing"]
    assert timing["allocations"] == results["served"]
    assert timing["allocate_calls"] == results["offered"]
    assert timing["free_calls"] == results["served"]


@pytest.mark.parametrize("model", MODELS)
def test_tiny_max_blocks_refuses_connections(capsys: pytest.CaptureFixture[str], model: str) -> None:
    report = simulate_json(capsys, *SMALL, "--model", model, "--max-blocks", "40")
    results = report["results"]
    assert report["pool"]["capacity"] == 40
    assert report["invariants"]["ok"] is True  # exhaustion refuses connections; it is no failure
    assert results["refused"] > 0
    assert results["served"] + results["refused"] == results["offered"] == 3000
    assert results["peak_live"] == 40
    assert results["accounting_errors"] == 0


def test_max_blocks_below_the_default_initial_blocks_clips_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    report = simulate_json(capsys, "simulate", "--connections", "3000", "--max-blocks", "100", "--model", "reference")
    assert report["pool"]["initial_blocks"] == 100
    assert report["pool"]["capacity"] == 100
    assert report["results"]["refused"] > 0
    assert report["results"]["peak_live"] == 100


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_gives_the_same_counts(capsys: pytest.CaptureFixture[str], model: str) -> None:
    first = simulate_json(capsys, *SMALL, "--model", model, "--seed", "7")
    again = simulate_json(capsys, *SMALL, "--model", model, "--seed", "7")
    other = simulate_json(capsys, *SMALL, "--model", model, "--seed", "8")
    assert first["results"] == again["results"]
    assert first["results"] != other["results"]


def test_rust_core_and_reference_model_report_the_same_counts(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in ([], ["--max-blocks", "60", "--lifetime", "lognormal"]):
        rust = simulate_json(capsys, *SMALL, *extra, "--model", "rust")
        reference = simulate_json(capsys, *SMALL, *extra, "--model", "reference")
        assert rust["results"] == reference["results"]


ONE_SUBPOOL = [*SMALL, "--initial-blocks", "400"]
"""SMALL with one subpool of all 400 addresses: the reuse order decides which free address comes next."""


def reuse(report: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = report["results"]["reuse"]
    assert summary["allocations"] == report["results"]["served"]
    assert summary["distinct"] + summary["reuses"] == summary["allocations"]
    return summary


@pytest.mark.parametrize("model", MODELS)
def test_fifo_reuses_an_address_after_every_other_free_one_and_lifo_at_once(
    capsys: pytest.CaptureFixture[str], model: str
) -> None:
    """One subpool of all 400 addresses: in FIFO order a freed address waits behind every other free one (at least
    400 - peak live of them); in LIFO order the next allocation after a free takes it."""
    fifo = simulate_json(capsys, *ONE_SUBPOOL, "--model", model, "--order", "fifo")
    lifo = simulate_json(capsys, *ONE_SUBPOOL, "--model", model, "--order", "lifo")
    assert (fifo["pool"]["order"], lifo["pool"]["order"]) == ("fifo", "lifo")
    assert fifo["invariants"]["ok"] and lifo["invariants"]["ok"]
    assert reuse(fifo)["shortest"] >= 400 - fifo["results"]["peak_live"] > 0
    assert reuse(lifo)["shortest"] == 0


def test_random_order_is_seeded_by_seed_and_the_same_in_both_implementations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    runs = {
        (model, seed): simulate_json(capsys, *ONE_SUBPOOL, "--model", model, "--order", "random", "--seed", seed)
        for model in MODELS
        for seed in ("7", "8")
    }
    assert runs["rust", "7"]["pool"]["seed"] == 7
    assert runs["rust", "7"]["results"] == runs["reference", "7"]["results"]
    assert runs["rust", "8"]["results"] == runs["reference", "8"]["results"]
    fifo = simulate_json(capsys, *ONE_SUBPOOL, "--seed", "7")
    assert fifo["pool"]["seed"] is None  # the seed is the workload's alone in the other orders
    assert reuse(runs["rust", "7"]) != reuse(runs["rust", "8"])
    assert reuse(runs["rust", "7"]) != reuse(fifo)


@pytest.mark.parametrize("model", MODELS)
def test_a_hold_down_is_held_on_the_simulated_clock(capsys: pytest.CaptureFixture[str], model: str) -> None:
    """5 simulated seconds of hold-down in a run of about 0.1 s of wall clock: addresses come back (on the real
    clock no hold would end and none would), later than without the hold, and all are held at the end."""
    plain = simulate_json(capsys, *SMALL, "--model", model)
    held = simulate_json(capsys, *SMALL, "--model", model, "--hold-down", "5")
    assert held["pool"]["hold_down"] == 5 and held["invariants"]["ok"]
    assert reuse(held)["reuses"] > 0
    assert reuse(held)["shortest"] > reuse(plain)["shortest"]
    assert 0 < held["results"]["held_at_end"] <= reuse(held)["distinct"]  # the last frees' holds have not ended
    assert plain["results"]["held_at_end"] == 0


def test_the_policies_give_the_same_counts_in_both_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--order", "lifo"], ["--hold-down", "3", "--max-blocks", "200"]):
        rust = simulate_json(capsys, *SMALL, *extra, "--model", "rust")
        reference = simulate_json(capsys, *SMALL, *extra, "--model", "reference")
        assert rust["results"] == reference["results"]


WORKLOAD = SMALL[SMALL.index("--initial-blocks") :]
"""SMALL's pool sizes and workload, without its addresses."""


def test_several_pool_ranges_minus_exclusions_in_both_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    shape = ["--pool", "198.51.100.9", "--pool", "198.51.100.1-198.51.100.2", "--ports", "1000-1099"]
    shape += ["--exclude", "198.51.100.2:1000-1049", "--exclude", "198.51.100.1:1099"]
    rust, reference = (simulate_json(capsys, "simulate", *shape, *WORKLOAD, "--model", m) for m in MODELS)
    assert rust["pool"]["address_count"] == 300 - 50 - 1 == rust["pool"]["capacity"]
    assert rust["pool"]["ranges"] == ["198.51.100.9", "198.51.100.1-198.51.100.2"]
    assert rust["pool"]["exclude"] == ["198.51.100.2:1000-1049", "198.51.100.1:1099"]
    assert rust["invariants"] == {"ok": True, "failures": []} and rust["results"]["refused"] == 0
    assert rust["results"] == reference["results"]


def test_an_ipv6_pool_in_both_implementations(capsys: pytest.CaptureFixture[str]) -> None:
    shape = ["--pool", "2001:db8::/64", "--exclude", "[2001:db8::1]:1000-1009", "--ports", "1000-1099"]
    rust, reference = (simulate_json(capsys, "simulate", *shape, *WORKLOAD, "--model", m) for m in MODELS)
    assert rust["pool"]["address_count"] == (2**64 - 1) * 100 - 10  # without the subnet-router anycast address
    assert rust["pool"]["capacity"] == 65536
    assert rust["invariants"] == {"ok": True, "failures": []}
    assert rust["results"] == reference["results"]
    assert main(["simulate", *shape, *WORKLOAD]) == 0
    assert "pool      simulate: 2001:db8::/64 minus [2001:db8::1]:1000-1009, ports 1000-1099" in capsys.readouterr().out


@pytest.mark.parametrize("lifetime", ["pareto", "lognormal", "exponential"])
def test_lifetime_distributions_and_constant_rate(capsys: pytest.CaptureFixture[str], lifetime: str) -> None:
    report = simulate_json(capsys, *SMALL, "--lifetime", lifetime, "--wave-period", "0")
    assert report["workload"]["lifetime"] == lifetime
    assert report["workload"]["wave_period"] == 0
    assert report["invariants"]["ok"] is True
    assert report["results"]["served"] == 3000


def test_text_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--max-blocks", "40"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress when stderr is not a terminal
    out = captured.out
    assert out.startswith("natpool simulate: model rust (natpool.Pool)\n")
    for label in (
        "connections served",
        "refused (exhaustion)",
        "peak live leases",
        "subpools created/deleted",
        "interval list length",
        "lookups checked",
        "addresses used",
        "reuse distance",
        "allocations per second",
    ):
        assert label in out
    assert "peak live leases          40\n" in out
    assert out.rstrip().endswith("invariants                ok")


def test_progress_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*SMALL, "--progress"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert 10 <= len(lines) <= 11
    assert all(line.startswith("natpool simulate: ") for line in lines)
    assert "100% 3,000/3,000 connections" in lines[-1]
    assert main([*SMALL, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


class _LookupReturnsNothing(natpool.reference.Pool):
    def lookup(self, ip: Any, port: int) -> Any:
        return None


class _LeaksALease(natpool.reference.Pool):
    def free(self, lease_or_handle: Any) -> None:
        if len(self) == 1:
            return  # the last connection's lease is never returned
        super().free(lease_or_handle)


@pytest.mark.parametrize(
    ("broken", "failure"),
    [(_LookupReturnsNothing, "lookups did not return"), (_LeaksALease, "len(pool) is 1")],
)
def test_a_failed_invariant_exits_1(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, broken: type[Any], failure: str
) -> None:
    monkeypatch.setitem(natpool.apps.simulate.MODELS, "reference", broken)
    report = simulate_json(capsys, *SMALL, "--model", "reference", status=1)
    assert report["invariants"]["ok"] is False
    assert any(failure in text for text in report["invariants"]["failures"])
    assert main([*SMALL, "--model", "reference"]) == 1
    assert "invariants                FAILED" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ports", "2000-1000"], "argument --ports: '2000-1000' is reversed"),
        (["--ports", "1024"], "argument --ports: '1024' is not a port range LO-HI"),
        (["--ports", "0-10"], "argument --ports: '0-10' is outside 1-65535"),
        (["--first-ip", "203.0.113.300"], "argument --first-ip: '203.0.113.300' is not an IPv4 address"),
        (["--netmask", "33"], "argument --netmask: prefix length 33 is outside 0..32"),
        (["--netmask", "255.0.255.0"], "argument --netmask:"),
        (["--netmask", "28"], "argument --netmask: first_ip and last_ip are not in one /28 subnet"),
        (["--first-ip", "203.0.113.9", "--last-ip", "203.0.113.3"], "argument --last-ip:"),
        (["--max-blocks", "10", "--initial-blocks", "20"], "argument --max-blocks:"),
        (["--initial-blocks", "0"], "argument --initial-blocks: 0 is less than 1"),
        (["--subpool-blocks", "x"], "argument --subpool-blocks: 'x' is not an integer"),
        (["--grow-threshold", "-1"], "argument --grow-threshold: -1 is less than 0"),
        (["--connections", "0"], "argument --connections: 0 is less than 1"),
        (["--rate", "0"], "argument --rate: 0 is not positive"),
        (["--rate", "inf"], "argument --rate: 'inf' is not a finite number"),
        (["--mean-lifetime", "-2"], "argument --mean-lifetime: -2 is not positive"),
        (["--swing", "1.5"], "argument --swing: 1.5 is outside [0, 1)"),
        (["--wave-period", "-1"], "argument --wave-period: -1 is negative"),
        (["--seed", "one"], "argument --seed: invalid int value: 'one'"),
        (["--model", "java"], "argument --model: invalid choice: 'java'"),
        (["--lifetime", "weibull"], "argument --lifetime: invalid choice: 'weibull'"),
        (["--order", "mru"], "argument --order: invalid choice: 'mru'"),
        (["--hold-down", "-1"], "argument --hold-down: -1 is negative"),
        (["--hold-down", "nan"], "argument --hold-down: 'nan' is not a finite number"),
        (["--no-such-option"], "unrecognized arguments: --no-such-option"),
        (["--pool", "10.0.0.0/24", "--first-ip", "10.0.0.1"], "argument --pool: not with --first-ip"),
        (["--pool", "10.0.0.0/8", "--pool", "10.1.0.0/16"], "argument --pool: 10.1.0.1-10.1.255.254 overlaps"),
        (["--pool", "::1", "--pool", "10.0.0.1"], "argument --pool:"),
        (["--pool", "10.0.0.1-"], "argument --pool:"),
        (["--exclude", "10.9.9.9"], "argument --exclude: 10.9.9.9 has no address in the pool's ranges"),
        (["--exclude", "203.0.113.7:80"], "argument --exclude:"),  # a port outside --ports
        (["--exclude", "[10.0.0.1]:80"], "argument --exclude:"),
    ],
)
def test_bad_options_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    assert main(["simulate", "--connections", "100", *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    usage, error = captured.err.splitlines()[0], captured.err.splitlines()[-1]
    assert usage.startswith("usage: natpool")
    assert error.startswith(("natpool simulate: error: ", "natpool: error: "))
    assert message in error


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "natpool: error:" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--help"]) == 0
    assert "--max-blocks" in capsys.readouterr().out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"natpool {natpool.__version__}\n"


def test_the_version_is_the_installed_distributions() -> None:
    assert natpool.__version__ == importlib.metadata.version("natpool") != "unknown"


def test_python_m_natpool_simulate() -> None:
    env = dict(os.environ)
    source = str(Path(natpool.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source, env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "natpool", "simulate", "--connections", "2000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "connections served        2,000\n" in done.stdout
    assert done.stdout.rstrip().endswith("invariants                ok")
    assert done.stderr == ""
