"""The lite engine: one shared `LiteEngine`, one `LiteStream` per audio stream."""

from __future__ import annotations

import numpy as np

from ..constants import ENGINE_LITE
from ..engine import Engine, EngineOptions, EngineStream
from ..events import Event
from .loudness import LoudNoiseDetector


class LiteStream(EngineStream):
    def __init__(self) -> None:
        self._loudness = LoudNoiseDetector()

    def feed(self, audio: np.ndarray) -> list[Event]:
        return self._loudness.process(np.asarray(audio, dtype=np.float32))

    def finish(self) -> list[Event]:
        return self._loudness.finish()


class LiteEngine(Engine):
    name = ENGINE_LITE

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def open_stream(self) -> LiteStream:
        return LiteStream()
