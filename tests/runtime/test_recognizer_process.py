"""The speech recognizer in a process of its own (lite/transcribe.py): a request decodes there, beside
the streams, and a child that dies or hangs is replaced without losing the streams or the server."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time

import pytest
from wyoming.asr import Transcribe

from model_runtime import constants as c
from model_runtime.audio import load_audio, pcm16_to_float
from model_runtime.engine import EngineOptions
from model_runtime.lite import LiteEngine
from model_runtime.lite import testset as ts
from model_runtime.lite.transcribe import RecognitionFailed, RecognizerProcess, shared_recognizer
from server_support import COMMAND, Client, burst, custom, espeak, listen, running_server, to_pcm16


@pytest.fixture(scope="module")
def command():
    pcm, _ = espeak(COMMAND)
    return pcm


def test_requests_decode_in_a_child_that_is_replaced_when_it_dies(command):
    recognizer = shared_recognizer()
    audio = pcm16_to_float(command)
    first = recognizer.child_pid()
    assert first != os.getpid()
    assert recognizer.transcribe(audio).text == COMMAND
    os.kill(first, signal.SIGKILL)  # between requests (the OOM killer, say)
    assert recognizer.transcribe(audio).text == COMMAND
    second = recognizer.child_pid()
    assert second not in (first, os.getpid())
    pending = recognizer.submit(audio)
    os.kill(second, signal.SIGKILL)  # with a request handed over: it is decoded again in a new child
    assert pending.result().text == COMMAND
    assert recognizer.child_pid() not in (first, second)


def test_requests_queued_behind_a_hung_child_are_decoded_by_its_successor(command, monkeypatch):
    """A child taken for hung is killed with requests still queued (some already sent to it, some
    cancelled in its pool): each is handed to the new child, none fails with an odd error."""
    recognizer = shared_recognizer()
    audio = pcm16_to_float(command)
    hung = recognizer.child_pid()
    monkeypatch.setattr(RecognizerProcess, "request_timeout_s", 0.001)
    first, *queued = [recognizer.submit(audio) for _ in range(4)]
    with pytest.raises(RecognitionFailed, match="did not answer"):
        first.result()
    monkeypatch.undo()
    assert [pending.result().text for pending in queued] == [COMMAND] * 3
    assert recognizer.child_pid() != hung


def test_a_broken_pocketsphinx_is_said_to_each_request_and_mended_without_a_restart(command, tmp_path, monkeypatch):
    """A child that cannot load PocketSphinx (a broken install: here a package that fails to import,
    first on the child's path) stays up and tells each request why, instead of dying and being started
    again (and failing again) for every request; once the install is mended the next request decodes."""
    broken = tmp_path / "pocketsphinx"
    broken.mkdir()
    (broken / "__init__.py").write_text('raise ImportError("this pocketsphinx is broken")\n')
    monkeypatch.syspath_prepend(str(tmp_path))  # (a spawned child gets the parent's sys.path)
    recognizer = RecognizerProcess()
    audio = pcm16_to_float(command)
    child = recognizer.child_pid()
    try:
        _broken_then_mended(recognizer, audio, child, broken)
    finally:
        recognizer.close()
    assert _ends_within(child, 10)


def _broken_then_mended(recognizer: RecognizerProcess, audio, child: int, broken) -> None:
    for _ in range(2):
        with pytest.raises(RecognitionFailed) as failed:
            recognizer.transcribe(audio)
        assert str(failed.value) == (
            "PocketSphinx could not be loaded (ImportError: this pocketsphinx is broken); reinstall the runtime "
            "(pip install --force-reinstall pocketsphinx) and restart the server"
        )
        assert recognizer.child_pid() == child  # the same child: nothing started again

    (broken / "__init__.py").unlink()
    broken.rmdir()  # mended: the real package is found next
    assert recognizer.transcribe(audio).text == COMMAND
    assert recognizer.child_pid() == child


def _feed_in_pieces(stream, audio) -> list[tuple[int, list]]:
    """(index of the 0.1 s piece, its events) for every piece, then (len, the finish's events)."""
    pieces = range(0, len(audio), c.SAMPLE_RATE // 10)
    fed = [(i, stream.feed(audio[start:start + c.SAMPLE_RATE // 10])) for i, start in enumerate(pieces)]
    return fed + [(len(fed), stream.finish())]


@pytest.fixture(scope="module")
def wake_clip(tmp_path_factory):
    (clip,) = ts.build(ts.wake_specs()[:1], tmp_path_factory.mktemp("recognizer"))
    return clip


def test_a_streams_transcript_comes_with_a_later_piece_at_its_requests_end(wake_clip):
    engine = LiteEngine(EngineOptions())
    stream = engine.open_stream()
    try:
        fed = _feed_in_pieces(stream, load_audio(wake_clip.path))
    finally:
        stream.close()
        engine.close()
    ((piece, transcript),) = [(i, e) for i, found in fed for e in found if e.type == c.EVENT_TRANSCRIPT]
    request_end = transcript.data["end"]
    # Handed over at the piece that ended the request, it comes back with a later one: the stream's
    # audio never waited for the decoder. Its time is still the request's end.
    assert piece > round(request_end * 10) - 1
    assert transcript.t == request_end and transcript.data["start"] < request_end
    assert transcript.data["text"]


def test_a_hung_recognizer_costs_one_request_an_error_and_the_stream_goes_on(wake_clip, monkeypatch):
    engine = LiteEngine(EngineOptions())
    audio = load_audio(wake_clip.path)
    stream = engine.open_stream()
    try:
        hung = shared_recognizer().child_pid()
        # A decoder that does not answer in time is taken for hung: nothing answers in 1 ms.
        monkeypatch.setattr(RecognizerProcess, "request_timeout_s", 0.001)
        fed = _feed_in_pieces(stream, audio)
        found = [e for _, events in fed for e in events]
        ((piece, error),) = [(i, e) for i, events in fed for e in events if e.type == c.EVENT_ERROR]
        assert piece < len(fed) - 1  # said with a piece of the live stream, not only when it finishes
        assert error.data["code"] == "recognizer_failed"
        assert "got no transcript" in error.data["message"] and "did not answer" in error.data["message"]
        assert not [e for e in found if e.type == c.EVENT_TRANSCRIPT]
        monkeypatch.undo()
        # The hung child was stopped and another started; the same stream's next request is heard.
        found = [e for _, events in _feed_in_pieces(stream, audio) for e in events]
        assert [e.type for e in found if e.type in (c.EVENT_TRANSCRIPT, c.EVENT_ERROR)] == [c.EVENT_TRANSCRIPT]
        assert shared_recognizer().child_pid() != hung
        assert _ends_within(hung, 10.0)
    finally:
        stream.close()
        engine.close()


def _ends_within(pid: int, seconds: float) -> bool:
    """Whether process `pid` is gone (killed and reaped) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def test_a_failed_transcription_is_an_error_and_the_connection_goes_on(command, monkeypatch):
    async with running_server() as server:
        client = await Client.connect(server)
        monkeypatch.setattr(RecognizerProcess, "request_timeout_s", 0.001)
        await client.send(Transcribe(language="en").event())
        await client.stream(command)
        error, _ = await client.read_until("error", timeout=20)
        assert error.data["code"] == c.WYOMING_ERROR_TRANSCRIBE_FAILED
        assert "did not answer" in error.data["text"] and "send the request again" in error.data["text"]
        monkeypatch.undo()
        await client.send(Transcribe(language="en").event())
        await client.stream(command)
        transcript, before = await client.read_until("transcript", timeout=30)
        assert transcript.data["text"] == COMMAND and before == []
        await client.close()


async def test_a_stream_ending_while_its_request_decodes_does_not_hold_up_the_others(wake_clip, command):
    """A room whose stream ends (audio-stop: a mute) right after a spoken request waits for that
    transcript off the lite engine's one feed thread: another room's audio is heard meanwhile."""
    recognizer = shared_recognizer()
    async with running_server() as server:
        kitchen, hall = await Client.connect(server), await Client.connect(server)
        await kitchen.send(listen("kitchen"))
        await hall.send(listen("hall"))
        queued = [recognizer.submit(pcm16_to_float(command)) for _ in range(16)]  # busy for seconds
        await kitchen.stream(to_pcm16(load_audio(wake_clip.path)))  # its request waits behind them
        await asyncio.sleep(1.0)  # the kitchen's finish is waiting for its transcript by now
        await hall.stream(to_pcm16(burst(2.0, loud_at=0.5)), stop=False)
        await hall.read_until(c.WYOMING_EVENT_PREFIX + c.EVENT_SOUND, timeout=30)  # the door slam
        assert not all(pending.ready() for pending in queued)  # heard while the recognizer was still busy
        transcript, _ = await kitchen.read_until(c.WYOMING_EVENT_PREFIX + c.EVENT_TRANSCRIPT, timeout=60)
        assert transcript.data["text"]
        assert [pending.result().text for pending in queued] == [COMMAND] * len(queued)
        for client in (kitchen, hall):
            await client.close()


def _use_the_shared_recognizer(out) -> None:
    out.put(shared_recognizer().child_pid())


def test_a_multiprocessing_child_that_used_the_recognizer_exits():
    # A multiprocessing child (as `bench lite`'s workers are) joins its own children as it
    # exits: the shared recognizer's must be stopped first, or the exit waits on it forever.
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(target=_use_the_shared_recognizer, args=(out,))
    process.start()
    try:
        recognizer_pid = out.get(timeout=120)
        process.join(30)
        assert process.exitcode == 0, "the process did not exit"
    finally:
        process.kill()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{recognizer_pid}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{recognizer_pid}")
