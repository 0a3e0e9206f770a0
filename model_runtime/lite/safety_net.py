"""The safety net: the lite engine's alarm and loud-noise detectors, on their own.

The lite engine runs them in every stream. Beside the `audio-interaction`
engine the server runs them too, on the same audio, in a lane of their own
(`server/handler.py`): the model reports no `sound` events, may stay silent
through an alarm, may fall behind (its backlog is then skipped) or fail on a
stream, and a home must still hear its smoke or CO alarm. Signal processing
only, about 1 % of a core per room, nothing to load.
"""

from __future__ import annotations

import numpy as np

from ..engine import Engine, EngineStream
from ..events import Event
from .alarms import AlarmDetector
from .loudness import LoudNoiseDetector

SAFETY_NET_NAME = "safety-net"


class SafetyNetStream(EngineStream):
    """smoke_alarm / co_alarm (with their urgent `response`), beeping and loud_noise for one stream."""

    def __init__(self) -> None:
        self._alarms = AlarmDetector()
        self._loudness = LoudNoiseDetector()

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        return by_time(self._alarms.process(audio) + self._loudness.process(audio))

    def finish(self) -> list[Event]:
        return by_time(self._alarms.finish() + self._loudness.finish())


class SafetyNet(Engine):
    """The detectors' engine: nothing shared, one `SafetyNetStream` per stream."""

    name = SAFETY_NET_NAME

    def open_stream(self) -> SafetyNetStream:
        return SafetyNetStream()


def by_time(found: list[Event]) -> list[Event]:
    return sorted(found, key=lambda e: e.t)  # stable: each detector's own order is kept
