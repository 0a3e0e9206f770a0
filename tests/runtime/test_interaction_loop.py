"""The LISTENING / SPEAKING loop of the audio-interaction engine on the rigged tiny checkpoint.

The tiny checkpoint (model_runtime.interaction.tiny) stays silent except on a
chunk holding `trigger_audio()`, which it answers with RIGGED_EMOTION +
RIGGED_TEXT; everything here runs the real loading, features, encoder and LM code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from model_runtime import constants as c
from model_runtime.engine import EngineOptions, run_stream
from model_runtime.errors import UserError
from model_runtime.interaction.prompt import instruction_ids
from model_runtime.interaction.tiny import RIGGED_EMOTION_NAME, RIGGED_TEXT, trigger_audio

from tiny_model_support import loaded, make_engine  # noqa: F401 (a fixture)

CHUNK = c.CHUNK_SAMPLES


def noise(chunks: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(chunks * CHUNK)) * 0.01).astype(np.float32)


def audio_of(*parts: str) -> np.ndarray:
    """'n' = a chunk of quiet noise, 'T' = a trigger chunk."""
    return np.concatenate([trigger_audio() if p == "T" else noise(1, seed=i) for i, p in enumerate(parts)])


def decisions(events) -> list[tuple[float, bool]]:
    return [(round(e.t, 3), e.data["respond"]) for e in events if e.type == c.EVENT_DECISION]


def finals(events) -> list:
    return [e for e in events if e.type == c.EVENT_RESPONSE and e.data["final"]]


def test_prompt_prefix(loaded):
    engine = make_engine(loaded)
    tok = loaded.tokenizer
    system = tok.encode(c.DEFAULT_SYSTEM_PROMPT, add_special_tokens=False).ids
    assert engine.prefix_ids == [c.ONLINE, c.ENGLISH, c.SYSTEM, c.TEXT_BEGIN, *system, c.TEXT_END]
    assert engine.prefix_ids.count(c.TEXT_BEGIN) == 2  # SYSTEM and TEXT_BEGIN share the id
    custom = make_engine(loaded, system_prompt="Transcribe what you hear.")
    assert custom.prefix_ids[4:-1] == tok.encode("Transcribe what you hear.", add_special_tokens=False).ids
    assert custom.open_stream().cache.length == len(custom.prefix_ids)


def test_silence_and_a_triggered_reply(loaded):
    stream = make_engine(loaded).open_stream()
    events = list(run_stream(stream, audio_of("n", "n", "n", "T", "n", "n")))
    assert decisions(events) == [(0.4, False), (0.8, False), (1.2, False), (1.6, True), (2.0, False), (2.4, False)]
    said = next(e for e in events if e.type == c.EVENT_DECISION and e.data["respond"])
    assert said.data["name"] == c.MODEL_DECISION_NAME
    replies = [e for e in events if e.type == c.EVENT_RESPONSE]
    assert all(e.t == pytest.approx(1.6) for e in replies)
    pieces = [e.data["text"] for e in replies if not e.data["final"]]
    assert len(pieces) > 3 and "".join(pieces) == RIGGED_TEXT
    (final,) = finals(events)
    assert final.data == {"text": RIGGED_TEXT, "final": True, "emotion": RIGGED_EMOTION_NAME, "urgent": True}
    # order: the decision, its pieces, the final reply, then the next chunk's decision
    kinds = [(e.type, e.t) for e in events]
    assert kinds.index((c.EVENT_DECISION, 2.0)) > kinds.index((c.EVENT_RESPONSE, final.t)) + len(pieces)


@pytest.mark.parametrize("async_encoder", [False, True])
def test_audio_arriving_while_speaking_is_queued_not_dropped(loaded, async_encoder):
    stream = make_engine(loaded, async_encoder=async_encoder).open_stream()
    audio = audio_of("T", "n", "n", "n", "n", "n", "T", "n", "n")
    events = stream.feed(audio) + stream.finish()  # all in one call: chunks 2..9 wait behind the reply
    expected = [(round(0.4 * (i + 1), 3), i in (0, 6)) for i in range(9)]
    assert decisions(events) == expected
    assert [round(e.t, 3) for e in finals(events)] == [0.4, 2.8]
    order = [(e.type, round(e.t, 3), e.data.get("final")) for e in events]
    for t in (0.4, 2.8):  # each reply is complete before the next chunk's decision
        assert order.index((c.EVENT_RESPONSE, t, True)) < order.index((c.EVENT_DECISION, round(t + 0.4, 3), None))
    stream.close()


def test_async_encoder_gives_the_same_events(loaded):
    audio = audio_of("n", "T", "n", "n", "T", "n")
    runs = []
    for async_encoder in (False, True):
        stream = make_engine(loaded, async_encoder=async_encoder).open_stream()
        runs.append([e.to_dict() for e in run_stream(stream, audio, piece_samples=1000)])
        stream.close()
    assert runs[0] == runs[1]
    assert len(finals_dicts := [d for d in runs[0] if d.get("final")]) == 2 and finals_dicts[0]["text"] == RIGGED_TEXT


def test_an_abandoned_feed_iter_loses_no_chunk(loaded):
    stream = make_engine(loaded).open_stream()
    first = next(stream.feed_iter(audio_of("n", "n", "T", "n")))  # a caller that stops reading
    assert (first.type, first.t) == (c.EVENT_DECISION, pytest.approx(0.4))
    events = stream.feed(noise(1)) + stream.finish()
    assert decisions(events) == [(0.8, False), (1.2, True), (1.6, False), (2.0, False)]


def test_async_encoder_thread_ends_with_its_stream(loaded):
    import gc
    import threading

    engine = make_engine(loaded, async_encoder=True)
    before = threading.active_count()
    stream = engine.open_stream()
    assert threading.active_count() == before + 1
    stream.feed(noise(2))
    del stream  # dropped without close(): the thread must not outlive it
    gc.collect()
    for _ in range(100):
        if threading.active_count() == before:
            break
        threading.Event().wait(0.01)
    assert threading.active_count() == before
    stream = engine.open_stream()
    stream.close()
    stream.close()
    assert threading.active_count() == before


def test_reply_cap_closes_the_turn_and_the_loop_goes_on(loaded):
    engine = make_engine(loaded, max_response_tokens=3)
    stream = engine.open_stream()
    events = stream.feed(audio_of("T", "n", "T", "n")) + stream.finish()
    assert decisions(events) == [(0.4, True), (0.8, False), (1.2, True), (1.6, False)]
    text_ids = loaded.tokenizer.encode(RIGGED_TEXT, add_special_tokens=False).ids
    capped = loaded.tokenizer.decode(text_ids[:2]).strip()  # the emotion tag is the 1st of 3 tokens
    assert [e.data["text"] for e in finals(events)] == [capped, capped]
    assert all(e.data["emotion"] == RIGGED_EMOTION_NAME for e in finals(events))
    # each answered chunk's segment: 12 listening tokens + TEXT_BEGIN, emotion, 1st text token
    # fed while speaking + the capped 2nd token and TEXT_END fed with the next chunk
    lengths = [s.length for s in stream.context.segments]
    assert lengths == [12 + 5, 12, 12 + 5, 12]


def test_full_reply_segment_ends_with_text_end(loaded):
    stream = make_engine(loaded).open_stream()
    stream.feed(audio_of("T", "n"))
    stream.finish()
    n_text = len(loaded.tokenizer.encode(RIGGED_TEXT, add_special_tokens=False).ids)
    # TEXT_BEGIN, emotion, n text tokens fed while speaking; TEXT_END with the next chunk
    assert [s.length for s in stream.context.segments] == [12 + n_text + 3, 12]


def test_instructions_join_the_context_pinned(loaded):
    stream = make_engine(loaded, context_seconds=0.8, max_response_tokens=4).open_stream(roll_seconds=2.0)
    assert stream.instruct("Transcribe what you hear.") == []
    events = stream.feed(noise(2))
    assert decisions(events) == [(0.4, False)]
    n = len(instruction_ids(loaded.tokenizer, "Transcribe what you hear."))
    assert (stream.context.segments[0].length, stream.context.segments[0].pinned) == (n, True)
    # it outlives many rolls of the window
    events = stream.feed(noise(60))
    assert len(decisions(events)) == 60 and stream.context.rolls >= 3
    assert stream.context.segments[0].pinned and stream.context.segments[0].length == n
    # bad instructions: one error each, the stream goes on
    (err,) = stream.instruct("   ")
    assert err.type == c.EVENT_ERROR and err.data["code"] == "bad_instruction"
    (err,) = stream.instruct("beep " * 400)
    assert "too long" in err.data["message"]
    assert decisions(stream.feed(audio_of("T")) + stream.finish())[-1] == (25.2, True)


def test_bad_audio_becomes_error_events_and_the_stream_goes_on(loaded):
    stream = make_engine(loaded).open_stream()
    bad = noise(2)
    bad[CHUNK + 5 : CHUNK + 9] = np.nan
    events = stream.feed(bad)
    (err,) = [e for e in events if e.type == c.EVENT_ERROR]
    assert err.data["code"] == "bad_audio" and err.t == pytest.approx(0.8) and "4 non-finite" in err.data["message"]
    (stereo_err,) = stream.feed(np.zeros((CHUNK, 2), dtype=np.float32))
    assert stereo_err.data["code"] == "bad_audio" and "(6400, 2)" in stereo_err.data["message"]
    (text_err,) = stream.feed(np.array(["not", "audio"]))
    assert text_err.data["code"] == "bad_audio"
    events += stream.feed(audio_of("T", "n")) + stream.finish()
    assert decisions(events) == [(0.4, False), (0.8, False), (1.2, True), (1.6, False)]


def test_non_finite_logits_reset_the_context_and_listening_goes_on(loaded):
    engine = make_engine(loaded)
    stream = engine.open_stream()
    stream.feed(noise(3))
    prefix = len(engine.prefix_ids)
    stream.cache.values[:, :, prefix + 14] = float("nan")  # a poisoned slot inside the window
    events = stream.feed(noise(1)) + stream.feed(audio_of("T", "n")) + stream.finish()
    faults = [e for e in events if e.type == c.EVENT_ERROR]
    assert [e.data["code"] for e in faults] == ["model_fault"]
    assert decisions(events)[-2:] == [(2.0, True), (2.4, False)]
    assert finals(events)[0].data["text"] == RIGGED_TEXT


def test_encoder_failure_skips_its_chunks_only(loaded):
    stream = make_engine(loaded).open_stream()
    real = stream.encoder.encode
    calls = {"n": 0}

    def flaky(mel):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated encoder fault")
        return real(mel)

    stream.encoder.encode = flaky
    events = []
    for part in ("n", "n", "T", "n"):
        events += stream.feed(audio_of(part))
    events += stream.finish()
    errors = [e for e in events if e.type == c.EVENT_ERROR]
    assert [(e.data["code"], round(e.t, 3)) for e in errors] == [("bad_chunk", 0.8)]
    assert "simulated encoder fault" in errors[0].data["message"]
    assert decisions(events) == [(0.4, False), (1.2, True), (1.6, False)]


def test_partial_last_chunk_and_closed_stream(loaded):
    stream = make_engine(loaded).open_stream()
    events = stream.feed(noise(1.5)) + stream.finish()
    assert decisions(events) == [(0.4, False), (0.8, False)]
    assert stream.finish() == []
    with pytest.raises(RuntimeError, match="finished"):
        stream.feed(noise(1))
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.feed(noise(1))


def test_bad_options_are_one_clear_error(loaded):
    with pytest.raises(UserError, match="max-response-tokens"):
        make_engine(loaded, max_response_tokens=0)
    with pytest.raises(UserError, match="context-seconds"):
        make_engine(loaded, context_seconds=0)


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_hours_of_listening_stay_bounded(loaded):
    """Two hours of chunks (AUDIO_INTERACTION_LONG_TEST_HOURS to change it) through the LM half of
    the loop, the encoder's vectors computed once per kind of chunk: 216,000 positions, far past
    the model's 32k, yet the cache never grows, memory stays flat, and the trigger is still
    answered after ~3,000 rolls of the window. (Each step streams the tiny model's full
    151,936-row LM head, ~5 ms on a busy 2-core machine: that sets the default length.)"""
    from model_runtime.interaction.chunk_encoder import EncodedChunk

    engine = make_engine(loaded, context_seconds=6.0, max_response_tokens=16)
    stream = engine.open_stream(roll_seconds=2.0)
    mel = stream.features.push(np.concatenate([noise(1), trigger_audio(), noise(1)]))
    silent_vectors, trigger_vectors = engine.encode(mel)[:2]
    hours = float(os.environ.get("AUDIO_INTERACTION_LONG_TEST_HOURS", "2"))
    chunks = int(hours * 3600 / c.CHUNK_SECONDS)
    trigger_every = 997
    answered, silent, lengths, rss = [], 0, set(), []
    for index in range(chunks):
        vectors = trigger_vectors if index % trigger_every == trigger_every - 1 else silent_vectors
        for event in stream.process_chunk(EncodedChunk(index, vectors)):
            assert event.t == pytest.approx((index + 1) * c.CHUNK_SECONDS)
            if event.type == c.EVENT_DECISION and not event.data["respond"]:
                silent += 1
            elif event.type == c.EVENT_RESPONSE and event.data["final"]:
                answered.append((index, event.data["text"]))
            else:
                assert event.type in (c.EVENT_DECISION, c.EVENT_RESPONSE), event
        lengths.add(stream.cache.length)
        if index % 1000 == 999:
            rss.append(_rss_mib())
    expected = [i for i in range(chunks) if i % trigger_every == trigger_every - 1]
    assert [i for i, _ in answered] == expected and {text for _, text in answered} == {RIGGED_TEXT}
    assert silent == chunks - len(expected)
    assert stream.context.rolls >= chunks // 8  # about one roll per 2 s block (replies take room too)
    assert max(lengths) <= stream.context.capacity == stream.cache.capacity
    assert len(stream.context.segments) < 40
    # flat memory: the second hour allocates nothing the first did not (RSS noise only)
    assert max(rss[len(rss) // 2 :]) - rss[len(rss) // 2 - 1] < 16, rss


def test_cli_analyze_runs_the_loop_end_to_end(cli, loaded, tmp_path):
    wav = tmp_path / "kitchen.wav"
    # 44.1 kHz stereo int16: the CLI converts; the trigger tone sits in the 3rd 0.4 s chunk
    mono = np.concatenate([noise(2), trigger_audio(), noise(1)])
    from scipy.signal import resample_poly

    hi = resample_poly(mono, 441, 160)
    soundfile.write(wav, np.stack([hi, hi], axis=1), 44100, subtype="PCM_16")
    result = cli("analyze", str(wav), "--engine", c.ENGINE_AUDIO_INTERACTION, "--model", str(loaded.path),
                 "--device", "cpu", "--threads", "1", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["t"], e["respond"]) for e in events if e["type"] == "decision"] == [
        (0.4, False), (0.8, False), (1.2, True), (1.6, False)
    ]
    final = [e for e in events if e["type"] == "response" and e["final"]]
    assert final == [{"type": "response", "t": 1.2, "text": RIGGED_TEXT, "final": True, "emotion": "urgent", "urgent": True}]

    not_a_checkpoint = tmp_path / "photos"
    not_a_checkpoint.mkdir()
    result = cli("analyze", str(wav), "--engine", c.ENGINE_AUDIO_INTERACTION, "--model", str(not_a_checkpoint))
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a complete Audio-Interaction checkpoint" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_queued_chunks_share_steps_and_give_the_events_of_one_step_each(loaded):
    """A backlog goes through the LM up to MAX_CHUNKS_PER_STEP chunks per step; each chunk's decision is read
    at its own position, so the events (replies mid-step included) are those of one chunk per step."""
    from model_runtime.interaction.engine import MAX_CHUNKS_PER_STEP

    audio = audio_of("n", "n", "T", "n", "n", "n", "n", "n", "T", "n", "n")  # triggers mid-step
    runs, steps = [], []
    for all_at_once in (False, True):
        stream = make_engine(loaded).open_stream()
        events = stream.feed(audio) + stream.finish() if all_at_once else list(run_stream(stream, audio, piece_samples=CHUNK))
        runs.append(events)
        steps.append((stream.stats.lm_steps, stream.cache.length, [(s.start, s.length) for s in stream.context.segments]))
        stream.close()
    assert [e.to_dict() for e in runs[0]] == [e.to_dict() for e in runs[1]]
    assert [t for t, respond in decisions(runs[1]) if respond] == [1.2, 3.6]
    assert len(finals(runs[1])) == 2 and len(decisions(runs[1])) == 11
    (one_lm_steps, *state_one), (many_lm_steps, *state_many) = steps
    assert state_one == state_many  # the same tokens in the cache, segment by segment
    replies = one_lm_steps - 11  # decode steps: the same in both runs
    assert many_lm_steps - replies < 11 and MAX_CHUNKS_PER_STEP > 1
