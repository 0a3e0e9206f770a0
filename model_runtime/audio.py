"""Audio in: any common file or PCM format -> 16 kHz mono float32.

Decoding uses libsndfile (soundfile: wav, flac, ogg, mp3) and falls back to
ffmpeg for anything else; resampling uses scipy's polyphase filter.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from .constants import SAMPLE_RATE
from .errors import AudioInputError


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """(frames,) or (frames, channels) float audio at `rate` -> 16 kHz mono float32."""
    audio = np.asarray(samples, dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = math.gcd(int(rate), SAMPLE_RATE)
        audio = resample_poly(audio, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)
    return audio


def pcm16_to_float(data: bytes) -> np.ndarray:
    """16-bit little-endian mono PCM -> float32 in [-1, 1)."""
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0 - 1 / 32768) * 32768.0).astype("<i2").tobytes()


def load_audio(path: str | Path) -> np.ndarray:
    """Read any common audio file and return 16 kHz mono float32 samples."""
    path = Path(path)
    if not path.exists():
        raise AudioInputError(f"audio file not found: {path}")
    if path.is_dir():
        raise AudioInputError(f"{path} is a folder; give an audio file (wav, flac, mp3, ogg, ...)")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except (soundfile.LibsndfileError, RuntimeError, TypeError):
        samples, rate = _decode_with_ffmpeg(path), SAMPLE_RATE
    if samples.size == 0:
        raise AudioInputError(f"{path} holds no audio samples")
    return to_mono_16k(samples, rate)


def _decode_with_ffmpeg(path: Path) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioInputError(
            f"cannot read {path}: not a format libsndfile knows (wav, flac, ogg, mp3), "
            "and ffmpeg is not installed to try other formats"
        )
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(SAMPLE_RATE), "-"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        detail = reason[-1] if reason else "unknown error"
        raise AudioInputError(f"cannot read {path} as audio: {detail}")
    return np.frombuffer(proc.stdout, dtype="<f4").copy()
