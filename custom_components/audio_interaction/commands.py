"""Spoken commands heard in a room without a voice satellite, carried out through Assist.

With the lite engine, "okay nabu, turn on the kitchen light" in a room gives a
`transcript` of the request after the wake word. In a room whose option
*Carry out spoken commands* is on, that text goes to HA's conversation agent
(the default one, as a satellite's pipeline would use), with the room's device
so "turn on the lights" means the room's area; the agent's answer is returned
for the room to speak. A room with an Assist satellite never comes here: its
pipeline carries out the command.
"""

from __future__ import annotations

import logging

from homeassistant.core import Context, HomeAssistant
from homeassistant.exceptions import HomeAssistantError

_LOGGER = logging.getLogger(__name__)


async def async_carry_out(hass: HomeAssistant, room: str, text: str, device_id: str | None) -> str | None:
    """Hand `text` to Assist's conversation agent; its spoken answer, or None if there is none."""
    if "conversation" not in hass.config.components:
        _LOGGER.warning(
            "Room %s heard the command %r but Assist's conversation integration is not loaded; "
            "add `conversation:` (or `default_config:`) to configuration.yaml", room, text,
        )
        return None
    from homeassistant.components import conversation  # (loaded: checked above)

    try:
        result = await conversation.async_converse(
            hass, text, None, Context(), language=hass.config.language, device_id=device_id
        )
    except HomeAssistantError as err:
        _LOGGER.warning("Room %s: Assist could not carry out %r: %s", room, text, err)
        return None
    answer = result.response.speech.get("plain", {}).get("speech") or None
    _LOGGER.debug("Room %s: %r -> %s: %r", room, text, result.response.response_type, answer)
    return answer
