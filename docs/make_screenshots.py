"""Run the integration as a person would, and take the README's screenshots.

Starts the Audio-Interaction server (lite engine, runtime env) and a real
`hass` (HA env) on a fresh config directory with this integration, onboards
HA through its HTTP API, adds the integration and a room through the config
flow API, adds an automation with one of the room's device triggers, then
drives headless Chromium (DevTools protocol) to screenshot the integration page (the
server and its rooms), the device page and the automation editor's
device-trigger list into docs/.

    .venv/ha/bin/python docs/make_screenshots.py

Needs ffmpeg, Debian's chromium, and HA's frontend in the HA env (not a test
dependency): .venv/ha/bin/pip install home-assistant-frontend==20250411.0
(the version homeassistant 2025.4.4 pins). Other packages HA's default
components want are installed by HA itself at first start.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import aiohttp

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
SAMPLE = REPO / "model_runtime" / "samples" / "kitchen_smoke_alarm.flac"
RUNTIME_PYTHON = os.environ.get("AUDIO_INTERACTION_RUNTIME_PYTHON", str(REPO / ".venv" / "runtime" / "bin" / "python"))
CLIENT_ID = "http://127.0.0.1/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"nothing listens on port {port} after {timeout} s")


def write_config(config: Path, http_port: int, wav: Path) -> None:
    (config / "custom_components").mkdir(parents=True)
    (config / "custom_components" / "audio_interaction").symlink_to(REPO / "custom_components" / "audio_interaction")
    (config / "configuration.yaml").write_text(
        f"""homeassistant:
  name: Home
  allowlist_external_dirs: ["{wav.parent}"]
http:
  server_host: 127.0.0.1
  server_port: {http_port}
frontend:
config:
automation: !include automations.yaml
input_boolean:
  smoke_alarm_heard:
    name: Smoke alarm heard
logger:
  default: warning
  logs:
    custom_components.audio_interaction: debug
"""
    )
    (config / "automations.yaml").write_text("[]\n")


class HomeAssistantApi:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session, self.base, self.tokens = session, base, {}

    async def call(self, method: str, path: str, payload: dict | None = None, auth: bool = True):
        headers = {"Authorization": f"Bearer {self.tokens['access_token']}"} if auth else {}
        async with self.session.request(method, self.base + path, json=payload, headers=headers) as response:
            body = await response.text()
            if response.status >= 400:
                raise SystemExit(f"{method} {path}: {response.status} {body}")
            if response.content_type != "application/json":
                return body  # /api/template answers text
            return json.loads(body) if body else {}

    async def onboard(self) -> None:
        user = await self.call(
            "POST", "/api/onboarding/users",
            {"client_id": CLIENT_ID, "name": "Demo", "username": "demo", "password": "demo-password", "language": "en"},
            auth=False,
        )
        async with self.session.post(
            self.base + "/auth/token",
            data={"grant_type": "authorization_code", "code": user["auth_code"], "client_id": CLIENT_ID},
        ) as response:
            self.tokens = await response.json()
        await self.call("POST", "/api/onboarding/core_config")
        await self.call("POST", "/api/onboarding/analytics")
        await self.call("POST", "/api/onboarding/integration", {"client_id": CLIENT_ID, "redirect_uri": CLIENT_ID})

    async def flow(self, path: str, start: dict, *steps: dict) -> dict:
        result = await self.call("POST", path, start)
        for step in steps:
            assert result["type"] == "form", result
            result = await self.call("POST", f"{path}/{result['flow_id']}", step)
        return result


class Chromium:
    """Just enough of the DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, session: aiohttp.ClientSession, port: int) -> None:
        self.session, self.port, self.ids = session, port, itertools.count(1)

    async def open(self) -> None:
        async with self.session.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as response:
            target = await response.json()
        self.ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)

    async def send(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        async for message in self.ws:
            data = json.loads(message.data)
            if data.get("id") == msg_id:
                if "error" in data:
                    raise SystemExit(f"{method}: {data['error']}")
                return data["result"]
        raise SystemExit("chromium went away")

    async def goto(self, url: str, settle: float) -> None:
        await self.send("Page.navigate", url=url)
        await asyncio.sleep(settle)

    async def js(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path.relative_to(REPO)}")


# Find an element through every shadow root (HA's frontend is web components all the way down).
DEEP_QUERY = """
window.deepQuery = (selector, root = document) => {
  const found = root.querySelector(selector);
  if (found) return found;
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const inner = deepQuery(selector, el.shadowRoot); if (inner) return inner; }
  }
  return null;
};
"""


async def main() -> None:
    chromium_bin = shutil.which("chromium") or sys.exit("install Debian's chromium first")
    work = Path(tempfile.mkdtemp(prefix="audio-interaction-demo-"))
    wav = work / "kitchen_smoke_alarm.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(SAMPLE), str(wav)], check=True)
    server_port, http_port, cdp_port = free_port(), free_port(), free_port()
    write_config(work / "config", http_port, wav)
    processes = [
        subprocess.Popen(
            [RUNTIME_PYTHON, "-m", "model_runtime", "serve", "--uri", f"tcp://127.0.0.1:{server_port}", "--engine", "lite"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=(work / "server.log").open("w"),
        ),
        subprocess.Popen(
            [str(Path(sys.executable).parent / "hass"), "-c", str(work / "config")],
            stdout=subprocess.DEVNULL, stderr=(work / "hass.log").open("w"),
        ),
        subprocess.Popen(
            [chromium_bin, "--headless=new", "--no-sandbox", "--disable-gpu", f"--remote-debugging-port={cdp_port}",
             "--window-size=1280,1000", f"--user-data-dir={work / 'chromium'}", "about:blank"],
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
                "/api/config/config_entries/flow",
                {"handler": "audio_interaction"},
                {"host": "127.0.0.1", "port": server_port},
            )
            assert entry["type"] == "create_entry", entry
            entry_id = entry["result"]["entry_id"]
            room = await ha.flow(
                "/api/config/config_entries/subentries/flow",
                {"handler": [entry_id, "room"]},
                {"name": "Kitchen", "source": str(wav), "silent": False},
            )
            assert room["type"] == "create_entry", room
            await asyncio.sleep(12)  # reloaded with the room; the alarm starts 2 s in, is recognised by 5.4 s
            states = {s["entity_id"]: s for s in await ha.call("GET", "/api/states")}
            print("event.kitchen_sound:", states["event.kitchen_sound"]["attributes"].get("event_type"))
            print("binary_sensor.kitchen_server_connection:", states["binary_sensor.kitchen_server_connection"]["state"])
            device_id = await ha.call("POST", "/api/template", {"template": "{{ device_id('event.kitchen_sound') }}"})
            await ha.call(
                "POST", "/api/config/automation/config/kitchen_smoke",
                {
                    "alias": "Kitchen smoke alarm",
                    "triggers": [{"trigger": "device", "domain": "audio_interaction", "device_id": device_id,
                                  "type": "smoke_alarm_detected"}],
                    "actions": [{"action": "input_boolean.turn_on", "target": {"entity_id": "input_boolean.smoke_alarm_heard"}}],
                },
            )

            browser = Chromium(session, cdp_port)
            await browser.open()
            await browser.goto(base + "/", settle=3)
            tokens = {**ha.tokens, "hassUrl": base, "clientId": CLIENT_ID,
                      "expires": int(time.time() * 1000) + ha.tokens["expires_in"] * 1000}
            await browser.js(f"localStorage.setItem('hassTokens', {json.dumps(json.dumps(tokens))})")
            await browser.goto(f"{base}/config/integrations/integration/audio_interaction", settle=10)
            await browser.js(DEEP_QUERY)
            menu = await browser.js(
                "(() => { const m = deepQuery('ha-md-button-menu'); if (!m) return false;"
                " m.querySelector('[slot=trigger]').click(); return true; })()"
            )
            await asyncio.sleep(2)
            print("entry menu opened:", menu)
            await browser.screenshot(DOCS / "integration_page.png")
            await browser.goto(f"{base}/config/devices/device/{device_id}", settle=10)
            await browser.screenshot(DOCS / "device_page.png")

            await browser.goto(f"{base}/config/automation/edit/kitchen_smoke", settle=10)
            await browser.js(DEEP_QUERY)
            # Expand the trigger row, then open its trigger-type list.
            await browser.js("deepQuery('ha-automation-trigger-row').shadowRoot.querySelector('ha-expansion-panel').expanded = true")
            await asyncio.sleep(2)
            opened = await browser.js(
                "(() => { const p = deepQuery('ha-device-trigger-picker'); if (!p) return false;"
                " const s = p.shadowRoot.querySelector('ha-select'); if (!s) return false;"
                " s.scrollIntoView({block: 'start'}); s.shadowRoot.querySelector('.mdc-select__anchor').click();"
                " return true; })()"
            )
            await asyncio.sleep(2)
            print("trigger list opened:", opened)
            await browser.screenshot(DOCS / "automation_device_triggers.png")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        print(f"logs in {work}")


if __name__ == "__main__":
    asyncio.run(main())
