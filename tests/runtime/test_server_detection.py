"""Detections: the real model's engine (on the rigged tiny checkpoint) decides to respond, or the
lite engine hears a wake word; the server turns that into Wyoming `detection` for wake-word
clients that asked for that name, and into our events for listeners."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from wyoming.audio import AudioStop
from wyoming.wake import Detect

from model_runtime import constants as c
from model_runtime.audio import load_audio
from model_runtime.interaction.tiny import trigger_audio
from server_support import Client, custom, listen, running_server, to_pcm16


def tone_in_silence() -> bytes:
    """1.2 s of near-silence, 0.8 s of the trigger tone (two whole chunks), 1.2 s of near-silence."""
    quiet = np.random.default_rng(0).normal(0, 0.001, int(1.2 * c.SAMPLE_RATE)).astype(np.float32)
    return to_pcm16(np.concatenate([quiet, trigger_audio(0.8), quiet]))


async def test_the_models_decision_is_a_wake_word_detection(model_engine):
    async with running_server(model_engine) as server:
        info_models = server.wake_models
        assert info_models[-1] == c.MODEL_DECISION_NAME
        client = await Client.connect(server)
        await client.send(Detect(names=[c.MODEL_DECISION_NAME]).event())
        await client.stream(tone_in_silence(), stop=False)
        detection, before = await client.read_until("detection", timeout=60)
        assert detection.data["name"] == c.MODEL_DECISION_NAME
        assert 1200 <= detection.data["timestamp"] <= 2400  # ms: the end of a trigger chunk
        assert not [e for e in before if e.type.startswith(c.WYOMING_EVENT_PREFIX)]
        await client.send(AudioStop().event())
        events = await client.flushed()
        assert "not-detected" not in [e.type for e in events]  # there was a detection
        await client.close()


async def test_listeners_get_the_decision_and_the_streamed_response(model_engine):
    async with running_server(model_engine) as server:
        both, listener = await Client.connect(server), await Client.connect(server)
        await both.send(Detect().event(), listen("kitchen"))
        await listener.send(listen("hall"))
        for client in (both, listener):
            await client.stream(tone_in_silence())
        for client in (both, listener):
            events = await client.flushed()
            decisions = [e.data for e in custom(events, c.EVENT_DECISION)]
            assert {"t", "respond"} <= set(decisions[0])
            assert [d for d in decisions if d["respond"]] and [d for d in decisions if not d["respond"]]
            pieces: list[str] = []
            finals = 0
            for response in custom(events, c.EVENT_RESPONSE):  # pieces, then the whole text, per reply
                if not response.data["final"]:
                    pieces.append(response.data["text"])
                    continue
                assert response.data["text"] == "".join(pieces) and response.data["urgent"]
                pieces, finals = [], finals + 1
            assert finals == sum(d["respond"] for d in decisions) and not pieces
            detections = [e for e in events if e.type == "detection"]
            assert len(detections) == (finals if client is both else 0)
            if client is listener:
                assert "not-detected" not in [e.type for e in events]
        for client in (both, listener):
            await client.close()


async def test_a_detection_only_for_names_the_client_asked_for(model_engine):
    async with running_server(model_engine) as server:
        client = await Client.connect(server)
        await client.send(Detect(names=["okay_nabu"]).event())
        error = await client.read()
        assert error.data["code"] == c.WYOMING_ERROR_UNKNOWN_WAKE_WORD  # this engine has no wake words
        await client.stream(tone_in_silence())
        _, before = await client.read_until("not-detected", timeout=60)  # the model responded: not asked for
        assert [e.type for e in before] == []
        await client.close()


# --- the lite engine's wake words ----------------------------------------------------------
@pytest.fixture(scope="module")
def okay_nabu(tmp_path_factory) -> bytes:
    """'Okay Nabu' (espeak-ng) between silences, 16 kHz 16-bit mono."""
    wav = tmp_path_factory.mktemp("wake") / "okay_nabu.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wav), "okay nabu"], check=True)
    silence = np.zeros(c.SAMPLE_RATE // 2, dtype=np.float32)
    return to_pcm16(np.concatenate([silence, load_audio(wav) * 0.8, silence, silence]))


async def test_a_wake_word_is_detected_only_by_its_own_name(okay_nabu):
    async with running_server() as server:
        assert "okay_nabu" in server.wake_models
        asked_for_it, asked_for_the_model = await Client.connect(server), await Client.connect(server)
        await asked_for_it.send(Detect(names=["okay_nabu"]).event())
        await asked_for_the_model.send(Detect(names=[c.MODEL_DECISION_NAME]).event())
        for client in (asked_for_it, asked_for_the_model):
            await client.stream(okay_nabu)
        detection, _ = await asked_for_it.read_until("detection", timeout=30)
        assert detection.data["name"] == "okay_nabu"
        assert 500 <= detection.data["timestamp"] <= 2500
        _, before = await asked_for_the_model.read_until("not-detected", timeout=30)
        assert "detection" not in [e.type for e in before]
        for client in (asked_for_it, asked_for_the_model):
            await client.close()
