"""Sensor: the text of the room's last response."""

from __future__ import annotations

from typing import Any

from homeassistant.components.sensor import SensorEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import RoomEntity, add_room_entities
from .models import AudioInteractionConfigEntry

# HA states are at most 255 characters; the whole text is in the `text` attribute.
MAX_STATE_LENGTH = 255

# Push only: nothing is polled, so no limit on parallel updates.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_room_entities(entry, async_add_entities, LastResponseSensor, LastTranscriptSensor)


def _state_text(heard: dict[str, Any] | None) -> str | None:
    """The `text` of a response or transcript as a state: cut to 255 characters."""
    if heard is None:
        return None
    text = str(heard.get("text") or "")
    return text if len(text) <= MAX_STATE_LENGTH else text[: MAX_STATE_LENGTH - 1] + "…"


class LastResponseSensor(RoomEntity, SensorEntity):
    """The last response's text (cut to 255 characters), with emotion and urgency."""

    key = "last_response"

    @property
    def native_value(self) -> str | None:
        return _state_text(self.room.last_response)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        return self.room.last_response


class LastTranscriptSensor(RoomEntity, SensorEntity):
    """The last request heard in the room: the engine's transcript after a wake word, or our STT's."""

    key = "last_transcript"

    @property
    def native_value(self) -> str | None:
        return _state_text(self.room.last_transcript)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        return self.room.last_transcript
