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
    with open(os.path.join(tmp_path, "sitecustomize.py"), "w") as module:
        module.write(NOT_INSTALLED)
    path = os.pathsep.join(p for p in (os.fspath(tmp_path), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--deselect", request.node.nodeid],
        cwd=request.config.rootpath,
        env=dict(os.environ, PYTHONPATH=path),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    summary = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, summary
    assert "needs prometheus_client: pip install 'natpool[metrics]'" in done.stdout, summary
    assert "needs matplotlib: pip install 'natpool[plot]'" in done.stdout, summary
