"""Home Assistant tests (pytest-homeassistant-custom-component, Python >= 3.13).

The integration talks to the real Audio-Interaction server, started as a
subprocess from the runtime environment (lite engine), exactly as the add-on
runs it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from contextlib import contextmanager
import os
from pathlib import Path
import socket
import subprocess
import tempfile
import time

import pytest
from ha_helpers import free_port
import pytest_socket
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, TtsProgram, TtsVoice
from wyoming.server import AsyncEventHandler

pytest_plugins = "pytest_homeassistant_custom_component"

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FLAC = REPO / "model_runtime" / "samples" / "kitchen_smoke_alarm.flac"


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations):
    """Let HA's loader find custom_components/ in every test."""
    yield


@pytest.fixture(autouse=True)
def local_sockets(socket_enabled: None) -> None:
    """The harness blocks sockets; ours reach only the local server (127.0.0.1)."""
    pytest_socket.socket_allow_hosts(["127.0.0.1"])


@contextmanager
def sockets_allowed() -> Generator[None]:
    """For session fixtures, set up before `local_sockets` runs."""
    pytest_socket.enable_socket()
    try:
        yield
    finally:
        pytest_socket.disable_socket(allow_unix_socket=True)


def runtime_python() -> str:
    """The runtime environment's interpreter (scripts/test exports it)."""
    python = os.environ.get("AUDIO_INTERACTION_RUNTIME_PYTHON", str(REPO / ".venv" / "runtime" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(f"runtime Python {python} not found: run scripts/setup-envs runtime")
    return python


class AudioServer:
    """`audio-interaction serve --engine lite` on a localhost port, as a subprocess."""

    def __init__(self, port: int, *engine_args: str) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.engine_args = engine_args or ("--engine", "lite")
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.gettempdir()) / f"audio-interaction-ha-test-{port}.log"

    def command(self) -> list[str]:
        return [runtime_python(), "-m", "model_runtime", "serve", "--uri", f"tcp://{self.host}:{self.port}",
                *self.engine_args]

    def start(self, timeout: float = 60.0) -> None:
        """Start it and return once it listens, and once its model is loaded: with the big model the
        server listens at once while the model loads (only its safety net hears the rooms meanwhile)."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with code {self.process.returncode} at start-up: {self.log.read_text()}")
            if self._ready():
                return
            time.sleep(0.1)
        pytest.fail(f"the server was not ready on port {self.port} within {timeout} s: {self.log.read_text()}")

    def _ready(self) -> bool:
        loads_model = "audio-interaction" in self.engine_args and "--no-safety-net" not in self.engine_args
        if loads_model and "engine is ready after" not in self.log.read_text(errors="replace"):
            return False
        try:
            socket.create_connection((self.host, self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        self.log.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def audio_server() -> Generator[AudioServer]:
    """One server for the whole session (tests that kill a server start their own)."""
    with sockets_allowed():
        server = AudioServer(free_port())
        server.start()
    yield server
    server.kill()


@pytest.fixture
def own_audio_server() -> Generator[AudioServer]:
    """A server this test may kill and restart."""
    server = AudioServer(free_port())
    server.start()
    yield server
    server.kill()


def _tiny_model_server(tmp_path_factory: pytest.TempPathFactory, emotion: str) -> Generator[AudioServer]:
    checkpoint = tmp_path_factory.mktemp(f"tiny-checkpoint-{emotion}")
    subprocess.run(
        [runtime_python(), "-m", "model_runtime", "make-tiny-checkpoint", str(checkpoint), "--emotion", emotion],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )
    with sockets_allowed():
        server = AudioServer(free_port(), "--engine", "audio-interaction", "--model", str(checkpoint), "--device", "cpu")
        server.start(timeout=180)
    yield server
    server.kill()


@pytest.fixture(scope="session")
def interaction_server(tmp_path_factory: pytest.TempPathFactory) -> Generator[AudioServer]:
    """The real model's engine on the runtime's rigged tiny checkpoint: a 1 kHz tone makes it react,
    urgently ("I hear an alarm, please check."), as to a sound."""
    yield from _tiny_model_server(tmp_path_factory, "urgent")


@pytest.fixture(scope="session")
def answering_interaction_server(tmp_path_factory: pytest.TempPathFactory) -> Generator[AudioServer]:
    """The same rig whose reply is tagged `normal`: an answer, as to a spoken request."""
    yield from _tiny_model_server(tmp_path_factory, "normal")


@pytest.fixture(scope="session")
def trigger_tone_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint's trigger: a loud 1 kHz tone (2 s, between 1 s of silence each side)."""
    wav = tmp_path_factory.mktemp("audio") / "tone.wav"
    subprocess.run(
        ["sox", "-n", "-r", "16000", "-c", "1", str(wav), "synth", "2", "sine", "1000", "vol", "0.5", "pad", "1", "1"],
        check=True,
    )
    return wav


@pytest.fixture(scope="session")
def smoke_alarm_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repo's kitchen smoke-alarm recording as a WAV file (made with ffmpeg)."""
    wav = tmp_path_factory.mktemp("audio") / "kitchen_smoke_alarm.wav"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(SAMPLE_FLAC), str(wav)], check=True
    )
    return wav


@pytest.fixture
def silence_wav(tmp_path: Path) -> Path:
    wav = tmp_path / "silence.wav"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3", str(wav)],
        check=True,
    )
    return wav



class OtherWyomingHandler(AsyncEventHandler):
    """A Wyoming TTS server that is not ours (as Piper describes itself)."""

    async def handle_event(self, event: Event) -> bool:
        if Describe.is_type(event.type):
            attribution = Attribution(name="rhasspy", url="https://github.com/rhasspy/piper")
            voice = TtsVoice(
                name="en_US-lessac-medium", attribution=attribution, installed=True,
                description="Lessac", version=None, languages=["en_US"],
            )
            program = TtsProgram(
                name="piper", attribution=attribution, installed=True, description="Piper", version="1.5.0",
                voices=[voice],
            )
            await self.write_event(Info(tts=[program]).event())
        return True


@pytest.fixture
async def other_wyoming_server() -> AsyncGenerator[tuple[str, int]]:
    """A real Wyoming server on localhost that is not an Audio-Interaction server."""
    server = await asyncio.start_server(
        lambda reader, writer: OtherWyomingHandler(reader, writer).run(), "127.0.0.1", 0
    )
    yield "127.0.0.1", server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
