"""Shared test configuration: hypothesis profiles and the ``impl`` parametrization.

Hypothesis profiles are chosen by the ``HYPOTHESIS_PROFILE`` environment variable:

* ``ci``: what ``make test`` runs (200 examples of 50 stateful steps, a few seconds);
* ``dev``: the default when the variable is unset (150 examples);
* ``thorough``: 500 examples of 50 stateful steps, for local runs.

Every contract test takes the ``impl`` fixture and so runs on both the Rust core
(``natpool.Pool``, id ``rust``) and the reference model (``natpool.reference.Pool``,
id ``reference``).

The loopback tests draw their networks and ports from one seed (``netkit.SEED``),
shown in the header and in the summary of a failed session; ``NATPOOL_TEST_SEED=N``
replays it, for the whole session or for one test alone.

A test that needs an optional extra is marked ``@pytest.mark.extra("metrics")`` (or
``"plot"``): where the extra is not installed it is skipped, the reason naming it.
``make test`` installs both (requirements-dev.txt), so there they run.
"""

from __future__ import annotations

import os
from typing import Any

import natpool
import natpool.reference
import netkit
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


def _seed_line() -> str:
    return f"natpool test seed: {netkit.SEED} (NATPOOL_TEST_SEED={netkit.SEED} replays the loopback networks and ports)"


def pytest_report_header() -> str:
    return _seed_line()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if exitstatus != 0:
        terminalreporter.write_line(_seed_line())


@pytest.fixture(autouse=True)
def _netkit_draws_from_the_seed(request: pytest.FixtureRequest) -> None:
    """Each test's random networks and ports follow from the session's seed and the test's name."""
    netkit.reseed(request.node.nodeid)


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
