"""Base entity: one room's device, updated by the room's dispatcher signal."""

from __future__ import annotations

from typing import Any

from homeassistant.core import callback
from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.dispatcher import async_dispatcher_connect
from homeassistant.helpers.entity import Entity
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .const import DOMAIN
from .models import AudioInteractionConfigEntry
from .room import Room


@callback
def add_room_entities(
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
    *entity_classes: type[RoomEntity],
) -> None:
    """Give each room one entity of each class, under the room's subentry."""
    for room in entry.runtime_data.rooms.values():
        async_add_entities([cls(room) for cls in entity_classes], config_subentry_id=room.subentry_id)


class RoomEntity(Entity):
    """An entity of a room; available while the room is connected to the server."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    # The translation key, and the last part of the unique id.
    key: str

    def __init__(self, room: Room) -> None:
        self.room = room
        self._attr_translation_key = self.key
        self._attr_unique_id = f"{room.subentry_id}-{self.key}"
        self._attr_device_info = DeviceInfo(identifiers={(DOMAIN, room.subentry_id)})

    @property
    def available(self) -> bool:
        return self.room.connected

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        self.async_on_remove(async_dispatcher_connect(self.hass, self.room.signal, self._async_room_update))

    @callback
    def _async_room_update(self, update: str | None, data: dict[str, Any] | None) -> None:
        """A room update: `update` names an event the room just heard (None: state changed)."""
        self.async_write_ha_state()
