"""The checkpoint loader on real tiny checkpoints in the release layout: all formats, all failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from model_runtime import constants as c
from model_runtime.errors import CheckpointError
from model_runtime.interaction import checkpoint as ckpt
from model_runtime.interaction import tiny
from model_runtime.interaction.features import log_mel_offline

torch.set_num_threads(1)  # tiny models: threads only contend on the shared 2-core machines

VARIANTS = [("qkv", "safetensors"), ("attn", "pt"), ("qkv", "pt"), ("attn", "safetensors")]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        (layout, weights): tiny.make_tiny_checkpoint(root / f"{layout}-{weights}", layout=layout, weights=weights)
        for layout, weights in VARIANTS
    }


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_release_layout_files(tiny_dirs):
    folder = tiny_dirs[("qkv", "safetensors")]
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {
        "model_config.yaml", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
        "model.safetensors.index.json", "audiointeraction_ChunkwisedEncoder.pth", "qwen25OmniConfig/config.json",
    } <= names
    index = json.loads((folder / ckpt.SAFETENSORS_INDEX).read_text())
    assert len(set(index["weight_map"].values())) >= 2
    assert {p.name for p in tiny_dirs[("attn", "pt")].iterdir()} >= {tiny.PT_WEIGHTS}
    assert not (tiny_dirs[("attn", "pt")] / ckpt.SAFETENSORS_INDEX).exists()


def test_loaded_model_shapes_and_names(tiny_dirs):
    loaded = ckpt.load_checkpoint(str(tiny_dirs[("qkv", "safetensors")]), device="cpu", dtype="float32")
    assert type(loaded.lm).__name__ == "Qwen2ForCausalLM" and not loaded.lm.training
    assert type(loaded.encoder).__name__ == "Qwen2_5OmniAudioEncoder" and not loaded.encoder.training
    assert loaded.lm.config.vocab_size == 151936 > c.HIGHEST_SPECIAL_TOKEN
    assert loaded.lm.config.num_key_value_heads == 2 and loaded.lm.config.num_attention_heads == 4
    assert loaded.dtype == torch.float32 and loaded.device == torch.device("cpu")
    assert loaded.litgpt_config["n_layer"] == 2 and loaded.width == 64
    # the special tokens decode to their names; text round-trips
    tok = loaded.tokenizer
    assert tok.decode([c.KEEP_SILENCE, c.URGENT], skip_special_tokens=False) == "<|keep_silence|><|urgent|>"
    assert tok.token_to_id("<|endoftext|>") == c.TEXT_END and tok.token_to_id("<|audio_bos|>") == c.AUDIO_BEGIN
    assert tok.decode(tok.encode(c.DEFAULT_SYSTEM_PROMPT).ids) == c.DEFAULT_SYSTEM_PROMPT


def test_all_layouts_and_formats_load_the_same_model(tiny_dirs):
    states = []
    for key in VARIANTS:
        loaded = ckpt.load_checkpoint(str(tiny_dirs[key]), device="cpu", dtype="float32")
        states.append(loaded.lm.state_dict())
    for other in states[1:]:
        assert other.keys() == states[0].keys()
        for name in states[0]:
            assert torch.equal(states[0][name], other[name]), name


def test_encode_chunks_matches_one_chunk_at_a_time(tiny_dirs):
    loaded = ckpt.load_checkpoint(str(tiny_dirs[("qkv", "safetensors")]), device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.1, c.CHUNK_SAMPLES * 3).astype(np.float32)
    mel = log_mel_offline(audio)
    together = ckpt.encode_chunks(loaded, mel)
    assert together.shape == (3, c.AUDIO_VECTORS_PER_CHUNK, 64)
    for i in range(3):  # each chunk is encoded independently: no attention across chunk boundaries
        alone = ckpt.encode_chunks(loaded, mel[:, i * 40 : (i + 1) * 40])[0]
        torch.testing.assert_close(together[i], alone, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="40"):
        ckpt.encode_chunks(loaded, mel[:, :50])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_encode_chunks_equals_the_encoders_own_forward(tiny_dirs, dtype):
    """Our batched forward (no host reads, one attention call per layer) against
    `Qwen2_5OmniAudioEncoder.forward` called as upstream calls it (per-chunk feature_lens)."""
    loaded = ckpt.load_checkpoint(str(tiny_dirs[("qkv", "safetensors")]), device="cpu", dtype=dtype)
    encoder = loaded.encoder
    audio = np.random.default_rng(3).normal(0, 0.1, c.CHUNK_SAMPLES * 5).astype(np.float32)
    mel = torch.as_tensor(log_mel_offline(audio)).to(loaded.dtype)
    n = mel.shape[1] // 40
    feature_lens = torch.full((n,), 40, dtype=torch.long)
    with torch.no_grad():
        upstream = encoder(input_features=mel, feature_lens=feature_lens,
                           aftercnn_lens=(feature_lens - 1) // 2 + 1).last_hidden_state.reshape(n, 10, -1)
    ours = ckpt.encode_chunks(loaded, mel)
    assert ours.shape == upstream.shape == (n, c.AUDIO_VECTORS_PER_CHUNK, 64) and ours.dtype == upstream.dtype
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    torch.testing.assert_close(ours, upstream, rtol=tolerance, atol=tolerance)
    assert float((ours.float() - upstream.float()).abs().max()) < tolerance * float(upstream.float().abs().max())


def test_dtype_and_device_choices(tiny_dirs):
    folder = str(tiny_dirs[("qkv", "safetensors")])
    loaded = ckpt.load_checkpoint(folder, device="cpu", dtype="bfloat16")
    assert next(loaded.lm.parameters()).dtype == torch.bfloat16
    assert next(loaded.encoder.parameters()).dtype == torch.bfloat16
    auto = ckpt.pick_dtype("auto", torch.device("cpu"))
    assert auto == (torch.bfloat16 if ckpt.cpu_has_native_bf16() else torch.float32)
    assert ckpt.pick_dtype("auto", torch.device("cuda")) == torch.bfloat16
    with pytest.raises(CheckpointError, match="unknown dtype"):
        ckpt.load_checkpoint(folder, device="cpu", dtype="int3")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointError, match="no CUDA GPU"):
            ckpt.load_checkpoint(folder, device="cuda")


def test_tied_embeddings_when_no_lm_head(tiny_dirs, tmp_path):
    folder = _copy(tiny_dirs[("qkv", "pt")], tmp_path / "tied")
    state = torch.load(folder / tiny.PT_WEIGHTS, weights_only=True)
    del state["lm_head.weight"]
    torch.save(state, folder / tiny.PT_WEIGHTS)
    loaded = ckpt.load_checkpoint(str(folder), device="cpu", dtype="float32")
    assert loaded.lm.lm_head.weight.data_ptr() == loaded.lm.model.embed_tokens.weight.data_ptr()
    assert loaded.lm.config.tie_word_embeddings


# --- every way a checkpoint can be wrong ----------------------------------------------


@pytest.mark.parametrize(
    "remove",
    ["model_config.yaml", "tokenizer.json", "audiointeraction_ChunkwisedEncoder.pth", "qwen25OmniConfig/config.json",
     "model.safetensors.index.json"],
)
def test_missing_file_is_named(tiny_dirs, tmp_path, remove):
    folder = _copy(tiny_dirs[("qkv", "safetensors")], tmp_path / "ckpt")
    (folder / remove).unlink()
    with pytest.raises(CheckpointError) as err:
        ckpt.load_checkpoint(str(folder), device="cpu")
    message = str(err.value)
    assert Path(remove).name in message and str(folder) in message and "download" in message


def test_missing_shard_is_named(tiny_dirs, tmp_path):
    folder = _copy(tiny_dirs[("qkv", "safetensors")], tmp_path / "ckpt")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00002.safetensors.*missing"):
        ckpt.load_checkpoint(str(folder), device="cpu")


def test_two_pt_files_are_ambiguous(tiny_dirs, tmp_path):
    folder = _copy(tiny_dirs[("qkv", "pt")], tmp_path / "ckpt")
    shutil.copy(folder / tiny.PT_WEIGHTS, folder / "other.pth")
    with pytest.raises(CheckpointError, match="exactly one"):
        ckpt.load_checkpoint(str(folder), device="cpu")


def test_corrupt_and_mismatched_weights(tiny_dirs, tmp_path):
    folder = _copy(tiny_dirs[("qkv", "pt")], tmp_path / "ckpt")
    (folder / ckpt.ENCODER_WEIGHTS).write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="cannot read .*audiointeraction_ChunkwisedEncoder.pth"):
        ckpt.load_checkpoint(str(folder), device="cpu")
    folder = _copy(tiny_dirs[("qkv", "pt")], tmp_path / "ckpt2")
    config = (folder / ckpt.MODEL_CONFIG).read_text().replace("n_layer: 2", "n_layer: 3")
    (folder / ckpt.MODEL_CONFIG).write_text(config)
    with pytest.raises(CheckpointError, match="missing .*model.layers.2"):
        ckpt.load_checkpoint(str(folder), device="cpu")
    folder = _copy(tiny_dirs[("qkv", "pt")], tmp_path / "ckpt3")
    config = (folder / ckpt.MODEL_CONFIG).read_text().replace("norm_class_name: RMSNorm", "norm_class_name: LayerNorm")
    (folder / ckpt.MODEL_CONFIG).write_text(config)
    with pytest.raises(CheckpointError, match="norm_class_name"):
        ckpt.load_checkpoint(str(folder), device="cpu")


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        ckpt.resolve_checkpoint(str(tmp_path / "nowhere"))


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    # The real huggingface_hub path with no network allowed and an empty cache.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError) as err:
        ckpt.resolve_checkpoint(c.DEFAULT_MODEL_REPO, cache_dir=str(tmp_path / "hf-cache"))
    message = str(err.value)
    assert c.DEFAULT_MODEL_REPO in message and "--model" in message and "cache" in message


def test_cached_hub_snapshot_loads_offline_and_a_missing_file_is_named(tiny_dirs, tmp_path, monkeypatch):
    """A repo id resolves through huggingface_hub's own cache (as after a download), offline."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf-cache"
    repo = cache / "models--someone--tiny-audio-interaction"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = _copy(tiny_dirs[("qkv", "safetensors")], repo / "snapshots" / commit)
    loaded = ckpt.load_checkpoint("someone/tiny-audio-interaction", device="cpu", dtype="float32", cache_dir=str(cache))
    assert loaded.path == snapshot
    (snapshot / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError) as err:
        ckpt.resolve_checkpoint("someone/tiny-audio-interaction", cache_dir=str(cache))
    message = str(err.value)
    assert "HF repo 'someone/tiny-audio-interaction'" in message and "missing tokenizer.json" in message


def test_cli_make_tiny_checkpoint_and_bad_target(tmp_path, capsys):
    # in-process through the real CLI entry point (a subprocess would spend its time importing torch)
    from model_runtime.cli import main

    target = tmp_path / "tiny"
    assert main(["make-tiny-checkpoint", str(target), "--layout", "attn", "--weights", "pt", "--seed", "0"]) == 0
    assert "1 kHz" in capsys.readouterr().out and (target / tiny.PT_WEIGHTS).is_file()
    ckpt.check_release_layout(target)
    # a bad target is one clear line on stderr and exit 2, nothing overwritten
    before = sorted(p.name for p in target.iterdir())
    assert main(["make-tiny-checkpoint", str(target)]) == 2
    err = capsys.readouterr().err
    assert "not an empty folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in target.iterdir()) == before
