"""Diagnostics: the entry, the server, and each room's state (sources and targets redacted)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_HOST
from homeassistant.core import HomeAssistant

from .const import CONF_NOTIFY, CONF_SOURCE
from .models import AudioInteractionConfigEntry

# A source URL may carry a camera's password; host and notify target identify the home.
TO_REDACT = {CONF_HOST, CONF_SOURCE, CONF_NOTIFY, "text"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: AudioInteractionConfigEntry
) -> dict[str, Any]:
    data = entry.runtime_data
    rooms = []
    for subentry_id, room in data.rooms.items():
        stats = asdict(room.stats)
        stats["errors"] = list(room.stats.errors)
        stats["notices"] = list(room.stats.notices)
        rooms.append(
            {
                "subentry_id": subentry_id,
                "title": room.name,
                "config": async_redact_data(room.config, TO_REDACT),
                "connected": room.connected,
                "muted": room.muted,
                "speech": room.speech,
                "alarms_sounding": sorted(room.alarms),
                "source": {
                    "running": room.source.running,
                    "failures": room.source.failures,
                    "last_error": room.source.last_error is not None,
                },
                "last_response": async_redact_data(room.last_response or {}, TO_REDACT),
                "stats": stats,
            }
        )
    return {
        "entry": {"title": entry.title, "data": async_redact_data(dict(entry.data), TO_REDACT)},
        "server": asdict(data.server),
        "rooms": rooms,
    }
