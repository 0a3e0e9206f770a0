"""One audio stream's engine work, off the event loop, with a bounded backlog.

Engine calls (`feed`, `instruct`, `finish`, `close`) run one at a time in a
worker thread, in the order the client sent them; the event loop only queues
work and sends results, so a slow stream never stalls another.

Backpressure rule: audio waiting for the engine is capped at
`max_backlog_seconds`. When a new piece would push the backlog past the cap,
the whole waiting backlog is dropped (never the instructions between it) and
the stream jumps to live audio; `on_skip(seconds, total_seconds)` reports how
much was lost, now and on this stream so far. Events keep the stream's time:
the engine counts only the audio it heard, so each is moved on by the seconds
skipped before the audio it came from.
Memory per stream stays under the cap, and the delay of events never exceeds
it plus one engine call. A stream opened with `live=False` (a recording sent
faster than real time) is never skipped: instead the handler awaits
`backlog_room()` after each chunk, so the client is slowed by TCP flow control
and memory still stays under the cap.

Audio reaches the engine in pieces of at least `min_feed_seconds` (the rest
waits for more audio, an instruction or the flush at the end): a client's
10 ms chunks cost the lite engine five times the CPU of 100 ms pieces.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from concurrent.futures import Executor
from typing import Awaitable, Callable

import numpy as np

from .. import constants as c
from ..constants import SAMPLE_RATE
from ..engine import Engine, EngineStream
from ..errors import UserError
from ..events import Event, shifted
from ..lite.home_phrases import HomeVocabulary

_LOGGER = logging.getLogger(__name__)

_AUDIO, _INSTRUCT, _HOME, _FINISH = "audio", "instruct", "home", "finish"

EmitEvent = Callable[[Event], Awaitable[None]]
ReportSkip = Callable[[float, float], Awaitable[None]]  # (skipped now, skipped in total) seconds
ReportFailure = Callable[[str, str], Awaitable[None]]  # (error code, message)


class StreamSession:
    """The engine stream of one client's audio; create with `await StreamSession.open(...)`."""

    def __init__(
        self,
        stream: EngineStream,
        executor: Executor,
        *,
        emit: EmitEvent,
        on_skip: ReportSkip,
        on_failure: ReportFailure,
        max_backlog_seconds: float,
        min_feed_seconds: float = 0.0,
        live: bool = True,
        name: str = "the engine",
    ) -> None:
        self._stream = stream
        self.name = name  # what the failure message calls the stream's engine
        self._executor = executor
        self._emit = emit
        self._on_skip = on_skip
        self._on_failure = on_failure
        self._max_backlog = int(max_backlog_seconds * SAMPLE_RATE)
        self._min_feed = int(min_feed_seconds * SAMPLE_RATE)
        self._live = live
        self._drained = asyncio.Event()  # set whenever the backlog is under the cap
        self._drained.set()
        self._items: collections.deque[tuple[str, object]] = collections.deque()
        self._backlog = 0  # samples queued, not yet handed to the engine
        self._pending_skip = 0
        self._wakeup = asyncio.Event()
        self._failed = False
        self._closing = False
        self.samples_in = 0
        self.samples_skipped = 0
        self.events_out = 0
        self.peak_backlog = 0  # samples: the most audio that ever waited (<= the cap)
        self._worker = asyncio.create_task(self._work(), name="audio-interaction stream")

    @classmethod
    async def open(cls, engine: Engine, executor: Executor, home: HomeVocabulary | None = None,
                   **kwargs) -> "StreamSession":
        """`home`: the listener's home vocabulary (its device and area names), given to the stream."""

        def open_stream() -> EngineStream:
            stream = engine.open_stream()
            stream.use_home_vocabulary(home)
            return stream

        stream = await asyncio.get_running_loop().run_in_executor(executor, open_stream)
        return cls(stream, executor, **kwargs)

    def push_audio(self, samples: np.ndarray) -> None:
        if self._failed or samples.size == 0:
            return
        self.samples_in += samples.size
        if self._live and self._backlog + samples.size > self._max_backlog:
            kept = [item for item in self._items if item[0] != _AUDIO]
            self._pending_skip += self._backlog
            self.samples_skipped += self._backlog
            self._items = collections.deque(kept)
            self._backlog = 0
        self._items.append((_AUDIO, samples))
        self._backlog += samples.size
        self.peak_backlog = max(self.peak_backlog, self._backlog)
        if self._backlog >= self._max_backlog:
            self._drained.clear()
        if self._backlog >= self._min_feed:  # smaller pieces wait for more (or for a flush)
            self._wakeup.set()

    async def backlog_room(self) -> None:
        """Return once the backlog is under the cap (or the stream is closing or failed)."""
        while self._backlog >= self._max_backlog and not (self._closing or self._failed):
            self._wakeup.set()  # a piece below min_feed may still be waiting for the worker
            await self._drained.wait()

    @property
    def instructions_waiting(self) -> int:
        return sum(1 for kind, _ in self._items if kind == _INSTRUCT)

    def push_home(self, home: HomeVocabulary | None) -> None:
        """New names of the listener's home (a device added, an area renamed): the stream's requests
        from here on are biased to them (in order with the audio: the audio before keeps the old)."""
        self._items.append((_HOME, home))
        self._wakeup.set()

    def push_instruction(self, text: str) -> None:
        self._items.append((_INSTRUCT, text))
        self._wakeup.set()

    async def finish(self) -> None:
        """Flush the stream: every queued piece reaches the engine, then its `finish()` events are sent."""
        done = asyncio.get_running_loop().create_future()
        self._items.append((_FINISH, done))
        self._wakeup.set()
        await asyncio.shield(done)

    async def close(self) -> None:
        """Drop queued work and free the engine stream, after the engine call in progress returns.

        The worker is not cancelled: a cancelled `run_in_executor` leaves its
        thread running, and `close()` must never overlap a `feed()`.
        """
        self._closing = True
        self._wakeup.set()
        self._drained.set()
        try:
            await self._worker
        except Exception:  # noqa: BLE001 - a send that failed must not keep the stream open
            _LOGGER.exception("stream worker ended with an error")
        self._resolve_finish_requests()
        self._items.clear()
        self._backlog = 0
        try:
            await self._call(self._stream.close)
        except Exception:  # noqa: BLE001
            _LOGGER.exception("engine stream close failed")

    async def _work(self) -> None:
        try:
            await self._work_items()
        finally:  # however the worker ends, nobody may wait for a flush forever
            self._resolve_finish_requests()

    def _resolve_finish_requests(self) -> None:
        for kind, value in self._items:
            if kind == _FINISH and not value.done():  # type: ignore[union-attr]
                value.set_result(None)  # type: ignore[union-attr]

    async def _work_items(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._items and not self._closing:
                if self._pending_skip:
                    skipped, self._pending_skip = self._pending_skip, 0
                    await self._on_skip(skipped / SAMPLE_RATE, self.samples_skipped / SAMPLE_RATE)
                kind, value = self._items.popleft()
                # Every skip so far dropped audio older than what is fed now: the engine's times
                # (it counts what it heard) are that much behind the stream's.
                behind = self.samples_skipped / SAMPLE_RATE
                if kind == _AUDIO:
                    audio = self._take_audio(value)  # type: ignore[arg-type]
                    events = await self._engine_call(self._stream.feed, audio)
                elif kind == _INSTRUCT:
                    events = await self._engine_call(self._stream.instruct, value)
                elif kind == _HOME:
                    events = await self._engine_call(self._use_home, value)
                else:
                    events = await self._finish_engine_stream()
                for event in events:
                    self.events_out += 1
                    await self._emit(shifted(event, behind))
                if kind == _FINISH:
                    future: asyncio.Future = value  # type: ignore[assignment]
                    if not future.done():
                        future.set_result(None)

    def _take_audio(self, first: np.ndarray) -> np.ndarray:
        """The first piece and every audio piece right behind it: one engine call for all."""
        pieces = [first]
        while self._items and self._items[0][0] == _AUDIO:
            pieces.append(self._items.popleft()[1])  # type: ignore[arg-type]
        audio = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        self._backlog -= audio.size
        self._drained.set()
        return audio

    def _use_home(self, home: HomeVocabulary | None) -> list[Event]:
        self._stream.use_home_vocabulary(home)
        return []

    async def _finish_engine_stream(self) -> list[Event]:
        """The stream's `finish()`: its events on the engine's thread, then the wait for the rest (a
        transcript still decoding) on a thread of its own, so the streams sharing the engine's
        threads are fed meanwhile (a decode takes up to a second; a hung recognizer a minute)."""
        rest: Callable[[], list[Event]] | None = None

        def finish_now() -> list[Event]:
            nonlocal rest
            found, rest = self._stream.finish_later()
            return found

        events = await self._engine_call(finish_now)
        if rest is not None:
            events += await self._engine_call(rest, on_engine_thread=False)
        return events

    async def _engine_call(self, fn, *args, on_engine_thread: bool = True) -> list[Event]:
        if self._failed:
            return []
        try:
            if not on_engine_thread:  # (the loop's default executor)
                return list(await asyncio.get_running_loop().run_in_executor(None, fn, *args))
            return list(await self._call(fn, *args))
        except UserError as err:  # e.g. an instruction the engine cannot follow: tell, go on
            await self._on_failure(c.WYOMING_ERROR_BAD_EVENT, str(err))
            return []
        except Exception as err:  # an engine bug: stop this stream only, keep the server
            _LOGGER.exception("engine failed on a stream")
            self._failed = True
            # Drop the queued work, but keep the flush requests: someone awaits them.
            self._items = collections.deque(item for item in self._items if item[0] == _FINISH)
            self._backlog = 0
            self._drained.set()
            await self._on_failure(
                c.WYOMING_ERROR_ENGINE_FAILED,
                f"{self.name} failed on this stream ({type(err).__name__}: {err}); "
                "its audio is ignored until the next audio-start",
            )
            return []

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
