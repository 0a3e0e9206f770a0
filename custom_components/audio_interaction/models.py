"""Runtime data of a config entry (one server and its rooms)."""

from __future__ import annotations

from dataclasses import dataclass, field

from homeassistant.config_entries import ConfigEntry

from .api import ServerInfo
from .room import Room


@dataclass
class AudioInteractionData:
    """What a loaded entry holds: the server's self-description and the rooms by subentry id."""

    server: ServerInfo
    rooms: dict[str, Room] = field(default_factory=dict)


type AudioInteractionConfigEntry = ConfigEntry[AudioInteractionData]
