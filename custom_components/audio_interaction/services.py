"""Actions: send an instruction into a room's stream; analyze a media file through the server."""

from __future__ import annotations

from typing import TYPE_CHECKING

import voluptuous as vol

from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse, callback
from homeassistant.exceptions import ServiceValidationError
from homeassistant.helpers import config_validation as cv

from .analyze import async_analyze_file, resolve_media_file
from .const import (
    ATTR_CONFIG_ENTRY_ID,
    ATTR_FILE,
    ATTR_ROOM,
    ATTR_TEXT,
    DOMAIN,
    SERVICE_ANALYZE_FILE,
    SERVICE_INSTRUCT,
)

if TYPE_CHECKING:
    from .models import AudioInteractionConfigEntry
    from .room import Room

INSTRUCT_SCHEMA = vol.Schema({vol.Required(ATTR_ROOM): cv.string, vol.Required(ATTR_TEXT): cv.string})
ANALYZE_SCHEMA = vol.Schema(
    {vol.Required(ATTR_FILE): cv.string, vol.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}
)


def _loaded_entries(hass: HomeAssistant) -> list[AudioInteractionConfigEntry]:
    return [
        entry
        for entry in hass.config_entries.async_entries(DOMAIN)
        if entry.state is ConfigEntryState.LOADED
    ]


def _room_for_device(hass: HomeAssistant, device_id: str) -> Room:
    for entry in _loaded_entries(hass):
        for room in entry.runtime_data.rooms.values():
            if device_id in (room.device_id, room.subentry_id):
                return room
    raise ServiceValidationError(
        translation_domain=DOMAIN, translation_key="unknown_room", translation_placeholders={"room": device_id}
    )


def _entry_for_call(hass: HomeAssistant, entry_id: str | None) -> AudioInteractionConfigEntry:
    entries = _loaded_entries(hass)
    for entry in entries:
        if entry_id in (None, entry.entry_id):
            return entry
    raise ServiceValidationError(translation_domain=DOMAIN, translation_key="no_server")


@callback
def async_register_services(hass: HomeAssistant) -> None:
    async def instruct(call: ServiceCall) -> None:
        await _room_for_device(hass, call.data[ATTR_ROOM]).async_instruct(call.data[ATTR_TEXT])

    async def analyze_file(call: ServiceCall) -> ServiceResponse:
        entry = _entry_for_call(hass, call.data.get(ATTR_CONFIG_ENTRY_ID))
        path = await hass.async_add_executor_job(resolve_media_file, hass, call.data[ATTR_FILE])
        events = await async_analyze_file(hass, entry.data[CONF_HOST], entry.data[CONF_PORT], path)
        return {"events": events}

    hass.services.async_register(DOMAIN, SERVICE_INSTRUCT, instruct, schema=INSTRUCT_SCHEMA)
    hass.services.async_register(
        DOMAIN, SERVICE_ANALYZE_FILE, analyze_file, schema=ANALYZE_SCHEMA, supports_response=SupportsResponse.ONLY
    )
