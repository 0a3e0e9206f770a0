"""Shared fixtures of the runtime tests (Python 3.11 environment)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "model_runtime" / "samples"


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m model_runtime ARGS` as a user would, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "model_runtime", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli
