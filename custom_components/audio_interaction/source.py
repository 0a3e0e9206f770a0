"""A room's audio source: anything ffmpeg can read, as 16 kHz 16-bit mono PCM.

HA's own ffmpeg binary (the `ffmpeg` integration's manager) and its
`haffmpeg` process wrapper read the source and convert it; PCM comes back
through a pipe and is handed on chunk by chunk (never written to disk). When
ffmpeg exits the source is restarted with backoff, the reason is logged, and a
repair issue is raised while it keeps failing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
import inspect
import logging
from pathlib import Path
import shlex
from urllib.parse import urlsplit

from haffmpeg.core import FFMPEG_STDERR, HAFFmpeg

from homeassistant.components import camera
from homeassistant.components.ffmpeg import get_ffmpeg_manager
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import issue_registry as ir

from . import const
from .const import CHANNELS, CHUNK_BYTES, DOMAIN, SAMPLE_RATE, SAMPLE_WIDTH

_LOGGER = logging.getLogger(__name__)

# ffmpeg writes raw PCM to stdout (the pipe we read) and only errors to stderr.
FFMPEG_ARGS = ["-hide_banner", "-loglevel", "error", "-vn"]
FFMPEG_OUTPUT = f"-f s16le -acodec pcm_s16le -ac {CHANNELS} -ar {SAMPLE_RATE} -"
# A source whose audio stays flat (digital silence: a camera with its microphone
# off, a muted or unplugged capture device) this long is deaf: a repair issue says so.
SILENT_SOURCE_SECONDS = 60.0
FLAT_PEAK_TO_PEAK = 2  # in 16-bit steps: dither at most; a real room's noise floor is far above
# A source that delivers no audio for this long has stalled (a camera that stops sending without
# closing its connection leaves ffmpeg waiting forever): it is stopped and started again.
STALL_SECONDS = 10.0
# A run that delivered at least this much audio counts as healthy.
HEALTHY_BYTES = SAMPLE_RATE * SAMPLE_WIDTH  # 1 s
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
# "alsa:hw:1,0" or "pulse:default": a capture device through that ffmpeg input format.
DEVICE_FORMATS = ("alsa", "pulse")


class SourceError(HomeAssistantError):
    """The configured source cannot be opened (no stream, no such file)."""


def describe_source(source: str | None, camera_entity: str | None) -> str:
    """A short, credential-free description of a source for logs and issues."""
    if camera_entity:
        return camera_entity
    assert source is not None
    parts = urlsplit(source)
    if parts.scheme in STREAM_SCHEMES:
        return f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    return source


def validate_source(source: str) -> str | None:
    """Why `source` is not something we can open (a translation key), or None."""
    kind, _, rest = source.partition(":")
    if kind in DEVICE_FORMATS:
        return None if rest else "invalid_source"
    if urlsplit(source).scheme in STREAM_SCHEMES:
        return None
    if Path(source).is_absolute():
        return None
    return "invalid_source"


async def async_ffmpeg_input(
    hass: HomeAssistant, source: str | None, camera_entity: str | None
) -> str:
    """The ffmpeg input arguments for a room's source (a string haffmpeg splits)."""
    if camera_entity:
        source = await camera.async_get_stream_source(hass, camera_entity)
        if not source:
            raise SourceError(f"camera {camera_entity} has no stream source")
    assert source is not None
    kind, _, device = source.partition(":")
    if kind in DEVICE_FORMATS:
        return shlex.join(["-f", kind, "-i", device])
    scheme = urlsplit(source).scheme
    if scheme in ("rtsp", "rtsps"):
        return shlex.join(["-rtsp_transport", "tcp", "-i", source])
    if scheme in STREAM_SCHEMES:
        return shlex.join(["-i", source])
    # A file (for testing): played in real time and looped, like a live microphone.
    if not await hass.async_add_executor_job(Path(source).is_file):
        raise SourceError(f"no such file: {source}")
    if not hass.config.is_allowed_path(source):
        raise SourceError(f"{source} is not in allowlist_external_dirs")
    return shlex.join(["-re", "-stream_loop", "-1", "-i", source])


async def async_read_pcm(
    hass: HomeAssistant, input_args: str, on_audio: Callable[[bytes], Awaitable[None] | None]
) -> tuple[int, str]:
    """Run ffmpeg once until it exits or stalls; return (PCM bytes delivered, why it stopped).

    A live room hands each chunk on at once. A file's reader may return an
    awaitable (a bounded queue's `put`): then ffmpeg is read no faster than the
    audio is sent on, so a long file never piles up in memory.

    The process is killed and reaped however this ends (cancellation included).
    """
    ffmpeg = HAFFmpeg(get_ffmpeg_manager(hass).binary)
    if not await ffmpeg.open(
        cmd=FFMPEG_ARGS, input_source=input_args, output=FFMPEG_OUTPUT, stderr_pipe=True
    ):
        return 0, "ffmpeg could not be started"
    process = ffmpeg.process
    errors: deque[str] = deque(maxlen=3)
    stderr_task = asyncio.create_task(_collect_lines(await ffmpeg.get_reader(FFMPEG_STDERR), errors))
    delivered = 0
    try:
        stdout = await ffmpeg.get_reader()
        while True:
            try:
                async with asyncio.timeout(STALL_SECONDS):
                    chunk = await stdout.readexactly(CHUNK_BYTES)
            except asyncio.IncompleteReadError as end:
                chunk = end.partial
            except TimeoutError:  # (the finally below stops ffmpeg)
                return delivered, f"no audio for {STALL_SECONDS:g} s: the source stalled, so it was stopped"
            if not chunk:
                break
            delivered += len(chunk)
            if inspect.isawaitable(pending := on_audio(chunk)):
                await pending
        code = await process.wait()
        await stderr_task
    finally:
        if process.returncode is None:
            process.kill()
            # asyncio counts a process as exited only once its pipes close: drain
            # what the killed ffmpeg left in stdout (a paused reader never sees EOF).
            if process.stdout is not None:
                await process.stdout.read()
            await process.wait()
        stderr_task.cancel()
    reason = "; ".join(errors) or "end of stream"
    return delivered, f"ffmpeg exited with code {code}: {reason}"


async def _collect_lines(reader: asyncio.StreamReader, lines: deque[str]) -> None:
    while line := await reader.readline():
        if text := line.decode(errors="replace").strip():
            lines.append(text)


def _is_flat(chunk: bytes) -> bool:
    """No more than dither in this PCM (s16le read as native shorts: HA hosts are little-endian)."""
    samples = memoryview(chunk)[: len(chunk) // SAMPLE_WIDTH * SAMPLE_WIDTH].cast("h")
    if not len(samples):
        return False
    sparse = samples[::16]  # a room's noise shows in every 16th sample already: most chunks end here, cheaply
    if max(sparse) - min(sparse) > FLAT_PEAK_TO_PEAK:
        return False
    return max(samples) - min(samples) <= FLAT_PEAK_TO_PEAK


class AudioSource:
    """Keeps one room's source running until cancelled: restart with backoff, repair issue."""

    def __init__(
        self,
        hass: HomeAssistant,
        room_name: str,
        issue_id: str,
        source: str | None,
        camera_entity: str | None,
        on_audio: Callable[[bytes], None],
        on_change: Callable[[], None],
    ) -> None:
        self.hass = hass
        self.on_change = on_change
        self.room_name = room_name
        self.issue_id = issue_id
        self.source = source
        self.camera_entity = camera_entity
        self.on_audio = on_audio
        self.failures = 0
        self.last_error: str | None = None
        self.running = False
        self.silent = False  # the audio has been flat for SILENT_SOURCE_SECONDS
        self._flat_bytes = 0

    @property
    def description(self) -> str:
        return describe_source(self.source, self.camera_entity)

    async def run(self) -> None:
        """Read the source forever (until cancelled), restarting it when it stops."""
        delay = const.BACKOFF_MIN
        # An issue from before (another config, another HA run) is raised again if still true.
        ir.async_delete_issue(self.hass, DOMAIN, self.issue_id)
        ir.async_delete_issue(self.hass, DOMAIN, self.silent_issue_id)
        try:
            while True:
                try:
                    input_args = await async_ffmpeg_input(self.hass, self.source, self.camera_entity)
                    self.running = True
                    self.on_change()
                    delivered, reason = await async_read_pcm(self.hass, input_args, self._hear)
                except SourceError as err:
                    delivered, reason = 0, str(err)
                finally:
                    self.running = False
                if delivered >= HEALTHY_BYTES:
                    self._healthy()
                    delay = const.BACKOFF_MIN
                else:
                    self._failed(reason)
                    delay = min(delay * 2, const.SOURCE_BACKOFF_MAX)
                self.on_change()
                _LOGGER.warning(
                    "Audio source %s of room %s stopped (%s); restarting in %.1f s",
                    self.description, self.room_name, reason, delay,
                )
                await asyncio.sleep(delay)
        finally:
            self.running = False

    @property
    def silent_issue_id(self) -> str:
        return f"{self.issue_id}_silent"

    def _hear(self, chunk: bytes) -> None:
        """Hand the audio on; watch whether the source is only flat silence."""
        if _is_flat(chunk):
            self._flat_bytes += len(chunk)
            if not self.silent and self._flat_bytes >= SILENT_SOURCE_SECONDS * SAMPLE_RATE * SAMPLE_WIDTH:
                self._set_silent(True)
        else:
            self._flat_bytes = 0
            if self.silent:
                self._set_silent(False)
        self.on_audio(chunk)

    def _set_silent(self, silent: bool) -> None:
        self.silent = silent
        if silent:
            _LOGGER.warning(
                "Audio source %s of room %s has delivered only silence for %.0f s: is its microphone off?",
                self.description, self.room_name, SILENT_SOURCE_SECONDS,
            )
            self._raise_issue(self.silent_issue_id, "source_silent", seconds=f"{SILENT_SOURCE_SECONDS:.0f}")
        else:
            _LOGGER.info("Audio source %s of room %s delivers sound again", self.description, self.room_name)
            ir.async_delete_issue(self.hass, DOMAIN, self.silent_issue_id)
        self.on_change()

    def _healthy(self) -> None:
        if self.failures >= const.SOURCE_FAILURES_FOR_REPAIR:
            ir.async_delete_issue(self.hass, DOMAIN, self.issue_id)
        self.failures = 0
        self.last_error = None

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.last_error = reason
        if self.failures == const.SOURCE_FAILURES_FOR_REPAIR:
            self._raise_issue(self.issue_id, "source_failing", reason=reason)

    def _raise_issue(self, issue_id: str, translation_key: str, **placeholders: str) -> None:
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.WARNING,
            translation_key=translation_key,
            translation_placeholders={"room": self.room_name, "source": self.description, **placeholders},
        )
