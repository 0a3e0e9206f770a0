"""Analyze an audio file from the media folder through the server: file in, events out.

The file is decoded by HA's ffmpeg into a pipe and streamed through its own
connection, exactly like a room's audio; nothing is written to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
import shlex
from typing import Any

from wyoming.audio import AudioChunk, AudioStop
from wyoming.ping import Ping, Pong

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError

from .api import async_close, async_open_stream, engine_event, refusal
from .const import CHANNELS, DOMAIN, EVENT_DECISION, SAMPLE_RATE, SAMPLE_WIDTH
from .source import async_read_pcm

MEDIA_SOURCE_PREFIX = "media-source://media_source/"
# The server handles a connection's events in order and flushes the stream on
# `audio-stop` before reading on, so its `pong` to our `ping` marks the end.
END_MARKER = "analysis-complete"
# However long the file, the server must finish within this after the last audio.
# (The file decodes far faster than real time; the stream is opened as not live,
# so the server paces our writes by TCP flow control instead of skipping audio.)
FLUSH_TIMEOUT = 60.0
# Decoded audio waiting to be sent: ffmpeg is read no further ahead than this
# (~10 s of audio), so an hours-long file costs HA no more memory than a clip.
SEND_QUEUE_CHUNKS = 100
# A server that accepts no audio for this long (frozen, overloaded host) fails the
# analysis instead of holding the action call forever.
SEND_STALL_TIMEOUT = 30.0


def resolve_media_file(hass: HomeAssistant, file: str) -> Path:
    """`local/x.wav`, `x.wav` or `media-source://media_source/local/x.wav` -> a file in a media folder."""
    media_dirs = hass.config.media_dirs
    relative = file.removeprefix(MEDIA_SOURCE_PREFIX)
    folder_id, _, rest = relative.partition("/")
    if folder_id in media_dirs and rest:
        folder, relative = media_dirs[folder_id], rest
    elif file.startswith(MEDIA_SOURCE_PREFIX) or not media_dirs:
        raise _invalid_file(file)
    else:
        folder = next(iter(media_dirs.values()))
    base = Path(folder).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base) or not path.is_file():
        raise _invalid_file(file)
    return path


def _invalid_file(file: str) -> ServiceValidationError:
    return ServiceValidationError(
        translation_domain=DOMAIN, translation_key="invalid_media_file", translation_placeholders={"file": file}
    )


async def async_analyze_file(hass: HomeAssistant, host: str, port: int, path: Path) -> list[dict[str, Any]]:
    """Stream the file's audio to the server; return its events (decisions only when it responds)."""
    try:
        client = await async_open_stream(host, port, room=None, live=False)
    except OSError as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN, translation_key="cannot_connect", translation_placeholders={"error": str(err)}
        ) from err
    events: list[dict[str, Any]] = []

    async def receive() -> None:
        with contextlib.suppress(OSError):  # the server went away: keep what came
            while (event := await client.read_event()) is not None:
                if Pong.is_type(event.type) and Pong.from_event(event).text == END_MARKER:
                    return
                if (parsed := engine_event(event)) is None:
                    continue
                kind, data = parsed
                if (refused := refusal(kind, data)) is not None:
                    raise HomeAssistantError(
                        translation_domain=DOMAIN, translation_key="server_busy", translation_placeholders={"error": refused}
                    )
                if kind != EVENT_DECISION or data.get("respond"):
                    events.append({"type": kind, **data})

    audio: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=SEND_QUEUE_CHUNKS)

    async def send() -> None:
        while (chunk := await audio.get()) is not None:
            async with asyncio.timeout(SEND_STALL_TIMEOUT):
                await client.write_event(
                    AudioChunk(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS, audio=chunk).event()
                )
        await client.write_event(AudioStop().event())
        await client.write_event(Ping(text=END_MARKER).event())

    receiver = asyncio.create_task(receive())
    sender = asyncio.create_task(send())

    async def enqueue(chunk: bytes | None) -> None:
        """Wait for room in the queue; if the sender fails meanwhile (server gone), or the server
        turned the stream away (busy), raise that error."""
        put = asyncio.ensure_future(audio.put(chunk))
        await asyncio.wait((put, sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        if receiver.done() and not receiver.cancelled() and receiver.exception() is not None:
            put.cancel()
            receiver.result()
        if not put.done():
            put.cancel()
            sender.result()

    try:
        delivered, reason = await async_read_pcm(hass, shlex.join(["-i", str(path)]), enqueue)
        if delivered == 0:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="undecodable_file",
                translation_placeholders={"file": path.name, "reason": reason},
            )
        await enqueue(None)
        await sender
        async with asyncio.timeout(FLUSH_TIMEOUT):
            await receiver
    except (OSError, TimeoutError) as err:
        raise HomeAssistantError(
            translation_domain=DOMAIN,
            translation_key="analysis_failed",
            translation_placeholders={"file": path.name, "error": str(err) or type(err).__name__},
        ) from err
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.wait([sender, receiver])
        await async_close(client)
    return events
