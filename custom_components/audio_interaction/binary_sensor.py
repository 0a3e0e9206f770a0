"""Binary sensors: an alarm sounding in the room, speech heard there, and the room's connection to the server."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .entity import RoomEntity, add_room_entities
from .models import AudioInteractionConfigEntry

# Push only: nothing is polled, so no limit on parallel updates.
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant,
    entry: AudioInteractionConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    add_room_entities(
        entry,
        async_add_entities,
        SmokeAlarmBinarySensor,
        CarbonMonoxideAlarmBinarySensor,
        SpeechBinarySensor,
        ConnectivityBinarySensor,
    )


class AlarmBinarySensor(RoomEntity, BinarySensorEntity):
    """On while the server hears the room's smoke or CO alarm sound: from its `sound` start to its end.

    The server ends an alarm a few seconds after its last beep. The sensor is unavailable
    whenever the room cannot hear (`Room.hearing`): not connected, muted, or its source down or
    delivering only silence. (Off would say "no alarm", which a room that hears nothing cannot
    know; and a stream that stops hearing never gets the end.)
    """

    label: str

    @property
    def available(self) -> bool:
        return self.room.hearing

    @property
    def is_on(self) -> bool:
        return self.label in self.room.alarms


class SmokeAlarmBinarySensor(AlarmBinarySensor):
    _attr_device_class = BinarySensorDeviceClass.SMOKE
    key = label = "smoke_alarm"


class CarbonMonoxideAlarmBinarySensor(AlarmBinarySensor):
    _attr_device_class = BinarySensorDeviceClass.CO
    key = label = "co_alarm"


class SpeechBinarySensor(RoomEntity, BinarySensorEntity):
    """On while the server hears someone speaking in the room."""

    key = "speech"

    @property
    def is_on(self) -> bool:
        return self.room.speech


class ConnectivityBinarySensor(RoomEntity, BinarySensorEntity):
    """Whether the room is streaming to the server; itself always available."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_entity_category = EntityCategory.DIAGNOSTIC

    key = "connection"

    @property
    def available(self) -> bool:
        return True

    @property
    def is_on(self) -> bool:
        return self.room.connected

    @property
    def extra_state_attributes(self) -> dict[str, object]:
        return {
            "source_running": self.room.source.running,
            "source_failures": self.room.source.failures,
            "source_error": self.room.source.last_error,
            "source_silent": self.room.source.silent,
        }
