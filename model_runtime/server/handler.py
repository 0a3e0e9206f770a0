"""One client connection: standard Wyoming wake flow plus our own audio-interaction events.

Flows (README "Wyoming protocol" has examples):
- `describe` -> `info`; `ping` -> `pong`.
- Wake word (as HA's `wyoming` integration does it): `detect` {names}, `audio-start`,
  `audio-chunk`s, then `audio-stop` or just closing the socket. The server sends
  `detection` {name, timestamp} when the engine decides to respond with a name the
  client asked for (none asked = any), `not-detected` on `audio-stop` if none came.
- Ours: `audio-interaction-listen` {room, live, transcript_names, transcript_terms} once
  (the names: the home's devices and areas, as in `transcribe`, for the requests the
  lite engine transcribes after a wake word; sent again on a stream under way, it
  brings the home's new names to that stream's later requests); each engine event of type X then
  arrives as `audio-interaction-X` with the event's fields. Beside a model engine the
  server's safety net (the lite alarm, loudness, speech and music detectors) hears the
  same audio in a session of its own, so its events never wait behind the model's
  backlog and go on when the model fails on the stream. While the model still loads
  (`serve` listens at once when it has a net) a listener is told so (`error` code
  `model-loading`) and the net alone hears it; at its first chunk after the load the
  stream joins the model, whose events then carry the stream's time. `audio-interaction-instruct`
  {text} goes to the engine stream in order with the audio.
- Speech-to-text (asr.py): `transcribe`, `audio-start`, `audio-chunk`s, `audio-stop` ->
  `transcript` {text}; that audio goes to the recogniser, not to an engine stream.
A client that sends neither `detect` nor `listen` gets the wake flow with any name.
Everything a client gets wrong is answered with Wyoming's `error` {text, code}.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event as WyomingEvent
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.server import AsyncEventHandler
from wyoming.wake import Detect, Detection, NotDetected

from .. import constants as c
from ..errors import UserError
from ..events import Event, shifted
from ..lite.home_phrases import HomeVocabulary
from .asr import TranscribeRequest, home_vocabulary, is_transcribe
from .audio_in import AudioInput, audio_format
from .framing import FrameError, read_frame
from .session import StreamSession

if TYPE_CHECKING:
    from .app import WyomingServer

_LOGGER = logging.getLogger("model_runtime.server")

# A client that keeps sending bad frames is cut off after this many errors.
MAX_ERRORS_PER_CONNECTION = 100
# What errors call the safety net's session (its detectors are the lite engine's).
NET_SESSION_NAME = "the safety net (the lite engine's detectors)"
# Instructions queue in order with the audio; a client may not pile up more than this.
MAX_WAITING_INSTRUCTIONS = 16


class ProtocolError(UserError):
    """What a client got wrong; `code` goes out as the Wyoming error's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ClientHandler(AsyncEventHandler):
    def __init__(self, server: "WyomingServer", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.server = server
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "client")
        self.room: str | None = None
        self._home: HomeVocabulary | None = None  # the listener's device and area names, for its requests
        self.finished = asyncio.Event()  # set when the connection is fully cleaned up
        self._listening = False  # sent audio-interaction-listen: wants our events
        self._live = True  # live audio is skipped when the engine falls behind; a recording is slowed down
        self._wake_names: list[str] | None = None
        self._detect_requested = False
        self._detected = False
        self._session: StreamSession | None = None
        self._net_session: StreamSession | None = None  # the safety net's, beside the engine's
        self._streaming = False  # between audio-start and audio-stop (the engine may still be loading)
        self._stream_samples = 0  # samples of this stream so far: the stream time of an engine joining late
        self._transcribe: TranscribeRequest | None = None  # after `transcribe`, until its transcript
        self._audio = AudioInput()
        self._start_format: dict[str, int] = {}
        self._pending_instructions: list[str] = []
        self._errors = 0
        self._gone = False  # writing failed: the client left
        self._connected_at = time.monotonic()
        self._audio_seconds = 0.0  # heard over all streams of this connection, for the log

    # --- reading -------------------------------------------------------------
    async def run(self) -> None:
        """Like wyoming's loop, but a bad frame is answered with an error instead of a silent hang-up."""
        self._is_running = True
        _LOGGER.info("%s connected (%d open)", self.peer, len(self.server.handlers))
        try:
            while self._is_running and not self._gone:
                try:
                    event = await read_frame(self.reader)
                except FrameError as err:
                    await self.send_error(err.code, str(err))
                    if err.fatal or await self._too_many_errors():
                        break
                    continue
                if event is None:
                    break
                if not await self.handle_event(event):
                    break
        except (ConnectionError, OSError):
            pass  # the client vanished; cleanup below
        except Exception as err:  # a server bug: this connection ends, the server and the others go on
            _LOGGER.exception("%s: unexpected error", self.peer)
            await self.send_error(c.WYOMING_ERROR_INTERNAL, f"internal server error ({type(err).__name__}); "
                                  "closing this connection")
        finally:
            try:
                await self.disconnect()
            finally:
                self.writer.close()
                self.server.handlers.discard(self)
                self.finished.set()

    async def handle_event(self, event: WyomingEvent) -> bool:
        try:
            await self._dispatch(event)
        except UserError as err:
            await self.send_error(getattr(err, "code", c.WYOMING_ERROR_BAD_EVENT), str(err))
            return not await self._too_many_errors()
        return True

    async def _dispatch(self, event: WyomingEvent) -> None:
        etype, data = event.type, event.data or {}
        if self._transcribe is not None and TranscribeRequest.takes(etype):
            if (transcript := await self._transcribe.handle(event)) is not None:
                self._transcribe = None
                await self.write_event(transcript)
            return
        if is_transcribe(etype):
            self._transcribe = TranscribeRequest(self.server.transcriber, self.server.asr_executor, data)
        elif AudioChunk.is_type(etype):
            await self._on_chunk(data, event.payload or b"")
        elif Describe.is_type(etype):
            await self.write_event(self.server.info.event())
        elif Detect.is_type(etype):
            self._on_detect(data)
        elif etype == c.WYOMING_LISTEN:
            room = data.get("room")
            if room is not None and not isinstance(room, str):
                raise ProtocolError(c.WYOMING_ERROR_BAD_EVENT, f"{etype}: 'room' must be a string, got {room!r}")
            live = data.get("live", True)
            if not isinstance(live, bool):
                raise ProtocolError(c.WYOMING_ERROR_BAD_EVENT, f"{etype}: 'live' must be true or false, got {live!r}")
            self._listening, self.room, self._live = True, room, live
            if room:
                self.peer = f"{self.peer} ({room})"  # every later log line names the room
            _LOGGER.debug("%s listens for our events", self.peer)
            try:
                self._home = home_vocabulary(data, etype)
            except UserError as err:  # the names only bias transcripts: the room listens without them
                self._home = None
                raise ProtocolError(c.WYOMING_ERROR_BAD_EVENT, f"{err}; listening without the home's names") from None
            finally:  # a listen again on a stream under way: the home's names changed (HA resends them)
                for session in self._sessions():
                    session.push_home(self._home)
        elif AudioStart.is_type(etype):
            await self._on_start(data)
        elif AudioStop.is_type(etype):
            await self._on_stop()
        elif etype == c.WYOMING_INSTRUCT:
            self._on_instruct(data)
        elif Ping.is_type(etype):
            await self.write_event(Pong(text=data.get("text")).event())
        else:
            raise ProtocolError(
                c.WYOMING_ERROR_UNKNOWN_EVENT,
                f"unknown event type {etype!r}: this server handles describe, ping, detect, transcribe, audio-start, "
                f"audio-chunk, audio-stop, {c.WYOMING_LISTEN} and {c.WYOMING_INSTRUCT}",
            )

    # --- events --------------------------------------------------------------
    def _on_detect(self, data: dict[str, Any]) -> None:
        names = data.get("names")
        if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise ProtocolError(c.WYOMING_ERROR_BAD_EVENT, f"detect: 'names' must be a list of strings, got {names!r}")
        self._detect_requested = True
        self._wake_names = names or None
        unknown = [n for n in names or [] if n not in self.server.wake_models]
        if unknown:
            raise ProtocolError(
                c.WYOMING_ERROR_UNKNOWN_WAKE_WORD,
                f"detect: unknown wake word(s) {', '.join(unknown)}; this server detects "
                f"{', '.join(self.server.wake_models)}",
            )

    async def _on_start(self, data: dict[str, Any]) -> None:
        fmt = audio_format(data, "audio-start")  # checked before anything changes
        if self._streaming:  # a new stream on the same connection ends the old one
            await self._on_stop()
        if not self.server.reserve_stream():
            raise ProtocolError(
                c.WYOMING_ERROR_TOO_MANY_STREAMS,
                f"server busy: {self.server.max_streams} streams already open; try again later "
                "or start the server with a larger --max-streams",
            )
        self._streaming, self._stream_samples = True, 0
        try:
            if self.server.safety_net is not None and self._listening:  # (detections come from the engine alone)
                await self._open_net_session()
            await self._join_engine()
        except BaseException:
            await self._end_stream()
            raise
        self._audio = AudioInput()
        self._detected = False
        self._start_format = dict(zip(("rate", "width", "channels"), fmt))
        _LOGGER.debug("%s audio-start rate=%d width=%d channels=%d", self.peer, *fmt)
        if self._session is None and self._listening:  # (a notice, not the client's error: not counted)
            text = (
                f"the {self.server.engine_name} model is still loading; until it is ready only the safety net "
                "(smoke and CO alarms, beeping, loud noises, speech, music) hears this stream, which then "
                "joins the model"
            )
            _LOGGER.info("%s: %s", self.peer, text)
            await self.write_event(Error(text=text, code=c.WYOMING_ERROR_MODEL_LOADING).event())

    async def _open_net_session(self) -> None:
        """The safety net's session; if the net cannot open a stream the engine still hears this one."""
        try:
            self._net_session = await self._open_session(
                self.server.safety_net, self.server.net_executor, NET_SESSION_NAME
            )
        except Exception as err:  # noqa: BLE001 - e.g. its process failed to start again
            _LOGGER.exception("%s: the safety net could not open a stream", self.peer)
            await self.send_error(
                c.WYOMING_ERROR_ENGINE_FAILED,
                f"{NET_SESSION_NAME} could not open this stream ({type(err).__name__}: {err}); "
                "the engine still hears it; the next audio-start tries again",
            )

    async def _join_engine(self) -> None:
        """Open the engine's session for this stream once the engine is loaded (at audio-start, or at
        the first chunk after a background load finished); its events keep the stream's time."""
        if self._session is not None or self.server.engine is None:
            return
        offset = self._stream_samples / c.SAMPLE_RATE
        self._session = await self._open_session(self.server.engine, self.server.executor, "the engine", offset)
        for text in self._pending_instructions:
            self._session.push_instruction(text)
        self._pending_instructions.clear()
        if offset:
            _LOGGER.info("%s joined the %s engine %.1f s into its stream", self.peer, self.server.engine_name, offset)

    async def _open_session(self, engine, executor, name: str, offset: float = 0.0) -> StreamSession:
        emit = self._on_engine_event
        if offset:  # a session opened mid-stream counts from its own start: back to the stream's time
            async def emit(event: Event) -> None:
                await self._on_engine_event(shifted(event, offset))

        return await StreamSession.open(
            engine,
            executor,
            home=self._home,
            emit=emit,
            on_skip=functools.partial(self._on_skip, name),
            on_failure=self.send_error,
            max_backlog_seconds=self.server.max_backlog_seconds,
            min_feed_seconds=self.server.min_feed_seconds,
            live=self._live,
            name=name,
        )

    def _sessions(self) -> list[StreamSession]:
        return [session for session in (self._session, self._net_session) if session is not None]

    async def _on_chunk(self, data: dict[str, Any], payload: bytes) -> None:
        if not self._streaming:
            raise ProtocolError(
                c.WYOMING_ERROR_AUDIO_BEFORE_START,
                "audio-chunk before audio-start: send audio-start {rate, width, channels} first",
            )
        # A chunk carries its own format; one that leaves it out has audio-start's.
        rate, width, channels = audio_format({**self._start_format, **data}, "audio-chunk")
        samples = self._audio.convert(rate, width, channels, payload)
        if self._session is None and self.server.engine is not None:  # (per chunk: the check stays inline)
            await self._join_engine()
        for session in self._sessions():
            session.push_audio(samples)
        self._stream_samples += samples.size
        if not self._live:  # a recording: slow the sender down instead of skipping its audio
            for session in self._sessions():
                await session.backlog_room()

    async def _on_stop(self) -> None:
        if not self._streaming:
            raise ProtocolError(c.WYOMING_ERROR_AUDIO_BEFORE_START, "audio-stop without audio-start")
        try:
            await asyncio.gather(*(session.finish() for session in self._sessions()))
        finally:
            await self._end_stream()
        if self._wants_detections() and not self._detected:
            await self.write_event(NotDetected().event())

    def _on_instruct(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError(c.WYOMING_ERROR_BAD_EVENT, f"{c.WYOMING_INSTRUCT}: 'text' must be a non-empty string")
        waiting = self._session.instructions_waiting if self._session else len(self._pending_instructions)
        if waiting >= MAX_WAITING_INSTRUCTIONS:
            raise ProtocolError(
                c.WYOMING_ERROR_BAD_EVENT,
                f"{c.WYOMING_INSTRUCT}: {waiting} instructions already wait for the engine; send fewer",
            )
        if self._session is None:
            self._pending_instructions.append(text)  # applied when the stream joins the engine
        else:
            self._session.push_instruction(text)

    # --- engine output -------------------------------------------------------
    async def _on_engine_event(self, event: Event) -> None:
        _LOGGER.debug("%s event %s", self.peer, event.to_dict())
        if self._listening:
            fields = event.to_dict()
            fields.pop("type")
            await self.write_event(WyomingEvent(type=c.WYOMING_EVENT_PREFIX + event.type, data=fields))
        if self._wants_detections() and event.type == c.EVENT_DECISION and event.data.get("respond"):
            name = event.data.get("name") or c.MODEL_DECISION_NAME
            if self._wake_names is None or name in self._wake_names:
                self._detected = True
                await self.write_event(Detection(name=name, timestamp=int(round(event.t * 1000))).event())

    async def _on_skip(self, name: str, seconds: float, total: float) -> None:
        text = (
            f"{name} fell behind: skipped {seconds:.2f} s of queued audio (more than "
            f"{self.server.max_backlog_seconds:g} s were waiting) and jumped to live audio; "
            f"{total:.2f} s skipped on this stream so far"
        )
        _LOGGER.warning("%s: %s", self.peer, text)
        event = Error(text=text, code=c.WYOMING_ERROR_AUDIO_SKIPPED).event()
        event.data["skipped_seconds"] = round(seconds, 3)
        event.data["total_skipped_seconds"] = round(total, 3)
        await self.write_event(event)

    def _wants_detections(self) -> bool:
        return self._detect_requested or not self._listening

    # --- writing and cleanup -------------------------------------------------
    async def write_event(self, event: WyomingEvent) -> None:
        if self._gone:
            return
        if self.writer.transport.is_closing():
            # The client reset the connection. (Python 3.12-3.13.5 raise AttributeError from
            # writing to such a transport, cpython gh-136234, so it is not written to.)
            self._gone = True
            return
        try:
            await super().write_event(event)
        except (ConnectionError, OSError, RuntimeError):
            # The client went away; the read loop ends on its own, nothing else to tell.
            self._gone = True

    async def send_error(self, code: str, text: str) -> None:
        self._errors += 1
        _LOGGER.warning("%s error %s: %s", self.peer, code, text)
        await self.write_event(Error(text=text, code=code).event())

    async def _too_many_errors(self) -> bool:
        if self._errors < MAX_ERRORS_PER_CONNECTION:
            return False
        await self.send_error(c.WYOMING_ERROR_TOO_MANY_ERRORS, f"closing the connection after {self._errors} errors")
        return True

    async def _end_stream(self) -> None:
        """Close the stream's sessions (the engine's first), then free its place on the server."""
        if not self._streaming:
            return
        sessions = self._sessions()
        self._session = self._net_session = None
        self._streaming = False
        self._audio_seconds += self._stream_samples / c.SAMPLE_RATE
        try:
            for session in sessions:
                try:
                    await session.close()
                except Exception:  # noqa: BLE001 - the other session still closes, the place is still freed
                    _LOGGER.exception("%s: closing a stream session failed", self.peer)
        finally:
            self.server.release_stream()

    async def disconnect(self) -> None:
        await self._end_stream()
        _LOGGER.info(
            "%s disconnected after %.1f s (%.1f s of audio, %d errors; %d open)",
            self.peer,
            time.monotonic() - self._connected_at,
            self._audio_seconds,
            self._errors,
            len(self.server.handlers) - 1,
        )
