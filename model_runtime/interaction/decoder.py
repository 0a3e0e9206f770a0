"""The LM forward pass of the streaming loop, with our own preallocated KV cache.

Why not `Qwen2ForCausalLM.forward` with a transformers cache: measured on the
2-core CPU (DESIGN.md section 6) most of a long-context step is spent growing a
`DynamicCache` by concatenation and expanding grouped-query K/V 8x for
attention (transformers' sdpa path expands K/V whenever a mask is needed, i.e.
for every 12-token listening step); a `StaticCache` attends over its whole
preallocated length. Here the weights and sub-modules are transformers' own
(norms, projections, MLP, rotary embedding, `apply_rotary_pos_emb`); only the
attention around the cache is ours:

- `KVCache` is one preallocated buffer per stream; slot i always holds the
  token at position i (positions stay contiguous, so a roll re-rotates the
  keys it moves: see `KVCache.compact`).
- attention is GQA-aware without expanding K/V: the queries of the 8 heads that
  share a K/V head are folded into that head's query rows ("packed GQA"), so
  `scaled_dot_product_attention` sees (kv_heads, 8 * n, head_dim) queries
  against the (kv_heads, length, head_dim) cache and only the used slots.

`tests/runtime/test_interaction_decoder.py` proves the logits equal
`Qwen2ForCausalLM.forward` with a `DynamicCache` over a multi-step sequence,
and that a compacted cache equals a fresh prefill of the kept tokens at layer 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.qwen2.modeling_qwen2 import apply_rotary_pos_emb, rotate_half


class KVCache:
    """Preallocated keys and values of every layer: (layers, kv_heads, capacity, head_dim) each."""

    def __init__(
        self,
        n_layers: int,
        n_kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (n_layers, n_kv_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity
        self.length = 0  # slots [0, length) are filled; slot i = position i

    def nbytes(self) -> int:
        return self.keys.numel() * self.keys.element_size() * 2

    def truncate(self, length: int) -> None:
        """Forget every slot from `length` on (e.g. back to the prompt prefix after a fault)."""
        if not 0 <= length <= self.length:
            raise ValueError(f"cannot truncate a cache of {self.length} slots to {length}")
        self.length = length

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
        keep = keep.to(self.keys.device)
        new_slots = torch.arange(start, start + n, device=self.keys.device)
        delta = (new_slots - keep).to(torch.float32)
        angles = delta[:, None] * inv_freq.to(device=self.keys.device, dtype=torch.float32)[None, :]
        emb = torch.cat((angles, angles), dim=-1)  # (n, head_dim), the layout of rotate_half
        cos, sin = emb.cos(), emb.sin()
        for layer in range(self.keys.shape[0]):  # per layer: the temporary is one layer's kept keys
            k = self.keys[layer].index_select(1, keep).float()
            k = k * cos + rotate_half(k) * sin
            self.keys[layer, :, start : start + n] = k.to(self.keys.dtype)
            self.values[layer, :, start : start + n] = self.values[layer].index_select(1, keep)
        self.length = start + n


class CachedDecoder:
    """Runs a transformers `Qwen2ForCausalLM` step by step on a `KVCache`.

    Holds no per-stream state: many streams (rooms) can share one decoder, each
    with its own cache from `new_cache`.
    """

    def __init__(self, lm: torch.nn.Module) -> None:
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

    def new_cache(self, capacity: int) -> KVCache:
        return KVCache(len(self.layers), self.n_kv_heads, self.head_dim, capacity, self.dtype, self.device)

    def embed(self, ids: list[int]) -> torch.Tensor:
        """(n,) token ids -> (n, width) input embeddings."""
        return self.embed_tokens(torch.tensor(ids, dtype=torch.long, device=self.device))

    def compact(self, cache: KVCache, keep: torch.Tensor, start: int) -> None:
        cache.compact(keep, start, self.rotary.inv_freq)

    def forward(self, cache: KVCache, embeds: torch.Tensor) -> torch.Tensor:
        """Append `embeds` (n, width) at the cache's end; return the last position's logits (vocab,), float32."""
        return self.forward_many([cache], [embeds])[0]

    @torch.inference_mode()
    def forward_many(self, caches: list[KVCache], embeds: list[torch.Tensor]) -> torch.Tensor:
        """One step for several streams at once (batched rooms): `embeds[r]` (n_r, width) goes onto `caches[r]`.

        Returns (rooms, vocab) float32: row r is the logits of room r's last new position.
        The rooms' tokens are concatenated into one (1, sum n_r, width) sequence, so
        every projection and MLP streams the weights once for all rooms (what makes a
        step memory-bound on CPU and launch-bound on GPU). Only attention is per room:
        each room's queries attend to its own cache at its own positions (ragged
        lengths need no padding and no mask across rooms), causally within its
        n_r new rows. Row r depends on room r's inputs alone, so a non-finite room
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
        offsets = [sum(counts[:r]) for r in range(len(counts))]
        total = sum(counts)
        x = torch.cat([e.to(self.dtype) for e in embeds]).unsqueeze(0)  # (1, total, width)
        positions = torch.cat(
            [torch.arange(start, start + n, device=self.device) for start, n in zip(starts, counts)]
        ).unsqueeze(0)
        cos, sin = self.rotary(x, positions)
        masks = [self._causal_mask(start, n) for start, n in zip(starts, counts)]
        for index, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            q = attn.q_proj(h).view(1, total, self.n_heads, self.head_dim).transpose(1, 2)
            k = attn.k_proj(h).view(1, total, self.n_kv_heads, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(1, total, self.n_kv_heads, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            outs = []
            for cache, start, n, offset, mask in zip(caches, starts, counts, offsets, masks):
                end = start + n
                cache.keys[index, :, start:end] = k[0, :, offset : offset + n]
                cache.values[index, :, start:end] = v[0, :, offset : offset + n]
                keys = cache.keys[index, :, :end].unsqueeze(0)
                values = cache.values[index, :, :end].unsqueeze(0)
                # (1, heads, n, d) -> (1, kv_heads, group * n, d): head h = kv * group + r
                packed = q[:, :, offset : offset + n].reshape(1, self.n_kv_heads, self.group * n, self.head_dim)
                out = F.scaled_dot_product_attention(packed, keys, values, attn_mask=mask, scale=self.scale)
                outs.append(out.reshape(1, self.n_heads, n, self.head_dim).transpose(1, 2).reshape(1, n, -1))
            x = x + attn.o_proj(outs[0] if len(outs) == 1 else torch.cat(outs, dim=1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        for cache, start, n in zip(caches, starts, counts):
            cache.length = start + n
        last = self.final_norm(x[0, [offset + n - 1 for offset, n in zip(offsets, counts)]])
        return self.lm_head(last).float()

    def _causal_mask(self, start: int, n: int) -> torch.Tensor | None:
        """Causal mask of n new rows against all start + n slots, repeated for the
        `group` query heads folded into each K/V head (rows are head-major); None for one row."""
        if n == 1:
            return None
        rows = torch.arange(start, start + n, device=self.device)[:, None]
        cols = torch.arange(start + n, device=self.device)[None, :]
        return (cols <= rows).repeat(self.group, 1)
