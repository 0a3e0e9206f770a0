"""Bounded context for listening for days: which cache slots hold what, and what to drop.

The rule (the module `engine.py` follows it):

- The context is the prompt prefix, then *segments*: one per 0.4 s chunk (its
  12 listening tokens plus, when the model answered it, the whole reply
  TEXT_BEGIN ... TEXT_END, so a reply never outlives its question), and one per
  in-stream instruction (USER turn).
- Instructions are *pinned* (kept however old) up to `pinned_tokens` in total;
  beyond that the oldest become ordinary segments and age out like audio.
- Everything else is a sliding window counted in tokens: `window_tokens` =
  context_seconds / 0.4 s x 12 tokens, so it holds context_seconds of listening
  (replies in the window take their share of it).
- The cache is preallocated at prefix + pinned + window + roll tokens. When the
  next step does not fit, the oldest unpinned segments are dropped until a whole
  `roll_tokens` block is free again (never the segment being written), and the
  kept slots are moved down and re-rotated to contiguous positions
  (`KVCache.compact`). Rolling a block rather than every chunk amortises the
  move: one roll per `roll_seconds` of audio (default context_seconds / 10,
  between 2 s and 60 s). Positions therefore never exceed the cache capacity,
  however long the stream runs.

What a roll does not do is recompute the kept tokens' K/V without the dropped
ones (a re-prefill of ~9,000 tokens of a 3B model costs tens of CPU seconds):
deeper layers keep what the kept tokens once attended to. That is the
StreamingLLM trade-off: cheap, bounded, and the prefix (system prompt) stays an
exact, untouched attention anchor at positions 0..P-1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import constants as c

DEFAULT_PINNED_TOKENS = 256  # room for a few in-stream instructions


def tokens_for_seconds(seconds: float) -> int:
    """Listening tokens of `seconds` of audio (12 per 0.4 s chunk, whole chunks)."""
    return math.ceil(max(seconds, 0.0) / c.CHUNK_SECONDS - 1e-9) * c.TOKENS_PER_CHUNK


def default_roll_seconds(context_seconds: float) -> float:
    return min(60.0, max(2.0, context_seconds / 10))


@dataclass
class Segment:
    start: int  # first cache slot
    length: int
    pinned: bool = False


class ContextWindow:
    """Slot bookkeeping of one stream's KV cache (no tensors; `plan_room` says what to keep)."""

    def __init__(
        self,
        prefix_tokens: int,
        context_seconds: float,
        *,
        max_segment_tokens: int,
        roll_seconds: float | None = None,
        pinned_tokens: int = DEFAULT_PINNED_TOKENS,
    ) -> None:
        if roll_seconds is None:
            roll_seconds = default_roll_seconds(context_seconds)
        self.prefix_tokens = prefix_tokens
        # The window must hold at least the longest segment (a chunk and a capped reply).
        self.window_tokens = max(tokens_for_seconds(context_seconds), max_segment_tokens)
        self.roll_tokens = max(tokens_for_seconds(roll_seconds), c.TOKENS_PER_CHUNK + 1)
        self.pinned_tokens = pinned_tokens
        self.capacity = prefix_tokens + pinned_tokens + self.window_tokens + self.roll_tokens
        self.segments: list[Segment] = []
        self.length = prefix_tokens
        self.rolls = 0

    def reset(self) -> None:
        """Back to the prefix alone (after a fault poisoned the cache)."""
        self.segments.clear()
        self.length = self.prefix_tokens

    def open_segment(self, n: int, *, pinned: bool = False) -> None:
        self.segments.append(Segment(self.length, n, pinned))
        self.length += n

    def extend_segment(self, n: int) -> None:
        """More tokens of the segment being written (reply tokens after their chunk)."""
        if not self.segments:
            raise RuntimeError("no segment to extend")
        self.segments[-1].length += n
        self.length += n

    def pinned_in_use(self) -> int:
        return sum(s.length for s in self.segments if s.pinned)

    def plan_room(self, n: int, *, new_pinned: int = 0) -> torch.Tensor | None:
        """Make room for `n` more tokens (`new_pinned` of them an instruction to pin).

        Returns None when they fit as things are; otherwise updates the
        bookkeeping for a roll and returns the slots to keep after the prefix
        (ascending), for `KVCache.compact(keep, start=prefix_tokens)`.
        """
        # Unpin the oldest instructions beyond the budget: they then age out like audio.
        pinned = self.pinned_in_use() + new_pinned
        for segment in self.segments:
            if pinned <= self.pinned_tokens:
                break
            if segment.pinned:
                segment.pinned = False
                pinned -= segment.length
        if self.length + n <= self.capacity:
            return None
        target = self.capacity - self.roll_tokens
        kept: list[Segment] = []
        length = self.length
        for index, segment in enumerate(self.segments):
            last = index == len(self.segments) - 1
            if length + n > target and not segment.pinned and not last:
                length -= segment.length
            else:
                kept.append(segment)
        if length + n > self.capacity:
            raise RuntimeError(f"context cannot hold {n} more tokens even after dropping all it may")
        slots = [torch.arange(s.start, s.start + s.length) for s in kept]
        keep = torch.cat(slots) if slots else torch.empty(0, dtype=torch.long)
        start = self.prefix_tokens
        for segment in kept:
            segment.start = start
            start += segment.length
        self.segments = kept
        self.length = start
        self.rolls += 1
        return keep
