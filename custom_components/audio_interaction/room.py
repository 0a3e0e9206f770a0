"""One listening room: its audio source, its stream to the server, its state.

The room keeps a TCP stream open to the server (reconnecting with backoff),
hands it the source's PCM, and turns the server's events into HA things:
dispatcher updates for the entities, bus events, spoken replies, urgent
notifications. Entities only read the state kept here. What keeps the room
from hearing on the server's side becomes a repair issue (health.py).
"""

from __future__ import annotations

import asyncio
from collections import deque
import contextlib
from dataclasses import dataclass, field
import logging
import time
from typing import Any

from wyoming.audio import AudioChunk, AudioStop
from wyoming.event import Event
from wyoming.ping import Ping, Pong

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.dispatcher import async_dispatcher_send

from . import const
from .api import StreamClient, async_close, async_open_stream, audio_start, engine_event, listen_event, refusal
from .const import (
    BUS_EVENT_RESPONSE,
    BUS_EVENT_SOUND,
    CHANNELS,
    CHUNK_BYTES,
    CONF_CAMERA,
    CONF_COMMANDS,
    CONF_MEDIA_PLAYER,
    CONF_NOTIFY,
    CONF_SATELLITE,
    CONF_SILENT,
    CONF_SOURCE,
    CONF_TTS,
    EVENT_DECISION,
    EVENT_ERROR,
    EVENT_RESPONSE,
    EVENT_SOUND,
    EVENT_SPEECH,
    EVENT_TRANSCRIPT,
    SAMPLE_RATE,
    SAMPLE_WIDTH,
    SIGNAL_ROOM_UPDATED,
    WYOMING_INSTRUCT,
)
from .commands import async_carry_out
from .health import RoomHealth
from .replies import async_announce, async_notify_urgent, async_speak
from .satellite import WakeStage
from .source import AudioSource
from .vocabulary import exposed_names

_LOGGER = logging.getLogger(__name__)

# A stream that lasted this long was healthy: the next reconnect starts with the shortest wait.
STABLE_STREAM_SECONDS = 10.0
# The server is asked for a `pong` this often; a connection that brings no answer
# within PONG_TIMEOUT (a frozen server, a host gone without closing the socket) is
# dropped and reconnected: a room must never look connected while nobody listens.
PING_INTERVAL = 10.0
PONG_TIMEOUT = 10.0
# Audio waiting for the server: 5 s at most; older audio is dropped first.
QUEUE_CHUNKS = 50
# What a dispatcher update carries to the event entities besides "state changed".
UPDATE_SOUND = "sound"
UPDATE_RESPONSE = "response"


class ServerBusy(Exception):
    """The server turned the room's stream away: it serves as many streams as it may (its message says so)."""


@dataclass
class RoomStats:
    """Counters for diagnostics."""

    connects: int = 0
    stalls: int = 0  # connections dropped because the server stopped answering
    chunks_sent: int = 0
    chunks_dropped: int = 0
    sounds: int = 0
    responses: int = 0
    commands: int = 0  # spoken requests handed to Assist (option "Carry out spoken commands")
    refusals: int = 0  # streams the server turned away: it served as many as it may
    stream_restarts: int = 0  # streams started again after the engine failed on them
    skipped_seconds: float = 0.0  # of the room's audio, that the server skipped when it fell behind
    errors: deque[str] = field(default_factory=lambda: deque(maxlen=5))
    notices: deque[str] = field(default_factory=lambda: deque(maxlen=5))  # told by the server, nothing wrong


class Room:
    """A room that listens. Start it once its entities exist; tasks end with the entry."""

    def __init__(self, hass: HomeAssistant, entry: ConfigEntry, subentry: ConfigSubentry) -> None:
        self.hass = hass
        self.entry = entry
        self.subentry_id = subentry.subentry_id
        self.name = subentry.title
        self.config = dict(subentry.data)
        self.device_id: str | None = None
        self.connected = False
        self.muted = False
        self.speech = False
        # Alarms sounding in the room now: their `sound` start heard, their end not yet. Only
        # what the current stream heard: a new stream (a reconnect) or a mute starts empty.
        self.alarms: set[str] = set()
        self.last_response: dict[str, Any] | None = None
        self.last_transcript: dict[str, Any] | None = None
        self.stats = RoomStats()
        self.source = AudioSource(
            hass,
            self.name,
            f"source_failing_{self.subentry_id}",
            self.config.get(CONF_SOURCE),
            self.config.get(CONF_CAMERA),
            self._on_audio,
            self._update,
        )
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_CHUNKS)
        self._client: StreamClient | None = None
        self._pong = asyncio.Event()
        self._source_task: asyncio.Task[None] | None = None
        self._open_sounds: set[tuple[str, Any]] = set()
        self._started = False
        self._was_connected = True  # log the first failure, and each loss after a success
        self.health = RoomHealth(hass, entry, subentry.subentry_id, subentry.title)
        self._names: tuple[list[str], list[str]] | None = None  # the home's names the stream was given
        # Assist satellite rooms (satellite.py): audio comes from pipelines' wake-word stages.
        self.satellite: str | None = self.config.get(CONF_SATELLITE)
        self.wake_stages: set[WakeStage] = set()
        self.stream_samples = 0  # satellite audio taken into the current server stream
        self._pending = bytearray()  # satellite audio not yet a whole chunk
        # The model's decision started a pipeline run: until the satellite's next wake-word stage, the
        # model's replies are not announced (that would cancel the run; HA's agent answers).
        self._pipeline_answers = False

    @property
    def hearing(self) -> bool:
        """Whether the room's audio reaches the server: connected, not muted, and its source delivering
        sound (not restarting, not only digital silence). An Assist satellite's audio comes with its
        pipeline's stages: it counts as heard while the room is connected and not muted."""
        if not self.connected or self.muted:
            return False
        return bool(self.satellite) or (self.source.running and not self.source.silent)

    @property
    def signal(self) -> str:
        return SIGNAL_ROOM_UPDATED.format(self.subentry_id)

    # --- lifecycle ------------------------------------------------------------
    @callback
    def async_start(self) -> None:
        """Start streaming (the connection always; the source unless muted)."""
        self.entry.async_create_background_task(
            self.hass, self._connection_loop(), f"{const.DOMAIN} {self.name} connection"
        )
        self.entry.async_on_unload(self.health.clear)
        self._started = True
        if not self.muted:
            self._start_source()

    def _start_source(self) -> None:
        if self.satellite:
            return  # no ffmpeg: the satellite's pipeline brings the audio
        self._source_task = self.entry.async_create_background_task(
            self.hass, self.source.run(), f"{const.DOMAIN} {self.name} audio source"
        )

    async def async_set_muted(self, muted: bool) -> None:
        """Muted: ffmpeg is stopped, so no audio is read from the source at all.

        The server's stream ends at the mute (`audio-stop`: what it still judged comes back)
        and a new one starts at the unmute (`audio-start`), so the engine never joins the audio
        on either side of the gap: a beep before the mute and beeps after it are not one alarm,
        and an alarm that sounded before it is heard afresh (or not at all) after it.
        """
        if muted == self.muted:
            return
        self.muted = muted
        if muted:
            if self._source_task is not None:
                self._source_task.cancel()
                await asyncio.wait([self._source_task])
                self._source_task = None
            self._clear_queue()
            self.alarms.clear()
            await self._write_to_server(AudioStop().event())
        else:
            self._restart_positions()
            await self._write_to_server(audio_start())
            if self._started:
                self._start_source()
        self._update()

    @callback
    def async_update_names(self, names: tuple[list[str], list[str]]) -> None:
        """The names exposed to Assist now: if they changed, the server's stream gets them."""
        if self._client is None or names == self._names:
            return  # (not connected: the next connection sends the names as they are then)
        self._names = names
        self.entry.async_create_task(self.hass, self._write_to_server(listen_event(self.name, True, names)))

    def _restart_positions(self) -> None:
        """A new stream on the server: satellite audio is counted from 0 again, and the wake-word
        stages drop what they kept of the old stream (a detection's position is the new one's)."""
        self._pending.clear()
        self.stream_samples = 0
        for stage in self.wake_stages:
            stage.forget_audio()

    async def _write_to_server(self, event: Event) -> None:
        """Send a stream event if connected; a dropped connection is the connection loop's to mend
        (its new stream starts with `audio-start`)."""
        if self._client is not None:
            with contextlib.suppress(OSError):
                await self._client.write_event(event)

    # --- audio to the server --------------------------------------------------
    @callback
    def _on_audio(self, chunk: bytes) -> None:
        if not self.connected:
            return  # nothing to send it to; audio is never stored
        if self._queue.full():
            self._queue.get_nowait()
            self.stats.chunks_dropped += 1
        self._queue.put_nowait(chunk)

    @callback
    def set_transcript(self, data: dict[str, Any]) -> None:
        """A request heard in the room (the engine's `transcript`, or our STT entity's result)."""
        self.last_transcript = data
        self._update()

    @callback
    def add_wake_stage(self, stage: WakeStage) -> None:
        """A pipeline run of the satellite is (again) in its wake-word stage."""
        self._pipeline_answers = False  # the run a model decision started is over
        self.wake_stages.add(stage)

    @callback
    def hear(self, audio: bytes) -> int:
        """Satellite audio (any piece size) into the stream; returns the stream position after it."""
        if self.muted or not self.connected:
            return self.stream_samples
        self._pending += audio
        self.stream_samples += len(audio) // SAMPLE_WIDTH
        while len(self._pending) >= CHUNK_BYTES:
            self._on_audio(bytes(self._pending[:CHUNK_BYTES]))
            del self._pending[:CHUNK_BYTES]
        return self.stream_samples

    def _clear_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _connection_loop(self) -> None:
        host, port = self.entry.data["host"], self.entry.data["port"]
        delay = const.BACKOFF_MIN
        while True:
            try:
                # The home's names (as they are now; `async_update_names` sends changes) bias the
                # server's transcripts of requests.
                self._names = exposed_names(self.hass)
                client = await async_open_stream(host, port, self.name, names=self._names, start=False)
            except OSError as err:
                if self._was_connected:
                    _LOGGER.warning("Room %s cannot reach the server at %s:%s: %s", self.name, host, port, err)
                    self._was_connected = False
                self.health.unreachable(host, port, str(err) or type(err).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, const.BACKOFF_MAX)
                continue
            self.health.reached()
            if not self._was_connected:
                _LOGGER.info("Room %s is streaming to the server at %s:%s again", self.name, host, port)
            self._was_connected = True
            started = time.monotonic()
            try:
                stalled = await self._stream(client)
            except ServerBusy as busy:
                self.stats.refusals += 1
                self.health.turned_away(host, port, str(busy))
                await asyncio.sleep(const.SERVER_BUSY_RETRY)
                continue
            except Exception:
                # A fault of ours must not end the room's listening: log it and reconnect.
                _LOGGER.exception("Room %s: unexpected error while streaming; reconnecting", self.name)
                stalled = False
            if stalled:
                self.stats.stalls += 1
                _LOGGER.warning(
                    "Room %s: the server at %s:%s stopped answering (no pong within %s s); reconnecting",
                    self.name, host, port, PONG_TIMEOUT,
                )
            else:
                _LOGGER.warning("Room %s lost its connection to the server at %s:%s", self.name, host, port)
            # A server that keeps dropping us (or freezing) is not hammered: back off as if unreachable.
            if time.monotonic() - started >= STABLE_STREAM_SECONDS and not stalled:
                delay = const.BACKOFF_MIN
            await asyncio.sleep(delay)
            delay = min(delay * 2, const.BACKOFF_MAX)

    async def _stream(self, client: StreamClient) -> bool:
        """Send audio and receive events until the connection ends; True if it ended by the watchdog.

        ServerBusy if the server turned the stream away."""
        self._clear_queue()  # only audio captured from now on goes to the new stream
        self._restart_positions()
        self._open_sounds.clear()
        self._client = client
        self.connected = True
        self.stats.connects += 1
        self._update()
        sender = asyncio.create_task(self._send_audio(client))
        reader = asyncio.create_task(self._read_events(client))
        watchdog = asyncio.create_task(self._watch_server(client))
        # A server that turns a stream away says so at once: one still open after a while was taken.
        taken = asyncio.get_running_loop().call_later(STABLE_STREAM_SECONDS, self.health.stream_taken)
        try:
            done, _ = await asyncio.wait((sender, reader, watchdog), return_when=asyncio.FIRST_COMPLETED)
            for task in (sender, reader):
                if task in done:
                    task.result()  # a fault in our own sending or handling is raised, not left in the task
            return watchdog in done and watchdog.result()
        finally:
            taken.cancel()
            for task in (sender, reader, watchdog):
                task.cancel()
            await asyncio.wait([sender, reader, watchdog])
            self._client = None
            self.connected = False
            self.speech = False
            self.alarms.clear()
            self._update()
            await async_close(client)

    async def _read_events(self, client: StreamClient) -> None:
        engine_failures = 0  # on this connection
        with contextlib.suppress(OSError):
            while (event := await client.read_event()) is not None:
                if Pong.is_type(event.type):
                    self._pong.set()
                elif parsed := engine_event(event):
                    kind, data = parsed
                    if (refused := refusal(kind, data)) is not None:
                        raise ServerBusy(refused)
                    self._handle(kind, data)
                    if kind == EVENT_ERROR and data.get("code") == const.WYOMING_ERROR_ENGINE_FAILED:
                        # The engine failed on our stream, which hears nothing more until the next
                        # `audio-start`: start a new one (after a pause that grows if it keeps failing).
                        self.stats.stream_restarts += 1
                        await asyncio.sleep(min(const.BACKOFF_MIN * 2**engine_failures, const.BACKOFF_MAX))
                        engine_failures += 1
                        if not self.muted:
                            await client.write_event(audio_start())

    async def _watch_server(self, client: StreamClient) -> bool:
        """Ends (True) when a ping is not answered in time; False if the connection broke meanwhile."""
        while True:
            await asyncio.sleep(PING_INTERVAL)
            self._pong.clear()
            try:
                async with asyncio.timeout(PONG_TIMEOUT):
                    await client.write_event(Ping().event())  # blocks too while the server reads nothing
                    await self._pong.wait()
            except TimeoutError:
                return True
            except OSError:
                return False

    async def _send_audio(self, client: StreamClient) -> None:
        try:
            if not self.muted:  # (a muted room holds no stream on the server: unmuting starts one)
                await client.write_event(audio_start())
            while True:
                chunk = await self._queue.get()
                await client.write_event(
                    AudioChunk(rate=SAMPLE_RATE, width=SAMPLE_WIDTH, channels=CHANNELS, audio=chunk).event()
                )
                self.stats.chunks_sent += 1
        except OSError:
            pass  # the reader sees the connection end too

    async def async_instruct(self, text: str) -> None:
        """Send an in-stream instruction ("translate into English", "transcribe")."""
        not_connected = HomeAssistantError(
            translation_domain=const.DOMAIN, translation_key="not_connected", translation_placeholders={"room": self.name}
        )
        if self._client is None:
            raise not_connected
        try:
            await self._client.write_event(Event(type=WYOMING_INSTRUCT, data={"text": text}))
        except OSError as err:  # the connection dropped just now; the room reconnects on its own
            raise not_connected from err

    # --- events from the server -----------------------------------------------
    @callback
    def _handle(self, kind: str, data: dict[str, Any]) -> None:
        if kind == EVENT_SOUND:
            self._handle_sound(data)
        elif kind == EVENT_RESPONSE:
            for stage in list(self.wake_stages):
                if stage.offer_reply(data):
                    self._pipeline_answers = True  # the request goes to STT and HA's agent
            if data.get("final"):
                self._handle_response(data)
        elif kind == EVENT_DECISION and data.get("respond"):
            for stage in list(self.wake_stages):
                stage.offer(data)
        elif kind == EVENT_SPEECH:
            self.speech = data.get("state") == "start"
            self._update()
        elif kind == EVENT_TRANSCRIPT:
            self.set_transcript(data)
            if self.config.get(CONF_COMMANDS) and not self.satellite and (text := str(data.get("text") or "")):
                self.entry.async_create_task(self.hass, self._async_command(text))
        elif kind == EVENT_ERROR:
            message = str(data.get("message"))
            if data.get("code") == const.WYOMING_ERROR_MODEL_LOADING:  # every start of a model server: expected
                self.stats.notices.append(message)
                _LOGGER.info("Room %s: %s", self.name, message)
                return
            self.stats.errors.append(message)
            if data.get("code") == const.WYOMING_ERROR_AUDIO_SKIPPED:
                seconds = float(data.get("skipped_seconds") or 0.0)
                self.stats.skipped_seconds = round(self.stats.skipped_seconds + seconds, 3)
                self.health.fell_behind(message, seconds)
                return
            _LOGGER.warning("Room %s: the server reports: %s", self.name, message)

    def _handle_sound(self, data: dict[str, Any]) -> None:
        """A sound fires once: on its start event, or on its end if its start was never seen."""
        label = data.get("label")
        if label not in const.SOUND_LABELS:
            _LOGGER.debug("Room %s: ignoring unknown sound label %r", self.name, label)
            return
        key = (label, data.get("start"))
        if label in const.ALARM_LABELS:
            if data.get("end") is None:
                self.alarms.add(label)
            else:
                self.alarms.discard(label)
            self._update()
        if data.get("end") is None:
            self._open_sounds.add(key)
        elif key in self._open_sounds:
            self._open_sounds.discard(key)
            return
        self.stats.sounds += 1
        attributes = {name: data.get(name) for name in ("score", "start", "end", "t")}
        self.hass.bus.async_fire(BUS_EVENT_SOUND, self._bus_data(label=label, **attributes))
        async_dispatcher_send(self.hass, self.signal, UPDATE_SOUND, {"label": label, **attributes})

    def _handle_response(self, data: dict[str, Any]) -> None:
        text = str(data.get("text") or "")
        urgent = bool(data.get("urgent"))
        response = {"text": text, "emotion": data.get("emotion"), "urgent": urgent, "t": data.get("t")}
        self.last_response = response
        self.stats.responses += 1
        self.hass.bus.async_fire(BUS_EVENT_RESPONSE, self._bus_data(**response))
        async_dispatcher_send(self.hass, self.signal, UPDATE_RESPONSE, response)
        if not text:
            return
        if self.satellite and not self.config.get(CONF_SILENT) and not self._pipeline_answers:
            self.entry.async_create_task(self.hass, async_announce(self.hass, self.name, self.satellite, text))
        elif (player := self.config.get(CONF_MEDIA_PLAYER)) and not self.config.get(CONF_SILENT):
            self.entry.async_create_task(
                self.hass, async_speak(self.hass, self.name, self.config.get(CONF_TTS), player, text)
            )
        if urgent and (target := self.config.get(CONF_NOTIFY)):
            self.entry.async_create_task(self.hass, async_notify_urgent(self.hass, self.name, target, text))

    async def _async_command(self, text: str) -> None:
        """A request after the wake word: Assist carries it out; its answer is spoken in the room."""
        self.stats.commands += 1
        answer = await async_carry_out(self.hass, self.name, text, self.device_id)
        if self.last_transcript is not None and self.last_transcript.get("text") == text:
            self.set_transcript({**self.last_transcript, "answer": answer})
        if answer and (player := self.config.get(CONF_MEDIA_PLAYER)) and not self.config.get(CONF_SILENT):
            await async_speak(self.hass, self.name, self.config.get(CONF_TTS), player, answer)

    def _bus_data(self, **data: Any) -> dict[str, Any]:
        return {"device_id": self.device_id, "room": self.name, **data}

    def _update(self) -> None:
        async_dispatcher_send(self.hass, self.signal, None, None)
