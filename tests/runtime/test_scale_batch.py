"""Batched rooms on the rigged tiny checkpoint: one model step serves many streams.

Tolerance: float32 on CPU; a batched step multiplies the same rows by the same
weights, only grouped differently, and pooled attention adds only masked columns
(weight exactly 0) and padded rows (thrown away), so the logits agree to float32
rounding: max |batched - alone| <= 1e-4 (logits are O(10) here), and the greedy
token is equal.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from model_runtime import constants as c
from model_runtime.engine import run_stream
from model_runtime.errors import UserError
from model_runtime.interaction.batch import Combiner
from model_runtime.interaction import decoder as decoder_module
from model_runtime.interaction.decoder import CachedDecoder
from model_runtime.interaction.tiny import RIGGED_TEXT, trigger_audio
from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)

TOLERANCE = 1e-4


def clone(cache, decoder):
    """A cache of its own (its own pool) holding what `cache` holds."""
    twin = decoder.new_cache(cache.capacity)
    twin.keys.copy_(cache.keys)
    twin.values.copy_(cache.values)
    twin.length = cache.length
    return twin


def _same(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= TOLERANCE
    assert torch.equal(got.argmax(-1), want.argmax(-1))


# Both attention paths: the flash kernel, and the matmuls CPU bfloat16 models use at long contexts
# (forced here in float32, on short contexts: over the rounded-up length, here the pool's capacity).
@pytest.mark.parametrize("by_matmul", [False, True], ids=["sdpa", "matmul"])
def test_pooled_step_equals_each_room_alone(loaded, by_matmul, monkeypatch):
    """Rooms of one pool attend in one call per layer; each must get what it gets on a cache of its own.

    Ragged histories; ragged new tokens in one step (a listening chunk of 12, a chunk behind
    pending tokens, a one-token decode step of a room speaking while the others listen);
    the step's order differs from the slots'; a closed room's slot lies inside the span;
    two rooms rolled (compacted) differently between steps; a step over far-apart slots;
    a step mixing two pools.
    """
    decoder = CachedDecoder(loaded.lm)
    decoder.by_matmul = by_matmul
    monkeypatch.setattr(decoder_module, "MATMUL_MIN_SLOTS", 0)  # (a long context's path: over all of the pool's slots)
    width = loaded.lm.config.hidden_size
    gen = torch.Generator().manual_seed(0)
    pool = decoder.new_pool(96, rooms=0)
    slots = [pool.allocate() for _ in range(5)]
    pool.release(slots[1].slot)  # a room that left: its slot stays in the attention batch's span
    rooms = [slots[0], slots[2], slots[3], slots[4]]
    alone = [decoder.new_cache(96) for _ in rooms]  # each a pool of its own: attention per room
    for cache, twin, history in zip(rooms, alone, [5, 40, 17, 1]):
        embeds = torch.randn(history, width, generator=gen)
        decoder.forward(cache, embeds)
        decoder.forward(twin, embeds)

    def step(news: list[int], order: list[int]) -> None:
        embeds = [torch.randn(n, width, generator=gen) for n in news]
        got = decoder.forward_many([rooms[i] for i in order], [embeds[i] for i in order])
        want = torch.stack([decoder.forward(alone[i], embeds[i]) for i in order])
        _same(got, want)

    step([12, 15, 1, 12], order=[2, 0, 3, 1])
    for index, keep in ((1, torch.tensor([20, 21, 22, 50, 51])), (2, torch.arange(10, 18))):
        decoder.compact(rooms[index], keep, start=4)  # rolls: different slots dropped per room
        decoder.compact(alone[index], keep, start=4)
    step([12, 1, 1, 13], order=[0, 1, 2, 3])
    step([1, 1, 1, 1], order=[3, 2, 1, 0])  # every room speaking: one row each, ragged lengths
    got = decoder.forward_many([rooms[0], rooms[3]], [torch.ones(12, width), torch.ones(2, width)])  # slots 0, 4
    _same(got, torch.stack([decoder.forward(alone[0], torch.ones(12, width)),
                            decoder.forward(alone[3], torch.ones(2, width))]))
    # A step with rooms of two pools (a cache of its own among pooled ones): one attention call per pool.
    own, own_twin = decoder.new_cache(96), decoder.new_cache(96)
    history = torch.randn(3, width, generator=gen)
    decoder.forward(own, history)
    decoder.forward(own_twin, history)
    embeds = [torch.randn(n, width, generator=gen) for n in (12, 5, 1)]
    got = decoder.forward_many([rooms[1], own, rooms[2]], embeds)
    _same(got, torch.stack([decoder.forward(alone[1], embeds[0]), decoder.forward(own_twin, embeds[1]),
                            decoder.forward(alone[2], embeds[2])]))
    for cache, twin in zip(rooms, alone):
        assert cache.length == twin.length
        assert torch.allclose(cache.keys[:, :, : cache.length], twin.keys[:, :, : twin.length], atol=1e-5)
        assert torch.allclose(cache.values[:, :, : cache.length], twin.values[:, :, : twin.length], atol=1e-5)


@pytest.mark.parametrize("by_matmul", [False, True], ids=["sdpa", "matmul"])
def test_a_non_finite_room_spoils_no_other_room(loaded, by_matmul, monkeypatch):
    decoder = CachedDecoder(loaded.lm)
    decoder.by_matmul = by_matmul
    monkeypatch.setattr(decoder_module, "MATMUL_MIN_SLOTS", 0)  # (a long context's path: over all of the pool's slots)
    width = loaded.lm.config.hidden_size
    pool = decoder.new_pool(64, rooms=3)
    caches = [pool.allocate() for _ in range(3)]
    prefix = decoder.new_cache(64)
    decoder.forward(prefix, torch.randn(4, width))
    history = torch.randn(26, width)
    for cache in caches:
        cache.reset_to(prefix)
        decoder.forward(cache, history)
    embeds = [torch.randn(12, width) for _ in range(3)]
    expected = decoder.forward(clone(caches[2], decoder), embeds[2])
    embeds[1][3] = float("nan")
    got = decoder.forward_many(caches, embeds)
    assert not torch.isfinite(got[1]).all()
    assert torch.isfinite(got[0]).all() and torch.isfinite(got[2]).all()
    assert float((got[2] - expected).abs().max()) <= TOLERANCE
    # The engine's answer to a fault: back to the prefix. The room is now the shortest of the
    # step, its poisoned slots (33..) beyond its length but inside the slots the step attends
    # over: masked, a NaN value would still make NaN (0 * NaN); reset_to must have cleared them.
    caches[1].reset_to(prefix)
    again = torch.randn(12, width)
    expected = decoder.forward(clone(caches[1], decoder), again)
    got = decoder.forward_many([caches[0], caches[1]], [torch.randn(12, width), again])
    assert float((got[1] - expected).abs().max()) <= TOLERANCE
    with pytest.raises(ValueError, match="KV cache full"):
        decoder.forward_many([caches[0], decoder.new_cache(4)], [embeds[0], embeds[2]])
    assert caches[0].length == 30 + 12 + 12  # a refused step changed no cache


def test_pool_grows_keeps_rooms_and_reuses_slots_clean(loaded):
    decoder = CachedDecoder(loaded.lm)
    pool = decoder.new_pool(32, rooms=0)
    first = pool.allocate()
    decoder.forward(first, torch.randn(7, loaded.lm.config.hidden_size))
    keys = first.keys.clone()
    more = [pool.allocate() for _ in range(4)]  # grows 1 -> 2 -> 3 -> 4 -> 6 slots
    assert pool.rooms == 6 and pool.in_use() == 5
    assert torch.equal(first.keys, keys)  # the room's K/V moved with the storage
    pool.release(first.slot)
    with pytest.raises(ValueError, match="not in use"):
        pool.release(first.slot)
    again = pool.allocate()
    assert again.slot == first.slot and again.length == 0 and not again.keys.any()
    bounded = decoder.new_pool(8, rooms=0, max_rooms=3)
    assert [bounded.allocate().slot for _ in range(3)] == [0, 1, 2] and bounded.rooms == 3  # 1 -> 2 -> 3, no further
    assert not bounded.can_allocate()
    with pytest.raises(ValueError, match="KV pool full"):
        bounded.allocate()
    assert {cache.slot for cache in more} | {again.slot} == set(range(5))


def test_combiner_groups_concurrent_requests_and_fails_only_its_batch():
    release = threading.Event()
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(list(batch))
        release.wait(5)  # the first batch holds the model while the others queue up
        if -1 in batch:
            raise RuntimeError("bad request")
        return [x * 10 for x in batch]

    combiner: Combiner[int, int] = Combiner(run, max_batch=3)
    results: dict[int, object] = {}

    def room(x: int) -> None:
        try:
            results[x] = combiner.submit(x)
        except RuntimeError as err:
            results[x] = str(err)

    first = threading.Thread(target=room, args=(0,))
    first.start()
    while not seen:
        threading.Event().wait(0.001)
    others = [threading.Thread(target=room, args=(x,)) for x in (1, 2, 3, 4, -1)]
    for thread in others:
        thread.start()
    while len(combiner._waiting) < 5:  # all queued behind the running batch
        threading.Event().wait(0.001)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert seen[0] == [0]
    assert sorted(len(b) for b in seen[1:]) == [2, 3]  # five waiting: one batch of 3 (the cap), then 2
    failed = next(b for b in seen if -1 in b)
    for x in (0, 1, 2, 3, 4):
        assert results[x] == ("bad request" if x in failed else x * 10)
    assert results[-1] == "bad request"
    assert combiner.stats.batches == 3 and combiner.stats.requests == 6 and combiner.stats.largest == 3


def test_combiner_gathers_the_expected_rooms_into_one_batch():
    seen: list[list[int]] = []
    combiner: Combiner[int, int] = Combiner(lambda b: seen.append(list(b)) or b, expected=lambda: 3, gather_seconds=5.0)
    threads = [threading.Thread(target=combiner.submit, args=(x,)) for x in range(3)]
    for thread in threads:  # the rooms' chunks complete a little apart
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(10)
    assert seen == [[0, 1, 2]]  # one step for all three, not [0] then [1, 2]
    started = time.monotonic()
    alone: Combiner[int, int] = Combiner(lambda b: b, expected=lambda: 3, gather_seconds=0.1)
    assert alone.submit(7) == 7 and time.monotonic() - started < 1.0  # a missing room costs the window only


def test_combiner_hands_each_thread_its_own_result_under_load():
    """8 rooms x 50 requests, batches capped at 3, gathering and not: every thread gets its own
    answer, none hangs (each waiting thread is woken by its own event, once)."""
    combiner: Combiner[int, int] = Combiner(lambda b: [x * 2 for x in b], max_batch=3, expected=lambda: 8,
                                            gather_seconds=0.001)
    wrong: list[int] = []

    def room(k: int) -> None:
        for i in range(50):
            x = k * 1000 + i
            if combiner.submit(x, gather=i % 2 == 0) != 2 * x:
                wrong.append(x)

    threads = [threading.Thread(target=room, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads) and wrong == []
    assert combiner.stats.requests == 400 and 1 < combiner.stats.largest <= 3


def _run_rooms(engine, audios: list[np.ndarray]) -> list[list]:
    """Each room in its own thread (as the server runs them), fed in 0.1 s pieces in lock-step."""
    barrier = threading.Barrier(len(audios))
    out: list[list] = [[] for _ in audios]

    def room(index: int) -> None:
        stream = engine.open_stream()
        audio = audios[index]
        for start in range(0, len(audio), c.CHUNK_SAMPLES // 4):
            barrier.wait(30)
            out[index].extend(stream.feed(audio[start : start + c.CHUNK_SAMPLES // 4]))
        out[index].extend(stream.finish())
        stream.close()

    _in_threads(room, len(audios))
    return out


def _in_threads(room, rooms: int) -> None:
    """room(i) for each room in a thread of its own (as the server runs them), all joined."""
    threads = [threading.Thread(target=room, args=(i,)) for i in range(rooms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


def _decisions(events) -> list[tuple[float, bool]]:
    return [(round(e.t, 3), e.data["respond"]) for e in events if e.type == c.EVENT_DECISION]


def test_trigger_in_one_room_is_answered_while_the_others_stay_silent(loaded):
    rng = np.random.default_rng(3)
    chunks = 8
    audios = [(rng.standard_normal(chunks * c.CHUNK_SAMPLES) * 0.01).astype(np.float32) for _ in range(4)]
    audios[2][3 * c.CHUNK_SAMPLES : 4 * c.CHUNK_SAMPLES] = trigger_audio()
    engine = make_engine(loaded, batch_rooms=16)
    run_batch = engine.lm_batches.run_batch

    pools_stepped = set()

    def step_taking_real_time(requests):  # as a 3B step does: the other rooms arrive while it runs
        pools_stepped.update(id(cache.pool) for cache, _, _ in requests)
        time.sleep(0.05)
        return run_batch(requests)

    engine.lm_batches.run_batch = step_taking_real_time
    rooms = _run_rooms(engine, audios)
    for index, events in enumerate(rooms):
        assert [t for t, _ in _decisions(events)] == [round(0.4 * (i + 1), 3) for i in range(chunks)]
        said = [t for t, respond in _decisions(events) if respond]
        finals = [e.data["text"] for e in events if e.type == c.EVENT_RESPONSE and e.data["final"]]
        assert not [e for e in events if e.type == c.EVENT_ERROR]
        if index == 2:
            assert said == [1.6] and finals == [RIGGED_TEXT]
        else:
            assert said == [] and finals == []
    # The rooms really shared LM steps (requests that arrive while a step runs form the
    # next batch); every decision equals the room run alone without batching.
    assert engine.lm_batches.stats.largest >= 2
    assert len(pools_stepped) == 1  # the four rooms' caches were slots of one pool (pooled attention)
    assert engine.pools() == []  # and once every room closed, the pool was dropped
    alone = make_engine(loaded, batch_rooms=1)
    assert alone.lm_batches is None
    for audio, events in zip(audios, rooms):
        assert _decisions(run_stream(alone.open_stream(), audio)) == _decisions(events)


def test_rooms_fill_pools_of_a_bounded_size_and_an_empty_pool_is_dropped(loaded):
    from model_runtime.interaction.engine import ROOMS_PER_POOL

    engine = make_engine(loaded, batch_rooms=16)
    streams = [engine.open_stream() for _ in range(ROOMS_PER_POOL + 1)]
    first, second = engine.pools()
    assert (first.rooms, first.in_use(), second.rooms, second.in_use()) == (ROOMS_PER_POOL, ROOMS_PER_POOL, 1, 1)
    assert {id(s.cache.pool) for s in streams} == {id(first), id(second)}
    # both pools' rooms step together (one attention call per pool) and hear what they would alone
    audio = (np.random.default_rng(5).standard_normal(c.CHUNK_SAMPLES) * 0.01).astype(np.float32)
    want = _decisions(run_stream(make_engine(loaded, batch_rooms=1).open_stream(), audio))
    assert all(_decisions(got) == want for got in _run_opened(streams, audio))
    streams.pop().close()
    assert engine.pools() == [first]  # the second pool's only room left: its memory goes with it
    streams[0].close()
    reopened = engine.open_stream()  # a new room takes the free slot of the first pool
    assert reopened.cache.pool is first and engine.pools() == [first]
    for stream in streams[1:] + [reopened]:
        stream.close()
    assert engine.pools() == []


def _run_opened(streams, audio: np.ndarray) -> list[list]:
    out: list[list] = [[] for _ in streams]

    def room(index: int) -> None:
        out[index] = streams[index].feed(audio) + streams[index].finish()

    _in_threads(room, len(streams))
    return out


def test_batch_rooms_option_is_checked(loaded):
    with pytest.raises(UserError, match="--batch-rooms must be at least 1"):
        make_engine(loaded, batch_rooms=0)


def test_batched_encoder_equals_each_room_alone(loaded):
    from model_runtime.interaction.batch import encode_batch
    from model_runtime.interaction.checkpoint import encode_chunks

    rng = np.random.default_rng(5)  # log-mel-like frames of three rooms: 1, 3 and 2 chunks
    mels = [rng.uniform(-1, 1, (c.N_MELS, k * c.MEL_FRAMES_PER_CHUNK)).astype(np.float32) for k in (1, 3, 2)]
    with torch.inference_mode():
        got = encode_batch(lambda mel: encode_chunks(loaded, mel), mels)
        for mel, vectors in zip(mels, got):
            alone = encode_chunks(loaded, mel)
            assert vectors.shape == alone.shape == (mel.shape[1] // c.MEL_FRAMES_PER_CHUNK, 10, alone.shape[-1])
            assert float((vectors - alone).abs().max()) <= TOLERANCE


def test_bench_rooms_runs_core_and_engine_path_on_tiny_shapes(loaded, capsys):
    """The benchmark a GPU session runs (`bench_rooms --device cuda`), here on the tiny model on
    the CPU: its engine path must really stream every room through an engine (a bench bug
    found on the device would cost the device time)."""
    from model_runtime.interaction import bench_rooms

    bench_rooms.bench_rooms(loaded.lm, loaded.encoder, torch.device("cpu"), [1, 3], context=40, repeats=1)
    rows = [line.split("|") for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(row[0]) for row in rows] == [1, 3]
    for row in rows:
        steps = float(row[3].split("(")[1].split(",")[0])  # LM steps per tick in the engine path
        assert 1.0 <= steps <= 3.0
