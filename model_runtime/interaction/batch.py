"""Batched rooms: the streams of one engine share each model step.

Every room (stream) runs its own loop in its own thread (the server gives each
stream a worker). When a room needs the LM or the audio encoder it does not call
the model itself: it hands its request to a `Combiner` and waits. Whichever
waiting thread finds no batch running takes *every* request waiting at that
moment (up to `max_batch`), runs them as one batched call, hands each its
result, and returns to its own work; requests that arrived meanwhile form the
next batch. No scheduler thread, no timer, no tick to wait for:

- N rooms in step (audio arrives every 0.4 s in each) share one batched LM step
  per tick: `CachedDecoder.forward_many`, ragged caches, per-room positions;
- a room that speaks joins each batch with its one-token decode step, so the
  listening rooms' chunk steps ride along instead of queueing behind its reply;
- a lone room runs exactly as it would alone (a batch of one);
- rooms whose chunks complete together share one step: the thread about to
  run a batch waits for a request from every open room as long as the next one
  comes within `gather_seconds` (2 ms in the engine) of the last, at most
  `GATHER_ROUNDS` windows in all; rooms out of phase cost each listening step
  one window (decode steps never wait).

A failed batch fails each of its requests (each thread re-raises it and its
stream turns it into an error event), never the combiner.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

import numpy as np
import torch

from .. import constants as c

# A gathering runner waits at most this many gather windows in all (rooms that keep
# trickling in one by one cannot hold a step back for longer).
GATHER_ROUNDS = 12

Request = TypeVar("Request")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """How the requests were grouped (read by tests and the benchmark)."""

    batches: int = 0
    requests: int = 0
    largest: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches had it

    def record(self, size: int) -> None:
        self.batches += 1
        self.requests += size
        self.largest = max(self.largest, size)
        self.sizes[size] = self.sizes.get(size, 0) + 1


class _Slot(Generic[Request, Result]):
    __slots__ = ("request", "result", "error", "done", "turn", "wake")

    def __init__(self, request: Request) -> None:
        self.request = request
        self.result: Result | None = None
        self.error: BaseException | None = None
        self.done = False
        self.turn = False  # this request's thread runs the next batch
        self.wake = threading.Event()  # set when `done` or `turn` became true


class Combiner(Generic[Request, Result]):
    """Runs `run_batch(requests) -> results` (one result per request, same order) for many threads.

    Hand-offs are one per request: a waiting thread is woken once, by its own
    event, when its result is there or when it is its turn to run the next batch
    (no condition broadcast that would wake every waiting room at each arrival
    and each finished batch).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Request]], list[Result]],
        max_batch: int = 16,
        *,
        expected: Callable[[], int] | None = None,
        gather_seconds: float = 0.0,
    ) -> None:
        """`expected()`: how many requests a full batch would have now (e.g. the open rooms);
        the thread about to run a batch waits for that many, as long as another request
        arrives within `gather_seconds` of the last (at most GATHER_ROUNDS such windows),
        so rooms whose chunks complete together share one step instead of the first one
        running alone, even when their threads reach the combiner one after another."""
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.expected = expected
        self.gather_seconds = gather_seconds
        self.stats = BatchStats()
        self._lock = threading.Lock()
        self._arrival = threading.Condition(self._lock)  # only a gathering runner waits on it
        self._waiting: list[_Slot] = []
        self._running = False
        self._gathering = False

    def submit(self, request: Request, *, gather: bool = True) -> Result:
        """Block until `request` ran in some batch; return its result or raise its error.

        `gather=False`: if this thread runs the batch, it does not wait for other rooms
        (a speaking room's decode steps: the other rooms are rarely in step with them)."""
        slot: _Slot = _Slot(request)
        with self._lock:
            self._waiting.append(slot)
            if self._gathering:
                self._arrival.notify()
            if not self._running:
                self._running = slot.turn = True
        while not slot.done:
            if not slot.turn:
                slot.wake.wait()
                slot.wake.clear()
                continue
            # This thread runs the next batch (maybe not with its own request first, when more
            # than max_batch wait: oldest first, none starves), then hands the turn on.
            with self._lock:
                if gather:
                    self._gather()
                batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                self._run(batch)
            finally:
                with self._lock:
                    slot.turn = False
                    if self._waiting:
                        following = self._waiting[0]
                        following.turn = True
                        following.wake.set()
                    else:
                        self._running = False
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _gather(self) -> None:
        """(Lock held.) Wait, briefly, until the expected number of requests is waiting."""
        if self.expected is None or self.gather_seconds <= 0:
            return
        self._gathering = True
        try:
            give_up = time.monotonic() + self.gather_seconds * GATHER_ROUNDS
            while len(self._waiting) < min(self.max_batch, self.expected()):
                seen = len(self._waiting)
                left = min(self.gather_seconds, give_up - time.monotonic())
                if left <= 0 or (not self._arrival.wait(left) and len(self._waiting) == seen):
                    return  # nobody came within the window (or the whole wait is used up)
        finally:
            self._gathering = False

    def _run(self, batch: list[_Slot]) -> None:
        try:
            results = self.run_batch([slot.request for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} requests returned {len(results)} results")
        except Exception as err:  # noqa: BLE001 - each request's thread re-raises it
            for slot in batch:
                slot.error = err
        else:
            for slot, result in zip(batch, results):
                slot.result = result
        self.stats.record(len(batch))
        for slot in batch:
            slot.done = True
            slot.wake.set()


def lm_step_batch(decoder, requests: list[tuple[object, torch.Tensor, list[int] | None]]) -> list[torch.Tensor]:
    """(cache, embeds, picks) requests -> each room's logits, in one `forward_many`: its last
    position's (vocab,), or with picks those positions' (len(picks), vocab)."""
    picks = [pick for _, _, pick in requests]
    logits = decoder.forward_many([cache for cache, _, _ in requests], [embeds for _, embeds, _ in requests], picks)
    out, row = [], 0
    for pick in picks:
        if pick is None:
            out.append(logits[row])
            row += 1
        else:
            out.append(logits[row : row + len(pick)])
            row += len(pick)
    return out


def encode_batch(encode: Callable[[np.ndarray], torch.Tensor], mels: list[np.ndarray]) -> list[torch.Tensor]:
    """(128, 40 * k_r) mel frames of several rooms -> each room's (k_r, 10, width), in one encoder call.

    Chunks are encoded independently (per-chunk `feature_lens`), so the rooms'
    frames can simply be put side by side: the encoder's attention never crosses
    a chunk boundary, hence never a room boundary either.
    """
    counts = [mel.shape[1] // c.MEL_FRAMES_PER_CHUNK for mel in mels]
    vectors = encode(np.concatenate(mels, axis=1) if len(mels) > 1 else mels[0])
    return list(torch.split(vectors, counts))
