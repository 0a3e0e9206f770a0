"""The lite engine: one shared `LiteEngine`, one `LiteStream` per audio stream.

What carries no per-stream state is loaded once in the engine and shared (the
speech recognizer, the music model); detectors with state (VAD, wake-word
networks, and the safety net's alarm tracker and loudness floor) are per stream.
"""

from __future__ import annotations

import numpy as np

from ..constants import ENGINE_LITE, SAMPLE_RATE
from ..engine import Engine, EngineOptions, EngineStream
from ..events import Event
from .music import MusicDetector, load_shared_model
from .safety_net import SafetyNetStream, by_time
from .speech import SpeechDetector
from .transcribe import RequestCapture, SharedRecognizer
from .wakeword import WakeWordDetector, available_wake_words, check_wake_words


class LiteStream(EngineStream):
    def __init__(self, engine: "LiteEngine") -> None:
        self._net = SafetyNetStream()  # alarms, beeping, loud noises
        self._speech = SpeechDetector()
        self._wake = WakeWordDetector(engine.wake_word_names)
        self._request = RequestCapture(engine.recognizer)
        self._music = MusicDetector(engine.music_model)
        self._samples = 0

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        self._samples += len(audio)
        now = self._samples / SAMPLE_RATE
        speech = self._speech.process(audio)
        found = self._net.feed(audio) + self._music.process(audio, speech=self._speech.active)
        wake = self._wake.process(audio)
        started = any(e.data["state"] == "start" for e in speech)
        stopped = any(e.data["state"] == "stop" for e in speech)
        found += speech + wake
        found += self._request.process(audio, now, started, stopped)
        if wake and not self._request.listening:
            self._request.begin(wake[-1].t, self._speech.active)
        return by_time(found)

    def finish(self) -> list[Event]:
        now = self._samples / SAMPLE_RATE
        found = self._net.finish() + self._music.finish() + self._speech.finish()
        return by_time(found + self._request.finish(now))

    def close(self) -> None:
        self._wake.close()


class LiteEngine(Engine):
    name = ENGINE_LITE

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.wake_word_names = check_wake_words(list(options.wake_words))
        self.recognizer = SharedRecognizer() if self.wake_word_names else None
        self.music_model = load_shared_model()

    def open_stream(self) -> LiteStream:
        return LiteStream(self)

    def wake_words(self) -> list[str]:
        return available_wake_words()
