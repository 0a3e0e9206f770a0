"""`audio-interaction analyze`: real files in, events out; bad input -> one clear line."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from conftest import SAMPLES
from model_runtime import constants as c
from model_runtime.audio import load_audio


def test_analyze_sample_prints_jsonl_events_with_t(cli):
    proc = cli("analyze", str(SAMPLES / "kitchen_smoke_alarm.flac"), "--format", "jsonl")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert events, "the sample holds an alarm: some event must come out"
    for event in events:
        assert event["type"] in c.EVENT_TYPES
        assert isinstance(event["t"], float)
    times = [e["t"] for e in events]
    assert times == sorted(times)


def test_analyze_text_format(cli):
    proc = cli("analyze", str(SAMPLES / "kitchen_smoke_alarm.flac"), "--format", "text")
    assert proc.returncode == 0, proc.stderr
    assert "sound" in proc.stdout


def test_missing_file_is_one_clear_line(cli, tmp_path):
    proc = cli("analyze", str(tmp_path / "nope.wav"))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "not found" in proc.stderr and "nope.wav" in proc.stderr


def test_unreadable_audio_is_one_clear_line(cli, tmp_path):
    bad = tmp_path / "notes.mp3"
    bad.write_text("this is not audio")
    proc = cli("analyze", str(bad))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "notes.mp3" in proc.stderr


def test_folder_instead_of_file(cli, tmp_path):
    proc = cli("analyze", str(tmp_path))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "folder" in proc.stderr


def test_load_audio_converts_rate_width_channels(tmp_path):
    """Any rate, width and channel count comes back as 16 kHz mono float32 of the same duration."""
    rate = 44_100
    tone = 0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate)
    stereo = np.stack([tone, tone], axis=1)
    for name, subtype in (("a.wav", "PCM_24"), ("b.flac", "PCM_16"), ("c.ogg", "VORBIS")):
        path = tmp_path / name
        sf.write(path, stereo, rate, subtype=subtype)
        audio = load_audio(path)
        assert audio.dtype == np.float32
        assert abs(len(audio) - c.SAMPLE_RATE) <= 1
        spectrum = np.abs(np.fft.rfft(audio))
        assert abs(np.argmax(spectrum) - 440) <= 2  # 1 s of audio: bin = Hz
