"""Parity: our transformers LM gives LitGPT's logits on the same tiny checkpoint.

The reference (`fixtures/litgpt_reference.npz`) comes from LitGPT's own `GPT`
(litgpt 0.5.13, the library upstream trains and serves with), written by
`scripts/litgpt-reference` from the tiny checkpoints of seed 0 in both fused
layouts (`attn.qkv` as safetensors shards, the older interleaved `attn.attn` as
one .pt). Here the same checkpoints are rebuilt from the same seed and loaded by
our loader; one KV-cached sequence (prompt prefix, 12-token chunk steps, single
token decode steps) must give the same logits (max abs diff <= 1e-4, fp32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from model_runtime.interaction import checkpoint as ckpt
from model_runtime.interaction import tiny

torch.set_num_threads(1)

FIXTURE = Path(__file__).parent / "fixtures" / "litgpt_reference.npz"
TOLERANCE = 1e-4
CORRECT_MAPPING = ckpt.litgpt_to_hf
FORMATS = {"qkv": "safetensors", "attn": "pt"}  # as scripts/litgpt-reference writes them


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parity")
    return {
        layout: tiny.make_tiny_checkpoint(root / layout, seed=0, layout=layout, weights=weights)
        for layout, weights in FORMATS.items()
    }


def run_cached(lm, tokens: np.ndarray, step_lengths: np.ndarray, columns: np.ndarray):
    """Logits at `columns` and argmax for every position, fed step by step through a DynamicCache."""
    cache = DynamicCache(config=lm.config)
    kept, argmax, position = [], [], 0
    with torch.no_grad():
        for length in step_lengths:
            ids = torch.tensor(tokens[position : position + length])[None]
            positions = torch.arange(position, position + length)[None]
            logits = lm(input_ids=ids, past_key_values=cache, position_ids=positions, use_cache=True).logits[0]
            kept.append(logits[:, columns].numpy())
            argmax.append(logits.argmax(-1).numpy())
            position += length
    return np.concatenate(kept), np.concatenate(argmax)


def _compare(folder: Path, ref: dict[str, np.ndarray], layout: str) -> tuple[float, float]:
    loaded = ckpt.load_checkpoint(str(folder), device="cpu", dtype="float32")
    logits, argmax = run_cached(loaded.lm, ref[f"{layout}/tokens"], ref[f"{layout}/step_lengths"], ref[f"{layout}/columns"])
    diff = float(np.abs(logits - ref[f"{layout}/logits"]).max())
    agree = float((argmax == ref[f"{layout}/argmax"]).mean())
    return diff, agree


@pytest.mark.parametrize("layout", list(FORMATS))
def test_logits_match_litgpt_across_kv_cached_chunks(folders, reference, layout):
    steps = reference[f"{layout}/step_lengths"]
    assert len(steps) >= 8 and (steps == 12).sum() >= 5  # several 12-token chunk steps with the cache
    diff, agree = _compare(folders[layout], reference, layout)
    print(f"parity {layout}: max |logit diff| vs LitGPT = {diff:.2e} over {len(reference[f'{layout}/argmax'])} positions, "
          f"argmax agreement {agree:.0%}")
    assert diff <= TOLERANCE
    assert agree == 1.0
    # the compared logits are not trivially small: a wrong weight would show
    assert np.abs(reference[f"{layout}/logits"]).max() > 1.0


def _swap_gate_up(state, config):
    out = CORRECT_MAPPING(state, config)
    for key in [k for k in out if k.endswith("mlp.gate_proj.weight")]:
        up = key.replace("gate_proj", "up_proj")
        out[key], out[up] = out[up], out[key]
    return out


def _interleaved_read_as_stacked(state, config):
    renamed = {k.replace("attn.attn.", "attn.qkv."): v for k, v in state.items()}
    return CORRECT_MAPPING(renamed, config)


@pytest.mark.parametrize(
    "layout, wrong_mapping",
    [("qkv", _swap_gate_up), ("attn", _interleaved_read_as_stacked)],
    ids=["gate-up-swapped", "interleaved-read-as-stacked"],
)
def test_a_wrong_mapping_fails_parity(folders, reference, layout, wrong_mapping, monkeypatch):
    """The comparison has teeth: plausible mapping mistakes break it by far more than the tolerance."""
    monkeypatch.setattr(ckpt, "litgpt_to_hf", wrong_mapping)
    diff, _ = _compare(folders[layout], reference, layout)
    assert diff > 100 * TOLERANCE
