"""After a wake word: the spoken request as a `transcript`, from PocketSphinx.

PocketSphinx ships its US-English acoustic model, dictionary and language
model inside its wheel. One decoder is loaded per engine and shared by all
streams (a lock serialises them): a request is short and rare, so it is
decoded whole once it ends, rather than keeping a decoder per room.

The request is the audio from the wake word until speech stops (Silero VAD),
or MAX_REQUEST_S; if nobody speaks within NO_SPEECH_S there is no request.

Given a home's vocabulary (device and area names), a request is also decoded
with that home's command grammar (home_phrases.py), and the grammar's
sentence is taken when it fits the audio (else the general model's words).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .. import events
from ..audio import float_to_pcm16
from ..constants import SAMPLE_RATE
from ..events import Event
from .home_phrases import GrammarFit, HomeGrammar, HomeVocabulary, build_grammar, compound_pronunciation

MAX_REQUEST_S = 8.0
NO_SPEECH_S = 3.0
RUN_ON_S = 1.0  # speech going on this long after the wake word is the request


# Grammars kept compiled in the decoder (one per distinct home vocabulary seen recently).
MAX_GRAMMARS = 4
_FREE_SEARCH = "_default"  # pocketsphinx's name for the search of its general language model


@dataclass(frozen=True)
class Recognition:
    text: str
    biased: bool = False  # the home grammar's sentence was taken
    grammar_text: str = ""  # the home grammar's best sentence (when a grammar was tried)
    complete: bool = False  # ... and whether it is a whole sentence of the grammar
    fit: GrammarFit | None = None


class SharedRecognizer:
    def __init__(self) -> None:
        from pocketsphinx import Decoder  # imported here: loading it costs ~0.4 s

        self._decoder = Decoder(loglevel="FATAL")
        self._lock = threading.Lock()
        self._grammars: OrderedDict[str, tuple[str, HomeGrammar] | None] = OrderedDict()

    def recognize(self, audio: np.ndarray) -> str:
        return self.transcribe(audio).text

    def transcribe(self, audio: np.ndarray, home: HomeVocabulary | None = None) -> Recognition:
        """The words in `audio`; with a home vocabulary, its command sentence when one fits the audio."""
        pcm = float_to_pcm16(audio)
        with self._lock:
            free_text, free_score, frames = self._decode(_FREE_SEARCH, pcm)
            grammar = self._grammar(home) if home else None
            if grammar is None:
                return Recognition(free_text)
            search, compiled = grammar
            text, score, _ = self._decode(search, pcm)
            fit, complete = GrammarFit.of(score, free_score, frames), compiled.complete(text)
            biased = complete and fit.accepted
            return Recognition(text if biased else free_text, biased, text, complete, fit)

    def _decode(self, search: str, pcm: bytes) -> tuple[str, float, int]:
        """(text, summed log acoustic score of its words, frames) under one search."""
        decoder = self._decoder
        decoder.activate_search(search)
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        if hyp is None:
            return "", -math.inf, decoder.n_frames()
        # Segment scores come back as probabilities; a word that underflowed scored as badly as a word can.
        score = sum(math.log(max(seg.ascore, 1e-300)) for seg in decoder.seg() or [])
        return hyp.hypstr.strip(), score, decoder.n_frames()

    def _grammar(self, home: HomeVocabulary) -> tuple[str, HomeGrammar] | None:
        key = home.key
        if key in self._grammars:
            self._grammars.move_to_end(key)
            return self._grammars[key]
        grammar = build_grammar(home, self._pronounce)
        entry = None
        if grammar is not None:
            search = f"home_{key}"
            self._decoder.add_jsgf_string(search, grammar.jsgf)
            entry = (search, grammar)
        self._grammars[key] = entry
        while len(self._grammars) > MAX_GRAMMARS:
            _, old = self._grammars.popitem(last=False)
            if old is not None:
                self._decoder.remove_search(old[0])
        return entry

    def _pronounce(self, word: str) -> bool:
        if self._decoder.lookup_word(word):
            return True
        phones = compound_pronunciation(word, self._decoder.lookup_word)
        if phones is None:
            return False
        self._decoder.add_word(word, phones, True)
        return True


class RequestCapture:
    """Per stream: collects the request after a wake word and hands it to the shared recognizer."""

    def __init__(self, recognizer: "SharedRecognizer | None") -> None:
        self._recognizer = recognizer
        self._chunks: list[np.ndarray] | None = None
        self._start = 0.0
        self._heard_speech = False
        self._run_on = False

    @property
    def listening(self) -> bool:
        return self._chunks is not None

    def begin(self, t: float, speaking: bool) -> None:
        if self._recognizer is not None:
            # Speech still on at the wake word is the wake word itself, unless it runs on into the request.
            self._chunks, self._start, self._heard_speech, self._run_on = [], t, False, speaking

    def process(self, audio: np.ndarray, now: float, speech_started: bool, speech_stopped: bool) -> list[Event]:
        if self._chunks is None:
            return []
        self._chunks.append(audio)
        elapsed = now - self._start
        self._heard_speech = self._heard_speech or speech_started or (self._run_on and speech_stopped and elapsed > RUN_ON_S)
        if (self._heard_speech and speech_stopped) or elapsed >= MAX_REQUEST_S:
            return self._end(now)
        if not self._heard_speech and elapsed >= NO_SPEECH_S:
            self._chunks = None  # nobody spoke after the wake word
        return []

    def finish(self, now: float) -> list[Event]:
        return self._end(now) if self._chunks is not None and self._heard_speech else []

    def _end(self, now: float) -> list[Event]:
        assert self._chunks is not None and self._recognizer is not None
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        self._chunks = None
        text = self._recognizer.recognize(audio) if len(audio) > SAMPLE_RATE // 10 else ""
        return [events.transcript(now, text, self._start, now)] if text else []
