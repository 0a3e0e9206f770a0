"""Sensors: the text of the room's last response and of the last request heard in it."""

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


class LastTextSensor(RoomEntity, SensorEntity):
    """A room's last response or transcript: its `text` as the state (cut to 255 characters), all of it as attributes."""

    room_attribute: str  # the Room attribute holding the event's data

    @property
    def _heard(self) -> dict[str, Any] | None:
        return getattr(self.room, self.room_attribute)

    @property
    def native_value(self) -> str | None:
        if (heard := self._heard) is None:
            return None
        text = str(heard.get("text") or "")
        return text if len(text) <= MAX_STATE_LENGTH else text[: MAX_STATE_LENGTH - 1] + "…"

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        return self._heard


class LastResponseSensor(LastTextSensor):
    """The last response's text, with emotion and urgency."""

    key = "last_response"
    room_attribute = "last_response"


class LastTranscriptSensor(LastTextSensor):
    """The last request heard in the room: the engine's transcript after a wake word, or our STT's."""

    key = "last_transcript"
    room_attribute = "last_transcript"
