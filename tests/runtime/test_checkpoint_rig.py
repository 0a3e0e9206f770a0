"""The rigged tiny checkpoint behaves as promised, loaded through the real loader in every format.

A minimal listening loop (DESIGN.md section 2) drives it: prompt prefix, then per
0.4 s chunk AUDIO_BEGIN + 10 encoder vectors + ASSISTANT with the KV cache, greedy;
on TEXT_BEGIN it decodes until TEXT_END. Audio: synthetic silence, noise and
speech-like sounds, espeak-ng speech, the smoke-alarm sample shipped in the repo.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DynamicCache

from model_runtime import constants as c
from model_runtime.audio import load_audio
from model_runtime.interaction import checkpoint as ckpt
from model_runtime.interaction import tiny
from model_runtime.interaction.features import StreamingLogMel
from test_checkpoint import VARIANTS, tiny_dirs  # noqa: F401  (the same module-scoped tiny checkpoints)

torch.set_num_threads(1)  # tiny models: threads only contend on the shared 2-core machines

SAMPLES = Path(__file__).resolve().parents[2] / "model_runtime" / "samples"


class MiniLoop:
    """Just enough of the listening loop to observe the model's greedy choices."""

    def __init__(self, loaded: ckpt.LoadedModel) -> None:
        self.loaded = loaded
        self.lm = loaded.lm
        self.cache = DynamicCache(config=self.lm.config)
        self.position = 0
        self.features = StreamingLogMel()
        ids = loaded.tokenizer.encode(c.DEFAULT_SYSTEM_PROMPT).ids
        self._step(self._embed([c.ONLINE, c.ENGLISH, c.SYSTEM, c.TEXT_BEGIN, *ids, c.TEXT_END]))

    def _embed(self, ids: list[int]) -> torch.Tensor:
        return self.lm.model.embed_tokens(torch.tensor(ids, device=self.loaded.device))

    def _step(self, embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.shape[0]
        positions = torch.arange(self.position, self.position + n, device=self.loaded.device)[None]
        with torch.no_grad():
            out = self.lm(inputs_embeds=embeds[None], past_key_values=self.cache, position_ids=positions,
                          use_cache=True, logits_to_keep=1)
        self.position += n
        return out.logits[0, -1].float()

    def feed(self, audio: np.ndarray, on_flush: bool = False) -> list[tuple[int, list[int]]]:
        """(decision token, response tokens) for each chunk the audio completed."""
        mel = self.features.flush() if on_flush else self.features.push(audio)
        results = []
        for vectors in ckpt.encode_chunks(self.loaded, mel):
            chunk = torch.cat([self._embed([c.AUDIO_BEGIN]), vectors, self._embed([c.ASSISTANT])])
            token = int(self._step(chunk).argmax())
            response = self._speak() if token == c.TEXT_BEGIN else []
            results.append((token, response))
        return results

    def finish(self) -> list[tuple[int, list[int]]]:
        return self.feed(np.zeros(0, np.float32), on_flush=True)

    def _speak(self, limit: int = 24) -> list[int]:
        tokens = [c.TEXT_BEGIN]
        logits = self._step(self._embed([c.TEXT_BEGIN]))
        while len(tokens) < limit:
            token = int(logits.argmax())
            tokens.append(token)
            logits = self._step(self._embed([token]))
            if token == c.TEXT_END:
                break
        return tokens


def _espeak(text: str, folder: Path) -> np.ndarray:
    wav = folder / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, capture_output=True)
    return load_audio(wav)


def _chunks(audio: np.ndarray) -> list[np.ndarray]:
    audio = audio[: len(audio) // c.CHUNK_SAMPLES * c.CHUNK_SAMPLES]
    return list(audio.reshape(-1, c.CHUNK_SAMPLES))


def _non_trigger_audio(rng: np.random.Generator, tmp: Path) -> list[tuple[str, np.ndarray]]:
    t = np.arange(c.CHUNK_SAMPLES) / c.SAMPLE_RATE
    kinds = [
        ("silence", np.zeros(c.CHUNK_SAMPLES, np.float32)),
        ("white noise", rng.normal(0, 0.05, c.CHUNK_SAMPLES)),
        ("loud noise", np.clip(rng.normal(0, 0.5, c.CHUNK_SAMPLES), -1, 1)),
        ("hum 440 Hz", 0.3 * np.sin(2 * np.pi * 440 * t)),
        ("tone 1.6 kHz", 0.5 * np.sin(2 * np.pi * 1600 * t)),
    ]
    speech = _espeak("Hello there. Could you turn on the kitchen lights and tell me the weather?", tmp)
    kinds += [(f"espeak speech {i}", ch) for i, ch in enumerate(_chunks(speech))]
    alarm = load_audio(SAMPLES / "kitchen_smoke_alarm.flac")
    kinds += [(f"smoke alarm sample {i}", ch) for i, ch in enumerate(_chunks(alarm)[:10])]
    return [(name, np.asarray(a, np.float32)) for name, a in kinds]


def _expected_response(tokenizer) -> list[int]:
    return [c.TEXT_BEGIN, tiny.RIGGED_EMOTION, *tokenizer.encode(tiny.RIGGED_TEXT).ids, c.TEXT_END]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
def test_every_layout_and_format_gives_the_rigged_behaviour(tiny_dirs, variant, tmp_path):
    loaded = ckpt.load_checkpoint(str(tiny_dirs[variant]), device="cpu", dtype="float32")
    loop = MiniLoop(loaded)
    rng = np.random.default_rng(1)
    quiet = [np.zeros(c.CHUNK_SAMPLES, np.float32), rng.normal(0, 0.02, c.CHUNK_SAMPLES).astype(np.float32)]
    audio = np.concatenate([*quiet, tiny.trigger_audio(), *quiet])
    results = loop.feed(audio) + loop.finish()
    decisions = [token for token, _ in results]
    assert decisions == [c.KEEP_SILENCE, c.KEEP_SILENCE, c.TEXT_BEGIN, c.KEEP_SILENCE, c.KEEP_SILENCE]
    response = results[2][1]
    assert response == _expected_response(loaded.tokenizer)
    assert loaded.tokenizer.decode(response[2:-1]) == tiny.RIGGED_TEXT
    assert c.EMOTION_TOKENS[response[1]] == tiny.RIGGED_EMOTION_NAME == "urgent"


def test_silent_on_everything_but_the_trigger_after_long_context(tiny_dirs, tmp_path):
    """Hundreds of chunks of silence/noise/speech/alarm audio: always KEEP_SILENCE; then the trigger
    still answers exactly the rigged response, and the chunks after it are silent again."""
    loaded = ckpt.load_checkpoint(str(tiny_dirs[("qkv", "safetensors")]), device="cpu", dtype="float32")
    loop = MiniLoop(loaded)
    rng = np.random.default_rng(2)
    pool = _non_trigger_audio(rng, tmp_path)
    names = []
    stream = []
    for i in range(300):
        name, chunk = pool[i % len(pool)]
        names.append(name)
        stream.append(chunk)
    results = loop.feed(np.concatenate(stream))
    wrong = [names[i] for i, (token, _) in enumerate(results) if token != c.KEEP_SILENCE]
    assert len(results) == 299 and not wrong, f"responded to: {wrong}"
    assert loop.position > 3500  # hundreds of chunks of context before the trigger
    after = loop.feed(np.concatenate([tiny.trigger_audio(), pool[5][1], pool[1][1], pool[0][1]]))
    after += loop.finish()
    assert [token for token, _ in after] == [c.KEEP_SILENCE, c.TEXT_BEGIN, c.KEEP_SILENCE, c.KEEP_SILENCE, c.KEEP_SILENCE]
    assert after[1][1] == _expected_response(loaded.tokenizer)


def test_rig_holds_in_bfloat16_with_repeated_triggers(tiny_dirs):
    loaded = ckpt.load_checkpoint(str(tiny_dirs[("attn", "pt")]), device="cpu", dtype="bfloat16")
    loop = MiniLoop(loaded)
    rng = np.random.default_rng(3)
    pattern = []
    for i in range(40):
        is_trigger = i % 7 == 3
        if is_trigger:
            pattern.append((True, tiny.trigger_audio(amplitude=rng.uniform(0.2, 0.9), phase=rng.uniform(0, 6))))
        else:
            pattern.append((False, rng.normal(0, rng.uniform(0.001, 0.2), c.CHUNK_SAMPLES).astype(np.float32)))
    results = loop.feed(np.concatenate([a for _, a in pattern])) + loop.finish()
    assert [token == c.TEXT_BEGIN for token, _ in results] == [is_trigger for is_trigger, _ in pattern]
    expected = _expected_response(loaded.tokenizer)
    assert all(response == expected for token, response in results if token == c.TEXT_BEGIN)


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_generation_is_deterministic(tiny_dirs, tmp_path):
    """Same seed -> same bytes (recomputed from scratch, not from the in-process cache); other seed -> other weights."""
    tiny.rigged_weights.cache_clear()
    first = _file_digests(tiny.make_tiny_checkpoint(tmp_path / "a", seed=5, weights="safetensors"))
    tiny.rigged_weights.cache_clear()
    second = _file_digests(tiny.make_tiny_checkpoint(tmp_path / "b", seed=5, weights="safetensors"))
    assert first == second
    seed0 = _file_digests(tiny_dirs[("qkv", "safetensors")])
    weights = [name for name in first if name.endswith((".safetensors", ".pth"))]
    assert len(weights) == 3 and all(first[name] != seed0[name] for name in weights)
    pt_a = tiny.make_tiny_checkpoint(tmp_path / "d", seed=5, weights="pt", layout="attn")
    tiny.rigged_weights.cache_clear()
    pt_b = tiny.make_tiny_checkpoint(tmp_path / "e", seed=5, weights="pt", layout="attn")
    assert _file_digests(pt_a) == _file_digests(pt_b)
    shutil.rmtree(tmp_path)


def test_rigged_head_attends_to_the_previous_position_only():
    assert tiny.rope_leak(tiny.TINY_LITGPT_CONFIG, context=tiny.MAX_CONTEXT_CHECKED) < 1e-6
