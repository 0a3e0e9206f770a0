"""The safety net: the lite engine's detectors that the model does not replace, on their own.

Smoke and CO alarms (with their urgent `response`), beeping, loud noises,
speech activity and music. The lite engine runs them in every stream (with its
wake words and request capture around them). Beside the `audio-interaction`
engine the server runs them too, on the same audio, in a lane of their own
(`server/handler.py`): the model reports no `sound` or `speech` events, may stay
silent through an alarm, may fall behind (its backlog is then skipped) or fail
on a stream, and a home must still hear its smoke or CO alarm (and a room's
speech and music sensors must still work). About 1 % of a core per room
(3-4 % through the server, with its session, the pipe and its process).

The server runs them in a process of their own (`SafetyNetProcess`): in the
model's process their Python competed with the model's for the GIL, and every
one of their calls cost a thread handoff under that contention. Measured with
the tiny model on 2 cores, 16 rooms: the net's 0.13 cores of work cost the
server 0.65 cores and moved the model's decisions from 80 to 174-234 ms (p50).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading

import numpy as np

from .. import events
from ..constants import SAMPLE_RATE
from ..engine import Engine, EngineStream
from ..events import Event, shifted
from .alarms import AlarmDetector
from .loudness import LoudNoiseDetector
from .music import MusicDetector, load_shared_model
from .speech import SpeechDetector

SAFETY_NET_NAME = "safety-net"

log = logging.getLogger(__name__)


class SafetyNetStream(EngineStream):
    """The detectors of one stream; `music_model` is shared by all streams (it holds no state)."""

    def __init__(self, music_model) -> None:
        self._speech = SpeechDetector()
        self._alarms = AlarmDetector()
        self._loudness = LoudNoiseDetector()
        self._music = MusicDetector(music_model)

    @property
    def speaking(self) -> bool:
        """Someone is speaking now (the VAD's state after the last piece)."""
        return self._speech.active

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        speech = self._speech.process(audio)  # first: music skips windows spoken all through
        found = self._alarms.process(audio) + self._loudness.process(audio)
        return by_time(found + self._music.process(audio, speech=self._speech.active) + speech)

    def finish(self) -> list[Event]:
        found = self._alarms.finish() + self._loudness.finish() + self._music.finish()
        return by_time(found + self._speech.finish())


class SafetyNet(Engine):
    """The detectors' engine: the shared music model, one `SafetyNetStream` per stream."""

    name = SAFETY_NET_NAME

    def __init__(self) -> None:
        self.music_model = load_shared_model()

    def open_stream(self) -> SafetyNetStream:
        return SafetyNetStream(self.music_model)


class NetProcessEnded(RuntimeError):
    """The child process is gone (killed, crashed)."""


class SafetyNetProcess(Engine):
    """`SafetyNet` in a child process; its streams are proxies that call it over a pipe.

    Requests are served one at a time (a lock around each request and its
    answer); the caller's thread waits in the pipe with the GIL released. A
    child that died, or hung (no answer in `request_timeout_s`), is started
    again at the next request, and each stream is
    opened anew in it at its own next request, which then carries a
    `safety_net_restarted` error event: the room keeps its net, and is told that
    an alarm pattern under way starts over.
    """

    name = SAFETY_NET_NAME
    # A child that does not answer a request this long is taken for hung (a native deadlock, a
    # stopped process) and replaced: a feed of a whole 10 s backlog takes ~0.1 s here. Starting,
    # it loads its models (~2 s here, more on a slow board or a busy machine) and gets longer.
    request_timeout_s = 30.0
    start_timeout_s = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()  # one request and its answer at a time; also guards a restart
        self._ids = itertools.count()
        self.generation = 0  # children started so far: a stream opened in an older one must open again
        self._process = None
        self._conn = None
        with self._lock:
            self._start()

    def open_stream(self) -> "SafetyNetProxy":
        stream = SafetyNetProxy(self, next(self._ids))
        self.request(stream, "ready")  # opens it in the child now: a failure shows at audio-start
        return stream

    def request(self, stream: "SafetyNetProxy", op: str, audio: np.ndarray | None = None) -> tuple[object, str | None]:
        """`op` for `stream` in the child: (its answer, why the child was started again or None)."""
        with self._lock:
            if self._process is None:
                raise RuntimeError("the safety net was closed")
            if op == "close" and (stream.generation != self.generation or not self._process.is_alive()):
                return None, None  # its child is gone and its state with it: nothing to free, nothing to restart
            ended = None
            if not self._process.is_alive():
                self._process.join(timeout=1)
                ended = f"the safety net's process had ended (exit code {self._process.exitcode})"
                self._restart(ended)
            try:
                return self._stream_request(stream, op, audio), ended
            except NetProcessEnded as err:  # it died on this request: once more, in a new child
                self._restart(str(err))
                return self._stream_request(stream, op, audio), str(err)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stream_request(self, stream: "SafetyNetProxy", op: str, audio: np.ndarray | None):
        if stream.generation != self.generation:
            self._request("open", stream.stream_id)
            stream.generation = self.generation
        return self._request(op, stream.stream_id, audio)

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # (fork would copy a loaded model's threads' locks)
        self._conn, child_end = context.Pipe()
        self._process = context.Process(target=_serve_net, args=(child_end,), name=SAFETY_NET_NAME, daemon=True)
        self._process.start()
        child_end.close()
        self.generation += 1
        self._request("ready", timeout=self.start_timeout_s)  # the child has loaded its models: a failure shows now

    def _restart(self, why: str) -> None:
        log.warning("%s: starting it again", why)
        self._stop()
        self._start()

    def _request(self, op: str, stream_id: int | None = None, audio: np.ndarray | None = None,
                 timeout: float | None = None):
        timeout = self.request_timeout_s if timeout is None else timeout
        try:
            self._conn.send((op, stream_id, audio))
            if not self._conn.poll(timeout):
                self._process.kill()
                self._process.join()
                raise NetProcessEnded(f"the safety net's process did not answer in {timeout:g} s and was stopped")
            ok, result = self._conn.recv()
        except (EOFError, OSError) as err:
            self._process.join(timeout=1)  # (reaped: its exit code tells how it ended)
            raise NetProcessEnded(
                f"the safety net's process ended (exit code {self._process.exitcode}): {type(err).__name__}"
            ) from None
        if not ok:
            raise RuntimeError(result)
        return result

    def _stop(self) -> None:
        if self._process is None:
            return
        try:
            self._conn.send(("exit", None, None))
        except (OSError, ValueError):
            pass
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
        self._process = None


class SafetyNetProxy(EngineStream):
    """One stream of the net in its process."""

    def __init__(self, net: SafetyNetProcess, stream_id: int) -> None:
        self._net, self.stream_id = net, stream_id
        self.generation = 0  # the child it was opened in (0: none yet)
        self._samples = 0  # fed so far
        self._opened_at = 0.0  # stream time at which it was opened in the current child (its time 0)
        self._closed = False

    def feed(self, audio: np.ndarray) -> list[Event]:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        found = self._request("feed", audio)
        self._samples += audio.size
        return found

    def finish(self) -> list[Event]:
        return self._request("finish")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._net.request(self, "close")
            except RuntimeError:  # closed with the net, or the child failing again: nothing to free
                pass

    def _request(self, op: str, audio: np.ndarray | None = None) -> list[Event]:
        answer, restarted = self._net.request(self, op, audio)
        if restarted:
            self._opened_at = self._samples / SAMPLE_RATE
        found = [shifted(Event.from_dict(d), self._opened_at) for d in answer or []]
        if restarted and self._samples:  # (a stream that had heard nothing lost nothing)
            t = self._opened_at
            found.insert(0, events.error(
                t, f"{restarted}; it was started again and hears this stream from {t:.1f} s on "
                "(an alarm pattern under way starts over)", "safety_net_restarted"))
        return found


def _serve_net(conn) -> None:
    """The child: a `SafetyNet` and its streams, one request at a time, until "exit" or the pipe closes."""
    try:
        net = SafetyNet()
    except Exception as err:  # noqa: BLE001 - said to the parent, which raises it
        conn.send((False, f"the safety net could not load: {type(err).__name__}: {err}"))
        return
    streams: dict[int, SafetyNetStream] = {}
    while True:
        try:
            op, stream_id, audio = conn.recv()
        except (EOFError, OSError):
            return
        if op == "exit":
            return
        try:
            if op == "feed":
                result = [event.to_dict() for event in streams[stream_id].feed(audio)]
            elif op == "finish":
                result = [event.to_dict() for event in streams[stream_id].finish()]
            elif op == "open":
                streams[stream_id] = net.open_stream()
                result = None
            elif op == "close":
                streams.pop(stream_id).close()
                result = None
            else:  # "ready"
                result = None
        except Exception as err:  # noqa: BLE001 - one stream's fault, said to its caller
            conn.send((False, f"{type(err).__name__}: {err}"))
            continue
        conn.send((True, result))


def by_time(found: list[Event]) -> list[Event]:
    return sorted(found, key=lambda e: e.t)  # stable: each detector's own order is kept
