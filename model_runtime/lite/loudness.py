"""`loud_noise`: a sudden, broadband level well above an adaptive noise floor (door slam, fall, glass).

Every 10 ms frame's level is compared with a floor that follows quiet quickly
and loud slowly; a frame well above it is loud. A loud sound is judged by its
first ONSET_FRAMES frames: if any of them is tonal, it is an alarm's beep, an
oven's or a microwave's (the alarm detector's `smoke_alarm`, `co_alarm`,
`beeping`), and is not reported; a slam, a fall or breaking glass spreads over
the band. (The very first frame of a beep can look broadband: mostly the room
before it, plus the beep's click.) Tonality is only measured for the rare loud
frames, so the detector costs next to nothing.
"""

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
# Tonality: in the band where beepers and alarms sound (their fundamentals and first
# harmonics), the strongest bin of a 32 ms spectrum against the band's median bin.
# A tone stands 30-60 dB out; noise, a slam's crack, glass ~8-15 dB.
TONAL_WINDOW = 512
TONAL_BAND_HZ = (400.0, 4_000.0)
TONAL_PEAK_DB = 25.0
ONSET_FRAMES = 3  # 30 ms: the event comes this much after the sound starts

DT = FRAME_SAMPLES / SAMPLE_RATE


class LoudNoiseDetector:
    def __init__(self) -> None:
        self._floor_db: float | None = None
        self._history = np.zeros(TONAL_WINDOW, dtype=np.float32)  # the last samples, for tonality
        self._pending = np.zeros(0, dtype=np.float32)
        self._samples_seen = 0
        self._active_since: float | None = None  # a loud sound is on (reported, or a tone being ignored)
        self._reported = False
        self._onset_tonality: list[float] = []
        self._peak_db = -120.0
        self._quiet_for = 0.0
        self._window = np.hanning(TONAL_WINDOW)
        lo, hi = (int(f * TONAL_WINDOW / SAMPLE_RATE) for f in TONAL_BAND_HZ)
        self._band = slice(lo, hi + 1)

    def process(self, audio: np.ndarray) -> list[Event]:
        out: list[Event] = []
        buf = np.concatenate([self._pending, audio]) if self._pending.size else audio
        n_frames = len(buf) // FRAME_SAMPLES
        self._pending = buf[n_frames * FRAME_SAMPLES :].copy()
        if n_frames == 0:
            return out
        used = np.concatenate([self._history, buf[: n_frames * FRAME_SAMPLES]])
        self._history = used[-TONAL_WINDOW:].copy()
        frames = buf[: n_frames * FRAME_SAMPLES].reshape(n_frames, FRAME_SAMPLES)
        levels = (10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)).tolist()
        for i, level in enumerate(levels):
            self._samples_seen += FRAME_SAMPLES
            t = self._samples_seen / SAMPLE_RATE
            if self._floor_db is None:
                self._floor_db = level
            loud = level > max(self._floor_db + MARGIN_DB, MIN_LEVEL_DBFS)
            if loud:
                self._quiet_for = 0.0
                self._peak_db = max(self._peak_db, level)
                if self._active_since is None:
                    self._active_since, self._onset_tonality = t - DT, []
                if len(self._onset_tonality) < ONSET_FRAMES:
                    self._onset_tonality.append(self._tonality(used[(i + 1) * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES + TONAL_WINDOW]))
                    if len(self._onset_tonality) == ONSET_FRAMES and self._broadband():
                        self._reported = True
                        out.append(self._event(t, end=None))
            elif self._active_since is not None:
                self._quiet_for += DT
                if self._quiet_for >= RELEASE_S:
                    if not self._reported and self._broadband():  # shorter than its onset frames
                        out.append(self._event(t, end=None))
                        self._reported = True
                    if self._reported:
                        out.append(self._event(t, end=t - self._quiet_for))
                    self._active_since, self._reported = None, False
                    self._peak_db = -120.0
            floor = self._floor_db
            step = FLOOR_RISE_DB_PER_S * DT if level > floor else -FLOOR_FALL_DB_PER_S * DT
            self._floor_db = min(max(floor + step, min(level, floor)), max(level, floor))
        return out

    def _tonality(self, window: np.ndarray) -> float:
        """dB the strongest bin stands above the band's median; `window`: the samples that end with the frame."""
        power = np.abs(np.fft.rfft(window * self._window)[self._band]) ** 2
        return float(10.0 * np.log10(np.max(power) / (np.median(power) + 1e-20) + 1e-12))

    def _broadband(self) -> bool:
        return max(self._onset_tonality) < TONAL_PEAK_DB

    def finish(self) -> list[Event]:
        if self._active_since is None:
            return []
        t = self._samples_seen / SAMPLE_RATE
        out = []
        if not self._reported and self._broadband():
            self._reported = True
            out.append(self._event(t, end=None))
        if self._reported:
            out.append(self._event(t, end=t - self._quiet_for))
        self._active_since, self._reported = None, False
        return out

    def _event(self, t: float, end: float | None) -> Event:
        assert self._active_since is not None and self._floor_db is not None
        excess = self._peak_db - self._floor_db
        score = float(np.clip(excess / (2 * MARGIN_DB), 0.5, 1.0))
        return events.sound(t, "loud_noise", score, self._active_since, end, level_db=round(self._peak_db, 1))
