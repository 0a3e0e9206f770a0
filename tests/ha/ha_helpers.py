"""Shared test helpers: a config entry for a running server, with rooms; waiting for state."""

from __future__ import annotations

import asyncio
import socket

import psutil
from collections.abc import Callable
from typing import Any

from pytest_homeassistant_custom_component.common import MockConfigEntry

from homeassistant.config_entries import ConfigSubentryData
from homeassistant.const import CONF_HOST, CONF_PORT
from homeassistant.core import HomeAssistant

from custom_components.audio_interaction.const import DOMAIN, SUBENTRY_ROOM


def room(title: str, **data: Any) -> ConfigSubentryData:
    return ConfigSubentryData(data=data, subentry_type=SUBENTRY_ROOM, title=title, unique_id=None)


async def add_entry(hass: HomeAssistant, server: Any, *rooms: ConfigSubentryData) -> MockConfigEntry:
    """Add and set up a config entry for `server` (an AudioServer) with these rooms."""
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Audio-Interaction",
        data={CONF_HOST: server.host, CONF_PORT: server.port},
        unique_id=f"{server.host}:{server.port}",
        subentries_data=list(rooms),
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


async def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll `condition` on the event loop until it is truthy (real time: a real server answers)."""
    async with asyncio.timeout(timeout):
        while not (result := condition()):
            await asyncio.sleep(0.05)
    return result


def room_of(entry: MockConfigEntry, title: str):
    return next(r for r in entry.runtime_data.rooms.values() if r.name == title)


def free_port() -> int:
    """A localhost port nobody listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ffmpeg_children() -> list[psutil.Process]:
    """The ffmpeg processes this test process started (HA's ffmpeg reading room sources)."""
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "ffmpeg"]
