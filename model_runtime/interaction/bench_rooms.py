"""`audio-interaction bench rooms`: batched rooms and quantized weights on the 3B-shaped model (printed, never asserted).

Random weights in the shapes of Qwen2.5-3B (LM) and Qwen2.5-Omni-3B's audio
encoder (no download; see bench.py `build_random`). Two sections (`--sections`):

- rooms: one 0.4 s tick of N rooms = the encoder on N chunks + a 12-token
  listening step for each room at `--context` tokens, three ways:
  batched, the core (one encoder call, one `forward_many` on the rooms' pooled
  caches: one attention call per layer), sequential (N separate calls, what the
  runtime did before batching), and the engine path: a real `InteractionEngine`
  on the same weights, each room a stream fed 0.4 s of audio per tick from its
  own persistent thread (as the server's executor runs them), so the tick
  includes the log-mel front end, the `Combiner` hand-offs, embeddings, the
  greedy pick and the events. Printed: ms per tick (wall and CPU), ratio to one
  room, RTF of the tick (<= 1: all N rooms keep up with real time), and the
  engine path's cost over the core.
- rtf: one room, whole chunk (encoder + listening step) at the start and at the
  end of the default context window (300 s), per `--quantize` mode; wall and CPU
  time (the build machines are shared and loaded: CPU time / threads is the
  better estimate of an idle machine's wall time), and the logits drift of each
  quantized mode against the unquantized weights over a few steps.

`--device cuda --dtype bfloat16` runs it on a GPU. `--shape tiny` runs the same
on the tiny checkpoint's shapes (random weights): there the model costs next to
nothing, so the engine path's own overhead stands out.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

from .. import constants as c
from .bench import PeakMemory, build_random, omni3b_audio_config, qwen25_3b_config, timed

SECTIONS = ("rooms", "rtf")
SHAPES = ("3b", "tiny")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of: %(default)s")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default %(default)s)")
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--rooms", default="1,4,8,16", help="room counts (default %(default)s)")
    parser.add_argument("--context", type=int, default=1000, help="tokens of context per room in the rooms section")
    parser.add_argument("--quantize", default="none,int8", help="rtf section modes (default %(default)s)")
    parser.add_argument("--layers", type=int, default=None,
                        help="LM layers (default: the shape's, 36 for 3b; fewer for a quick look)")
    parser.add_argument("--encoder-layers", type=int, default=None,
                        help="audio encoder layers (default: the shape's, 32 for 3b)")
    parser.add_argument("--shape", default="3b", choices=list(SHAPES), help="model shapes (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per figure (median; default %(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false",
                        help="on a GPU, run the steps eagerly instead of replaying CUDA graphs (for comparison)")


def main(args: argparse.Namespace) -> int:
    import torch

    from ..errors import UserError

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is visible to torch")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise UserError(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    dtype = getattr(torch, args.dtype)
    started = time.perf_counter()
    lm, encoder = _build(dtype, device, args.shape, args.layers, args.encoder_layers)
    shape = "Qwen2.5-3B-shaped LM + Omni-3B audio encoder" if args.shape == "3b" else "tiny-checkpoint-shaped LM + encoder"
    graphs = args.cuda_graphs and device.type == "cuda"
    graphs_note = (" (CUDA graphs)" if graphs else " (no CUDA graphs)") if device.type == "cuda" else ""
    print(f"# bench rooms: {shape} ({lm.config.num_hidden_layers} + {encoder.config.encoder_layers} layers), random weights, "
          f"{args.dtype}, {_device_name(device)}{graphs_note}, {torch.get_num_threads()} CPU threads; built in "
          f"{time.perf_counter() - started:.0f} s; medians of {args.repeats}")
    if "rooms" in sections:
        bench_rooms(lm, encoder, device, [int(r) for r in args.rooms.split(",")], args.context, args.repeats, graphs)
    if "rtf" in sections:
        modes = [m.strip() for m in args.quantize.split(",") if m.strip()]
        bench_rtf(lm, encoder, device, modes, args.repeats, graphs)
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


def _build(dtype, device, shape: str, layers: int | None, encoder_layers: int | None):
    import torch
    from transformers import Qwen2ForCausalLM
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    if shape == "3b":
        lm_config, audio_config = qwen25_3b_config(layers or 36), omni3b_audio_config()
    else:
        from .checkpoint import audio_config_from_dict, qwen2_config_from_litgpt
        from .tiny import TINY_AUDIO_CONFIG, TINY_LITGPT_CONFIG

        lm_config = qwen2_config_from_litgpt(dict(TINY_LITGPT_CONFIG, n_layer=layers or TINY_LITGPT_CONFIG["n_layer"]))
        lm_config._attn_implementation = "sdpa"
        audio_config = audio_config_from_dict(TINY_AUDIO_CONFIG)
        audio_config._attn_implementation = "sdpa"
    if encoder_layers:
        audio_config.encoder_layers = encoder_layers
    lm = build_random(Qwen2ForCausalLM, lm_config, dtype, device)
    encoder = build_random(Qwen2_5OmniAudioEncoder, audio_config, dtype, device)
    with torch.no_grad():
        # A random model would now and then pick TEXT_BEGIN and decode a reply, which is not
        # what a tick measures: its logit is pinned to 0, below the best of 152k random logits.
        lm.lm_head.weight[c.TEXT_BEGIN] = 0
    return lm, encoder


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"


def _random_caches(decoder, rooms: int, context: int):
    """`rooms` caches in one pool (as the engine's batched rooms have), `context` slots of random K/V each."""
    pool = decoder.new_pool(context + 8 * c.TOKENS_PER_CHUNK, rooms)
    caches = [pool.allocate() for _ in range(rooms)]
    for cache in caches:  # attention costs the same over random K/V as over real ones
        _fill(cache, 0, context)
    return caches


def _fill(cache, start: int, end: int) -> None:
    cache.keys[:, :, start:end].normal_(0, 0.5)
    cache.values[:, :, start:end].normal_(0, 0.5)
    cache.length = end


def _engine(lm, encoder, device, rooms: int, graphs: bool):
    """A real InteractionEngine on the benchmark's weights (the tiny checkpoint's tokenizer: ids are the same)."""
    from pathlib import Path

    from ..engine import EngineOptions
    from .checkpoint import LoadedModel
    from .engine import InteractionEngine
    from .tiny import build_tokenizer

    param = next(lm.parameters())
    loaded = LoadedModel(lm, encoder, build_tokenizer(), {}, param.device, param.dtype, Path("random"))
    options = EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, model="random", device=str(device),
                            dtype=str(param.dtype).removeprefix("torch."), batch_rooms=max(rooms, EngineOptions.batch_rooms),
                            overload_seconds=0.0, cuda_graphs=graphs)
    return InteractionEngine(options, loaded=loaded)


def bench_rooms(lm, encoder, device, room_counts: list[int], context: int, repeats: int, graphs: bool = False) -> None:
    import numpy as np
    import torch

    from .batch import encode_batch
    from .checkpoint import encode_chunks_with
    from .cuda_graphs import CudaGraphs
    from .decoder import CachedDecoder

    decoder = CachedDecoder(lm, cuda_graphs=graphs)
    encoder_graphs = CudaGraphs() if graphs else None
    caches = _random_caches(decoder, max(room_counts), context)
    mel = np.random.default_rng(0).standard_normal((c.N_MELS, c.MEL_FRAMES_PER_CHUNK)).astype(np.float32)
    embeds = (torch.randn(c.TOKENS_PER_CHUNK, lm.config.hidden_size, device=device) * 0.02).to(decoder.dtype)
    audio = (np.random.default_rng(1).standard_normal(c.CHUNK_SAMPLES) * 0.05).astype(np.float32)

    def encode_one(m):
        return encode_chunks_with(encoder, m, encoder_graphs)

    def rewind(rooms):
        for cache in caches[:rooms]:
            cache.length = context

    print(f"\n## rooms: one 0.4 s tick = encoder on N chunks + a 12-token listening step per room, "
          f"{context} tokens of context each; ms per tick, medians of wall and of CPU (this process, all threads)")
    print("rooms | core: batched ms/tick (x one room, RTF of the tick, RTF per room), CPU ms | "
          "sequential ms/tick (x batched) | engine path ms/tick, CPU ms (LM steps/tick, front end ms/room) | "
          "engine - core: wall, CPU ms")
    base = None
    keeps_up = 0
    for rooms in room_counts:
        def batched(rooms=rooms):
            rewind(rooms)
            encode_batch(encode_one, [mel] * rooms)
            decoder.forward_many(caches[:rooms], [embeds] * rooms)

        def sequential(rooms=rooms):
            rewind(rooms)
            for cache in caches[:rooms]:
                encode_one(mel)
                decoder.forward(cache, embeds)

        with torch.inference_mode():
            wall, cpu = timed(batched, device, repeats)
            seq, _ = timed(sequential, device, repeats)
        base = base or wall
        core = (f"{rooms:>5} | {wall * 1000:8.1f} ({wall / base:4.2f}x, RTF {wall / c.CHUNK_SECONDS:5.2f}, "
                f"{wall / rooms / c.CHUNK_SECONDS:5.3f}), {cpu * 1000:8.1f} | {seq * 1000:8.1f} ({seq / wall:4.2f}x)")
        try:
            path, path_cpu, steps, front = _engine_path(lm, encoder, device, rooms, context, audio, repeats, graphs)
        except Exception as err:  # noqa: BLE001 - e.g. a package the engine needs is missing on a GPU host:
            print(f"{core} | engine path failed: {type(err).__name__}: {err}", flush=True)  # keep the core figures
            continue
        if path <= c.CHUNK_SECONDS:
            keeps_up = max(keeps_up, rooms)
        print(f"{core} | {path * 1000:8.1f}, {path_cpu * 1000:8.1f} ({steps:.1f}, {front * 1000:.2f}) | "
              f"{(path - wall) * 1000:+7.1f}, {(path_cpu - cpu) * 1000:+7.1f}", flush=True)
    print(f"rooms this device keeps in real time through the engine (tick <= 0.4 s), of those measured: "
          f"{keeps_up or 'none'}")
    del caches
    gc.collect()


def _engine_path(lm, encoder, device, rooms: int, context: int, audio, repeats: int, graphs: bool):
    """Median (wall, CPU) seconds of one tick through a real engine, its LM steps per tick, and
    the mean seconds per room and tick of the log-mel front end (numpy, in the room's thread)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    engine = _engine(lm, encoder, device, rooms, graphs)
    streams = [engine.open_stream() for _ in range(rooms)]
    for stream in streams:  # `context` tokens of history, as the core has
        _fill(stream.cache, stream.cache.length, context)
        stream.context.open_segment(context - stream.context.length)
    with ThreadPoolExecutor(max_workers=rooms, thread_name_prefix="room") as executor:
        def tick():
            for events in executor.map(lambda stream: stream.feed(audio), streams):
                # a decision, or an error event if random weights overflowed (the step still ran)
                if not any(e.type in (c.EVENT_DECISION, c.EVENT_ERROR) for e in events):
                    raise RuntimeError(f"a room's tick ran no listening step: {events}")

        list(executor.map(lambda stream: stream.feed(audio), streams))  # the front end's lookahead: no decision yet
        for _ in range(3):  # CUDA graphs are captured on a layout's second step (cuda_graphs.py)
            tick()
        # Timed over more ticks than the core: a context crossing an attention bucket (every 1,024
        # slots) runs one eager step and one capture, as a live room does every 85 ticks.
        ticks = 3 * repeats
        steps_before = engine.lm_batches.stats.batches if engine.lm_batches else 0
        front_before = sum(stream.stats.features_seconds for stream in streams)
        wall, cpu = timed(tick, device, ticks)
        steps = ((engine.lm_batches.stats.batches if engine.lm_batches else 0) - steps_before) / (ticks + 1)
        front = (sum(stream.stats.features_seconds for stream in streams) - front_before) / (ticks + 1) / rooms
        lm_graphs = engine.decoder.graphs
        if lm_graphs is not None:
            print(f"      (engine: {len(lm_graphs)} LM graphs, {lm_graphs.stats.captures} captured, {lm_graphs.stats.eager} "
                  f"eager steps, {lm_graphs.stats.replays} replays; GPU memory reserved "
                  f"{torch.cuda.memory_reserved(device) / 2**30:.2f} GiB)")
    for stream in streams:
        stream.close()
    del engine, streams
    gc.collect()  # the engine's K/V pool goes now (the engine holds reference cycles), not with a later room count
    return wall, cpu, steps, front


def bench_rtf(lm, encoder, device, modes: list[str], repeats: int, graphs: bool = False) -> None:
    import numpy as np
    import torch

    from .checkpoint import encode_chunks_with
    from .context import ContextWindow
    from .cuda_graphs import CudaGraphs
    from .decoder import CachedDecoder
    from .quantize import quantize_lm, weight_bytes

    prefix = 64
    window = ContextWindow(prefix, 300.0, max_segment_tokens=c.TOKENS_PER_CHUNK + 131)
    contexts = {"start": prefix, "end": window.capacity - c.TOKENS_PER_CHUNK}
    mel = np.random.default_rng(0).standard_normal((c.N_MELS, c.MEL_FRAMES_PER_CHUNK)).astype(np.float32)
    gen = torch.Generator().manual_seed(1)
    probe_prefix = torch.randn(prefix, lm.config.hidden_size, generator=gen).to(device) * 0.02
    probe = [torch.randn(c.TOKENS_PER_CHUNK, lm.config.hidden_size, generator=gen).to(device) * 0.02 for _ in range(6)]
    print(f"\n## rtf: one room, whole chunk (encoder + 12-token listening step); window of 300 s = "
          f"{window.capacity} slots (start = {contexts['start']}, end = {contexts['end']} tokens of context)")
    reference = None
    memory = PeakMemory(device)
    for mode in modes:
        quantize_lm(lm, mode)  # in place: modes must go from none to one quantized mode
        decoder = CachedDecoder(lm, cuda_graphs=graphs)
        encoder_graphs = CudaGraphs() if graphs else None
        memory.reset()
        with torch.inference_mode():
            enc, enc_cpu = timed(lambda: encode_chunks_with(encoder, mel, encoder_graphs), device, repeats)
            figures = []
            for where, context in contexts.items():
                cache = _random_caches(decoder, 1, context)[0]
                embeds = probe[0].to(decoder.dtype)

                def step(cache=cache, context=context):
                    cache.length = context
                    decoder.forward(cache, embeds)

                wall, cpu = timed(step, device, repeats)
                figures.append(f"{where} {wall * 1000:7.1f} ms step, chunk RTF {(enc + wall) / c.CHUNK_SECONDS:5.2f} "
                               f"(CPU {(enc_cpu + cpu) * 1000:7.1f} ms)")
                del cache
            cache = decoder.new_cache(prefix + len(probe) * c.TOKENS_PER_CHUNK)
            cache.length = 0
            decoder.forward(cache, probe_prefix.to(decoder.dtype))
            logits = torch.stack([decoder.forward(cache, e.to(decoder.dtype)) for e in probe])
        drift = ""
        if reference is None:
            reference = logits
        else:
            scale = float(reference.abs().max())
            worst = float((logits - reference).abs().max())
            same = float((logits.argmax(-1) == reference.argmax(-1)).float().mean())
            drift = f" | logits drift vs {modes[0]}: max {worst:.3f} ({100 * worst / scale:.1f} % of max |logit|), " \
                    f"argmax equal {100 * same:.0f} %"
        print(f"{mode:>12}: LM weights {weight_bytes(lm) / 2**30:5.2f} GiB | encoder {enc * 1000:6.1f} ms | "
              + " | ".join(figures) + f" | peak {memory.peak_gib():.2f} GiB{drift}")


if __name__ == "__main__":  # python -m model_runtime.interaction.bench_rooms: no CLI, so fewer imports (a GPU host)
    import sys

    _parser = argparse.ArgumentParser(prog="bench rooms", description=__doc__.splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
