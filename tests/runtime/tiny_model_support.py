"""Shared by the interaction and scale tests: the rigged tiny checkpoint, loaded once per module, and engines on it."""

from __future__ import annotations

import pytest
import torch

from model_runtime import constants as c
from model_runtime.engine import EngineOptions
from model_runtime.interaction.checkpoint import load_checkpoint
from model_runtime.interaction.engine import InteractionEngine
from model_runtime.interaction.tiny import make_tiny_checkpoint


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: one thread is faster than contention
    folder = make_tiny_checkpoint(tmp_path_factory.mktemp("interaction") / "tiny")
    yield load_checkpoint(str(folder), "cpu", "float32")
    torch.set_num_threads(threads)


def make_engine(loaded, **options) -> InteractionEngine:
    """An engine on `loaded` (float32, CPU) with `options` set on its EngineOptions."""
    opts = EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, model=str(loaded.path), device="cpu", dtype="float32")
    for key, value in options.items():
        setattr(opts, key, value)
    return InteractionEngine(opts, loaded=loaded)
