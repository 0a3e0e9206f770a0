"""Acting on a room's responses: speak them in the room, escalate urgent ones."""

from __future__ import annotations

import logging
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError

_LOGGER = logging.getLogger(__name__)


async def async_speak(
    hass: HomeAssistant, room: str, tts_entity: str | None, media_player: str, message: str
) -> None:
    """Say `message` on the room's speaker with `tts.speak`.

    Without a configured TTS entity the first one HA has is used.
    """
    if tts_entity is None:
        tts_entity = next(iter(sorted(hass.states.async_entity_ids("tts"))), None)
        if tts_entity is None:
            _LOGGER.warning("Room %s: no TTS entity to speak the reply with; add one", room)
            return
    await _async_call(
        hass,
        room,
        "tts",
        "speak",
        {"entity_id": tts_entity, "media_player_entity_id": media_player, "message": message},
    )


async def async_announce(hass: HomeAssistant, room: str, satellite: str, message: str) -> None:
    """Say `message` on the room's Assist satellite (`assist_satellite.announce`).

    The satellite ends the pipeline it is running to play it, then starts
    listening again (its wake-word stage feeds the room once more).
    """
    await _async_call(hass, room, "assist_satellite", "announce", {"entity_id": satellite, "message": message})


async def async_notify_urgent(hass: HomeAssistant, room: str, target: str, message: str) -> None:
    """Send an urgent reply to the room's notify target with high priority.

    `target` is a notify entity (notify.send_message) or a notify service
    such as `notify.mobile_app_phone` (whose data carries the push priority).
    """
    title = f"Urgent: {room}"
    if hass.states.get(target) is not None:
        await _async_call(
            hass, room, "notify", "send_message", {"entity_id": target, "title": title, "message": message}
        )
        return
    domain, _, service = target.partition(".")
    if not service:
        domain, service = "notify", target
    await _async_call(
        hass,
        room,
        domain,
        service,
        {
            "title": title,
            "message": message,
            # High priority on Android and iOS companion apps; other services ignore it.
            "data": {"priority": "high", "ttl": 0, "push": {"interruption-level": "time-sensitive"}},
        },
    )


async def _async_call(
    hass: HomeAssistant, room: str, domain: str, service: str, data: dict[str, Any]
) -> None:
    try:
        await hass.services.async_call(domain, service, data, blocking=True)
    except HomeAssistantError as err:
        _LOGGER.warning("Room %s: %s.%s failed: %s", room, domain, service, err)
