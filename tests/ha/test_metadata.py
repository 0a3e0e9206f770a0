"""What hassfest and HACS would check (neither runs on custom components here): metadata files.

Also enforces the one source of truth: the wire-protocol names the integration
copies from model_runtime/constants.py must match it.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
import re
import tomllib

from awesomeversion import AwesomeVersion
from packaging.requirements import Requirement
import yaml
from PIL import Image

import homeassistant
from homeassistant.const import __version__ as HA_VERSION
from homeassistant.core import HomeAssistant
from homeassistant.loader import async_get_integration

from custom_components.audio_interaction import const
from custom_components.audio_interaction.const import DOMAIN
from custom_components.audio_interaction.device_trigger import TRIGGER_TYPES

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "custom_components" / DOMAIN
HA_COMPONENTS = Path(homeassistant.__file__).parent / "components"
# HACS' hacs.json keys (https://hacs.xyz/docs/publish/start#hacsjson).
HACS_KEYS = {
    "name", "content_in_root", "zip_release", "filename", "hide_default_branch",
    "country", "homeassistant", "persistent_directory", "render_readme", "hacs",
}


def load_json(name: str) -> dict:
    return json.loads((COMPONENT / name).read_text())


def runtime_constants() -> dict[str, object]:
    """Evaluate model_runtime/constants.py's plain assignments (ast; nothing imported)."""
    tree = ast.parse((REPO / "model_runtime" / "constants.py").read_text())
    values: dict[str, object] = {}
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            try:
                value = eval(compile(ast.Expression(node.value), "constants.py", "eval"), {}, dict(values))
            except Exception:  # noqa: BLE001 - an expression we do not need
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    values[target.id] = value
    return values


def test_protocol_names_match_the_runtime() -> None:
    runtime = runtime_constants()
    copied = [
        "SAMPLE_RATE", "WYOMING_EVENT_PREFIX", "WYOMING_LISTEN", "WYOMING_INSTRUCT", "MODEL_DECISION_NAME",
        "DEFAULT_PORT", "EVENT_DECISION", "EVENT_RESPONSE", "EVENT_SOUND", "EVENT_SPEECH",
        "EVENT_TRANSCRIPT", "EVENT_ERROR", "WYOMING_ERROR_MODEL_LOADING", "SOUND_LABELS", "ALARM_LABELS",
        "MAX_TRANSCRIPT_NAMES", "MAX_TRANSCRIPT_NAME_CHARS", "WYOMING_ERROR_TOO_MANY_STREAMS",
        "WYOMING_ERROR_ENGINE_FAILED", "WYOMING_ERROR_AUDIO_SKIPPED",
    ]
    for name in copied:
        assert getattr(const, name) == runtime[name], f"const.{name} drifted from model_runtime/constants.py"


async def test_loader_reads_our_manifest(hass: HomeAssistant) -> None:
    integration = await async_get_integration(hass, DOMAIN)
    assert not integration.is_built_in
    assert integration.config_flow
    assert integration.manifest["iot_class"] == "local_push"
    assert integration.dependencies == ["ffmpeg"]
    assert "_wyoming._tcp.local." in integration.manifest["zeroconf"]
    assert AwesomeVersion(integration.manifest["version"]).valid


def test_manifest_keys_sorted_as_hassfest_wants() -> None:
    manifest = load_json("manifest.json")
    keys = list(manifest)
    assert keys[:2] == ["domain", "name"] and keys[2:] == sorted(keys[2:])
    assert set(manifest) >= {"codeowners", "documentation", "issue_tracker", "integration_type", "version"}


def test_wyoming_requirement_in_step_with_core_and_runtime() -> None:
    """The same wire protocol on both ends, and no fight with HA's own wyoming pin in one env."""
    (requirement,) = [Requirement(r) for r in load_json("manifest.json")["requirements"]]
    assert requirement.name == "wyoming"
    core = json.loads((HA_COMPONENTS / "wyoming" / "manifest.json").read_text())["requirements"][0]
    core_version = core.split("==")[1]
    runtime_deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    runtime_version = next(d for d in runtime_deps if d.startswith("wyoming==")).split("==")[1]
    assert requirement.specifier.contains(core_version), "must coexist with HA core's wyoming pin"
    assert requirement.specifier.contains(runtime_version), "must speak the runtime's protocol version"
    assert f"wyoming=={core_version}" in (REPO / "tests" / "ha" / "requirements.txt").read_text()


def test_hacs_json() -> None:
    hacs = json.loads((REPO / "hacs.json").read_text())
    assert set(hacs) <= HACS_KEYS
    assert hacs["name"]
    assert AwesomeVersion(hacs["homeassistant"]) <= AwesomeVersion(HA_VERSION)
    # HACS installs exactly one integration from custom_components/.
    assert [p.name for p in (REPO / "custom_components").iterdir() if p.is_dir() and p.name != "__pycache__"] == [DOMAIN]


def test_brand_images() -> None:
    # HA 2026.3+ and HACS show a custom integration's own brand/ images (drawn by
    # scripts/draw-brand); HA's brand rules: a square icon of 256 px (@2x 512), a logo
    # whose shorter side is 128-256 px (@2x 256-512), PNG with transparency.
    with Image.open(COMPONENT / "brand" / "icon.png") as icon, Image.open(COMPONENT / "brand" / "icon@2x.png") as icon2x:
        assert (icon.format, icon.mode, icon.size, icon2x.size) == ("PNG", "RGBA", (256, 256), (512, 512))
    with Image.open(COMPONENT / "brand" / "logo.png") as logo, Image.open(COMPONENT / "brand" / "logo@2x.png") as logo2x:
        assert (logo.format, logo.mode) == ("PNG", "RGBA")
        assert 128 <= min(logo.size) <= 256 and 256 <= min(logo2x.size) <= 512
        assert logo2x.size == (2 * logo.width, 2 * logo.height)
        assert logo.getpixel((0, 0))[3] == 0  # transparent around the rounded badge


def test_translations_complete() -> None:
    strings = load_json("strings.json")
    assert load_json("translations/en.json") == strings
    assert set(strings["device_automation"]["trigger_type"]) == set(TRIGGER_TYPES)
    sound = strings["entity"]["event"]["sound"]["state_attributes"]["event_type"]["state"]
    assert set(sound) == set(const.SOUND_LABELS)
    # Every translation key the code raises or registers has its text.
    code = "\n".join(p.read_text() for p in COMPONENT.glob("*.py"))
    for key in set(re.findall(r'translation_key="(\w+)"', code)) - {"source_failing", "source_silent"}:
        assert key in strings["exceptions"], key
    assert {"source_failing", "source_silent"} <= set(strings["issues"])
    entity_keys = re.findall(r'\n    key = "(\w+)"', code)
    assert len(entity_keys) == 8
    for key in entity_keys:
        assert any(key in platform for platform in strings["entity"].values()), key
    services = yaml.safe_load((COMPONENT / "services.yaml").read_text())
    assert set(services) == set(strings["services"]) == set(load_json("icons.json")["services"])
    for name, service in services.items():
        assert set(service["fields"]) == set(strings["services"][name]["fields"])


def test_quality_scale_covers_every_rule() -> None:
    rules = yaml.safe_load((COMPONENT / "quality_scale.yaml").read_text())["rules"]
    all_rules: set[str] = set()
    for path in HA_COMPONENTS.glob("*/quality_scale.yaml"):
        all_rules |= set(yaml.safe_load(path.read_text())["rules"])
    assert set(rules) == all_rules
    for name, rule in rules.items():
        if isinstance(rule, str):
            assert rule == "done", name
        else:
            assert rule["status"] in ("done", "exempt", "todo") and rule.get("comment"), name
