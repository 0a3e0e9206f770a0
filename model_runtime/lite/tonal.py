"""Tonal energy tracking across the band alarm sounders use (about 450 Hz to 3.7 kHz).

Every 10 ms a 32 ms spectrum is taken. A bin is *salient* when it stands out
both across frequency (a narrow peak above its neighbours: a tone, not noise)
and across time (above that bin's own recent floor: something new, not the
fridge's hum or a vacuum's whine). Salience is pooled into overlapping
frequency channels of several widths, so a fixed tone, a tone that drifts and
a tone that sweeps an octave each stay inside one channel; a loud tonal
background in one channel does not hide an alarm in another.

Where low-frequency units sound (their 520 Hz +-10 % and its 2nd harmonic), one-bin
*keyed* channels hear a tone by its on/off keying alone: a chord's notes a few
semitones either side fill the neighbours a salient bin must stand above, so under
music a 520 Hz unit's beep is salient for a frame or two only, yet its own bin still
rises 20-25 dB at each beep and falls back in each gap. A keyed channel's salience is
its bin's temporal contrast wherever the bin is a spectral peak (above both adjacent
bins), else the usual salience.

`TonalTracker.process(audio)` returns, per complete frame, each channel's
salience (dB), level (dB) and the frequency of its most salient bin.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ..constants import SAMPLE_RATE

N_FFT = 512  # 32 ms: resolves 31 Hz, short enough for 0.1 s beeps
HOP = 160  # 10 ms
FRAME_SECONDS = HOP / SAMPLE_RATE
BIN_HZ = SAMPLE_RATE / N_FFT
BAND_HZ = (450.0, 3700.0)
KEYED_HZ = (450.0, 1100.0)  # one-bin keyed channels: low units' fundamentals and 2nd harmonics
# Neighbours a peak is compared with: beyond the Hann main lobe (+-2 bins).
NEIGHBOUR_NEAR, NEIGHBOUR_FAR = 3, 8
FLOOR_SECONDS = 1.6  # a bin's floor = its lowest level over this long (spans any alarm gap)
SMOOTH_FRAMES = 3  # average power over 30 ms before taking levels


@dataclass(frozen=True)
class Channel:
    lo_bin: int
    hi_bin: int  # exclusive
    narrow: bool = False  # a 1/4-octave channel: it hears one harmonic of a sounder, not several
    keyed: bool = False  # one bin, salient by its on/off keying alone (see the module's docstring)


def _bin(hz: float) -> int:
    return int(round(hz * N_FFT / SAMPLE_RATE))


def make_channels() -> list[Channel]:
    """Overlapping channels: 1/4 octave (hop 1/8), 1 octave (hop 1/2), keyed one-bin ones (KEYED_HZ), and the whole band."""
    lo, hi = BAND_HZ
    channels: list[Channel] = []
    for width, hop in ((0.25, 0.125), (1.0, 0.5)):
        f = lo
        while f < hi:
            a, b = _bin(f), min(_bin(f * 2**width) + 1, _bin(hi) + 1)
            channels.append(Channel(a, max(b, a + 2), narrow=width < 1.0))
            f *= 2**hop
    channels += [Channel(b, b + 1, keyed=True) for b in range(_bin(KEYED_HZ[0]), _bin(KEYED_HZ[1]) + 1)]
    channels.append(Channel(_bin(lo), _bin(hi) + 1))
    return channels


@dataclass
class TonalFrames:
    """Per frame (rows) and channel (columns)."""

    times: np.ndarray  # stream time (s) of each frame's end
    salience: np.ndarray  # dB a tone stands out (min of spectral and temporal contrast)
    level: np.ndarray  # dB (full scale) of the channel's most salient bin
    # dB of the bin just beyond the channel where that bin is one of its edges (-inf elsewhere):
    # the channel may be hearing the skirt of a tone beside it.
    beyond_level: np.ndarray
    freq: np.ndarray  # Hz of the channel's most salient bin
    band_level: np.ndarray  # dB (full scale) of all the band's power, per frame (one column)
    # Every analysed bin's salience and level (dB; columns from `first_bin` up): where a channel's
    # loudest tone changes, whether the tone it had goes on, and whether the new one was there before.
    bin_salience: np.ndarray
    bin_level: np.ndarray
    first_bin: int

    def column(self, hz: float) -> int:
        """The column of `bin_salience` and `bin_level` for the bin at `hz` (a channel's `freq` is a bin's centre)."""
        return int(round(hz / BIN_HZ)) - self.first_bin


class TonalTracker:
    def __init__(self) -> None:
        self.channels = make_channels()
        self._lo = min(ch.lo_bin for ch in self.channels) - NEIGHBOUR_FAR
        self._hi = max(ch.hi_bin for ch in self.channels) + NEIGHBOUR_FAR
        self._window = np.hanning(N_FFT).astype(np.float32)
        self._power_scale = 4.0 / float(np.sum(self._window)) ** 2
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        self._floor_frames = int(FLOOR_SECONDS / FRAME_SECONDS)
        # The floor's history as one minimum row per processed block (not per frame):
        # a running minimum over blocks costs a fraction of a sliding one over frames.
        # A new stream has no floor yet: start it at silence, so an alarm already
        # sounding when the stream opens still counts from its first beep.
        self._silence = (1, np.full(self._hi - self._lo, -120.0))
        self._blocks: deque[tuple[int, np.ndarray]] = deque([self._silence])
        self._power_tail: np.ndarray | None = None  # last frames' power, for smoothing
        self._bins_hz = np.arange(self._lo, self._hi) * SAMPLE_RATE / N_FFT
        self.n_bins = self._hi - self._lo  # analysed bins
        self._channel_bins = [(ch.lo_bin - self._lo, ch.hi_bin - self._lo) for ch in self.channels]
        # Each channel's edge bins (columns; -1 for a keyed channel's one bin, which is its tone by design)
        self._edge_low = np.array([-1 if ch.keyed else a for ch, (a, _) in zip(self.channels, self._channel_bins)])
        self._edge_high = np.array([-1 if ch.keyed else b - 1 for ch, (_, b) in zip(self.channels, self._channel_bins)])
        # Keyed channels as index arrays (columns, and their one bin each): handled all at once
        self._keyed_columns = np.array([c for c, ch in enumerate(self.channels) if ch.keyed], dtype=np.int64)
        self._keyed_bins = np.array([ch.lo_bin - self._lo for ch in self.channels if ch.keyed], dtype=np.int64)
        self._searched = [(c, a, b) for c, ((a, b), ch) in enumerate(zip(self._channel_bins, self.channels)) if not ch.keyed]

    def process(self, audio: np.ndarray) -> TonalFrames | None:
        buf = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        n_frames = 0 if len(buf) < N_FFT else 1 + (len(buf) - N_FFT) // HOP
        if n_frames == 0:
            self._pending = buf
            return None
        self._pending = buf[n_frames * HOP :]
        frames = np.lib.stride_tricks.sliding_window_view(buf, N_FFT)[::HOP][:n_frames]
        spec = np.fft.rfft(frames * self._window, axis=1)[:, self._lo : self._hi]
        power = (spec.real**2 + spec.imag**2) * self._power_scale

        # Temporal smoothing over SMOOTH_FRAMES, continuing across calls.
        tail = self._power_tail if self._power_tail is not None else np.repeat(power[:1], SMOOTH_FRAMES - 1, axis=0)
        joined = np.concatenate([tail, power])
        self._power_tail = joined[-(SMOOTH_FRAMES - 1) :]
        smooth = sum(joined[k : len(joined) - SMOOTH_FRAMES + 1 + k] for k in range(SMOOTH_FRAMES)) / SMOOTH_FRAMES
        db = 10.0 * np.log10(smooth + 1e-12)

        # Spectral contrast: the bin against the mean power of its neighbours on each side (the louder side).
        csum = np.concatenate([np.zeros((len(smooth), 1)), np.cumsum(smooth, axis=1)], axis=1)
        width = NEIGHBOUR_FAR - NEIGHBOUR_NEAR + 1
        idx = np.arange(NEIGHBOUR_FAR, smooth.shape[1] - NEIGHBOUR_FAR)
        left = (csum[:, idx - NEIGHBOUR_NEAR + 1] - csum[:, idx - NEIGHBOUR_FAR]) / width
        right = (csum[:, idx + NEIGHBOUR_FAR + 1] - csum[:, idx + NEIGHBOUR_NEAR]) / width
        spectral = np.full_like(db, -99.0)
        spectral[:, idx] = db[:, idx] - 10.0 * np.log10(np.maximum(left, right) + 1e-12)

        # Temporal contrast: the bin against its own minimum over the last ~FLOOR_SECONDS
        # (the stored blocks, then this block's frames up to each frame).
        floor = np.minimum(np.minimum.accumulate(db, axis=0), np.min([row for _, row in self._blocks], axis=0))
        keyed_floor = self._keyed_floor(db) if self._blocks[0] is self._silence else floor[:, self._keyed_bins]
        self._blocks.append((n_frames, db.min(axis=0)))
        while sum(n for n, _ in self._blocks) > self._floor_frames:
            self._blocks.popleft()
        temporal = db - floor

        salience = np.minimum(spectral, temporal)
        best = self._argmax_per_channel(salience)
        rows = np.arange(n_frames)[:, None]
        channel_salience = salience[rows, best]
        j = self._keyed_bins
        peak = (db[:, j] >= db[:, j - 1]) & (db[:, j] >= db[:, j + 1])
        channel_salience[:, self._keyed_columns] = np.where(peak, db[:, j] - keyed_floor, salience[:, j])
        self._frames_done += n_frames
        end_samples = (self._frames_done - n_frames + np.arange(1, n_frames + 1)) * HOP + (N_FFT - HOP)
        return TonalFrames(
            times=end_samples / SAMPLE_RATE,
            salience=channel_salience,
            level=db[rows, best],
            beyond_level=self._beyond_level(db, best),
            freq=self._bins_hz[best],
            band_level=10.0 * np.log10(np.sum(smooth, axis=1) + 1e-12),
            bin_salience=salience,
            bin_level=db,
            first_bin=self._lo,
        )

    def _keyed_floor(self, db: np.ndarray) -> np.ndarray:
        """Keyed bins' floor while the stream's floor still starts at silence: the lowest level heard so far.

        A keyed channel's salience is its bin's temporal contrast alone, with no spectral contrast to
        bound it, so against silence every spectral peak of its bin would stand out by ~80 dB: a piano
        note struck three times in a stream's first 2.5 s was a smoke alarm (music seeds 31588, 33552,
        34600). An alarm already sounding when a stream opens is still heard in the other channels.
        """
        heard = np.minimum.accumulate(db[:, self._keyed_bins], axis=0)
        before = [row[self._keyed_bins] for block in self._blocks if block is not self._silence for row in block[1:]]
        return np.minimum(heard, np.min(before, axis=0)) if before else heard

    def _beyond_level(self, db: np.ndarray, best: np.ndarray) -> np.ndarray:
        """`TonalFrames.beyond_level`."""
        rows = np.arange(len(db))[:, None]
        return np.where(best == self._edge_low, db[rows, best - 1], np.where(best == self._edge_high, db[rows, best + 1], -np.inf))

    def _argmax_per_channel(self, salience: np.ndarray) -> np.ndarray:
        """Index (into analysed bins) of the most salient bin of each channel, per frame."""
        out = np.empty((salience.shape[0], len(self.channels)), dtype=np.int64)
        for c, a, b in self._searched:
            out[:, c] = a + salience[:, a:b].argmax(axis=1)  # (the method: np.argmax's wrapper costs as much)
        out[:, self._keyed_columns] = self._keyed_bins  # (a keyed channel's one bin)
        return out
