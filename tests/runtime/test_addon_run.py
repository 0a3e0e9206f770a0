"""The add-on's s6 scripts, run with bash and a stand-in for bashio that serves option values.

Every option must reach the server's command line, and that command line must
be one the real `serve` parser accepts with the same values. The discovery
script must announce the server once it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from model_runtime.server.app import add_arguments as add_serve_arguments

ADDON = Path(__file__).resolve().parents[2] / "addon"
S6 = ADDON / "rootfs/etc/s6-overlay/s6-rc.d"

# What the scripts use of bashio, with bashio's output conventions: `config`
# prints strings raw, lists one item per line (no final newline), null as "null".
FAKE_BASHIO = r'''
_opt() { "$FAKE_PYTHON" - "$1" "$FAKE_OPTIONS" <<'PY'
import json, sys
value = json.load(open(sys.argv[2])).get(sys.argv[1])
if isinstance(value, list):
    out = "\n".join(str(v) for v in value)
elif isinstance(value, bool):
    out = "true" if value else "false"
else:
    out = "null" if value is None else str(value)
sys.stdout.write(out)
PY
}
bashio::config() { _opt "$1"; }
bashio::config.true() { [[ "$(_opt "$1")" == "true" ]]; }
bashio::config.false() { [[ "$(_opt "$1")" == "false" ]]; }
bashio::config.has_value() { local v; v="$(_opt "$1")"; [[ -n "$v" && "$v" != "null" ]]; }
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::log.warning() { echo "WARNING: $*" >&2; }
bashio::log.error() { echo "ERROR: $*" >&2; }
bashio::exit.nok() { echo "FATAL: $*" >&2; exit 1; }
bashio::var.json() { "$FAKE_PYTHON" -c 'import json, sys; a = sys.argv[1:]; print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"; }
bashio::discovery() { echo "$1 $2" >> "$FAKE_DISCOVERY"; }
'''

# Stands in for the installed `audio-interaction`: records its arguments and HF_HOME.
FAKE_SERVER = """#!/usr/bin/env bash
printf '%s\\0' "$@" > "$FAKE_CAPTURE"
echo "$HF_HOME" > "$FAKE_CAPTURE.hf_home"
"""


def run_script(tmp_path: Path, script: str, options: dict | None = None, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "bashio.sh").write_text(FAKE_BASHIO)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "audio-interaction"
    fake.write_text(FAKE_SERVER)
    fake.chmod(0o755)
    (tmp_path / "options.json").write_text(json.dumps(options or {}))
    full_env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "BASH_ENV": str(tmp_path / "bashio.sh"),  # sourced by bash before the script: bashio's functions
        "FAKE_PYTHON": sys.executable,
        "FAKE_OPTIONS": str(tmp_path / "options.json"),
        "FAKE_CAPTURE": str(tmp_path / "argv"),
        "FAKE_DISCOVERY": str(tmp_path / "discovery"),
        **env,
    }
    return subprocess.run(["bash", str(S6 / script)], env=full_env, capture_output=True, text=True, timeout=60)


def served_args(tmp_path: Path) -> argparse.Namespace:
    argv = (tmp_path / "argv").read_bytes().decode().split("\0")[:-1]
    assert argv[0] == "serve"
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return parser.parse_args(argv[1:])


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def test_default_options_start_the_lite_server_on_the_wyoming_port(tmp_path, config):
    result = run_script(tmp_path, "audio-interaction/run", config["options"])
    assert result.returncode == 0, result.stderr
    args = served_args(tmp_path)
    assert args.uri == "tcp://0.0.0.0:10500"
    assert (args.engine, args.model, args.device) == ("lite", "zhifeixie/AudioInteraction", "cpu")
    assert args.wake_words == ["okay_nabu"]
    assert args.threads is None and not getattr(args, "debug", False) and not args.async_encoder
    assert args.safety_net
    assert (tmp_path / "argv.hf_home").read_text().strip() == "/data/huggingface"


def test_every_option_reaches_the_server_command_line(tmp_path, config):
    options = {
        "engine": "audio-interaction",
        "model": "/share/audio-interaction/model",
        "device": "cuda",
        "dtype": "bfloat16",
        "quantize": "int8-dynamic",
        "safety_net": False,
        "wake_words": ["hey_jarvis", "alexa"],
        "system_prompt": "Be brief; it's late. Say \"hi\" & $HOME stays literal.",
        "max_response_tokens": 64,
        "context_seconds": 120,
        "async_encoder": True,
        "threads": 4,
        "max_streams": 3,
        "max_backlog_seconds": 2.5,
        "debug_logging": True,
    }
    assert set(options) == set(config["schema"]), "the test must set every option"
    result = run_script(tmp_path, "audio-interaction/run", options)
    assert result.returncode == 0, result.stderr
    args = served_args(tmp_path)
    assert (args.engine, args.model, args.device, args.dtype) == (
        "audio-interaction", "/share/audio-interaction/model", "cuda", "bfloat16")
    assert args.quantize == "int8-dynamic" and not args.safety_net
    assert args.wake_words == ["hey_jarvis", "alexa"]
    assert args.system_prompt == options["system_prompt"]
    assert (args.max_response_tokens, args.context_seconds, args.threads) == (64, 120.0, 4)
    assert args.async_encoder and args.debug
    assert (args.max_streams, args.max_backlog_seconds) == (3, 2.5)


def test_an_install_from_before_the_safety_net_option_keeps_the_net(tmp_path, config):
    options = {k: v for k, v in config["options"].items() if k != "safety_net"}
    result = run_script(tmp_path, "audio-interaction/run", {**options, "engine": "audio-interaction"})
    assert result.returncode == 0, result.stderr
    assert served_args(tmp_path).safety_net


def test_a_model_folder_outside_share_is_refused_clearly(tmp_path, config):
    result = run_script(tmp_path, "audio-interaction/run", {**config["options"], "model": "/root/model"})
    assert result.returncode != 0
    assert "must be under /share" in result.stderr
    assert not (tmp_path / "argv").exists(), "the server must not start"


def test_discovery_announces_the_server_once_it_listens(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_script(tmp_path, "discovery/run", AUDIO_INTERACTION_PORT=str(port))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "discovery").read_text().splitlines()
    services = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in lines}
    assert set(services) == {"wyoming", "audio_interaction"}
    assert all(config == {"uri": f"tcp://{socket.gethostname()}:{port}"} for config in services.values())


def test_discovery_gives_up_with_an_error_when_nothing_listens(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused
        result = run_script(tmp_path, "discovery/run", AUDIO_INTERACTION_PORT=str(port), AUDIO_INTERACTION_WAIT_SECONDS="1")
    assert result.returncode == 1
    assert "did not start listening" in result.stderr and not (tmp_path / "discovery").exists()
