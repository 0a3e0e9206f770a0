"""int8 LM weights (torchao) against float32 on the rigged tiny checkpoint.

Stated bound: over a stream of noise and a trigger, every step's logits drift from
float32 by at most 5 % of the largest float32 logit (measured: about 1-2 %), and
no decision, reply token or reply text changes.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from model_runtime import constants as c
from model_runtime.engine import run_stream
from model_runtime.errors import UserError
from model_runtime.interaction.engine import InteractionEngine
from model_runtime.interaction.quantize import quantize_lm, quantized_mode, weight_bytes
from model_runtime.interaction.tiny import RIGGED_TEXT, trigger_audio
from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)

RELATIVE_DRIFT_BOUND = 0.05


def engine_recording_logits(loaded, quantize: str) -> tuple[InteractionEngine, list[torch.Tensor]]:
    """An engine on its own copy of the model (quantization is in place), recording each step's logits."""
    own = copy.copy(loaded)
    own.lm = copy.deepcopy(loaded.lm)
    engine = make_engine(own, quantize=quantize, batch_rooms=1)
    recorded: list[torch.Tensor] = []
    step = engine.lm_step

    def recording_step(cache, embeds):
        logits = step(cache, embeds)
        recorded.append(logits.clone())
        return logits

    engine.lm_step = recording_step
    return engine, recorded


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic"])
def test_int8_drift_is_bounded_and_decisions_unchanged(loaded, mode):
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(10 * c.CHUNK_SAMPLES) * 0.01).astype(np.float32)
    audio[4 * c.CHUNK_SAMPLES : 5 * c.CHUNK_SAMPLES] = trigger_audio()
    reference, ref_logits = engine_recording_logits(loaded, "none")
    quantized, q_logits = engine_recording_logits(loaded, mode)
    assert quantized_mode(quantized.loaded.lm) == mode
    assert weight_bytes(quantized.loaded.lm) < weight_bytes(reference.loaded.lm)
    ref_events = [e.to_dict() for e in run_stream(reference.open_stream(), audio)]
    q_events = [e.to_dict() for e in run_stream(quantized.open_stream(), audio)]
    assert q_events == ref_events  # every decision and reply piece, same times
    assert [e["text"] for e in ref_events if e["type"] == c.EVENT_RESPONSE and e["final"]] == [RIGGED_TEXT]
    assert len(q_logits) == len(ref_logits) > 10  # listening and decoding steps
    scale = max(float(x.abs().max()) for x in ref_logits)
    drift = max(float((a - b).abs().max()) for a, b in zip(ref_logits, q_logits))
    assert 0 < drift <= RELATIVE_DRIFT_BOUND * scale, f"drift {drift:.4f} vs scale {scale:.2f}"


def test_quantize_option_errors(loaded):
    lm = copy.deepcopy(loaded.lm)
    with pytest.raises(UserError, match="--quantize must be one of none, int8, int8-dynamic"):
        quantize_lm(lm, "int4")
    quantize_lm(lm, "int8")
    quantize_lm(lm, "int8")  # once is enough: a second call with the same mode changes nothing
    with pytest.raises(UserError, match="already quantized as int8"):
        quantize_lm(lm, "int8-dynamic")


def test_cli_takes_quantize_and_batch_rooms():
    import argparse

    from model_runtime.engine import add_engine_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    options = options_from_args(parser.parse_args(["--quantize", "int8", "--batch-rooms", "4"]))
    assert (options.quantize, options.batch_rooms) == ("int8", 4)
    assert options_from_args(parser.parse_args([])).quantize == "none"
