"""Switch: mute a room. While muted ffmpeg is stopped: no audio leaves the source."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity
from homeassistant.const import STATE_ON, EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import RestoreEntity

from .entity import RoomEntity, add_room_entities
from .models import AudioInteractionConfigEntry

# Push only: nothing is polled, so no limit on parallel updates.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_room_entities(entry, async_add_entities, MuteSwitch)


class MuteSwitch(RoomEntity, SwitchEntity, RestoreEntity):
    """On = muted. Restored across restarts (a muted room stays muted), usable while offline."""

    _attr_entity_category = EntityCategory.CONFIG

    key = "mute"

    async def async_added_to_hass(self) -> None:
        await super().async_added_to_hass()
        # Runs before the room starts streaming, so a muted room never opens its source.
        if (last := await self.async_get_last_state()) is not None and last.state == STATE_ON:
            await self.room.async_set_muted(True)

    @property
    def available(self) -> bool:
        return True

    @property
    def is_on(self) -> bool:
        return self.room.muted

    async def async_turn_on(self, **kwargs: Any) -> None:
        await self.room.async_set_muted(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        await self.room.async_set_muted(False)
