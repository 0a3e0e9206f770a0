"""Helpers of the server tests: a real server on localhost, a raw Wyoming client, test audio."""

from __future__ import annotations

import asyncio
import contextlib
import io
import subprocess
import wave
from typing import AsyncIterator

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.ping import Ping

from model_runtime import constants as c
from model_runtime.engine import Engine, EngineOptions, create_engine
from model_runtime.server import WyomingServer


@contextlib.asynccontextmanager
async def running_server(engine: Engine | None = None, **kwargs) -> AsyncIterator[WyomingServer]:
    """A real server on a free localhost port, in this event loop (so tests can look inside it).
    An engine passed in stays open (a fixture may share it); a lite engine made here is closed."""
    own_engine = engine is None
    engine = engine or create_engine(EngineOptions())
    server = WyomingServer(engine, **kwargs)
    await server.start("tcp://127.0.0.1:0")
    try:
        yield server
    finally:
        await server.stop()
        if own_engine:
            engine.close()


class Client:
    """A Wyoming client that can also send raw bytes (bad frames)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, server: WyomingServer) -> "Client":
        host, port = server.address
        return cls(*await asyncio.open_connection(host, port))

    async def send(self, *events: Event) -> None:
        for event in events:
            await async_write_event(event, self.writer)

    async def send_raw(self, raw: bytes) -> None:
        self.writer.write(raw)
        await self.writer.drain()

    async def read(self, timeout: float = 5.0) -> Event | None:
        return await asyncio.wait_for(async_read_event(self.reader), timeout)

    async def read_until(self, event_type: str, timeout: float = 5.0) -> tuple[Event, list[Event]]:
        """The first event of `event_type`, and all events read before it."""
        before: list[Event] = []
        while True:
            event = await self.read(timeout)
            assert event is not None, f"connection closed while waiting for {event_type!r}; got {before}"
            if event.type == event_type:
                return event, before
            before.append(event)

    async def flushed(self, timeout: float = 60.0) -> list[Event]:
        """Every event the server sends up to now: after `audio-stop` the server sends all of the
        stream's events before it reads the next frame, so the `pong` to a `ping` marks the end."""
        await self.send(Ping(text="flush").event())
        pong, events = await self.read_until("pong", timeout)
        assert pong.data.get("text") == "flush"
        return events

    async def stream(self, pcm: bytes, rate: int = 16_000, width: int = 2, channels: int = 1,
                     chunk_seconds: float = 0.1, stop: bool = True, start: bool = True) -> None:
        """audio-start, the audio in chunks, audio-stop (`start`/`stop` False: on a stream under way)."""
        if start:
            await self.send(AudioStart(rate=rate, width=width, channels=channels).event())
        step = int(rate * chunk_seconds) * width * channels
        for start in range(0, len(pcm), step):
            await self.send(AudioChunk(rate=rate, width=width, channels=channels, audio=pcm[start:start + step]).event())
        if stop:
            await self.send(AudioStop().event())

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()

# PocketSphinx gets this espeak-ng voice and phrase word for word (README: accuracy on generated speech).
COMMAND = "turn on the living room light"


def espeak(text: str, voice: str = "en-us+m3", speed: int = 160) -> tuple[bytes, int]:
    """espeak-ng's speech as 16 kHz 16-bit mono PCM (sox resamples it, as a satellite's mic would deliver)."""
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True,
                         capture_output=True).stdout
    wav = subprocess.run(["sox", "-t", "wav", "-", "-r", "16000", "-t", "wav", "-"], input=wav, check=True,
                         capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.readframes(reader.getnframes()), reader.getframerate()


def listen(room: str | None = None) -> Event:
    return Event(c.WYOMING_LISTEN, {"room": room})


def burst(seconds: float = 2.0, loud_at: float | None = 1.0, loud_seconds: float = 0.1, rate: int = 16_000,
          seed: int = 0) -> np.ndarray:
    """Quiet noise with one loud burst at `loud_at` s (None: none): float32 mono in [-1, 1]."""
    rng = np.random.default_rng(seed)
    audio = rng.normal(0.0, 0.002, int(seconds * rate)).astype(np.float32)
    if loud_at is None:
        return audio
    start = int(loud_at * rate)
    audio[start:start + int(loud_seconds * rate)] = rng.uniform(-0.7, 0.7, int(loud_seconds * rate))
    return audio


def to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def custom(events: list[Event], event_type: str) -> list[Event]:
    return [e for e in events if e.type == c.WYOMING_EVENT_PREFIX + event_type]
