"""CUDA graphs of the model steps (interaction/cuda_graphs.py): a replay computes what the eager step computes.

A CUDA graph replays the kernels of its capture (their shapes, every choice the
Python code made then) on the new contents of its input tensors. Two ways in:

- on every machine, `RerunCapture` stands in for the graph: its "replay" runs the
  closure made at capture time (the layout's first plan) on the static inputs, into
  which `CudaGraphs.run` copied the new step's tensors. That is exactly what a
  real replay does, so a layout key that missed something that changes a step's
  kernels (a pool that grew, a room's slot, a longer attention length) fails here as
  it would on a GPU, and the bookkeeping (capture on the second sighting, LRU) runs
  for real;
- on a machine with CUDA (the device check), the same scenarios through real graphs.

Tolerance as in test_scale_batch.py: float32, logits O(10); replayed steps attend over
the length rounded up to a bucket (extra slots masked, weight exactly 0).
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from model_runtime import constants as c
from model_runtime.engine import add_engine_arguments, options_from_args, run_stream
from model_runtime.interaction import cuda_graphs
from model_runtime.interaction import decoder as decoder_module
from model_runtime.interaction.checkpoint import encode_chunks, load_checkpoint
from model_runtime.interaction.cuda_graphs import CudaGraphs
from model_runtime.interaction.decoder import CachedDecoder
from model_runtime.interaction.features import log_mel_offline
from model_runtime.interaction.tiny import trigger_audio
from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by the device check)")


class _Rerun:
    """A captured step's stand-in: replay = the capture-time closure on the static inputs."""

    def __init__(self, fn, static, output):
        self.fn, self.static, self.output = fn, static, output

    def replay(self):
        self.output.copy_(self.fn(self.static))


class RerunCapture(CudaGraphs):
    """`CudaGraphs` with the CUDA calls replaced by their CPU meaning (see the module docstring)."""

    @staticmethod
    def _warm_up(fn, static):
        return fn(static)

    @staticmethod
    def _record(fn, static):
        output = fn(static)  # (a step run twice writes the same K/V into the same slots)
        return _Rerun(fn, static, output), output


def _rooms(decoder, gen, width):
    """Three rooms in one pool (ragged histories) and one with a cache of its own."""
    pool = decoder.new_pool(400, rooms=0)
    rooms = [pool.allocate() for _ in range(3)] + [decoder.new_cache(400)]
    for cache, history in zip(rooms, (5, 40, 17, 3)):
        decoder.forward(cache, torch.randn(history, width, generator=gen).to(decoder.device))
    return pool, rooms


def _steps_through_graphs_equal_eager(lm, graphs: CudaGraphs | None, tolerance: float):
    """Listening steps of four rooms in two pools through a graphed and an eager decoder: every step's
    logits equal, while contexts grow through attention buckets, a room speaks (one-token steps),
    one has pending tokens, one rolls (compact), and the pool grows for a fifth room (new storage)."""
    eager = CachedDecoder(lm, cuda_graphs=False)
    graphed = CachedDecoder(lm) if graphs is None else CachedDecoder(lm, cuda_graphs=False)
    if graphs is not None:
        graphed.graphs = graphs
    width = lm.config.hidden_size
    pool, rooms = _rooms(graphed, torch.Generator().manual_seed(0), width)
    twin_pool, twins = _rooms(eager, torch.Generator().manual_seed(0), width)
    gen = torch.Generator().manual_seed(1)

    def step(which: list[int], news: list[int]) -> None:
        embeds = [torch.randn(n, width, generator=gen).to(lm.device) for n in news]
        got = graphed.forward_many([rooms[i] for i in which], embeds)
        want = eager.forward_many([twins[i] for i in which], embeds)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= tolerance
        assert torch.equal(got.argmax(-1), want.argmax(-1))

    for t in range(12):  # every room listening: 12 tokens each, the same layout whatever room came first
        step([0, 1, 2, 3] if t % 2 else [3, 1, 0, 2], [12, 12, 12, 12])
    step([0, 1, 2, 3], [12, 14, 12, 12])  # a room with pending tokens (a reply's end) before its chunk
    for _ in range(3):
        step([2], [1])  # a room speaking: one token at a time, alone
        step([2, 0], [1, 12])  # ... and beside a listening room
    keep = torch.arange(20, 60)
    graphed.compact(rooms[1], keep, start=4)  # a roll: the room's context shrinks, its slots move
    eager.compact(twins[1], keep, start=4)
    for _ in range(5):
        step([0, 1, 2, 3], [12, 12, 12, 12])
    rooms.append(pool.allocate())  # a fifth room: the pool grows into new storage
    twins.append(twin_pool.allocate())
    for _ in range(6):
        step([0, 1, 2, 3, 4], [12, 12, 12, 12, 12])
    for cache, twin in zip(rooms, twins):
        assert cache.length == twin.length
        assert torch.allclose(cache.keys[:, :, : cache.length], twin.keys[:, :, : twin.length], atol=1e-4)
    return graphed.graphs.stats


def test_replayed_steps_equal_eager_steps(loaded, monkeypatch):
    monkeypatch.setattr(decoder_module, "GRAPH_BUCKET_SLOTS", 128)  # contexts cross buckets every few steps
    stats = _steps_through_graphs_equal_eager(loaded.lm, RerunCapture(), tolerance=1e-4)
    # 14 replays; 10 when a layout depended on which room came first
    assert stats.replays >= 13 and stats.captures >= 5 and stats.failures == 0


def test_steps_of_any_rooms_of_a_pool_share_one_graph(loaded):
    """Whichever of a pool's rooms come to a step (the Combiner's batches at many rooms), the absent
    ones take part as stand-ins: one layout, picks or not, replayed, and every room's logits equal an eager step's;
    the stand-ins leave the rooms' caches as an eager step does (their K/V go past the capacity)."""
    lm = loaded.lm
    eager = CachedDecoder(lm, cuda_graphs=False)
    graphed = CachedDecoder(lm, cuda_graphs=False)
    graphed.graphs = RerunCapture()
    width = lm.config.hidden_size
    gen = torch.Generator().manual_seed(3)
    pool, twin_pool = graphed.new_pool(300, rooms=0), eager.new_pool(300, rooms=0)
    assert pool.scratch == decoder_module.GRAPH_SCRATCH_SLOTS and twin_pool.scratch == 0
    rooms = [pool.allocate() for _ in range(4)]
    twins = [twin_pool.allocate() for _ in range(4)]
    for cache, twin, history in zip(rooms, twins, (7, 30, 13, 21)):
        embeds = torch.randn(history, width, generator=gen)
        graphed.forward(cache, embeds)
        eager.forward(twin, embeds)
    subsets = ([0, 1, 2, 3], [1, 3], [2], [3, 0, 1], [0, 2], [1], [2, 3, 0], [0, 1, 2, 3], [3])
    for picked in (False, True):  # the engine's listening steps pick each chunk's decision position
        for which in subsets:
            embeds = [torch.randn(12, width, generator=gen) for _ in which]
            picks = [[11] for _ in which] if picked else None
            got = graphed.forward_many([rooms[i] for i in which], embeds, picks)
            want = eager.forward_many([twins[i] for i in which], embeds, picks)
            assert got.shape == (len(which), lm.config.vocab_size)
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    stats = graphed.graphs.stats
    assert len(graphed.graphs) == 1 and stats.captures == 1 and stats.replays == 2 * len(subsets) - 2
    for cache, twin in zip(rooms, twins):
        assert cache.length == twin.length
        torch.testing.assert_close(cache.keys[:, :, : cache.length], twin.keys[:, :, : twin.length], rtol=1e-4, atol=1e-4)
        assert float(cache.keys[:, :, cache.length : pool.capacity].abs().max()) == 0.0  # nothing past a room's end


def test_graph_bookkeeping_captures_on_the_second_sighting_and_drops_only_stale_graphs(monkeypatch):
    graphs = RerunCapture(max_graphs=2)
    calls = []

    def add(inputs):
        calls.append(1)
        return inputs[0] + inputs[1]

    one, two = torch.ones(3), torch.full((3,), 2.0)
    assert torch.equal(graphs.run("a", [one, two], add), one + two)  # first sighting: eager
    assert (graphs.stats.eager, graphs.stats.captures, len(graphs)) == (1, 0, 0)
    assert torch.equal(graphs.run("a", [two, two], add), two + two)  # second: captured (and run)
    assert (graphs.stats.captures, len(graphs)) == (1, 1)
    result = graphs.run("a", [one, one], add)  # replayed on the new inputs
    assert torch.equal(result, one + one) and graphs.stats.replays == 1
    graphs.run("a", [two, two], add)
    assert torch.equal(result, one + one)  # a result is the caller's own, not the graph's buffer
    for key in ("b", "b", "c", "c"):  # "c" finds both places taken by graphs in use: it stays eager
        graphs.run(key, [one, two], add)
    assert len(graphs) == 2 and graphs.stats.dropped == 0 and graphs.stats.eager == 4
    monkeypatch.setattr(cuda_graphs, "STALE_RUNS", 3)  # "a", last replayed 5 runs ago, is stale: it makes way
    assert torch.equal(graphs.run("c", [one, one], add), one + one)
    assert len(graphs) == 2 and graphs.stats.dropped == 1 and graphs.stats.captures == 3
    graphs.run("c", [two, one], add)
    assert graphs.stats.replays == 3


def test_encoder_replays_equal_eager(loaded):
    graphs = RerunCapture()
    rng = np.random.default_rng(5)
    for n in (1, 2, 1, 1, 2, 1, 2):  # one room's chunk, two rooms' chunks, ...
        mel = log_mel_offline(rng.normal(0, 0.1, c.CHUNK_SAMPLES * n).astype(np.float32))
        torch.testing.assert_close(encode_chunks(loaded, mel, graphs), encode_chunks(loaded, mel), rtol=1e-5, atol=1e-5)
    assert (graphs.stats.eager, graphs.stats.captures, graphs.stats.replays) == (2, 2, 3)


def test_cuda_graphs_option_and_cpu_decoders_without_graphs(loaded):
    parser = argparse.ArgumentParser()
    add_engine_arguments(parser)
    assert options_from_args(parser.parse_args([])).cuda_graphs is True
    assert options_from_args(parser.parse_args(["--no-cuda-graphs"])).cuda_graphs is False
    engine = make_engine(loaded, cuda_graphs=True)  # graphs are a GPU's: on a CPU every step runs as before
    assert engine.decoder.graphs is None and engine.encoder_graphs is None


@needs_cuda
def test_cuda_graphs_steps_equal_eager_on_a_gpu(loaded, monkeypatch):
    monkeypatch.setattr(decoder_module, "GRAPH_BUCKET_SLOTS", 128)
    cuda = load_checkpoint(str(loaded.path), "cuda", "float32")
    stats = _steps_through_graphs_equal_eager(cuda.lm, None, tolerance=1e-3)
    assert stats.replays >= 12 and stats.captures >= 5 and stats.failures == 0


@needs_cuda
def test_cuda_graphs_engine_events_equal_eager_on_a_gpu(loaded):
    """The rigged tiny model on a GPU, replaying graphs: the same decisions and replies as eagerly."""
    cuda = load_checkpoint(str(loaded.path), "cuda", "float32")
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(6400 * 6) * 0.01).astype(np.float32)
    audio = np.concatenate([noise, trigger_audio(), noise, noise, trigger_audio(), noise])
    results = {}
    for graphs in (True, False):
        engine = make_engine(cuda, device="cuda", cuda_graphs=graphs, context_seconds=3.0, max_response_tokens=16)
        stream = engine.open_stream()
        results[graphs] = [e.to_dict() for e in run_stream(stream, audio)]
        stream.close()
        if graphs:
            assert engine.decoder.graphs.stats.replays > 10 and engine.encoder_graphs.stats.replays > 10
    assert results[True] == results[False]
    assert [e["t"] for e in results[True] if e["type"] == "decision" and e["respond"]]
