"""`audio-interaction bench model`: figures of the interaction loop, printed (never asserted).

Three sections (`--sections`, all by default):

- overhead: the tiny checkpoint streamed in 10 ms pieces; per-chunk time of
  the loop minus the time inside the encoder and LM forward calls (target <= 1 ms),
  with the log-mel front end shown apart.
- latency: the tiny checkpoint fed in real time (10 ms pieces, paced by the
  wall clock): decision latency p50/p95 from a chunk's last sample in to its
  decision out, first-token latency (trigger chunk's last sample in -> first reply
  piece out), lock-step and with the asynchronous encoder; plus "catch-up":
  a question queued behind a reply (all audio arrives at once), where the
  encoder running ahead matters.
- model: a Qwen2.5-3B-shaped LM and a Qwen2.5-Omni-3B-shaped audio encoder with
  random weights (no download), built directly in each dtype, one dtype at a
  time (fp32 3B = 12 GB): ms per chunk (encoder + 12-token listening step) and per
  decode step at each context length, RTF, the cost of one context roll, peak memory.
  `--device cuda` runs the same on a GPU. `--quantize none,int8,int8-dynamic,int8:torchao`
  measures each weight format (`quantize.py`; `:torchao` forces torchao's path on CPU);
  every (dtype, quantize) configuration runs in a process of its own (its peak RSS is its
  own), `--rounds` times, interleaved (on a shared machine a load spike then hits one
  round, not one configuration); wall and CPU time (process_time: all threads) are both
  printed, and a summary of medians over the rounds closes the section. Then, unless
  `--drift-layers 0`: logits drift of each format against float32 on a 3B-wide model with
  `--drift-layers` layers (and the encoder's output drift), with argmax agreement.

`--quick` shrinks everything (4 LM layers, 1,000 context, bf16 only, fewer chunks).
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import constants as c
from ..memory import process_memory_kb

# torch, transformers and the model modules are imported inside the functions: building
# the CLI's parser imports this module, and `audio-interaction --help` must stay light.
PIECE_SAMPLES = 160  # 10 ms, what Home Assistant's satellites stream
SECTIONS = ("overhead", "latency", "model")
DESIGN_REFERENCE = {  # DESIGN.md section 6 (2-core CPU, DynamicCache): ms
    ("bfloat16", 1000, "listen"): 431,
    ("float32", 1000, "listen"): 1149,
    ("bfloat16", 1000, "decode"): 272,
    ("float32", 1000, "decode"): 484,
    ("bfloat16", 10000, "listen"): 1329,
    ("float32", 10000, "listen"): 3057,
    ("bfloat16", "encoder"): 87,
    ("float32", "encoder"): 261,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--quick", action="store_true", help="small sizes: a run of a minute or two")
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (default %(default)s)")
    parser.add_argument("--dtypes", default=None, help="model section dtypes (default float32,bfloat16)")
    parser.add_argument("--contexts", default=None, help="model section context lengths in tokens (default 1000,10000)")
    parser.add_argument("--layers", type=int, default=None, help="LM layers of the 3B-shaped model (default 36)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repetitions per figure (default 5)")
    parser.add_argument("--chunks", type=int, default=None, help="chunks streamed in the overhead section (default 250)")
    parser.add_argument("--catch-up-chunks", type=int, default=None,
                        help="model section: chunks queued at once through the whole engine, lock-step vs async (default 8; 0: skip)")
    parser.add_argument("--live-seconds", type=float, default=0.0,
                        help="model section: this much audio fed in real time through the whole engine on the 3B-shaped "
                             "model, each call taking all that arrived (as the server does): decision latency and "
                             "whether it kept up (default 0: skip)")
    parser.add_argument("--live-context-seconds", type=float, default=30.0,
                        help="model section: the engine's --context-seconds for --live-seconds (default %(default)s)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="model section: skip timing the same steps through transformers' forward + DynamicCache")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--quantize", default="none",
                        help="model section weight formats, comma-separated: none, int8, int8-dynamic; "
                             "a ':torchao' suffix forces torchao (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="model section: runs of every configuration, interleaved, one process each (default 1)")
    parser.add_argument("--drift-layers", type=int, default=None,
                        help="model section: layers of the float32 3B-wide model the drift is measured on "
                             "(default 4; 0 skips; only when --quantize names a quantized format)")


def main(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import pick_device

    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        from ..errors import UserError

        raise UserError(f"unknown bench section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    quick = args.quick
    print(f"# bench model: device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    if "overhead" in sections or "latency" in sections:
        with tempfile.TemporaryDirectory(prefix="bench-tiny-") as folder:
            from .tiny import make_tiny_checkpoint

            make_tiny_checkpoint(Path(folder))
            if "overhead" in sections:
                bench_overhead(folder, device, args.chunks or (50 if quick else 250))
            if "latency" in sections:
                bench_latency(folder, device, quick)
    if "model" in sections:
        dtypes = _split(args.dtypes) or (["bfloat16"] if quick else ["float32", "bfloat16"])
        contexts = [int(x) for x in _split(args.contexts)] or ([1000] if quick else [1000, 10000])
        layers = args.layers or (4 if quick else 36)
        repeats = args.repeats or (2 if quick else 5)
        quantize = [_quantize_spec(spec) for spec in _split(args.quantize)] or [("none", "auto")]
        catch_up = args.catch_up_chunks if args.catch_up_chunks is not None else (2 if quick else 8)
        live = (args.live_seconds, args.live_context_seconds)  # the whole engine in real time, after the figures
        configs = [(dtype, mode, backend) for dtype in dtypes for mode, backend in quantize]
        if len(configs) == 1 and args.rounds == 1:  # in this process, as before
            bench_3b(device, *configs[0], contexts, layers, repeats, catch_up, not args.no_baseline, live)
        else:
            bench_3b_rounds(device, configs, contexts, layers, repeats, catch_up, not args.no_baseline, live,
                            args.rounds, args.threads)
        drift_layers = args.drift_layers if args.drift_layers is not None else (2 if quick else 4)
        if drift_layers and any(mode != "none" for mode, _ in quantize):
            bench_drift(device, [d for d in dtypes if d != "float32"] or ["bfloat16"], quantize, drift_layers)
        gc.collect()
    return 0


def _quantize_spec(spec: str) -> tuple[str, str]:
    """'int8' -> ('int8', 'auto'); 'int8:torchao' -> ('int8', 'torchao')."""
    from ..errors import UserError
    from .quantize import BACKENDS, QUANTIZE_MODES

    mode, _, backend = spec.partition(":")
    backend = backend or "auto"
    if mode not in QUANTIZE_MODES or backend not in BACKENDS:
        raise UserError(f"--quantize {spec!r}: a format is one of {', '.join(QUANTIZE_MODES)}, "
                        f"optionally with :{' / :'.join(BACKENDS)}")
    return mode, backend


def _config_name(dtype_name: str, mode: str, backend: str) -> str:
    return dtype_name + ("" if mode == "none" else f" + {mode}" + ("" if backend == "auto" else f" ({backend})"))


def _split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# --- tiny checkpoint: loop overhead and latency ---------------------------------------


def _tiny_engine(folder: str, device, async_encoder: bool = False):
    from ..engine import EngineOptions
    from .engine import InteractionEngine

    options = EngineOptions(
        engine=c.ENGINE_AUDIO_INTERACTION, model=folder, device=str(device), dtype="float32", async_encoder=async_encoder
    )
    return InteractionEngine(options)


def _stream_audio(chunks: int, trigger_every: int) -> np.ndarray:
    """Quiet noise with the tiny model's trigger sound every `trigger_every` chunks."""
    from .tiny import trigger_audio

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(chunks * c.CHUNK_SAMPLES) * 0.01).astype(np.float32)
    trigger = trigger_audio()
    for k in range(trigger_every - 1, chunks, trigger_every):
        audio[k * c.CHUNK_SAMPLES : (k + 1) * c.CHUNK_SAMPLES] = trigger[: c.CHUNK_SAMPLES]
    return audio


def bench_overhead(folder: str, device, chunks: int) -> None:
    engine = _tiny_engine(folder, device)
    audio = _stream_audio(chunks, trigger_every=50)
    stream = engine.open_stream()
    stream.feed(audio[: c.CHUNK_SAMPLES * 2])  # warm-up
    stream.close()
    stream = engine.open_stream()
    started = time.perf_counter()
    n_events = 0
    for start in range(0, len(audio), PIECE_SAMPLES):
        n_events += len(stream.feed(audio[start : start + PIECE_SAMPLES]))
    n_events += len(stream.finish())
    total = time.perf_counter() - started
    model = stream.encoder.times.seconds + stream.stats.lm_seconds
    n = stream.encoder.times.chunks
    print(f"\n## loop overhead, tiny checkpoint ({n} chunks in 10 ms pieces, {n_events} events)")
    print(f"total per chunk:                    {_ms(total / n)}")
    print(f"  inside encoder + LM forward:      {_ms(model / n)}  ({stream.stats.lm_steps} LM steps)")
    print(f"  log-mel front end:                {_ms(stream.stats.features_seconds / n)}")
    print(f"overhead per chunk (model excluded): {_ms((total - model) / n)}  (target <= 1 ms; log-mel included)")
    print(f"overhead without log-mel:           {_ms((total - model - stream.stats.features_seconds) / n)}")
    stream.close()
    engine.close()


def _paced_run(
    engine, audio: np.ndarray, realtime: bool, coalesce: bool = False, errors: list | None = None
) -> tuple[list[float], list[float]]:
    """Feed `audio` in 10 ms pieces (paced by the wall clock when `realtime`); return
    (decision latencies, first-token latencies) in seconds, each from the arrival of
    the chunk's last sample (all samples arrive at the start when not `realtime`).
    `coalesce`: each call takes all the audio that arrived while the last one ran, as
    the server does (so a slow model steps queued chunks together); `errors` collects
    the error events (e.g. `overloaded`)."""
    stream = engine.open_stream()
    decisions: list[float] = []
    first_tokens: list[float] = []
    answered: set[float] = set()
    t0 = time.perf_counter()

    def arrival(t: float) -> float:
        return t0 + t if realtime else t0

    def collect(events) -> None:
        for event in events:
            now = time.perf_counter()
            if event.type == c.EVENT_DECISION:
                decisions.append(now - arrival(event.t))
            elif event.type == c.EVENT_RESPONSE and event.t not in answered:
                answered.add(event.t)
                first_tokens.append(now - arrival(event.t))
            elif event.type == c.EVENT_ERROR and errors is not None:
                errors.append(event)

    start = 0
    while start < len(audio):
        end = start + PIECE_SAMPLES
        if realtime:
            due = t0 + end / c.SAMPLE_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if coalesce:  # everything that has arrived by now, in whole pieces
                arrived = int((time.perf_counter() - t0) * c.SAMPLE_RATE) // PIECE_SAMPLES * PIECE_SAMPLES
                end = max(end, min(arrived, len(audio)))
        collect(stream.feed_iter(audio[start:end]))
        start = end
    collect(stream.finish())
    stream.close()
    return decisions, first_tokens


def bench_latency(folder: str, device, quick: bool) -> None:
    chunks = 10 if quick else 25
    live = _stream_audio(chunks, trigger_every=5)
    catch_up = _stream_audio(12, trigger_every=6)  # a reply to chunk 6, the question in chunk 12 waits behind it
    print(f"\n## latency, tiny checkpoint ({chunks} chunks fed in real time in 10 ms pieces)")
    for async_encoder in (False, True):
        engine = _tiny_engine(folder, device, async_encoder)
        _paced_run(engine, live[: 2 * c.CHUNK_SAMPLES], realtime=False)  # warm-up
        decisions, first = _paced_run(engine, live, realtime=True)
        _, catch = _paced_run(engine, catch_up, realtime=False)
        mode = "async encoder" if async_encoder else "lock-step    "
        print(
            f"{mode}: decision p50 {_ms(_percentile(decisions, 50))}, p95 {_ms(_percentile(decisions, 95))}; "
            f"first token p50 {_ms(_percentile(first, 50))} ({len(first)} replies); "
            f"catch-up first token (12 chunks at once, 2nd reply) {_ms(catch[-1]) if catch else 'n/a'}"
        )
        engine.close()
    print("(latency counts from the chunk's last sample; the log-mel front end needs 40 samples of the next chunk,")
    print(" so a decision waits for the next 10 ms piece)")


# --- 3B-shaped model with random weights ------------------------------------------------


def qwen25_3b_config(layers: int = 36):
    from transformers import Qwen2Config

    config = Qwen2Config(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        use_sliding_window=False,
    )
    config._attn_implementation = "sdpa"
    return config


def omni3b_audio_config():
    """Qwen2.5-Omni-3B's thinker_config.audio_config (projection to the 3B LM's width, 2048)."""
    from transformers import Qwen2_5OmniAudioEncoderConfig

    config = Qwen2_5OmniAudioEncoderConfig(
        num_mel_bins=128,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        d_model=1280,
        max_source_positions=1500,
        n_window=100,
        output_dim=2048,
    )
    config._attn_implementation = "sdpa"
    return config


def build_random(cls, config, dtype, device):
    """`cls(config)` allocated directly on `device` in `dtype` (no fp32 detour), random weights.

    transformers' own init is skipped (minutes for 3B on 2 cores): matrices are
    filled from a repeated pool of N(0, 0.02) values, norms with 1, biases with 0;
    buffers (RoPE frequencies, sinusoid tables) are computed as usual. Speed does
    not depend on the values as long as they are finite and not denormal.
    """
    import torch
    from transformers.initialization import no_init_weights

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with no_init_weights(), torch.device(device):
            module = cls(config)
    finally:
        torch.set_default_dtype(previous)
    pool = (torch.randn(1 << 22, generator=torch.Generator().manual_seed(0)) * 0.02).to(device=device, dtype=dtype)
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim == 1:
                param.fill_(0.0 if name.endswith("bias") else 1.0)
                continue
            flat = param.view(-1)
            for start in range(0, flat.numel(), pool.numel()):
                part = flat[start : start + pool.numel()]
                part.copy_(pool[: part.numel()])
    if getattr(config, "tie_word_embeddings", False) and hasattr(module, "lm_head"):
        module.lm_head.weight = module.get_input_embeddings().weight
    return module.eval().requires_grad_(False)


class PeakMemory:
    """Peak resident memory (CPU, from /proc) or peak allocated memory (CUDA) since `reset()`."""

    def __init__(self, device) -> None:
        self.device = device

    def reset(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:  # "5" resets the peak RSS (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def peak_gib(self) -> float:
        import torch

        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**30
        peak_kb = process_memory_kb(keys=("VmHWM",)).get("VmHWM")
        return float("nan") if peak_kb is None else peak_kb / 2**20


def timed(fn, device, repeats: int) -> tuple[float, float]:
    """Median (wall, CPU) seconds of `fn()` after one warm-up call; CPU = this process's time, all threads.

    On a shared machine the CPU time is the steadier figure: other programs' load
    stretches the wall time (waiting for a core) far more than the work done.
    """
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        sync()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def bench_3b(
    device,
    dtype_name: str,
    quantize: str,
    backend: str,
    contexts: list[int],
    layers: int,
    repeats: int,
    catch_up_chunks: int = 0,
    baseline: bool = False,
    live: tuple[float, float] = (0.0, 0.0),
) -> dict[str, tuple[float, float]]:
    """Time one configuration; print its figures and return them: name -> (wall, CPU) seconds (memory: GiB, nan)."""
    import torch
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    from .checkpoint import encode_chunks_with
    from .decoder import CachedDecoder
    from .engine import MAX_CHUNKS_PER_STEP
    from .quantize import quantize_model, weight_bytes

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype_name]
    memory = PeakMemory(device)
    memory.reset()
    built = time.perf_counter()
    lm = build_random(Qwen2ForCausalLM, qwen25_3b_config(layers), dtype, device)
    encoder = build_random(Qwen2_5OmniAudioEncoder, omni3b_audio_config(), dtype, device)
    n_params = sum(p.numel() for p in lm.parameters()) / 1e9
    quantize_model(lm, encoder, quantize, backend)
    built = time.perf_counter() - built
    load_peak = memory.peak_gib()  # building (and quantizing: its temporaries) included
    memory.reset()
    decoder = CachedDecoder(lm)
    name = _config_name(dtype_name, quantize, backend)
    print(f"\n## Qwen2.5-3B-shaped LM ({layers} layers, {n_params:.2f} B parameters) + Omni-3B audio encoder, "
          f"{name}, {device} (built in {built:.0f} s), median of {repeats}; figures: wall (CPU time, all threads)")
    print(f"weights: LM {weight_bytes(lm) / 2**30:.2f} GiB, encoder {weight_bytes(encoder) / 2**30:.2f} GiB")
    figures: dict[str, tuple[float, float]] = {}
    mel = torch.randn(c.N_MELS, c.MEL_FRAMES_PER_CHUNK).numpy()
    reference = layers == 36 and quantize == "none"
    with torch.inference_mode():
        enc = figures["encoder"] = timed(lambda: encode_chunks_with(encoder, mel), device, repeats)
        # A backlog (a machine slower than real time, chunks queued behind a reply) goes through the
        # engine MAX_CHUNKS_PER_STEP chunks per encoder call and per LM step: figures per chunk.
        queued = MAX_CHUNKS_PER_STEP
        mel_queued = np.tile(mel, (1, queued))
        enc_queued = timed(lambda: encode_chunks_with(encoder, mel_queued), device, repeats)
        chunk_embeds = torch.randn(c.TOKENS_PER_CHUNK, lm.config.hidden_size, device=device).to(dtype) * 0.02
        token_embeds = decoder.embed([c.TEXT_BEGIN])
        ref = DESIGN_REFERENCE.get((dtype_name, "encoder")) if reference else None
        print(f"audio encoder, one chunk:  {_wall_cpu(enc)}" + (f"   (DESIGN.md: {ref} ms)" if ref else ""))
        prefix = 64
        for context in contexts:
            roll_block = c.TOKENS_PER_CHUNK * 75  # 30 s of audio, the default block of a 300 s window
            cache = decoder.new_cache(context + c.TOKENS_PER_CHUNK * MAX_CHUNKS_PER_STEP + 1)
            cache.keys[:, :, :context].normal_(0, 0.5)
            cache.values[:, :, :context].normal_(0, 0.5)

            def step(embeds, cache=cache, context=context):
                cache.length = context
                decoder.forward(cache, embeds)

            listen = figures[f"listen@{context}"] = timed(lambda: step(chunk_embeds), device, repeats)
            queued_embeds = chunk_embeds.repeat(queued, 1)
            listen_queued = timed(lambda: step(queued_embeds), device, repeats)
            decode = figures[f"decode@{context}"] = timed(lambda: step(token_embeds), device, repeats)
            per_chunk = figures[f"chunk@{context}"] = (enc[0] + listen[0], enc[1] + listen[1])
            per_queued = figures[f"chunk@{context}, {queued} queued"] = (
                (enc_queued[0] + listen_queued[0]) / queued, (enc_queued[1] + listen_queued[1]) / queued
            )
            keep = torch.arange(min(prefix + roll_block, context), context)

            def roll(cache=cache, context=context, keep=keep):
                cache.length = context
                decoder.compact(cache, keep, start=prefix)

            rolled = timed(roll, device, max(1, repeats // 2))[0] if context > prefix + roll_block else float("nan")
            ref_l = DESIGN_REFERENCE.get((dtype_name, context, "listen")) if reference else None
            ref_d = DESIGN_REFERENCE.get((dtype_name, context, "decode")) if reference else None
            print(
                f"context {context:>6}: 12-token listening step {_wall_cpu(listen)}"
                + (f" (DESIGN.md {ref_l})" if ref_l else "")
                + f" | chunk = encoder + step {_wall_cpu(per_chunk)}, RTF {per_chunk[0] / c.CHUNK_SECONDS:.2f}"
                + f" (CPU {per_chunk[1] / c.CHUNK_SECONDS:.2f})"
                + f" | decode step {_wall_cpu(decode)}"
                + (f" (DESIGN.md {ref_d})" if ref_d else "")
                + f" | first token (encoder + step + 1 decode) {(per_chunk[0] + decode[0]) * 1000:7.1f} ms"
                + (f" | roll (keep {keep.numel()} slots) {rolled * 1000:6.1f} ms" if rolled == rolled else "")
                + f"\n               {queued} chunks queued (one encoder call, one {queued * c.TOKENS_PER_CHUNK}-token step): "
                + f"per chunk {_wall_cpu(per_queued)}, RTF {per_queued[0] / c.CHUNK_SECONDS:.2f} (CPU {per_queued[1] / c.CHUNK_SECONDS:.2f})"
            )
            if baseline:
                base_listen, base_decode = _baseline_steps(lm, cache, context, chunk_embeds, token_embeds, device, repeats)
                print(
                    f"               same weights through Qwen2ForCausalLM.forward + DynamicCache (the DESIGN.md way): "
                    f"listening {base_listen * 1000:.1f} ms ({base_listen / listen[0]:.1f}x ours), "
                    f"decode {base_decode * 1000:.1f} ms ({base_decode / decode[0]:.1f}x ours)"
                )
            del cache
        peak = memory.peak_gib()
        figures["peak GiB"] = (peak, float("nan"))
        figures["load peak GiB"] = (load_peak, float("nan"))
        print(f"KV cache per token: {2 * layers * decoder.n_kv_heads * decoder.head_dim * torch.finfo(dtype).bits // 8} bytes; "
              f"peak memory {peak:.2f} GiB while stepping, {load_peak:.2f} GiB while building "
              f"({'allocated on GPU' if device.type == 'cuda' else 'process RSS'})")
    if catch_up_chunks:
        bench_catch_up(lm, encoder, device, dtype, catch_up_chunks)
    if live[0]:
        bench_live(lm, encoder, device, dtype, *live)
    del lm, encoder, decoder
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return figures


def _wall_cpu(figure: tuple[float, float]) -> str:
    return f"{figure[0] * 1000:8.1f} ms ({figure[1] * 1000:7.1f} CPU)"


def _bench_3b_child(threads: int | None, device_name: str, *args) -> dict[str, tuple[float, float]]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    result = bench_3b(torch.device(device_name), *args)
    import sys

    sys.stdout.flush()
    return result


def bench_3b_rounds(device, configs, contexts, layers, repeats, catch_up_chunks, baseline, live, rounds, threads) -> None:
    """Every configuration in a fresh process (its own peak RSS, no allocator left-overs), `rounds` times
    interleaved (A B C A B C ...); then the medians over rounds."""
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    results: dict[tuple, list[dict]] = {config: [] for config in configs}
    for round_ in range(rounds):
        for config in configs:
            print(f"\n# round {round_ + 1}/{rounds}: {_config_name(*config)}")
            sys.stdout.flush()
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                figures = pool.submit(_bench_3b_child, threads, str(device), *config, contexts, layers, repeats,
                                      catch_up_chunks if round_ == 0 else 0, baseline and round_ == 0,
                                      live if round_ == 0 else (0.0, 0.0)).result()
            results[config].append(figures)
    keys = list(results[configs[0]][0])
    print(f"\n## summary: median over {rounds} round(s); ms wall / ms CPU (RTF = wall / 400 ms; peak RSS in GiB)")
    print("| figure | " + " | ".join(_config_name(*config) for config in configs) + " |")
    print("|---|" + "---|" * len(configs))
    for key in keys:
        cells = []
        for config in configs:
            walls = [r[key][0] for r in results[config] if key in r]
            cpus = [r[key][1] for r in results[config] if key in r]
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            if key.endswith("GiB"):
                cells.append(f"{wall:.2f}")
            elif key.startswith("chunk@"):  # (also "chunk@N, 4 queued": per chunk)
                cells.append(f"{wall * 1000:.0f} / {cpu * 1000:.0f} (RTF {wall / c.CHUNK_SECONDS:.2f})")
            else:
                cells.append(f"{wall * 1000:.0f} / {cpu * 1000:.0f}")
        print(f"| {key} | " + " | ".join(cells) + " |")


def bench_drift(device, dtypes: list[str], quantize: list[tuple[str, str]], layers: int, steps: int = 8) -> None:
    """Logits drift against float32, same weights: a 3B-wide LM with `layers` layers (and the encoder
    with as many layers), a 64-token prefix then `steps` 12-token listening steps."""
    import copy

    import torch
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    from .checkpoint import encode_chunks_with
    from .decoder import CachedDecoder
    from .quantize import quantize_model

    config = omni3b_audio_config()
    config.encoder_layers = layers
    lm32 = build_random(Qwen2ForCausalLM, qwen25_3b_config(layers), torch.float32, device)
    enc32 = build_random(Qwen2_5OmniAudioEncoder, config, torch.float32, device)
    # Random weights from one repeated pool make every layer alike; fresh N(0, 0.02) draws
    # per matrix keep the drift honest (a rounding error that repeats would cancel less).
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for module in (lm32, enc32):
            for param in module.parameters():
                if param.ndim == 2:
                    param.copy_(torch.randn(param.shape, generator=gen) * 0.02)
    ids = torch.randint(0, 151_000, (64 + steps * c.TOKENS_PER_CHUNK,), generator=gen)
    mel = torch.randn(c.N_MELS, c.MEL_FRAMES_PER_CHUNK * 4, generator=gen).numpy()

    def run(lm, encoder) -> tuple[torch.Tensor, torch.Tensor]:
        decoder = CachedDecoder(lm)
        with torch.inference_mode():
            audio = encode_chunks_with(encoder, mel).float()
            cache = decoder.new_cache(len(ids))
            embeds = decoder.embed(ids.tolist())
            decoder.forward(cache, embeds[:64])
            logits = [decoder.forward(cache, embeds[64 + k * 12 : 76 + k * 12]) for k in range(steps)]
        return torch.stack(logits), audio

    ref_logits, ref_audio = run(lm32, enc32)
    scale, audio_scale = float(ref_logits.abs().max()), float(ref_audio.abs().max())
    print(f"\n## logits drift vs float32: 3B-wide LM with {layers} layers + encoder with {layers} layers, random weights; "
          f"{steps} listening steps after a 64-token prefix (largest float32 logit {scale:.2f})")
    configs = [(dtype, "none", "auto") for dtype in dtypes] + [(dtype, m, b) for dtype in dtypes for m, b in quantize if m != "none"]
    for dtype_name, mode, backend in configs:
        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype_name, torch.float32)
        lm, encoder = copy.deepcopy(lm32).to(dtype), copy.deepcopy(enc32).to(dtype)
        quantize_model(lm, encoder, mode, backend)
        logits, audio = run(lm, encoder)
        drift = float((logits - ref_logits).abs().max())
        agree = int((logits.argmax(-1) == ref_logits.argmax(-1)).sum())
        enc_drift = float((audio - ref_audio).abs().max())
        print(f"{_config_name(dtype_name, mode, backend):32}: logits max |diff| {drift:.4f} ({drift / scale:.2%} of the "
              f"largest), argmax agrees {agree}/{steps}; encoder output max |diff| {enc_drift:.4f} "
              f"({enc_drift / audio_scale:.2%})")
        del lm, encoder
        gc.collect()


def _baseline_steps(lm, cache, context: int, chunk_embeds, token_embeds, device, repeats: int) -> tuple[float, float]:
    """The reference path: transformers' own forward with a DynamicCache holding the same K/V."""
    from transformers import DynamicCache

    dynamic = DynamicCache(config=lm.config)
    for layer in range(cache.keys.shape[0]):
        dynamic.update(cache.keys[layer, :, :context].unsqueeze(0).clone(),
                       cache.values[layer, :, :context].unsqueeze(0).clone(), layer)

    def step(embeds) -> None:
        lm(inputs_embeds=embeds.unsqueeze(0), cache=dynamic, use_cache=True, logits_to_keep=1)
        dynamic.crop(context - dynamic.get_seq_length())  # negative: drop the step's tokens

    return timed(lambda: step(chunk_embeds), device, repeats)[0], timed(lambda: step(token_embeds), device, repeats)[0]


def _engine_on(lm, encoder, device, dtype, **options):
    """The whole engine on already built (random) weights; a rare TEXT_BEGIN of random weights starts a
    reply, capped so it costs little."""
    from ..engine import EngineOptions
    from .checkpoint import LoadedModel
    from .engine import InteractionEngine
    from .quantize import quantized_mode
    from .tiny import build_tokenizer

    loaded = LoadedModel(lm=lm, encoder=encoder, tokenizer=build_tokenizer(), litgpt_config={},
                         device=device, dtype=dtype, path=Path("random-3b"))
    # (the weights as the figures ran them: the engine is told their format, so it quantizes nothing again)
    options = EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, device=str(device), max_response_tokens=2,
                            quantize=quantized_mode(lm), **options)
    return InteractionEngine(options, loaded=loaded)


def bench_live(lm, encoder, device, dtype, seconds: float, context_seconds: float) -> None:
    """`seconds` of audio in real time through the engine, each call taking all the audio that arrived
    meanwhile (the server's way): does one room keep up, and how late are its decisions?"""
    engine = _engine_on(lm, encoder, device, dtype, context_seconds=context_seconds)
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(int(seconds * c.SAMPLE_RATE)) * 0.01).astype(np.float32)
    errors: list = []
    latencies, _ = _paced_run(engine, audio, realtime=True, coalesce=True, errors=errors)
    chunks = math.ceil(seconds / c.CHUNK_SECONDS - 1e-9)  # (the last, partial one decided at the end)
    overloaded = [e for e in errors if e.data.get("code") == "overloaded"]
    tail = latencies[len(latencies) // 4 :] or latencies  # after the first quarter: the steady state
    print(f"live, whole engine, context {context_seconds:g} s: {seconds:g} s of audio in real time -> "
          f"{len(latencies)} decisions for {chunks} chunks, {len(overloaded)} overload notices; decision latency "
          f"(from the chunk's last sample) median {statistics.median(tail) * 1000:.0f} ms, "
          f"p95 {_percentile(tail, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")


def bench_catch_up(lm, encoder, device, dtype, chunks: int) -> None:
    """The whole engine on the 3B-shaped weights: `chunks` queued at once (a backlog, as after a
    reply), lock-step vs async encoder; time from their arrival to the last one's decision."""
    import torch

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(chunks * c.CHUNK_SAMPLES + 40) * 0.01).astype(np.float32)
    figures = []
    for async_encoder in (False, True):
        engine = _engine_on(lm, encoder, device, dtype, async_encoder=async_encoder)
        stream = engine.open_stream()
        stream.feed(audio[: c.CHUNK_SAMPLES + 40])  # warm-up: one chunk
        started = time.perf_counter()
        last = None
        for event in stream.feed_iter(audio[c.CHUNK_SAMPLES + 40 :]):
            if event.type == c.EVENT_DECISION:
                last = time.perf_counter() - started
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stream.close()
        figures.append(f"{'async encoder' if async_encoder else 'lock-step'} {last * 1000:.0f} ms")
    print(f"catch-up, whole engine: {chunks - 1} chunks queued at once -> last decision: {'; '.join(figures)}")


if __name__ == "__main__":  # python -m model_runtime.interaction.bench: no other CLI command's imports
    _parser = argparse.ArgumentParser(prog="python -m model_runtime.interaction.bench", description=__doc__)
    add_arguments(_parser)
    raise SystemExit(main(_parser.parse_args()))
