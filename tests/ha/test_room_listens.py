"""A room end to end: a smoke-alarm recording as the room's source, the real server (lite engine).

The recording goes through HA's ffmpeg and a real TCP stream to the server;
what the server hears comes back as entity states, bus events, a device
trigger that runs an automation, and a spoken reply requested for the room.
"""

from __future__ import annotations

import subprocess
import wave

import numpy as np

from pytest_homeassistant_custom_component.common import (
    MockPlatform,
    async_capture_events,
    async_mock_service,
    mock_platform,
)

from homeassistant.components import automation
from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.config_entries import ConfigEntryState
from homeassistant.components.binary_sensor import BinarySensorDeviceClass
from homeassistant.const import ATTR_DEVICE_CLASS, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component

from custom_components.audio_interaction.const import BUS_EVENT_SOUND, DOMAIN

from ha_helpers import add_entry, ffmpeg_children, room, room_of, wait_for

# What the lite engine reports for the kitchen recording's alarm, and says about it.
ALARM_LABEL = "smoke_alarm"
ALARM_REPLY = "Smoke alarm sounding"


async def test_smoke_alarm_room(hass: HomeAssistant, audio_server, smoke_alarm_wav, tmp_path) -> None:
    # The recording, then 6 s of quiet: the alarm stops (its last beep ends 12.5 s in).
    recording = tmp_path / "smoke_alarm_then_quiet.wav"
    subprocess.run(["sox", str(smoke_alarm_wav), str(recording), "pad", "0", "6"], check=True)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    tts_calls = async_mock_service(hass, "tts", "speak")
    assert await async_setup_component(hass, "input_boolean", {"input_boolean": {"alarm_heard": {}}})
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)

    entry = await add_entry(
        hass,
        audio_server,
        room("Kitchen", source=str(recording), media_player="media_player.kitchen", tts="tts.home"),
    )
    assert entry.state is ConfigEntryState.LOADED
    kitchen = room_of(entry, "Kitchen")
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, kitchen.subentry_id)})
    assert device is not None and device.name == "Kitchen"

    assert await async_setup_component(
        hass,
        automation.DOMAIN,
        {
            automation.DOMAIN: {
                "trigger": {
                    "platform": "device",
                    "domain": DOMAIN,
                    "device_id": device.id,
                    "type": f"{ALARM_LABEL}_detected",
                },
                "action": {"action": "input_boolean.turn_on", "target": {"entity_id": "input_boolean.alarm_heard"}},
            }
        },
    )
    await wait_for(lambda: hass.states.get("binary_sensor.kitchen_server_connection").state == STATE_ON)
    assert hass.states.get("switch.kitchen_mute").state == STATE_OFF
    assert hass.states.get("binary_sensor.kitchen_speech").state == STATE_OFF
    smoke, co = "binary_sensor.kitchen_smoke_alarm", "binary_sensor.kitchen_carbon_monoxide_alarm"
    await wait_for(lambda: hass.states.get(smoke).state == STATE_OFF)  # (unavailable until the source runs)
    assert hass.states.get(smoke).attributes[ATTR_DEVICE_CLASS] == BinarySensorDeviceClass.SMOKE
    assert hass.states.get(co).state == STATE_OFF
    (ffmpeg,) = ffmpeg_children()
    # Audio is never written to disk: ffmpeg's only output is raw PCM to its stdout pipe.
    assert ffmpeg.cmdline()[-9:] == ["-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", "16000", "-"]
    assert ffmpeg.cmdline().count("-i") == 1  # one input; no second output file anywhere

    # The alarm starts 2 s into the recording, which ffmpeg plays in real time.
    await wait_for(lambda: hass.states.get("input_boolean.alarm_heard").state == STATE_ON)
    assert hass.states.get(smoke).state == STATE_ON
    assert hass.states.get(co).state == STATE_OFF
    sound = hass.states.get("event.kitchen_sound")
    assert sound.attributes["event_type"] == ALARM_LABEL
    assert 0 < sound.attributes["score"] <= 1
    assert sound.attributes["start"] >= 1.5
    first = next(e for e in sounds if e.data["label"] == ALARM_LABEL)
    assert first.data["device_id"] == device.id
    assert first.data["room"] == "Kitchen"

    # The engine's urgent reply is spoken on the room's speaker with its TTS.
    await wait_for(lambda: tts_calls)
    assert tts_calls[0].data == {
        "entity_id": "tts.home", "media_player_entity_id": "media_player.kitchen", "message": ALARM_REPLY,
    }

    # The beeps stop: the server ends the alarm a few seconds after the last one, and the sensor goes off.
    await wait_for(lambda: hass.states.get(smoke).state == STATE_OFF)
    assert [e.data["label"] for e in sounds].count(ALARM_LABEL) == 1  # (the bus has it once: at its start)

    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.NOT_LOADED
    assert hass.states.get("event.kitchen_sound").state == STATE_UNAVAILABLE
    assert ffmpeg_children() == []


class RecordingCamera(Camera):
    """A camera whose stream is a recording (what `generic` does with a stream URL)."""

    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, name: str, stream: str | None) -> None:
        super().__init__()
        self._attr_name = name
        self._attr_unique_id = name
        self._stream = stream

    async def stream_source(self) -> str | None:
        return self._stream


async def test_camera_stream_as_source(hass: HomeAssistant, audio_server, smoke_alarm_wav) -> None:
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}

    async def setup_platform(hass, config, async_add_entities, discovery_info=None):
        async_add_entities([RecordingCamera("Door", str(smoke_alarm_wav)), RecordingCamera("Attic", None)])

    mock_platform(hass, "test.camera", MockPlatform(async_setup_platform=setup_platform))
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    await hass.async_block_till_done()
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    entry = await add_entry(
        hass, audio_server, room("Hall", camera="camera.door"), room("Attic", camera="camera.attic")
    )
    await wait_for(lambda: [e for e in sounds if e.data["room"] == "Hall"])
    attic = room_of(entry, "Attic")
    await wait_for(lambda: attic.source.last_error)
    assert attic.source.last_error == "camera camera.attic has no stream source"
    assert room_of(entry, "Hall").source.last_error is None
    # A room whose source delivers nothing cannot say there is no alarm: its alarm sensors are unavailable.
    assert hass.states.get("binary_sensor.attic_server_connection").state == STATE_ON
    assert hass.states.get("binary_sensor.attic_smoke_alarm").state == STATE_UNAVAILABLE
    assert hass.states.get("binary_sensor.attic_carbon_monoxide_alarm").state == STATE_UNAVAILABLE
    assert hass.states.get("binary_sensor.hall_smoke_alarm").state != STATE_UNAVAILABLE


async def test_speech_sensor(hass: HomeAssistant, audio_server, tmp_path) -> None:
    """Someone speaking in the room (espeak-ng, between pauses) turns the speech sensor on, then off."""
    spoken, wav = tmp_path / "spoken.wav", tmp_path / "speech.wav"
    subprocess.run(
        ["espeak-ng", "-w", str(spoken), "Could you tell me what the weather is like today? I would like to know."],
        check=True,
    )
    subprocess.run(["sox", str(spoken), str(wav), "pad", "0.5", "3"], check=True)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    await add_entry(hass, audio_server, room("Study", source=str(wav)))
    speech = "binary_sensor.study_speech"
    await wait_for(lambda: hass.states.get(speech).state == STATE_ON)
    await wait_for(lambda: hass.states.get(speech).state == STATE_OFF)


def write_co_alarm(path, cycles: int = 2, lead_s: float = 1.0, rate: int = 16_000) -> None:
    """A carbon monoxide alarm's temporal-four pattern (four 0.1 s beeps at 3.1 kHz, 0.1 s apart, then
    a 5 s pause) after `lead_s` of quiet, over a faint noise floor, as a 16 kHz WAV."""
    beep = 0.3 * np.sin(2 * np.pi * 3100 * np.arange(int(0.1 * rate)) / rate)
    gap = np.zeros(int(0.1 * rate))
    cycle = np.concatenate([beep, gap] * 4 + [np.zeros(int(4.9 * rate))])
    audio = np.concatenate([np.zeros(int(lead_s * rate))] + [cycle] * cycles)
    audio += np.random.default_rng(0).normal(0.0, 0.003, len(audio))
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


async def test_co_alarm_sensor_while_muted(hass: HomeAssistant, audio_server, tmp_path) -> None:
    """A CO alarm turns the room's carbon monoxide sensor on; a muted room cannot hear, so both alarm
    sensors are unavailable, and unmuted they start from what the room hears again."""
    recording = tmp_path / "co_alarm.wav"
    write_co_alarm(recording)
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    await add_entry(hass, audio_server, room("Hall", source=str(recording)))
    smoke, co = "binary_sensor.hall_smoke_alarm", "binary_sensor.hall_carbon_monoxide_alarm"

    await wait_for(lambda: hass.states.get(co).state == STATE_ON)
    assert hass.states.get(co).attributes[ATTR_DEVICE_CLASS] == BinarySensorDeviceClass.CO
    assert hass.states.get(smoke).state == STATE_OFF

    await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.hall_mute"}, blocking=True)
    assert hass.states.get(co).state == STATE_UNAVAILABLE
    assert hass.states.get(smoke).state == STATE_UNAVAILABLE
    assert hass.states.get("binary_sensor.hall_speech").state == STATE_OFF  # (connected, hearing nothing)

    # Unmuted, the source starts again from the recording's beginning: quiet, then the alarm again.
    await hass.services.async_call("switch", "turn_off", {"entity_id": "switch.hall_mute"}, blocking=True)
    await wait_for(lambda: hass.states.get(co).state == STATE_OFF)  # (unavailable until the source runs)
    await wait_for(lambda: hass.states.get(co).state == STATE_ON)
