"""Config flow paths against real servers: ours (subprocess), another Wyoming server, nothing."""

from __future__ import annotations

from ipaddress import ip_address
from unittest.mock import patch

from homeassistant.config_entries import SOURCE_HASSIO, ConfigEntryState, SOURCE_RECONFIGURE, SOURCE_USER, SOURCE_ZEROCONF
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PORT
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import device_registry as dr
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from custom_components.audio_interaction.const import (
    CONF_CAMERA,
    CONF_COMMANDS,
    CONF_MEDIA_PLAYER,
    CONF_SILENT,
    CONF_SOURCE,
    DOMAIN,
    SUBENTRY_ROOM,
)
from ha_helpers import add_entry, free_port, room


def zeroconf_info(host: str, port: int | None) -> ZeroconfServiceInfo:
    return ZeroconfServiceInfo(
        ip_address=ip_address(host), ip_addresses=[ip_address(host)], hostname="addon.local.",
        name="audio-interaction._wyoming._tcp.local.", port=port, type="_wyoming._tcp.local.", properties={},
    )


def hassio_info(uri: str) -> HassioServiceInfo:
    return HassioServiceInfo(config={"uri": uri}, name="Audio-Interaction add-on", slug="audio_interaction", uuid="1234")


async def test_user_flow(hass: HomeAssistant, audio_server, other_wyoming_server) -> None:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM and result["errors"] == {}

    # Nothing listening: cannot_connect, the form keeps what was typed.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    # A Wyoming server, but Piper: not_our_server.
    host, port = other_wyoming_server
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_HOST: host, CONF_PORT: port})
    assert result["errors"] == {"base": "not_our_server"}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: f" {audio_server.host} ", CONF_PORT: audio_server.port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Audio-Interaction"
    assert result["data"] == {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}
    entry = result["result"]
    assert entry.unique_id == f"{audio_server.host}:{audio_server.port}"
    await hass.async_block_till_done()
    server_device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, entry.entry_id)})
    assert server_device.model == "audio-interaction" and server_device.manufacturer == "Audio-Interaction"

    # The same server again: aborted.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER}, data={CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"


async def test_hassio_discovery(hass: HomeAssistant, audio_server, other_wyoming_server) -> None:
    uri = f"tcp://{audio_server.host}:{audio_server.port}"
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_HASSIO}, data=hassio_info(uri))
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "discovery_confirm"
    assert result["description_placeholders"]["name"] == "Audio-Interaction add-on"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Audio-Interaction add-on"
    await hass.async_block_till_done()

    # Announced again (every add-on start): nothing new.
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_HASSIO}, data=hassio_info(uri))
    assert result["reason"] == "already_configured"
    (entry,) = hass.config_entries.async_entries(DOMAIN)
    assert entry.unique_id == "1234"  # the add-on's uuid: it names the server wherever it is

    # Announced at another address (the add-on moved): the entry follows it and is reloaded,
    # once (its update listener's reload; HA 2026.12 refuses the flow's on top of it).
    loaded = entry.runtime_data
    moved = f"tcp://localhost:{audio_server.port}"
    with reloads_counted(hass) as reloads:
        result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_HASSIO}, data=hassio_info(moved))
        assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
        await hass.async_block_till_done()
    assert reloads.call_count == 1
    assert entry.data == {CONF_HOST: "localhost", CONF_PORT: audio_server.port}
    assert entry.state is ConfigEntryState.LOADED and entry.runtime_data is not loaded
    assert len(hass.config_entries.async_entries(DOMAIN)) == 1

    host, port = other_wyoming_server
    for uri, reason in (
        (f"tcp://{host}:{port}", "not_our_server"),
        (f"tcp://127.0.0.1:{free_port()}", "cannot_connect"),
        ("not a uri", "invalid_discovery"),
    ):
        result = await hass.config_entries.flow.async_init(
            DOMAIN, context={"source": SOURCE_HASSIO}, data=hassio_info(uri)
        )
        assert result["type"] is FlowResultType.ABORT and result["reason"] == reason


def reloads_counted(hass: HomeAssistant):
    """Count the config entry reloads (they still happen)."""
    return patch.object(hass.config_entries, "async_reload", wraps=hass.config_entries.async_reload)


async def test_zeroconf_discovery(hass: HomeAssistant, audio_server, own_audio_server, other_wyoming_server) -> None:
    # HA's own wyoming integration claims the same service type: Piper is not for us.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(*other_wyoming_server)
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "not_our_server"
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info("127.0.0.1", None)
    )
    assert result["reason"] == "invalid_discovery"

    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(audio_server.host, audio_server.port)
    )
    assert result["type"] is FlowResultType.FORM and result["step_id"] == "discovery_confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY and result["title"] == "Audio-Interaction"
    await hass.async_block_till_done()
    entry = result["result"]
    assert entry.unique_id == "audio-interaction._wyoming._tcp.local."

    # The same service at another address (a new DHCP lease, another port): the entry follows it.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(own_audio_server.host, own_audio_server.port)
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    await hass.async_block_till_done()
    assert entry.data == {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
    assert entry.state is ConfigEntryState.LOADED


async def test_a_server_added_by_hand_is_followed_once_discovered(
    hass: HomeAssistant, audio_server, own_audio_server
) -> None:
    entry = await add_entry(hass, audio_server, room("Hall", source="rtsp://127.0.0.1:1/none"))
    # Discovered where it was added: the entry takes the service's name as its id, nothing else changes.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(audio_server.host, audio_server.port)
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    assert entry.unique_id == "audio-interaction._wyoming._tcp.local."
    assert entry.data == {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}
    # Then it moves: the entry follows, with its rooms.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_ZEROCONF}, data=zeroconf_info(own_audio_server.host, own_audio_server.port)
    )
    assert result["reason"] == "already_configured"
    await hass.async_block_till_done()
    assert entry.data == {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
    assert entry.state is ConfigEntryState.LOADED and [s.title for s in entry.subentries.values()] == ["Hall"]
    # Added by hand at its new address: that server is configured already.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_USER},
        data={CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port},
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"
    # Reconfigured by hand to another address, it keeps the service's name as its id.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}
    )
    assert result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert entry.unique_id == "audio-interaction._wyoming._tcp.local."
    assert entry.data == {CONF_HOST: audio_server.host, CONF_PORT: audio_server.port}


async def test_reconfigure(hass: HomeAssistant, audio_server, own_audio_server, other_wyoming_server) -> None:
    entry = await add_entry(hass, audio_server, room("Hall", source="rtsp://127.0.0.1:1/none"))
    other = await add_entry(hass, own_audio_server)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    assert result["step_id"] == "reconfigure"

    host, port = other_wyoming_server
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_HOST: host, CONF_PORT: port})
    assert result["errors"] == {"base": "not_our_server"}
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: "127.0.0.1", CONF_PORT: free_port()}
    )
    assert result["errors"] == {"base": "cannot_connect"}
    # Another entry's server: refused.
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "already_configured"

    await hass.config_entries.async_remove(other.entry_id)
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    with reloads_counted(hass) as reloads:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
        )
        assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
    assert reloads.call_count == 1  # (the update listener's: HA 2026.12 refuses a second from the flow)
    assert entry.data == {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
    assert entry.unique_id == f"{own_audio_server.host}:{own_audio_server.port}"
    assert [s.title for s in entry.subentries.values()] == ["Hall"]  # rooms are kept

    # The same address again: nothing changed, but the user asked to connect again.
    result = await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry.entry_id}
    )
    with reloads_counted(hass) as reloads:
        result = await hass.config_entries.flow.async_configure(
            result["flow_id"], {CONF_HOST: own_audio_server.host, CONF_PORT: own_audio_server.port}
        )
        assert result["reason"] == "reconfigure_successful"
        await hass.async_block_till_done()
    assert reloads.call_count == 1 and entry.state is ConfigEntryState.LOADED


async def test_rooms_are_subentries(hass: HomeAssistant, audio_server) -> None:
    entry = await add_entry(hass, audio_server)
    assert entry.supported_subentry_types == {SUBENTRY_ROOM: {"supports_reconfigure": True}}
    flows = hass.config_entries.subentries

    result = await flows.async_init((entry.entry_id, SUBENTRY_ROOM), context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    for user_input, errors in (
        ({CONF_NAME: "Kitchen"}, {"base": "one_source"}),
        ({CONF_NAME: "Kitchen", CONF_CAMERA: "camera.door", CONF_SOURCE: "pulse:default"}, {"base": "one_source"}),
        ({CONF_NAME: "Kitchen", CONF_SOURCE: "relative/file.wav"}, {CONF_SOURCE: "invalid_source"}),
        ({CONF_NAME: "Kitchen", CONF_SOURCE: "alsa:"}, {CONF_SOURCE: "invalid_source"}),
    ):
        result = await flows.async_configure(result["flow_id"], user_input)
        assert result["errors"] == errors, user_input
    result = await flows.async_configure(
        result["flow_id"],
        {CONF_NAME: " Kitchen ", CONF_SOURCE: "alsa:hw:1,0", CONF_MEDIA_PLAYER: "media_player.kitchen", CONF_SILENT: False,
         CONF_COMMANDS: True},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    (kitchen,) = entry.subentries.values()
    assert kitchen.title == "Kitchen"
    assert dict(kitchen.data) == {
        CONF_SOURCE: "alsa:hw:1,0", CONF_MEDIA_PLAYER: "media_player.kitchen", CONF_SILENT: False, CONF_COMMANDS: True,
    }
    # The entry reloaded with the new room: a device with its entities.
    device = dr.async_get(hass).async_get_device(identifiers={(DOMAIN, kitchen.subentry_id)})
    assert device is not None and device.suggested_area == "Kitchen"
    assert hass.states.get("switch.kitchen_mute") is not None

    result = await flows.async_init((entry.entry_id, SUBENTRY_ROOM), context={"source": SOURCE_USER})
    result = await flows.async_configure(result["flow_id"], {CONF_NAME: "kitchen", CONF_SOURCE: "pulse:default"})
    assert result["errors"] == {CONF_NAME: "room_exists"}
    result = await flows.async_configure(result["flow_id"], {CONF_NAME: "Office", CONF_SOURCE: "http://127.0.0.1:1/a.mp3"})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()

    # Edit the kitchen: another name is fine, the office's is not.
    result = await flows.async_init(
        (entry.entry_id, SUBENTRY_ROOM), context={"source": SOURCE_RECONFIGURE, "subentry_id": kitchen.subentry_id}
    )
    assert result["step_id"] == "reconfigure"
    result = await flows.async_configure(result["flow_id"], {CONF_NAME: "Office", CONF_SOURCE: "pulse:default"})
    assert result["errors"] == {CONF_NAME: "room_exists"}
    result = await flows.async_configure(
        result["flow_id"], {CONF_NAME: "Kitchen", CONF_SOURCE: "pulse:default", CONF_SILENT: True}
    )
    assert result["type"] is FlowResultType.ABORT and result["reason"] == "reconfigure_successful"
    await hass.async_block_till_done()
    assert dict(entry.subentries[kitchen.subentry_id].data) == {
        CONF_SOURCE: "pulse:default", CONF_SILENT: True, CONF_COMMANDS: False,
    }

    # Removing a room removes its device.
    assert hass.config_entries.async_remove_subentry(entry, kitchen.subentry_id)
    await hass.async_block_till_done()
    assert dr.async_get(hass).async_get_device(identifiers={(DOMAIN, kitchen.subentry_id)}) is None
