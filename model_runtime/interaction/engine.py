"""The `audio-interaction` engine: the upstream model's LISTENING / SPEAKING loop (DESIGN.md section 2).

`InteractionEngine` loads the checkpoint once (weights, encoder, tokenizer) and
computes the prompt prefix's K/V once; each `open_stream()` gets an
`InteractionStream` with its own KV cache (a copy of the prefix's), so one
loaded model serves many rooms.

The loop, per 0.4 s chunk (t = stream time of the chunk's end):

- LISTENING: append AUDIO_BEGIN, 10 audio positions, ASSISTANT, with the 10
  PAD embeddings replaced by the chunk's encoder vectors; one forward step on
  the kept cache; the greedy next token decides: KEEP_SILENCE -> `decision`
  (respond=False); TEXT_BEGIN -> `decision` (respond=True, name
  `audio_interaction`) and SPEAKING. Any other token counts as silence (logged
  at debug level).
- SPEAKING: TEXT_BEGIN is fed and tokens are decoded greedily one at a time;
  an emotion tag as the first token sets the reply's emotion; text is streamed
  as `response` pieces (final=False, decoded incrementally so multi-byte
  characters are never split) until TEXT_END or `max_response_tokens`; then a
  `response` with final=True, the whole text, `emotion`, and `urgent` (the
  URGENT tag). The reply is closed in the context with TEXT_END (also when it
  was capped, so the model always sees a well-formed turn); those closing
  tokens are fed together with the next chunk's step, saving a forward pass.
- Audio that arrives while speaking is never dropped: chunks are processed
  strictly in order, the next one after the reply.
- `instruct(text)` adds a user text turn (USER, TEXT_BEGIN, text, TEXT_END) to
  the context, fed with the next chunk's step; instructions stay pinned in the
  bounded context (see `context.py`), so "transcribe" keeps holding after the
  audio it was said next to has aged out.
- The context is bounded: prefix + pinned instructions + a sliding window of
  `context_seconds` of recent chunks and their replies, rolled in blocks
  (`context.py` has the rule and its cost).
- `async_encoder`: the audio encoder runs ahead of the LM in a background
  thread with a FIFO (`chunk_encoder.py`); events are identical either way.

Faults stay inside the stream: a chunk the encoder fails on, non-finite input
samples or a forward pass that yields non-finite logits become `error` events;
after non-finite logits the context is reset to the prefix (the cache is
poisoned), and the stream goes on with the next chunk.

`feed` returns a list as the engine interface says; `feed_iter` yields the
same events as they happen (a server can forward reply pieces while the rest
of the reply is still being decoded).
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tokenizers.decoders import DecodeStream

from .. import constants as c
from .. import events
from ..engine import Engine, EngineOptions, EngineStream
from ..errors import UserError
from ..events import Event
from .batch import Combiner, encode_batch, lm_step_batch
from .checkpoint import encode_chunks, load_checkpoint
from .chunk_encoder import ChunkEncoder, EncodedChunk, FifoChunkEncoder
from .context import ContextWindow
from .cuda_graphs import CudaGraphs
from .decoder import CachedDecoder, KVCache, KVPool
from .features import StreamingLogMel
from .overload import OverloadGuard
from .prompt import AUDIO_SLOTS, CHUNK_IDS, instruction_ids, prefix_ids
from .quantize import quantize_model

log = logging.getLogger(__name__)

# How long a room about to run a batched step waits for the other open rooms' requests.
BATCH_GATHER_SECONDS = 0.002

# TEXT_BEGIN + a capped reply + its closing tokens; bounds one segment of the context.
_REPLY_OVERHEAD_TOKENS = 3

# Rooms per KV pool (a pool's rooms attend in one call per layer). More rooms go to another
# pool instead of growing one without bound: a pool grows by copying its rooms' K/V into new
# storage (old and new both held meanwhile: a 3B model's 300 s window is ~330 MB per room in
# bfloat16), so the copy, the memory briefly held twice and the slots reserved ahead (a pool
# grows by half) stay within 8 rooms' worth; a pool whose rooms all left is dropped, its memory
# returned. 16 rooms: 2 attention calls per layer instead of 1.
ROOMS_PER_POOL = 8

# Chunks that queued up (a backlog after a reply, a machine slower than real time, a
# file) go through the LM this many at a time in one step, each chunk's decision read
# at its own position (`InteractionStream._step`). Measured on the 2-core CPU,
# 3B-shaped int8-dynamic: a step of 2 chunks costs 0.62x two steps of one, 4 chunks 0.53x.
MAX_CHUNKS_PER_STEP = 4


@dataclass
class LoopStats:
    """Where a stream's time went (read by the benchmark; cheap enough to keep always)."""

    features_seconds: float = 0.0
    lm_seconds: float = 0.0
    lm_steps: int = 0
    roll_seconds: float = 0.0
    rolls: int = 0


class InteractionEngine(Engine):
    name = c.ENGINE_AUDIO_INTERACTION

    def __init__(self, options: EngineOptions, loaded=None) -> None:
        """Load the checkpoint named in `options.model` (or use an already `loaded` one)."""
        if options.max_response_tokens < 1:
            raise UserError(f"--max-response-tokens must be at least 1, not {options.max_response_tokens}")
        if not options.context_seconds > 0:
            raise UserError(f"--context-seconds must be positive, not {options.context_seconds}")
        if options.threads is not None:
            if options.threads < 1:
                raise UserError(f"--threads must be at least 1, not {options.threads}")
            torch.set_num_threads(options.threads)
        # numpy's OpenBLAS (the log-mel's small matmul) wakes a second thread per chunk, which then
        # spin-waits for more work: measured ~20 ms CPU per 0.4 s chunk of a quiet stream, more than the
        # tiny model's whole step. The model's work runs in torch's own pool; numpy's BLAS gets one thread.
        threadpool_limits(1, user_api="blas")
        self.options = options
        self.loaded = loaded if loaded is not None else load_checkpoint(options.model, options.device, options.dtype)
        self.tokenizer = self.loaded.tokenizer
        # in place, once (a shared `loaded` is quantized too); the encoder too in int8-dynamic on CPU
        quantize_model(self.loaded.lm, self.loaded.encoder, options.quantize)
        self.decoder = CachedDecoder(self.loaded.lm, cuda_graphs=options.cuda_graphs)
        self.prefix_ids = prefix_ids(self.tokenizer, options.system_prompt)
        # The prefix's K/V is the same for every stream: computed once, copied into each new cache.
        self.prefix_cache = self.decoder.new_cache(len(self.prefix_ids))
        self.decoder.forward(self.prefix_cache, self.decoder.embed(self.prefix_ids))
        self.open_streams: weakref.WeakSet[InteractionStream] = weakref.WeakSet()  # read by benchmarks
        # Batched rooms (batch.py): every stream's LM steps and encoder calls go through
        # one combiner each, so concurrent rooms share each model call.
        if options.batch_rooms < 1:
            raise UserError(f"--batch-rooms must be at least 1, not {options.batch_rooms}")
        # On a GPU the encoder replays a CUDA graph per number of chunks, as the LM's steps do
        self.encoder_graphs = CudaGraphs() if options.cuda_graphs and self.loaded.device.type == "cuda" else None
        encode_one = functools.partial(encode_chunks, self.loaded, graphs=self.encoder_graphs)
        if options.batch_rooms == 1:  # no batching: each stream calls the model itself
            self.lm_step = self.decoder.forward
            self.encode = encode_one
            self.lm_batches = self.encoder_batches = None
        else:
            rooms = dict(
                max_batch=options.batch_rooms, expected=self.open_streams.__len__, gather_seconds=BATCH_GATHER_SECONDS
            )
            self.lm_batches = Combiner(functools.partial(lm_step_batch, self.decoder), **rooms)
            self.encoder_batches = Combiner(functools.partial(encode_batch, encode_one), **rooms)
            # Listening steps wait (briefly) for the other rooms' chunks; decode steps never do.
            self.lm_step = lambda cache, embeds, picks=None: self.lm_batches.submit(
                (cache, embeds, picks), gather=embeds.shape[0] > 1
            )
            self.encode = self.encoder_batches.submit
        # Batched rooms keep their K/V in shared pools (one per cache capacity), so a batched
        # step attends for all its rooms in one call per layer (decoder.KVPool).
        self._pools: dict[int, list[KVPool]] = {}  # cache capacity -> its pools
        self._pools_lock = threading.Lock()

    def new_cache(self, capacity: int) -> KVCache:
        """A stream's cache: a slot of the shared pool of its capacity when rooms are batched."""
        if self.lm_batches is None:
            return self.decoder.new_cache(capacity)
        with self._pools_lock:
            pools = self._pools.setdefault(capacity, [])
            pool = next((pool for pool in pools if pool.can_allocate()), None)
            if pool is None:
                pool = self.decoder.new_pool(capacity, rooms=0, max_rooms=ROOMS_PER_POOL)  # grows as rooms open
                pools.append(pool)
            return pool.allocate()

    def release_cache(self, pool: KVPool, slot: int) -> None:
        """A closed stream's slot goes back to its pool; a pool left empty is dropped (its memory freed)."""
        pool.release(slot)
        with self._pools_lock:
            pools = self._pools.get(pool.capacity, [])
            if pool.in_use() == 0 and any(p is pool for p in pools):
                pools.remove(pool)

    def pools(self) -> list[KVPool]:
        """The KV pools of batched rooms (read by benchmarks and tests)."""
        with self._pools_lock:
            return [pool for pools in self._pools.values() for pool in pools]

    def open_stream(self, *, roll_seconds: float | None = None) -> InteractionStream:
        stream = InteractionStream(self, roll_seconds=roll_seconds)
        self.open_streams.add(stream)
        return stream

    def wake_words(self) -> list[str]:
        return [c.MODEL_DECISION_NAME]


class InteractionStream(EngineStream):
    def __init__(self, engine: InteractionEngine, *, roll_seconds: float | None = None) -> None:
        options = engine.options
        self.engine = engine
        self.decoder = engine.decoder
        self.tokenizer = engine.tokenizer
        self.max_response_tokens = options.max_response_tokens
        prefix = engine.prefix_cache
        self.context = ContextWindow(
            prefix.length,
            options.context_seconds,
            max_segment_tokens=c.TOKENS_PER_CHUNK + options.max_response_tokens + _REPLY_OVERHEAD_TOKENS,
            roll_seconds=roll_seconds,
        )
        self.cache = engine.new_cache(self.context.capacity)
        # The slot goes back to the pool on close(), or when a stream dropped without close() is collected.
        self._release_cache = weakref.finalize(self, engine.release_cache, self.cache.pool, self.cache.slot)
        self._copy_prefix()
        self.features = StreamingLogMel()
        if options.async_encoder:
            self.encoder: ChunkEncoder = FifoChunkEncoder(engine.encode, engine.loaded.device)
        else:
            self.encoder = ChunkEncoder(engine.encode)
        self.stats = LoopStats()
        self.overload = OverloadGuard(options.overload_seconds)
        # (a step never holds more than the context window: a small window steps fewer chunks at once)
        self._chunks_per_step = max(1, min(MAX_CHUNKS_PER_STEP, self.context.window_tokens // c.TOKENS_PER_CHUNK))
        # Tokens to feed before the next chunk: (ids, kind) with kind "close" (ends the
        # last reply: part of the previous segment) or "instruction" (a pinned segment).
        self._pending: list[tuple[list[int], str]] = []
        self._samples_in = 0
        self._outstanding = 0  # chunks submitted to the encoder and not yet taken
        self._ready: deque[EncodedChunk] = deque()  # taken from the encoder, not yet through the LM
        self._undelivered: deque[Event] = deque()  # events of a step, not yet yielded
        self._finished = False
        self._closed = False

    # --- the engine interface -------------------------------------------------
    def feed(self, audio: np.ndarray) -> list[Event]:
        return list(self.feed_iter(audio))

    def feed_iter(self, audio: np.ndarray) -> Iterator[Event]:
        """Like `feed`, but yields each event as soon as it exists."""
        self._check_open()
        if self._finished:
            raise RuntimeError("this stream was finished; open a new one with engine.open_stream()")
        samples, problem = self._as_samples(audio)
        if problem is not None:
            yield problem
        if samples is None or samples.size == 0:
            return
        started = time.perf_counter()
        mel = self.features.push(samples)
        self.stats.features_seconds += time.perf_counter() - started
        yield from self._process(mel)

    def finish(self) -> list[Event]:
        """The last partial chunk (zero-padded to 0.4 s) gets its decision too; the stream then ends."""
        self._check_open()
        if self._finished:
            return []
        self._finished = True
        return list(self._process(self.features.flush()))

    def instruct(self, text: str) -> list[Event]:
        self._check_open()
        t = self._samples_in / c.SAMPLE_RATE
        text = (text or "").strip()
        if not text:
            return [events.error(t, "empty instruction ignored: give the text of the instruction", "bad_instruction")]
        ids = instruction_ids(self.tokenizer, text)
        if len(ids) > self.context.pinned_tokens:
            return [
                events.error(
                    t,
                    f"instruction too long ({len(ids)} tokens, at most {self.context.pinned_tokens}): shorten it",
                    "bad_instruction",
                )
            ]
        self._pending.append((ids, "instruction"))
        # Pending instructions beyond the pinned budget: the oldest give way to the newest.
        while sum(len(i) for i, kind in self._pending if kind == "instruction") > self.context.pinned_tokens:
            oldest = next(n for n, (_, kind) in enumerate(self._pending) if kind == "instruction")
            log.warning("instruction dropped before it was used: newer instructions exceed the budget")
            del self._pending[oldest]
        return []

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.encoder.close()
            self.engine.open_streams.discard(self)
            self._release_cache()
            self.cache = None  # free the stream's K/V now, not when the stream object goes

    # --- the loop -------------------------------------------------------------
    def _process(self, mel: np.ndarray) -> Iterator[Event]:
        # Counted on the stream, not per call: chunks and events a caller left unread (an
        # abandoned `feed_iter`) are taken, in order, by the next call instead of being lost.
        mel, notice = self.overload.select(mel, self._outstanding, self._samples_in / c.SAMPLE_RATE)
        if notice is not None:
            yield notice
        self._outstanding += self.encoder.submit(mel)
        yield from self._deliver()
        while self._ready or self._outstanding:
            while self._outstanding and len(self._ready) < self._chunks_per_step:
                self._outstanding -= 1
                self._ready.append(self.overload.true_index(self.encoder.get()))
            yield from self._step_ready()

    def _step_ready(self) -> Iterator[Event]:
        """One LM step for the waiting chunks up to the first the encoder failed on (at most `_chunks_per_step`)."""
        run = 0
        while run < len(self._ready) and self._ready[run].error is None:
            run += 1
        if run == 0:  # (process_chunk says what was wrong with it)
            yield from self.process_chunk(self._ready.popleft())
            return
        yield from self._step([self._ready.popleft() for _ in range(run)])

    def _step(self, chunks: list[EncodedChunk]) -> Iterator[Event]:
        """One LM step for consecutive encoded chunks, and their decisions (and a reply).

        Every chunk's decision is the greedy token at its own ASSISTANT position, which
        (causal attention) sees exactly what it would in a step of its own, so the events
        are those of one step per chunk. When chunk j decides to respond, the later
        chunks' tokens are taken back out of the cache and they wait for the next step,
        after the reply, as they would have. A step's decisions are queued before any is
        yielded: a caller that stops reading loses none of them.
        """
        try:
            tokens, chunk_ends = self._listen(chunk.vectors for chunk in chunks)
        except Exception as err:  # keep the stream alive; the chunks are lost, said so
            log.debug("listening step failed", exc_info=True)
            for chunk in chunks:
                t = (chunk.index + 1) * c.CHUNK_SECONDS
                message = f"chunk ending at {t:.1f} s skipped: model step failed: {err}"
                self._undelivered.append(events.error(t, message, "model_error"))
            yield from self._deliver()
            return
        for j, (chunk, token) in enumerate(zip(chunks, tokens)):
            t = (chunk.index + 1) * c.CHUNK_SECONDS
            if token is None:  # the whole step's K/V is suspect: reset; the later chunks go again
                self._undelivered.append(self._fault(t))
                self._ready.extendleft(reversed(chunks[j + 1 :]))
                break
            self.context.open_segment(len(CHUNK_IDS))
            if token == c.TEXT_BEGIN:
                self.cache.truncate(chunk_ends[j])
                self._ready.extendleft(reversed(chunks[j + 1 :]))
                self._undelivered.append(events.decision(t, True, c.MODEL_DECISION_NAME))
                yield from self._deliver()
                yield from self._speak(t)
                return
            if token != c.KEEP_SILENCE:
                log.debug("unexpected token %d after chunk ending at %.1f s: taken as silence", token, t)
            self._undelivered.append(events.decision(t, False))
        yield from self._deliver()

    def _deliver(self) -> Iterator[Event]:
        """Events that exist and were not yet yielded, in order."""
        while self._undelivered:
            yield self._undelivered.popleft()

    def process_chunk(self, chunk: EncodedChunk) -> Iterator[Event]:
        """The LM half of the loop for one already-encoded chunk (chunks must come in order).

        `feed` steps the chunks it completes up to 4 at a time (`_step_ready`); tests and
        benchmarks call this directly to stream hours of audio without the log-mel and
        encoder cost.
        """
        if chunk.error is not None:
            t = (chunk.index + 1) * c.CHUNK_SECONDS
            yield events.error(t, f"chunk ending at {t:.1f} s skipped: {chunk.error}", "bad_chunk")
            return
        yield from self._step([chunk])

    def _listen(self, chunk_vectors) -> tuple[list[int | None], list[int]]:
        """One listening step: pending tokens + 12 per chunk. Returns each chunk's greedy token (None:
        non-finite) and the cache length at each chunk's end. The chunks' context segments are the
        caller's to open (a chunk after a decision to respond is taken back out)."""
        chunk_vectors = list(chunk_vectors)
        parts = self._pending
        head = [i for part, _ in parts for i in part]
        ids = head + list(CHUNK_IDS) * len(chunk_vectors)
        n_instructions = sum(len(part) for part, kind in parts if kind == "instruction")
        with torch.inference_mode():
            embeds = self.decoder.embed(ids)
            for j, vectors in enumerate(chunk_vectors):
                audio_start = len(head) + j * len(CHUNK_IDS)
                embeds[audio_start + AUDIO_SLOTS.start : audio_start + AUDIO_SLOTS.stop] = vectors.to(embeds.dtype)
        self._make_room(len(ids), new_pinned=n_instructions)
        start = self.cache.length
        ends = [len(head) + (j + 1) * len(CHUNK_IDS) for j in range(len(chunk_vectors))]
        logits = self._forward(embeds, [end - 1 for end in ends])
        # Bookkeeping only once the step is in the cache.
        for part, kind in parts:
            if kind == "close":
                self.context.extend_segment(len(part))
            else:
                self.context.open_segment(len(part), pinned=True)
        self._pending = []
        return [self._greedy(row) for row in logits], [start + end for end in ends]

    def _speak(self, t: float) -> Iterator[Event]:
        text_ids: list[int] = []
        emotion: str | None = None
        pieces = DecodeStream(skip_special_tokens=True)
        fed = c.TEXT_BEGIN
        generated = 0
        while True:
            try:
                self._make_room(1)
                with torch.inference_mode():
                    embeds = self.decoder.embed([fed])
                token = self._greedy(self._forward(embeds))
            except Exception as err:
                log.debug("decoding step failed", exc_info=True)
                yield events.error(t, f"reply cut short: model step failed: {err}", "model_error")
                token = None
            else:
                self.context.extend_segment(1)
                if token is None:
                    yield self._fault(t)
            if token is None:  # the context was reset or the step failed: end the reply as it stands
                break
            if token == c.TEXT_END:
                self._pending.append(([c.TEXT_END], "close"))
                break
            generated += 1
            if generated == 1 and token in c.EMOTION_TOKENS:
                emotion = c.EMOTION_TOKENS[token]
            else:
                text_ids.append(token)
                piece = pieces.step(self.tokenizer, token)
                if piece:
                    yield events.response(t, piece, final=False, emotion=emotion, urgent=emotion == "urgent")
            if generated >= self.max_response_tokens:
                # Capped: feed the last token and TEXT_END with the next chunk, a well-formed turn.
                self._pending.append(([token, c.TEXT_END], "close"))
                break
            fed = token
        text = self.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        yield events.response(t, text, final=True, emotion=emotion, urgent=emotion == "urgent")

    # --- helpers --------------------------------------------------------------
    def _forward(self, embeds: torch.Tensor, picks: list[int] | None = None) -> torch.Tensor:
        started = time.perf_counter()
        logits = self.engine.lm_step(self.cache, embeds, picks)
        self.stats.lm_seconds += time.perf_counter() - started
        self.stats.lm_steps += 1
        return logits

    def _make_room(self, n: int, *, new_pinned: int = 0) -> None:
        keep = self.context.plan_room(n, new_pinned=new_pinned)
        if keep is not None:
            started = time.perf_counter()
            self.decoder.compact(self.cache, keep, start=self.context.prefix_tokens)
            self.stats.roll_seconds += time.perf_counter() - started
            self.stats.rolls += 1

    @staticmethod
    def _greedy(logits: torch.Tensor) -> int | None:
        """The argmax token, or None when the logits are not finite.

        torch's max ranks NaN above everything and +inf wins anyway, so checking
        the winner alone catches any NaN or +inf in the row (one scalar, not 152k).
        Value and index come back in one device-to-host copy (one sync on a GPU).
        """
        value, index = logits.max(dim=-1)
        best, token = torch.stack([value.float(), index.float()]).tolist()  # ids < 2**24: exact
        return int(token) if math.isfinite(best) else None

    def _fault(self, t: float) -> Event:
        """Non-finite logits: the cache can no longer be trusted; back to the prompt prefix."""
        self._copy_prefix()
        self.context.reset()
        self._pending = [(ids, kind) for ids, kind in self._pending if kind == "instruction"]
        return events.error(
            t,
            "the model produced non-finite values (NaN/inf); its context was reset to the prompt and "
            "listening goes on (if this repeats, try --dtype float32)",
            "model_fault",
        )

    def _copy_prefix(self) -> None:
        """The cache holds the prompt prefix alone (its K/V computed once by the engine)."""
        self.cache.reset_to(self.engine.prefix_cache)

    def _as_samples(self, audio: np.ndarray) -> tuple[np.ndarray | None, Event | None]:
        """16 kHz mono float32, or None and an error event saying why this piece was ignored."""
        t = self._samples_in / c.SAMPLE_RATE
        try:
            samples = np.asarray(audio, dtype=np.float32)
        except (TypeError, ValueError) as err:
            return None, events.error(t, f"audio piece ignored: not numeric samples ({err})", "bad_audio")
        if samples.ndim == 2 and 1 in samples.shape:
            samples = samples.reshape(-1)
        if samples.ndim != 1:
            return None, events.error(
                t, f"audio piece ignored: expected mono samples of shape (n,), got {samples.shape}", "bad_audio"
            )
        problem = None
        bad = ~np.isfinite(samples)
        if bad.any():
            first = self._samples_in + int(np.argmax(bad))
            t_bad = (first // c.CHUNK_SAMPLES + 1) * c.CHUNK_SECONDS
            problem = events.error(
                t_bad, f"{int(bad.sum())} non-finite audio samples (NaN/inf) replaced with silence", "bad_audio"
            )
            samples = np.where(bad, np.float32(0.0), samples)
        self._samples_in += samples.size
        return samples, problem

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this stream is closed; open a new one with engine.open_stream()")
