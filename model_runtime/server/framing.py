"""Reading Wyoming frames with bounds, so a bad frame becomes an error instead of a hang or a crash.

Wyoming's own `async_read_event` trusts the sender: it buffers whatever
`payload_length` a header declares (a 10 GB declaration means 10 GB of memory)
and answers a malformed frame by silently ending the connection. The server
must instead tell the client what was wrong and go on, so it reads frames
here: the same wire format (a JSON header line, then `data_length` bytes of
JSON data, then `payload_length` bytes of payload), with limits. Writing
stays with wyoming's `async_write_event`.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from wyoming.event import Event

from .. import constants as c

# asyncio's StreamReader default limit: the longest header line it will hold.
MAX_HEADER_BYTES = 64 * 1024
MAX_DATA_BYTES = 64 * 1024
# 1 MiB: 32 s of 16 kHz 16-bit mono, 2.7 s of 48 kHz 32-bit stereo.
MAX_PAYLOAD_BYTES = 1024 * 1024
_DISCARD_PIECE = 64 * 1024


class FrameError(Exception):
    """A frame that cannot become an event. `fatal`: the next frame cannot be found."""

    def __init__(self, code: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.fatal = fatal


async def read_frame(reader: asyncio.StreamReader) -> Event | None:
    """The next event, None at end of stream; raises FrameError for a bad frame (already skipped)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed the connection (possibly mid-line)
    except asyncio.LimitOverrunError as err:
        await _discard_line(reader, err.consumed)
        raise FrameError(
            c.WYOMING_ERROR_FRAME_TOO_LARGE,
            f"frame header line longer than {MAX_HEADER_BYTES} bytes; skipped it",
        ) from None

    try:
        header = json.loads(line)
    except ValueError:
        raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"frame header is not JSON: {_preview(line)}") from None
    if not isinstance(header, dict):
        raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"frame header must be a JSON object, got {_preview(line)}")

    # Without trustworthy lengths the start of the next frame is unknown: give up on this connection.
    data_length = _length(header, "data_length")
    payload_length = _length(header, "payload_length")

    if data_length > MAX_DATA_BYTES or payload_length > MAX_PAYLOAD_BYTES:
        if not await _discard(reader, data_length + payload_length):
            return None
        raise FrameError(
            c.WYOMING_ERROR_FRAME_TOO_LARGE,
            f"frame too large (data_length {data_length}, payload_length {payload_length}; limits "
            f"{MAX_DATA_BYTES} and {MAX_PAYLOAD_BYTES} bytes): skipped it; send audio in smaller chunks",
        )

    try:
        data_bytes = await reader.readexactly(data_length) if data_length else b""
        payload = await reader.readexactly(payload_length) if payload_length else None
    except asyncio.IncompleteReadError:
        return None

    event_type = header.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"frame header has no event type: {_preview(line)}")
    data = header.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"'{event_type}': header 'data' must be a JSON object")
    if data_bytes:
        try:
            extra = json.loads(data_bytes)
        except ValueError:
            raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"'{event_type}': data bytes are not JSON") from None
        if not isinstance(extra, dict):
            raise FrameError(c.WYOMING_ERROR_MALFORMED_FRAME, f"'{event_type}': data bytes must be a JSON object")
        data = {**data, **extra}
    return Event(type=event_type, data=data, payload=payload)


def _length(header: dict[str, Any], key: str) -> int:
    value = header.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FrameError(
            c.WYOMING_ERROR_MALFORMED_FRAME,
            f"frame header '{key}' must be a non-negative integer, got {value!r}; closing the connection "
            "because the next frame cannot be found",
            fatal=True,
        )
    return value


async def _discard(reader: asyncio.StreamReader, n: int) -> bool:
    """Read and drop n bytes in bounded pieces; False if the stream ended first."""
    while n > 0:
        piece = await reader.read(min(n, _DISCARD_PIECE))
        if not piece:
            return False
        n -= len(piece)
    return True


async def _discard_line(reader: asyncio.StreamReader, consumed: int) -> None:
    """Drop an over-long line through its newline, never holding more than the reader's limit."""
    while True:
        await reader.readexactly(consumed) if consumed else None
        try:
            await reader.readuntil(b"\n")
            return
        except asyncio.LimitOverrunError as err:
            consumed = err.consumed
        except asyncio.IncompleteReadError:
            return


def _preview(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("utf-8", errors="replace").strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
