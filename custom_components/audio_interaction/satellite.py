"""Assist satellites as room ears: the wake-word stage of a pipeline run feeds a room's stream.

How the room is known: HA hands a wake-word entity only audio, never the
satellite it came from, so each room whose source is an Assist satellite has
its own wake-word entity, and that satellite's pipeline selects it. The room
then also knows its satellite (for announcements).

The room keeps its one stream to the server open; while a pipeline is in its
wake-word stage its audio goes into that stream, so the room's sounds become
its events exactly as with an ffmpeg source. A wake word (lite engine) ends the
stage at once. The big model's decision to respond ends it only when the reply
it starts is an answer: its first `response` piece says the reply's emotion,
and an urgent one is the model reacting on its own to a sound ("I hear a smoke
alarm..."), which is announced on the satellite while the stage, and the
listening, go on. Speech-to-text runs in the same asyncio task as the wake-word stage
(`PipelineInput.execute`), so the room that detected is passed on in a
ContextVar: our STT entity keeps feeding that room while it transcribes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from homeassistant.components.wake_word import DetectionResult

from .const import MODEL_DECISION_NAME, SAMPLE_RATE, SAMPLE_WIDTH

if TYPE_CHECKING:
    from .room import Room

# The room whose wake-word stage detected in this pipeline run (read by our STT entity).
DETECTED_ROOM: ContextVar[Room | None] = ContextVar("audio_interaction_detected_room", default=None)

# Audio kept from the wake-word stage for the hand-over to STT (queued_audio).
KEEP_SECONDS = 5.0
# A model decision ends the stage after the request was spoken: hand STT at least this much of it.
MODEL_REQUEST_SECONDS = 4.0
# The satellite's stream ended: how long the server may still take to judge the audio it has.
LAST_AUDIO_GRACE_SECONDS = 1.0


def phrase_of(name: str) -> str:
    """The wake word's phrase, as the server describes it: okay_nabu -> "okay nabu"."""
    return name.replace("_", " ")


class WakeStage:
    """One pipeline run's wake-word stage in one room."""

    def __init__(self, room: Room, wake_word_id: str | None) -> None:
        self.room = room
        self.wake_word_id = wake_word_id
        self.detection: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # (audio, timestamp_ms, room stream position in samples after this piece)
        self._pieces: deque[tuple[bytes, int, int]] = deque()
        self._kept = 0  # bytes in _pieces: bounded by count, not by position (a reconnect restarts positions)
        self._model_decision: dict[str, Any] | None = None  # waiting for its reply's first piece

    def offer(self, data: dict[str, Any]) -> None:
        """A `decision` from the room's stream: ours if it responds with the wake word asked for."""
        if self.detection.done() or not data.get("respond"):
            return
        name = data.get("name") or MODEL_DECISION_NAME
        if self.wake_word_id is not None and name != self.wake_word_id:
            return
        if name == MODEL_DECISION_NAME:
            self._model_decision = {**data, "name": name}  # an answer or a reaction? its reply says
        else:
            self.detection.set_result({**data, "name": name})

    def offer_reply(self, data: dict[str, Any]) -> bool:
        """A `response` event: the model's decision detects unless its reply is urgent. True if it detected."""
        decision, self._model_decision = self._model_decision, None
        if decision is None or self.detection.done() or data.get("urgent"):
            return False
        self.detection.set_result(decision)
        return True

    async def run(self, stream: AsyncIterable[tuple[bytes, int]]) -> DetectionResult | None:
        """Feed the room until a detection (or the stream ends: None)."""
        async for audio, timestamp in stream:
            position = self.room.hear(audio)
            self._keep(audio, timestamp, position)
            if self.detection.done():
                return self._result()
        # The satellite stopped (disconnected, pipeline cancelled): the server may still
        # be judging the last audio it got.
        try:
            async with asyncio.timeout(LAST_AUDIO_GRACE_SECONDS):
                await asyncio.shield(self.detection)
        except TimeoutError:
            return None
        return self._result()

    def forget_audio(self) -> None:
        """The room's stream started again (positions restart at 0): what was kept belongs to the old one."""
        self._pieces.clear()
        self._kept = 0

    def _keep(self, audio: bytes, timestamp: int, position: int) -> None:
        self._pieces.append((audio, timestamp, position))
        self._kept += len(audio)
        while self._kept > KEEP_SECONDS * SAMPLE_RATE * SAMPLE_WIDTH:
            self._kept -= len(self._pieces.popleft()[0])

    def _result(self) -> DetectionResult:
        data = self.detection.result()
        name = data["name"]
        heard_at = int(float(data.get("t") or 0.0) * SAMPLE_RATE)  # room stream position of the detection
        if name == MODEL_DECISION_NAME:  # the request itself is in the audio before the decision
            heard_at -= int(MODEL_REQUEST_SECONDS * SAMPLE_RATE)
        # Audio the satellite sent after what the server had judged goes on to STT.
        queued = [(audio, ts) for audio, ts, end in self._pieces if end - len(audio) // SAMPLE_WIDTH >= heard_at]
        at = next((ts for audio, ts, end in self._pieces if end >= heard_at), None)
        if at is None and self._pieces:
            at = self._pieces[-1][1]
        return DetectionResult(
            wake_word_id=name, wake_word_phrase=phrase_of(name), timestamp=at, queued_audio=queued or None
        )
