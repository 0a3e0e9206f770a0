"""Event entities: the household sounds a room hears, and the responses it gives."""

from __future__ import annotations

from typing import Any

from homeassistant.components.event import EventEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import RESPONSE_EVENT_TYPES, SOUND_LABELS
from .entity import RoomEntity, add_room_entities
from .models import AudioInteractionConfigEntry
from .room import UPDATE_RESPONSE, UPDATE_SOUND

# Push only: nothing is polled, so no limit on parallel updates.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_room_entities(entry, async_add_entities, SoundEventEntity, ResponseEventEntity)


class SoundEventEntity(RoomEntity, EventEntity):
    """Fires with the sound's label as event type; attributes score, start, end, t."""

    _attr_event_types = list(SOUND_LABELS)

    key = "sound"

    @callback
    def _async_room_update(self, update: str | None, data: dict[str, Any] | None) -> None:
        if update == UPDATE_SOUND and data is not None:
            attributes = dict(data)
            self._trigger_event(attributes.pop("label"), attributes)
        self.async_write_ha_state()


class ResponseEventEntity(RoomEntity, EventEntity):
    """Fires `response` or `urgent_response`; attributes text, emotion, t."""

    _attr_event_types = list(RESPONSE_EVENT_TYPES)

    key = "response"

    @callback
    def _async_room_update(self, update: str | None, data: dict[str, Any] | None) -> None:
        if update == UPDATE_RESPONSE and data is not None:
            attributes = {key: data[key] for key in ("text", "emotion", "t")}
            self._trigger_event(RESPONSE_EVENT_TYPES[1] if data["urgent"] else RESPONSE_EVENT_TYPES[0], attributes)
        self.async_write_ha_state()
