"""Quantized weights for CPU homes: int8 linears through torch's own CPU ops (torchao on GPUs).

Modes (`--quantize`):

- `none`: the weights as loaded (float32 / bfloat16 / float16).
- `int8`: int8 weight-only, symmetric per output channel; activations stay in
  the model's dtype, so the drift is the weights' rounding alone. On CPU:
  `torch.ops.aten._weight_int8pack_mm` (int8 weights are widened inside the
  kernel, never as a whole matrix); elsewhere torchao `Int8WeightOnlyConfig`.
- `int8-dynamic`: the same int8 weights, and each call's activations quantized
  to 8 bits at run time (one scale per call), so the matrix products run in
  integer arithmetic (AVX512-VNNI / AVX2 on x86). On CPU: fbgemm's dynamic
  linear (`torch.ops.quantized.linear_dynamic` on weights packed once by
  `torch.ops.quantized.linear_prepack`, the ops under torch's dynamic
  quantization, called directly); elsewhere torchao
  `Int8DynamicActivationInt8WeightConfig`.

What is quantized: every `nn.Linear` of the LM (attention and MLP projections
and the LM head; the tied embedding stays as loaded for the lookup and the head
gets its own int8 copy) and, in `int8-dynamic` on CPU, every `nn.Linear` of the
audio encoder (its attention and MLP projections and `proj`; the convolutions
stay; see `quantize_model`). The model is quantized in place, once.

Why not torchao on CPU: torchao 0.18's int8 linears on CPU convert the whole
int8 weight to the activation dtype on every call (its fast paths are GPU
kernels, `torch.compile` and C++ CPU kernels its CUDA wheels do not ship):
about 10x slower than bf16. What each path costs on the 3B-shaped model is
printed by `audio-interaction bench model --quantize ...` (figures in the README).

Maintenance risk, stated: torch 2.13 deprecates creating qint8 tensors (pytorch
issue 184982), which `linear_prepack` still takes; when torch removes them,
`int8-dynamic` on CPU needs another int8 GEMM (today's alternatives measured
slower here: `torch._int_mm` (int8 x int8) and oneDNN's `qlinear_pointwise`
were 5-50x slower than bf16 at these shapes on this AVX512 CPU; `torch.compile`
of the weight-only linear compiled in about a minute and ran no faster than eager).

Rooms batched into one step share each call's activation scale in
`int8-dynamic` (quantization noise only; a room whose activations are
non-finite gets non-finite rows alone, see `Int8Linear`).
"""

from __future__ import annotations

import warnings

import torch

from .. import constants as c
from ..errors import UserError
from ..memory import return_free_memory

QUANTIZE_MODES = c.QUANTIZE_MODES
BACKENDS = ("auto", "torch", "torchao")  # auto: torch's ops on CPU, torchao elsewhere
_MARK = "_audio_interaction_quantized"


def _torchao_config(mode: str):
    try:  # (the package __init__ keeps torchao's import-time warnings quiet)
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig, quantize_
    except ImportError as err:
        raise UserError(f"--quantize {mode} on this device needs torchao: pip install torchao ({err})") from err
    return quantize_, Int8WeightOnlyConfig() if mode == "int8" else Int8DynamicActivationInt8WeightConfig()


# fbgemm's 8-bit activations can saturate its 16-bit intermediate sums on CPUs without VNNI
# (AVX2's vpmaddubsw); there it needs 7-bit activations (`reduce_range`), as torch's own
# dynamic quantization uses on x86. With VNNI (vpdpbusd sums in 32 bits) the full 8 bits
# are safe and halve the activations' rounding error.
_REDUCE_RANGE = not (hasattr(torch.cpu, "_is_vnni_supported") and torch.cpu._is_vnni_supported())
_CONVERT_ROWS = 4096  # weights are converted this many rows at a time: a float32 temporary of the LM head would be 1.2 GB


def _int8_per_channel(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: (int8 weight, float32 scales) with weight ~= int8 * scale."""
    qweight = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
    scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
    for start in range(0, weight.shape[0], _CONVERT_ROWS):
        rows = weight[start : start + _CONVERT_ROWS].to(torch.float32, copy=True)  # (a copy: the weight itself stays)
        # (in place, and the max norm instead of abs().amax(): the same numbers at half the load time)
        scale = (torch.linalg.vector_norm(rows, ord=float("inf"), dim=1) / 127.0).clamp_(min=torch.finfo(torch.float32).tiny)
        qweight[start : start + _CONVERT_ROWS] = rows.div_(scale[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        scales[start : start + _CONVERT_ROWS] = scale
    return qweight, scales


class Int8Linear(torch.nn.Module):
    """An `nn.Linear` with int8 weights (symmetric, one scale per output channel), run by torch's CPU int8 ops.

    `dynamic=False`: weight-only, `_weight_int8pack_mm` in the activation dtype.
    `dynamic=True`: fbgemm's dynamic linear; activations go in as float32 and
    the result comes back in the input's dtype. One activation scale serves the
    whole call, so a non-finite row would spoil every row of a batched step:
    rows that are not finite are left out of the product and come back as NaN
    (the engine then resets that room alone, as it does unquantized).
    """

    def __init__(self, linear: torch.nn.Linear, dynamic: bool) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.dynamic = dynamic
        qweight, scales = _int8_per_channel(weight)
        bias = None if linear.bias is None else linear.bias.detach().float()
        if dynamic:
            zero_points = torch.zeros(self.out_features, dtype=torch.long, device=weight.device)
            with warnings.catch_warnings():  # qint8 tensors are deprecated in torch (issue 184982): see the docstring
                warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
                qtensor = torch._make_per_channel_quantized_tensor(qweight, scales.double(), zero_points, 0)
            self.packed = torch.ops.quantized.linear_prepack(qtensor, bias)  # fbgemm's layout; bias inside
            self.register_buffer("bias", None)
        else:
            self.packed = None
            self.register_buffer("weight_int8", qweight)
            self.register_buffer("scales", scales.to(weight.dtype))
            self.register_buffer("bias", None if bias is None else bias.to(weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, self.in_features)
        if not self.dynamic:
            out = torch.ops.aten._weight_int8pack_mm(rows.contiguous(), self.weight_int8, self.scales)
            if self.bias is not None:
                out = out + self.bias
            return out.reshape(*shape[:-1], self.out_features)
        rows = rows.float()
        # One sum tells all rows are finite (any NaN or inf makes it non-finite; so may a sum of huge
        # finite values, which the row check below then clears): 6x cheaper than checking each element.
        if bool(torch.isfinite(rows.sum())):
            out = torch.ops.quantized.linear_dynamic(rows, self.packed, _REDUCE_RANGE)
        else:  # keep a broken row's extremes out of the others' activation scale
            finite = torch.isfinite(rows).all(dim=1)
            out = torch.full((rows.shape[0], self.out_features), float("nan"), device=rows.device)
            if bool(finite.any()):
                out[finite] = torch.ops.quantized.linear_dynamic(rows[finite], self.packed, _REDUCE_RANGE)
        return out.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def nbytes(self) -> int:
        """Bytes held: int8 weights, their scales, the bias."""
        scale_bytes = self.out_features * (4 if self.dynamic else self.scales.element_size())
        bias_bytes = self.out_features * 4 if self.dynamic else (0 if self.bias is None else self.bias.nbytes)
        return self.out_features * self.in_features + scale_bytes + bias_bytes

    def extra_repr(self) -> str:
        kind = "fbgemm dynamic int8" if self.dynamic else "_weight_int8pack_mm"
        return f"in_features={self.in_features}, out_features={self.out_features}, {kind}"


def _check_torch_ops(mode: str, device: torch.device, dtype: torch.dtype) -> None:
    """Run the op once on a small input of the model's device and dtype: a clear error now beats one mid-stream."""
    if device.type != "cpu":
        raise UserError(f"--quantize {mode} through torch's int8 ops runs on CPU only, not {device}; use the torchao backend there")
    probe = torch.nn.Linear(64, 8, dtype=dtype)
    try:
        Int8Linear(probe, dynamic=mode == "int8-dynamic")(torch.ones(2, 64, dtype=dtype))
    except (RuntimeError, NotImplementedError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"--quantize {mode} is not available for {dtype} on this CPU/torch build ({first}); "
            "use --dtype bfloat16 or float32, or --quantize none"
        ) from err


def _replace_linears(module: torch.nn.Module, dynamic: bool) -> None:
    for name, child in list(module.named_children()):
        if type(child) is torch.nn.Linear:
            setattr(module, name, Int8Linear(child, dynamic))
        else:
            _replace_linears(child, dynamic)


def quantize_lm(lm: torch.nn.Module, mode: str, backend: str = "auto") -> None:
    """Quantize the Linear layers of `lm` (or of any module, e.g. the audio encoder) in place.

    A no-op for `none` or when already done in `mode`. `backend`: `torch` (our
    `Int8Linear`, CPU), `torchao`, or `auto` (torch on CPU, torchao elsewhere).
    """
    if mode not in QUANTIZE_MODES:
        raise UserError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, not {mode!r}")
    _resolve_backend(backend, lm)
    done = getattr(lm, _MARK, "none")
    if mode == done:
        return
    if done != "none":
        raise UserError(f"this model is already quantized as {done}; load it again to use --quantize {mode}")
    if mode == "none":
        return
    param = next(lm.parameters())
    backend = _resolve_backend(backend, lm)
    if backend == "torch":
        _check_torch_ops(mode, param.device, param.dtype)
        _replace_linears(lm, dynamic=mode == "int8-dynamic")
        # The float weights and the conversion's temporaries are freed, but glibc keeps most of
        # them (measured: fbgemm-packed weights held 2x their size in RSS until a trim).
        return_free_memory()
    else:
        quantize_, config = _torchao_config(mode)
        quantize_(lm, config)
    setattr(lm, _MARK, mode)


def quantize_model(lm: torch.nn.Module, encoder: torch.nn.Module, mode: str, backend: str = "auto") -> None:
    """The LM in `mode`; the audio encoder too in `int8-dynamic` where torch's CPU ops run it.

    Why not the encoder in weight-only `int8`: its steps are 20 rows (one chunk), where
    `_weight_int8pack_mm` is slower than a bf16 matmul (measured 1.5x on the Omni-3B encoder)
    and the encoder's weights are a fifth of the LM's; in `int8-dynamic` it is 1.6x faster.
    """
    quantize_lm(lm, mode, backend)
    if mode == "int8-dynamic" and _resolve_backend(backend, encoder) == "torch":
        quantize_lm(encoder, mode, "torch")


def _resolve_backend(backend: str, module: torch.nn.Module) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"quantize backend must be one of {BACKENDS}, not {backend!r}")
    if backend == "auto":
        return "torch" if next(module.parameters()).device.type == "cpu" else "torchao"
    return backend


def quantized_mode(lm: torch.nn.Module) -> str:
    return getattr(lm, _MARK, "none")


def weight_bytes(module: torch.nn.Module) -> int:
    """Bytes of the module's weights as stored (an int8 tensor counts its int8 data and scales)."""
    total = sum(m.nbytes() for m in module.modules() if isinstance(m, Int8Linear))
    for param in module.parameters():
        inner = [getattr(param, name) for name in getattr(param, "__tensor_flatten__", lambda: ([], None))()[0]]
        tensors = inner or [param]
        total += sum(t.numel() * t.element_size() for t in tensors)
    return total
