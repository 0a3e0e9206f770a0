"""int8 weights against float32 on the rigged tiny checkpoint (quantize.py).

Stated bound: over a stream of noise and a trigger, every step's logits drift from
float32 by at most 5 % of the largest float32 logit, and no decision, reply token
or reply text changes. Measured here: int8 (weight-only) about 1 %, int8-dynamic
(8-bit activations too, encoder included) about 2-3 %; torchao's int8 (the path
on GPUs) about 1 %.

The CPU path must really be torch's int8 ops (not a float matmul on widened
weights): every Linear is replaced and the profiler sees the op run.
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
from model_runtime.interaction.quantize import Int8Linear, quantize_lm, quantized_mode, weight_bytes
from model_runtime.interaction.tiny import RIGGED_TEXT, trigger_audio
from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)

RELATIVE_DRIFT_BOUND = 0.05
OPS = {"int8": "aten::_weight_int8pack_mm", "int8-dynamic": "quantized::linear_dynamic"}


def own_copy(loaded):
    """Quantization is in place: each engine here gets its own LM and encoder."""
    own = copy.copy(loaded)
    own.lm, own.encoder = copy.deepcopy(loaded.lm), copy.deepcopy(loaded.encoder)
    return own


def engine_recording_logits(loaded, quantize: str, backend: str = "auto") -> tuple[InteractionEngine, list[torch.Tensor]]:
    """An engine on its own copy of the model, recording each step's logits.

    A backend other than the engine's choice is applied first; the engine then finds
    the LM already in `quantize` and leaves it so."""
    own = own_copy(loaded)
    if backend != "auto":
        quantize_lm(own.lm, quantize, backend)
    engine = make_engine(own, quantize=quantize, batch_rooms=1)
    recorded: list[torch.Tensor] = []
    step = engine.lm_step

    def recording_step(cache, embeds, picks=None):
        logits = step(cache, embeds, picks)
        recorded.append(logits.clone())
        return logits

    engine.lm_step = recording_step
    return engine, recorded


def trigger_stream() -> np.ndarray:
    rng = np.random.default_rng(7)
    audio = (rng.standard_normal(10 * c.CHUNK_SAMPLES) * 0.01).astype(np.float32)
    audio[4 * c.CHUNK_SAMPLES : 5 * c.CHUNK_SAMPLES] = trigger_audio()
    return audio


@pytest.fixture(scope="module")
def float32_run(loaded):
    """The unquantized engine's events and step logits on `trigger_stream()`, and its LM."""
    engine, logits = engine_recording_logits(loaded, "none")
    events = [e.to_dict() for e in run_stream(engine.open_stream(), trigger_stream())]
    assert [e["text"] for e in events if e["type"] == c.EVENT_RESPONSE and e["final"]] == [RIGGED_TEXT]
    return events, logits, engine.loaded.lm


@pytest.mark.parametrize("mode, backend", [("int8", "auto"), ("int8-dynamic", "auto"), ("int8", "torchao")])
def test_int8_drift_is_bounded_and_decisions_unchanged(loaded, float32_run, mode, backend):
    ref_events, ref_logits, ref_lm = float32_run
    quantized, q_logits = engine_recording_logits(loaded, mode, backend)
    lm = quantized.loaded.lm
    assert quantized_mode(lm) == mode
    assert any(isinstance(m, Int8Linear) for m in lm.modules()) == (backend == "auto")  # CPU: torch's ops

    def linear_bytes(lm) -> int:  # the embedding stays as loaded
        return weight_bytes(lm) - weight_bytes(lm.get_input_embeddings())

    assert linear_bytes(lm) < 0.3 * linear_bytes(ref_lm)  # float32 -> int8 + scales
    q_events = [e.to_dict() for e in run_stream(quantized.open_stream(), trigger_stream())]
    assert q_events == ref_events  # every decision and reply piece, same times
    assert len(q_logits) == len(ref_logits) > 10  # listening and decoding steps
    scale = max(float(x.abs().max()) for x in ref_logits)
    drift = max(float((a - b).abs().max()) for a, b in zip(ref_logits, q_logits))
    assert 0 < drift <= RELATIVE_DRIFT_BOUND * scale, f"drift {drift:.4f} vs scale {scale:.2f}"
    print(f"{mode} ({backend}): drift {drift / scale:.2%} of the largest float32 logit")


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic"])
def test_cpu_path_is_torch_int8_ops(loaded, mode):
    """No float Linear is left where the mode quantizes, and a forward pass runs the int8 op."""
    engine = make_engine(own_copy(loaded), quantize=mode, batch_rooms=1)
    lm, encoder = engine.loaded.lm, engine.loaded.encoder
    assert not [name for name, m in lm.named_modules() if type(m) is torch.nn.Linear]
    assert isinstance(lm.lm_head, Int8Linear) and lm.lm_head.dynamic == (mode == "int8-dynamic")
    encoder_linears = [m for m in encoder.modules() if isinstance(m, (torch.nn.Linear, Int8Linear))]
    # the encoder is quantized in int8-dynamic only (weight-only is slower than float at its 20-row steps)
    assert all(isinstance(m, Int8Linear) == (mode == "int8-dynamic") for m in encoder_linears)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        events = list(run_stream(engine.open_stream(), trigger_stream()[: 2 * c.CHUNK_SAMPLES]))
    assert [e.type for e in events] == [c.EVENT_DECISION] * 2
    names = {event.key for event in prof.key_averages()}
    assert OPS[mode] in names
    assert "aten::linear" not in names or mode == "int8"  # (int8 leaves the encoder's Linears as loaded)


def test_weight_only_is_the_dequantized_product():
    """int8: x @ (int8 * scale)^T + bias, with no rounding of x (weight-only)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(96, 40)
    before = linear.weight.detach().clone()
    q = Int8Linear(linear, dynamic=False)
    assert torch.equal(linear.weight, before)  # quantizing reads a float32 weight, never scales it in place
    x = torch.randn(3, 7, 96)
    expected = x @ (q.weight_int8.float() * q.scales[:, None]).T + q.bias
    torch.testing.assert_close(q(x), expected, rtol=1e-5, atol=1e-5)
    assert (q.weight_int8.abs() <= 127).all() and q.weight_int8.abs().amax(dim=1).eq(127).all()


def test_dynamic_keeps_a_non_finite_row_to_itself():
    """int8-dynamic shares one activation scale per call (batched rooms): a NaN row must not spoil the others."""
    torch.manual_seed(0)
    q = Int8Linear(torch.nn.Linear(64, 16), dynamic=True)
    x = torch.randn(5, 64)
    clean = q(x[[0, 1, 3, 4]])
    x[2, 10] = float("nan")
    out = q(x)
    assert torch.isnan(out[2]).all() and torch.isfinite(out[[0, 1, 3, 4]]).all()
    torch.testing.assert_close(out[[0, 1, 3, 4]], clean)
    x[2, 10], x[4, 0] = 1.0, float("-inf")  # an infinite row
    out = q(x)
    assert torch.isnan(out[4]).all() and torch.isfinite(out[:4]).all()
    # Finite rows whose sum overflows float32 are still finite rows: all computed
    huge = torch.full((2, 64), 3e38)
    assert torch.isfinite(q(huge)).all()


def test_quantize_option_errors(loaded):
    lm = copy.deepcopy(loaded.lm)
    with pytest.raises(UserError, match="--quantize must be one of none, int8, int8-dynamic"):
        quantize_lm(lm, "int4")
    quantize_lm(lm, "int8")
    quantize_lm(lm, "int8")  # once is enough: a second call with the same mode changes nothing
    with pytest.raises(UserError, match="already quantized as int8"):
        quantize_lm(lm, "int8-dynamic")


def test_clear_error_where_the_int8_op_is_missing(loaded):
    """torch's int8 kernels: CPU only, and `_weight_int8pack_mm` takes 16/32-bit floats only."""
    wide = copy.deepcopy(loaded.lm).to(torch.float64)
    with pytest.raises(UserError, match=r"--quantize int8 is not available for torch.float64 .*--quantize none"):
        quantize_lm(wide, "int8")
    assert quantized_mode(wide) == "none" and not any(isinstance(m, Int8Linear) for m in wide.modules())
    with torch.device("meta"):
        on_meta = torch.nn.Sequential(torch.nn.Linear(8, 8))
    with pytest.raises(UserError, match="runs on CPU only, not meta"):
        quantize_lm(on_meta, "int8-dynamic", backend="torch")


def test_cli_takes_quantize_and_batch_rooms():
    import argparse

    from model_runtime.engine import add_engine_arguments, options_from_args

    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    options = options_from_args(parser.parse_args(["--quantize", "int8", "--batch-rooms", "4"]))
    assert (options.quantize, options.batch_rooms) == ("int8", 4)
    assert options_from_args(parser.parse_args([])).quantize == "none"


def test_engine_keeps_numpy_blas_to_one_thread(loaded):
    """A quiet live stream must cost little CPU: numpy's BLAS (the log-mel matmul) would otherwise
    wake a second thread per chunk that spin-waits afterwards (measured: 40 -> 13 ms CPU per chunk)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threadpool_limits(2, user_api="blas")
    make_engine(loaded, batch_rooms=1)
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]  # numpy's, scipy's
    assert blas and set(blas) == {1}
