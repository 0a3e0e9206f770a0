"""The lite engine: one shared `LiteEngine`, one `LiteStream` per audio stream.

What carries no per-stream state is loaded once and shared (the speech
recognizer, in a process of its own for the whole server; the music model);
detectors with state (wake-word networks, and the safety net's VAD, alarm
tracker and loudness floor) are per stream.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..constants import ENGINE_LITE, EVENT_SPEECH, SAMPLE_RATE
from ..engine import Engine, EngineOptions, EngineStream
from ..events import Event
from .home_phrases import HomeVocabulary
from .music import load_shared_model
from .safety_net import SafetyNetStream, by_time
from .transcribe import RequestCapture, shared_recognizer
from .wakeword import WakeWordDetector, available_wake_words, check_wake_words


# The request capture follows the audio 0.1 s at a time, however it is handed over: it starts
# after the piece that held the wake word, so in one larger piece (a server's backlog fed at
# once, a file) a wake word and the request spoken after it went by together, and the request
# was lost. (The detectors take the whole piece: splitting it for them too cost the server
# 15-40 % in latency at 32 streams, where its one thread feeds larger pieces.)
PIECE_SAMPLES = SAMPLE_RATE // 10


class LiteStream(EngineStream):
    def __init__(self, engine: "LiteEngine") -> None:
        self._net = SafetyNetStream(engine.music_model)  # alarms, beeping, loud noises, speech, music
        self._wake = WakeWordDetector(engine.wake_word_names)
        self._request = RequestCapture(engine.recognizer)
        self._samples = 0

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        start, speaking = self._samples, self._net.speaking
        self._samples += len(audio)
        found = self._net.feed(audio)
        wake = self._wake.process(audio)
        speech = [e for e in found if e.type == EVENT_SPEECH]
        found += wake
        pieces = max(1, math.ceil(len(audio) / PIECE_SAMPLES))

        def piece_of(event: Event) -> int:
            sample = round(event.t * SAMPLE_RATE) - start  # (rounded: a time at a piece's end stays in it)
            return min(pieces - 1, max(0, math.ceil(sample / PIECE_SAMPLES) - 1))

        for index in range(pieces):
            piece = audio[index * PIECE_SAMPLES : (index + 1) * PIECE_SAMPLES]
            now = (start + index * PIECE_SAMPLES + len(piece)) / SAMPLE_RATE
            states = [e.data["state"] for e in speech if piece_of(e) == index]
            found += self._request.process(piece, now, "start" in states, "stop" in states)
            woken = [e for e in wake if piece_of(e) == index]
            if woken and not self._request.listening:
                # Someone still speaking at the wake word: the VAD's last word on it by then.
                said = [e.data["state"] for e in speech if e.t <= woken[-1].t]
                self._request.begin(woken[-1].t, said[-1] == "start" if said else speaking)
        return by_time(found)

    def use_home_vocabulary(self, home: HomeVocabulary | None) -> None:
        self._request.home = home

    def finish(self) -> list[Event]:
        found, rest = self.finish_later()
        return by_time(found + (rest() if rest is not None else []))

    def finish_later(self) -> tuple[list[Event], Callable[[], list[Event]] | None]:
        now = self._samples / SAMPLE_RATE
        found = by_time(self._net.finish() + self._request.finish(now))
        return found, (self._request.transcripts_to_come if self._request.waiting else None)

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
