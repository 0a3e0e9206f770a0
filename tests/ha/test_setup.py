"""Entry set-up when the server is not there, or is not ours."""

from __future__ import annotations

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant

from ha_helpers import add_entry, free_port


class Nowhere:
    host = "127.0.0.1"
    port = free_port()


async def test_server_down_at_startup_retries(hass: HomeAssistant) -> None:
    entry = await add_entry(hass, Nowhere())
    assert entry.state is ConfigEntryState.SETUP_RETRY
    assert "Cannot connect to the Audio-Interaction server" in entry.reason


async def test_not_our_server_is_an_error(hass: HomeAssistant, other_wyoming_server) -> None:
    class Piper:
        host, port = other_wyoming_server

    entry = await add_entry(hass, Piper())
    assert entry.state is ConfigEntryState.SETUP_ERROR
    assert "is not an Audio-Interaction server" in entry.reason
