"""The integration's metadata as HA's loader and HACS read it."""

from __future__ import annotations

import json
from pathlib import Path

from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.loader import async_get_integration
from awesomeversion import AwesomeVersion

from custom_components.audio_interaction.const import DOMAIN

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "custom_components" / DOMAIN


async def test_loader_reads_our_manifest(hass: HomeAssistant) -> None:
    integration = await async_get_integration(hass, DOMAIN)
    assert integration.domain == DOMAIN
    assert not integration.is_built_in
    assert integration.manifest["iot_class"] == "local_push"
    assert AwesomeVersion(integration.manifest["version"])


def test_hacs_json_declares_the_ha_we_test() -> None:
    hacs = json.loads((REPO / "hacs.json").read_text())
    assert hacs["name"]
    assert AwesomeVersion(hacs["homeassistant"]) <= AwesomeVersion(HA_VERSION)
    manifest = json.loads((COMPONENT / "manifest.json").read_text())
    assert set(manifest) >= {"domain", "name", "codeowners", "documentation", "iot_class", "version"}
