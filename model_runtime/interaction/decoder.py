"""The LM forward pass of the streaming loop, with our own preallocated KV cache.

Why not `Qwen2ForCausalLM.forward` with a transformers cache: measured on the
2-core CPU (DESIGN.md section 6) most of a long-context step is spent growing a
`DynamicCache` by concatenation and expanding grouped-query K/V 8x for
attention (transformers' sdpa path expands K/V whenever a mask is needed, i.e.
for every 12-token listening step); a `StaticCache` attends over its whole
preallocated length. Here the weights and sub-modules are transformers' own
(norms, projections, MLP, rotary embedding, `apply_rotary_pos_emb`); only the
attention around the cache is ours:

- `KVPool` preallocates the K/V of many streams (rooms) in one tensor; a
  stream's `KVCache` is one slot of it, where slot i always holds the token at
  position i (positions stay contiguous, so a roll re-rotates the keys it
  moves: see `KVCache.compact`).
- attention is GQA-aware without expanding K/V: the queries of the 8 heads that
  share a K/V head are folded into that head's query rows ("packed GQA"), so
  `scaled_dot_product_attention` sees (rooms, kv_heads, 8 * n, head_dim)
  queries against the (rooms, kv_heads, length, head_dim) pool: one call per
  layer for all the rooms of a batched step (`_PoolStep`).
- on CPU in bfloat16, from 768 slots of context on, attention is two matmuls and
  a softmax (`attention_by_matmul`, the arithmetic of transformers' eager attention)
  over a length rounded up to 1,024 slots, instead of `scaled_dot_product_attention`,
  whose CPU flash kernel is about 1.5x slower for these shapes (measured below);
  elsewhere it is `scaled_dot_product_attention`.

`tests/runtime/test_interaction_decoder.py` proves the logits equal
`Qwen2ForCausalLM.forward` with a `DynamicCache` over a multi-step sequence,
and that a compacted cache equals a fresh prefill of the kept tokens at layer 0.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb, rotate_half

from .cuda_graphs import CudaGraphs


class KVPool:
    """Preallocated keys and values of several streams (rooms) in one tensor each:
    (layers, rooms, kv_heads, capacity, head_dim).

    Why one tensor: a batched step then attends for all its rooms in ONE
    `scaled_dot_product_attention` call per layer (the rooms are the batch
    dimension), instead of one call per room per layer. Each room is a slot;
    `allocate()` hands out a `KVCache` for a free slot and grows the pool (one
    copy of the used slots, taken when a room opens, under the pool's lock; the
    old and the new storage exist together during that copy) when none is free.
    A closed room's slot is `release`d and reused; the pool never shrinks (the
    engine keeps rooms in several pools of at most `max_rooms` and drops a pool
    whose rooms all left: see `InteractionEngine.new_cache`).

    Invariant the pooled attention relies on: every slot at or beyond a cache's
    `length` holds finite values (zeros or stale K/V of finite steps). A batch
    attends over the longest room's slots; a shorter room's extra slots are
    masked, but a masked NaN value would still turn its row into NaN
    (0 * NaN), so slots are zeroed when handed out and after a fault
    (`KVCache.reset_to`).
    """

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str,
        rooms: int = 1,
        max_rooms: int | None = None,
        scratch: int = 0,
    ) -> None:
        # `scratch` positions past `capacity` in every slot, never attended: where a graphed step
        # writes the K/V of the stand-in tokens of the pool's rooms that are not in it (see `forward_many`)
        self.shape = (n_layers, n_kv_heads, capacity + scratch, head_dim)
        self.max_rooms = max_rooms  # None: grows without bound
        self.capacity = capacity
        self.scratch = scratch
        self.dtype, self.device = dtype, torch.device(device)
        self.keys = self._zeros(rooms)
        self.values = self._zeros(rooms)
        self.lock = threading.Lock()  # storage is replaced by a grow: steps and writes hold it
        self._free = list(range(rooms))
        self._fresh = set(self._free)  # slots still all zeros since allocation of the storage

    @property
    def rooms(self) -> int:
        return self.keys.shape[1]

    def _zeros(self, rooms: int) -> torch.Tensor:
        layers, heads, capacity, dim = self.shape
        return torch.zeros((layers, rooms, heads, capacity, dim), dtype=self.dtype, device=self.device)

    def can_allocate(self) -> bool:
        """Whether `allocate` has a free slot or may still grow (under `max_rooms`)."""
        with self.lock:
            return bool(self._free) or self.max_rooms is None or self.rooms < self.max_rooms

    def allocate(self) -> KVCache:
        """A cache in a free slot (length 0, all slots zero); grows the pool by half (at least one slot,
        at most to `max_rooms`) if full."""
        with self.lock:
            if not self._free:
                old = self.rooms
                if self.max_rooms is not None and old >= self.max_rooms:
                    raise ValueError(f"KV pool full: all {old} rooms in use")
                grown = old + max(1, old // 2)
                self._grow(grown if self.max_rooms is None else min(grown, self.max_rooms))
            slot = min(self._free)
            self._free.remove(slot)
            if slot not in self._fresh:
                self.keys[:, slot].zero_()
                self.values[:, slot].zero_()
            self._fresh.discard(slot)
        return KVCache(self, slot)

    def release(self, slot: int) -> None:
        """The slot of a cache no longer used (a closed stream) can be handed out again."""
        with self.lock:
            if slot in self._free or not 0 <= slot < self.rooms:
                raise ValueError(f"slot {slot} is not in use")
            self._free.append(slot)

    def in_use(self) -> int:
        return self.rooms - len(self._free)

    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2

    def _grow(self, rooms: int) -> None:
        """(Lock held.) New storage for `rooms` slots holding the old slots' contents."""
        old = self.rooms
        for name in ("keys", "values"):
            grown = self._zeros(rooms)
            grown[:, :old] = getattr(self, name)
            setattr(self, name, grown)  # the old storage goes here, one tensor at a time
        self._free.extend(range(old, rooms))
        self._fresh.update(range(old, rooms))


class KVCache:
    """One stream's keys and values: a slot of a `KVPool`, (layers, kv_heads, capacity, head_dim) each.

    Slot i always holds the token at position i (positions stay contiguous, so a
    roll re-rotates the keys it moves: see `compact`). `keys` and `values` are
    views into the pool's current storage (take them anew after the pool grew).
    """

    def __init__(self, pool: KVPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot
        self.capacity = pool.capacity
        self.length = 0  # slots [0, length) are filled

    @property
    def keys(self) -> torch.Tensor:
        return self.pool.keys[:, self.slot]

    @property
    def values(self) -> torch.Tensor:
        return self.pool.values[:, self.slot]

    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2

    def truncate(self, length: int) -> None:
        """Forget every slot from `length` on (e.g. back to the prompt prefix after a fault)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} slots to {length}")
        self.length = length

    def reset_to(self, prefix: KVCache) -> None:
        """Hold `prefix`'s filled slots alone, every later slot zeroed (also any non-finite K/V of a fault)."""
        with self.pool.lock:
            keys, values = self.keys, self.values
            keys[:, :, : prefix.length] = prefix.keys[:, :, : prefix.length]
            values[:, :, : prefix.length] = prefix.values[:, :, : prefix.length]
            keys[:, :, prefix.length :].zero_()
            values[:, :, prefix.length :].zero_()
            self.length = prefix.length

    def compact(self, keep: torch.Tensor, start: int, inv_freq: torch.Tensor) -> None:
        """Move the slots listed in `keep` (ascending, all >= start) to slots start, start+1, ...

        Slots below `start` (the prompt prefix) stay put; everything else not in
        `keep` is dropped. A key moved from slot i to slot j was rotated for
        position i; it is rotated by (j - i) so it reads as position j, exactly
        as if it had been computed there (RoPE rotations compose), computed in
        float32 and rounded once to the cache dtype. Values carry no position.
        The cost is one gather + one rotation of the kept keys per layer: for a
        3B model with 9,000 kept slots that is about 0.3 GB of bf16 moved.
        """
        n = int(keep.numel())
        if n and (int(keep[0]) < start or int(keep[-1]) >= self.length):
            raise ValueError("compact: slots to keep must lie in [start, length)")
        device = self.pool.device
        keep = keep.to(device)
        new_slots = torch.arange(start, start + n, device=device)
        delta = (new_slots - keep).to(torch.float32)
        angles = delta[:, None] * inv_freq.to(device=device, dtype=torch.float32)[None, :]
        emb = torch.cat((angles, angles), dim=-1)  # (n, head_dim), the layout of rotate_half
        cos, sin = emb.cos(), emb.sin()
        with self.pool.lock:
            keys, values = self.keys, self.values
            for layer in range(keys.shape[0]):  # per layer: the temporary is one layer's kept keys
                k = keys[layer].index_select(1, keep).float()
                k = k * cos + rotate_half(k) * sin
                keys[layer, :, start : start + n] = k.to(keys.dtype)
                values[layer, :, start : start + n] = values[layer].index_select(1, keep)
        self.length = start + n


class CachedDecoder:
    """Runs a transformers `Qwen2ForCausalLM` step by step on a `KVCache`.

    Holds no per-stream state: many streams (rooms) can share one decoder, each
    with its own cache from `new_cache`.
    """

    def __init__(self, lm: torch.nn.Module, *, cuda_graphs: bool = True) -> None:
        config = lm.config
        layer_types = getattr(config, "layer_types", None) or ["full_attention"]
        if any(kind != "full_attention" for kind in layer_types):
            raise ValueError("CachedDecoder supports full-attention layers only (no sliding window)")
        rope_type = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
        if rope_type != "default":
            raise ValueError(f"CachedDecoder re-rotates cached keys with plain RoPE; rope_type {rope_type!r} is not")
        self.lm = lm
        self.layers = list(lm.model.layers)
        self.n_heads = config.num_attention_heads
        self.n_kv_heads = config.num_key_value_heads
        self.group = self.n_heads // self.n_kv_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.scale = self.head_dim**-0.5
        self.rotary = lm.model.rotary_emb
        self.embed_tokens = lm.get_input_embeddings()
        self.final_norm = lm.model.norm
        self.lm_head = lm.lm_head
        param = next(lm.parameters())
        self.device, self.dtype = param.device, param.dtype
        # On a GPU the steps replay CUDA graphs (cuda_graphs.py): a listening step is launch-bound there.
        self.graphs = CudaGraphs() if cuda_graphs and self.device.type == "cuda" else None
        if self.device.type == "cuda" and self.graphs is None:
            # Eager steps on a GPU: torch's cuDNN attention builds an execution plan for each new shape,
            # on the CPU, and a room's context grows by 12 slots every step. Measured on an H200 (3B,
            # bfloat16, no graphs): one room's tick through the engine 130 ms with it, 60 ms without
            # (8 rooms: 187 -> 64). With graphs the attended length is bucketed, a plan serves a whole
            # bucket, and cuDNN's kernel is the faster one at long contexts (a step at 10,000 slots:
            # 16 ms, 23.6 ms with the memory-efficient kernel), so it stays. Process-wide: torch has no
            # per-call switch that is not itself a process-wide flag.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.by_matmul = uses_matmul_attention(self.device, self.dtype)

    def new_pool(self, capacity: int, rooms: int = 1, max_rooms: int | None = None) -> KVPool:
        """A pool of caches of `capacity` slots for rooms that step together (see `KVPool`)."""
        scratch = GRAPH_SCRATCH_SLOTS if self.graphs is not None else 0
        return KVPool(len(self.layers), self.n_kv_heads, self.head_dim, capacity, self.dtype, self.device, rooms, max_rooms, scratch)

    def new_cache(self, capacity: int) -> KVCache:
        """A cache of its own (a pool of one): batched with others, it attends in a call of its own."""
        return self.new_pool(capacity).allocate()

    def embed(self, ids: list[int]) -> torch.Tensor:
        """(n,) token ids -> (n, width) input embeddings."""
        return self.embed_tokens(torch.tensor(ids, dtype=torch.long, device=self.device))

    def compact(self, cache: KVCache, keep: torch.Tensor, start: int) -> None:
        cache.compact(keep, start, self.rotary.inv_freq)

    def forward(self, cache: KVCache, embeds: torch.Tensor, picks: list[int] | None = None) -> torch.Tensor:
        """Append `embeds` (n, width) at the cache's end; return the last position's logits (vocab,), float32,
        or with `picks` (indices into `embeds`) the logits of those positions (len(picks), vocab)."""
        if picks is None:
            return self.forward_many([cache], [embeds])[0]
        return self.forward_many([cache], [embeds], [picks])

    @torch.inference_mode()
    def forward_many(
        self, caches: list[KVCache], embeds: list[torch.Tensor], picks: list[list[int] | None] | None = None
    ) -> torch.Tensor:
        """One step for several streams at once (batched rooms): `embeds[r]` (n_r, width) goes onto `caches[r]`.

        Returns (rooms, vocab) float32: row r is the logits of room r's last new position.
        With `picks`, room r's rows are the logits of the positions `picks[r]` (indices into
        `embeds[r]`; None: its last), rooms one after another: (total picks, vocab). A step
        of several audio chunks picks each chunk's decision position.
        The rooms' tokens are concatenated into one (1, sum n_r, width) sequence, so
        every projection and MLP streams the weights once for all rooms (what makes a
        step memory-bound on CPU and launch-bound on GPU). Attention is one
        `scaled_dot_product_attention` call per layer for all rooms whose caches
        share a `KVPool` (`_PoolStep`): rooms are the batch, each room's queries
        (padded to the most new tokens of any room) attend to its own slot only, at
        its own positions, causally, under a mask that also hides the slots beyond
        its length. Row r depends on room r's inputs alone, so a non-finite room
        cannot spoil another's logits.
        """
        if len(caches) != len(embeds) or not caches:
            raise ValueError("forward_many needs one embeds tensor per cache, at least one")
        if len({id(cache) for cache in caches}) != len(caches):
            raise ValueError("forward_many: a cache may appear once per step")
        counts = [e.shape[0] for e in embeds]
        starts = [cache.length for cache in caches]
        for cache, start, n in zip(caches, starts, counts):
            if start + n > cache.capacity:
                raise ValueError(f"KV cache full: {start + n} slots needed, capacity {cache.capacity}")
        pools: dict[int, KVPool] = {}
        members: dict[int, list[int]] = {}  # pool -> the caches (indices) of this step in it
        for r, cache in enumerate(caches):
            pools[id(cache.pool)] = cache.pool
            members.setdefault(id(cache.pool), []).append(r)
        # Stand-ins (graphs only): every room of a pool that is not in this step takes part with as many
        # tokens as the step's widest room, zeros written to its slot's scratch positions and thrown away.
        # Then a step's layout depends on the pools it touches, not on which of their rooms came (the
        # Combiner's batches at 16-64 rooms are whichever rooms were waiting): the same graph replays.
        # Measured on an H200, 32 rooms in 4 pools (bench rooms): without stand-ins 4 replays and 13 eager
        # steps in 17, 205 ms per tick; with them 9 replays and 5 eager steps, 63 ms (before the stand-ins'
        # rows were picked as well when the rooms' are: not measured since).
        width = max(counts)
        stand_ins = self.graphs is not None and all(pool.scratch >= width for pool in pools.values())
        slots = [(id(cache.pool), cache.slot, start, n) for cache, start, n in zip(caches, starts, counts)]
        if stand_ins:
            for key, rs in members.items():
                taken = {caches[r].slot for r in rs}
                pool = pools[key]
                slots += [(key, slot, pool.capacity, width) for slot in range(pool.rooms) if slot not in taken]
        entries, total = [], 0  # the rooms' tokens first, in the callers' order, then the stand-ins'
        for key, slot, start, n in slots:
            entries.append(_Entry(key, slot, start, n, total))
            total += n
        x = torch.cat([e.to(self.dtype) for e in embeds]).unsqueeze(0)  # (1, real tokens, width)
        if total > x.shape[1]:
            x = torch.cat([x, x.new_zeros(1, total - x.shape[1], x.shape[2])], dim=1)
        # one host-to-device copy, not an arange per room
        positions = torch.tensor([p for e in entries for p in range(e.start, e.start + e.count)], device=self.device).unsqueeze(0)
        if picks is None:
            rows = [e.offset + e.count - 1 for e in entries[: len(caches)]]
        else:
            rows = [e.offset + i for e, pick in zip(entries, picks) for i in (pick if pick is not None else [e.count - 1])]
        real_rows = len(rows)
        if stand_ins:
            # and each stand-in's last token: the head's shape then does not depend on the rooms either
            # (the engine's listening steps pass picks: without these, the rows counted the rooms that came)
            rows += [e.offset + e.count - 1 for e in entries[len(caches) :]]
        # With graphs, the attended length is rounded up to a bucket, so that one graph serves
        # a room's steps while its context grows through the bucket (see `_PoolStep`).
        bucket = GRAPH_BUCKET_SLOTS if self.graphs is not None else None
        # Pools in one order whatever order the rooms came in (the Combiner's batches come in arrival
        # order): a graph's layout then does not depend on which room's thread was first, and the
        # pools' locks are always taken in that order.
        steps = []
        for key in sorted(members):
            mine = [e for e in entries if e.pool == key]
            length = max(starts[r] + counts[r] for r in members[key])  # (stand-ins attend no further)
            steps.append(_PoolStep(
                pools[key], [e.slot for e in mine], [e.start for e in mine], [e.count for e in mine],
                [e.offset for e in mine], self.group, self.device, self.by_matmul, bucket, length))
        plan = _StepPlan(positions, torch.tensor(rows, device=self.device), steps)
        with contextlib.ExitStack() as held:
            for step in steps:  # (in pool order: no deadlock between pools)
                held.enter_context(step.pool.lock)
            if self.graphs is None:
                logits = self._run(plan, x)
            else:
                # what fixes the kernels and shapes: each pool's layout, the tokens, the picked rows
                key = (tuple(step.layout() for step in steps), total, len(rows))
                logits = self.graphs.run(key, [x, *plan.tensors()],
                                         lambda inputs: self._run(plan.with_tensors(inputs[1:]), inputs[0]))
            for cache, start, n in zip(caches, starts, counts):
                cache.length = start + n
        return logits[:real_rows] if stand_ins else logits  # (the real rooms' rows come first)

    def _run(self, plan: _StepPlan, x: torch.Tensor) -> torch.Tensor:
        """The step's device work, the layers over `x` (1, total, width) -> the picked rows' logits, float32.
        Reads nothing back to the host (a CUDA graph captures it as is)."""
        total = x.shape[1]
        cos, sin = self.rotary(x, plan.positions)
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(1, total, self.n_heads, self.head_dim)
            k = attn.k_proj(h).view(1, total, self.n_kv_heads, self.head_dim)
            v = attn.v_proj(h).view(1, total, self.n_kv_heads, self.head_dim)
            q, k = apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2)  # token-major: (1, total, heads, d)
            if len(plan.steps) == 1:
                out = plan.steps[0].attend(index, q[0], k[0], v[0], self.scale)
            else:
                out = q.new_empty(total, self.n_heads, self.head_dim)
                for step in plan.steps:
                    picked = [t.index_select(0, step.tokens) for t in (q[0], k[0], v[0])]
                    out.index_copy_(0, step.tokens, step.attend(index, *picked, self.scale))
            x = x + attn.o_proj(out.view(1, total, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm_head(self.final_norm(x[0].index_select(0, plan.rows))).float()


# Attended slots are rounded up to this when steps run through CUDA graphs: one graph then serves
# every step while a room's context grows through 1,024 slots (85 chunks). On a GPU the extra
# masked slots cost next to nothing; a new length every step would mean a new graph every step.
GRAPH_BUCKET_SLOTS = 1024
# Scratch positions past each slot's capacity, in pools of a graphed decoder: where the stand-in tokens
# of a step's absent rooms write their K/V (a step of 4 queued chunks is 48 tokens wide; wider steps
# run without stand-ins).
GRAPH_SCRATCH_SLOTS = 64


class _Entry(NamedTuple):
    """One room's (or stand-in's) new tokens in a step."""

    pool: int  # id of its KVPool
    slot: int
    start: int  # position of its first new token
    count: int
    offset: int  # index of its first token in the step's sequence


@dataclass
class _StepPlan:
    """A step's index tensors, made on the host before the device work (`CachedDecoder._run`)."""

    positions: torch.Tensor  # (1, total) each new token's position
    rows: torch.Tensor  # the tokens whose logits are returned
    steps: list[_PoolStep]  # one per KV pool of the step's rooms

    def tensors(self) -> list[torch.Tensor]:
        return [self.positions, self.rows, *(t for step in self.steps for t in step.tensors())]

    def with_tensors(self, tensors: list[torch.Tensor]) -> _StepPlan:
        """The same plan on other tensors of the same shapes (a CUDA graph's inputs), in `tensors()` order."""
        positions, rows, rest = tensors[0], tensors[1], tensors[2:]
        steps = []
        for step in self.steps:
            n = len(step.tensors())
            steps.append(step.with_tensors(rest[:n]))
            rest = rest[n:]
        return _StepPlan(positions, rows, steps)


@dataclass
class _PoolStep:
    """One pool's rooms in one batched step: where their new K/V go and how they attend, computed once per step.

    The attention batch is the pool's slots lo..hi-1 (a view, no copy) when the
    step's rooms fill most of that span, else just the step's slots gathered
    (a copy of their used K/V). Rows: each room's new tokens, padded to the most
    of any room. Padded rows, and the rows of slots in the span that are not in
    this step, get the causal mask of the positions they stand at (never an
    empty row: slot 0 is always in it); their outputs are thrown away.
    """

    pool: KVPool
    tokens: torch.Tensor  # this pool's tokens' indices in the step's sequence
    slot_of_token: torch.Tensor
    position_of_token: torch.Tensor
    row_of_token: torch.Tensor  # attention batch index of the token's room
    rank_of_token: torch.Tensor  # the token's index among its room's new tokens
    span: tuple[int, int] | None  # slots lo..hi-1 as the attention batch, or
    gather: torch.Tensor | None  # these slots, in this order
    rows: int  # attention batch size
    width: int  # padded new tokens per room
    length: int  # slots attended (the longest room's end)
    mask: torch.Tensor | None  # (rows, 1, group * width, length) bool, True = attend
    hidden: torch.Tensor | None  # not mask from slot `hidden_from` on, for `attention_by_matmul` (made once per step)
    hidden_from: int  # every row attends to every slot before this one (the earliest new token of any row)
    group: int
    by_matmul: bool

    def __init__(self, pool, slots, starts, counts, offsets, group, device, by_matmul=False, bucket=None, length=None) -> None:
        """`length`: slots attended (default: the longest room's end; stand-ins' scratch positions are not attended)."""
        self.pool, self.group, self.by_matmul = pool, group, by_matmul
        lo, hi = min(slots), max(slots) + 1
        if hi - lo <= 2 * len(slots):
            self.span, self.gather, self.rows = (lo, hi), None, hi - lo
            row_of_room = [slot - lo for slot in slots]
        else:
            self.span, self.rows = None, len(slots)
            self.gather = torch.tensor(slots, device=device)
            row_of_room = list(range(len(slots)))
        self.width = max(counts)
        self.length = length if length is not None else max(start + n for start, n in zip(starts, counts))
        # The matmuls only from MATMUL_MIN_SLOTS on, over a length rounded up to MATMUL_BUCKET_SLOTS
        # (the extra slots are masked: finite by the pool's invariant). Why: every new matmul shape
        # makes oneDNN build and cache a kernel; a length growing by 12 every step made a new shape
        # each step, and a day of rolling through them grew the process by gigabytes (measured:
        # 7.9 GB after two passes over 0-10k slots; rounded to 1,024: +80 MB, flat).
        self.by_matmul = by_matmul and self.length >= MATMUL_MIN_SLOTS and not (self.rows == 1 and self.width == 1)
        if self.by_matmul:
            bucket = max(bucket or 0, MATMUL_BUCKET_SLOTS)
        if bucket:
            self.length = min(-(-self.length // bucket) * bucket, pool.capacity)
        columns = []
        for slot, start, n, offset, row in zip(slots, starts, counts, offsets, row_of_room):
            columns += [(offset + i, slot, start + i, row, i) for i in range(n)]
        table = torch.tensor(columns, device=device).T  # one transfer for all the step's index lists
        self.tokens, self.slot_of_token, self.position_of_token, self.row_of_token, self.rank_of_token = table
        if self.rows == 1 and self.width == 1 and not bucket:
            self.mask = None  # one query row over exactly its room's slots
        else:
            first = [0] * self.rows  # position of each attention row's first new token
            for start, row in zip(starts, row_of_room):
                first[row] = start
            last_seen = torch.tensor(first, device=device)[:, None] + torch.arange(self.width, device=device)
            mask = torch.arange(self.length, device=device) <= last_seen[:, :, None]  # (rows, width, length)
            # packed GQA rows are head-in-group major (see `attend`): repeat per head of the group
            self.mask = mask.repeat(1, group, 1).unsqueeze(1)
        # Only the slots from the earliest new token on can be hidden from a row: the scores before it
        # are left alone (at 10,000 slots, masking the whole score matrix took 0.6 of 4.6 ms a layer).
        self.hidden, self.hidden_from = None, 0
        if self.by_matmul:  # (its length is bucketed, so it has a mask)
            self.hidden_from = min(first)
            self.hidden = (~self.mask[..., self.hidden_from :]).contiguous()

    _TENSORS = ("tokens", "slot_of_token", "position_of_token", "row_of_token", "rank_of_token", "gather", "mask", "hidden")

    def tensors(self) -> list[torch.Tensor]:
        """The step's index and mask tensors (those it has), in one fixed order."""
        return [t for t in (getattr(self, name) for name in self._TENSORS) if t is not None]

    def with_tensors(self, tensors: list[torch.Tensor]) -> _PoolStep:
        """This step on other tensors of the same shapes, given in `tensors()` order."""
        step = copy.copy(self)
        rest = iter(tensors)
        for name in self._TENSORS:
            if getattr(self, name) is not None:
                setattr(step, name, next(rest))
        return step

    def layout(self) -> tuple:
        """What fixes the step's kernels and shapes: the pool's storage, which slots, how many rows,
        tokens and slots attended (a CUDA graph's key; the positions and the mask's values may vary)."""
        return (id(self.pool), self.pool.keys.data_ptr(), self.pool.values.data_ptr(), self.pool.keys.shape,
                self.span, None if self.gather is None else int(self.gather.shape[0]), self.rows, self.width,
                self.length, int(self.tokens.shape[0]), self.mask is None, self.by_matmul, self.hidden_from)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
        """Store k, v (tokens, kv_heads, d) in the pool; return attention of q (tokens, heads, d) -> same shape."""
        keys, values = self.pool.keys[layer], self.pool.values[layer]  # (rooms, kv_heads, capacity, d)
        keys[self.slot_of_token, :, self.position_of_token] = k
        values[self.slot_of_token, :, self.position_of_token] = v
        if self.gather is None:
            lo, hi = self.span
            keys, values = keys[lo:hi, :, : self.length], values[lo:hi, :, : self.length]
        else:
            keys = keys[:, :, : self.length].index_select(0, self.gather)
            values = values[:, :, : self.length].index_select(0, self.gather)
        heads, dim = q.shape[1], q.shape[2]
        kv_heads = keys.shape[1]
        padded = q.new_zeros(self.rows, heads, self.width, dim)
        padded[self.row_of_token, :, self.rank_of_token] = q
        # Packed GQA: (rows, heads, width, d) -> (rows, kv_heads, group * width, d), head h = kv * group + g,
        # so the 8 query heads sharing a K/V head are that head's rows and K/V are never expanded.
        packed = padded.view(self.rows, kv_heads, self.group * self.width, dim)
        if self.by_matmul:
            out = attention_by_matmul(packed, keys, values, self.hidden, scale, self.hidden_from)
        else:
            out = F.scaled_dot_product_attention(packed, keys, values, attn_mask=self.mask, scale=scale)
        # reshape, not view: CUDA's fused kernels may return the output in a (rows, width, heads, d)
        # memory layout (measured: float32 on an H200), which a view cannot regroup
        return out.reshape(self.rows, heads, self.width, dim)[self.row_of_token, :, self.rank_of_token]


# Below, the flash kernel: it attends over the exact length, the matmuls over a whole bucket. Measured
# per layer, 2 threads, one 3B room's 12-token step: 0.44 (flash) vs 0.51 ms at 500 slots, 0.76 vs
# 0.47 at 1,000, 1.48 vs 0.85 at 2,000 (the matmuls with the tail-only mask, `hidden_from`).
MATMUL_MIN_SLOTS = 768
MATMUL_BUCKET_SLOTS = 1024


def uses_matmul_attention(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `attention_by_matmul` beats `scaled_dot_product_attention` here: on CPU in bfloat16.

    Measured on the 2-core AVX512-BF16 CPU, one thread, one room of the 3B shape
    (2 K/V heads x 8 query heads x 12 new tokens) in a pool, per layer: 6.7 -> 4.1 ms
    at 3,000 slots, 21.8 -> 14.9 ms at 10,000, 2.2 -> 1.5 ms at 1,000 (shorter: see
    MATMUL_MIN_SLOTS). A single room's single new token (no mask) is as fast either way
    and keeps the flash kernel. The error against float32 is the flash kernel's. In
    float32 the two are equal (the flash kernel is kept); on GPUs the fused kernels win.
    """
    return device.type == "cpu" and dtype == torch.bfloat16


def attention_by_matmul(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, hidden: torch.Tensor | None, scale: float, hidden_from: int = 0
) -> torch.Tensor:
    """softmax(q k^T * scale, with `hidden` positions at -inf) v, for (batch, heads, rows|length, d) tensors.

    `hidden` covers the slots from `hidden_from` on (every row sees the slots before).

    The scores are in the inputs' dtype and the softmax sums in float32 (torch's CPU
    softmax does for bfloat16), as in transformers' eager attention. The products are
    taken per (batch, head) matrix: `k` and `v` are views of the pool whose heads lie a
    whole capacity apart, and a batched matmul over such a view ran 2x slower than
    these contiguous 2-D ones (measured at 10,000 slots).
    """
    batch, heads, n, length = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
    q = q * scale
    scores = q.new_empty(batch, heads, n, length)
    for b in range(batch):
        for h in range(heads):
            torch.matmul(q[b, h], k[b, h].T, out=scores[b, h])
    if hidden is not None:
        scores[..., hidden_from:].masked_fill_(hidden, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    out = q.new_empty(batch, heads, n, v.shape[3])
    for b in range(batch):
        for h in range(heads):
            torch.matmul(probs[b, h], v[b, h], out=out[b, h])
    return out
