"""The Wyoming server's flows against a real server on localhost with the lite engine."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from wyoming.audio import AudioStop
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.wake import Detect

from model_runtime import __version__
from model_runtime import constants as c
from model_runtime.audio import pcm16_to_float
from model_runtime.engine import EngineOptions, create_engine, run_stream
from model_runtime.lite import LiteEngine, LiteStream
from server_support import Client, burst, custom, listen, running_server, to_pcm16


async def test_describe_advertises_one_wake_program_and_no_satellite():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Describe().event())
        info = Info.from_event(await client.read())
        assert info.satellite is None and not info.tts
        assert [m.name for m in info.asr[0].models] == ["pocketsphinx-en-us"]  # test_server_asr.py
        (program,) = info.wake
        assert program.installed and program.version == __version__ and program.attribution.url
        names = [m.name for m in program.models]
        assert names[-1] == c.MODEL_DECISION_NAME
        assert names[:-1] == [n for n in server.engine.wake_words() if n != c.MODEL_DECISION_NAME]
        await client.send(Ping(text="hi").event())
        assert (await client.read()).data == {"text": "hi"}
        await client.close()


async def test_listen_sends_every_engine_event_with_its_fields():
    pcm = to_pcm16(burst(3.0, loud_at=1.2))
    # What the engine hears offline from the same 16 kHz mono samples.
    offline = list(run_stream(create_engine(EngineOptions()).open_stream(), pcm16_to_float(pcm)))
    assert offline, "the burst must produce events"
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(listen("kitchen"))
        await client.stream(pcm, chunk_seconds=0.01)  # HA-sized 10 ms chunks
        got = await client.flushed()
        assert [e.type for e in got] == [c.WYOMING_EVENT_PREFIX + e.type for e in offline]
        assert [e.data for e in got] == [{k: v for k, v in e.to_dict().items() if k != "type"} for e in offline]
        # listen only: no wake flow events
        assert not [e for e in got if e.type in ("detection", "not-detected")]
        await client.close()


async def test_wake_flow_sends_not_detected_on_audio_stop():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Detect(names=[c.MODEL_DECISION_NAME]).event())
        await client.stream(to_pcm16(burst(1.0, loud_at=0.5)))
        event, before = await client.read_until("not-detected")
        assert not [e for e in before if e.type.startswith(c.WYOMING_EVENT_PREFIX)]
        # The same connection can run a second pipeline.
        await client.stream(to_pcm16(burst(0.5, loud_at=None)))
        await client.read_until("not-detected")
        await client.close()


async def test_client_closing_mid_stream_frees_its_stream():
    async with running_server() as server:
        clients = [await Client.connect(server) for _ in range(3)]
        for client in clients:
            await client.send(Detect().event())
            await client.stream(to_pcm16(burst(1.0, loud_at=0.5)), stop=False)  # HA: no audio-stop, just close
        await _until(lambda: server.open_streams == 3)
        for client in clients:
            await client.close()
        await _until(lambda: server.open_streams == 0 and not server.handlers)


async def test_concurrent_clients_each_get_only_their_own_events():
    engine = RecordingEngine(EngineOptions())
    async with running_server(engine) as server:
        clients = [await Client.connect(server) for _ in range(8)]
        for i, client in enumerate(clients):
            await client.send(listen(f"room{i}"))
        # Only client 3 hears a loud sound; all stream at once.
        await asyncio.gather(*(
            client.stream(to_pcm16(burst(2.0, loud_at=1.0 if i == 3 else None)))
            for i, client in enumerate(clients)
        ))
        results = await asyncio.gather(*(client.flushed() for client in clients))
        for i, events in enumerate(results):
            sounds = custom(events, c.EVENT_SOUND)
            if i == 3:
                assert [s.data["end"] is None for s in sounds] == [True, False]
                assert abs(sounds[0].data["start"] - 1.0) < 0.05
            else:
                assert sounds == []
        # The lite engine's calls hold the GIL: its streams share one thread rather than contend.
        assert len(engine.fed) >= 8 and len(set(engine.feed_threads_seen)) == 1, len(set(engine.feed_threads_seen))
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    "rate,width,channels",
    [(8_000, 2, 1), (22_050, 2, 1), (44_100, 2, 2), (48_000, 4, 2), (16_000, 1, 1), (32_000, 3, 6)],
)
async def test_any_format_is_converted_and_heard_at_the_right_time(rate, width, channels):
    mono = burst(2.0, loud_at=1.0, rate=rate)
    frames = np.repeat(mono[:, None], channels, axis=1)
    pcm = _encode(frames, width)
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(listen())
        await client.stream(pcm, rate=rate, width=width, channels=channels)
        sounds = custom(await client.flushed(), c.EVENT_SOUND)
        assert sounds, f"no sound heard at {rate} Hz, {width} bytes, {channels} channels"
        assert abs(sounds[0].data["start"] - 1.0) < 0.05
        assert abs(sounds[-1].data["end"] - 1.1) < 0.1
        await client.close()


async def test_instruct_reaches_the_stream_and_bad_instructions_are_refused():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(listen(), Event(c.WYOMING_INSTRUCT, {"text": "transcribe"}))
        await client.stream(to_pcm16(burst(0.5, loud_at=None)))
        await client.send(Event(c.WYOMING_INSTRUCT, {"text": ""}))
        error, before = await client.read_until("error")
        assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT and "text" in error.data["text"]
        assert not [e for e in before if e.type == "error"]
        await client.close()


class RecordingEngine(LiteEngine):
    """The lite engine, noting the size of every piece of audio its streams are fed, and the thread."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.fed: list[int] = []
        self.feed_threads_seen: list[int] = []

    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        feed = stream.feed

        def recording_feed(audio):
            self.fed.append(len(audio))
            self.feed_threads_seen.append(threading.get_ident())
            return feed(audio)

        stream.feed = recording_feed
        return stream


async def test_small_chunks_reach_the_engine_in_pieces_of_at_least_100_ms():
    engine = RecordingEngine(EngineOptions())
    async with running_server(engine) as server:
        client = await Client.connect(server)
        await client.send(listen())
        pcm = to_pcm16(burst(1.55, loud_at=1.0))
        await client.stream(pcm, chunk_seconds=0.01)
        sounds = custom(await client.flushed(), c.EVENT_SOUND)
        assert sounds and abs(sounds[0].data["start"] - 1.0) < 0.05
        assert sum(engine.fed) == len(pcm) // 2, "every sample reaches the engine once"
        assert all(n >= 1600 for n in engine.fed[:-1]) and len(engine.fed) <= 16
        await client.close()


def _encode(frames: np.ndarray, width: int) -> bytes:
    """float frames (n, channels) -> interleaved PCM of `width` bytes (8-bit unsigned, like WAV)."""
    scaled = np.clip(frames, -1, 1)
    if width == 1:
        return (scaled * 127 + 128).astype(np.uint8).tobytes()
    if width == 3:
        ints = (scaled * (2**23 - 1)).astype("<i4").reshape(-1)
        return b"".join(int(v).to_bytes(3, "little", signed=True) for v in ints)
    dtype = {2: "<i2", 4: "<i4"}[width]
    return (scaled * (2 ** (8 * width - 1) - 1)).astype(dtype).tobytes()


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)
