"""Reference logits from LitGPT's own `GPT` (PyPI litgpt 0.5.13, as upstream uses) for the parity test.

Run by `scripts/litgpt-reference` inside `.venv/litgpt` (litgpt pins huggingface-hub<1.4,
which the runtime's transformers does not accept, so it lives in its own venv).
Usage: litgpt_reference.py OUT.npz LAYOUT=FOLDER [LAYOUT=FOLDER ...]

For each tiny checkpoint folder it runs one KV-cached sequence shaped like the
listening loop: the prompt prefix, several 12-token chunk steps (AUDIO_BEGIN,
10 audio-position tokens, ASSISTANT) and single-token decode steps, and keeps
the logits at every position for the special-token ids plus a seeded random
subset of the vocabulary, and the full argmax.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from litgpt.config import Config
from litgpt.model import GPT
from safetensors.torch import load_file
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model_runtime import constants as c  # noqa: E402  (pure Python, no runtime deps)

N_CHUNKS = 6
N_RANDOM_COLUMNS = 200
SEED = 0


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        state = {}
        for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
            state.update(load_file(folder / shard))
        return state
    (pt,) = [p for p in folder.iterdir() if p.suffix in (".pt", ".pth") and p.name != "audiointeraction_ChunkwisedEncoder.pth"]
    return torch.load(pt, map_location="cpu", weights_only=True)


def steps_for(tokenizer: Tokenizer) -> list[list[int]]:
    rng = np.random.default_rng(SEED)
    prompt = tokenizer.encode(c.DEFAULT_SYSTEM_PROMPT).ids
    steps = [[c.ONLINE, c.ENGLISH, c.SYSTEM, c.TEXT_BEGIN, *prompt, c.TEXT_END]]
    for _ in range(N_CHUNKS):
        audio = rng.integers(0, 300, c.AUDIO_VECTORS_PER_CHUNK).tolist()
        steps.append([c.AUDIO_BEGIN, *audio, c.ASSISTANT])
    steps += [[c.TEXT_BEGIN], [c.URGENT], [prompt[0]], [c.TEXT_END]]
    return steps


def columns(vocab: int) -> np.ndarray:
    specials = np.arange(c.USER, c.AUDIO_END + 1)
    rng = np.random.default_rng(SEED + 1)
    others = rng.choice(np.setdiff1d(np.arange(vocab), specials), N_RANDOM_COLUMNS, replace=False)
    return np.sort(np.concatenate([specials, others]))


@torch.no_grad()
def reference(folder: Path) -> dict[str, np.ndarray]:
    config = Config.from_file(folder / "model_config.yaml")
    model = GPT(config)
    model.load_state_dict(load_state(folder), strict=True)  # litgpt converts the legacy attn.attn itself
    model.eval()
    steps = steps_for(Tokenizer.from_file(str(folder / "tokenizer.json")))
    total = sum(len(s) for s in steps)
    model.max_seq_length = total
    model.set_kv_cache(batch_size=1, device=torch.device("cpu"), dtype=torch.float32)
    cols = columns(config.padded_vocab_size)
    kept, argmax, position = [], [], 0
    for step in steps:
        idx = torch.tensor([step])
        logits = model(idx, input_pos=torch.arange(position, position + len(step)))[0]
        position += len(step)
        kept.append(logits[:, cols].numpy())
        argmax.append(logits.argmax(-1).numpy())
    return {
        "logits": np.concatenate(kept).astype(np.float32),
        "argmax": np.concatenate(argmax).astype(np.int64),
        "step_lengths": np.array([len(s) for s in steps]),
        "tokens": np.concatenate([np.array(s) for s in steps]).astype(np.int64),
        "columns": cols.astype(np.int64),
    }


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    arrays = {}
    for spec in argv[1:]:
        layout, folder = spec.split("=", 1)
        for name, value in reference(Path(folder)).items():
            arrays[f"{layout}/{name}"] = value
    np.savez_compressed(out, **arrays)
    print(f"wrote {out} ({out.stat().st_size} bytes): {', '.join(sorted(arrays))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
