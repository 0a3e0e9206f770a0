"""The lite engine: one shared `LiteEngine`, one `LiteStream` per audio stream.

What carries no per-stream state is loaded once and shared (the speech
recognizer, in a process of its own for the whole server; the music model);
detectors with state (wake-word networks, and the safety net's VAD, alarm
tracker and loudness floor) are per stream.
"""

from __future__ import annotations

import numpy as np

from ..constants import ENGINE_LITE, EVENT_SPEECH, SAMPLE_RATE
from ..engine import Engine, EngineOptions, EngineStream
from ..events import Event
from .home_phrases import HomeVocabulary
from .music import load_shared_model
from .safety_net import SafetyNetStream, by_time
from .transcribe import RequestCapture, shared_recognizer
from .wakeword import WakeWordDetector, available_wake_words, check_wake_words


# A stream acts on its audio 0.1 s at a time, however it is handed over: the request capture
# starts after the piece that held the wake word, so in one larger piece (a server's backlog
# fed at once, a file) a wake word and the request spoken after it went by together, and the
# request was lost.
PIECE_SAMPLES = SAMPLE_RATE // 10


class LiteStream(EngineStream):
    def __init__(self, engine: "LiteEngine") -> None:
        self._net = SafetyNetStream(engine.music_model)  # alarms, beeping, loud noises, speech, music
        self._wake = WakeWordDetector(engine.wake_word_names)
        self._request = RequestCapture(engine.recognizer)
        self._samples = 0

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        found: list[Event] = []
        for start in range(0, len(audio), PIECE_SAMPLES):
            found += self._feed_piece(audio[start : start + PIECE_SAMPLES])
        return by_time(found)

    def _feed_piece(self, audio: np.ndarray) -> list[Event]:
        self._samples += len(audio)
        now = self._samples / SAMPLE_RATE
        found = self._net.feed(audio)
        wake = self._wake.process(audio)
        speech = [e.data["state"] for e in found if e.type == EVENT_SPEECH]
        found += wake
        found += self._request.process(audio, now, "start" in speech, "stop" in speech)
        if wake and not self._request.listening:
            self._request.begin(wake[-1].t, self._net.speaking)
        return found

    def use_home_vocabulary(self, home: HomeVocabulary | None) -> None:
        self._request.home = home

    def finish(self) -> list[Event]:
        now = self._samples / SAMPLE_RATE
        return by_time(self._net.finish() + self._request.finish(now))

    def close(self) -> None:
        self._wake.close()
        self._request.close()


class LiteEngine(Engine):
    name = ENGINE_LITE
    # Its feeds are short Python and numpy calls that hold the GIL: threads only contend for it.
    # Measured on 2 cores, 48 streams fed 0.1 s pieces: one thread 1.9 % of a core per stream and
    # 0.91 s per second of audio; two threads 2.8 % and 1.12 s (falling behind); one per stream 4.5 %.
    feed_threads = 1

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.wake_word_names = check_wake_words(list(options.wake_words))
        self.recognizer = shared_recognizer() if self.wake_word_names else None
        self.music_model = load_shared_model()

    def open_stream(self) -> LiteStream:
        return LiteStream(self)

    def wake_words(self) -> list[str]:
        return available_wake_words()
