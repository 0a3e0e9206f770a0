"""Wake word: one entity per Assist-satellite room; a pipeline that selects it makes the satellite the room's ears.

See satellite.py for how the stage feeds the room and what ends it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable

from homeassistant.components.wake_word import DetectionResult, WakeWord, WakeWordDetectionEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import MODEL_DECISION_NAME
from .entity import RoomEntity
from .models import AudioInteractionConfigEntry
from .satellite import DETECTED_ROOM, WakeStage, phrase_of

# Every pipeline run streams on its own; nothing is polled.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    for room in entry.runtime_data.rooms.values():
        if room.satellite:
            async_add_entities([RoomWakeWord(room)], config_subentry_id=room.subentry_id)


class RoomWakeWord(RoomEntity, WakeWordDetectionEntity):
    """Detects in this room's stream: a wake word (lite engine) or the model deciding to respond."""

    key = "wake_word"

    async def get_supported_wake_words(self) -> list[WakeWord]:
        words = []
        for name in self.room.entry.runtime_data.server.wake_words:
            if name == MODEL_DECISION_NAME:
                words.append(WakeWord(id=name, name="Audio-Interaction decides to respond"))
            else:
                words.append(WakeWord(id=name, name=phrase_of(name).title(), phrase=phrase_of(name)))
        return words

    async def _async_process_audio_stream(
        self, stream: AsyncIterable[tuple[bytes, int]], wake_word_id: str | None
    ) -> DetectionResult | None:
        stage = WakeStage(self.room, wake_word_id)
        self.room.add_wake_stage(stage)
        try:
            result = await stage.run(stream)
        finally:  # a satellite that left or a cancelled run leaves nothing behind
            self.room.wake_stages.discard(stage)
        if result is not None:
            # STT runs next in this same task: our STT entity keeps feeding this room.
            DETECTED_ROOM.set(self.room)
        return result
