"""Whisper-style log-mel features, offline (whole clip) and streaming (chunk by chunk).

Both paths compute exactly Whisper's frames (DESIGN.md section 2): a centred
STFT (reflect-padded at the clip start and end), Hann window of n_fft=400,
hop 160, power spectrum, Slaney 128-band mel filterbank (transformers'
`mel_filter_bank`, the same filters `WhisperFeatureExtractor` uses), the last
STFT frame dropped, log10 with a 1e-10 floor. 6400 samples (0.4 s) give 40 frames.

Normalisation. Whisper floors every value at (M - 8) and then maps x -> (x + 4) / 4,
where M is the maximum log-mel value of the *whole clip*. Note that M only sets
the floor; values above it are never shifted. A live stream has no whole clip, so
`StreamingLogMel` uses a *decaying running maximum* as M:

    M_k = max(max of chunk k, M_(k-1) - decay_per_chunk)     (M_0 = max of chunk 0)

With the default `decay` of 8 log10 units per 60 s (~0.053 per chunk) the floor
tracks the loudest sound of roughly the last minute: after a loud sound the
stream behaves like an offline clip that contains it, and in a quiet room the
floor sinks back within a minute, so quiet speech is not flattened for days by
one door slam (a running maximum that never decays would do that).
`tests/runtime/test_features_drift.py` measures the rules against the offline
whole-clip computation (espeak-ng speech with noise, a bang and silences, the
smoke-alarm sample): mean |log-mel difference| per clip <= 0.004 for this rule,
against up to 0.020 for a per-chunk maximum (each chunk its own clip, which
lifts the background of quiet chunks) and 0.016 for a fixed reference level
(which depends on the microphone gain); only the never-decaying maximum drifts
less on clips this short, at the cost above.

Streaming frames equal offline frames: frame j is centred on sample 160*j and
needs samples up to 160*j + 200, so the 40 frames of chunk k are computed once
40 samples of chunk k+1 have arrived (2.5 ms of extra latency); `flush()` ends
the stream with the same reflect padding the offline path applies at the clip end.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from .. import constants as c

_PAD = c.N_FFT // 2  # centred frames: reflect-pad n_fft/2 samples at each end
_LOG_FLOOR = 1e-10
DEFAULT_DECAY_PER_SECOND = c.LOG_MEL_DYNAMIC_RANGE / 60.0


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """(n_fft/2 + 1, 128) Slaney mel filterbank, exactly Whisper's."""
    from transformers.audio_utils import mel_filter_bank

    return mel_filter_bank(
        num_frequency_bins=1 + c.N_FFT // 2,
        num_mel_filters=c.N_MELS,
        min_frequency=0.0,
        max_frequency=c.SAMPLE_RATE / 2,
        sampling_rate=c.SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
    ).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    # periodic Hann, as torch.hann_window(400) in Whisper's extractor
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(c.N_FFT) / c.N_FFT)).astype(np.float32)


def _log_power_mel(padded: np.ndarray, n_frames: int) -> np.ndarray:
    """log10 mel power of `n_frames` frames of an already padded signal -> (128, n_frames)."""
    if n_frames <= 0:
        return np.zeros((c.N_MELS, 0), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, c.N_FFT)[:: c.HOP_LENGTH][:n_frames]
    spectrum = np.fft.rfft(frames * _window(), axis=-1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filters()  # (n_frames, 128)
    return np.log10(np.maximum(mel, _LOG_FLOOR)).T.astype(np.float32)


def normalise(log_mel: np.ndarray, reference: float) -> np.ndarray:
    """Whisper's normalisation with the maximum `reference`: floor at reference - 8, then (x + 4) / 4."""
    return ((np.maximum(log_mel, reference - c.LOG_MEL_DYNAMIC_RANGE) + 4.0) / 4.0).astype(np.float32)


def _as_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio of shape (samples,), got shape {audio.shape}")
    return audio


def _reflect_start(audio: np.ndarray) -> np.ndarray:
    return audio[1 : _PAD + 1][::-1]


def _reflect_end(audio: np.ndarray) -> np.ndarray:
    return audio[-_PAD - 1 : -1][::-1]


def log_mel_raw_offline(audio: np.ndarray) -> np.ndarray:
    """Un-normalised log10 mel power of a whole clip, (128, samples // 160)."""
    audio = _as_audio(audio)
    if len(audio) <= _PAD:
        raise ValueError(f"need more than {_PAD} samples for a log-mel frame, got {len(audio)}")
    padded = np.concatenate([_reflect_start(audio), audio, _reflect_end(audio)])
    return _log_power_mel(padded, len(audio) // c.HOP_LENGTH)


def log_mel_offline(audio: np.ndarray) -> np.ndarray:
    """Upstream's whole-clip log-mel: (128, samples // 160), floor at (clip max - 8)."""
    raw = log_mel_raw_offline(audio)
    return normalise(raw, float(raw.max()))


class StreamingLogMel:
    """Incremental log-mel: push audio of any length, get the frames of each completed 0.4 s chunk.

    `push` returns (128, 40 * k) for the k chunks it completed (k may be 0). The
    frames equal the offline frames of the same stream; only the normalisation
    differs (decaying running maximum, see the module docstring).
    """

    def __init__(self, decay_per_second: float = DEFAULT_DECAY_PER_SECOND, fixed_reference: float | None = None) -> None:
        """`decay_per_second`: how fast the running maximum sinks (0: never; inf: each chunk its own
        maximum). `fixed_reference`: use this constant as the maximum instead (measured alternative)."""
        self.decay_per_chunk = float(decay_per_second) * c.CHUNK_SECONDS
        self.fixed_reference = fixed_reference
        self.reference: float | None = fixed_reference  # M_k of the last emitted chunk
        self._buffer = np.zeros(0, dtype=np.float32)  # padded signal from frame `_next_frame`'s start
        self._started = False
        self._head = np.zeros(0, dtype=np.float32)  # first samples, until the start padding is known
        self._received = 0  # samples pushed
        self._emitted_chunks = 0

    @property
    def chunks_emitted(self) -> int:
        return self._emitted_chunks

    def push(self, audio: np.ndarray) -> np.ndarray:
        audio = _as_audio(audio)
        self._received += len(audio)
        if not self._started:
            self._head = np.concatenate([self._head, audio])
            if len(self._head) <= _PAD:  # the start's reflection needs samples 1..200
                return self._empty()
            self._buffer = np.concatenate([_reflect_start(self._head), self._head])
            self._head = np.zeros(0, dtype=np.float32)
            self._started = True
        else:
            self._buffer = np.concatenate([self._buffer, audio])
        # chunk k's last frame ends at padded index 6400 * (k + 1) + 240 (relative: chunk start + 6640)
        needed = c.CHUNK_SAMPLES + c.N_FFT - c.HOP_LENGTH
        n_chunks = 0 if len(self._buffer) < needed else 1 + (len(self._buffer) - needed) // c.CHUNK_SAMPLES
        return self._emit(n_chunks)

    def flush(self) -> np.ndarray:
        """End of stream: the remaining audio, zero-padded to a whole chunk, as the clip's end.

        Equals the offline computation on the stream padded with zeros to a whole
        number of chunks. Returns (128, 0) when nothing is pending.
        """
        pending = self._received - self._emitted_chunks * c.CHUNK_SAMPLES
        if pending <= 0:
            return self._empty()
        pad = (-self._received) % c.CHUNK_SAMPLES
        if not self._started:
            audio = np.concatenate([self._head, np.zeros(pad, dtype=np.float32)])
            self._head = np.zeros(0, dtype=np.float32)
            self._buffer = np.concatenate([_reflect_start(audio), audio])
            self._started = True
        else:
            self._buffer = np.concatenate([self._buffer, np.zeros(pad, dtype=np.float32)])
        self._received += pad
        # the buffer's tail is the signal's tail (it holds >= one whole chunk here)
        self._buffer = np.concatenate([self._buffer, _reflect_end(self._buffer)])
        n_chunks = (self._received // c.CHUNK_SAMPLES) - self._emitted_chunks
        return self._emit(n_chunks)

    def _emit(self, n_chunks: int) -> np.ndarray:
        if n_chunks <= 0:
            return self._empty()
        n_frames = n_chunks * c.MEL_FRAMES_PER_CHUNK
        raw = _log_power_mel(self._buffer, n_frames)
        self._buffer = self._buffer[n_chunks * c.CHUNK_SAMPLES :]
        out = np.empty_like(raw)
        for i in range(n_chunks):
            cols = slice(i * c.MEL_FRAMES_PER_CHUNK, (i + 1) * c.MEL_FRAMES_PER_CHUNK)
            chunk_max = float(raw[:, cols].max())
            if self.fixed_reference is None:
                self.reference = self._next_reference(chunk_max)
            out[:, cols] = normalise(raw[:, cols], self.reference)
        self._emitted_chunks += n_chunks
        return out

    def _next_reference(self, chunk_max: float) -> float:
        if self.reference is None or math.isinf(self.decay_per_chunk):
            return chunk_max
        return max(chunk_max, self.reference - self.decay_per_chunk)

    @staticmethod
    def _empty() -> np.ndarray:
        return np.zeros((c.N_MELS, 0), dtype=np.float32)
