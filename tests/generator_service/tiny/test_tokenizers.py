"""The offline tokenizers match the real CLIP vocabulary and behave like T5/Llama tokenizers."""

from __future__ import annotations

from generator_service.tiny.tokenizers import (
    BYTE_BOS_ID,
    BYTE_EOS_ID,
    BYTE_PAD_ID,
    BYTE_VOCAB_SIZE,
    CLIP_EOS_ID,
    byte_level_tokenizer,
    clip_tokenizer,
)


def test_clip_tokenizer_reproduces_clip_ids():
    tokenizer = clip_tokenizer()
    assert len(tokenizer) == 49408
    assert tokenizer.model_max_length == 77
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    padded = tokenizer("the", padding="max_length", max_length=77).input_ids
    assert padded[:3] == [49406, 518, 49407] and len(padded) == 77 and padded[-1] == CLIP_EOS_ID


def test_byte_level_tokenizer_round_trips_utf8():
    t5_like = byte_level_tokenizer()
    llama_like = byte_level_tokenizer(64, add_bos=True)
    ids = t5_like("fox é").input_ids
    assert ids[-1] == BYTE_EOS_ID and max(ids) < BYTE_VOCAB_SIZE
    assert llama_like("fox").input_ids[0] == BYTE_BOS_ID
    assert llama_like.decode(llama_like("fox é").input_ids, skip_special_tokens=True) == "fox é"
    assert t5_like("x", padding="max_length", max_length=6).input_ids[-1] == BYTE_PAD_ID
