"""Load an Audio-Interaction checkpoint (upstream release layout) into transformers modules.

The release layout (DESIGN.md section 2), all files in one folder:

    model_config.yaml                       LitGPT config of the LM
    tokenizer.json (+ tokenizer_config.json, generation_config.json)
    model.safetensors.index.json + shards   LM weights, LitGPT names
      (or a single *.pt / *.pth state dict)
    audiointeraction_ChunkwisedEncoder.pth  audio encoder state dict, `proj` included
    qwen25OmniConfig/config.json            Qwen2.5-Omni config (thinker_config.audio_config)

The LM is upstream's LitGPT `GPT`; it maps exactly onto transformers'
`Qwen2ForCausalLM` (`LITGPT_TO_HF` below). LitGPT stores q, k and v fused: the
current layout `attn.qkv` stacks all Q rows, then all K rows, then all V rows;
the older `attn.attn` interleaves them per query group (for each group: its
q_per_kv query heads, then its key head, then its value head).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .. import constants as c
from ..errors import CheckpointError
from .cuda_graphs import CudaGraphs

log = logging.getLogger(__name__)

MODEL_CONFIG = "model_config.yaml"
TOKENIZER = "tokenizer.json"
SAFETENSORS_INDEX = "model.safetensors.index.json"
ENCODER_WEIGHTS = "audiointeraction_ChunkwisedEncoder.pth"
OMNI_CONFIG = "qwen25OmniConfig/config.json"
# Files a release folder must hold besides the LM weights (either format).
REQUIRED_FILES = (MODEL_CONFIG, TOKENIZER, ENCODER_WEIGHTS, OMNI_CONFIG)
# Optional metadata a release folder ships; downloaded with the rest.
OPTIONAL_FILES = ("tokenizer_config.json", "generation_config.json")

# LitGPT per-layer names -> transformers Qwen2 per-layer names (q/k/v handled apart).
_LAYER_NAMES = {
    "norm_1.weight": "input_layernorm.weight",
    "attn.proj.weight": "self_attn.o_proj.weight",
    "norm_2.weight": "post_attention_layernorm.weight",
    "mlp.fc_1.weight": "mlp.gate_proj.weight",
    "mlp.fc_2.weight": "mlp.up_proj.weight",
    "mlp.proj.weight": "mlp.down_proj.weight",
}
_GLOBAL_NAMES = {
    "transformer.wte.weight": "model.embed_tokens.weight",
    "transformer.ln_f.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}
_LAYER_KEY = re.compile(r"^transformer\.h\.(\d+)\.(.+)$")
# Prefixes an encoder state dict may carry when saved from a larger module.
_ENCODER_PREFIXES = ("thinker.audio_tower.", "audio_tower.", "model.audio_tower.", "encoder.", "module.")


# --- finding the checkpoint -----------------------------------------------------


def resolve_checkpoint(model: str, cache_dir: str | None = None) -> Path:
    """A local release folder, or a HF hub repo id downloaded with huggingface_hub (tqdm progress).

    Raises `CheckpointError` with what is wrong and what to do: folder missing a
    file, offline with nothing cached, unknown repo, repo missing a file.
    """
    path = Path(model).expanduser()
    # A repo id is "name" or "owner/name"; anything else that looks like a path is a folder.
    looks_like_path = model.startswith((".", "/", "~")) or model.count("/") > 1 or (os.sep != "/" and os.sep in model)
    if path.exists() or looks_like_path:
        if not path.is_dir():
            raise CheckpointError(f"checkpoint folder not found: {path} (give a folder in the release layout or a HF repo id)")
        check_release_layout(path)
        return path
    return _download(model, cache_dir)


def _download(repo_id: str, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        # snapshot_download shows a tqdm progress bar per file on stderr.
        folder = Path(snapshot_download(repo_id, cache_dir=cache_dir))
    except HFValidationError as err:
        raise CheckpointError(
            f"{repo_id!r} is neither an existing checkpoint folder nor a valid HF repo id ({err})"
        ) from None
    except LocalEntryNotFoundError:
        raise CheckpointError(
            f"cannot download {repo_id!r}: no connection to the Hugging Face hub (or HF_HUB_OFFLINE is set) and no "
            f"copy in the cache ({cache_dir or 'the default HF cache'}); connect this machine once, or copy the "
            "checkpoint folder here and pass it with --model /path/to/folder"
        ) from None
    except GatedRepoError:
        raise CheckpointError(
            f"{repo_id!r} is gated: accept its terms on the hub and log in (`hf auth login`), then retry"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError):
        raise CheckpointError(
            f"HF repo {repo_id!r} not found (or private): check the spelling, or log in with `hf auth login`"
        ) from None
    except OSError as err:  # disk full, permissions, connection dropped half-way
        raise CheckpointError(f"downloading {repo_id!r} failed: {err}") from None
    check_release_layout(folder, source=f"HF repo {repo_id!r}")
    return folder


def check_release_layout(folder: Path, source: str | None = None) -> None:
    """Raise CheckpointError naming every missing file of the release layout."""
    where = source or str(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if not (folder / SAFETENSORS_INDEX).is_file() and not _single_state_dicts(folder):
        missing.append(f"{SAFETENSORS_INDEX} (+ shards) or one *.pt/*.pth LM state dict")
    if missing:
        raise CheckpointError(
            f"{where} is not a complete Audio-Interaction checkpoint: missing {', '.join(missing)} "
            f"(in {folder}); download the whole release folder again or point --model at the right folder"
        )


def _single_state_dicts(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix in (".pt", ".pth") and p.name != ENCODER_WEIGHTS and p.is_file()
    )


# --- configs --------------------------------------------------------------------


def read_litgpt_config(folder: Path) -> dict[str, Any]:
    import yaml

    path = folder / MODEL_CONFIG
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} does not hold a LitGPT config (a YAML mapping)")
    return config


def qwen2_config_from_litgpt(config: dict[str, Any], tied: bool = False):
    """transformers `Qwen2Config` equal to a LitGPT config of the Qwen2.5 family; refuses any other shape."""
    from transformers import Qwen2Config

    def get(key: str, default: Any = None) -> Any:
        value = config.get(key, default)
        if value is None:
            raise CheckpointError(f"{MODEL_CONFIG} lacks {key!r}, which a Qwen2.5-shaped LM needs")
        return value

    n_embd, n_head = int(get("n_embd")), int(get("n_head"))
    head_size = int(config.get("head_size") or n_embd // n_head)
    # Only what Qwen2ForCausalLM computes: anything else would load but give other outputs.
    expected = {
        "norm_class_name": "RMSNorm",
        "mlp_class_name": "LLaMAMLP",
        "parallel_residual": False,
        "bias": False,
        "attn_bias": True,
        "rotary_percentage": 1.0,
    }
    wrong = [f"{k}={config.get(k)!r} (need {v!r})" for k, v in expected.items() if k in config and config[k] != v]
    if wrong:
        raise CheckpointError(f"{MODEL_CONFIG} describes an LM this runtime cannot run as Qwen2: {', '.join(wrong)}")
    vocab = int(config.get("padded_vocab_size") or get("vocab_size"))
    if vocab <= c.HIGHEST_SPECIAL_TOKEN:
        raise CheckpointError(f"{MODEL_CONFIG}: vocabulary of {vocab} lacks the special token ids up to {c.HIGHEST_SPECIAL_TOKEN}")
    return Qwen2Config(
        vocab_size=vocab,
        hidden_size=n_embd,
        intermediate_size=int(get("intermediate_size")),
        num_hidden_layers=int(get("n_layer")),
        num_attention_heads=n_head,
        num_key_value_heads=int(config.get("n_query_groups") or n_head),
        head_dim=head_size,
        hidden_act="silu",
        max_position_embeddings=int(config.get("block_size") or 32768),
        rms_norm_eps=float(config.get("norm_eps", 1e-6)),
        rope_parameters={"rope_type": "default", "rope_theta": float(config.get("rope_base", 10000))},
        tie_word_embeddings=tied,
        use_sliding_window=False,
        bos_token_id=None,
        eos_token_id=c.TEXT_END,
        pad_token_id=None,
    )


def read_audio_config(folder: Path):
    path = folder / OMNI_CONFIG
    try:
        omni = json.loads(path.read_text(encoding="utf-8"))
        audio = dict(omni["thinker_config"]["audio_config"])
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None
    except (KeyError, TypeError):
        raise CheckpointError(f"{path} has no thinker_config.audio_config (is it a Qwen2.5-Omni config.json?)") from None
    return audio_config_from_dict(audio)


def audio_config_from_dict(audio: dict[str, Any]):
    from transformers import Qwen2_5OmniAudioEncoderConfig

    audio = {k: v for k, v in audio.items() if k != "model_type"}
    return Qwen2_5OmniAudioEncoderConfig(**audio)


# --- LitGPT -> transformers names ----------------------------------------------


def litgpt_to_hf(state: dict[str, torch.Tensor], config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Rename (and split the fused q/k/v of) a LitGPT GPT state dict into Qwen2ForCausalLM names."""
    n_head = int(config["n_head"])
    n_groups = int(config.get("n_query_groups") or n_head)
    head_size = int(config.get("head_size") or int(config["n_embd"]) // n_head)
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        if key in _GLOBAL_NAMES:
            out[_GLOBAL_NAMES[key]] = tensor
            continue
        match = _LAYER_KEY.match(key)
        if not match:
            raise CheckpointError(f"unexpected LM weight {key!r}: not a LitGPT Qwen2.5 parameter name")
        layer, name = match.groups()
        prefix = f"model.layers.{layer}."
        if name in _LAYER_NAMES:
            out[prefix + _LAYER_NAMES[name]] = tensor
        elif name in ("attn.qkv.weight", "attn.qkv.bias", "attn.attn.weight", "attn.attn.bias"):
            kind = name.rsplit(".", 1)[1]
            split = split_qkv if name.startswith("attn.qkv") else split_interleaved_qkv
            q, k, v = split(tensor, n_head, n_groups, head_size)
            for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                out[f"{prefix}self_attn.{proj}.{kind}"] = part
        else:
            raise CheckpointError(f"unexpected LM weight {key!r}: not a LitGPT Qwen2.5 parameter name")
    return out


def split_qkv(fused: torch.Tensor, n_head: int, n_groups: int, head_size: int):
    """`attn.qkv`: all Q rows, then all K rows, then all V rows."""
    sizes = (n_head * head_size, n_groups * head_size, n_groups * head_size)
    _check_rows(fused, sum(sizes))
    return torch.split(fused, sizes, dim=0)


def split_interleaved_qkv(fused: torch.Tensor, n_head: int, n_groups: int, head_size: int):
    """Older `attn.attn`: per query group, its q_per_kv query heads, then one K head, then one V head."""
    q_per_kv = n_head // n_groups
    _check_rows(fused, (n_head + 2 * n_groups) * head_size)
    grouped = fused.reshape(n_groups, q_per_kv + 2, head_size, *fused.shape[1:])
    q = grouped[:, :q_per_kv].reshape(n_head * head_size, *fused.shape[1:])
    k = grouped[:, q_per_kv].reshape(n_groups * head_size, *fused.shape[1:])
    v = grouped[:, q_per_kv + 1].reshape(n_groups * head_size, *fused.shape[1:])
    return q, k, v


def _check_rows(fused: torch.Tensor, rows: int) -> None:
    if fused.shape[0] != rows:
        raise CheckpointError(f"fused q/k/v weight has {fused.shape[0]} rows, the config needs {rows}")


# --- reading weight files -------------------------------------------------------


def read_lm_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The LitGPT state dict from safetensors shards (index) or one .pt/.pth file."""
    index = folder / SAFETENSORS_INDEX
    if index.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"cannot read {index}: {err!r}") from None
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            path = folder / shard
            if not path.is_file():
                raise CheckpointError(
                    f"weight shard {shard} listed in {SAFETENSORS_INDEX} is missing from {folder}; download it again"
                )
            try:
                state.update(load_file(path))
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"cannot read weight shard {path}: {err}") from None
        missing = sorted(set(weight_map) - set(state))
        if missing:
            raise CheckpointError(f"{SAFETENSORS_INDEX} lists weights its shards lack: {', '.join(missing[:5])}")
        return state
    files = _single_state_dicts(folder)
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise CheckpointError(
            f"{folder}: need {SAFETENSORS_INDEX} or exactly one *.pt/*.pth LM state dict, found {found}"
        )
    state = _torch_load(files[0])
    if "model" in state and isinstance(state["model"], dict):  # LitGPT training checkpoints wrap it
        state = state["model"]
    return state


def _torch_load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch raises many types for a corrupt/foreign file
        raise CheckpointError(f"cannot read {path} as a torch state dict: {err}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a state dict (found {type(state).__name__})")
    return state


def read_encoder_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    state = _torch_load(folder / ENCODER_WEIGHTS)
    for prefix in _ENCODER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


# --- building the modules -------------------------------------------------------


def pick_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        picked = torch.device(device)
    except RuntimeError:
        raise CheckpointError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None
    if picked.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError(f"device {device!r} asked for, but torch sees no CUDA GPU; use --device cpu")
    return picked


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16
        # CPU: bf16 where the CPU has native bf16 dot products (AVX512-BF16 / AMX): measured
        # ~2.5x faster than fp32 on the 3B (DESIGN.md section 6) at half the memory, and bf16 is
        # the precision upstream trains and serves in. Without them bf16 matmuls are emulated and
        # slower than fp32, so fp32 is the faster correct choice there.
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    if dtype not in _DTYPES:
        raise CheckpointError(f"unknown dtype {dtype!r}: use auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


def build_lm(folder: Path, litgpt_config: dict[str, Any], device: torch.device, dtype: torch.dtype):
    raw = read_lm_state_dict(folder)
    tied = "lm_head.weight" not in raw
    config = qwen2_config_from_litgpt(litgpt_config, tied=tied)
    state = litgpt_to_hf(raw, litgpt_config)
    del raw
    return lm_from_hf_state(config, state, device, dtype, what=f"LM weights in {folder}")


def lm_from_hf_state(config, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype,
                     what: str = "LM weights"):
    """Qwen2ForCausalLM holding `state` (transformers names); ties lm_head when the state has none."""
    from transformers import Qwen2ForCausalLM

    config._attn_implementation = "sdpa"
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    tied = "lm_head.weight" not in state
    if tied:  # Qwen2.5-3B ties lm_head to the embeddings; LitGPT then saves no lm_head
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    # Build on the meta device and assign the loaded tensors: no second copy of the weights.
    with torch.device("meta"):
        lm = Qwen2ForCausalLM(config)
    _load_exact(lm, state, what=what)
    rotary = lm.model.rotary_emb  # non-persistent buffers (RoPE frequencies) are not in the state dict
    lm.model.rotary_emb = type(rotary)(config=config).to(device)
    if tied:
        lm.lm_head.weight = lm.model.embed_tokens.weight
    return lm.eval().requires_grad_(False)  # inference only: no autograd bookkeeping


def build_encoder(folder: Path, device: torch.device, dtype: torch.dtype):
    return encoder_from_state(
        read_audio_config(folder), read_encoder_state_dict(folder), device, dtype,
        what=f"{ENCODER_WEIGHTS} in {folder}",
    )


def encoder_from_state(config, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype,
                       what: str = "encoder weights"):
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    config._attn_implementation = "sdpa"
    state = {k: v.to(device=device, dtype=dtype) for k, v in state.items()}
    with torch.device("meta"):
        encoder = Qwen2_5OmniAudioEncoder(config)
    _load_exact(encoder, state, what=what)
    pos = encoder.positional_embedding  # non-persistent sinusoid table
    encoder.positional_embedding = type(pos)(pos.length, pos.channels, pos.max_timescale).to(device)
    return encoder.eval().requires_grad_(False)


def _load_exact(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})")
    if wrong:
        k = wrong[0]
        problems.append(f"{len(wrong)} of the wrong shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(expected[k].shape)})")
    if problems:
        raise CheckpointError(f"{what} do not fit the config: {'; '.join(problems)}")
    module.load_state_dict(state, strict=True, assign=True)


def read_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    path = folder / TOKENIZER
    try:
        return Tokenizer.from_file(str(path))
    except Exception as err:  # tokenizers raises a bare Exception for a malformed file
        raise CheckpointError(f"cannot read {path}: {err}") from None


# --- the public entry points ----------------------------------------------------


@dataclass
class LoadedModel:
    lm: Any  # transformers Qwen2ForCausalLM, eval mode
    encoder: Any  # transformers Qwen2_5OmniAudioEncoder, eval mode
    tokenizer: Any  # tokenizers.Tokenizer
    litgpt_config: dict
    device: torch.device
    dtype: torch.dtype
    path: Path

    @property
    def width(self) -> int:
        return int(self.lm.config.hidden_size)


def load_checkpoint(model: str, device: str = "auto", dtype: str = "auto", cache_dir: str | None = None) -> LoadedModel:
    """Load LM, encoder and tokenizer of a release folder or HF repo id onto `device` in `dtype`."""
    folder = resolve_checkpoint(model, cache_dir=cache_dir)
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    litgpt_config = read_litgpt_config(folder)
    log.info("loading %s on %s as %s", folder, torch_device, torch_dtype)
    with torch.inference_mode(False), torch.no_grad():
        lm = build_lm(folder, litgpt_config, torch_device, torch_dtype)
        encoder = build_encoder(folder, torch_device, torch_dtype)
    if encoder.config.output_dim != lm.config.hidden_size:
        raise CheckpointError(
            f"encoder output width {encoder.config.output_dim} ({OMNI_CONFIG}) differs from the LM width "
            f"{lm.config.hidden_size} ({MODEL_CONFIG}): the two files belong to different models"
        )
    return LoadedModel(
        lm=lm,
        encoder=encoder,
        tokenizer=read_tokenizer(folder),
        litgpt_config=litgpt_config,
        device=torch_device,
        dtype=torch_dtype,
        path=folder,
    )


def encode_chunks(loaded: LoadedModel, mel: torch.Tensor, graphs: CudaGraphs | None = None) -> torch.Tensor:
    """Encode N whole 40-frame chunks, each independently as upstream does -> (N, 10, lm_width).

    `mel`: (128, 40 * N) log-mel frames (numpy or torch). Upstream passes the
    per-chunk lengths (40, 40, ...) as `feature_lens`, so the encoder's attention
    never crosses a chunk boundary: see `encode_chunks_with`. With `graphs` (on a
    GPU) each number of chunks runs as a CUDA graph (cuda_graphs.py).
    """
    return encode_chunks_with(loaded.encoder, mel, graphs)


def encode_chunks_with(encoder: Any, mel: Any, graphs: CudaGraphs | None = None) -> torch.Tensor:
    """`Qwen2_5OmniAudioEncoder.forward` for N chunks of exactly 40 frames, written out with its own modules.

    Why not call the encoder: upstream's call (`feature_lens` = 40 per chunk) makes
    transformers split the frames into chunks by lengths it reads back from the
    device (two host syncs) and, without flash-attn, run one attention call per
    chunk and layer (N x 32 calls for N rooms' chunks). Every chunk here has the same
    40 frames, which is one encoder window (`n_window` * 2 >= 40), so the same
    arithmetic runs as a batch of N: conv1 + GELU, conv2 (stride 2) + GELU -> 20
    frames, sinusoid positions 0..19, the layers with attention within each chunk
    (one call per layer for all N), the stride-2 average pooling -> 10 vectors,
    ln_post, proj. No value is read back to the host, so a GPU runs it without
    waiting (and it can be captured in a CUDA graph). The test suite proves it equal
    to the encoder's own forward with upstream's arguments.
    """
    param = next(encoder.parameters())
    mel = torch.as_tensor(mel).to(device=param.device, dtype=param.dtype)
    if mel.dim() != 2 or mel.shape[0] != c.N_MELS or mel.shape[1] % c.MEL_FRAMES_PER_CHUNK:
        raise ValueError(f"expected (128, 40 * N) log-mel frames, got shape {tuple(mel.shape)}")
    if encoder.n_window * 2 < c.MEL_FRAMES_PER_CHUNK:
        raise ValueError(f"audio encoder window of {encoder.n_window * 2} frames is shorter than a chunk's 40")
    n_chunks = mel.shape[1] // c.MEL_FRAMES_PER_CHUNK
    if n_chunks == 0:
        return torch.zeros(0, c.AUDIO_VECTORS_PER_CHUNK, encoder.config.output_dim, device=param.device, dtype=param.dtype)
    if graphs is not None:
        return graphs.run(("audio encoder", id(encoder), n_chunks), [mel], lambda inputs: _encode(encoder, inputs[0]))
    return _encode(encoder, mel)


def _encode(encoder: Any, mel: torch.Tensor) -> torch.Tensor:
    """(128, 40 * N) frames on the encoder's device and dtype -> (N, 10, output_dim); no host reads."""
    n_chunks = mel.shape[1] // c.MEL_FRAMES_PER_CHUNK
    with torch.no_grad():
        chunks = mel.view(c.N_MELS, n_chunks, c.MEL_FRAMES_PER_CHUNK).transpose(0, 1)  # (N, 128, 40)
        x = F.gelu(encoder.conv1(chunks))
        x = F.gelu(encoder.conv2(x)).transpose(1, 2)  # (N, 20, d)
        frames = x.shape[1]
        x = x + encoder.positional_embedding.positional_embedding[:frames].to(x.dtype)
        for layer in encoder.layers:
            x = x + _audio_self_attention(layer.self_attn, layer.self_attn_layer_norm(x))
            x = x + layer.fc2(layer.activation_fn(layer.fc1(layer.final_layer_norm(x))))
            if x.dtype == torch.float16:  # as the encoder layer does
                limit = torch.finfo(x.dtype).max - 1000
                x = x.clamp(-limit, limit)
        x = x.view(n_chunks, frames // 2, 2, -1).mean(dim=2)  # stride-2 average pooling within each chunk
        return encoder.proj(encoder.ln_post(x))  # (N, 10, output_dim)


def _audio_self_attention(attn: Any, h: torch.Tensor) -> torch.Tensor:
    """The encoder's full (non-causal) attention within each chunk: h (N, frames, d) -> (N, frames, d)."""
    n, frames, width = h.shape
    heads = attn.num_heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, frames, heads, width // heads).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(attn.q_proj(h)), split(attn.k_proj(h)), split(attn.v_proj(h)),
                                         scale=attn.scaling)
    return attn.out_proj(out.transpose(1, 2).reshape(n, frames, width))
