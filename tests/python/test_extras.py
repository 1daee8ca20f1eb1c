"""Without the optional extras (``natpool[metrics]``, ``natpool[plot]``) no test fails: those that need one skip."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

NOT_INSTALLED = """\
import sys

# As if natpool[metrics] and natpool[plot] were not installed: importing their modules fails and
# importlib.util.find_spec finds nothing, in this process and in every Python process it starts.
for name in ("prometheus_client", "matplotlib"):
    sys.modules[name] = None
"""


def test_without_the_extras_the_tests_that_need_them_skip_and_say_why(
    request: pytest.FixtureRequest, tmp_path: os.PathLike[str]
) -> None:
    """In a child without the extras: every test module still imports (pytest collects them all), of the
    tests marked ``extra(...)`` those of a missing extra skip and say which extra to install, and the CLI's
    own tests pass.

    (The child once ran the whole suite a second time; it now runs what the extras can touch.)
    """
    with open(os.path.join(tmp_path, "sitecustomize.py"), "w") as module:
        module.write(NOT_INSTALLED)
    path = os.pathsep.join(p for p in (os.fspath(tmp_path), os.environ.get("PYTHONPATH")) if p)

    def child(*selection: str) -> subprocess.CompletedProcess[str]:
        pytest_command = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider"]
        return subprocess.run(
            [*pytest_command, "--deselect", request.node.nodeid, *selection],
            cwd=request.config.rootpath,
            env=dict(os.environ, PYTHONPATH=path),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    marked = child("-m", "extra", "tests/python")
    summary = marked.stdout[-6000:] + marked.stderr[-2000:]
    assert marked.returncode == 0, summary
    assert "needs prometheus_client: pip install 'natpool[metrics]'" in marked.stdout, summary
    assert "needs matplotlib: pip install 'natpool[plot]'" in marked.stdout, summary
    cli = child("tests/python/test_cli.py")
    assert cli.returncode == 0, cli.stdout[-6000:] + cli.stderr[-2000:]
