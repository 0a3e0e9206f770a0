"""After a wake word: the spoken request as a `transcript`, from PocketSphinx.

PocketSphinx ships its US-English acoustic model, dictionary and language
model inside its wheel. One decoder is loaded per engine and shared by all
streams (a lock serialises them): a request is short and rare, so it is
decoded whole once it ends, rather than keeping a decoder per room.

The request is the audio from the wake word until speech stops (Silero VAD),
or MAX_REQUEST_S; if nobody speaks within NO_SPEECH_S there is no request.
"""

from __future__ import annotations

import threading

import numpy as np

from .. import events
from ..audio import float_to_pcm16
from ..constants import SAMPLE_RATE
from ..events import Event

MAX_REQUEST_S = 8.0
NO_SPEECH_S = 3.0
RUN_ON_S = 1.0  # speech going on this long after the wake word is the request


class SharedRecognizer:
    def __init__(self) -> None:
        from pocketsphinx import Decoder  # imported here: loading it costs ~0.4 s

        self._decoder = Decoder(loglevel="FATAL")
        self._lock = threading.Lock()

    def recognize(self, audio: np.ndarray) -> str:
        with self._lock:
            self._decoder.start_utt()
            self._decoder.process_raw(float_to_pcm16(audio), full_utt=True)
            self._decoder.end_utt()
            hyp = self._decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


class RequestCapture:
    """Per stream: collects the request after a wake word and hands it to the shared recognizer."""

    def __init__(self, recognizer: "SharedRecognizer | None") -> None:
        self._recognizer = recognizer
        self._chunks: list[np.ndarray] | None = None
        self._start = 0.0
        self._heard_speech = False
        self._run_on = False

    @property
    def listening(self) -> bool:
        return self._chunks is not None

    def begin(self, t: float, speaking: bool) -> None:
        if self._recognizer is not None:
            # Speech still on at the wake word is the wake word itself, unless it runs on into the request.
            self._chunks, self._start, self._heard_speech, self._run_on = [], t, False, speaking

    def process(self, audio: np.ndarray, now: float, speech_started: bool, speech_stopped: bool) -> list[Event]:
        if self._chunks is None:
            return []
        self._chunks.append(audio)
        elapsed = now - self._start
        self._heard_speech = self._heard_speech or speech_started or (self._run_on and speech_stopped and elapsed > RUN_ON_S)
        if (self._heard_speech and speech_stopped) or elapsed >= MAX_REQUEST_S:
            return self._end(now)
        if not self._heard_speech and elapsed >= NO_SPEECH_S:
            self._chunks = None  # nobody spoke after the wake word
        return []

    def finish(self, now: float) -> list[Event]:
        return self._end(now) if self._chunks is not None and self._heard_speech else []

    def _end(self, now: float) -> list[Event]:
        assert self._chunks is not None and self._recognizer is not None
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        self._chunks = None
        text = self._recognizer.recognize(audio) if len(audio) > SAMPLE_RATE // 10 else ""
        return [events.transcript(now, text, self._start, now)] if text else []
