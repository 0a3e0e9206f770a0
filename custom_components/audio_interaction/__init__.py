"""The Audio-Interaction integration: rooms that listen, via the Audio-Interaction Wyoming server."""

from __future__ import annotations

from datetime import datetime
import inspect
from typing import Any

from homeassistant.const import CONF_HOST, CONF_PORT, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryError, ConfigEntryNotReady
from homeassistant.helpers import config_validation as cv, device_registry as dr
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.typing import ConfigType

from .api import CannotConnect, NotOurServer, async_get_server_info
from .const import DOMAIN, NAMES_REFRESH_INTERVAL, SUBENTRY_ROOM
from .models import AudioInteractionConfigEntry, AudioInteractionData
from .room import Room
from .services import async_register_services
from .vocabulary import exposed_names

PLATFORMS = [Platform.BINARY_SENSOR, Platform.EVENT, Platform.SENSOR, Platform.STT, Platform.SWITCH, Platform.WAKE_WORD]

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the actions (once, whether or not an entry is loaded)."""
    async_register_services(hass)
    return True


async def async_setup_entry(hass: HomeAssistant, entry: AudioInteractionConfigEntry) -> bool:
    """Connect to the server, create a device per room, start the rooms streaming."""
    try:
        server = await async_get_server_info(entry.data[CONF_HOST], entry.data[CONF_PORT])
    except CannotConnect as err:
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
        ) from err
    except NotOurServer as err:
        raise ConfigEntryError(
            translation_domain=DOMAIN,
            translation_key="not_our_server",
            translation_placeholders={"host": entry.data[CONF_HOST], "port": str(entry.data[CONF_PORT])},
        ) from err

    data = AudioInteractionData(server=server)
    devices = dr.async_get(hass)
    server_device = devices.async_get_or_create(
        config_entry_id=entry.entry_id,
        identifiers={(DOMAIN, entry.entry_id)},
        name=entry.title,
        manufacturer=server.attribution,
        model=server.name,
        sw_version=server.version,
        entry_type=dr.DeviceEntryType.SERVICE,
    )
    for subentry in entry.subentries.values():
        if subentry.subentry_type != SUBENTRY_ROOM:
            continue
        room = Room(hass, entry, subentry)
        room.device_id = devices.async_get_or_create(
            config_entry_id=entry.entry_id,
            config_subentry_id=subentry.subentry_id,
            identifiers={(DOMAIN, subentry.subentry_id)},
            name=subentry.title,
            suggested_area=subentry.title,
            manufacturer=server.attribution,
            model="Listening room",
            **_via(devices, server_device),
        ).id
        data.rooms[subentry.subentry_id] = room
    entry.runtime_data = data

    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    # Entities exist (and the mute switch has restored its state): start listening.
    for room in data.rooms.values():
        room.async_start()

    @callback
    def refresh_names(_now: datetime) -> None:
        """A device added or renamed, an area too: the rooms' streams get the home's names again."""
        names = exposed_names(hass)
        for room in data.rooms.values():
            room.async_update_names(names)

    entry.async_on_unload(async_track_time_interval(hass, refresh_names, NAMES_REFRESH_INTERVAL))
    entry.async_on_unload(entry.add_update_listener(_async_reload))
    return True


def _via(devices: dr.DeviceRegistry, server_device: dr.DeviceEntry) -> dict[str, Any]:
    """A room device hangs under its server's: by the server device's id where HA takes it
    (2026.8 deprecated `via_device`, identifiers being unique per entry only), else by its identifiers."""
    if "via_device_id" in inspect.signature(devices.async_get_or_create).parameters:
        return {"via_device_id": server_device.id}
    return {"via_device": next(iter(server_device.identifiers))}


async def _async_reload(hass: HomeAssistant, entry: AudioInteractionConfigEntry) -> None:
    """Rooms added, edited or removed, or the server moved: start again with the new set."""
    await hass.config_entries.async_reload(entry.entry_id)


async def async_unload_entry(hass: HomeAssistant, entry: AudioInteractionConfigEntry) -> bool:
    """Unload platforms; the rooms' tasks (and their ffmpeg processes) end with the entry."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)
