"""Lite engine: speech start/stop, wake words, the request transcript and music, on generated audio."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from model_runtime import constants as c
from model_runtime.audio import load_audio
from model_runtime.engine import EngineOptions, create_engine, run_stream
from model_runtime.errors import UserError
from model_runtime.lite import LiteEngine
from model_runtime.lite import testset as ts
from model_runtime.lite.bench import word_error_rate


@pytest.fixture(scope="module")
def engine():
    eng = LiteEngine(EngineOptions(wake_words=["okay_nabu", "alexa"]))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lite-speech")


def analyze(engine, path):
    stream = engine.open_stream()
    try:
        return list(run_stream(stream, load_audio(path)))
    finally:
        stream.close()


def test_one_sentence_is_one_start_and_one_stop_near_the_truth(engine, clips_dir):
    for clip in ts.build(ts.speech_specs(), clips_dir):
        speech = [e for e in analyze(engine, clip.path) if e.type == c.EVENT_SPEECH]
        assert [e.data["state"] for e in speech] == ["start", "stop"] * len(clip.truth["segments"]), clip.spec.name
        for (on, off), start, stop in zip(clip.truth["segments"], speech[::2], speech[1::2]):
            assert abs(start.t - on) <= 0.8 and abs(stop.t - off) <= 0.8, (clip.spec.name, on, off, start.t, stop.t)


def test_wake_word_then_the_request_as_transcript(engine, clips_dir):
    clips = ts.build(ts.wake_specs()[:4], clips_dir)
    errors = []
    for clip in clips:
        found = analyze(engine, clip.path)
        decisions = [e for e in found if e.type == c.EVENT_DECISION]
        assert [(d.data["respond"], d.data["name"]) for d in decisions] == [(True, "okay_nabu")], clip.spec.name
        wake_end = clip.truth["segments"][0][1]
        assert wake_end - 0.2 <= decisions[0].t <= wake_end + 1.0
        transcripts = [e for e in found if e.type == c.EVENT_TRANSCRIPT]
        assert len(transcripts) == 1 and transcripts[0].t > decisions[0].t, clip.spec.name
        errors.append(word_error_rate(clip.truth["text"].split("|")[1], transcripts[0].data["text"]))
    assert sum(errors) / len(errors) <= 0.25, errors


def test_a_wake_word_and_its_request_handed_over_in_one_piece_keep_the_request(engine, clips_dir):
    """A server feeds a backlog (a recording, a busy moment) in one piece: the request is still heard."""
    (clip,) = ts.build(ts.wake_specs()[:1], clips_dir)
    audio = load_audio(clip.path)
    stream = engine.open_stream()
    try:
        whole = stream.feed(audio) + stream.finish()
    finally:
        stream.close()
    in_pieces = analyze(engine, clip.path)
    assert [e.to_dict() for e in whole] == [e.to_dict() for e in in_pieces]
    assert [e.type for e in whole].count(c.EVENT_TRANSCRIPT) == 1


def test_no_wake_word_no_decision(engine, clips_dir):
    clip = ts.build(ts.speech_specs()[:1], clips_dir)[0]
    found = analyze(engine, clip.path)
    assert not [e for e in found if e.type in (c.EVENT_DECISION, c.EVENT_TRANSCRIPT)]


def test_music_is_heard_and_speech_is_not_music(engine, clips_dir):
    music = [s for s in ts.negative_specs() if s.label == "music"][:2]
    for clip in ts.build(music, clips_dir):
        labels = [e.data["label"] for e in analyze(engine, clip.path) if e.type == c.EVENT_SOUND]
        assert labels.count("music") == 2, (clip.spec.name, labels)  # one start, one end
    speech = ts.build(ts.speech_specs()[:1], clips_dir)[0]
    assert not [e for e in analyze(engine, speech.path) if e.type == c.EVENT_SOUND and e.data["label"] == "music"]


def test_wake_word_names_and_bad_names():
    engine = create_engine(EngineOptions(wake_words=["hey_jarvis"]))
    assert set(engine.wake_words()) == {"okay_nabu", "hey_jarvis", "alexa", "hey_mycroft"}
    with pytest.raises(UserError, match="unknown wake word hey_siri"):
        LiteEngine(EngineOptions(wake_words=["hey_siri"]))


def test_unknown_wake_word_at_the_cli_is_one_clear_line(cli):
    proc = cli("analyze", "model_runtime/samples/kitchen_smoke_alarm.flac", "--wake-word", "hey_siri")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "unknown wake word hey_siri" in proc.stderr and "okay_nabu" in proc.stderr


def test_music_ends_when_it_stops(engine, clips_dir):
    clip = ts.build([s for s in ts.negative_specs() if s.label == "music"][:1], clips_dir)[0]
    music = load_audio(clip.path)
    audio = np.concatenate([music, np.zeros(12 * c.SAMPLE_RATE, dtype=np.float32)])  # then the room is quiet
    stream = engine.open_stream()
    found = []
    for i in range(0, len(audio), 1_600):
        found += stream.feed(audio[i : i + 1_600])
    stream.close()
    ends = [e for e in found if e.type == c.EVENT_SOUND and e.data["label"] == "music" and e.data["end"] is not None]
    # Heard ending while the stream runs (not only at its close), a few windows after the music stopped
    # (windows are 2 s, and one may be skipped: the end is placed to within two of them).
    music_s = len(music) / c.SAMPLE_RATE
    assert len(ends) == 1 and music_s - 4.5 <= ends[0].data["end"] <= music_s and ends[0].t <= music_s + 8.0, [e.to_dict() for e in ends]


def test_silero_threads_settings_do_not_leak_into_the_process():
    # Silero's own OpenMP is loaded single-threaded and non-spinning; the process's
    # environment (which torch's OpenMP reads) is left as it was, and a user's choice wins.
    code = "import os, model_runtime.lite.speech; print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('OMP_THREAD_LIMIT'))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    plain = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert plain.stdout.split() == ["None", "None"]
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, check=True)
    assert chosen.stdout.split() == ["ACTIVE", "None"]
