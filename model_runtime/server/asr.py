"""The Wyoming speech-to-text (`asr`) service: `transcribe`, audio-start/chunks/stop -> `transcript`.

A client (HA's `wyoming` STT entity, or our integration's) sends `transcribe`,
then one utterance as audio-start, audio-chunk..., audio-stop; the server
answers one `transcript` {text, language}. The audio of a request goes to the
recogniser only, never to an engine stream: the room's sounds are the room
stream's business (our integration keeps feeding that stream during STT).

A client may name the home's devices (`transcript_names`, Wyoming's field
for names that should bias the transcription) and areas
(`transcript_terms`); the recogniser then also tries the home's command
grammar over them (lite/home_phrases.py), as Speech-to-Phrase does. Our
HA integration's STT entity sends the names Assist exposes.

Two recognisers:
- With the audio-interaction engine loaded, the big model itself: each
  request gets a fresh stream of its own (a room's stream and context are
  never touched) told "transcribe" in-stream, fed the utterance and then up
  to MODEL_TRAILING_SECONDS of silence so it can finish answering; its final
  response text is the transcript. If it says nothing, PocketSphinx is asked.
- PocketSphinx (US English, inside its wheel): the process's one recognizer
  (lite/transcribe.py), which the lite engine's streams share; it decodes in
  a child process, so a request never stops the rooms' streams.
A client picks one by the model name in `transcribe` (`name`); without one,
the big model when loaded, else PocketSphinx.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event as WyomingEvent
from wyoming.info import AsrModel, AsrProgram, Attribution

from .. import __version__
from .. import constants as c
from ..engine import Engine
from ..errors import UserError
from ..lite.home_phrases import HomeVocabulary
from ..lite.transcribe import RecognitionFailed, shared_recognizer
from .audio_in import AudioInput, audio_format

_LOGGER = logging.getLogger("model_runtime.server")

ASR_PROGRAM_NAME = "audio-interaction"  # HA's wyoming integration titles its entry with it
ASR_MODEL_NAME = "pocketsphinx-en-us"
ASR_MODEL_AUDIO_INTERACTION = c.ENGINE_AUDIO_INTERACTION  # the big model's transcribe instruction
# DESIGN.md: the model can be told in-stream to "transcribe".
TRANSCRIBE_INSTRUCTION = "transcribe"
# After the utterance the model may still be answering: it hears this much silence at most to finish.
MODEL_TRAILING_SECONDS = 2.0
ASR_LANGUAGES = ["en"]
# One request is one spoken command; more than this is cut (memory stays bounded).
MAX_TRANSCRIBE_SECONDS = 30.0
# Audio whose loudest sample stays under this (-60 dBFS) is silence, e.g. a muted microphone.
SILENCE_PEAK = 1e-3


def asr_program(engine_name: str | None = None) -> AsrProgram:
    """What `info.asr` advertises: offline US-English PocketSphinx, after the big model when the server has it
    (also while it is still loading: what a client sees at setup must not change when it is ready)."""
    models = [
        AsrModel(
            name=ASR_MODEL_NAME,
            description="PocketSphinx US English",
            attribution=Attribution(name="CMU Sphinx", url="https://github.com/cmusphinx/pocketsphinx"),
            installed=True,
            languages=ASR_LANGUAGES,
            version=None,
        )
    ]
    if engine_name == c.ENGINE_AUDIO_INTERACTION:
        models.insert(0, AsrModel(
            name=ASR_MODEL_AUDIO_INTERACTION,
            description="Audio-Interaction model, told to transcribe",
            attribution=Attribution(name="zhifeixie", url=f"https://huggingface.co/{c.DEFAULT_MODEL_REPO}"),
            installed=True,
            languages=ASR_LANGUAGES,
            version=None,
        ))
    return AsrProgram(
        name=ASR_PROGRAM_NAME,
        description="Audio-Interaction speech-to-text (offline, US English)",
        attribution=Attribution(name="Audio-Interaction", url=c.PROJECT_URL),
        installed=True,
        version=__version__,
        models=models,
        supports_transcript_streaming=False,
        requires_external_vad=True,  # HA's pipeline VAD ends the utterance
    )


class Transcriber:
    """The server's one recogniser, shared by every connection (it serialises them itself)."""

    def __init__(self, engine_name: str, engine: Engine | None) -> None:
        """`engine` None: the server's engine (`engine_name`) is still loading; `attach` brings it."""
        self._engine_name = engine_name
        self._model: Engine | None = None
        if engine is not None:
            self.attach(engine)

    def attach(self, engine: Engine) -> None:
        self._model = engine if engine.name == c.ENGINE_AUDIO_INTERACTION else None

    @property
    def models(self) -> list[str]:
        return ([ASR_MODEL_AUDIO_INTERACTION] if self._engine_name == c.ENGINE_AUDIO_INTERACTION else []) + [
            ASR_MODEL_NAME
        ]

    def transcribe(self, audio: np.ndarray, home: HomeVocabulary | None = None, model: str | None = None) -> str:
        """16 kHz mono float32 -> text ("" for silence), biased to `home`'s commands. Runs in a worker thread."""
        if audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK:
            return ""  # the decoder "hears" words in digital silence (e.g. "dog"): never ask it
        if (model or self.models[0]) == ASR_MODEL_AUDIO_INTERACTION:
            if self._model is None:
                _LOGGER.debug("the model is still loading; asking PocketSphinx")
            elif text := self._model_transcript(audio):
                return text
            else:
                _LOGGER.debug("the model said nothing to transcribe; asking PocketSphinx")
        recognition = shared_recognizer().transcribe(audio, home)  # (started by now if a lite engine has wake words)
        _LOGGER.debug("transcript %r (%s)", recognition.text, "home grammar" if recognition.biased else "general model")
        return recognition.text

    def _model_transcript(self, audio: np.ndarray) -> str:
        """The big model's final response(s) to "transcribe" over this utterance, in a stream of its own."""
        assert self._model is not None
        stream = self._model.open_stream()
        try:
            heard = stream.instruct(TRANSCRIBE_INSTRUCTION) + stream.feed(audio)
            silence = np.zeros(c.CHUNK_SAMPLES, dtype=np.float32)
            for _ in range(int(MODEL_TRAILING_SECONDS / c.CHUNK_SECONDS)):
                heard += stream.feed(silence)
            heard += stream.finish()
        finally:
            stream.close()
        for event in heard:
            if event.type == c.EVENT_ERROR:
                _LOGGER.warning("transcribe with the model: %s", event.data.get("message"))
        texts = [e.data["text"].strip() for e in heard if e.type == c.EVENT_RESPONSE and e.data.get("final")]
        return " ".join(text for text in texts if text)


class TranscribeRequest:
    """One connection's speech-to-text request: the events after `transcribe` until `transcript`."""

    def __init__(self, transcriber: Transcriber, executor: Executor, data: dict[str, Any]) -> None:
        language = data.get("language")
        if language is not None and not isinstance(language, str):
            raise UserError(f"transcribe: 'language' must be a string, got {language!r}")
        if language and language.split("-")[0].split("_")[0].lower() not in ASR_LANGUAGES:
            raise UserError(
                f"transcribe: language {language!r} is not supported; this server transcribes "
                f"{', '.join(ASR_LANGUAGES)} only (use Whisper for other languages)"
            )
        self._home = home_vocabulary(data)
        self._model = data.get("name") or None
        if self._model == ASR_PROGRAM_NAME and self._model not in transcriber.models:
            self._model = None  # the program's name for its default model
        if self._model is not None and self._model not in transcriber.models:
            raise UserError(
                f"transcribe: unknown model {self._model!r}; this server offers {', '.join(transcriber.models)}"
            )
        self._transcriber = transcriber
        self._executor = executor
        self._audio = AudioInput()
        self._format: dict[str, int] = {}
        self._pieces: list[np.ndarray] = []
        self._samples = 0
        self._started = False
        self._cut = False

    @staticmethod
    def takes(event_type: str) -> bool:
        return AudioStart.is_type(event_type) or AudioChunk.is_type(event_type) or AudioStop.is_type(event_type)

    async def handle(self, event: WyomingEvent) -> WyomingEvent | None:
        """Take one audio event; at audio-stop return the `transcript` (or `error`) to send: the request is then done."""
        data = event.data or {}
        if AudioStart.is_type(event.type):
            self._format = dict(zip(("rate", "width", "channels"), audio_format(data, "audio-start")))
            self._started = True
            return None
        if not self._started:
            raise UserError(f"{event.type} before audio-start: after transcribe send audio-start first")
        if AudioChunk.is_type(event.type):
            rate, width, channels = audio_format({**self._format, **data}, "audio-chunk")
            self._add(self._audio.convert(rate, width, channels, event.payload or b""))
            return None
        audio = np.concatenate(self._pieces) if self._pieces else np.zeros(0, dtype=np.float32)
        self._pieces = []
        loop = asyncio.get_running_loop()
        try:
            text = await loop.run_in_executor(
                self._executor, self._transcriber.transcribe, audio, self._home, self._model
            )
        except RecognitionFailed as err:  # the request is over; the connection goes on
            _LOGGER.warning("transcribe: %s", err)
            message = f"transcribe: {err}; send the request again"
            return Error(text=message, code=c.WYOMING_ERROR_TRANSCRIBE_FAILED).event()
        _LOGGER.debug("transcribed %.1f s of audio: %r", audio.size / c.SAMPLE_RATE, text)
        return Transcript(text=text, language=ASR_LANGUAGES[0]).event()

    def _add(self, samples: np.ndarray) -> None:
        room = int(MAX_TRANSCRIBE_SECONDS * c.SAMPLE_RATE) - self._samples
        if samples.size > room and not self._cut:
            self._cut = True
            _LOGGER.warning("transcribe: audio over %g s; the rest is ignored", MAX_TRANSCRIBE_SECONDS)
        samples = samples[: max(room, 0)]
        if samples.size:
            self._pieces.append(samples)
            self._samples += samples.size


def home_vocabulary(data: dict[str, Any], event: str = "transcribe") -> HomeVocabulary | None:
    """The home's device names (`transcript_names`) and area names (`transcript_terms`) of a
    transcribe (or listen) event."""
    lists = []
    for key in ("transcript_names", "transcript_terms"):
        values = data.get(key) or []
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise UserError(f"{event}: '{key}' must be a list of strings, got {values!r:.80}")
        if len(values) > c.MAX_TRANSCRIPT_NAMES or any(len(v) > c.MAX_TRANSCRIPT_NAME_CHARS for v in values):
            raise UserError(
                f"{event}: '{key}' holds {len(values)} names; at most {c.MAX_TRANSCRIPT_NAMES} of at most "
                f"{c.MAX_TRANSCRIPT_NAME_CHARS} characters are taken (expose fewer entities to Assist)"
            )
        lists.append(values)
    home = HomeVocabulary.of(*lists)
    return home or None


def is_transcribe(event_type: str) -> bool:
    return Transcribe.is_type(event_type)
