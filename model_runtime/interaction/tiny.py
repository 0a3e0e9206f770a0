"""A tiny Audio-Interaction checkpoint in the exact release layout, rigged to behave predictably.

`make_tiny_checkpoint(folder)` writes every file of the upstream release
(DESIGN.md section 2) with tiny widths but the full vocabulary (151936 ids, so
every special token id exists) and a real `tokenizer.json`. The weights are
random (seeded: same seed -> same bytes) except for a small rigged subspace
that makes the model's decisions known in advance, so tests can drive both
branches of the listening loop:

* LISTENING: at every ASSISTANT position the greedy next token is KEEP_SILENCE,
  except when the chunk just encoded is the trigger sound (`TRIGGER_DESCRIPTION`,
  `trigger_audio()`): then it is TEXT_BEGIN.
* SPEAKING: TEXT_BEGIN -> RIGGED_EMOTION -> the tokens of RIGGED_TEXT -> TEXT_END.
* Both hold whatever precedes them (tested with hundreds of chunks of context)
  and the decision depends only on the current chunk's audio.

How the rig works (residual width 64; dims 0..15 are the rig's, 16..63 random):

* Encoder: one channel of its width computes "energy in the mel bands at 1 kHz
  minus the mean of bands 150-400 Hz away" (conv1 row), gated by GELU, carried
  untouched through every encoder layer (their output rows for that channel are
  zero) and projected by `proj` onto LM dim F. A loud pure 1 kHz tone gives a
  narrow peak that is 6-8 log10 units above its floored neighbours; silence,
  noise and speech never do (speech harmonics are at most ~2 units above the
  band average), so F is large only for the trigger.
* LM layer 0, head 0: constant query/key (biases only) whose RoPE score peaks
  at relative distance 1 by a wide margin up to 32k tokens, so the ASSISTANT
  position reads the value of the position before it: the chunk's last audio
  vector. Its value is dim F, written by o_proj into dim DEC.
* ASSISTANT's embedding holds a constant BIAS in its own dim. LM-head rows:
  KEEP_SILENCE reads BIAS, TEXT_BEGIN reads DEC: TEXT_BEGIN wins exactly when
  DEC > BIAS. BIAS is calibrated at generation time between the encoder's
  values for trigger and non-trigger calibration chunks.
* SPEAKING is a bigram chain: each chain token's embedding has its own rig dim
  and the LM-head row of the next chain token reads it.
* Every other weight is random but never writes into dims 0..15 (o_proj and
  down_proj rows there are zero; embeddings and LM-head rows there are zero),
  so all random layers are live (parity tests see every weight) without
  touching the rig.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from .. import constants as c
from ..errors import UserError
from .features import log_mel_raw_offline, mel_filters, normalise

# torch, transformers and `checkpoint` (which imports them) are imported inside the
# functions that use them: the CLI imports this module to list its arguments, and
# `audio-interaction analyze` with the lite engine must not pay for torch.

# --- what tests rely on -----------------------------------------------------------

TRIGGER_FREQUENCY = 1000.0
TRIGGER_DESCRIPTION = (
    "a loud (amplitude 0.5) pure 1 kHz sine tone filling the whole 0.4 s chunk "
    "(the decision reads the chunk's last ~0.1 s)"
)
RIGGED_EMOTION = c.URGENT
RIGGED_EMOTION_NAME = c.EMOTION_TOKENS[RIGGED_EMOTION]
RIGGED_TEXT = "I hear an alarm, please check."

LAYOUTS = ("qkv", "attn")
WEIGHT_FORMATS = ("safetensors", "pt")
PT_WEIGHTS = "model.pt"


def trigger_audio(seconds: float = c.CHUNK_SECONDS, amplitude: float = 0.5, phase: float = 0.0) -> np.ndarray:
    """The rigged trigger: a pure 1 kHz tone, 16 kHz float32."""
    t = np.arange(int(round(seconds * c.SAMPLE_RATE))) / c.SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * TRIGGER_FREQUENCY * t + phase)).astype(np.float32)


# --- shapes -------------------------------------------------------------------------

TINY_LITGPT_CONFIG: dict[str, Any] = {
    "name": "audio-interaction-tiny",
    "block_size": 32768,
    "vocab_size": 151643,
    "padded_vocab_size": 151936,
    "n_layer": 2,
    "n_head": 4,
    "n_embd": 64,
    "n_query_groups": 2,
    "head_size": 16,
    "rotary_percentage": 1.0,
    "parallel_residual": False,
    "bias": False,
    "attn_bias": True,
    "norm_class_name": "RMSNorm",
    "norm_eps": 1e-6,
    "mlp_class_name": "LLaMAMLP",
    "intermediate_size": 128,
    "rope_base": 1000000,
}
TINY_AUDIO_CONFIG: dict[str, Any] = {
    "model_type": "qwen2_5_omni_audio_encoder",
    "num_mel_bins": c.N_MELS,
    "encoder_layers": 2,
    "encoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "d_model": 32,
    "max_source_positions": 1500,
    "n_window": 100,
    "output_dim": TINY_LITGPT_CONFIG["n_embd"],
    "activation_function": "gelu",
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "scale_embedding": False,
}

# --- the rig's constants -------------------------------------------------------------

RIG_DIMS = 16  # LM residual dims 0..15 belong to the rig
DIM_FEATURE, DIM_DECISION, DIM_BIAS, DIM_CHAIN = 0, 1, 2, 3
ENCODER_CHANNEL = TINY_AUDIO_CONFIG["d_model"] - 1  # its sinusoid is ~constant (lowest frequency cosine)
# Relative weight of each RoPE frequency pair in the rigged head's score; chosen (by search)
# to maximise the smallest score gap between distance 1 and any other distance < 40k.
ROPE_PAIR_WEIGHTS = (0.214, 0.267, 0.086, 0.100, 0.160, 0.174, 0.0, 0.0)
PEAK_SCORE = 300.0  # the rigged head's attention score at distance 1 (after 1/sqrt(head_size))
MAX_CONTEXT_CHECKED = 32768
CONTRAST_GAIN = 30.0  # encoder rig channel: gain on the 1 kHz contrast (normalised log-mel units)
CONTRAST_THRESHOLD = 1.0  # contrast below this gives ~0 after GELU (a tone gives ~1.5-2)
CHAIN_EMBEDDING = 4.0
CHAIN_LOGIT_GAIN = 4.0
DECISION_LOGIT_GAIN = 6.0
RANDOM_LM_HEAD_STD = 0.05

_SPECIAL_TOKEN_NAMES = {
    c.TEXT_END: "<|endoftext|>",
    c.TEXT_BEGIN: "<|im_start|>",
    c.TEXT_BEGIN + 1: "<|im_end|>",
    c.AUDIO_PAD: "<|AUDIO|>",
    c.AUDIO_BEGIN: "<|audio_bos|>",
    c.AUDIO_END: "<|audio_eos|>",
    c.USER: "<|user|>",
    c.ASSISTANT: "<|assistant|>",
    c.KEEP_SILENCE: "<|keep_silence|>",
    c.PAD: "<|pad|>",
    c.ONLINE: "<|online|>",
    c.OFFLINE: "<|offline|>",
    c.ENGLISH: "<|english|>",
    **{tid: f"<|{name}|>" for tid, name in c.EMOTION_TOKENS.items()},
}
_FIRST_SPECIAL = min(_SPECIAL_TOKEN_NAMES)
_LAST_SPECIAL = max(_SPECIAL_TOKEN_NAMES)
_TOKENIZER_CORPUS = (
    c.DEFAULT_SYSTEM_PROMPT,
    RIGGED_TEXT,
    c.NO_RESPONSE_TEXT,
    "Translate into English. Transcribe what you hear.",
    "There is a smoke alarm in the kitchen. The baby is crying. Someone is at the door.",
    "Hello, how are you? What is the weather like today? Turn on the lights.",
)


# --- tokenizer -------------------------------------------------------------------------


def build_tokenizer():
    """A byte-level BPE tokenizer: a small vocabulary for text, special tokens at upstream's ids."""
    from tokenizers import Tokenizer

    built = Tokenizer.from_str(_tokenizer_json())
    for i, name in _SPECIAL_TOKEN_NAMES.items():
        assert built.token_to_id(name) == i, (name, i, built.token_to_id(name))
    return built


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(list(_TOKENIZER_CORPUS), trainer=trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    # Added tokens take the ids after the base vocabulary, in order: fill the base vocabulary
    # with unreachable filler entries up to the first special id, and list every id from there
    # to the last special one (unnamed ids become reserved tokens), so each lands on its id.
    for i in range(len(vocab), _FIRST_SPECIAL):
        vocab[f"<filler_{i}>"] = i
    spec["added_tokens"] = [
        {
            "id": i,
            "content": _SPECIAL_TOKEN_NAMES.get(i, f"<|reserved_{i}|>"),
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for i in range(_FIRST_SPECIAL, _LAST_SPECIAL + 1)
    ]
    return json.dumps(spec)


def rigged_text_ids(tokenizer) -> list[int]:
    ids = tokenizer.encode(RIGGED_TEXT).ids
    if len(set(ids)) != len(ids) or any(i >= _FIRST_SPECIAL for i in ids):
        raise AssertionError(f"RIGGED_TEXT must encode to distinct ordinary tokens, got {ids}")
    return ids


def speaking_chain(tokenizer, emotion: int = RIGGED_EMOTION) -> list[int]:
    """The rigged response, token by token: TEXT_BEGIN, emotion, text, TEXT_END."""
    return [c.TEXT_BEGIN, emotion, *rigged_text_ids(tokenizer), c.TEXT_END]


def emotion_token(name: str) -> int:
    tokens = {label: token for token, label in c.EMOTION_TOKENS.items()}
    if name not in tokens:
        raise UserError(f"unknown emotion {name!r}: choose one of {', '.join(tokens)}")
    return tokens[name]


# --- random weights ----------------------------------------------------------------------


class _Random:
    """Seeded tensors drawn in a fixed order (CPU generator: same seed, same bytes)."""

    def __init__(self, seed: int) -> None:
        import torch

        self.gen = torch.Generator().manual_seed(seed)

    def normal(self, *shape: int, std: float = 1.0, mean: float = 0.0) -> torch.Tensor:
        import torch

        return torch.randn(*shape, generator=self.gen, dtype=torch.float32) * std + mean


def _random_lm(rnd: _Random, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    d, v, inter = cfg["n_embd"], cfg["padded_vocab_size"], cfg["intermediate_size"]
    q_rows = cfg["n_head"] * cfg["head_size"]
    kv_rows = cfg["n_query_groups"] * cfg["head_size"]
    std = 1.0 / math.sqrt(d)
    w = {"model.embed_tokens.weight": rnd.normal(v, d)}
    for layer in range(cfg["n_layer"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = rnd.normal(d, std=0.1, mean=1.0)
        w[p + "self_attn.q_proj.weight"] = rnd.normal(q_rows, d, std=std)
        w[p + "self_attn.q_proj.bias"] = rnd.normal(q_rows, std=0.1)
        w[p + "self_attn.k_proj.weight"] = rnd.normal(kv_rows, d, std=std)
        w[p + "self_attn.k_proj.bias"] = rnd.normal(kv_rows, std=0.1)
        w[p + "self_attn.v_proj.weight"] = rnd.normal(kv_rows, d, std=std)
        w[p + "self_attn.v_proj.bias"] = rnd.normal(kv_rows, std=0.1)
        w[p + "self_attn.o_proj.weight"] = rnd.normal(d, q_rows, std=1.0 / math.sqrt(q_rows))
        w[p + "post_attention_layernorm.weight"] = rnd.normal(d, std=0.1, mean=1.0)
        w[p + "mlp.gate_proj.weight"] = rnd.normal(inter, d, std=std)
        w[p + "mlp.up_proj.weight"] = rnd.normal(inter, d, std=std)
        w[p + "mlp.down_proj.weight"] = rnd.normal(d, inter, std=1.0 / math.sqrt(inter))
    w["model.norm.weight"] = rnd.normal(d, std=0.1, mean=1.0)
    w["lm_head.weight"] = rnd.normal(v, d, std=RANDOM_LM_HEAD_STD)
    return w


def _random_encoder(rnd: _Random, audio_config) -> dict[str, torch.Tensor]:
    import torch
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    with torch.device("meta"):
        shapes = {k: tuple(t.shape) for k, t in Qwen2_5OmniAudioEncoder(audio_config).state_dict().items()}
    w = {}
    for name in sorted(shapes):
        shape = shapes[name]
        is_norm = "layer_norm" in name or name.startswith("ln_post")
        if is_norm and name.endswith(".weight"):
            w[name] = rnd.normal(*shape, std=0.1, mean=1.0)
        elif name.endswith(".bias"):
            w[name] = rnd.normal(*shape, std=0.02)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
            w[name] = rnd.normal(*shape, std=1.0 / math.sqrt(fan_in))
    return w


# --- the rig --------------------------------------------------------------------------------


def _rope_query_key(cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant q and k of one head whose RoPE score peaks at relative distance 1."""
    import torch
    hs = cfg["head_size"]
    half = hs // 2
    theta = 1.0 / (float(cfg["rope_base"]) ** (np.arange(0, hs, 2) / hs))
    weights = np.asarray(ROPE_PAIR_WEIGHTS[:half], dtype=np.float64)
    # score(r) = (1/sqrt(hs)) * sum_i |q_i||k_i| cos((r - 1) * theta_i): k_i is q_i turned by theta_i
    magnitude = np.sqrt(PEAK_SCORE * math.sqrt(hs) * weights / weights.sum())
    q = np.zeros(hs)
    k = np.zeros(hs)
    q[:half] = magnitude
    k[:half] = magnitude * np.cos(theta)
    k[half:] = magnitude * np.sin(theta)
    return torch.tensor(q, dtype=torch.float32), torch.tensor(k, dtype=torch.float32)


def rope_leak(cfg: dict[str, Any], context: int = MAX_CONTEXT_CHECKED) -> float:
    """Total softmax weight the rigged head gives to positions other than distance 1 (fp64)."""
    hs = cfg["head_size"]
    q, k = (t.double().numpy() for t in _rope_query_key(cfg))
    theta = 1.0 / (float(cfg["rope_base"]) ** (np.arange(0, hs, 2) / hs))
    r = np.arange(context, dtype=np.float64)[:, None]
    qc, qs = q[: hs // 2], q[hs // 2 :]
    kc, ks = k[: hs // 2], k[hs // 2 :]
    # q at position m, k at m - r: rotate q by r*theta relative to k
    rot_c = qc * np.cos(r * theta) - qs * np.sin(r * theta)
    rot_s = qs * np.cos(r * theta) + qc * np.sin(r * theta)
    scores = (rot_c * kc + rot_s * ks).sum(axis=1) / math.sqrt(hs)
    weights = np.exp(scores - scores.max())
    return float((weights.sum() - weights[1]) / weights.sum())


def _mel_bands_for_trigger() -> tuple[np.ndarray, np.ndarray]:
    """Mel bands a 1 kHz tone fills, and bands 150-400 Hz away from it (its floored neighbours)."""
    filters = mel_filters()  # (fft bins, bands)
    bin_hz = c.SAMPLE_RATE / c.N_FFT
    centre = int(round(TRIGGER_FREQUENCY / bin_hz))
    peak = np.nonzero(filters[centre - 1 : centre + 2].sum(0))[0]
    band_centre_hz = filters.argmax(0) * bin_hz
    near = filters[centre - 4 : centre + 5].sum(0) > 0
    away = np.abs(band_centre_hz - TRIGGER_FREQUENCY)
    neighbours = np.nonzero(~near & (away >= 150) & (away <= 400))[0]
    return peak, neighbours


def _rig_encoder(w: dict[str, torch.Tensor], n_layers: int) -> None:
    ch = ENCODER_CHANNEL
    peak, neighbours = _mel_bands_for_trigger()
    conv1 = w["conv1.weight"]  # (d_model, mels, 3)
    conv1[ch] = 0.0
    conv1[ch, peak, 1] = CONTRAST_GAIN / len(peak)
    conv1[ch, neighbours, 1] = -CONTRAST_GAIN / len(neighbours)
    w["conv1.bias"][ch] = -CONTRAST_GAIN * CONTRAST_THRESHOLD
    conv2 = w["conv2.weight"]  # (d_model, d_model, 3): the channel passes alone, averaged over 3 frames
    conv2[ch] = 0.0
    conv2[:, ch] = 0.0
    conv2[ch, ch, :] = 1.0 / 3.0
    w["conv2.bias"][ch] = 0.0
    for layer in range(n_layers):  # no encoder layer writes the channel
        p = f"layers.{layer}."
        for name in ("self_attn.out_proj", "fc2"):
            w[p + name + ".weight"][ch] = 0.0
            w[p + name + ".bias"][ch] = 0.0
    w["ln_post.weight"][ch] = 1.0
    w["ln_post.bias"][ch] = 0.0
    proj = w["proj.weight"]  # (lm width, d_model)
    proj[:RIG_DIMS] = 0.0
    proj[:, ch] = 0.0
    proj[DIM_FEATURE, ch] = 1.0
    w["proj.bias"][:RIG_DIMS] = 0.0


def _rig_lm(w: dict[str, torch.Tensor], cfg: dict[str, Any], chain: list[int]) -> None:
    hs = cfg["head_size"]
    rig = slice(0, RIG_DIMS)
    w["model.embed_tokens.weight"][:, rig] = 0.0
    w["lm_head.weight"][:, rig] = 0.0
    w["model.norm.weight"][rig] = 1.0
    for layer in range(cfg["n_layer"]):
        p = f"model.layers.{layer}."
        w[p + "self_attn.o_proj.weight"][rig] = 0.0
        w[p + "mlp.down_proj.weight"][rig] = 0.0
    p = "model.layers.0."
    w[p + "input_layernorm.weight"][DIM_FEATURE] = 1.0
    q, k = _rope_query_key(cfg)
    w[p + "self_attn.q_proj.weight"][:hs] = 0.0  # head 0: constant query
    w[p + "self_attn.q_proj.bias"][:hs] = q
    w[p + "self_attn.k_proj.weight"][:hs] = 0.0  # kv group 0: constant key
    w[p + "self_attn.k_proj.bias"][:hs] = k
    w[p + "self_attn.v_proj.weight"][0] = 0.0  # value dim 0 of group 0 = the audio feature
    w[p + "self_attn.v_proj.weight"][0, DIM_FEATURE] = 1.0
    w[p + "self_attn.v_proj.bias"][0] = 0.0
    w[p + "self_attn.o_proj.weight"][DIM_DECISION, 0] = 1.0
    # decision rows: KEEP_SILENCE reads BIAS (set in ASSISTANT's embedding), TEXT_BEGIN reads DEC
    w["lm_head.weight"][c.KEEP_SILENCE, DIM_BIAS] = DECISION_LOGIT_GAIN
    w["lm_head.weight"][c.TEXT_BEGIN, DIM_DECISION] = DECISION_LOGIT_GAIN
    # speaking: a bigram chain
    if DIM_CHAIN + len(chain) - 1 > RIG_DIMS:
        raise AssertionError(f"the rigged response has {len(chain)} tokens; the rig has room for {RIG_DIMS - DIM_CHAIN + 1}")
    for i, (token, following) in enumerate(zip(chain, chain[1:])):
        w["model.embed_tokens.weight"][token, DIM_CHAIN + i] = CHAIN_EMBEDDING
        w["lm_head.weight"][following, DIM_CHAIN + i] = CHAIN_LOGIT_GAIN


# --- calibration -------------------------------------------------------------------------------


def calibration_chunks(seed: int = 1234) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(trigger chunks, non-trigger chunks): tones, noise, silence, speech-like harmonic sounds."""
    rng = np.random.default_rng(seed)
    n = c.CHUNK_SAMPLES
    t = np.arange(n) / c.SAMPLE_RATE
    triggers = []
    for amplitude in (0.1, 0.3, 0.5, 0.9):
        phase = rng.uniform(0, 2 * np.pi)
        triggers.append(trigger_audio(c.CHUNK_SECONDS, amplitude, phase))
        triggers.append(trigger_audio(c.CHUNK_SECONDS, amplitude, phase) + rng.normal(0, amplitude * 0.01, n))
    others = [np.zeros(n), rng.normal(0, 1e-4, n)]
    for level in (0.003, 0.03, 0.3):
        white = rng.normal(0, level, n)
        others += [white, np.cumsum(white) / 30.0, white * (1 + np.sin(2 * np.pi * 4 * t))]
    for freq in (250, 440, 600, 750, 1300, 1500, 2000, 3000, 3200, 4000):
        others.append(0.5 * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6)))
    for f0 in (85, 100, 110, 125, 140, 166, 180, 200, 220, 250, 280, 333):
        others.append(_speech_like(f0, t, rng))
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 12)] = 0.8
    others.append(clicks)
    return [a.astype(np.float32) for a in triggers], [a.astype(np.float32) for a in others]


def _speech_like(f0: float, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like harmonic sound: glottal harmonics shaped by random formants, with vibrato."""
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / c.SAMPLE_RATE
    formants = rng.uniform([300, 900, 2200], [800, 1700, 3000])
    signal = np.zeros_like(t)
    for h in range(1, int(7000 / f0)):
        freq = h * f0
        gain = sum(np.exp(-(((freq - fm) / 120.0) ** 2)) for fm in formants) + 0.02
        signal += gain / h**0.5 * np.sin(h * phase)
    return 0.3 * signal / np.abs(signal).max()


def _chunk_features(chunk: np.ndarray, headroom: float) -> np.ndarray:
    """Log-mel of one chunk as the loop sees it: floor at (max + headroom - 8)."""
    raw = log_mel_raw_offline(chunk)
    return normalise(raw, float(raw.max()) + headroom)


def _decision_values(lm, encoder, chunks: list[np.ndarray]) -> np.ndarray:
    """The DEC value the rigged head writes at ASSISTANT, per chunk (fp32, chunk alone in context)."""
    import torch
    from . import checkpoint as ckpt
    mels = [_chunk_features(ch, headroom) for ch in chunks for headroom in (0.0, 1.0)]
    audio = ckpt.encode_chunks_with(encoder, np.concatenate(mels, axis=1))  # (N, 10, d)
    embed = lm.model.embed_tokens
    begin = embed(torch.tensor([c.AUDIO_BEGIN]))
    assistant = embed(torch.tensor([c.ASSISTANT]))
    seqs = torch.stack([torch.cat([begin, a, assistant]) for a in audio])
    with torch.no_grad():
        hidden = lm.model(inputs_embeds=seqs, output_hidden_states=True).hidden_states[1]
    return hidden[:, -1, DIM_DECISION].numpy().reshape(len(chunks), 2)


# --- writing the folder ---------------------------------------------------------------------------


def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: str, n_head: int, n_groups: int, head_size: int):
    """transformers q/k/v -> LitGPT's fused matrix: `qkv` (stacked) or the older `attn` (interleaved)."""
    import torch
    if layout == "qkv":
        return torch.cat([q, k, v])
    q_per_kv = n_head // n_groups
    qs = q.reshape(n_groups, q_per_kv, head_size, *q.shape[1:])
    ks = k.reshape(n_groups, 1, head_size, *k.shape[1:])
    vs = v.reshape(n_groups, 1, head_size, *v.shape[1:])
    return torch.cat([qs, ks, vs], dim=1).reshape(-1, *q.shape[1:])


def hf_to_litgpt(w: dict[str, torch.Tensor], cfg: dict[str, Any], layout: str) -> dict[str, torch.Tensor]:
    from . import checkpoint as ckpt
    out = {}
    reverse_global = {hf: lit for lit, hf in ckpt._GLOBAL_NAMES.items()}
    reverse_layer = {hf: lit for lit, hf in ckpt._LAYER_NAMES.items()}
    fused_name = "attn.qkv" if layout == "qkv" else "attn.attn"
    for layer in range(cfg["n_layer"]):
        p = f"model.layers.{layer}."
        lp = f"transformer.h.{layer}."
        for hf_name, lit_name in reverse_layer.items():
            out[lp + lit_name] = w[p + hf_name]
        for kind in ("weight", "bias"):
            q, k, v = (w[f"{p}self_attn.{x}_proj.{kind}"] for x in "qkv")
            out[f"{lp}{fused_name}.{kind}"] = fuse_qkv(
                q, k, v, layout, cfg["n_head"], cfg["n_query_groups"], cfg["head_size"]
            )
    for hf_name, lit_name in reverse_global.items():
        out[lit_name] = w[hf_name]
    return {k: t.contiguous().clone() for k, t in sorted(out.items())}


def _write_lm(folder: Path, state: dict[str, torch.Tensor], weights: str) -> None:
    import torch
    from . import checkpoint as ckpt
    if weights == "pt":
        torch.save(state, folder / PT_WEIGHTS)
        return
    from safetensors.torch import save_file

    first = {k: t for k, t in state.items() if k.startswith(("transformer.wte", "transformer.h.0."))}
    shards = [first, {k: t for k, t in state.items() if k not in first}]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        save_file(shard, folder / name, metadata={"format": "pt"})
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / ckpt.SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2) + "\n")


def _write_metadata(folder: Path, tokenizer) -> None:
    from . import checkpoint as ckpt
    import yaml

    (folder / ckpt.MODEL_CONFIG).write_text(yaml.safe_dump(TINY_LITGPT_CONFIG, sort_keys=False))
    tokenizer.save(str(folder / ckpt.TOKENIZER))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": TINY_LITGPT_CONFIG["block_size"],
        "eos_token": _SPECIAL_TOKEN_NAMES[c.TEXT_END],
        "pad_token": _SPECIAL_TOKEN_NAMES[c.TEXT_END],
        "add_bos_token": False,
    }, indent=2) + "\n")
    (folder / "generation_config.json").write_text(json.dumps({
        "eos_token_id": c.TEXT_END, "do_sample": False, "max_new_tokens": 128,
    }, indent=2) + "\n")
    omni = {
        "architectures": ["Qwen2_5OmniModel"],
        "model_type": "qwen2_5_omni",
        "thinker_config": {"model_type": "qwen2_5_omni_thinker", "audio_config": TINY_AUDIO_CONFIG},
    }
    (folder / ckpt.OMNI_CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (folder / ckpt.OMNI_CONFIG).write_text(json.dumps(omni, indent=2) + "\n")


def make_tiny_checkpoint(
    folder: str | Path, seed: int = 0, layout: str = "qkv", weights: str = "safetensors",
    emotion: str = RIGGED_EMOTION_NAME,
) -> Path:
    """Write a rigged tiny checkpoint in the release layout into `folder` (created) and return it.

    `emotion`: the tag the rigged reply starts with (urgent by default: a reaction to a sound;
    "normal" makes it an answer, as to a spoken request).
    """
    import torch
    from . import checkpoint as ckpt
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: choose {' or '.join(LAYOUTS)}")
    if weights not in WEIGHT_FORMATS:
        raise UserError(f"unknown weight format {weights!r}: choose {' or '.join(WEIGHT_FORMATS)}")
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} exists and is not an empty folder; give a new or empty folder")
    cfg = TINY_LITGPT_CONFIG
    tokenizer = build_tokenizer()
    lm_w, enc_w = rigged_weights(seed, emotion_token(emotion))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        _write_metadata(folder, tokenizer)
        _write_lm(folder, hf_to_litgpt(lm_w, cfg, layout), weights)
        torch.save({k: t.contiguous() for k, t in enc_w.items()}, folder / ckpt.ENCODER_WEIGHTS)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


@functools.lru_cache(maxsize=4)
def rigged_weights(seed: int = 0, emotion: int = RIGGED_EMOTION) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(LM weights in transformers names, encoder weights) of the tiny checkpoint; do not modify them.

    Cached per seed: the layouts and weight formats of one seed share the same tensors.
    """
    from . import checkpoint as ckpt
    leak = rope_leak(TINY_LITGPT_CONFIG)
    if leak > 1e-6:
        raise AssertionError(f"rigged attention head leaks {leak:.2e} of its weight off distance 1")
    cfg = TINY_LITGPT_CONFIG
    chain = speaking_chain(build_tokenizer(), emotion)
    audio_config = ckpt.audio_config_from_dict(TINY_AUDIO_CONFIG)
    rnd = _Random(seed)
    lm_w = _random_lm(rnd, cfg)
    enc_w = _random_encoder(rnd, audio_config)
    _rig_lm(lm_w, cfg, chain)
    _rig_encoder(enc_w, TINY_AUDIO_CONFIG["encoder_layers"])
    lm_w["model.embed_tokens.weight"][c.ASSISTANT, DIM_BIAS] = _calibrate_bias(cfg, audio_config, lm_w, enc_w)
    return lm_w, enc_w


def _calibrate_bias(cfg, audio_config, lm_w, enc_w) -> float:
    """ASSISTANT's BIAS: the geometric mean of the weakest trigger's and strongest non-trigger's DEC."""
    import torch
    from . import checkpoint as ckpt
    device, dtype = torch.device("cpu"), torch.float32
    lm = ckpt.lm_from_hf_state(ckpt.qwen2_config_from_litgpt(cfg), dict(lm_w), device, dtype)
    encoder = ckpt.encoder_from_state(audio_config, dict(enc_w), device, dtype)
    triggers, others = calibration_chunks()
    high = _decision_values(lm, encoder, triggers).min()
    low = max(_decision_values(lm, encoder, others).max(), 1e-3)
    if high < 3 * low:
        raise AssertionError(f"the rigged encoder does not separate the trigger: {high:.3f} vs {low:.3f}")
    return float(math.sqrt(high * low))


# --- CLI -----------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="new (or empty) folder to write the checkpoint into")
    parser.add_argument("--layout", choices=LAYOUTS, default="qkv",
                        help="LitGPT fused attention layout: qkv (current) or attn (older, interleaved)")
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default="safetensors",
                        help="LM weights as safetensors shards + index, or one .pt state dict")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same weights)")
    parser.add_argument("--emotion", choices=list(c.EMOTION_TOKENS.values()), default=RIGGED_EMOTION_NAME,
                        help="the rigged reply's emotion tag (default %(default)s: a reaction to a sound)")


def main(args: argparse.Namespace) -> int:
    folder = make_tiny_checkpoint(args.folder, seed=args.seed, layout=args.layout, weights=args.weights,
                                  emotion=args.emotion)
    print(f"wrote a tiny rigged checkpoint to {folder}")
    print(f"  trigger: {TRIGGER_DESCRIPTION}")
    print(f"  response: <|{args.emotion}|> {RIGGED_TEXT}")
    return 0
