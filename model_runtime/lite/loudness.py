"""`loud_noise`: a sudden level well above an adaptive noise floor (door slam, fall, glass)."""

from __future__ import annotations

import numpy as np

from .. import events
from ..constants import SAMPLE_RATE
from ..events import Event

FRAME_SAMPLES = 160  # 10 ms
# The floor follows quiet quickly and loud slowly, so a long loud sound does
# not become the floor before it ends, and a quiet room re-arms fast.
FLOOR_RISE_DB_PER_S = 3.0
FLOOR_FALL_DB_PER_S = 30.0
MARGIN_DB = 20.0  # how far above the floor counts as "loud"
MIN_LEVEL_DBFS = -30.0  # and never for sounds this quiet in absolute terms
RELEASE_S = 0.5  # below the threshold this long ends the sound


class LoudNoiseDetector:
    def __init__(self) -> None:
        self._floor_db: float | None = None
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_seen = 0
        self._active_since: float | None = None
        self._peak_db = -120.0
        self._quiet_for = 0.0

    def process(self, audio: np.ndarray) -> list[Event]:
        out: list[Event] = []
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n_frames = len(buf) // FRAME_SAMPLES
        self._pending = buf[n_frames * FRAME_SAMPLES :].copy()
        if n_frames == 0:
            return out
        frames = buf[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES)
        levels = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
        dt = FRAME_SAMPLES / SAMPLE_RATE
        for level in levels:
            self._samples_seen += FRAME_SAMPLES
            t = self._samples_seen / SAMPLE_RATE
            if self._floor_db is None:
                self._floor_db = float(level)
            loud = level > max(self._floor_db + MARGIN_DB, MIN_LEVEL_DBFS)
            if loud:
                self._quiet_for = 0.0
                self._peak_db = max(self._peak_db, float(level))
                if self._active_since is None:
                    self._active_since = t - dt
                    out.append(self._event(t, end=None))
            elif self._active_since is not None:
                self._quiet_for += dt
                if self._quiet_for >= RELEASE_S:
                    out.append(self._event(t, end=t - self._quiet_for))
                    self._active_since = None
                    self._peak_db = -120.0
            step = FLOOR_RISE_DB_PER_S * dt if level > self._floor_db else -FLOOR_FALL_DB_PER_S * dt
            self._floor_db = float(np.clip(self._floor_db + step, min(level, self._floor_db), max(level, self._floor_db)))
        return out

    def finish(self) -> list[Event]:
        if self._active_since is None:
            return []
        t = self._samples_seen / SAMPLE_RATE
        self._active_since, start = None, self._active_since
        return [events.sound(t, "loud_noise", 1.0, start, t, level_db=round(self._peak_db, 1))]

    def _event(self, t: float, end: float | None) -> Event:
        assert self._active_since is not None and self._floor_db is not None
        excess = self._peak_db - self._floor_db
        score = float(np.clip(excess / (2 * MARGIN_DB), 0.5, 1.0))
        return events.sound(t, "loud_noise", score, self._active_since, end, level_db=round(self._peak_db, 1))
