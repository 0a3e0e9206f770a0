"""The add-on folder against the Supervisor's documented rules (written down here, no Docker).

Rules from the Supervisor's add-on configuration docs and its validator:
required keys, slug pattern, arch names, port keys, map volumes, startup
values, the options schema language (str/int/float/bool/list(...)/match(...),
ranges, `?` for optional), options that validate against their schema,
build_from images per arch, translations for every option and port.
"""

from __future__ import annotations

import argparse
import re
import struct
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from model_runtime import __version__
from model_runtime import constants as c
from model_runtime.server.app import add_arguments as add_serve_arguments

ADDON = Path(__file__).resolve().parents[2] / "addon"
REPO = ADDON.parent

ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
STARTUP = {"initialize", "system", "services", "application", "once"}
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
RE_PORT_KEY = re.compile(r"^\d+(?:/(?:tcp|udp))?$")
RE_VOLUME = re.compile(
    r"^(data|config|ssl|addons|backup|share|media|homeassistant_config|all_addon_configs|addon_config)(?::(rw|ro))?$"
)
RE_IMAGE = re.compile(r"^([a-zA-Z\-\.:\d{}]+/)*?([\-\w{}]+)/([\-\w{}]+)(:[\.\-\w{}]+)?$")
# The options schema language: one element type, optionally with a range, `?` = optional.
RE_ELEMENT = re.compile(
    r"^(?:bool|email|url|port|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>\d+)?,(?P<i_max>\d+)?\))?"
    r"|float(?:\((?P<f_min>[\d\.]+)?,(?P<f_max>[\d\.]+)?\))?"
    r"|match\((?P<match>.*)\)|list\((?P<list>.+)\))\??$"
)


def load(name: str):
    return yaml.safe_load((ADDON / name).read_text())


@pytest.fixture(scope="module")
def config():
    return load("config.yaml")


def check_value(element: str, value, key: str) -> None:
    """One option value against one schema element, as the Supervisor checks it."""
    match = RE_ELEMENT.match(element)
    assert match, f"{key}: unknown schema type {element!r}"
    assert value is not None, f"{key}: a value may not be null"
    bounds = {g[2:]: float(v) for g, v in match.groupdict().items() if v and g[1:2] == "_"}
    kind = element.rstrip("?").split("(")[0]
    if kind in ("str", "password"):
        assert isinstance(value, str), f"{key}: {value!r} is not a string"
        number = len(value)
    elif kind == "int":
        assert isinstance(value, int) and not isinstance(value, bool), f"{key}: {value!r} is not an integer"
        number = value
    elif kind == "float":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{key}: {value!r} is not a number"
        number = value
    elif kind == "bool":
        assert isinstance(value, bool), f"{key}: {value!r} is not a boolean"
        return
    elif kind == "list":
        assert str(value) in match.group("list").split("|"), f"{key}: {value!r} not one of {match.group('list')}"
        return
    elif kind == "match":
        assert re.fullmatch(match.group("match"), str(value)), f"{key}: {value!r} does not match"
        return
    else:
        return
    assert bounds.get("min", number) <= number <= bounds.get("max", number), f"{key}: {value!r} out of range {element}"


def test_config_has_the_required_keys_and_valid_values(config):
    for key in ("name", "version", "slug", "description", "arch"):
        assert config.get(key), f"config.yaml needs {key}"
    assert RE_SLUG.match(config["slug"])
    assert str(config["version"]) == __version__, "add-on and runtime versions move together"
    assert set(config["arch"]) <= ARCHES
    assert urlparse(config["url"]).scheme == "https"
    assert config["init"] is False, "s6-overlay v3 images need init: false"
    assert config.get("startup", "application") in STARTUP
    assert all(RE_VOLUME.match(v) for v in config.get("map", []))
    assert "image" not in config, "no published image: the Supervisor builds the Dockerfile"
    assert isinstance(config["homeassistant"], str)


def test_config_announces_and_exposes_the_wyoming_port(config):
    assert "wyoming" in config["discovery"] and all(isinstance(s, str) for s in config["discovery"])
    assert set(config["ports"]) == {f"{c.DEFAULT_PORT}/tcp"}
    for key, value in config["ports"].items():
        assert RE_PORT_KEY.match(key) and (value is None or 1 <= value <= 65535)
    assert "satellite" not in yaml.safe_dump(config)


def test_options_validate_against_their_schema(config):
    options, schema = config["options"], config["schema"]
    assert set(options) <= set(schema), f"options without schema: {set(options) - set(schema)}"
    for key, element in schema.items():
        if isinstance(element, list):
            assert len(element) == 1 and isinstance(element[0], str), f"{key}: a list holds one element type"
            assert RE_ELEMENT.match(element[0])
            if key in options:
                assert isinstance(options[key], list)
                for item in options[key]:
                    check_value(element[0], item, key)
            continue
        assert isinstance(element, str) and RE_ELEMENT.match(element), f"{key}: bad schema {element!r}"
        if key in options:
            check_value(element, options[key], key)
        else:
            assert element.endswith("?"), f"option {key} is required but has no default"


def test_schema_choices_are_the_servers_choices(config):
    """A value the add-on UI offers must be one the server accepts."""
    serve = argparse.ArgumentParser()
    add_serve_arguments(serve)
    choices = {a.dest: a.choices for a in serve._actions if a.choices}  # noqa: SLF001
    schema = config["schema"]
    assert schema["engine"] == f"list({'|'.join(c.ENGINES)})" and set(choices["engine"]) == set(c.ENGINES)
    assert schema["dtype"] == f"list({'|'.join(choices['dtype'])})"
    assert schema["quantize"] == f"list({'|'.join(c.QUANTIZE_MODES)})" and tuple(choices["quantize"]) == c.QUANTIZE_MODES


def test_build_config_and_dockerfile(config):
    build = load("build.yaml")
    assert set(config["arch"]) <= set(build["build_from"])
    assert all(RE_IMAGE.match(image) for image in build["build_from"].values())
    assert all(isinstance(v, str) for v in build.get("args", {}).values())
    dockerfile = (ADDON / "Dockerfile").read_text()
    assert dockerfile.startswith("ARG BUILD_FROM\nFROM ${BUILD_FROM}")
    assert "COPY rootfs /" in dockerfile and "HF_HOME=/data/" in dockerfile
    for script in ("audio-interaction/run", "audio-interaction/finish", "discovery/run"):
        path = ADDON / "rootfs/etc/s6-overlay/s6-rc.d" / script
        assert path.stat().st_mode & 0o111, f"{script} must be executable"


def test_translations_cover_every_option_and_port(config):
    translations = load("translations/en.yaml")
    assert set(translations["configuration"]) == set(config["schema"])
    for key, text in translations["configuration"].items():
        assert text.get("name") and text.get("description"), f"translation of {key} needs name and description"
    assert set(translations["network"]) == set(config["ports"])


def test_docs_changelog_and_images(config):
    docs = (ADDON / "DOCS.md").read_text()
    for key in config["schema"]:
        assert f"### Option: `{key}`" in docs, f"DOCS.md does not explain {key}"
    assert f"## {config['version']}" in (ADDON / "CHANGELOG.md").read_text()
    for name, size in (("icon.png", (128, 128)), ("logo.png", (250, 100))):
        raw = (ADDON / name).read_bytes()
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">II", raw[16:24]) == size, f"{name} should be {size}"


def test_repository_file():
    repository = yaml.safe_load((REPO / "repository.yaml").read_text())
    assert repository["name"] and repository["maintainer"]
    assert urlparse(repository["url"]).scheme == "https"
