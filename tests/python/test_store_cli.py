"""``natpool store status URL [--pool NAME] [--json]`` on both engines: what it prints, and its exit statuses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from natpool.apps.cli import main
from storekit import CONFIG, make_pool, open_kind

pytest_plugins = ("storefixtures",)  # its fixtures: kind, url, clock, store, pool_impl


@pytest.fixture
def store(url: str) -> Any:
    """The store at ``url`` on the real clock (the command reads it with the real clock too)."""
    opened = open_kind(url)
    yield opened
    opened.close()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["store", "status", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def two_members(store: Any) -> tuple[Any, Any]:
    """Members a and b of pool ``vip``: a claims two ranges and returns one (held), b claims one."""
    a = make_pool("rust", store, "a", grow_threshold=0)
    b = make_pool("rust", store, "b", grow_threshold=0)
    leases = [a.allocate() for _ in range(CONFIG["initial_blocks"] + 1)]
    b.allocate()
    a.free(leases[-1])
    return a, b


def test_status_lists_pools_members_and_claims(capsys: pytest.CaptureFixture[str], store: Any, url: str) -> None:
    a, b = two_members(store)
    status, out, err = run(capsys, url)
    assert (status, err) == (0, "")
    expected = store.status("vip")
    assert f"pool vip: {CONFIG['first_ip']}-{CONFIG['last_ip']}" in out
    assert f"{expected.claimed} claimed, {expected.held} held, {expected.free} free" in out
    assert "members: 2" in out
    assert out.count(" claimed by ") == sum(c.state == "claimed" for c in expected.claims)
    assert out.count(" held by a") == 1
    for claim in expected.claims:
        assert f"{claim.first_ip}:{claim.first_port}-{claim.last_ip}:{claim.last_port} ({claim.count})" in out
    a.close()
    b.close()


def test_status_as_json_is_the_stores_status(capsys: pytest.CaptureFixture[str], store: Any, url: str) -> None:
    a, b = two_members(store)
    status, out, _ = run(capsys, url, "--pool", "vip", "--json")
    assert status == 0
    answer = json.loads(out)
    [pool] = answer["pools"]
    expected = store.status("vip")
    assert [tuple(claim.values()) for claim in pool["claims"]] == [tuple(c) for c in expected.claims]
    assert [m["member"] for m in pool["members"]] == ["a", "b"]
    assert (pool["claimed"], pool["held"], pool["free"]) == (expected.claimed, expected.held, expected.free)
    assert pool["config"] == json.loads(json.dumps(expected.config))
    a.close()
    b.close()


def test_an_empty_store_has_no_pools(capsys: pytest.CaptureFixture[str], store: Any, url: str) -> None:
    status, out, _ = run(capsys, url)
    assert status == 0
    assert "no pools" in out
    status, out, _ = run(capsys, url, "--json")
    assert json.loads(out)["pools"] == []


def test_an_unknown_pool_is_an_error(capsys: pytest.CaptureFixture[str], store: Any, url: str) -> None:
    status, out, err = run(capsys, url, "--pool", "nope")
    assert (status, out) == (1, "")
    assert "nope" in err


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "none.db"
    status, out, err = run(capsys, f"sqlite:///{path}")
    assert (status, out) == (1, "")
    assert "does not exist" in err
    assert not path.exists()


@pytest.mark.parametrize("url", ["foo", "sqlite://host/x.db", "mysql://x/y"])
def test_a_malformed_url_is_a_usage_error(capsys: pytest.CaptureFixture[str], url: str) -> None:
    status, out, err = run(capsys, url)
    assert (status, out) == (2, "")
    assert err.count("\n") == 1
    assert "URL" in err
