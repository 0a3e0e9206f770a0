"""The bounded-context rule: what a roll keeps, drops and pins (bookkeeping only, no model)."""

from __future__ import annotations

import pytest

from model_runtime import constants as c
from model_runtime.interaction.context import ContextWindow, tokens_for_seconds

CHUNK = c.TOKENS_PER_CHUNK


def window(**kw) -> ContextWindow:
    args = dict(prefix_tokens=10, context_seconds=4.0, max_segment_tokens=CHUNK + 20, roll_seconds=2.0, pinned_tokens=16)
    args.update(kw)
    return ContextWindow(args.pop("prefix_tokens"), args.pop("context_seconds"), **args)


def test_sizes_follow_the_seconds():
    w = window()
    assert tokens_for_seconds(4.0) == 10 * CHUNK
    assert w.window_tokens == 10 * CHUNK and w.roll_tokens == 5 * CHUNK
    assert w.capacity == 10 + 16 + 15 * CHUNK
    # a window shorter than one capped reply is widened to hold it
    assert window(context_seconds=0.4).window_tokens == CHUNK + 20


def test_roll_drops_oldest_chunks_in_a_block_and_renumbers_slots():
    w = window()
    rolls = []
    for _ in range(200):
        keep = w.plan_room(CHUNK)
        if keep is not None:
            rolls.append(keep)
        w.open_segment(CHUNK)
        assert w.length <= w.capacity
    # one roll per 2 s block (5 chunks), never one per chunk
    assert 30 <= len(rolls) <= 40
    first = rolls[0]
    # kept slots are whole chunks, the newest ones, in order, after the prefix
    assert first.tolist() == sorted(first.tolist()) and int(first[0]) >= 10
    assert len(first) % CHUNK == 0
    assert w.segments[0].start == 10
    assert all(a.start + a.length == b.start for a, b in zip(w.segments, w.segments[1:]))
    assert w.segments[-1].start + w.segments[-1].length == w.length


def test_reply_stays_with_its_chunk_and_the_open_segment_is_never_dropped():
    w = window(context_seconds=0.4, max_segment_tokens=CHUNK + 200)
    w.open_segment(CHUNK)
    for _ in range(150):  # a long reply growing its chunk's segment
        if w.plan_room(1) is not None:
            pytest.fail("the only segment is being written: nothing may be dropped")
        w.extend_segment(1)
    assert w.segments[0].length == CHUNK + 150


def test_instructions_are_pinned_within_their_budget():
    w = window()
    w.open_segment(CHUNK)
    w.plan_room(6, new_pinned=6)
    w.open_segment(6, pinned=True)
    for _ in range(100):
        w.plan_room(CHUNK)
        w.open_segment(CHUNK)
    assert w.segments[0].pinned and w.segments[0].length == 6 and w.segments[0].start == 10
    # a new instruction beyond the budget unpins the oldest, which then ages out
    w.plan_room(12, new_pinned=12)
    w.open_segment(12, pinned=True)
    assert not w.segments[0].pinned
    for _ in range(100):
        w.plan_room(CHUNK)
        w.open_segment(CHUNK)
    assert [s.length for s in w.segments if s.pinned] == [12]
    assert all(s.length != 6 for s in w.segments)
