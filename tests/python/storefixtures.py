"""The store tests' fixtures, loaded by each ``test_store_*.py`` as a plugin (``pytest_plugins = ("storefixtures",)``).

Kept apart from ``storekit`` (which the tests import) so that pytest can load
this module itself, with its assertion rewriting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from storekit import KINDS, POOL_IMPLS, Clock, fresh_url, open_kind


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    """The engine: ``"sqlite"`` or ``"postgresql"``."""
    return str(request.param)


@pytest.fixture(params=sorted(POOL_IMPLS))
def pool_impl(request: pytest.FixtureRequest) -> str:
    """The pool class under test, as an id of ``POOL_IMPLS`` (a spawned process resolves it too)."""
    return str(request.param)


@pytest.fixture
def url(kind: str, tmp_path: Path) -> str:
    """The URL of an empty store of ``kind``."""
    return fresh_url(kind, tmp_path)


@pytest.fixture
def clock() -> Clock:
    """A settable clock for the store (the tests move it)."""
    return Clock()


@pytest.fixture
def store(url: str, clock: Clock) -> Any:
    """The store at ``url``, on ``clock``; closed after the test."""
    opened = open_kind(url, clock)
    yield opened
    opened.close()
