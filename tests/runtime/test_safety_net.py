"""The safety net: beside the audio-interaction engine, the lite engine's alarm, loudness, speech
and music detectors hear the same audio, in `analyze` and in the server, where they run in a
session of their own: an alarm is reported while the model stays silent, falls behind or fails."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.ping import Ping
from wyoming.wake import Detect

from conftest import SAMPLES
from model_runtime import constants as c
from model_runtime.audio import load_audio
from model_runtime.engine import Engine, EngineOptions, create_safety_net, run_stream, run_streams
from model_runtime.interaction.tiny import trigger_audio
from model_runtime.lite import testset as ts
from model_runtime.lite.safety_net import SafetyNet, SafetyNetProcess
from model_runtime.server import WyomingServer
from server_support import Client, custom, listen, running_server, to_pcm16

ALARM_FILE = SAMPLES / "kitchen_smoke_alarm.flac"  # 14 s; a 3.1 kHz smoke alarm from 2.0 s to 12.5 s


def alarm_pcm() -> bytes:
    return to_pcm16(load_audio(ALARM_FILE))


def assert_the_alarm_is_reported(events: list) -> None:
    """One smoke_alarm start near 2.0 s, its urgent spoken response, and its end."""
    sounds = [e.data for e in events if e.data.get("label") == "smoke_alarm"]
    assert [s["end"] is None for s in sounds] == [True, False], sounds
    assert abs(sounds[0]["start"] - 2.0) < 0.1
    responses = [e.data for e in events if e.data.get("urgent")]
    assert [r["text"] for r in responses] == ["Smoke alarm sounding"]


class ModelEngineWith(Engine):
    """The tiny model's engine, each stream's `feed` replaced by `change(feed)`: a model that fails
    or is slow on this machine (the condition is made; the model, the net and the server are real)."""

    def __init__(self, engine: Engine, change) -> None:
        self.engine, self.change, self.name = engine, change, engine.name

    def open_stream(self):
        stream = self.engine.open_stream()
        stream.feed = self.change(stream.feed)
        return stream

    def wake_words(self) -> list[str]:
        return self.engine.wake_words()


# --- which engines get a net ---------------------------------------------------
def test_the_net_runs_beside_the_model_engine_only():
    assert create_safety_net(EngineOptions()) is None  # the lite engine runs these detectors itself
    model = EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION)
    assert isinstance(create_safety_net(model), SafetyNet)  # (`serve` asks for it in a process of its own)
    assert create_safety_net(EngineOptions(engine=c.ENGINE_AUDIO_INTERACTION, safety_net=False)) is None


# --- analyze ---------------------------------------------------------------------
def test_analyze_with_the_model_reports_the_alarm_beside_its_decisions(cli, tiny_checkpoint):
    model = ("--engine", "audio-interaction", "--model", str(tiny_checkpoint), "--device", "cpu")
    runs = {}
    for flags in ((), ("--no-safety-net",)):
        proc = cli("analyze", str(ALARM_FILE), "--format", "jsonl", *model, *flags)
        assert proc.returncode == 0, proc.stderr
        runs[flags] = [json.loads(line) for line in proc.stdout.splitlines()]
    with_net, without = runs[()], runs[("--no-safety-net",)]
    assert [e["t"] for e in with_net] == sorted(e["t"] for e in with_net)
    net_events = [e for e in with_net if e["type"] == c.EVENT_SOUND or e.get("text") == "Smoke alarm sounding"]
    assert [(e["type"], e.get("label")) for e in net_events] == [
        ("sound", "smoke_alarm"), ("response", None), ("sound", "smoke_alarm")]
    # The model's own events are the same with the net or without it: 35 decisions for 14 s.
    assert [e for e in with_net if e not in net_events] == without
    assert sum(e["type"] == c.EVENT_DECISION for e in without) == 35
    assert abs(net_events[0]["start"] - 2.0) < 0.1 and net_events[1]["text"] == "Smoke alarm sounding"


def test_the_lite_engine_reports_each_alarm_once(cli):
    proc = cli("analyze", str(ALARM_FILE), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    starts = [json.loads(line) for line in proc.stdout.splitlines()]
    starts = [e for e in starts if e.get("label") == "smoke_alarm" and e["end"] is None]
    assert len(starts) == 1


def test_beside_the_model_a_room_gets_speech_activity_as_the_lite_engine_does(model_engine, tmp_path):
    """The model reports no `speech`; the net's VAD does, one start and stop per sentence."""
    net = SafetyNet()
    for clip in ts.build(ts.speech_specs()[:2], tmp_path):
        streams = [model_engine.open_stream(), net.open_stream()]
        try:
            found = list(run_streams(streams, load_audio(clip.path)))
        finally:
            for stream in streams:
                stream.close()
        speech = [e for e in found if e.type == c.EVENT_SPEECH]
        assert [e.data["state"] for e in speech] == ["start", "stop"] * len(clip.truth["segments"]), clip.spec.name
        for (on, off), start, stop in zip(clip.truth["segments"], speech[::2], speech[1::2]):
            assert abs(start.t - on) <= 0.8 and abs(stop.t - off) <= 0.8, (clip.spec.name, on, off, start.t, stop.t)
        assert [e.type for e in found if e.type == c.EVENT_DECISION]  # the model decided beside it


# --- the server -----------------------------------------------------------------
async def test_a_listening_room_hears_the_model_and_the_net(model_engine):
    async with running_server(model_engine, safety_net=SafetyNet()) as server:
        room, wake_only = await Client.connect(server), await Client.connect(server)
        await room.send(listen("kitchen"))
        await wake_only.send(Detect().event())
        for client in (room, wake_only):
            await client.stream(alarm_pcm(), stop=False)
        await _until(lambda: all(h._session is not None for h in server.handlers))  # noqa: SLF001
        room_handler, wake_handler = sorted(server.handlers, key=lambda h: h.room is None)
        assert room_handler._net_session is not None  # noqa: SLF001
        assert wake_handler._net_session is None  # noqa: SLF001 - a wake-word client gets detections alone
        for client in (room, wake_only):
            await client.send(AudioStop().event())
        events = await room.flushed()
        assert len(custom(events, c.EVENT_DECISION)) == 35
        assert_the_alarm_is_reported(custom(events, c.EVENT_SOUND) + custom(events, c.EVENT_RESPONSE))
        assert not [e for e in events if e.type == "error"]
        wake_events = await wake_only.flushed()
        assert not [e for e in wake_events if e.type.startswith(c.WYOMING_EVENT_PREFIX)]
        for client in (room, wake_only):
            await client.close()
        await _until(lambda: server.open_streams == 0)


async def test_the_net_goes_on_when_the_model_fails_on_the_stream(model_engine):
    def broken(feed):
        def broken_feed(audio):
            raise RuntimeError("index out of range")

        return broken_feed

    async with running_server(ModelEngineWith(model_engine, broken), safety_net=SafetyNet()) as server:
        client = await Client.connect(server)
        await client.send(listen("kitchen"))
        await client.stream(alarm_pcm())
        events = await client.flushed()
        errors = [e.data for e in events if e.type == "error"]
        assert len(errors) == 1 and errors[0]["code"] == c.WYOMING_ERROR_ENGINE_FAILED
        assert errors[0]["text"].startswith("the engine failed on this stream (RuntimeError")
        assert not custom(events, c.EVENT_DECISION)
        assert_the_alarm_is_reported(custom(events, c.EVENT_SOUND) + custom(events, c.EVENT_RESPONSE))
        await client.close()


async def test_the_net_hears_every_second_while_the_model_skips_its_backlog(model_engine):
    """A model slower than the audio: its backlog is skipped (said so); the net, in its own
    session, hears the alarm at its true time, before the model has caught up; both lanes'
    events carry the stream's time."""

    def slow(feed):
        def slow_feed(audio):
            time.sleep(0.3)
            return feed(audio)

        return slow_feed

    engine = ModelEngineWith(model_engine, slow)
    async with running_server(engine, safety_net=SafetyNet(), max_backlog_seconds=0.5) as server:
        client = await Client.connect(server)
        await client.send(listen("kitchen"), AudioStart(rate=16000, width=2, channels=1).event())
        pcm, step = alarm_pcm(), 3200  # 0.1 s chunks, sent 4x faster than real time
        for start in range(0, len(pcm), step):
            await client.send(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[start:start + step]).event())
            await asyncio.sleep(0.025)
        # Before the stream ends, the alarm is out (the model lane is still catching up).
        sound, _ = await client.read_until(c.WYOMING_EVENT_PREFIX + c.EVENT_SOUND, timeout=5.0)
        assert sound.data["label"] == "smoke_alarm" and abs(sound.data["start"] - 2.0) < 0.1
        await client.send(AudioStop().event())
        events = [sound] + await client.flushed()
        skips = [e.data["text"] for e in events
                 if e.type == "error" and e.data["code"] == c.WYOMING_ERROR_AUDIO_SKIPPED]
        assert skips and all(text.startswith("the engine fell behind") for text in skips), skips
        # The model heard less than the stream (its backlog was skipped), yet its events keep the
        # stream's time: the last decision is at the stream's end, not seconds before it.
        times = [e.data["t"] for e in custom(events, c.EVENT_DECISION)]
        assert times == sorted(times) and len(times) < 35
        assert 14.0 <= times[-1] <= 14.4
        assert_the_alarm_is_reported(custom(events, c.EVENT_SOUND) + custom(events, c.EVENT_RESPONSE))
        await client.close()


async def _until(condition, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- while the model loads ----------------------------------------------------------
@contextlib.asynccontextmanager
async def server_loading_the_model(**kwargs):
    """A real server whose audio-interaction engine is still loading: `attach_engine` brings it."""
    server = WyomingServer(None, engine_name=c.ENGINE_AUDIO_INTERACTION, safety_net=SafetyNet(), **kwargs)
    await server.start("tcp://127.0.0.1:0")
    try:
        yield server
    finally:
        await server.stop()


async def send_audio(client: Client, pcm: bytes) -> None:
    for start in range(0, len(pcm), 3200):
        await client.send(AudioChunk(rate=16000, width=2, channels=1, audio=pcm[start:start + 3200]).event())


async def test_while_the_model_loads_the_net_hears_the_room_which_then_joins_the_model(model_engine):
    async with server_loading_the_model() as server:
        # What a client sees at setup is what it will get: the model's wake model and speech-to-text.
        assert server.wake_models == [c.MODEL_DECISION_NAME]
        assert [m.name for m in server.info.asr[0].models] == ["audio-interaction", "pocketsphinx-en-us"]
        client = await Client.connect(server)
        await client.send(listen("kitchen"), AudioStart(rate=16000, width=2, channels=1).event())
        notice = await client.read()
        assert notice.type == "error" and notice.data["code"] == c.WYOMING_ERROR_MODEL_LOADING
        assert "still loading" in notice.data["text"] and "safety net" in notice.data["text"]
        pcm = alarm_pcm()
        await send_audio(client, pcm[: 6 * 32000])  # 6 s: the alarm starts at 2.0 s
        sound, before = await client.read_until(c.WYOMING_EVENT_PREFIX + c.EVENT_SOUND, timeout=10)
        assert sound.data["label"] == "smoke_alarm" and abs(sound.data["start"] - 2.0) < 0.1
        assert not custom(before, c.EVENT_DECISION)
        server.attach_engine(model_engine)
        await send_audio(client, pcm[6 * 32000:])  # 8 s more, now heard by the model too
        await client.send(AudioStop().event())
        events = [sound] + before + await client.flushed()
        times = [e.data["t"] for e in custom(events, c.EVENT_DECISION)]
        assert times == pytest.approx([6.0 + 0.4 * k for k in range(1, 21)])  # the stream's time, from 6 s on
        assert_the_alarm_is_reported(custom(events, c.EVENT_SOUND) + custom(events, c.EVENT_RESPONSE))
        assert [e.data["code"] for e in events if e.type == "error"] == []
        await client.close()
        await _until(lambda: server.open_streams == 0)


async def test_a_wake_word_client_during_the_load_gets_detections_at_its_streams_time(model_engine):
    async with server_loading_the_model() as server:
        client = await Client.connect(server)
        await client.send(Detect(names=[c.MODEL_DECISION_NAME]).event(),
                          AudioStart(rate=16000, width=2, channels=1).event())
        quiet = np.random.default_rng(0).normal(0, 0.001, c.SAMPLE_RATE).astype(np.float32)
        await send_audio(client, to_pcm16(quiet))  # 1 s before the model is there: nobody hears it
        await client.send(Ping(text="loading").event())
        pong, before = await client.read_until("pong")
        assert before == []  # a wake-word client is not told about the net: it has none
        server.attach_engine(model_engine)
        await send_audio(client, to_pcm16(np.concatenate([quiet, trigger_audio(0.8), quiet])))
        detection, _ = await client.read_until("detection", timeout=30)
        assert 1000 + 1200 <= detection.data["timestamp"] <= 1000 + 2400  # ms of the stream, the load's second included
        await client.send(AudioStop().event())
        await client.flushed()
        await client.close()


def test_a_server_that_loads_its_engine_needs_a_net_and_the_engines_name():
    with pytest.raises(ValueError, match="still loading"):
        WyomingServer(None, engine_name=c.ENGINE_AUDIO_INTERACTION)


# --- the net in a process of its own (as `serve` runs it) ---------------------------
@pytest.fixture(scope="module")
def net_process():
    net = SafetyNetProcess()
    yield net
    net.close()


def test_the_nets_process_hears_what_the_net_hears(net_process):
    audio = load_audio(ALARM_FILE)
    here, there = SafetyNet().open_stream(), net_process.open_stream()
    try:
        assert [e.to_dict() for e in run_stream(there, audio)] == [e.to_dict() for e in run_stream(here, audio)]
    finally:
        there.close()


async def test_a_room_keeps_its_net_when_the_nets_process_dies(model_engine, net_process):
    """The child killed mid-stream (the OOM killer, a native crash): the next request starts it
    again, the stream is opened in it anew and told so; the alarm after that is heard."""
    async with running_server(model_engine, safety_net=net_process) as server:
        client = await Client.connect(server)
        recording = Event(c.WYOMING_LISTEN, {"room": "kitchen", "live": False})  # (paced, never skipped)
        await client.send(recording, AudioStart(rate=16000, width=2, channels=1).event())
        pcm = alarm_pcm()
        await send_audio(client, pcm[: 32000])  # 1 s, before the alarm starts at 2.0 s
        await client.send(Ping(text="before").event())
        await client.read_until("pong")
        (handler,) = server.handlers
        heard = handler._net_session._stream  # noqa: SLF001 - the stream's proxy in the net's process
        await _until(lambda: heard._samples == c.SAMPLE_RATE)  # noqa: SLF001 - the net heard that second
        generation = net_process.generation
        net_process._process.kill()  # noqa: SLF001
        await send_audio(client, pcm[32000:])
        await client.send(AudioStop().event())
        events = await client.flushed()
        assert net_process.generation == generation + 1
        errors = [e for e in custom(events, c.EVENT_ERROR)]
        assert [e.data["code"] for e in errors] == ["safety_net_restarted"]
        assert "exit code -9" in errors[0].data["message"] and 1.0 <= errors[0].data["t"] <= 1.2
        assert_the_alarm_is_reported(custom(events, c.EVENT_SOUND) + custom(events, c.EVENT_RESPONSE))
        assert len(custom(events, c.EVENT_DECISION)) == 35  # the model heard all of it
        assert not [e for e in events if e.type == "error"]  # no stream failed
        await client.close()


def test_a_hung_net_process_is_replaced_and_its_stream_goes_on():
    net = SafetyNetProcess()
    net.request_timeout_s = 1.0
    try:
        stream = net.open_stream()
        assert stream.feed(np.zeros(c.SAMPLE_RATE, dtype=np.float32)) == []
        os.kill(net._process.pid, signal.SIGSTOP)  # noqa: SLF001 - stopped: alive, never answering
        started = time.monotonic()
        found = stream.feed(np.zeros(c.SAMPLE_RATE, dtype=np.float32))
        assert time.monotonic() - started < 1.0 + net.start_timeout_s  # the timeout, then a new child's start
        assert [(e.type, e.t, e.data["code"]) for e in found] == [(c.EVENT_ERROR, 1.0, "safety_net_restarted")]
        assert "did not answer in 1 s" in found[0].data["message"]
        assert stream.feed(np.zeros(c.SAMPLE_RATE, dtype=np.float32)) == []  # and it goes on, quietly
        assert net.generation == 2
        # A stream closed after its child died frees nothing there and starts no new child.
        net._process.kill()  # noqa: SLF001
        net._process.join()  # noqa: SLF001
        stream.close()
        assert net.generation == 2 and not net._process.is_alive()  # noqa: SLF001
    finally:
        net.close()
