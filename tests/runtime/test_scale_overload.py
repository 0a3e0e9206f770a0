"""Graceful overload (interaction/overload.py): live audio the hardware cannot keep up with is decided
every other chunk, announced as an `overloaded` error; audio fed faster than real time never is."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop

from model_runtime import constants as c
from model_runtime.engine import run_stream
from model_runtime.interaction.engine import InteractionEngine
from model_runtime.interaction.overload import OVERLOADED, OverloadGuard
from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)
from server_support import Client, custom, listen, running_server, to_pcm16

FRAMES = c.MEL_FRAMES_PER_CHUNK


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def mel_of(chunks: int) -> np.ndarray:
    """Frames whose value is their chunk's number: shows which chunks were kept."""
    return np.repeat(np.arange(chunks, dtype=np.float32), FRAMES)[None, :].repeat(c.N_MELS, axis=0)


def test_live_audio_behind_is_thinned_to_every_other_chunk_with_true_times():
    clock = Clock()
    guard = OverloadGuard(1.2, clock=clock)  # 3 chunks
    mel, notice = guard.select(mel_of(3), waiting=0, received_seconds=1.2)
    assert notice is None and mel.shape[1] == 3 * FRAMES  # 3 chunks waiting: not more than 1.2 s
    clock.now += 3.2  # live: 3.2 s of wall time for 3.2 s of audio, and 5 chunks waiting
    mel, notice = guard.select(mel_of(5), waiting=0, received_seconds=3.2)
    assert list(mel[0, ::FRAMES]) == [0.0, 2.0, 4.0]  # every other chunk, the newest kept
    assert notice.type == c.EVENT_ERROR and notice.data["code"] == OVERLOADED
    assert "2.0 s behind" in notice.data["message"] and "ending at 2.0, 2.8 s" in notice.data["message"]
    assert notice.t == pytest.approx(2.8)  # chunks 4 and 6 of the stream (0-based) skipped
    indices = [guard.true_index(_chunk(i)).index for i in range(6)]
    assert indices == [0, 1, 2, 3, 5, 7]  # decisions keep the chunks' true times
    assert (guard.skipped_chunks, guard.thinnings) == (2, 1)


def test_audio_ahead_of_the_wall_clock_is_never_thinned():
    clock = Clock()
    guard = OverloadGuard(1.2, clock=clock)
    mel, notice = guard.select(mel_of(50), waiting=0, received_seconds=20.0)  # a file, all at once
    assert notice is None and mel.shape[1] == 50 * FRAMES
    off = OverloadGuard(0, clock=clock)
    clock.now += 1000
    assert off.select(mel_of(50), waiting=10, received_seconds=20.0)[1] is None


def _chunk(index: int):
    from model_runtime.interaction.chunk_encoder import EncodedChunk

    return EncodedChunk(index, None, None)


def slow_engine(loaded, step_seconds: float, *, per_chunk: bool = True, **options) -> InteractionEngine:
    """The tiny model on 'hardware' whose LM step takes `step_seconds` (RTF > 1 at 0.6 s) per chunk in the
    step (no gain from stepping chunks together), or, with per_chunk=False, per step whatever it holds."""
    engine = make_engine(loaded, **options)
    step = engine.lm_step
    engine.step_tokens = []  # tokens of each LM step, read by the tests

    def slow_step(cache, embeds, *picks):
        engine.step_tokens.append(embeds.shape[0])
        time.sleep(step_seconds * (max(1, embeds.shape[0] // c.TOKENS_PER_CHUNK) if per_chunk else 1))
        return step(cache, embeds, *picks)

    engine.lm_step = slow_step
    return engine


async def test_the_server_says_so_and_the_room_keeps_up(loaded):
    engine = slow_engine(loaded, 0.6, overload_seconds=0.8)
    seconds = 6.0
    audio = (np.random.default_rng(0).standard_normal(int(seconds * c.SAMPLE_RATE)) * 0.01).astype(np.float32)
    pcm = to_pcm16(audio)
    async with running_server(engine) as server:
        client = await Client.connect(server)
        await client.send(listen("kitchen"), AudioStart(rate=16_000, width=2, channels=1).event())
        started = time.monotonic()
        piece = 3200  # 0.1 s of 16-bit samples, sent in real time
        for n, start in enumerate(range(0, len(pcm), piece)):
            await client.send(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm[start : start + piece]).event())
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))
        await client.send(AudioStop().event())
        events = await client.flushed(timeout=60)
        await client.close()
    errors = custom(events, "error")
    overloaded = [e for e in errors if e.data["code"] == OVERLOADED]
    assert overloaded, errors
    assert "deciding every other 0.4 s chunk" in overloaded[0].data["message"]
    times = [round(e.data["t"], 1) for e in custom(events, "decision")]
    assert times == sorted(set(times)) and all(round(t / 0.4, 6) % 1 == 0 for t in times)  # true chunk times
    skipped = 15 - len(times)
    assert skipped >= 2  # thinned...
    assert len(times) >= 7  # ...but the room went on listening over the whole stream
    assert times[-1] == pytest.approx(6.0)


async def test_a_backlog_goes_through_in_multi_chunk_steps_and_the_room_keeps_up(loaded):
    """Hardware where a step of several chunks costs what a step of one does (weights streamed once):
    one step per chunk would fall behind (0.6 s per 0.4 s chunk); the queued chunks share steps instead,
    every chunk gets its decision and nothing is thinned."""
    engine = slow_engine(loaded, 0.6, per_chunk=False, overload_seconds=0.8)
    audio = (np.random.default_rng(0).standard_normal(6 * c.SAMPLE_RATE) * 0.01).astype(np.float32)
    pcm = to_pcm16(audio)
    async with running_server(engine) as server:
        client = await Client.connect(server)
        await client.send(listen("kitchen"), AudioStart(rate=16_000, width=2, channels=1).event())
        started = time.monotonic()
        for n, start in enumerate(range(0, len(pcm), 3200)):
            await client.send(AudioChunk(rate=16_000, width=2, channels=1, audio=pcm[start : start + 3200]).event())
            await asyncio.sleep(max(0.0, started + (n + 1) * 0.1 - time.monotonic()))
        await client.send(AudioStop().event())
        events = await client.flushed(timeout=60)
        await client.close()
    assert not custom(events, "error")
    assert [round(e.data["t"], 1) for e in custom(events, "decision")] == [round(0.4 * (i + 1), 1) for i in range(15)]
    listening = [n for n in engine.step_tokens if n >= c.TOKENS_PER_CHUNK]
    assert len(listening) < 15 and max(listening) >= 2 * c.TOKENS_PER_CHUNK, engine.step_tokens


def test_faster_than_real_time_gets_every_decision(loaded):
    engine = slow_engine(loaded, 0.0, overload_seconds=0.8)
    audio = (np.random.default_rng(1).standard_normal(6 * c.SAMPLE_RATE) * 0.01).astype(np.float32)
    stream = engine.open_stream()
    events = stream.feed(audio) + stream.finish()  # all at once: 15 chunks waiting, but not live
    assert [round(e.t, 1) for e in events if e.type == c.EVENT_DECISION] == [round(0.4 * (i + 1), 1) for i in range(15)]
    assert not [e for e in events if e.type == c.EVENT_ERROR]
    assert list(run_stream(engine.open_stream(), audio[:6400]))[0].type == c.EVENT_DECISION
