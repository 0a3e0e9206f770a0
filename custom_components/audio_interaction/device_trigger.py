"""Device triggers of a room: "<sound> detected", "responded", "urgent response".

Each delegates to an event trigger on the bus event the room fires, filtered
by the room's device id (and the label, or urgency).
"""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from homeassistant.components.device_automation import DEVICE_TRIGGER_BASE_SCHEMA
from homeassistant.components.homeassistant.triggers import event as event_trigger
from homeassistant.const import CONF_DEVICE_ID, CONF_DOMAIN, CONF_PLATFORM, CONF_TYPE
from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.trigger import TriggerActionType, TriggerInfo
from homeassistant.helpers.typing import ConfigType

from .const import (
    BUS_EVENT_RESPONSE,
    BUS_EVENT_SOUND,
    DOMAIN,
    SOUND_LABELS,
    SOUND_TRIGGER_SUFFIX,
    TRIGGER_RESPONDED,
    TRIGGER_URGENT_RESPONSE,
)

SOUND_TRIGGERS = {label + SOUND_TRIGGER_SUFFIX: label for label in SOUND_LABELS}
TRIGGER_TYPES = (*SOUND_TRIGGERS, TRIGGER_RESPONDED, TRIGGER_URGENT_RESPONSE)

TRIGGER_SCHEMA = DEVICE_TRIGGER_BASE_SCHEMA.extend({vol.Required(CONF_TYPE): vol.In(TRIGGER_TYPES)})


async def async_get_triggers(hass: HomeAssistant, device_id: str) -> list[dict[str, Any]]:
    """All triggers of a room device (the server's own device has none)."""
    device = dr.async_get(hass).async_get(device_id)
    # A room's device is named by its room subentry's id (`DeviceEntry`'s subentry fields
    # changed in HA 2026.10; the identifiers did not).
    names = {name for domain, name in device.identifiers if domain == DOMAIN} if device else set()
    if not any(names & entry.subentries.keys() for entry in hass.config_entries.async_entries(DOMAIN)):
        return []
    return [
        {CONF_PLATFORM: "device", CONF_DOMAIN: DOMAIN, CONF_DEVICE_ID: device_id, CONF_TYPE: trigger_type}
        for trigger_type in TRIGGER_TYPES
    ]


async def async_attach_trigger(
    hass: HomeAssistant,
    config: ConfigType,
    action: TriggerActionType,
    trigger_info: TriggerInfo,
) -> CALLBACK_TYPE:
    trigger_type = config[CONF_TYPE]
    event_data: dict[str, Any] = {CONF_DEVICE_ID: config[CONF_DEVICE_ID]}
    if trigger_type in SOUND_TRIGGERS:
        event_type = BUS_EVENT_SOUND
        event_data["label"] = SOUND_TRIGGERS[trigger_type]
    else:
        event_type = BUS_EVENT_RESPONSE
        if trigger_type == TRIGGER_URGENT_RESPONSE:
            event_data["urgent"] = True
    event_config = event_trigger.TRIGGER_SCHEMA(
        {
            event_trigger.CONF_PLATFORM: "event",
            event_trigger.CONF_EVENT_TYPE: event_type,
            event_trigger.CONF_EVENT_DATA: event_data,
        }
    )
    return await event_trigger.async_attach_trigger(hass, event_config, action, trigger_info, platform_type="device")
