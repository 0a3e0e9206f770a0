"""Reliability: the server killed and restarted, a source that keeps failing, mute, restore, faults of ours."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import time
from pathlib import Path

import numpy as np
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events, mock_restore_cache
from wyoming.audio import AudioChunk
from wyoming.error import Error

from homeassistant.const import EVENT_STATE_CHANGED, STATE_OFF, STATE_ON, STATE_UNAVAILABLE
from homeassistant.core import HomeAssistant, State
from homeassistant.helpers import issue_registry as ir

from custom_components.audio_interaction import const
from custom_components.audio_interaction.api import StreamClient, async_close, engine_event
from custom_components.audio_interaction.const import BUS_EVENT_SOUND, DOMAIN
from conftest import AudioServer, runtime_python
from ha_helpers import add_entry, ffmpeg_children, free_port, room, room_of, wait_for


async def test_server_killed_and_restarted(
    hass: HomeAssistant, own_audio_server, smoke_alarm_wav, monkeypatch
) -> None:
    """Unreachable for long (here 2 s: two minutes in a home), the server gets a repair issue; back, it goes."""
    monkeypatch.setattr(const, "SERVER_UNREACHABLE_FOR_REPAIR", 2.0)
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    entry = await add_entry(hass, own_audio_server, room("Kitchen", source=str(smoke_alarm_wav)))
    kitchen = room_of(entry, "Kitchen")
    connection = "binary_sensor.kitchen_server_connection"
    await wait_for(lambda: hass.states.get(connection).state == STATE_ON)

    own_audio_server.kill()
    await wait_for(lambda: hass.states.get(connection).state == STATE_OFF)
    assert hass.states.get("event.kitchen_sound").state == STATE_UNAVAILABLE
    assert hass.states.get("sensor.kitchen_last_response").state == STATE_UNAVAILABLE
    assert hass.states.get("switch.kitchen_mute").state == STATE_OFF  # muting works offline
    assert len(ffmpeg_children()) == 1  # the source keeps running; its audio is dropped, not stored
    issue_id = f"server_unreachable_{entry.entry_id}"
    issues = ir.async_get(hass)
    await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id), timeout=10)
    issue = issues.async_get_issue(DOMAIN, issue_id)
    assert issue.translation_key == "server_unreachable" and issue.severity is ir.IssueSeverity.ERROR
    assert issue.translation_placeholders["port"] == str(own_audio_server.port)

    await hass.async_add_executor_job(own_audio_server.start)
    back = time.monotonic()
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    await wait_for(lambda: hass.states.get(connection).state == STATE_ON, timeout=10)
    assert time.monotonic() - back < 10
    assert hass.states.get("event.kitchen_sound").state != STATE_UNAVAILABLE
    assert kitchen.stats.connects == 2
    assert issues.async_get_issue(DOMAIN, issue_id) is None
    # Streaming resumed: the looping recording's alarm is heard again, each sound once.
    # (Its beeps are not loud_noise: that is for broadband sounds, so the alarm is the sound.)
    await wait_for(lambda: any(e.data["label"] == "smoke_alarm" for e in sounds), timeout=15)
    keys = [(e.data["label"], e.data["start"]) for e in sounds]
    assert len(keys) == len(set(keys))


async def test_frozen_server_is_noticed(
    hass: HomeAssistant, own_audio_server, smoke_alarm_wav, monkeypatch, caplog
) -> None:
    """A server that stops answering (here SIGSTOP: the socket stays open) is not taken for a listening one."""
    monkeypatch.setattr("custom_components.audio_interaction.room.PING_INTERVAL", 0.5)
    monkeypatch.setattr("custom_components.audio_interaction.room.PONG_TIMEOUT", 1.0)
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    entry = await add_entry(hass, own_audio_server, room("Kitchen", source=str(smoke_alarm_wav)))
    kitchen = room_of(entry, "Kitchen")
    connection = "binary_sensor.kitchen_server_connection"
    await wait_for(lambda: hass.states.get(connection).state == STATE_ON)
    await asyncio.sleep(2)  # pings answered: no stall while the server is alive
    assert kitchen.stats.stalls == 0
    changes = async_capture_events(hass, EVENT_STATE_CHANGED)

    process = own_audio_server.process
    os.kill(process.pid, signal.SIGSTOP)
    try:
        await wait_for(lambda: kitchen.stats.stalls >= 1, timeout=10)
        await wait_for(lambda: not kitchen.connected, timeout=5)
        assert "stopped answering" in caplog.text
        assert STATE_OFF in [e.data["new_state"].state for e in changes if e.data["entity_id"] == connection]
    finally:
        os.kill(process.pid, signal.SIGCONT)

    # Thawed: the room reconnects and hears the looping alarm again.
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    await wait_for(lambda: hass.states.get(connection).state == STATE_ON, timeout=15)
    await wait_for(lambda: any(e.data["label"] == "smoke_alarm" for e in sounds), timeout=20)


async def test_failing_source_raises_a_repair_issue(hass: HomeAssistant, audio_server, monkeypatch) -> None:
    monkeypatch.setattr(const, "BACKOFF_MIN", 0.01)
    monkeypatch.setattr(const, "SOURCE_BACKOFF_MAX", 0.02)
    entry = await add_entry(
        hass,
        audio_server,
        room("Porch", source="rtsp://127.0.0.1:1/stream"),  # nothing listens: ffmpeg fails at once
        room("Attic", source="/no/such/recording.wav"),
    )
    issues = ir.async_get(hass)
    for subentry_id in entry.runtime_data.rooms:
        await wait_for(lambda: issues.async_get_issue(DOMAIN, f"source_failing_{subentry_id}"), timeout=30)
    porch = issues.async_get_issue(DOMAIN, f"source_failing_{room_of(entry, 'Porch').subentry_id}")
    assert porch.translation_key == "source_failing"
    assert porch.translation_placeholders["room"] == "Porch"
    assert porch.translation_placeholders["source"] == "rtsp://127.0.0.1/stream"
    assert "ffmpeg exited" in porch.translation_placeholders["reason"]
    attic = issues.async_get_issue(DOMAIN, f"source_failing_{room_of(entry, 'Attic').subentry_id}")
    assert attic.translation_placeholders["reason"] == "no such file: /no/such/recording.wav"
    attributes = hass.states.get("binary_sensor.porch_server_connection").attributes
    assert attributes["source_failures"] >= const.SOURCE_FAILURES_FOR_REPAIR

    # Unloading stops the retry loops and every ffmpeg process.
    await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    assert ffmpeg_children() == []


async def test_mute_stops_the_source(hass: HomeAssistant, audio_server, smoke_alarm_wav) -> None:
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    entry = await add_entry(hass, audio_server, room("Kitchen", source=str(smoke_alarm_wav)))
    kitchen = room_of(entry, "Kitchen")
    await wait_for(lambda: kitchen.stats.chunks_sent > 5)

    await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.kitchen_mute"}, blocking=True)
    assert hass.states.get("switch.kitchen_mute").state == STATE_ON
    assert ffmpeg_children() == []  # nothing reads the microphone any more
    sent = kitchen.stats.chunks_sent
    await hass.async_block_till_done()
    assert kitchen.stats.chunks_sent == sent
    await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.kitchen_mute"}, blocking=True)

    await hass.services.async_call("switch", "turn_off", {"entity_id": "switch.kitchen_mute"}, blocking=True)
    assert hass.states.get("switch.kitchen_mute").state == STATE_OFF
    await wait_for(lambda: kitchen.stats.chunks_sent > sent)
    assert len(ffmpeg_children()) == 1


async def test_muted_room_stays_muted_after_restart(hass: HomeAssistant, audio_server, smoke_alarm_wav) -> None:
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    mock_restore_cache(hass, [State("switch.kitchen_mute", STATE_ON)])
    entry = await add_entry(hass, audio_server, room("Kitchen", source=str(smoke_alarm_wav)))
    await wait_for(lambda: hass.states.get("binary_sensor.kitchen_server_connection").state == STATE_ON)
    assert hass.states.get("switch.kitchen_mute").state == STATE_ON
    assert room_of(entry, "Kitchen").muted
    assert ffmpeg_children() == []  # the source was never opened


async def test_silent_source_raises_a_repair_issue(
    hass: HomeAssistant, audio_server, silence_wav, smoke_alarm_wav, monkeypatch
) -> None:
    """A source that delivers only digital silence (a camera with its microphone off) is reported, not trusted."""
    monkeypatch.setattr("custom_components.audio_interaction.source.SILENT_SOURCE_SECONDS", 2.0)
    hass.config.allowlist_external_dirs = {str(silence_wav.parent), str(smoke_alarm_wav.parent)}
    entry = await add_entry(
        hass, audio_server, room("Garage", source=str(silence_wav)), room("Kitchen", source=str(smoke_alarm_wav))
    )
    garage, kitchen = room_of(entry, "Garage"), room_of(entry, "Kitchen")
    issues = ir.async_get(hass)
    issue = await wait_for(lambda: issues.async_get_issue(DOMAIN, f"source_failing_{garage.subentry_id}_silent"), timeout=20)
    assert issue.translation_key == "source_silent"
    assert issue.translation_placeholders["room"] == "Garage"
    assert hass.states.get("binary_sensor.garage_server_connection").attributes["source_silent"] is True
    assert hass.states.get("binary_sensor.garage_smoke_alarm").state == STATE_UNAVAILABLE  # it hears nothing
    # A real recording (quiet passages included) is never taken for a dead microphone.
    await wait_for(lambda: kitchen.stats.chunks_sent >= 50)
    assert not kitchen.source.silent
    assert issues.async_get_issue(DOMAIN, f"source_failing_{kitchen.subentry_id}_silent") is None


async def test_writing_to_a_reset_connection_is_a_connection_error() -> None:
    """A server that resets the connection (killed) makes the next write raise an OSError, which every caller handles.

    (Python before 3.13.6 raises AttributeError from the transport instead, cpython gh-136234.)
    """

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, as a killed process's socket

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    client = StreamClient("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        await client.connect()
        with contextlib.suppress(OSError):
            assert await client.read_event() is None
        for _ in range(2):
            with pytest.raises(ConnectionResetError, match="closed the connection"):
                await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=bytes(3200)).event())
    finally:
        await async_close(client)
        server.close()
        await server.wait_closed()


async def test_a_fault_in_handling_an_event_does_not_end_listening(
    hass: HomeAssistant, audio_server, smoke_alarm_wav, monkeypatch, caplog
) -> None:
    """An unexpected error of ours while streaming is logged with its traceback and the room reconnects."""
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    entry = await add_entry(hass, audio_server, room("Kitchen", source=str(smoke_alarm_wav)))
    kitchen = room_of(entry, "Kitchen")
    handle = kitchen._handle
    faults = []

    def handle_with_one_fault(kind, data):
        if not faults:
            faults.append(kind)
            raise ValueError("a bug in handling an event")
        handle(kind, data)

    monkeypatch.setattr(kitchen, "_handle", handle_with_one_fault)
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    await wait_for(lambda: kitchen.stats.connects >= 2, timeout=15)
    assert "Room Kitchen: unexpected error while streaming; reconnecting" in caplog.text
    assert "a bug in handling an event" in caplog.text
    await wait_for(lambda: kitchen.connected)
    await wait_for(lambda: any(e.data["label"] == "smoke_alarm" for e in sounds), timeout=20)


async def test_with_the_model_a_rooms_smoke_alarm_still_fires(hass: HomeAssistant, interaction_server, smoke_alarm_wav) -> None:
    """The big model's engine reports no sounds itself (and the tiny one stays silent here): the
    server's safety net beside it hears the alarm, and the room's event entity and bus event fire."""
    hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    entry = await add_entry(hass, interaction_server, room("Kitchen", source=str(smoke_alarm_wav)))
    await wait_for(lambda: any(e.data["label"] == "smoke_alarm" for e in sounds), timeout=30)
    assert hass.states.get("event.kitchen_sound").attributes["event_type"] == "smoke_alarm"
    assert not room_of(entry, "Kitchen").stats.errors  # the model was loaded: no model-loading notice


async def test_the_model_loading_notice_is_no_error(hass: HomeAssistant, audio_server, silence_wav, caplog) -> None:
    """A model server tells each room once, at every start, that its model is still loading: the room
    logs it at info and keeps it among its notices; a real error still warns and counts."""
    hass.config.allowlist_external_dirs = {str(silence_wav.parent)}
    entry = await add_entry(hass, audio_server, room("Kitchen", source=str(silence_wav)))
    kitchen = room_of(entry, "Kitchen")
    loading = "the audio-interaction model is still loading; until it is ready only the safety net hears this stream"
    for wyoming_error in (Error(text=loading, code=const.WYOMING_ERROR_MODEL_LOADING), Error(text="bad", code="bad-event")):
        kitchen._handle(*engine_event(wyoming_error.event()))
    assert list(kitchen.stats.notices) == [loading] and list(kitchen.stats.errors) == ["bad"]
    reported = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "server reports" in r.getMessage()]
    assert reported == ["Room Kitchen: the server reports: bad"]
    assert f"Room Kitchen: {loading}" in caplog.text


async def test_a_busy_server_turns_a_room_away_with_a_repair_issue(
    hass: HomeAssistant, smoke_alarm_wav, monkeypatch, caplog
) -> None:
    """A server at its --max-streams turns the second room away: that room is not shown as connected,
    gets a repair issue saying what to do, sends no audio into a refused stream, and asks again;
    once the first room's stream ends (muted) the second is taken and the issue goes."""
    monkeypatch.setattr(const, "SERVER_BUSY_RETRY", 1.0)
    monkeypatch.setattr("custom_components.audio_interaction.room.STABLE_STREAM_SECONDS", 2.0)
    server = AudioServer(free_port(), "--engine", "lite", "--max-streams", "1")
    await hass.async_add_executor_job(server.start)
    try:
        hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
        entry = await add_entry(
            hass, server, room("Kitchen", source=str(smoke_alarm_wav)), room("Hall", source=str(smoke_alarm_wav))
        )
        rooms = [room_of(entry, "Kitchen"), room_of(entry, "Hall")]
        await wait_for(lambda: any(r.stats.refusals for r in rooms), timeout=10)
        refused, served = sorted(rooms, key=lambda r: -r.stats.refusals)  # whichever came second
        refused_id, served_id = refused.name.lower(), served.name.lower()
        issue_id = f"server_busy_{refused.subentry_id}"
        issues = ir.async_get(hass)
        issue = issues.async_get_issue(DOMAIN, issue_id)
        assert issue.translation_key == "server_busy" and issue.severity is ir.IssueSeverity.ERROR
        assert "1 streams already open" in issue.translation_placeholders["reason"]
        await wait_for(lambda: refused.stats.refusals >= 3, timeout=10)  # it asks again
        assert served.stats.refusals == 0
        assert hass.states.get(f"binary_sensor.{refused_id}_server_connection").state == STATE_OFF
        assert hass.states.get(f"binary_sensor.{refused_id}_smoke_alarm").state == STATE_UNAVAILABLE
        assert hass.states.get(f"binary_sensor.{served_id}_server_connection").state == STATE_ON
        turned_away = [r.message for r in caplog.records if refused.name in r.message and r.levelname == "WARNING"]
        assert len(turned_away) == 1 and "turned it away" in turned_away[0]  # said once, not per retry
        assert not [r for r in caplog.records if "audio-chunk before audio-start" in r.message]

        # The served room muted: its stream ends on the server, whose one place the other then takes.
        sounds = async_capture_events(hass, BUS_EVENT_SOUND)
        await hass.services.async_call("switch", "turn_on", {"entity_id": f"switch.{served_id}_mute"}, blocking=True)
        await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is None, timeout=15)
        assert hass.states.get(f"binary_sensor.{refused_id}_server_connection").state == STATE_ON
        await wait_for(lambda: [e for e in sounds if e.data["room"] == refused.name], timeout=20)  # it hears
        assert served.connected  # (muted, it keeps its connection: only its stream ended)

        # Unmuted, the first room asks for a stream again, and is now the one turned away.
        await hass.services.async_call("switch", "turn_off", {"entity_id": f"switch.{served_id}_mute"}, blocking=True)
        await wait_for(lambda: served.stats.refusals >= 1, timeout=10)
        assert issues.async_get_issue(DOMAIN, f"server_busy_{served.subentry_id}") is not None
        assert refused.connected and issues.async_get_issue(DOMAIN, issue_id) is None
    finally:
        await hass.async_add_executor_job(server.kill)


class FaultyEngineServer(AudioServer):
    """A real lite server with a fault in its engine (faulty_engine_server.py: `fail-once` or `slow`)."""

    def __init__(self, port: int, mode: str) -> None:
        super().__init__(port)
        self.mode = mode

    def command(self) -> list[str]:
        return [runtime_python(), str(Path(__file__).with_name("faulty_engine_server.py")), str(self.port), self.mode]


async def test_a_room_starts_a_new_stream_when_the_engine_fails_on_it(hass: HomeAssistant, smoke_alarm_wav) -> None:
    """The engine failing on a room's stream (`engine-failed`: it hears nothing more until the next
    audio-start) does not leave the room connected and deaf: it starts a new stream and hears the alarm."""
    server = FaultyEngineServer(free_port(), "fail-once")
    await hass.async_add_executor_job(server.start)
    try:
        hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
        sounds = async_capture_events(hass, BUS_EVENT_SOUND)
        entry = await add_entry(hass, server, room("Kitchen", source=str(smoke_alarm_wav)))
        kitchen = room_of(entry, "Kitchen")
        await wait_for(lambda: kitchen.stats.stream_restarts == 1, timeout=15)
        assert "failed on this stream (RuntimeError: a fault the test injected)" in kitchen.stats.errors[0]
        await wait_for(lambda: [e for e in sounds if e.data["label"] == "smoke_alarm"], timeout=30)
        assert kitchen.stats.connects == 1  # the same connection: a new stream on it
    finally:
        await hass.async_add_executor_job(server.kill)


async def test_a_server_that_cannot_keep_up_raises_a_repair_issue(
    hass: HomeAssistant, smoke_alarm_wav, monkeypatch, caplog
) -> None:
    """A server too slow for the room (here an engine at half speed) skips its backlog again and again:
    said once in the log, a repair issue once it adds up (here 2 s; 20 s in 10 minutes in a home),
    cleared after a whole window without a skip (here 3 s)."""
    monkeypatch.setattr(const, "SKIPPED_SECONDS_FOR_REPAIR", 2.0)
    monkeypatch.setattr(const, "SKIPPED_WINDOW", 3.0)
    server = FaultyEngineServer(free_port(), "slow")
    await hass.async_add_executor_job(server.start)
    try:
        hass.config.allowlist_external_dirs = {str(smoke_alarm_wav.parent)}
        entry = await add_entry(hass, server, room("Kitchen", source=str(smoke_alarm_wav)))
        kitchen = room_of(entry, "Kitchen")
        issue_id = f"server_behind_{kitchen.subentry_id}"
        issues = ir.async_get(hass)
        await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id), timeout=30)
        issue = issues.async_get_issue(DOMAIN, issue_id)
        assert issue.translation_key == "server_behind"
        assert float(issue.translation_placeholders["seconds"]) >= 2
        assert "fell behind" in issue.translation_placeholders["reason"]
        assert kitchen.stats.skipped_seconds >= 2.0
        skips = [r for r in caplog.records if "fell behind" in r.message and r.levelname == "WARNING"
                 and r.name.startswith("custom_components")]
        assert len(skips) == 1  # one warning for the episode, not one per skip

        await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.kitchen_mute"}, blocking=True)
        await wait_for(lambda: issues.async_get_issue(DOMAIN, issue_id) is None, timeout=15)
        assert kitchen.connected
    finally:
        await hass.async_add_executor_job(server.kill)


async def test_a_stalled_source_is_restarted_and_reported(hass: HomeAssistant, audio_server, monkeypatch) -> None:
    """A stream that stops sending without closing (a camera that hangs): ffmpeg would wait forever,
    and the room would hear nothing while all looked well. It is stopped after STALL_SECONDS without
    audio (here 1.5 s), started again, and a repair issue says so when it keeps happening."""
    monkeypatch.setattr("custom_components.audio_interaction.source.STALL_SECONDS", 1.5)
    monkeypatch.setattr(const, "SOURCE_FAILURES_FOR_REPAIR", 2)
    rate, seconds = 16_000, 0.5  # under HEALTHY_BYTES: each run counts as a failure
    pcm = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate)).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 0x7FFFFFFF) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", 0x7FFFFF00)
    requests = 0
    hang = asyncio.Event()

    async def stalling_camera(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n\r\n" + header + pcm)
        await writer.drain()
        await hang.wait()  # sends nothing more, and never closes
        writer.close()

    camera = await asyncio.start_server(stalling_camera, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{camera.sockets[0].getsockname()[1]}/audio.wav"
        entry = await add_entry(hass, audio_server, room("Porch", source=url))
        porch = room_of(entry, "Porch")
        issues = ir.async_get(hass)
        issue = await wait_for(lambda: issues.async_get_issue(DOMAIN, f"source_failing_{porch.subentry_id}"), timeout=30)
        assert "the source stalled" in issue.translation_placeholders["reason"]
        assert requests >= 2  # started again
    finally:
        hang.set()
        camera.close()
        await camera.wait_closed()
