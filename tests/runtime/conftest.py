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


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from model_runtime.interaction.tiny import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model_engine(tiny_checkpoint):
    """The audio-interaction engine on the rigged tiny checkpoint, loaded once per module; each test's
    server opens its own streams on it, as a real server does."""
    from model_runtime import constants as c
    from model_runtime.engine import EngineOptions, create_engine

    engine = create_engine(EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, model=str(tiny_checkpoint), device="cpu"))
    yield engine
    engine.close()
