"""Graceful overload: when the hardware cannot keep up with the rooms, decide every other chunk, and say so.

The rule (`--overload-seconds S`, default 4.0; 0 turns it off):

- Before this rule, a room that falls behind already catches up by stepping its
  queued chunks together (up to `engine.MAX_CHUNKS_PER_STEP` per LM step, every
  chunk still decided): the rule is for hardware too slow even for that.
- A stream is *behind* when more than S seconds of its audio (whole 0.4 s chunks)
  wait for a decision: the chunks the front end completed in this call plus
  those already queued for the encoder/LM. With many rooms on one model this is
  what an overloaded machine looks like from each room (the server hands a room
  all the audio that queued while its previous call ran).
- It only applies to *live* audio: audio that has not run ahead of the wall
  clock since the stream's first sample (by more than `LIVE_SLACK_SECONDS`). A
  file or a test fed faster than real time is never thinned; every chunk of it
  is decided.
- While behind, of the newly completed chunks only every other one goes to the
  encoder and the LM (the newest always does): the room keeps listening to the
  whole time span at half the chunk rate and its decisions keep their true
  times, instead of falling further behind or dropping a whole block. It costs
  each overloaded room half its work, so the shared model catches up and all
  rooms return to every chunk on their own.
- Every thinning is announced: one `error` event with code `overloaded` naming
  the skipped chunks' times and how far behind the room was. Chunks skipped
  this way get no `decision` event. (The server's backlog cap,
  `--max-backlog-seconds`, still drops audio beyond it, announced as
  `audio-skipped`.)
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from typing import Callable

import numpy as np

from .. import constants as c
from .. import events
from ..events import Event
from .chunk_encoder import EncodedChunk

LIVE_SLACK_SECONDS = 2.0  # a client may send a little audio ahead (a buffered start) and still be live
OVERLOADED = "overloaded"  # error event code


class OverloadGuard:
    """Per stream: picks the chunks to decide (all, or every other one when behind on live audio)."""

    def __init__(self, overload_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold_chunks = round(overload_seconds / c.CHUNK_SECONDS) if overload_seconds > 0 else None
        self.clock = clock
        self._started: float | None = None  # wall time of the first audio
        self._chunks_seen = 0  # chunks the front end completed so far
        self._indices: deque[int] = deque()  # true index of each chunk handed on, in order
        self.skipped_chunks = 0
        self.thinnings = 0

    def select(self, mel: np.ndarray, waiting: int, received_seconds: float) -> tuple[np.ndarray, Event | None]:
        """`mel` (128, 40 * k) of k new chunks -> the frames to encode, and the notice when some were skipped.

        `waiting`: chunks already handed on and not yet decided; `received_seconds`:
        the stream's audio so far (its time, not the wall clock's).
        """
        now = self.clock()
        if self._started is None:
            self._started = now
        n = mel.shape[1] // c.MEL_FRAMES_PER_CHUNK
        first = self._chunks_seen
        self._chunks_seen += n
        live = received_seconds <= now - self._started + LIVE_SLACK_SECONDS
        behind = n + waiting
        if self.threshold_chunks is None or not live or behind <= self.threshold_chunks or n < 2:
            self._indices.extend(range(first, first + n))
            return mel, None
        kept = list(range(n - 1, -1, -2))[::-1]  # every other chunk, ending with the newest
        skipped = sorted(set(range(n)) - set(kept))
        self._indices.extend(first + i for i in kept)
        self.skipped_chunks += len(skipped)
        self.thinnings += 1
        frames = np.concatenate(
            [mel[:, i * c.MEL_FRAMES_PER_CHUNK : (i + 1) * c.MEL_FRAMES_PER_CHUNK] for i in kept], axis=1
        )
        times = ", ".join(f"{(first + i + 1) * c.CHUNK_SECONDS:.1f}" for i in skipped)
        notice = events.error(
            (first + skipped[-1] + 1) * c.CHUNK_SECONDS,
            f"overloaded: this room was {behind * c.CHUNK_SECONDS:.1f} s behind live audio (the hardware cannot keep "
            f"up with the rooms it serves); deciding every other 0.4 s chunk until it catches up: no decision for "
            f"the chunks ending at {times} s",
            OVERLOADED,
        )
        return frames, notice

    def true_index(self, chunk: EncodedChunk) -> EncodedChunk:
        """The chunk with its index in the stream (the encoder numbers only the chunks it was given)."""
        return dataclasses.replace(chunk, index=self._indices.popleft())
