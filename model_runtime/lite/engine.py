"""The lite engine: one shared `LiteEngine`, one `LiteStream` per audio stream.

Each stream runs its own detectors (they hold per-stream state); what can be
shared between streams (models that carry no state) lives in the engine.
"""

from __future__ import annotations

import numpy as np

from ..constants import ENGINE_LITE
from ..engine import Engine, EngineOptions, EngineStream
from ..events import Event
from .alarms import AlarmDetector
from .loudness import LoudNoiseDetector


class LiteStream(EngineStream):
    def __init__(self) -> None:
        self._loudness = LoudNoiseDetector()
        self._alarms = AlarmDetector()

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32)
        return _by_time(self._alarms.process(audio) + self._loudness.process(audio))

    def finish(self) -> list[Event]:
        return _by_time(self._alarms.finish() + self._loudness.finish())


def _by_time(found: list[Event]) -> list[Event]:
    return sorted(found, key=lambda e: e.t)  # stable: each detector's own order is kept


class LiteEngine(Engine):
    name = ENGINE_LITE

    def __init__(self, options: EngineOptions) -> None:
        self.options = options

    def open_stream(self) -> LiteStream:
        return LiteStream()
