"""Our cached LM step (preallocated cache, packed GQA, re-rotating compaction) vs transformers' own forward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache, Qwen2Config, Qwen2ForCausalLM

from model_runtime.interaction import decoder as decoder_module
from model_runtime.interaction.decoder import CachedDecoder, attention_by_matmul


def small_lm(seed: int = 0) -> Qwen2ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=97,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    return Qwen2ForCausalLM(config).eval()


@torch.inference_mode()
def reference_logits(lm: Qwen2ForCausalLM, steps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Last-position logits of each step via Qwen2ForCausalLM.forward with a DynamicCache."""
    cache = DynamicCache(config=lm.config)
    out = []
    for embeds in steps:
        result = lm(inputs_embeds=embeds.unsqueeze(0), cache=cache, use_cache=True)
        out.append(result.logits[0, -1].float())
    return out


def test_steps_match_transformers_forward():
    lm = small_lm()
    decoder = CachedDecoder(lm)
    torch.manual_seed(1)
    # a prefix, two 12-token listening steps with replaced embeddings, three 1-token decode steps
    steps = [decoder.embed(list(range(7)))]
    for _ in range(2):
        chunk = decoder.embed([5] * 12).clone()
        chunk[1:11] = torch.randn(10, 64)
        steps.append(chunk)
    steps += [decoder.embed([i]) for i in (3, 9, 4)]
    expected = reference_logits(lm, steps)
    cache = decoder.new_cache(64)
    for embeds, want in zip(steps, expected):
        got = decoder.forward(cache, embeds)
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert cache.length == 7 + 24 + 3


def test_compacted_cache_reads_as_if_computed_at_new_positions():
    """At layer 0, K/V of a token depend only on the token itself; after dropping slots and
    re-rotating, the cache must equal a fresh prefill of just the kept tokens."""
    lm = small_lm()
    lm.model.layers = lm.model.layers[:1]
    lm.config.num_hidden_layers = 1
    decoder = CachedDecoder(lm)
    ids = list(range(3, 40))
    cache = decoder.new_cache(64)
    decoder.forward(cache, decoder.embed(ids))
    prefix = 4
    keep = torch.tensor([10, 11, 12, 20, 21, 35, 36])  # slots after the prefix
    decoder.compact(cache, keep, start=prefix)
    assert cache.length == prefix + len(keep)

    fresh = decoder.new_cache(64)
    decoder.forward(fresh, decoder.embed(ids[:prefix] + [ids[i] for i in keep.tolist()]))
    n = fresh.length
    assert torch.allclose(cache.keys[:, :, :n], fresh.keys[:, :, :n], atol=1e-5)
    assert torch.allclose(cache.values[:, :, :n], fresh.values[:, :, :n], atol=1e-6)
    # and the next step sees the same logits
    nxt = decoder.embed([7, 8])
    assert torch.allclose(decoder.forward(cache, nxt), decoder.forward(fresh, nxt), atol=1e-5)


def test_full_cache_is_refused():
    decoder = CachedDecoder(small_lm())
    cache = decoder.new_cache(8)
    decoder.forward(cache, decoder.embed([1] * 6))
    with pytest.raises(ValueError, match="KV cache full"):
        decoder.forward(cache, decoder.embed([1] * 3))


def test_attention_by_matmul_equals_sdpa_under_a_ragged_mask():
    """The CPU bfloat16 path computes what `scaled_dot_product_attention` does, hidden slots included."""
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 2, 24, 16), torch.randn(2, 2, 50, 16), torch.randn(2, 2, 50, 16)
    ends = torch.tensor([[30], [50]])  # room 0 sees 30 slots, room 1 all 50 (a shorter room in a batch)
    mask = (torch.arange(50) < ends)[:, None, None, :].expand(2, 1, 24, 50)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.25)
    got = attention_by_matmul(q, k, v, ~mask, 0.25)
    assert torch.allclose(got, want, atol=1e-6)
    # the mask given from the first slot any row may not see: every row sees all slots before it
    tail = attention_by_matmul(q, k, v, (~mask)[..., 30:].contiguous(), 0.25, hidden_from=30)
    assert torch.equal(tail, got)
    # bfloat16: the same rounding error against float32 as the flash kernel's
    bf = [t.bfloat16() for t in (q, k, v)]
    err_matmul = (attention_by_matmul(*bf, ~mask, 0.25).float() - want).abs().max()
    err_sdpa = (F.scaled_dot_product_attention(*bf, attn_mask=mask, scale=0.25).float() - want).abs().max()
    assert err_matmul <= 2 * err_sdpa + 1e-3, (err_matmul, err_sdpa)


def test_bfloat16_steps_on_cpu_attend_by_matmul_and_match_transformers_eager(monkeypatch):
    monkeypatch.setattr(decoder_module, "MATMUL_MIN_SLOTS", 0)  # (a long context's path on a short one)
    lm = small_lm().to(torch.bfloat16)
    lm.config._attn_implementation = "eager"  # transformers' own arithmetic in bfloat16: the reference
    decoder = CachedDecoder(lm)
    assert decoder.by_matmul and not CachedDecoder(small_lm()).by_matmul  # float32 keeps the flash kernel
    steps = [decoder.embed(list(range(9))), decoder.embed([5] * 12), decoder.embed([3])]
    cache = decoder.new_cache(64)
    for embeds, want in zip(steps, reference_logits(lm, steps)):
        got = decoder.forward(cache, embeds)
        assert (got - want).abs().max() <= 0.05 * want.abs().max(), (got - want).abs().max()
        assert got.argmax() == want.argmax()


def test_matmul_attention_runs_on_few_shapes_from_long_contexts_on():
    """oneDNN builds and keeps a kernel per matmul shape: the lengths are rounded up to a bucket (a length
    growing by 12 per step would be a new shape every step: gigabytes over a day), and short contexts
    keep the flash kernel."""
    from model_runtime.interaction.decoder import MATMUL_BUCKET_SLOTS, MATMUL_MIN_SLOTS, KVPool, _PoolStep

    pool = KVPool(1, 2, 8, 5000, torch.bfloat16, "cpu", rooms=2)
    def step(start, n=12, rooms=1):
        return _PoolStep(pool, list(range(rooms)), [start] * rooms, [n] * rooms, [n * r for r in range(rooms)], 4, torch.device("cpu"), True)
    assert not step(MATMUL_MIN_SLOTS - 100).by_matmul  # short: the flash kernel
    lengths = {step(start).length for start in range(2100, 3000, 12)}
    assert lengths == {3 * MATMUL_BUCKET_SLOTS} and step(2100).by_matmul
    assert step(4990).length == 5000  # (never past the pool's capacity)
    assert not step(3000, n=1).by_matmul and step(3000, n=1, rooms=2).by_matmul  # one decode row needs no mask
