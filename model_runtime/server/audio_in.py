"""Audio chunks in any rate, width and channel count -> 16 kHz mono float32 for the engine.

Width and rate go through wyoming's `AudioChunkConverter` (audioop: the same
conversion Wyoming services use); channels are averaged with numpy because
audioop only knows mono and stereo, and a client may send 4 or 6 channels.
A format that cannot be converted raises `AudioFormatError` with a message
saying what is accepted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from wyoming.audio import AudioChunk, AudioChunkConverter

from ..audio import pcm16_to_float
from ..constants import SAMPLE_RATE, WYOMING_ERROR_AUDIO_FORMAT
from ..errors import UserError

WIDTHS = (1, 2, 3, 4)  # bytes per sample audioop converts
MIN_RATE, MAX_RATE = 1_000, 384_000
MAX_CHANNELS = 64


class AudioFormatError(UserError):
    code = WYOMING_ERROR_AUDIO_FORMAT  # the Wyoming error code the server answers with


def audio_format(data: dict[str, Any], event_type: str) -> tuple[int, int, int]:
    """(rate, width, channels) from an audio-start/audio-chunk's data, checked."""
    values = []
    for key, low, high, unit in (
        ("rate", MIN_RATE, MAX_RATE, "Hz"),
        ("width", 1, 4, "bytes per sample"),
        ("channels", 1, MAX_CHANNELS, "channels"),
    ):
        value = data.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise AudioFormatError(f"{event_type}: '{key}' must be an integer, got {value!r}")
        if not low <= value <= high:
            raise AudioFormatError(f"{event_type}: {key} {value} not supported; use {low} to {high} {unit}")
        values.append(value)
    rate, width, channels = values
    return rate, width, channels


class AudioInput:
    """Per stream converter: keeps the resampler's state between chunks of one format."""

    def __init__(self) -> None:
        self._format: tuple[int, int, int] | None = None
        self._to_16_bit = AudioChunkConverter(width=2)
        self._to_16k = AudioChunkConverter(rate=SAMPLE_RATE)

    def convert(self, rate: int, width: int, channels: int, pcm: bytes) -> np.ndarray:
        """PCM bytes of the given format -> 16 kHz mono float32 samples."""
        frame_bytes = width * channels
        if len(pcm) % frame_bytes:
            raise AudioFormatError(
                f"audio-chunk: {len(pcm)} bytes is not a whole number of frames of {frame_bytes} bytes "
                f"(width {width} x channels {channels})"
            )
        if (rate, width, channels) != self._format:
            # A new format starts a new resampler: its state belongs to the old rate.
            self._format = (rate, width, channels)
            self._to_16k = AudioChunkConverter(rate=SAMPLE_RATE)
        if not pcm:
            return np.zeros(0, dtype=np.float32)
        pcm16 = self._to_16_bit.convert(AudioChunk(rate=rate, width=width, channels=channels, audio=pcm)).audio
        if channels > 1:
            frames = np.frombuffer(pcm16, dtype="<i2").reshape(-1, channels)
            pcm16 = frames.mean(axis=1).round().astype("<i2").tobytes()
        mono = self._to_16k.convert(AudioChunk(rate=rate, width=2, channels=1, audio=pcm16)).audio
        return pcm16_to_float(mono)
