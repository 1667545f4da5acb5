"""Tokenizers for the tiny twins, built offline (no model hub).

* ``clip_tokenizer()``: the real CLIP BPE tokenizer (49,408 ids, SOT 49406, EOT 49407) rebuilt from
  the ``bpe_simple_vocab_16e6.txt.gz`` that ships inside the open_clip_torch wheel.
* ``byte_level_tokenizer()``: a small byte-level BPE (``tokenizers`` library) standing in for the
  T5 / Llama sentencepiece tokenizers of SD3, Flux and OmniGen; its vocabulary is 256 bytes plus
  the special tokens, so the tiny text encoders can use a vocabulary of a few hundred rows.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path

CLIP_VOCAB_SIZE = 49408
CLIP_BOS_ID = 49406
CLIP_EOS_ID = 49407
CLIP_MAX_LENGTH = 77

# byte-level stand-in for sentencepiece tokenizers: <pad>/<s>/</s>/<unk> then the 256 byte symbols
BYTE_SPECIAL_TOKENS = ("<pad>", "<s>", "</s>", "<unk>")
BYTE_PAD_ID, BYTE_BOS_ID, BYTE_EOS_ID, BYTE_UNK_ID = range(4)
BYTE_VOCAB_SIZE = len(BYTE_SPECIAL_TOKENS) + 256


def tokenizer_cache_dir() -> Path:
    """``$REALRAG_TOKENIZER_CACHE``, else ``$XDG_CACHE_HOME/realrag/tokenizers`` (~/.cache by default)."""
    root = os.environ.get("REALRAG_TOKENIZER_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "realrag" / "tokenizers"


def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 / CLIP table mapping every byte to a printable unicode character."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(code) for code in codes), strict=True))


def _open_clip_bpe_path() -> Path:
    # find_spec does not import open_clip (whose import pulls in torchvision)
    spec = importlib.util.find_spec("open_clip")
    if spec is None or spec.origin is None:
        raise RuntimeError("open_clip_torch is not installed; it ships the CLIP BPE vocabulary")
    path = Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise RuntimeError(f"CLIP BPE vocabulary not found at {path}")
    return path


def clip_vocab_files() -> dict[str, str]:
    """The CLIP tokenizer's ``vocab.json`` and ``merges.txt`` (file name -> text), as CLIP repos ship them."""
    lines = gzip.open(_open_clip_bpe_path(), "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    byte_symbols = list(bytes_to_unicode().values())
    vocab = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    vocab += ["".join(merge) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"CLIP vocabulary has {len(vocab)} entries, expected {CLIP_VOCAB_SIZE}")
    return {
        "vocab.json": json.dumps({tok: i for i, tok in enumerate(vocab)}),
        "merges.txt": "#version: 0.2\n" + "\n".join(" ".join(merge) for merge in merges) + "\n",
    }


def _write_clip_vocab(target: Path) -> None:
    files = clip_vocab_files()
    # write into a private temp dir and rename, so concurrent processes never see half a vocabulary
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + "."))
    for name, text in files.items():
        (staging / name).write_text(text, "utf-8")
    try:
        staging.rename(target)
    except OSError:  # another process won the race
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()


@lru_cache(maxsize=1)
def clip_tokenizer():
    """The standard CLIP tokenizer ("a" -> 320, "the" -> 518), padded to 77 tokens."""
    from transformers import CLIPTokenizer

    target = tokenizer_cache_dir() / "clip-bpe-16e6"
    if not (target / "merges.txt").is_file():
        try:
            _write_clip_vocab(target)
        except PermissionError:  # read-only home (containers): fall back to the temp dir
            target = Path(tempfile.gettempdir()) / "realrag-tokenizers" / "clip-bpe-16e6"
            if not (target / "merges.txt").is_file():
                _write_clip_vocab(target)
    tokenizer = CLIPTokenizer.from_pretrained(str(target), model_max_length=CLIP_MAX_LENGTH)
    if len(tokenizer) != CLIP_VOCAB_SIZE or tokenizer.eos_token_id != CLIP_EOS_ID:
        raise RuntimeError(
            f"CLIP tokenizer built from {target} is inconsistent "
            f"(size {len(tokenizer)}, eos {tokenizer.eos_token_id}); delete the directory and retry"
        )
    return tokenizer


@lru_cache(maxsize=4)
def byte_level_tokenizer(model_max_length: int = 64, add_bos: bool = False, add_eos: bool = True):
    """A byte-level BPE with no merges: every UTF-8 byte is one token.

    Defaults behave like T5 (``</s>`` appended, no BOS); ``add_bos=True, add_eos=False`` behaves
    like the Llama/Phi-3 tokenizer OmniGen uses (``<s>`` prepended only).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    byte_symbols = list(bytes_to_unicode().values())
    vocab = {tok: i for i, tok in enumerate(BYTE_SPECIAL_TOKENS)}
    vocab.update({symbol: len(BYTE_SPECIAL_TOKENS) + i for i, symbol in enumerate(byte_symbols)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    bos = "<s> " if add_bos else ""
    eos = " </s>" if add_eos else ""
    single = f"{bos}$A{eos}"
    pair = f"{bos}$A{eos} $B{eos}"
    backend.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[("<s>", BYTE_BOS_ID), ("</s>", BYTE_EOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=model_max_length,
    )
