"""Config flow: the server (user, Supervisor add-on discovery, zeroconf, reconfigure); rooms as subentries."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_HOST, CONF_NAME, CONF_PORT
from homeassistant.core import callback
from homeassistant.helpers import selector
from homeassistant.helpers.service_info.hassio import HassioServiceInfo
from homeassistant.helpers.service_info.zeroconf import ZeroconfServiceInfo

from .api import CannotConnect, NotOurServer, ServerInfo, async_get_server_info
from .const import (
    CONF_CAMERA,
    CONF_COMMANDS,
    CONF_MEDIA_PLAYER,
    CONF_NOTIFY,
    CONF_SATELLITE,
    CONF_SILENT,
    CONF_SOURCE,
    CONF_TTS,
    DEFAULT_PORT,
    DOMAIN,
    SUBENTRY_ROOM,
)
from .source import validate_source

_LOGGER = logging.getLogger(__name__)


def _server_schema(host: str = "", port: int = DEFAULT_PORT) -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_HOST, default=host): str,
            vol.Required(CONF_PORT, default=port): vol.All(vol.Coerce(int), vol.Range(min=1, max=65535)),
        }
    )


def _unique_id(host: str, port: int) -> str:
    return f"{host}:{port}"


async def _async_check_server(host: str, port: int) -> tuple[ServerInfo | None, str | None]:
    """(server, None) or (None, error key)."""
    try:
        return await async_get_server_info(host, port), None
    except CannotConnect as err:
        _LOGGER.debug("Cannot connect to %s:%s: %s", host, port, err)
        return None, "cannot_connect"
    except NotOurServer:
        return None, "not_our_server"


class AudioInteractionConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add an Audio-Interaction server."""

    VERSION = 1

    _host: str
    _port: int
    _title: str

    @classmethod
    @callback
    def async_get_supported_subentry_types(cls, config_entry: ConfigEntry) -> dict[str, type[ConfigSubentryFlow]]:
        return {SUBENTRY_ROOM: RoomSubentryFlow}

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            await self.async_set_unique_id(_unique_id(host, port))
            self._abort_if_unique_id_configured()
            self._async_abort_entries_match({CONF_HOST: host, CONF_PORT: port})  # (a discovered one)
            server, error = await _async_check_server(host, port)
            if server is not None:
                return self.async_create_entry(title=server.title, data={CONF_HOST: host, CONF_PORT: port})
            errors["base"] = error  # type: ignore[assignment]
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_server_schema(), user_input),
            errors=errors,
        )

    async def async_step_hassio(self, discovery_info: HassioServiceInfo) -> ConfigFlowResult:
        """The add-on announced itself through the Supervisor: {"uri": "tcp://host:port"}."""
        uri = urlsplit(discovery_info.config.get("uri", ""))
        if uri.hostname is None or uri.port is None:
            return self.async_abort(reason="invalid_discovery")
        return await self._async_discovered(uri.hostname, uri.port, discovery_info.uuid, discovery_info.name)

    async def async_step_zeroconf(self, discovery_info: ZeroconfServiceInfo) -> ConfigFlowResult:
        """A `_wyoming._tcp` service: ours only if its info says so (HA's wyoming gets a flow too)."""
        if discovery_info.port is None:
            return self.async_abort(reason="invalid_discovery")
        return await self._async_discovered(discovery_info.host, discovery_info.port, discovery_info.name, None)

    async def _async_discovered(self, host: str, port: int, server_id: str, name: str | None) -> ConfigFlowResult:
        """`server_id` names the server wherever it is (the add-on's uuid, the zeroconf service name):
        a configured server that turns up at another address (a new DHCP lease, another host) has
        its entry moved there and reloaded, with its rooms."""
        server, error = await _async_check_server(host, port)
        if server is None:
            return self.async_abort(reason=error or "cannot_connect")
        self._async_adopt_server_id(host, port, server_id)
        await self.async_set_unique_id(server_id)
        # (The entry's update listener reloads it when the address changed: HA 2026.12 refuses
        # a flow's reload on top of an update listener's.)
        self._abort_if_unique_id_configured(updates={CONF_HOST: host, CONF_PORT: port}, reload_on_update=False)
        self._host, self._port, self._title = host, port, name or server.title
        self.context["title_placeholders"] = {"name": self._title}
        return await self.async_step_discovery_confirm()

    @callback
    def _async_adopt_server_id(self, host: str, port: int, server_id: str) -> None:
        """An entry at this address made before the server's id was known (by hand, or keyed by
        its address by an older version) is this server: it takes the id, so a move finds it."""
        entries = self._async_current_entries(include_ignore=False)
        if any(entry.unique_id == server_id for entry in entries):
            return  # (known already: `updates` moves it)
        for entry in entries:
            if (entry.data.get(CONF_HOST), entry.data.get(CONF_PORT)) == (host, port):
                self.hass.config_entries.async_update_entry(entry, unique_id=server_id)
                return

    async def async_step_discovery_confirm(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        if user_input is None:
            return self.async_show_form(
                step_id="discovery_confirm",
                description_placeholders={"name": self._title, "host": self._host, "port": str(self._port)},
            )
        return self.async_create_entry(title=self._title, data={CONF_HOST: self._host, CONF_PORT: self._port})

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Point the entry at another host or port (the add-on moved); rooms are kept."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            host, port = user_input[CONF_HOST].strip(), user_input[CONF_PORT]
            # An entry keyed by its address is keyed by the new one; a discovered server keeps its id.
            unique_id = entry.unique_id
            if unique_id == _unique_id(entry.data[CONF_HOST], entry.data[CONF_PORT]):
                unique_id = _unique_id(host, port)
            if (host, port) != (entry.data[CONF_HOST], entry.data[CONF_PORT]):
                if unique_id != entry.unique_id:
                    await self.async_set_unique_id(unique_id)
                    self._abort_if_unique_id_configured()
                self._async_abort_entries_match({CONF_HOST: host, CONF_PORT: port})  # another entry's server
            server, error = await _async_check_server(host, port)
            if server is not None:
                # The entry's update listener reloads it when something changed (HA 2026.12
                # refuses `async_update_reload_and_abort` next to an update listener); the same
                # address again reconnects too.
                if not self.hass.config_entries.async_update_entry(
                    entry, unique_id=unique_id, data={CONF_HOST: host, CONF_PORT: port}
                ):
                    self.hass.config_entries.async_schedule_reload(entry.entry_id)
                return self.async_abort(reason="reconfigure_successful")
            errors["base"] = error  # type: ignore[assignment]
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _server_schema(), user_input or dict(entry.data)
            ),
            errors=errors,
        )


def _room_schema() -> vol.Schema:
    return vol.Schema(
        {
            vol.Required(CONF_NAME): selector.TextSelector(),
            vol.Optional(CONF_CAMERA): selector.EntitySelector(selector.EntitySelectorConfig(domain="camera")),
            vol.Optional(CONF_SOURCE): selector.TextSelector(),
            vol.Optional(CONF_SATELLITE): selector.EntitySelector(
                selector.EntitySelectorConfig(domain="assist_satellite")
            ),
            vol.Optional(CONF_MEDIA_PLAYER): selector.EntitySelector(
                selector.EntitySelectorConfig(domain="media_player")
            ),
            vol.Optional(CONF_TTS): selector.EntitySelector(selector.EntitySelectorConfig(domain="tts")),
            vol.Optional(CONF_NOTIFY): selector.TextSelector(),
            vol.Optional(CONF_SILENT, default=False): selector.BooleanSelector(),
            vol.Optional(CONF_COMMANDS, default=False): selector.BooleanSelector(),
        }
    )


def _room_errors(user_input: dict[str, Any], other_names: set[str]) -> dict[str, str]:
    camera, source = user_input.get(CONF_CAMERA), (user_input.get(CONF_SOURCE) or "").strip()
    if user_input[CONF_NAME].strip().casefold() in other_names:
        return {CONF_NAME: "room_exists"}
    if [bool(camera), bool(source), bool(user_input.get(CONF_SATELLITE))].count(True) != 1:
        return {"base": "one_source"}
    if source and (error := validate_source(source)):
        return {CONF_SOURCE: error}
    return {}


def _room_data(user_input: dict[str, Any]) -> dict[str, Any]:
    """The subentry data: what was filled in, stripped, without the name (that is the title)."""
    data = {key: value.strip() if isinstance(value, str) else value for key, value in user_input.items()}
    data.pop(CONF_NAME)
    return {key: value for key, value in data.items() if value not in ("", None)}


class RoomSubentryFlow(ConfigSubentryFlow):
    """Add or edit a room: its audio source, speaker, TTS, notify target, silent flag."""

    def _other_names(self, exclude: str | None = None) -> set[str]:
        return {
            subentry.title.casefold()
            for subentry in self._get_entry().subentries.values()
            if subentry.subentry_id != exclude
        }

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = _room_errors(user_input, self._other_names())
            if not errors:
                return self.async_create_entry(title=user_input[CONF_NAME].strip(), data=_room_data(user_input))
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_room_schema(), user_input),
            errors=errors,
        )

    async def async_step_reconfigure(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = _room_errors(user_input, self._other_names(subentry.subentry_id))
            if not errors:
                return self.async_update_and_abort(
                    self._get_entry(), subentry, title=user_input[CONF_NAME].strip(), data=_room_data(user_input)
                )
        suggested = user_input or {CONF_NAME: subentry.title, **subentry.data}
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(_room_schema(), suggested),
            errors=errors,
        )
