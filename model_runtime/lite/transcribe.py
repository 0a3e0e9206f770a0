"""After a wake word: the spoken request as a `transcript`, from PocketSphinx (recognizer.py).

The request is the audio from the wake word until speech stops (Silero VAD),
or MAX_REQUEST_S; if nobody speaks within NO_SPEECH_S there is no request. A
request is short and rare, so it is decoded whole once it ends, rather than
keeping a decoder per room.

The decoder runs in a child process of its own (`RecognizerProcess`), one per
server process, shared by every engine and stream and by the server's
speech-to-text service. PocketSphinx holds the GIL while it decodes: in the
server's process every room (and the event loop) stopped for the length of
each decode, 0.26-0.71 s per spoken command here. A room's request is handed
over when it ends and its `transcript` comes with a later piece of audio (its
`t` is still the request's end); the stream's audio never waits for it. The
child costs ~115 MiB, most of it the decoder's models that the server's
process no longer holds.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from .. import events
from ..audio import float_to_pcm16
from ..constants import SAMPLE_RATE
from ..events import Event
from .home_phrases import HomeVocabulary
from .recognizer import Recognition, RecognizerUnavailable, ready_in_child, start_in_child, transcribe_in_child

MAX_REQUEST_S = 8.0
NO_SPEECH_S = 3.0
RUN_ON_S = 1.0  # speech going on this long after the wake word is the request


log = logging.getLogger(__name__)


class RecognitionFailed(RuntimeError):
    """The recognizer's process failed or did not answer; the request got no transcript."""


class RecognizerProcess:
    """A `Recognizer` in a child process; requests are decoded there one at a time, in order.

    `submit` hands a request over and returns at once; `transcribe` waits for
    its answer (with the GIL released). A child that died (killed, crashed) is
    replaced, and a request it took with it is decoded once more in the new one.
    """

    # An 8 s request with a home grammar decodes in ~1.5 s here; a child that takes this long is
    # taken for hung and replaced. (Starting, it loads the decoder first: ~1 s here.)
    request_timeout_s = 60.0

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards replacing the child
        self._child = _Child()

    def submit(self, audio: np.ndarray, home: HomeVocabulary | None = None) -> "PendingRecognition":
        return PendingRecognition(self, float_to_pcm16(np.asarray(audio, dtype=np.float32).reshape(-1)), home)

    def transcribe(self, audio: np.ndarray, home: HomeVocabulary | None = None) -> Recognition:
        return self.submit(audio, home).result()

    def child_pid(self, timeout: float = 120.0) -> int:
        """The process id of the child decoding now (once it has loaded its decoder)."""
        with self._lock:
            child = self._child
        return child.ready.result(timeout)[0]

    def close(self) -> None:
        """Stop the child (the shared recognizer's lives as long as this process; one made apart, not)."""
        with self._lock:
            self._child.pool.shutdown(wait=True, cancel_futures=True)

    def hand_over(self, pcm: bytes, home: HomeVocabulary | None) -> tuple["Future[Recognition]", "_Child"]:
        """The request queued in the current child (a new one if it had died): its future and that child."""
        with self._lock:
            try:
                future = self._child.pool.submit(transcribe_in_child, pcm, home)
            except BrokenProcessPool:  # the child died (on an earlier request): start another
                log.warning("the speech recognizer's process had ended; starting it again")
                self._child = _Child()
                future = self._child.pool.submit(transcribe_in_child, pcm, home)
            return future, self._child

    def replace_hung(self, child: "_Child") -> None:
        with self._lock:
            if self._child is child:
                log.warning("the speech recognizer's process did not answer in time; starting another")
                child.kill()
                self._child = _Child()


class _Child:
    """One child process (a pool of one worker) and the future of its start."""

    def __init__(self) -> None:
        # spawn: fork would copy the server's threads' locks (a loaded model's, the event loop's).
        self.pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=start_in_child, initargs=(os.getpid(),))
        # It starts and loads its decoder now, not at the first request; a failure to load is
        # logged now, and each request tries the load again or fails with the reason (RecognitionFailed).
        self.ready: Future[tuple[int, str | None]] = self.pool.submit(ready_in_child)
        self.ready.add_done_callback(_log_load_failure)

    def kill(self) -> None:
        """Stop a hung child (its pool then fails whatever it still held)."""
        if self.ready.done() and self.ready.exception() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.ready.result()[0], signal.SIGKILL)
        self.pool.shutdown(wait=False, cancel_futures=True)


class PendingRecognition:
    """One request handed to a `RecognizerProcess`: poll `ready()`, then take `result()`."""

    def __init__(self, recognizer: RecognizerProcess, pcm: bytes, home: HomeVocabulary | None) -> None:
        self._recognizer, self._pcm, self._home = recognizer, pcm, home
        self._future, self._child = recognizer.hand_over(pcm, home)
        self._handed_at = time.monotonic()
        self._retried = False

    def ready(self) -> bool:
        """Whether `result()` returns now: the child answered, or failed, or is overdue."""
        self._retry_if_the_child_died()
        return self._future.done() or self._seconds_left() == 0.0

    def result(self) -> Recognition:
        """The recognition, waited for up to the recognizer's `request_timeout_s` from the hand-over;
        RecognitionFailed if the child died twice on it, raised, or did not answer in time (it is
        then taken for hung and replaced)."""
        while True:
            try:
                return self._future.result(self._seconds_left())
            except (BrokenProcessPool, CancelledError):
                if not self._retry_if_the_child_died():
                    raise RecognitionFailed("the speech recognizer's process ended twice on this request") from None
            except TimeoutError:
                self._recognizer.replace_hung(self._child)
                raise RecognitionFailed(
                    f"the speech recognizer did not answer in {self._recognizer.request_timeout_s:g} s") from None
            except RecognizerUnavailable as err:
                raise RecognitionFailed(str(err)) from None
            except Exception as err:  # noqa: BLE001 - the decoder's own error, said to the caller
                raise RecognitionFailed(f"the speech recognizer failed: {type(err).__name__}: {err}") from None

    def cancel(self) -> None:
        self._future.cancel()

    def _seconds_left(self) -> float:
        return max(0.0, self._handed_at + self._recognizer.request_timeout_s - time.monotonic())

    def _retry_if_the_child_died(self) -> bool:
        """Hand the request to a new child once, if its child died with it (or was stopped as hung
        with the request still queued: cancelled); whether it did."""
        future = self._future
        if self._retried or not future.done():
            return False
        if not (future.cancelled() or isinstance(future.exception(), BrokenProcessPool)):
            return False
        self._retried = True
        self._future, self._child = self._recognizer.hand_over(self._pcm, self._home)
        self._handed_at = time.monotonic()
        return True


_shared: RecognizerProcess | None = None
_shared_lock = threading.Lock()


def shared_recognizer() -> RecognizerProcess:
    """This process's one recognizer (started on the first call): every engine, stream and the
    server's speech-to-text service use it. Its child exits with this process."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = RecognizerProcess()
            # A multiprocessing child (a benchmark's worker) joins its own children as it exits,
            # before the pool's own exit hook could stop this one: stop it first, or that exit
            # waits forever (`bench lite` hung on its first concurrent run). First of all: the
            # pool's queues close at exit priority 10, and a closed queue never delivers the
            # child its stop.
            multiprocessing.util.Finalize(_shared, _shared.close, exitpriority=100)
        return _shared


def _log_load_failure(ready: "Future[tuple[int, str | None]]") -> None:
    if ready.cancelled():
        return
    if (err := ready.exception()) is not None:
        log.error("the speech recognizer's process could not start: %s: %s", type(err).__name__, err)
    elif (load_error := ready.result()[1]) is not None:
        log.error("the speech recognizer could not load PocketSphinx (%s): requests after a wake word and "
                  "speech-to-text get no transcript; reinstall pocketsphinx", load_error)


@dataclass
class _HandedOver:
    """A request with the recognizer: its recognition to come, and where it lies in the stream."""

    recognition: PendingRecognition
    start: float
    end: float


class RequestCapture:
    """Per stream: collects the request after a wake word and hands it to the shared recognizer;
    its transcript comes with a later piece (or at the stream's finish)."""

    def __init__(self, recognizer: RecognizerProcess | None) -> None:
        self._recognizer = recognizer
        self._chunks: list[np.ndarray] | None = None
        self._start = 0.0
        self._heard_speech = False
        self._run_on = False
        self._handed_over: deque[_HandedOver] = deque()
        self.home: HomeVocabulary | None = None  # the home's names, to bias the recogniser to its commands

    @property
    def listening(self) -> bool:
        return self._chunks is not None

    def begin(self, t: float, speaking: bool) -> None:
        if self._recognizer is not None:
            # Speech still on at the wake word is the wake word itself, unless it runs on into the request.
            self._chunks, self._start, self._heard_speech, self._run_on = [], t, False, speaking

    def process(self, audio: np.ndarray, now: float, speech_started: bool, speech_stopped: bool) -> list[Event]:
        found = self._answers()
        if self._chunks is None:
            return found
        self._chunks.append(audio)
        elapsed = now - self._start
        self._heard_speech = self._heard_speech or speech_started or (self._run_on and speech_stopped and elapsed > RUN_ON_S)
        if (self._heard_speech and speech_stopped) or elapsed >= MAX_REQUEST_S:
            self._end(now)
        elif not self._heard_speech and elapsed >= NO_SPEECH_S:
            self._chunks = None  # nobody spoke after the wake word
        return found

    def finish(self, now: float) -> list[Event]:
        """The request under way ends here; the transcripts answered by now (the rest: `transcripts_to_come`)."""
        if self._chunks is not None and self._heard_speech:
            self._end(now)
        self._chunks = None
        return self._answers()

    @property
    def waiting(self) -> bool:
        """Requests handed over and not yet answered."""
        return bool(self._handed_over)

    def transcripts_to_come(self) -> list[Event]:
        """Every transcript (or error) still to come, waited for (each for at most the recognizer's timeout)."""
        return self._answers(wait=True)

    def close(self) -> None:
        for request in self._handed_over:
            request.recognition.cancel()
        self._handed_over.clear()

    def _end(self, now: float) -> None:
        assert self._chunks is not None and self._recognizer is not None
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        self._chunks = None
        if len(audio) > SAMPLE_RATE // 10:
            self._handed_over.append(_HandedOver(self._recognizer.submit(audio, self.home), self._start, now))

    def _answers(self, wait: bool = False) -> list[Event]:
        """Transcripts (at their request's end) of the requests answered by now, in order; all if `wait`.
        A request the recognizer failed, or did not answer in time, is an `error` event instead."""
        found = []
        while self._handed_over and (wait or self._handed_over[0].recognition.ready()):
            request = self._handed_over.popleft()
            try:
                text = request.recognition.result().text
            except RecognitionFailed as err:
                found.append(events.error(
                    request.end, f"the request after the wake word ({request.start:.1f}-{request.end:.1f} s) got no "
                    f"transcript: {err}", "recognizer_failed"))
                continue
            if text:
                found.append(events.transcript(request.end, text, request.start, request.end))
        return found
