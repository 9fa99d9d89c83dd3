import os
import subprocess
import sys
import textwrap

import pytest

import steplog


@pytest.fixture
def runs(tmp_path):
    """A fresh runs directory; finishes any run a test left open."""
    yield tmp_path / "runs"
    run = steplog.current()
    if run is not None:
        run.finish()


@pytest.fixture
def run(runs):
    r = steplog.init(project="tests", dir=runs)
    yield r
    r.finish()


def run_python(
    code: str, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter and returns the completed process."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )
