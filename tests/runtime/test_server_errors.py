"""Every bad input gets a clear Wyoming `error` to that client; the connection and others go on."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.wake import Detect

from model_runtime import constants as c
from model_runtime import events as engine_events
from model_runtime.engine import EngineOptions
from model_runtime.events import shifted
from model_runtime.lite import LiteEngine, LiteStream
from model_runtime.server.framing import MAX_HEADER_BYTES, MAX_PAYLOAD_BYTES
from server_support import Client, burst, custom, listen, running_server, to_pcm16


def frame(header: dict, data: bytes = b"", payload: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + data + payload


CHUNK_16K = {"rate": 16000, "width": 2, "channels": 1}

BAD_FRAMES = {
    "not json": (b"hello there\n", c.WYOMING_ERROR_MALFORMED_FRAME, "not JSON"),
    "json array": (b"[1, 2]\n", c.WYOMING_ERROR_MALFORMED_FRAME, "JSON object"),
    "no type": (frame({"data": {}}), c.WYOMING_ERROR_MALFORMED_FRAME, "no event type"),
    "data not object": (frame({"type": "describe", "data": [1]}), c.WYOMING_ERROR_MALFORMED_FRAME, "'data'"),
    "data bytes not json": (frame({"type": "describe", "data_length": 3}, b"{{{"), c.WYOMING_ERROR_MALFORMED_FRAME, "not JSON"),
    "header too long": (b'{"type": "' + b"x" * (MAX_HEADER_BYTES + 10) + b'"}\n', c.WYOMING_ERROR_FRAME_TOO_LARGE, "header line"),
    "payload too large": (
        frame({"type": "audio-chunk", "data": CHUNK_16K, "payload_length": MAX_PAYLOAD_BYTES + 2}, payload=bytes(MAX_PAYLOAD_BYTES + 2)),
        c.WYOMING_ERROR_FRAME_TOO_LARGE, "smaller chunks",
    ),
    "unknown event": (frame({"type": "synthesize"}), c.WYOMING_ERROR_UNKNOWN_EVENT, "'synthesize'"),
    "chunk before start": (frame({"type": "audio-chunk", "data": CHUNK_16K, "payload_length": 4}, payload=bytes(4)),
                           c.WYOMING_ERROR_AUDIO_BEFORE_START, "send audio-start"),
    "stop before start": (frame({"type": "audio-stop"}), c.WYOMING_ERROR_AUDIO_BEFORE_START, "without audio-start"),
    "width 5": (frame({"type": "audio-start", "data": {**CHUNK_16K, "width": 5}}), c.WYOMING_ERROR_AUDIO_FORMAT, "width 5"),
    "rate 0": (frame({"type": "audio-start", "data": {**CHUNK_16K, "rate": 0}}), c.WYOMING_ERROR_AUDIO_FORMAT, "rate 0"),
    "channels 0": (frame({"type": "audio-start", "data": {**CHUNK_16K, "channels": 0}}), c.WYOMING_ERROR_AUDIO_FORMAT, "channels 0"),
    "rate text": (frame({"type": "audio-start", "data": {**CHUNK_16K, "rate": "fast"}}), c.WYOMING_ERROR_AUDIO_FORMAT, "integer"),
    "start without format": (frame({"type": "audio-start"}), c.WYOMING_ERROR_AUDIO_FORMAT, "'rate'"),
    "detect names not list": (frame({"type": "detect", "data": {"names": "okay_nabu"}}), c.WYOMING_ERROR_BAD_EVENT, "list of strings"),
    "detect unknown name": (frame({"type": "detect", "data": {"names": ["hey_siri"]}}), c.WYOMING_ERROR_UNKNOWN_WAKE_WORD, "hey_siri"),
    "listen room number": (frame({"type": c.WYOMING_LISTEN, "data": {"room": 3}}), c.WYOMING_ERROR_BAD_EVENT, "'room'"),
    "instruct no text": (frame({"type": c.WYOMING_INSTRUCT, "data": {}}), c.WYOMING_ERROR_BAD_EVENT, "'text'"),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_bad_frame_gets_a_clear_error_and_the_connection_goes_on(name):
    raw, code, words = BAD_FRAMES[name]
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send_raw(raw)
        error = await client.read()
        assert error.type == "error" and error.data["code"] == code, error
        assert words in error.data["text"]
        await client.send(Describe().event())
        assert (await client.read()).type == "info"
        await client.close()


async def test_bad_chunks_inside_a_stream_are_refused_and_the_stream_goes_on():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(listen(), AudioStart(rate=16000, width=2, channels=1).event())
        await client.send(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(3)).event())  # half a sample
        error = await client.read()
        assert error.data["code"] == c.WYOMING_ERROR_AUDIO_FORMAT and "whole number of frames" in error.data["text"]
        await client.send(AudioChunk(rate=16000, width=9, channels=1, audio=bytes(18)).event())
        assert (await client.read()).data["code"] == c.WYOMING_ERROR_AUDIO_FORMAT
        # The stream still hears what comes next (a chunk without its format has audio-start's).
        pcm = to_pcm16(burst(1.5, loud_at=1.0))
        await client.send(Event("audio-chunk", payload=pcm), AudioStop().event())
        sounds = custom(await client.flushed(), c.EVENT_SOUND)
        assert sounds and abs(sounds[0].data["start"] - 1.0) < 0.05
        await client.close()


@pytest.mark.parametrize("length", ["-1", '"12"', "1.5", "true"])
async def test_untrustworthy_lengths_close_only_that_connection(length):
    async with running_server() as server:
        other = await Client.connect(server)
        await other.send(listen(), AudioStart(rate=16000, width=2, channels=1).event())
        bad = await Client.connect(server)
        await bad.send_raw(b'{"type": "audio-chunk", "payload_length": ' + length.encode() + b"}\n")
        error = await bad.read()
        assert error.data["code"] == c.WYOMING_ERROR_MALFORMED_FRAME and "payload_length" in error.data["text"]
        assert await bad.read() is None  # closed
        await other.send(AudioChunk(rate=16000, width=2, channels=1, audio=to_pcm16(burst(1.5))).event(), AudioStop().event())
        assert custom(await other.flushed(), c.EVENT_SOUND)
        await other.close()


async def test_a_client_sending_only_garbage_is_cut_off_after_100_errors():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send_raw(b"garbage\n" * 150)
        codes = []
        while (event := await client.read()) is not None:
            codes.append(event.data["code"])
        assert codes == [c.WYOMING_ERROR_MALFORMED_FRAME] * 100 + [c.WYOMING_ERROR_TOO_MANY_ERRORS]
        await _until(lambda: not server.handlers)


async def test_streams_over_the_limit_are_refused_until_one_ends():
    async with running_server(max_streams=2) as server:
        a, b, third = [await Client.connect(server) for _ in range(3)]
        for client in (a, b, third):
            await client.send(AudioStart(rate=16000, width=2, channels=1).event())
        error = await third.read()
        assert error.data["code"] == c.WYOMING_ERROR_TOO_MANY_STREAMS and "--max-streams" in error.data["text"]
        await a.close()
        await _until(lambda: server.open_streams == 1)
        await third.send(Detect().event(), AudioStart(rate=16000, width=2, channels=1).event(), AudioStop().event())
        assert (await third.read()).type == "not-detected"
        await b.close()
        await third.close()


async def test_instructions_cannot_pile_up():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(*[Event(c.WYOMING_INSTRUCT, {"text": f"transcribe {i}"}) for i in range(17)])
        error = await client.read()
        assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT and "16 instructions already wait" in error.data["text"]
        await client.close()


# --- a slow engine and a broken engine (the conditions are made; the server is real) --------
class SlowEngine(LiteEngine):
    """The lite engine where the first stream runs on a CPU far too slow: each of its feeds takes 0.2 s."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.sessions_opened = 0

    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        self.sessions_opened += 1
        if self.sessions_opened == 1:
            feed = stream.feed

            def slow_feed(audio):
                time.sleep(0.2)
                return feed(audio)

            stream.feed = slow_feed
        return stream


async def test_a_slow_engine_skips_audio_visibly_and_boundedly_without_stalling_others():
    engine = SlowEngine(EngineOptions())
    async with running_server(engine, max_backlog_seconds=0.5) as server:
        slow = await Client.connect(server)
        await slow.send(listen(), AudioStart(rate=16000, width=2, channels=1).event())
        (handler,) = server.handlers
        await _until(lambda: handler._session is not None)  # noqa: SLF001 - the slow stream is this one
        assert engine.sessions_opened == 1
        session = handler._session  # noqa: SLF001
        healthy = await Client.connect(server)
        await healthy.send(listen(), AudioStart(rate=16000, width=2, channels=1).event())
        pcm, loud = to_pcm16(burst(4.0, loud_at=None)), to_pcm16(burst(4.0, loud_at=3.0))
        step = 3200  # 0.1 s chunks, sent 4x faster than real time
        sent_loud_at = None
        for start in range(0, len(pcm), step):
            await slow.send(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[start:start + step]).event())
            await healthy.send(AudioChunk(rate=16000, width=2, channels=1, audio=loud[start:start + step]).event())
            if start == 3 * 16000 * 2:
                sent_loud_at = time.monotonic()
            await asyncio.sleep(0.025)
        # The healthy stream hears its sound at once, while the slow one is still far behind.
        sound, _ = await healthy.read_until(c.WYOMING_EVENT_PREFIX + c.EVENT_SOUND, timeout=2.0)
        assert time.monotonic() - sent_loud_at < 2.0  # a stalled stream would wait for the slow one's backlog
        assert abs(sound.data["start"] - 3.0) < 0.05
        await slow.send(AudioStop().event())
        events = await slow.flushed()
        skips = [e for e in events if e.type == "error" and e.data["code"] == c.WYOMING_ERROR_AUDIO_SKIPPED]
        assert skips, [e.type for e in events]
        assert session.peak_backlog <= 0.5 * 16000
        assert all(0 < e.data["skipped_seconds"] <= 0.5 for e in skips)
        assert "fell behind" in skips[0].data["text"]
        total = skips[-1].data["total_skipped_seconds"]
        assert 0 < total < 4.0
        assert total == pytest.approx(sum(e.data["skipped_seconds"] for e in skips), abs=0.01)
        for client in (slow, healthy):
            await client.close()


async def test_a_recording_on_a_slow_engine_is_paced_not_skipped():
    """`live: false`: the server stops reading instead of dropping; every second reaches the engine."""
    engine = SlowEngine(EngineOptions())
    async with running_server(engine, max_backlog_seconds=0.5) as server:
        client = await Client.connect(server)
        await client.send(
            Event(c.WYOMING_LISTEN, {"room": None, "live": False}), AudioStart(rate=16000, width=2, channels=1).event()
        )
        (handler,) = server.handlers
        await _until(lambda: handler._session is not None)  # noqa: SLF001
        session = handler._session  # noqa: SLF001
        pcm = to_pcm16(burst(3.0, loud_at=2.5))
        for start in range(0, len(pcm), 3200):  # as fast as the socket takes it
            await client.send(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[start:start + 3200]).event())
        await client.send(AudioStop().event())
        events = await client.flushed()
        assert not [e for e in events if e.type == "error"], [e.data for e in events if e.type == "error"]
        assert session.samples_skipped == 0 and session.samples_in == 3 * 16000
        assert session.peak_backlog <= 0.5 * 16000 + 1600  # the cap (plus the piece that reached it)
        sounds = custom(events, c.EVENT_SOUND)
        assert sounds and abs(sounds[0].data["start"] - 2.5) < 0.05  # heard at its true stream time
        await client.close()


async def test_live_must_be_a_boolean():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Event(c.WYOMING_LISTEN, {"live": "no"}))
        error, _ = await client.read_until("error", timeout=5.0)
        assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT and "'live'" in error.data["text"]
        await client.close()


class BrokenEngine(LiteEngine):
    """An engine with a bug: any feed of loud audio raises."""

    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        feed = stream.feed

        def broken_feed(audio):
            if np.abs(audio).max(initial=0) > 0.5:
                raise RuntimeError("index out of range")
            return feed(audio)

        stream.feed = broken_feed
        return stream


async def test_an_engine_failure_stops_that_stream_only():
    async with running_server(BrokenEngine(EngineOptions())) as server:
        broken, healthy = await Client.connect(server), await Client.connect(server)
        await broken.send(Detect().event())
        await broken.stream(to_pcm16(burst(1.5, loud_at=0.5)))
        error, _ = await broken.read_until("error")
        assert error.data["code"] == c.WYOMING_ERROR_ENGINE_FAILED and "RuntimeError" in error.data["text"]
        await broken.read_until("not-detected")
        await healthy.send(Detect().event())
        await healthy.stream(to_pcm16(burst(1.0, loud_at=None)))
        _, before = await healthy.read_until("not-detected")
        assert not before
        for client in (broken, healthy):
            await client.close()
        await _until(lambda: server.open_streams == 0)


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def test_a_client_that_resets_mid_stream_frees_its_stream_and_others_go_on():
    """A client killed mid-stream (its socket reset) while the server has events to send it:
    the stream is closed and counted down; the server keeps serving the others."""
    async with running_server(max_streams=1) as server:
        client = await Client.connect(server)
        await client.send(listen("Kitchen"))
        await client.stream(to_pcm16(burst(seconds=3.0)), stop=False)
        await _until(lambda: server.open_streams == 1)
        sock = client.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.writer.transport.abort()  # RST: what a killed process's socket sends
        await _until(lambda: server.open_streams == 0)

        other = await Client.connect(server)  # the one stream allowed is free again
        await other.send(listen("Hall"))
        await other.stream(to_pcm16(burst(seconds=2.0)))
        events = await other.flushed()
        assert not [e for e in events if e.type == "error"]
        await other.close()


def test_a_shifted_event_moves_its_time_and_a_sounds_span_only():
    sound = engine_events.sound(2.5, "loud_noise", 0.9, start=2.0, end=None)
    later = shifted(sound, 1.5)
    assert (later.type, later.t, later.data) == (c.EVENT_SOUND, 4.0, {**sound.data, "start": 3.5, "end": None})
    ended = shifted(engine_events.sound(3.0, "beeping", 1.0, start=1.0, end=2.75), 0.25)
    assert (ended.t, ended.data["start"], ended.data["end"]) == (3.25, 1.25, 3.0)
    decision = engine_events.decision(0.4, True, "okay_nabu")
    assert shifted(decision, 2.0).data == decision.data and shifted(decision, 2.0).t == pytest.approx(2.4)
    assert shifted(decision, 0.0) is decision
