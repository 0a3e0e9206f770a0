"""PocketSphinx's decoder: a request's words, biased to a home's command grammar when one fits.

PocketSphinx ships its US-English acoustic model, dictionary and language
model inside its wheel. This module is what the recognizer's child process
(transcribe.py) imports: the decoder and little else (no numpy, no detectors).

Given a home's vocabulary (device and area names), a request is also decoded
with that home's command grammar (home_phrases.py), and the grammar's
sentence is taken when it fits the audio (else the general model's words).
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from .home_phrases import GrammarFit, HomeGrammar, HomeVocabulary, build_grammar, compound_pronunciation

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


class Recognizer:
    """The decoder itself, in the calling process (a server runs it in a child: transcribe.py), one
    request at a time."""

    def __init__(self) -> None:
        from pocketsphinx import Decoder  # imported here: loading it costs ~0.4 s

        self._decoder = Decoder(loglevel="FATAL")
        self._grammars: OrderedDict[str, tuple[str, HomeGrammar] | None] = OrderedDict()

    def transcribe(self, pcm: bytes, home: HomeVocabulary | None = None) -> Recognition:
        """The words in `pcm` (16 kHz 16-bit mono); with a home vocabulary, its command sentence when one fits."""
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
        # A fresh front end per request (0.03 ms): its state (the cepstral mean among it) otherwise
        # carries over from the last request, and the same audio was heard differently after other
        # requests (5 of 30 decodes of espeak-ng commands in a shuffled order differed from a fresh
        # decoder's; none with this), so a transcript depended on who spoke before.
        decoder.reinit_feat()
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


# The child process of a `RecognizerProcess` (transcribe.py): its one decoder.
_child_recognizer: Recognizer | None = None
_child_load_error: str | None = None


class RecognizerUnavailable(RuntimeError):
    """PocketSphinx could not be loaded (a broken or missing install): no request can be decoded."""


def start_in_child(parent_pid: int) -> None:
    """The pool's initializer: the child ends with its parent, and loads its decoder."""
    _exit_with_parent(parent_pid)
    load_in_child()


def load_in_child() -> None:
    """Load the decoder; a failure is kept (and said to every request) instead of killing the child,
    whose pool would otherwise break and be started again, and fail again, for each request."""
    global _child_recognizer, _child_load_error
    try:
        _child_recognizer = Recognizer()
        _child_load_error = None
    except Exception as err:  # noqa: BLE001 - an import or model file error: reported, not fatal
        _child_load_error = f"{type(err).__name__}: {err}"


def _exit_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """End this child when its parent is gone. A pool's worker waits for its next request on a queue
    whose pipe it holds both ends of, so a server killed outright (SIGKILL, the OOM killer) left it
    waiting forever: every such restart of a server kept another ~120 MB child alive. (The parent's
    pid comes from the parent: one killed while this child started is already gone here.)"""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ready_in_child() -> tuple[int, str | None]:
    """This child's pid, and why its decoder did not load (None: it did)."""
    return os.getpid(), _child_load_error


def transcribe_in_child(pcm: bytes, home: HomeVocabulary | None) -> Recognition:
    if _child_recognizer is None:
        importlib.invalidate_caches()  # (a package reinstalled meanwhile is found)
        load_in_child()  # once more: whatever stopped it may be mended by now
    if _child_recognizer is None:
        raise RecognizerUnavailable(
            f"PocketSphinx could not be loaded ({_child_load_error}); reinstall the runtime "
            "(pip install --force-reinstall pocketsphinx) and restart the server"
        )
    return _child_recognizer.transcribe(pcm, home)
