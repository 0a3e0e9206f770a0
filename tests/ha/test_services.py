"""Actions (instruct, analyze_file), device trigger listing and diagnostics, against the real server."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import wave

import pytest
from pytest_homeassistant_custom_component.components.diagnostics import get_diagnostics_for_config_entry

from homeassistant.components.device_automation import DeviceAutomationType, async_get_device_automations
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import STATE_ON
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import device_registry as dr
from homeassistant.setup import async_setup_component

from custom_components.audio_interaction.const import DOMAIN, SOUND_LABELS
from conftest import AudioServer
from ha_helpers import add_entry, free_port, room, room_of, wait_for


async def test_analyze_file(hass: HomeAssistant, audio_server, smoke_alarm_wav, tmp_path) -> None:
    media = tmp_path / "media"
    (media / "recordings").mkdir(parents=True)
    shutil.copy(smoke_alarm_wav, media / "recordings" / "kitchen.wav")
    (media / "notes.wav").write_text("not audio")
    hass.config.media_dirs = {"local": str(media)}
    entry = await add_entry(hass, audio_server)

    async def analyze(file: str, **extra) -> dict:
        return await hass.services.async_call(
            DOMAIN, "analyze_file", {"file": file, **extra}, blocking=True, return_response=True
        )

    result = await analyze("recordings/kitchen.wav")
    # Sent no faster than the engine hears it: the server never had to skip audio.
    assert [e for e in result["events"] if e["type"] == "error"] == []
    sounds = [e for e in result["events"] if e["type"] == "sound"]
    assert sounds and all(e["label"] in SOUND_LABELS for e in sounds)
    assert sounds[0]["start"] >= 1.5  # the alarm starts 2 s in
    assert sounds[-1]["end"] is not None  # flushed at the end of the file
    assert all(e["type"] != "decision" or e["respond"] for e in result["events"])
    # The same through a media-source id and an explicit server: the same events.
    same = await analyze("media-source://media_source/local/recordings/kitchen.wav", config_entry_id=entry.entry_id)
    assert same == result

    # 40 s of a quiet room, decoded far faster than real time and longer than the
    # server's 10 s backlog: nothing to report, nothing skipped, and no waiting on
    # events that never come.
    with wave.open(str(media / "recordings" / "quiet.wav"), "wb") as quiet:
        quiet.setnchannels(1)
        quiet.setsampwidth(2)
        quiet.setframerate(16000)
        quiet.writeframes(bytes(2 * 16000 * 40))
    assert (await analyze("recordings/quiet.wav"))["events"] == []

    for bad in ("../outside.wav", "recordings/missing.wav", "media-source://media_source/other/x.wav"):
        with pytest.raises(ServiceValidationError) as err:
            await analyze(bad)
        assert err.value.translation_key == "invalid_media_file"
    with pytest.raises(HomeAssistantError) as err:
        await analyze("notes.wav")
    assert err.value.translation_key == "undecodable_file"
    with pytest.raises(ServiceValidationError) as err:
        await analyze("recordings/kitchen.wav", config_entry_id="no-such-entry")
    assert err.value.translation_key == "no_server"


async def test_instruct(hass: HomeAssistant, audio_server) -> None:
    entry = await add_entry(hass, audio_server, room("Office", source="pulse:no-such-device"))
    office = room_of(entry, "Office")
    await wait_for(lambda: office.connected)

    await hass.services.async_call(
        DOMAIN, "instruct", {"room": office.device_id, "text": "translate into English"}, blocking=True
    )
    # A blank instruction reaches the server, which answers with an error the room logs.
    await hass.services.async_call(DOMAIN, "instruct", {"room": office.device_id, "text": " "}, blocking=True)
    await wait_for(lambda: office.stats.errors)
    assert len(office.stats.errors) == 1 and "text" in office.stats.errors[0]

    with pytest.raises(ServiceValidationError) as err:
        await hass.services.async_call(DOMAIN, "instruct", {"room": "no-such-device", "text": "hi"}, blocking=True)
    assert err.value.translation_key == "unknown_room"


async def test_device_triggers_listed(hass: HomeAssistant, audio_server) -> None:
    entry = await add_entry(hass, audio_server, room("Hall", source="pulse:no-such-device"))
    hall = room_of(entry, "Hall")
    server_device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    triggers = await async_get_device_automations(
        hass, DeviceAutomationType.TRIGGER, [hall.device_id, server_device.id]
    )
    types = {t["type"] for t in triggers[hall.device_id] if t["domain"] == DOMAIN}
    assert types == {f"{label}_detected" for label in SOUND_LABELS} | {"responded", "urgent_response"}
    assert not [t for t in triggers[server_device.id] if t["domain"] == DOMAIN]
    assert dr.async_get(hass).async_get(hall.device_id).via_device_id == server_device.id  # the room hangs under its server


async def test_diagnostics(hass: HomeAssistant, hass_client, audio_server) -> None:
    assert await async_setup_component(hass, "diagnostics", {})
    entry = await add_entry(
        hass,
        audio_server,
        room("Porch", source="rtsp://admin:secret@127.0.0.1:1/live", notify="notify.mobile_app_phone"),
    )
    await wait_for(lambda: hass.states.get("binary_sensor.porch_server_connection").state == STATE_ON)
    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, entry)
    assert diagnostics["entry"]["data"]["host"] == "**REDACTED**"
    assert diagnostics["server"]["name"] == "audio-interaction"
    (porch,) = diagnostics["rooms"]
    assert porch["title"] == "Porch" and porch["connected"] is True
    assert porch["config"] == {"source": "**REDACTED**", "notify": "**REDACTED**"}
    assert porch["stats"]["errors"] == [] and porch["stats"]["notices"] == []  # (the lite server has no model to load)
    assert "secret" not in str(diagnostics)


async def test_analyze_file_server_stalls_or_dies(
    hass: HomeAssistant, own_audio_server, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that stops reading (frozen) or dies mid-file fails the action with a reason; nothing hangs.

    ffmpeg is read only as fast as the audio is sent on (a bounded queue), so a
    10-minute file stuck behind a frozen server holds seconds of audio, not all of it.
    """
    monkeypatch.setattr("custom_components.audio_interaction.analyze.SEND_STALL_TIMEOUT", 2.0)
    media = tmp_path / "media"
    media.mkdir()
    with wave.open(str(media / "long.wav"), "wb") as long_file:
        long_file.setnchannels(1)
        long_file.setsampwidth(2)
        long_file.setframerate(16000)
        long_file.writeframes(bytes(2 * 16000 * 600))
    hass.config.media_dirs = {"local": str(media)}
    entry = await add_entry(hass, own_audio_server)
    assert entry.state is ConfigEntryState.LOADED

    async def analyze() -> None:
        await hass.services.async_call(DOMAIN, "analyze_file", {"file": "long.wav"}, blocking=True, return_response=True)

    process = own_audio_server.process
    os.kill(process.pid, signal.SIGSTOP)  # frozen: accepts the connection, reads nothing
    try:
        with pytest.raises(HomeAssistantError) as err:
            async with asyncio.timeout(30):
                await analyze()
        assert err.value.translation_key == "analysis_failed"
    finally:
        os.kill(process.pid, signal.SIGCONT)

    task = hass.async_create_task(analyze())
    await asyncio.sleep(0.5)
    own_audio_server.kill()  # dies mid-file
    with pytest.raises(HomeAssistantError) as err:
        async with asyncio.timeout(30):
            await task
    assert err.value.translation_key in ("analysis_failed", "cannot_connect"), (err.value.translation_key, err.value)


async def test_analyze_file_on_a_busy_server_says_so(hass: HomeAssistant, tmp_path, smoke_alarm_wav) -> None:
    """A server already at its --max-streams turns the analysis away: a clear error, at once."""
    server = AudioServer(free_port(), "--engine", "lite", "--max-streams", "1")
    await hass.async_add_executor_job(server.start)
    try:
        media = tmp_path / "media"
        media.mkdir()
        shutil.copy(smoke_alarm_wav, media / "alarm.wav")
        hass.config.media_dirs = {"local": str(media)}
        hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
        await add_entry(hass, server, room("Kitchen", source=str(smoke_alarm_wav)))  # holds the one stream
        await wait_for(lambda: hass.states.get("binary_sensor.kitchen_server_connection").state == STATE_ON)
        with pytest.raises(HomeAssistantError) as err:
            async with asyncio.timeout(20):
                await hass.services.async_call(
                    DOMAIN, "analyze_file", {"file": "alarm.wav"}, blocking=True, return_response=True
                )
        assert err.value.translation_key == "server_busy"
        assert "1 streams already open" in str(err.value.translation_placeholders["error"])
    finally:
        await hass.async_add_executor_job(server.kill)
