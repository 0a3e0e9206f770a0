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
bins), else the usual salience. Keyed channels hear a 64 ms spectrum of their own, whose
15.6 Hz bins part a unit's tone from a note a semitone away.

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
# Keyed channels' bins come from a 64 ms spectrum (15.6 Hz bins): a 520 Hz unit lies between two of
# the 31 Hz bins, and a chord's note a semitone or two above fills the nearer one. (A CO alarm's
# 0.1 s beeps and gaps outlast the window: its beeps measure 0.1-0.15 s there, its gaps stay gaps.)
KEYED_N_FFT = 1024
KEYED_BIN_HZ = SAMPLE_RATE / KEYED_N_FFT
# Neighbours a peak is compared with: beyond the Hann main lobe (+-2 bins).
NEIGHBOUR_NEAR, NEIGHBOUR_FAR = 3, 8
FLOOR_SECONDS = 1.6  # a bin's floor = its lowest level over this long (spans any alarm gap)
SMOOTH_FRAMES = 3  # average power over 30 ms before taking levels


@dataclass(frozen=True)
class Channel:
    lo_bin: int  # (a keyed channel's: of the KEYED_N_FFT spectrum)
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
    low, high = (int(round(hz * KEYED_N_FFT / SAMPLE_RATE)) for hz in KEYED_HZ)
    channels += [Channel(b, b + 1, keyed=True) for b in range(low, high + 1)]
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


class _Spectrum:
    """One resolution's power spectrum over bins [lo, hi), smoothed over SMOOTH_FRAMES frames across calls."""

    def __init__(self, n_fft: int, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self._window = np.hanning(n_fft).astype(np.float32)
        self._power_scale = 4.0 / float(np.sum(self._window)) ** 2  # a full-scale sine's peak bin at 0 dB
        self._tail: np.ndarray | None = None  # last frames' power, for smoothing

    def power(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed power and its dB, per frame (rows) and bin (columns)."""
        spec = np.fft.rfft(frames * self._window, axis=1)[:, self.lo : self.hi]
        power = (spec.real**2 + spec.imag**2) * self._power_scale
        tail = self._tail if self._tail is not None else np.repeat(power[:1], SMOOTH_FRAMES - 1, axis=0)
        joined = np.concatenate([tail, power])
        self._tail = joined[-(SMOOTH_FRAMES - 1) :]
        smooth = sum(joined[k : len(joined) - SMOOTH_FRAMES + 1 + k] for k in range(SMOOTH_FRAMES)) / SMOOTH_FRAMES
        return smooth, 10.0 * np.log10(smooth + 1e-12)


def _spectral_contrast(smooth: np.ndarray, db: np.ndarray) -> np.ndarray:
    """Each bin against the mean power of its neighbours on each side (the louder side); -99 where a side is out of range."""
    csum = np.concatenate([np.zeros((len(smooth), 1)), np.cumsum(smooth, axis=1)], axis=1)
    width = NEIGHBOUR_FAR - NEIGHBOUR_NEAR + 1
    idx = np.arange(NEIGHBOUR_FAR, smooth.shape[1] - NEIGHBOUR_FAR)
    left = (csum[:, idx - NEIGHBOUR_NEAR + 1] - csum[:, idx - NEIGHBOUR_FAR]) / width
    right = (csum[:, idx + NEIGHBOUR_FAR + 1] - csum[:, idx + NEIGHBOUR_NEAR]) / width
    spectral = np.full_like(db, -99.0)
    spectral[:, idx] = db[:, idx] - 10.0 * np.log10(np.maximum(left, right) + 1e-12)
    return spectral


class _Floor:
    """Each bin's lowest level over the last ~FLOOR_SECONDS: one minimum row per processed block (not per frame).

    A running minimum over blocks costs a fraction of a sliding one over frames. A new stream
    has no floor yet: `from_silence` starts it at silence, so an alarm already sounding when
    the stream opens still counts from its first beep; otherwise it starts from what the
    stream has heard.
    """

    def __init__(self, n_bins: int, from_silence: bool) -> None:
        self._frames = int(FLOOR_SECONDS / FRAME_SECONDS)
        # (-120 dB: the lowest level `_Spectrum` gives)
        self._blocks: deque[tuple[int, np.ndarray]] = deque([(1, np.full(n_bins, -120.0))] if from_silence else [])

    def update(self, db: np.ndarray) -> np.ndarray:
        """The floor at each of the block's frames (up to and including it); then the block is remembered."""
        floor = np.minimum.accumulate(db, axis=0)
        if self._blocks:
            floor = np.minimum(floor, np.min([row for _, row in self._blocks], axis=0))
        self._blocks.append((len(db), db.min(axis=0)))
        while sum(n for n, _ in self._blocks) > self._frames:
            self._blocks.popleft()
        return floor


class TonalTracker:
    def __init__(self) -> None:
        self.channels = make_channels()
        searched = [ch for ch in self.channels if not ch.keyed]
        self._lo = min(ch.lo_bin for ch in searched) - NEIGHBOUR_FAR
        self._hi = max(ch.hi_bin for ch in searched) + NEIGHBOUR_FAR
        self._spectrum = _Spectrum(N_FFT, self._lo, self._hi)
        self._floor = _Floor(self._hi - self._lo, from_silence=True)
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames_done = 0
        self._bins_hz = np.arange(self._lo, self._hi) * SAMPLE_RATE / N_FFT
        self.n_bins = self._hi - self._lo  # analysed bins
        self._channel_bins = [(ch.lo_bin - self._lo, ch.hi_bin - self._lo) for ch in self.channels]
        # Each channel's edge bins (columns; -1 for a keyed channel, whose one bin is its tone by design)
        self._edge_low = np.array([-1 if ch.keyed else a for ch, (a, _) in zip(self.channels, self._channel_bins)])
        self._edge_high = np.array([-1 if ch.keyed else b - 1 for ch, (_, b) in zip(self.channels, self._channel_bins)])
        self._searched = [(c, a, b) for c, ((a, b), ch) in enumerate(zip(self._channel_bins, self.channels)) if not ch.keyed]
        # Keyed channels (columns) and their bins in the finer spectrum, which they alone hear.
        self._keyed_columns = np.array([c for c, ch in enumerate(self.channels) if ch.keyed], dtype=np.int64)
        keyed_bins = [ch.lo_bin for ch in self.channels if ch.keyed]
        fine_lo, fine_hi = min(keyed_bins) - NEIGHBOUR_FAR, max(keyed_bins) + NEIGHBOUR_FAR + 1
        self._fine = _Spectrum(KEYED_N_FFT, fine_lo, fine_hi)
        self._fine_floor = _Floor(fine_hi - fine_lo, from_silence=False)
        self._keyed_bins = np.array(keyed_bins, dtype=np.int64) - fine_lo
        self._keyed_hz = np.array(keyed_bins) * KEYED_BIN_HZ
        self._history = np.zeros(KEYED_N_FFT - N_FFT, dtype=np.float32)  # the samples a fine frame reaches back before `_pending`

    def process(self, audio: np.ndarray) -> TonalFrames | None:
        buf = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        n_frames = 0 if len(buf) < N_FFT else 1 + (len(buf) - N_FFT) // HOP
        if n_frames == 0:
            self._pending = buf
            return None
        reach = np.concatenate([self._history, buf])  # (each fine frame ends where its frame does)
        self._history = reach[n_frames * HOP : n_frames * HOP + len(self._history)]
        self._pending = buf[n_frames * HOP :]
        frames = np.lib.stride_tricks.sliding_window_view(buf, N_FFT)[::HOP][:n_frames]
        smooth, db = self._spectrum.power(frames)
        # Salience: spectral contrast (a narrow peak above its neighbours) and temporal
        # contrast (the bin against its own floor), whichever is the less.
        floor = self._floor.update(db)
        salience = np.minimum(_spectral_contrast(smooth, db), db - floor)
        best = self._argmax_per_channel(salience)
        rows = np.arange(n_frames)[:, None]
        channel_salience, level, freq = salience[rows, best], db[rows, best], self._bins_hz[best]
        self._hear_keyed(np.lib.stride_tricks.sliding_window_view(reach, KEYED_N_FFT)[::HOP][:n_frames], channel_salience, level, freq)
        self._frames_done += n_frames
        end_samples = (self._frames_done - n_frames + np.arange(1, n_frames + 1)) * HOP + (N_FFT - HOP)
        return TonalFrames(
            times=end_samples / SAMPLE_RATE,
            salience=channel_salience,
            level=level,
            beyond_level=self._beyond_level(db, best),
            freq=freq,
            band_level=10.0 * np.log10(np.sum(smooth, axis=1) + 1e-12),
            bin_salience=salience,
            bin_level=db,
            first_bin=self._lo,
        )

    def _hear_keyed(self, fine_frames: np.ndarray, salience: np.ndarray, level: np.ndarray, freq: np.ndarray) -> None:
        """Fill the keyed channels' columns of `salience`, `level` and `freq` from the finer spectrum.

        A keyed channel's salience is its bin's temporal contrast wherever the bin is a spectral
        peak, else the bin's usual salience. Its floor starts from what the stream has heard, not
        silence: with no spectral contrast to bound it, every spectral peak of its bin would stand
        out by ~80 dB until the floor was known (a 1,094 Hz note struck three times in a stream's
        first 2.5 s was a smoke alarm: music seeds 31588, 33552, 34600). An alarm already sounding
        when a stream opens is still heard in the other channels.
        """
        smooth, db = self._fine.power(fine_frames)
        temporal = db - self._fine_floor.update(db)
        j = self._keyed_bins
        peak = (db[:, j] >= db[:, j - 1]) & (db[:, j] >= db[:, j + 1])
        usual = np.minimum(_spectral_contrast(smooth, db)[:, j], temporal[:, j])
        columns = self._keyed_columns
        salience[:, columns] = np.where(peak, temporal[:, j], usual)
        level[:, columns] = db[:, j]
        freq[:, columns] = self._keyed_hz

    def _beyond_level(self, db: np.ndarray, best: np.ndarray) -> np.ndarray:
        """`TonalFrames.beyond_level`."""
        rows = np.arange(len(db))[:, None]
        return np.where(best == self._edge_low, db[rows, best - 1], np.where(best == self._edge_high, db[rows, best + 1], -np.inf))

    def _argmax_per_channel(self, salience: np.ndarray) -> np.ndarray:
        """Index (into analysed bins) of the most salient bin of each channel, per frame."""
        out = np.empty((salience.shape[0], len(self.channels)), dtype=np.int64)
        for c, a, b in self._searched:
            out[:, c] = a + salience[:, a:b].argmax(axis=1)  # (the method: np.argmax's wrapper costs as much)
        out[:, self._keyed_columns] = 0  # (a keyed channel's columns are filled from the finer spectrum)
        return out
