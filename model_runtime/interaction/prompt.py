"""Token sequences of the online loop (DESIGN.md section 2), built from `constants` ids only."""

from __future__ import annotations

from tokenizers import Tokenizer

from .. import constants as c

# One listening step: AUDIO_BEGIN, 10 audio positions, ASSISTANT. The PAD
# embeddings at AUDIO_SLOTS are replaced by the chunk's encoder vectors.
CHUNK_IDS: tuple[int, ...] = (c.AUDIO_BEGIN, *([c.PAD] * c.AUDIO_VECTORS_PER_CHUNK), c.ASSISTANT)
AUDIO_SLOTS = slice(1, 1 + c.AUDIO_VECTORS_PER_CHUNK)


def text_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def prefix_ids(tokenizer: Tokenizer, system_prompt: str) -> list[int]:
    """ONLINE, ENGLISH, SYSTEM, TEXT_BEGIN, system prompt, TEXT_END (SYSTEM == TEXT_BEGIN: the id appears twice)."""
    return [c.ONLINE, c.ENGLISH, c.SYSTEM, c.TEXT_BEGIN, *text_ids(tokenizer, system_prompt), c.TEXT_END]


def instruction_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """An in-stream instruction as a user text turn: USER, TEXT_BEGIN, text, TEXT_END."""
    return [c.USER, c.TEXT_BEGIN, *text_ids(tokenizer, text), c.TEXT_END]
