"""The safety net: the lite engine's detectors that the model does not replace, on their own.

Smoke and CO alarms (with their urgent `response`), beeping, loud noises,
speech activity and music. The lite engine runs them in every stream (with its
wake words and request capture around them). Beside the `audio-interaction`
engine the server runs them too, on the same audio, in a lane of their own
(`server/handler.py`): the model reports no `sound` or `speech` events, may stay
silent through an alarm, may fall behind (its backlog is then skipped) or fail
on a stream, and a home must still hear its smoke or CO alarm (and a room's
speech and music sensors must still work). About 1 % of a core per room.
"""

from __future__ import annotations

import numpy as np

from ..engine import Engine, EngineStream
from ..events import Event
from .alarms import AlarmDetector
from .loudness import LoudNoiseDetector
from .music import MusicDetector, load_shared_model
from .speech import SpeechDetector

SAFETY_NET_NAME = "safety-net"


class SafetyNetStream(EngineStream):
    """The detectors of one stream; `music_model` is shared by all streams (it holds no state)."""

    def __init__(self, music_model) -> None:
        self._speech = SpeechDetector()
        self._alarms = AlarmDetector()
        self._loudness = LoudNoiseDetector()
        self._music = MusicDetector(music_model)

    @property
    def speaking(self) -> bool:
        """Someone is speaking now (the VAD's state after the last piece)."""
        return self._speech.active

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        speech = self._speech.process(audio)  # first: music skips windows spoken all through
        found = self._alarms.process(audio) + self._loudness.process(audio)
        return by_time(found + self._music.process(audio, speech=self._speech.active) + speech)

    def finish(self) -> list[Event]:
        found = self._alarms.finish() + self._loudness.finish() + self._music.finish()
        return by_time(found + self._speech.finish())


class SafetyNet(Engine):
    """The detectors' engine: the shared music model, one `SafetyNetStream` per stream."""

    name = SAFETY_NET_NAME

    def __init__(self) -> None:
        self.music_model = load_shared_model()

    def open_stream(self) -> SafetyNetStream:
        return SafetyNetStream(self.music_model)


def by_time(found: list[Event]) -> list[Event]:
    return sorted(found, key=lambda e: e.t)  # stable: each detector's own order is kept
