"""Speech-to-text backed by the server's Wyoming `asr` service (offline PocketSphinx, US English).

Each request carries the home's entity and area names (vocabulary.py): the
server biases its recogniser to the home's commands over them.

When the same pipeline run's wake word was one of ours, the audio also goes on
into that room's stream, so the room does not go deaf while a command is spoken.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
import logging

from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStop

from homeassistant.components import stt
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .api import StreamClient, audio_start
from .const import CHANNELS, DOMAIN, SAMPLE_RATE, SAMPLE_WIDTH
from .models import AudioInteractionConfigEntry
from .satellite import DETECTED_ROOM
from .vocabulary import transcribe_event

_LOGGER = logging.getLogger(__name__)

PARALLEL_UPDATES = 0
# The server's recogniser (model_runtime/server/asr.py) speaks English only.
LANGUAGES = ["en", "en-US", "en-GB"]


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    async_add_entities([ServerSpeechToText(entry)])


class ServerSpeechToText(stt.SpeechToTextEntity):
    """The server's speech-to-text, on the server's device."""

    _attr_has_entity_name = True
    _attr_translation_key = "speech_to_text"
    _attr_should_poll = False

    def __init__(self, entry: AudioInteractionConfigEntry) -> None:
        self._host, self._port = entry.data[CONF_HOST], entry.data[CONF_PORT]
        self._attr_unique_id = f"{entry.entry_id}-speech_to_text"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, entry.entry_id)})

    @property
    def supported_languages(self) -> list[str]:
        return LANGUAGES

    @property
    def supported_formats(self) -> list[stt.AudioFormats]:
        return [stt.AudioFormats.WAV]

    @property
    def supported_codecs(self) -> list[stt.AudioCodecs]:
        return [stt.AudioCodecs.PCM]

    @property
    def supported_bit_rates(self) -> list[stt.AudioBitRates]:
        return [stt.AudioBitRates.BITRATE_16]

    @property
    def supported_sample_rates(self) -> list[stt.AudioSampleRates]:
        return [stt.AudioSampleRates.SAMPLERATE_16000]

    @property
    def supported_channels(self) -> list[stt.AudioChannels]:
        return [stt.AudioChannels.CHANNEL_MONO]

    async def async_process_audio_stream(
        self, metadata: stt.SpeechMetadata, stream: AsyncIterable[bytes]
    ) -> stt.SpeechResult:
        room = DETECTED_ROOM.get()
        try:
            async with StreamClient(self._host, self._port) as client:
                await client.write_event(transcribe_event(self.hass, metadata.language))
                await client.write_event(audio_start())
                async for audio in stream:
                    if room is not None:
                        room.hear(audio)
                    await client.write_event(
                        AudioChunk(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS, audio=audio).event()
                    )
                await client.write_event(AudioStop().event())
                while (event := await client.read_event()) is not None:
                    if Transcript.is_type(event.type):
                        text = Transcript.from_event(event).text
                        if room is not None:
                            room.set_transcript({"text": text, "source": "speech_to_text"})
                        return stt.SpeechResult(text, stt.SpeechResultState.SUCCESS)
                    if event.type == "error":
                        _LOGGER.warning("Speech-to-text: the server reports: %s", (event.data or {}).get("text"))
                        break
        except OSError as err:
            _LOGGER.warning("Speech-to-text: cannot reach the server at %s:%s: %s", self._host, self._port, err)
        return stt.SpeechResult(None, stt.SpeechResultState.ERROR)
