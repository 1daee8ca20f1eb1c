"""Shared test configuration: hypothesis profiles and the ``impl`` parametrization.

Hypothesis profiles are chosen by the ``HYPOTHESIS_PROFILE`` environment variable:

* ``ci``: what ``make test`` runs (200 examples of 50 stateful steps, a few seconds);
* ``dev``: the default when the variable is unset (150 examples);
* ``thorough``: 500 examples of 50 stateful steps, for local runs.

Every contract test takes the ``impl`` fixture and so runs on both the Rust core
(``natpool.Pool``, id ``rust``) and the reference model (``natpool.reference.Pool``,
id ``reference``).

A test that needs an optional extra is marked ``@pytest.mark.extra("metrics")`` (or
``"plot"``): where the extra is not installed it is skipped, the reason naming it.
``make test`` installs both (requirements-dev.txt), so there they run.
"""

from __future__ import annotations

import os
from typing import Any

import natpool
import natpool.reference
import pytest
from hypothesis import settings
from natpool.extras import EXTRAS, MissingExtra, require

settings.register_profile("ci", max_examples=200, stateful_step_count=50, deadline=None, print_blob=True)
settings.register_profile("dev", max_examples=150, stateful_step_count=40, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=500, stateful_step_count=50, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

IMPLEMENTATIONS = [
    pytest.param(natpool.Pool, id="rust"),
    pytest.param(natpool.reference.Pool, id="reference"),
]


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request: pytest.FixtureRequest) -> Any:
    """The pool class under test: ``natpool.Pool`` (rust) or ``natpool.reference.Pool``."""
    return request.param


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"extra(name): needs the optional extra natpool[name] ({', '.join(EXTRAS)}); skipped without it"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("extra"):
            try:
                require(*marker.args)
            except MissingExtra as exc:
                item.add_marker(pytest.mark.skip(reason=str(exc)))
