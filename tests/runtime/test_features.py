"""Log-mel features: exactly Whisper's frames, streamed incrementally with the same frames as offline."""

from __future__ import annotations

import math

import numpy as np
import pytest
from transformers import WhisperFeatureExtractor

from model_runtime import constants as c
from model_runtime.interaction.features import (
    StreamingLogMel,
    log_mel_offline,
    log_mel_raw_offline,
    normalise,
)


def _signal(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * c.SAMPLE_RATE)
    t = np.arange(n) / c.SAMPLE_RATE
    envelope = np.where((t % 1.0) < 0.6, 1.0, 0.02)  # loud and quiet stretches: the floor matters
    audio = envelope * (0.3 * np.sin(2 * np.pi * 300 * t) + rng.normal(0, 0.05, n))
    return audio.astype(np.float32)


def _stream(audio: np.ndarray, pieces: list[int], **kwargs) -> tuple[np.ndarray, list[np.ndarray]]:
    stream = StreamingLogMel(**kwargs)
    outputs, start = [], 0
    for size in pieces:
        outputs.append(stream.push(audio[start : start + size]))
        start += size
    assert start >= len(audio)
    outputs.append(stream.flush())
    return np.concatenate(outputs, axis=1), outputs


def test_offline_equals_whisper_feature_extractor():
    audio = _signal(3.3)
    extractor = WhisperFeatureExtractor(feature_size=c.N_MELS)
    whisper = extractor._np_extract_fbank_features(audio[None], "cpu")[0]
    ours = log_mel_offline(audio)
    assert ours.shape == whisper.shape == (128, len(audio) // c.HOP_LENGTH)
    np.testing.assert_allclose(ours, whisper, atol=2e-5)


def test_one_chunk_is_40_frames():
    assert log_mel_offline(_signal(c.CHUNK_SECONDS)).shape == (c.N_MELS, c.MEL_FRAMES_PER_CHUNK)


@pytest.mark.parametrize("piece", [1, 160, 1600, 6400, 6441, 20000])
def test_streaming_frames_equal_offline_frames(piece):
    """Without the normalisation (the only intended difference), streaming frames are the offline frames."""
    audio = _signal(2.0 + 123 / c.SAMPLE_RATE, seed=piece)
    padded = np.concatenate([audio, np.zeros((-len(audio)) % c.CHUNK_SAMPLES, np.float32)])
    raw = log_mel_raw_offline(padded)
    # a reference far above any value: the floor never applies, so normalised values map 1:1 to raw ones
    streamed, _ = _stream(audio, [piece] * math.ceil(len(audio) / piece), fixed_reference=100.0)
    np.testing.assert_allclose(streamed, normalise(raw, 100.0), atol=1e-6)


def test_chunks_come_out_as_soon_as_they_are_complete():
    audio = _signal(1.2)
    stream = StreamingLogMel()
    assert stream.push(audio[:6400]).shape == (128, 0)  # needs 40 samples of the next chunk (last frame's window)
    assert stream.push(audio[6400:6439]).shape == (128, 0)
    assert stream.push(audio[6439:6440]).shape == (128, 40)
    assert stream.push(audio[6440:]).shape == (128, 40)  # chunk 1 (chunk 2 waits for its lookahead)
    assert stream.flush().shape == (128, 40) and stream.chunks_emitted == 3
    assert stream.flush().shape == (128, 0)


def test_flush_pads_a_partial_chunk_with_silence_like_offline():
    audio = _signal(0.9)  # 2 chunks + 0.1 s
    streamed, _ = _stream(audio, [4000] * 4, fixed_reference=100.0)
    assert streamed.shape == (128, 120)
    padded = np.concatenate([audio, np.zeros(3 * c.CHUNK_SAMPLES - len(audio), np.float32)])
    np.testing.assert_allclose(streamed, normalise(log_mel_raw_offline(padded), 100.0), atol=1e-6)
    assert StreamingLogMel().flush().shape == (128, 0)
    short = StreamingLogMel()
    assert short.push(np.zeros(100, np.float32)).shape == (128, 0)
    assert short.flush().shape == (128, 40)  # even 100 samples become one (padded) chunk


def test_running_maximum_rule():
    """M_k = max(chunk k's max, M_(k-1) - decay * 0.4 s): the floor sinks slowly after a loud chunk."""
    t = np.arange(c.CHUNK_SAMPLES) / c.SAMPLE_RATE
    loud = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    audio = np.concatenate([loud, loud * 1e-3, loud * 1e-3, loud * 1e-3, np.zeros(40, np.float32)])
    raw = log_mel_raw_offline(np.concatenate([audio, np.zeros(6400 - 40, np.float32)]))[:, :160]
    chunk_max = raw.reshape(128, 4, 40).max(axis=(0, 2))
    decay = 2.0
    stream = StreamingLogMel(decay_per_second=decay)
    out = stream.push(audio)
    expected = chunk_max[0]
    for k in range(1, 4):
        expected = max(chunk_max[k], expected - decay * c.CHUNK_SECONDS)
    assert stream.reference == pytest.approx(expected, abs=1e-4)
    assert stream.reference > chunk_max[3] + 1  # the quiet chunk is floored relative to the loud past
    np.testing.assert_allclose(out[:, 120:], normalise(raw[:, 120:], expected), atol=1e-6)
    per_chunk = StreamingLogMel(decay_per_second=math.inf)  # each chunk its own maximum
    per_chunk.push(audio)
    assert per_chunk.reference == pytest.approx(chunk_max[3], abs=1e-4)


def test_bad_input_shapes():
    with pytest.raises(ValueError, match="mono"):
        StreamingLogMel().push(np.zeros((2, 100), np.float32))
    with pytest.raises(ValueError, match="more than 200 samples"):
        log_mel_offline(np.zeros(100, np.float32))
