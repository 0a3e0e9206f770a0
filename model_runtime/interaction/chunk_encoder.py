"""Audio chunks -> encoder vectors, in lock-step or ahead of the LM (upstream's FIFO mode).

The log-mel front end (`StreamingLogMel`, a few hundred microseconds of numpy
per chunk) runs in the caller's thread, so the caller always knows how many
chunks it completed. The audio encoder, the expensive part, runs either

- in lock-step (`ChunkEncoder`): each batch of mel chunks is encoded when it is
  submitted, before the LM sees it; or
- ahead of the LM (`FifoChunkEncoder`): a background thread encodes submitted
  chunks into a FIFO while the caller's thread runs the LM (listening steps and,
  above all, the token-by-token decoding of a reply). When the LM comes back
  for the next chunk its vectors are usually already waiting.

Both hand chunks out strictly in order through `get()`; a chunk the encoder
failed on comes out with `error` set instead of vectors, so one bad chunk
becomes one `error` event and the stream goes on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .. import constants as c

log = logging.getLogger(__name__)

# mel (128, 40 * k) -> vectors (k, 10, width)
EncodeFn = Callable[[np.ndarray], torch.Tensor]


@dataclass
class EncodedChunk:
    index: int  # 0-based chunk number in the stream; it ends at (index + 1) * 0.4 s
    vectors: torch.Tensor | None  # (10, width) on the LM's device
    error: str | None = None


@dataclass
class EncoderTimes:
    """Seconds spent inside the encoder, and how many chunks it encoded (read by the benchmark)."""

    seconds: float = 0.0
    chunks: int = 0


def _encode_batch(encode: EncodeFn, mel: np.ndarray, first_index: int, times: EncoderTimes) -> list[EncodedChunk]:
    n = mel.shape[1] // c.MEL_FRAMES_PER_CHUNK
    started = time.perf_counter()
    try:
        with torch.inference_mode():
            vectors = encode(mel)
        if tuple(vectors.shape[:2]) != (n, c.AUDIO_VECTORS_PER_CHUNK):
            raise ValueError(f"encoder returned shape {tuple(vectors.shape)} for {n} chunks")
        finite = torch.isfinite(vectors).flatten(1).all(dim=1).tolist()
    except Exception as err:  # the model code can fail in many ways; the stream must go on
        log.debug("encoder failed on chunks %d..%d", first_index, first_index + n - 1, exc_info=True)
        return [EncodedChunk(first_index + i, None, f"audio encoder failed: {err}") for i in range(n)]
    finally:
        times.seconds += time.perf_counter() - started
        times.chunks += n
    return [
        EncodedChunk(first_index + i, vectors[i], None if ok else "audio encoder produced non-finite values")
        for i, ok in enumerate(finite)
    ]


class ChunkEncoder:
    """Lock-step: `submit` encodes at once; `get` hands the results out in order."""

    def __init__(self, encode: EncodeFn) -> None:
        self.encode = encode
        self.times = EncoderTimes()
        self._next_index = 0
        self._ready: deque[EncodedChunk] = deque()

    def submit(self, mel: np.ndarray) -> int:
        """Queue (128, 40 * k) mel frames of k whole chunks; returns k."""
        n = mel.shape[1] // c.MEL_FRAMES_PER_CHUNK
        if n:
            self._enqueue(mel, self._next_index)
            self._next_index += n
        return n

    def _enqueue(self, mel: np.ndarray, first_index: int) -> None:
        self._ready.extend(_encode_batch(self.encode, mel, first_index, self.times))

    def get(self) -> EncodedChunk:
        """The next chunk in order (one must have been submitted)."""
        return self._ready.popleft()

    def close(self) -> None:
        self._ready.clear()


class FifoChunkEncoder(ChunkEncoder):
    """Encoder in a background thread, results in a FIFO (upstream's asynchronous mode).

    On a CUDA device the thread encodes on its own CUDA stream, so its kernels
    can run beside the LM's instead of queueing behind them on the default stream.
    The thread holds no reference to this object: a stream dropped without
    `close()` still stops its thread when it is garbage-collected.
    """

    def __init__(self, encode: EncodeFn, device: torch.device | str = "cpu") -> None:
        super().__init__(encode)
        self.device = torch.device(device)
        self._inbox: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue()
        self._outbox: queue.Queue[EncodedChunk] = queue.Queue()
        self._thread = threading.Thread(
            target=_encoder_thread,
            args=(encode, self._inbox, self._outbox, self.times, self.device),
            name="audio-encoder",
            daemon=True,
        )
        self._thread.start()
        self._stop = weakref.finalize(self, self._inbox.put, None)

    def _enqueue(self, mel: np.ndarray, first_index: int) -> None:
        self._inbox.put((mel, first_index))

    def get(self) -> EncodedChunk:
        chunk = self._outbox.get()
        if chunk.vectors is not None and chunk.vectors.is_cuda:
            # allocated on the side stream, used on the LM's: keep the memory until that use is done
            chunk.vectors.record_stream(torch.cuda.current_stream(chunk.vectors.device))
        return chunk

    def close(self) -> None:
        self._stop()  # sends the stop sentinel once
        self._thread.join()


def _encoder_thread(encode: EncodeFn, inbox: queue.Queue, outbox: queue.Queue, times: EncoderTimes, device: torch.device) -> None:
    side = torch.cuda.Stream(device=device) if device.type == "cuda" else None
    with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
        while (item := inbox.get()) is not None:
            mel, first_index = item
            chunks = _encode_batch(encode, mel, first_index, times)
            if side is not None:
                side.synchronize()  # the vectors are complete before the LM's stream reads them
            for chunk in chunks:
                outbox.put(chunk)
