"""`audio-interaction bench load`: what hosting the big engine costs a CPU home in memory and start time.

A checkpoint is mapped, not copied (its safetensors shards, and `torch.load(mmap=True)` for
the encoder and `.pt` weights): the float weights stay in the page cache, which the kernel
takes back when it needs room. What the process holds of its own (anonymous memory: int8
weights, the KV cache, buffers) it cannot give back. This bench samples both every 20 ms
through the engine's own start (load, quantize, the prompt) and `--seconds` of audio
through one stream, in a process of its own, and prints their peaks and the times.

Without `--model` it first writes a random checkpoint of the 3B model's shapes in the
release layout (6.9 GiB; `--folder` keeps it for the next run): the real weights are a
download. A cap that counts the page cache too (a container's memory limit) is another
figure: the README gives the one measured with a memory cgroup.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .. import constants as c
from ..errors import UserError
from ..memory import process_memory_kb

_SAMPLE_S = 0.02
_KEYS = ("RssAnon", "RssFile")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="release folder to load (default: write a random one of the 3B model's shapes)")
    parser.add_argument("--folder", help="where to write (or find, if there) the random checkpoint; default: a temporary folder, removed after")
    parser.add_argument("--layers", type=int, default=36, help="LM layers of the random checkpoint (default 36)")
    parser.add_argument("--quantize", choices=c.QUANTIZE_MODES, default="int8-dynamic", help="default: %(default)s")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--seconds", type=float, default=4.0, help="audio streamed through one room after the start (default 4)")


def main(args: argparse.Namespace) -> int:
    from .checkpoint import MODEL_CONFIG

    temporary = None
    folder = args.model
    if folder is None:
        if args.folder is None:
            temporary = tempfile.mkdtemp(prefix="audio-interaction-3b-")
            folder = str(Path(temporary) / "checkpoint")
        else:
            folder = args.folder
        if not (Path(folder) / MODEL_CONFIG).is_file():
            started = time.perf_counter()
            write_random_checkpoint(folder, args.layers)
            size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
            print(f"wrote a random checkpoint of the 3B model's shapes ({args.layers} LM layers, {size / 2**30:.2f} GiB) "
                  f"to {folder} in {time.perf_counter() - started:.0f} s")
    try:
        # A process of its own: its memory from zero, and the parent's imports and caches not counted.
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            figures = pool.apply(measure, (str(folder), args.dtype, args.quantize, args.seconds))
    finally:
        if temporary is not None:
            shutil.rmtree(temporary, ignore_errors=True)
    print_figures(figures, args.quantize)
    return 0


def write_random_checkpoint(folder: str | Path, layers: int = 36) -> Path:
    """A checkpoint in the release layout with random weights of the 3B model's shapes (tied LM head, as
    Qwen2.5-3B's), the tiny checkpoint's tokenizer and metadata. Its decisions mean nothing."""
    import torch
    import yaml
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    from . import checkpoint as ckpt
    from . import tiny
    from .bench import build_random, omni3b_audio_config, qwen25_3b_config

    folder = tiny.make_tiny_checkpoint(folder)
    try:
        lm_config = qwen25_3b_config(layers)
        litgpt = dict(tiny.TINY_LITGPT_CONFIG, name="audio-interaction-3b-shaped-random", n_layer=layers,
                      n_head=lm_config.num_attention_heads, n_embd=lm_config.hidden_size,
                      n_query_groups=lm_config.num_key_value_heads, head_size=lm_config.hidden_size // lm_config.num_attention_heads,
                      intermediate_size=lm_config.intermediate_size)
        (folder / ckpt.MODEL_CONFIG).write_text(yaml.safe_dump(litgpt, sort_keys=False))
        audio = omni3b_audio_config()
        omni = json.loads((folder / ckpt.OMNI_CONFIG).read_text())
        omni["thinker_config"]["audio_config"].update(
            encoder_layers=audio.encoder_layers, encoder_attention_heads=audio.encoder_attention_heads,
            encoder_ffn_dim=audio.encoder_ffn_dim, d_model=audio.d_model, output_dim=audio.output_dim)
        (folder / ckpt.OMNI_CONFIG).write_text(json.dumps(omni, indent=2) + "\n")
        for shard in folder.glob("model-*.safetensors"):
            shard.unlink()
        lm = build_random(Qwen2ForCausalLM, lm_config, torch.bfloat16, "cpu")
        weights = tiny.hf_to_litgpt(dict(lm.state_dict()), litgpt, "qkv")
        del lm
        tiny._write_lm(folder, {k: v for k, v in weights.items() if not k.startswith("lm_head")}, "safetensors")
        del weights
        encoder = build_random(Qwen2_5OmniAudioEncoder, audio, torch.bfloat16, "cpu")
        torch.save({k: t.contiguous() for k, t in encoder.state_dict().items()}, folder / ckpt.ENCODER_WEIGHTS)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


class _Peaks:
    """The largest RssAnon and RssFile (kB) seen since `phase()`, sampled in a thread."""

    def __init__(self) -> None:
        self.peaks = dict.fromkeys(_KEYS, 0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.take()
            time.sleep(_SAMPLE_S)

    def take(self) -> None:
        now = process_memory_kb(keys=_KEYS)
        with self._lock:
            for key in _KEYS:
                self.peaks[key] = max(self.peaks[key], now.get(key, 0))

    def phase(self) -> dict[str, int]:
        """The peaks of the phase that ends now; the next phase starts from zero."""
        self.take()
        with self._lock:
            peaks, self.peaks = self.peaks, dict.fromkeys(_KEYS, 0)
        return peaks

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def measure(folder: str, dtype: str, quantize: str, seconds: float) -> dict:
    """Start the engine on `folder` and stream `seconds` of audio through one room; times and memory peaks."""
    from ..engine import EngineOptions, create_engine, run_stream

    peaks = _Peaks()
    figures: dict = {}
    try:
        started = time.perf_counter()
        engine = create_engine(EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, model=folder, device="cpu",
                                             dtype=dtype, quantize=quantize))
        figures["start"] = (time.perf_counter() - started, peaks.phase(), process_memory_kb(keys=_KEYS))
        audio = 0.1 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * c.SAMPLE_RATE)) / c.SAMPLE_RATE).astype(np.float32)
        stream = engine.open_stream()
        started = time.perf_counter()
        decisions = sum(event.type == c.EVENT_DECISION for event in run_stream(stream, audio))
        figures["stream"] = (time.perf_counter() - started, peaks.phase(), process_memory_kb(keys=_KEYS))
        figures["decisions"] = decisions
        stream.close()
        engine.close()
    finally:
        peaks.stop()
    if not figures.get("decisions"):
        raise UserError(f"the engine on {folder} decided no chunk of {seconds} s of audio")
    return figures


def print_figures(figures: dict, quantize: str) -> None:
    def gib(kb: int) -> str:
        return f"{kb / 2**20:5.2f} GiB"

    print(f"## the audio-interaction engine on CPU, --quantize {quantize}: memory (own = RssAnon, mapped files = RssFile)")
    for name, what in (("start", "start (load + quantize + prompt)"), ("stream", f"{figures['decisions']} chunks through one room")):
        took, peak, after = figures[name]
        print(f"{what:<36} {took:6.1f} s | peak: own {gib(peak['RssAnon'])}, mapped files {gib(peak['RssFile'])} "
              f"| after: own {gib(after['RssAnon'])}, mapped files {gib(after['RssFile'])}")
    took = figures["stream"][0]
    print(f"per chunk {took / figures['decisions'] * 1000:.0f} ms (RTF {took / figures['decisions'] / c.CHUNK_SECONDS:.2f}), "
          "at the start of the context")
