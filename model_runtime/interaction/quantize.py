"""Quantized LM weights for CPU homes, through torchao (torch's eager quantization is deprecated).

Modes (`--quantize`):

- `none`: the weights as loaded (float32 / bfloat16 / float16).
- `int8`: int8 weight-only, per output channel (torchao `Int8WeightOnlyConfig`):
  a quarter of the float32 weight bytes, half of bfloat16's; activations stay in
  the model's dtype, so the drift is the weights' rounding alone.
- `int8-dynamic`: int8 weights and int8 activations quantized per token at run
  time (torchao `Int8DynamicActivationInt8WeightConfig`): int8 matmuls where the
  CPU has them, a little more drift.

Every `nn.Linear` of the LM is quantized (attention and MLP projections and the
LM head); the token embedding and the norms stay as loaded, and so does the
audio encoder (it runs once per chunk, not once per token, and its output
decides everything downstream). The model is quantized in place, once.

What it buys on a CPU today (`bench rooms`, 3B-shaped, 2 cores, 2026-11-26):
memory, not speed. LM weights 5.75 -> 3.46 GiB (bf16 -> int8; the tied
embedding stays bf16 for the lookup and the LM head gets its own int8 copy),
but an eager int8 step is about 10x slower than bf16, because torchao 0.18's
int8 linear on CPU converts the whole int8 weight to the activation dtype on
every call (its fast paths are GPU kernels and `torch.compile`). Logits drift
(tiny checkpoint, float32 reference): about 1-2 % of the largest logit, no
decision changed (tests/runtime/test_scale_quantize.py).
"""

from __future__ import annotations

import torch

from ..errors import UserError

QUANTIZE_MODES = ("none", "int8", "int8-dynamic")
_MARK = "_audio_interaction_quantized"


def _config(mode: str):
    try:  # (the package __init__ keeps torchao's import-time warnings quiet)
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError as err:
        raise UserError(f"--quantize {mode} needs torchao: pip install torchao ({err})") from err
    return quantize_, Int8WeightOnlyConfig() if mode == "int8" else Int8DynamicActivationInt8WeightConfig()


def quantize_lm(lm: torch.nn.Module, mode: str) -> None:
    """Quantize the Linear layers of `lm` in place (a no-op for `none` or when already done in `mode`)."""
    if mode not in QUANTIZE_MODES:
        raise UserError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, not {mode!r}")
    done = getattr(lm, _MARK, "none")
    if mode == done:
        return
    if done != "none":
        raise UserError(f"this model is already quantized as {done}; load it again to use --quantize {mode}")
    if mode == "none":
        return
    quantize_, config = _config(mode)
    quantize_(lm, config)
    setattr(lm, _MARK, mode)


def quantized_mode(lm: torch.nn.Module) -> str:
    return getattr(lm, _MARK, "none")


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's parameters as stored (an int8 tensor counts its int8 data and scales)."""
    total = 0
    for param in module.parameters():
        inner = [getattr(param, name) for name in getattr(param, "__tensor_flatten__", lambda: ([], None))()[0]]
        tensors = inner or [param]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total
