"""Home Assistant tests (pytest-homeassistant-custom-component, Python >= 3.13)."""

from __future__ import annotations

import pytest

pytest_plugins = "pytest_homeassistant_custom_component"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations):
    """Let HA's loader find custom_components/ in every test."""
    yield
