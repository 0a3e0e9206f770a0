"""The server's Wyoming speech-to-text service (server/asr.py), against a real server on localhost."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart
from wyoming.info import Describe, Info
from wyoming.wake import Detect

from wyoming.event import Event as WyomingEvent

from model_runtime import constants as c
from model_runtime.engine import EngineOptions
from model_runtime.interaction.tiny import RIGGED_TEXT, trigger_audio
from model_runtime.lite import LiteEngine, LiteStream
from model_runtime.lite.home_phrases import HomeVocabulary, build_grammar, compound_pronunciation
from model_runtime.piper_voice import piper_pcm
from server_support import COMMAND, Client, burst, espeak, listen, running_server, to_pcm16


async def test_describe_advertises_the_asr_service():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Describe().event())
        (program,) = Info.from_event(await client.read()).asr
        assert program.installed and program.requires_external_vad and not program.supports_transcript_streaming
        assert program.models[0].languages == ["en"]
        await client.close()


async def test_transcribe_one_command_then_the_connection_goes_on():
    pcm, rate = espeak(COMMAND)
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Transcribe(language="en").event())
        await client.stream(pcm, rate=rate, chunk_seconds=0.01, stop=False)
        assert server.open_streams == 0  # STT audio never opens an engine stream
        await client.stream(b"", rate=rate, stop=True)
        transcript, before = await client.read_until("transcript", timeout=20)
        assert before == []
        assert Transcript.from_event(transcript).text == COMMAND
        assert transcript.data["language"] == "en"
        # The request is over: the same connection can run the wake flow next.
        await client.send(Detect().event())
        await client.stream(pcm, rate=rate)
        await client.read_until("not-detected", timeout=20)
        await client.close()


async def test_silence_gives_an_empty_transcript():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Transcribe().event())
        await client.stream(bytes(2 * c.SAMPLE_RATE))
        transcript, _ = await client.read_until("transcript", timeout=20)
        assert transcript.data["text"] == ""
        await client.close()


async def test_bad_requests_get_clear_errors():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Transcribe(language="de").event())
        error, _ = await client.read_until("error")
        assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT
        assert "'de' is not supported" in error.data["text"] and "Whisper" in error.data["text"]
        await client.send(Transcribe().event(), AudioChunk(rate=16000, width=2, channels=1, audio=bytes(320)).event())
        error, _ = await client.read_until("error")
        assert "audio-chunk before audio-start" in error.data["text"]
        await client.send(AudioStart(rate=16000, width=7, channels=1).event())
        error, _ = await client.read_until("error")
        assert error.data["code"] == c.WYOMING_ERROR_AUDIO_FORMAT
        # After the errors the request still works.
        await client.stream(bytes(3200))
        transcript, _ = await client.read_until("transcript", timeout=20)
        assert transcript.data["text"] == ""
        await client.close()


async def test_a_client_that_leaves_mid_request_is_cleaned_up():
    """HA cancels a pipeline (the satellite went away) while its command streams: nothing is left behind."""
    pcm, rate = espeak(COMMAND)
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(Transcribe().event())
        await client.stream(pcm[: len(pcm) // 2], rate=rate, stop=False)
        await client.close()
        async with asyncio.timeout(5):
            while server.handlers:
                await asyncio.sleep(0.05)
        assert server.open_streams == 0
        # The service goes on for the next client.
        other = await Client.connect(server)
        await other.send(Transcribe().event())
        await other.stream(pcm, rate=rate)
        transcript, _ = await other.read_until("transcript", timeout=20)
        assert transcript.data["text"] == COMMAND
        await other.close()


class HeldEngine(LiteEngine):
    """The lite engine whose streams' feeds wait until released: its one feed thread is held."""

    def __init__(self, options: EngineOptions) -> None:
        super().__init__(options)
        self.release, self.holding = threading.Event(), threading.Event()

    def open_stream(self) -> LiteStream:
        stream = super().open_stream()
        feed = stream.feed

        def held_feed(audio):
            self.holding.set()
            self.release.wait(timeout=60)
            return feed(audio)

        stream.feed = held_feed
        return stream


async def test_a_transcription_does_not_wait_behind_the_rooms_feeds():
    """The lite engine's rooms share one feed thread; speech-to-text has threads of its own."""
    pcm, rate = espeak(COMMAND)
    engine = HeldEngine(EngineOptions())
    async with running_server(engine) as server:
        room = await Client.connect(server)
        await room.send(listen("kitchen"))
        await room.stream(bytes(2 * c.SAMPLE_RATE), stop=False)
        await asyncio.get_running_loop().run_in_executor(None, engine.holding.wait, 10)
        client = await Client.connect(server)
        try:
            await client.send(Transcribe(language="en").event())
            await client.stream(pcm, rate=rate)
            transcript, _ = await client.read_until("transcript", timeout=20)
            assert transcript.data["text"] == COMMAND and not engine.release.is_set()
        finally:
            engine.release.set()
        for each in (room, client):
            await each.close()


# --- Biasing to the home's commands (lite/home_phrases.py) -------------------------------------

HOME_NAMES = ["Kitchen Light", "Porch Light", "Ceiling Fan", "Front Door", "Hallwaylight", "Zorbulax 3000"]
HOME_AREAS = ["Kitchen", "Living Room", "Bedroom"]


async def transcribe(server, pcm: bytes, with_home: bool = False) -> str:
    """One request; `with_home`: naming the home's devices and areas, as our HA STT entity does."""
    home = {"transcript_names": HOME_NAMES, "transcript_terms": HOME_AREAS} if with_home else {}
    client = await Client.connect(server)
    await client.send(Transcribe(language="en", **home).event())
    await client.stream(pcm)
    transcript, _ = await client.read_until("transcript", timeout=30)
    await client.close()
    return transcript.data["text"]


async def test_the_homes_names_make_a_piper_command_exact_and_leave_other_speech_alone():
    """The issue's sentence by the Piper voice: the general model mishears it; with the home's names the
    grammar gets it word for word. A question outside the grammar keeps the general model's words."""
    command = piper_pcm("turn on the kitchen light")
    question = piper_pcm("what is the capital of france")
    async with running_server() as server:
        assert await transcribe(server, command) != "turn on the kitchen light"
        assert await transcribe(server, command, with_home=True) == "turn on the kitchen light"
        assert await transcribe(server, question, with_home=True) == await transcribe(server, question)


async def test_bad_home_names_get_a_clear_error():
    async with running_server() as server:
        client = await Client.connect(server)
        await client.send(WyomingEvent("transcribe", {"transcript_names": "kitchen light"}))
        error, _ = await client.read_until("error")
        assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT
        assert "'transcript_names' must be a list of strings" in error.data["text"]
        await client.close()


def test_home_grammar_sentences_and_pronunciations():
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")

    def pronounce(word: str) -> bool:
        return bool(decoder.lookup_word(word) or compound_pronunciation(word, decoder.lookup_word))

    home = HomeVocabulary.of(HOME_NAMES, HOME_AREAS)
    assert "zorbulax three zero zero zero" in home.names  # digits are spoken as words
    grammar = build_grammar(home, pronounce)
    assert grammar.left_out == ["zorbulax three zero zero zero"]  # no pronunciation: the general model hears it
    for sentence in ("turn on the kitchen light", "turn off the lights in the living room", "lock front door",
                     "set the porch light brightness to fifty five percent", "what's the temperature in the bedroom",
                     "turn the ceiling fan off", "turn on the hallwaylight"):
        assert grammar.complete(sentence), sentence
    for partial in ("turn on the kitchen", "turn on the", "what is the temperature in", "open the window"):
        assert not grammar.complete(partial), partial
    assert compound_pronunciation("hallwaylight", decoder.lookup_word) == "HH AO L W EY L AY T"
    assert compound_pronunciation("zorbulax", decoder.lookup_word) is None
    assert build_grammar(HomeVocabulary.of(["Zorbulax"]), pronounce) is None


async def test_the_big_model_transcribes_in_a_stream_of_its_own(model_engine):
    """With the audio-interaction engine, speech-to-text asks the model itself (told "transcribe", in a fresh
    stream): the rigged tiny model answers its trigger tone, and that answer is the transcript. Where the
    model says nothing (the rig is silent on speech), PocketSphinx is asked; either can be picked by name."""
    tone = to_pcm16(np.concatenate([trigger_audio(0.4), np.zeros(c.SAMPLE_RATE // 2, dtype=np.float32)]))
    pcm, rate = espeak(COMMAND)
    async with running_server(model_engine) as server:
        client = await Client.connect(server)
        await client.send(Describe().event())
        (program,) = Info.from_event(await client.read()).asr
        assert [m.name for m in program.models] == [c.ENGINE_AUDIO_INTERACTION, "pocketsphinx-en-us"]

        async def transcribe(audio: bytes, audio_rate: int = c.SAMPLE_RATE, **request) -> str:
            await client.send(Transcribe(language="en", **request).event())
            await client.stream(audio, rate=audio_rate)
            transcript, _ = await client.read_until("transcript", timeout=120)
            return Transcript.from_event(transcript).text

        assert await transcribe(tone) == RIGGED_TEXT  # the emotion tag is the event's, not the text's
        assert server.open_streams == 0  # the request's own stream is closed again
        assert await transcribe(pcm, rate) == COMMAND  # the model was silent: PocketSphinx heard it
        assert await transcribe(tone, name="pocketsphinx-en-us") != RIGGED_TEXT
        await client.send(Transcribe(name="whisper-large").event())
        error, _ = await client.read_until("error", timeout=10)
        assert "unknown model 'whisper-large'" in error.data["text"] and "pocketsphinx-en-us" in error.data["text"]
        await client.close()


async def test_a_listening_rooms_request_is_biased_to_the_names_its_listen_gave():
    """A room (our HA integration) names the home's devices and areas in `audio-interaction-listen`:
    the lite engine's request after the wake word is then decoded with the home's command grammar."""
    pause = bytes(2 * c.SAMPLE_RATE // 2)  # 0.5 s
    pcm = pause + piper_pcm("okay nabu") + pause + piper_pcm("turn on the kitchen light") + pause * 4

    async def heard(**names) -> str:
        async with running_server() as server:
            room = await Client.connect(server)
            await room.send(WyomingEvent(c.WYOMING_LISTEN, {"room": "kitchen", **names}))
            await room.stream(pcm)
            transcript, before = await room.read_until(c.WYOMING_EVENT_PREFIX + "transcript", timeout=30)
            assert [e for e in before if e.type == c.WYOMING_EVENT_PREFIX + "decision"]  # the wake word
            await room.close()
            return transcript.data["text"]

    assert await heard() != "turn on the kitchen light"
    assert await heard(transcript_names=HOME_NAMES, transcript_terms=HOME_AREAS) == "turn on the kitchen light"


async def test_a_listen_again_brings_the_homes_new_names_to_the_stream_under_way():
    """HA sends `listen` again when the home's names change (a light added): the same stream's next
    request is decoded with them, without a new stream."""
    pause = bytes(2 * c.SAMPLE_RATE // 2)  # 0.5 s
    request = pause + piper_pcm("okay nabu") + pause + piper_pcm("turn on the kitchen light") + pause * 4
    transcript = c.WYOMING_EVENT_PREFIX + "transcript"

    async def live_quiet(seconds: float) -> None:
        """Quiet audio at the pace of a room: the transcript comes with a piece after its decode."""
        for _ in range(int(seconds * 10)):
            await room.stream(pause[: len(pause) // 5], start=False, stop=False)
            await asyncio.sleep(0.1)

    async with running_server() as server:
        room = await Client.connect(server)
        await room.send(WyomingEvent(c.WYOMING_LISTEN, {"room": "kitchen"}))
        await room.stream(request, stop=False)
        await live_quiet(3.0)
        before, _ = await room.read_until(transcript, timeout=30)
        assert before.data["text"] != "turn on the kitchen light"
        await room.send(WyomingEvent(c.WYOMING_LISTEN, {"room": "kitchen", "transcript_names": HOME_NAMES,
                                                        "transcript_terms": HOME_AREAS}))
        await room.stream(request, start=False, stop=False)
        await live_quiet(3.0)
        after, _ = await room.read_until(transcript, timeout=30)
        assert after.data["text"] == "turn on the kitchen light"
        assert after.data["start"] > before.data["end"]  # the same stream's time: no new stream
        await room.close()


async def test_bad_names_in_listen_get_a_clear_error_and_the_room_still_listens():
    too_many = [f"lamp {i}" for i in range(c.MAX_TRANSCRIPT_NAMES + 1)]
    async with running_server() as server:
        for names in ({"transcript_terms": [1, 2]}, {"transcript_names": too_many}):
            client = await Client.connect(server)
            await client.send(WyomingEvent(c.WYOMING_LISTEN, {"room": "kitchen", **names}))
            error, _ = await client.read_until("error")
            assert error.data["code"] == c.WYOMING_ERROR_BAD_EVENT
            assert "audio-interaction-listen: 'transcript_" in error.data["text"]
            assert "listening without the home's names" in error.data["text"]
            await client.stream(to_pcm16(burst(3.0, loud_at=1.0)))  # a door slam: the room hears it
            sound, _ = await client.read_until(c.WYOMING_EVENT_PREFIX + "sound", timeout=20)
            assert sound.data["label"] == "loud_noise"
            await client.close()
