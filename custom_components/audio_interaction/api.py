"""Talking to the Audio-Interaction Wyoming server: identify it, open a room stream.

The wire format is standard Wyoming (JSON header line, optional data and
payload); our own events carry the engine event's fields as their data.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
import logging
from typing import Any

from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info

from .const import (
    CHANNELS,
    EVENT_ERROR,
    MODEL_DECISION_NAME,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    WYOMING_ERROR_TOO_MANY_STREAMS,
    WYOMING_EVENT_PREFIX,
    WYOMING_LISTEN,
)

_LOGGER = logging.getLogger(__name__)

INFO_TIMEOUT = 5.0
# Closing waits for our unsent audio to drain; a server that stopped reading
# (a frozen host) would hold that wait forever, so after this the socket is aborted.
CLOSE_TIMEOUT = 2.0


class CannotConnect(Exception):
    """The server could not be reached or did not answer `describe`."""


class NotOurServer(Exception):
    """A Wyoming server answered, but it is not an Audio-Interaction server."""


@dataclass(frozen=True)
class ServerInfo:
    """What the server says about itself (from its Wyoming `info`)."""

    name: str
    version: str | None
    attribution: str | None
    wake_words: tuple[str, ...]

    @property
    def title(self) -> str:
        """The config entry's title: "Audio-Interaction" for our server."""
        return self.attribution or self.name


def server_info_from(info: Info) -> ServerInfo:
    """Our server advertises a wake program with the model `audio_interaction`.

    (A detection under that name is the model deciding to respond.) Any other
    Wyoming server (Piper, Whisper, openWakeWord, a satellite) lacks it.
    """
    for program in info.wake:
        models = [model.name for model in program.models]
        if MODEL_DECISION_NAME in models:
            return ServerInfo(
                name=program.name,
                version=program.version,
                attribution=program.attribution.name if program.attribution else None,
                wake_words=tuple(models),
            )
    raise NotOurServer


async def async_get_server_info(host: str, port: int, timeout: float = INFO_TIMEOUT) -> ServerInfo:
    """Ask the server to describe itself; raise CannotConnect or NotOurServer."""
    try:
        async with asyncio.timeout(timeout), StreamClient(host, port) as client:
            await client.write_event(Describe().event())
            while (event := await client.read_event()) is not None:
                if Info.is_type(event.type):
                    return server_info_from(Info.from_event(event))
    except (OSError, TimeoutError) as err:
        raise CannotConnect(f"{host}:{port}: {err or type(err).__name__}") from err
    raise CannotConnect(f"{host}:{port} closed the connection without answering describe")


class StreamClient(AsyncTcpClient):
    """Every connection to the server (a room, a file, speech-to-text, describe).

    A write to a connection the server already dropped raises ConnectionResetError,
    and closing never waits on a server that stopped reading.
    """

    async def write_event(self, event: Event) -> None:
        # Python before 3.13.6 (cpython gh-136234) raises AttributeError from
        # `writelines` once the transport has lost its connection (a killed server
        # resets it), where an OSError is what every caller handles.
        if self._writer is not None and self._writer.transport.is_closing():
            raise ConnectionResetError(f"{self.host}:{self.port} closed the connection")
        await super().write_event(event)

    async def disconnect(self) -> None:
        writer = self._writer
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await super().disconnect()
        except TimeoutError:
            if writer is not None:
                writer.transport.abort()


async def async_open_stream(
    host: str,
    port: int,
    room: str | None,
    *,
    live: bool = True,
    names: tuple[list[str], list[str]] | None = None,
    start: bool = True,
) -> StreamClient:
    """Connect and start a stream: `audio-interaction-listen` once, then `audio-start` (unless not `start`).

    `live=False` (a recording): the server never skips its audio when the
    engine falls behind; it stops reading instead, which paces our writes.
    `names`: the home's (entity names, area names) that the server's recogniser
    biases a request after a wake word to (vocabulary.py).
    """
    client = StreamClient(host, port)
    await client.connect()
    try:
        await client.write_event(listen_event(room, live, names))
        if start:
            await client.write_event(audio_start())
    except OSError:
        await async_close(client)
        raise
    return client


def listen_event(room: str | None, live: bool = True, names: tuple[list[str], list[str]] | None = None) -> Event:
    """`audio-interaction-listen`: once before the stream, and again when the home's names change."""
    listen: dict[str, Any] = {"room": room, "live": live}
    if names is not None:
        listen["transcript_names"], listen["transcript_terms"] = names
    return Event(type=WYOMING_LISTEN, data=listen)


def audio_start() -> Event:
    """`audio-start` for the PCM we send."""
    return AudioStart(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS).event()


async def async_close(client: AsyncTcpClient) -> None:
    """Close a stream; a connection the server already reset is closed too."""
    with contextlib.suppress(OSError):
        await client.disconnect()


def refusal(kind: str, data: dict[str, Any]) -> str | None:
    """The server's message when a parsed event (`engine_event`) turns our stream away: it already
    serves its `--max-streams`; None for any other event."""
    if kind == EVENT_ERROR and data.get("code") == WYOMING_ERROR_TOO_MANY_STREAMS:
        return str(data.get("message") or "too many streams")
    return None


def engine_event(event: Event) -> tuple[str, dict[str, Any]] | None:
    """`audio-interaction-sound` with data {...} -> ("sound", {...}); other events -> None.

    Wyoming's own `error` {text, code, ...} (what the server says we got wrong, or
    could not do) is read as our `error` {message, code, ...}.
    """
    if Error.is_type(event.type):
        error = Error.from_event(event)
        return EVENT_ERROR, {**(event.data or {}), "message": error.text, "code": error.code}
    if not event.type.startswith(WYOMING_EVENT_PREFIX):
        return None
    return event.type.removeprefix(WYOMING_EVENT_PREFIX), dict(event.data or {})
