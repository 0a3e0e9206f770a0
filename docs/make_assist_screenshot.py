"""Take the README's "Use with Assist satellites" screenshot: a pipeline with our wake word and STT.

Like make_screenshots.py (whose helpers it uses): the server (lite engine),
a real `hass` on a fresh config, onboarding and the config flows through
HA's APIs, then headless Chromium on the pipeline's dialog in
Settings > Voice assistants.

    .venv/ha/bin/python docs/make_assist_screenshot.py

Same needs as make_screenshots.py (ffmpeg, Debian's chromium, HA's frontend in the HA env).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile
import time

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_screenshots import (  # noqa: E402 - the script's folder is not a package
    CLIENT_ID,
    DEEP_QUERY,
    DOCS,
    REPO,
    RUNTIME_PYTHON,
    Chromium,
    HomeAssistantApi,
    free_port,
    wait_port,
)

CONFIG = """homeassistant:
  name: Home
http:
  server_host: 127.0.0.1
  server_port: {port}
frontend:
config:
conversation:
assist_pipeline:
logger:
  default: warning
"""


async def websocket_call(session: aiohttp.ClientSession, base: str, token: str, message: dict) -> dict:
    """One command over HA's websocket API (pipelines have no REST endpoint)."""
    async with session.ws_connect(base.replace("http", "ws") + "/api/websocket") as ws:
        await ws.receive_json()  # auth_required
        await ws.send_json({"type": "auth", "access_token": token})
        assert (await ws.receive_json())["type"] == "auth_ok"
        await ws.send_json({"id": 1, **message})
        while (reply := await ws.receive_json()).get("id") != 1:
            pass
        if not reply.get("success"):
            raise SystemExit(f"{message['type']}: {reply}")
        return reply["result"]


async def main() -> None:
    chromium_bin = shutil.which("chromium") or sys.exit("install Debian's chromium first")
    work = Path(tempfile.mkdtemp(prefix="audio-interaction-assist-"))
    server_port, http_port, cdp_port = free_port(), free_port(), free_port()
    config = work / "config"
    (config / "custom_components").mkdir(parents=True)
    (config / "custom_components" / "audio_interaction").symlink_to(REPO / "custom_components" / "audio_interaction")
    (config / "configuration.yaml").write_text(CONFIG.format(port=http_port))
    processes = [
        subprocess.Popen(
            [RUNTIME_PYTHON, "-m", "model_runtime", "serve", "--uri", f"tcp://127.0.0.1:{server_port}", "--engine", "lite"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(work / "server.log").open("w"),
        ),
        subprocess.Popen(
            [str(Path(sys.executable).parent / "hass"), "-c", str(config)],
            stdout=subprocess.DEVNULL, stderr=(work / "hass.log").open("w"),
        ),
        subprocess.Popen(
            [chromium_bin, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={cdp_port}",
             "--window-size=1280,2000", f"--user-data-dir={work / 'chromium'}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ),
    ]
    try:
        wait_port(server_port, 60)
        wait_port(http_port, 300)
        wait_port(cdp_port, 60)
        base = f"http://127.0.0.1:{http_port}"
        async with aiohttp.ClientSession() as session:
            ha = HomeAssistantApi(session, base)
            await ha.onboard()
            entry = await ha.flow(
                "/api/config/config_entries/flow", {"handler": "audio_interaction"},
                {"host": "127.0.0.1", "port": server_port},
            )
            entry_id = entry["result"]["entry_id"]
            room = await ha.flow(
                "/api/config/config_entries/subentries/flow", {"handler": [entry_id, "room"]},
                {"name": "Kitchen", "assist_satellite": "assist_satellite.kitchen_voice", "silent": False},
            )
            assert room["type"] == "create_entry", room
            await asyncio.sleep(5)  # the entry reloads with the room and its wake word entity
            states = {s["entity_id"] for s in await ha.call("GET", "/api/states")}
            assert {"wake_word.kitchen_wake_word", "stt.audio_interaction_speech_to_text"} <= states, sorted(states)
            pipeline = await websocket_call(session, base, ha.tokens["access_token"], {
                "type": "assist_pipeline/pipeline/create",
                "name": "Kitchen satellite", "language": "en",
                "conversation_engine": "conversation.home_assistant", "conversation_language": "en",
                "stt_engine": "stt.audio_interaction_speech_to_text", "stt_language": "en",
                "tts_engine": None, "tts_language": None, "tts_voice": None,
                "wake_word_entity": "wake_word.kitchen_wake_word", "wake_word_id": "okay_nabu",
            })
            print("pipeline:", pipeline["id"])

            browser = Chromium(session, cdp_port)
            await browser.open()
            await browser.goto(base + "/", settle=3)
            tokens = {**ha.tokens, "hassUrl": base, "clientId": CLIENT_ID,
                      "expires": int(time.time() * 1000) + ha.tokens["expires_in"] * 1000}
            await browser.js(f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))})")
            await browser.goto(f"{base}/config/voice-assistants/assistants", settle=10)
            await browser.js(DEEP_QUERY)
            # Open the pipeline's dialog: the list row that names it.
            opened = await browser.js(
                """(() => {
                  const all = [];
                  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
                    all.push(el); if (el.shadowRoot) walk(el.shadowRoot); } };
                  walk(document);
                  const row = all.find((el) => /list-item/.test(el.tagName.toLowerCase())
                                        && (el.textContent || '').includes('Kitchen satellite'));
                  if (!row) return false; row.click(); return true;
                })()"""
            )
            await asyncio.sleep(4)
            print("pipeline dialog opened:", opened)
            await browser.screenshot(DOCS / "assist_pipeline.png")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        print(f"logs in {work}")


if __name__ == "__main__":
    asyncio.run(main())
