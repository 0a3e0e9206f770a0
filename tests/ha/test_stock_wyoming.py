"""HA's STOCK `wyoming` integration uses our server as a wake word service, with no code of ours.

The server is the real one (`audio-interaction serve --engine lite`, a
subprocess from the runtime environment: the `audio_server` fixture). HA
sets up its own wyoming config entry (from its user flow and from the
add-on's Supervisor discovery announcement), creates a wake_word entity, and
that entity runs HA's own wake flow against the server: `detect`,
`audio-start`, 10 ms chunks, then it closes the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import subprocess

import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from homeassistant.components import wake_word
from homeassistant.config_entries import SOURCE_HASSIO, SOURCE_USER
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.setup import async_setup_component

MODEL_DECISION_NAME = "audio_interaction"  # model_runtime.constants (another environment)
CHUNK_BYTES = 320  # 10 ms of 16 kHz 16-bit mono, as HA's pipeline sends it


@pytest.fixture(autouse=True)
async def core_components(hass: HomeAssistant) -> None:
    """The wyoming integration depends on conversation, which needs HA's core component."""
    assert await async_setup_component(hass, "homeassistant", {})


@pytest.fixture(scope="module")
def okay_nabu_pcm(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """'Okay Nabu' spoken by espeak-ng, 16 kHz 16-bit mono, between silences."""
    wav = tmp_path_factory.mktemp("wake") / "okay_nabu.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(wav), "okay nabu"], check=True)
    silence = bytes(16000)  # 0.5 s
    return silence + pcm16(wav) + silence


def pcm16(path: Path) -> bytes:
    """Any audio file as HA's pipeline streams it: 16 kHz 16-bit mono PCM."""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        check=True, capture_output=True,
    ).stdout


async def audio_stream(pcm: bytes, tail_seconds: float = 4.0) -> AsyncIterator[tuple[bytes, int]]:
    """The pipeline's wake word stream: the audio, then live-paced quiet room noise (a pipeline
    never ends its stream on its own; HA stops reading once the entity returns)."""
    timestamp = 0
    for start in range(0, len(pcm), CHUNK_BYTES):
        yield pcm[start:start + CHUNK_BYTES], timestamp
        timestamp += 10
        await asyncio.sleep(0)
    noise = (np.random.default_rng(0).normal(0, 30, int(tail_seconds * 16000))).astype("<i2").tobytes()
    for start in range(0, len(noise), CHUNK_BYTES):
        await asyncio.sleep(0.01)
        yield noise[start:start + CHUNK_BYTES], timestamp
        timestamp += 10


async def setup_wyoming_entry(hass: HomeAssistant, server) -> MockConfigEntry:
    entry = MockConfigEntry(domain="wyoming", data={CONF_HOST: server.host, CONF_PORT: server.port})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


def wake_entity(hass: HomeAssistant, entry: MockConfigEntry) -> wake_word.WakeWordDetectionEntity:
    entities = er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    # wake word and the asr service (test_assist_satellite.py tests the stt entity)
    assert sorted(e.domain for e in entities) == ["stt", "wake_word"], "the server must load no satellite"
    entity_id = next(e.entity_id for e in entities if e.domain == "wake_word")
    entity = wake_word.async_get_wake_word_detection_entity(hass, entity_id)
    assert entity is not None
    return entity


async def test_hass_user_flow_finds_a_wake_word_service(hass: HomeAssistant, audio_server) -> None:
    result = await hass.config_entries.flow.async_init("wyoming", context={"source": SOURCE_USER})
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "audio-interaction"


async def test_hass_addon_discovery_sets_up_the_wyoming_entry(hass: HomeAssistant, audio_server) -> None:
    """What the add-on's discovery script announces ({"uri": ...} as service `wyoming`) sets HA up."""
    info = HassioServiceInfo(
        config={"uri": f"tcp://{audio_server.host}:{audio_server.port}"},
        name="Audio-Interaction", slug="audio_interaction", uuid="1234",
    )
    result = await hass.config_entries.flow.async_init("wyoming", context={"source": SOURCE_HASSIO}, data=info)
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "hassio_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["data"] == {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}


async def test_wake_word_entity_offers_the_engine_wake_words_and_the_model_decision(
    hass: HomeAssistant, audio_server
) -> None:
    entry = await setup_wyoming_entry(hass, audio_server)
    entity = wake_entity(hass, entry)
    words = await entity.get_supported_wake_words()
    ids = [w.id for w in words]
    assert ids[-1] == MODEL_DECISION_NAME
    assert "okay_nabu" in ids  # the lite engine's default wake word
    assert next(w for w in words if w.id == "okay_nabu").name == "Okay Nabu"
    assert entity.name == "audio-interaction"


async def test_wake_word_entity_detects_a_spoken_wake_word(hass: HomeAssistant, audio_server, okay_nabu_pcm) -> None:
    """HA's own wake flow (`detect okay_nabu`, 10 ms chunks, hang up) with the lite engine's wake word."""
    entry = await setup_wyoming_entry(hass, audio_server)
    entity = wake_entity(hass, entry)
    result = await asyncio.wait_for(entity.async_process_audio_stream(audio_stream(okay_nabu_pcm), "okay_nabu"), 30)
    assert result is not None, "no detection"
    assert (result.wake_word_id, result.wake_word_phrase) == ("okay_nabu", "okay nabu")
    assert 500 <= result.timestamp <= 2500
    assert hass.states.get(entity.entity_id).state not in ("unknown", "unavailable")
    # Asked for the model's decision instead, the same words are not a detection.
    result = await entity.async_process_audio_stream(audio_stream(okay_nabu_pcm, tail_seconds=1.0), MODEL_DECISION_NAME)
    assert result is None


async def test_no_detection_in_a_quiet_room(hass: HomeAssistant, audio_server) -> None:
    entry = await setup_wyoming_entry(hass, audio_server)
    entity = wake_entity(hass, entry)
    quiet = (np.random.default_rng(1).normal(0, 30, 16000)).astype("<i2").tobytes()
    result = await entity.async_process_audio_stream(audio_stream(quiet, tail_seconds=0.5), None)
    assert result is None
    assert hass.states.get(entity.entity_id).state == "unknown"


async def test_wake_word_entity_detects_when_the_model_decides_to_respond(
    hass: HomeAssistant, interaction_server, trigger_tone_wav: Path
) -> None:
    """The real model's engine (rigged tiny checkpoint) decides to respond to the tone: HA's wyoming
    wake word entity reports a detection of `audio_interaction`."""
    entry = await setup_wyoming_entry(hass, interaction_server)
    entity = wake_entity(hass, entry)
    stream = audio_stream(pcm16(trigger_tone_wav))
    result = await asyncio.wait_for(entity.async_process_audio_stream(stream, MODEL_DECISION_NAME), timeout=60)
    assert result is not None, "no detection"
    assert result.wake_word_id == MODEL_DECISION_NAME
    assert 1000 <= result.timestamp <= 3400  # ms into the stream: during the tone
    assert hass.states.get(entity.entity_id).state not in ("unknown", "unavailable")
