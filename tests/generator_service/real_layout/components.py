"""The kinds of folders a real repo holds, and how each is written into a ``RepoWriter``.

A repo spec (``repos.py``) maps folder names to one of these: a diffusers model, a transformers
model, a CLIP / T5 / Llama tokenizer, or a plain JSON config (scheduler, image processor). Configs are
the real repos' fields with only widths, depths and vocabularies shrunk; weights are seeded random
values of the real classes, written under the real file names in the real on-disk dtypes.
"""

from __future__ import annotations

import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from generator_service.tiny.tokenizers import clip_vocab_files
from tests.generator_service.real_layout.hub_cache import RepoWriter

WeightFiles = dict[str, "torch.dtype | tuple[torch.dtype, int]"]
"""weight file name -> on-disk dtype, or (dtype, number of shards)."""

# metadata keys of a config.json that are not constructor arguments
_CONFIG_META = {"_class_name", "_diffusers_version", "_name_or_path", "architectures", "torch_dtype", "transformers_version"}


def _write_weights(writer: RepoWriter, folder: str, tensors: dict[str, torch.Tensor], files: WeightFiles) -> None:
    for filename, spec in files.items():
        dtype, shards = spec if isinstance(spec, tuple) else (spec, 1)
        writer.safetensors(f"{folder}/{filename}" if folder else filename, tensors, dtype, shards)


def _prefixed(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


@dataclass
class DiffusersModel:
    """``config.json`` + ``diffusion_pytorch_model*.safetensors`` of a diffusers ``ModelMixin``."""

    cls: type
    config: dict[str, Any]
    files: WeightFiles
    built: Any = field(default=None, repr=False)

    def write(self, writer: RepoWriter, folder: str) -> None:
        torch.manual_seed(0)
        kwargs = {k: v for k, v in self.config.items() if k not in _CONFIG_META}
        self.built = self.cls.from_config(kwargs).eval()
        writer.json(_prefixed(folder, "config.json"), {"_class_name": self.cls.__name__, **self.config})
        _write_weights(writer, folder, self.built.state_dict(), self.files)


@dataclass
class TransformersModel:
    """``config.json`` + ``model*.safetensors`` of a transformers ``PreTrainedModel`` (or a model class
    built on one, like diffusers' ``StableDiffusionSafetyChecker``)."""

    cls: type
    config_cls: type
    config: dict[str, Any]
    files: WeightFiles
    built: Any = field(default=None, repr=False)

    def write(self, writer: RepoWriter, folder: str) -> None:
        torch.manual_seed(0)
        kwargs = {k: v for k, v in self.config.items() if k not in _CONFIG_META}
        self.built = self.cls(self.config_cls(**kwargs)).eval()
        writer.json(_prefixed(folder, "config.json"), self.config)
        with tempfile.TemporaryDirectory() as tmp:
            # save_pretrained decides which keys a checkpoint holds (tied weights once)
            self.built.save_pretrained(tmp, safe_serialization=True, max_shard_size="100GB")
            tensors = load_file(str(Path(tmp) / "model.safetensors"))
        _write_weights(writer, folder, tensors, self.files)


@dataclass
class JsonFile:
    """A config with no weights: ``scheduler_config.json``, ``preprocessor_config.json``."""

    filename: str
    body: dict[str, Any]

    def write(self, writer: RepoWriter, folder: str) -> None:
        writer.json(_prefixed(folder, self.filename), self.body)


@dataclass
class ClipTokenizer:
    """The real CLIP BPE (49,408 ids, from open_clip's bundled vocabulary), as SD/Flux repos ship it:
    ``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json``.
    ``pad_token`` is "<|endoftext|>" for OpenAI CLIP-L and "!" for the OpenCLIP towers (SD 2.x, SDXL's
    second tokenizer)."""

    pad_token: str = "<|endoftext|>"

    def write(self, writer: RepoWriter, folder: str) -> None:
        for name, text in clip_vocab_files().items():
            writer.text(_prefixed(folder, name), text)
        special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": self.pad_token, "unk_token": "<|endoftext|>"}
        writer.json(_prefixed(folder, "special_tokens_map.json"), special)
        config = {
            "add_prefix_space": False,
            "do_lower_case": True,
            "errors": "replace",
            "model_max_length": 77,
            "name_or_path": "openai/clip-vit-large-patch14",
            "special_tokens_map_file": "./special_tokens_map.json",
            "tokenizer_class": "CLIPTokenizer",
            **special,
        }
        writer.json(_prefixed(folder, "tokenizer_config.json"), config)


def _save_tokenizer(writer: RepoWriter, folder: str, tokenizer: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        for path in sorted(Path(tmp).iterdir()):
            writer.bytes(_prefixed(folder, path.name), path.read_bytes())


T5_VOCAB_SIZE = 256
"""Rows of the tiny T5 embedding: the tokenizer below has 4 + 94 + 52 + 100 = 250 ids (real: 32,128)."""


@dataclass
class T5Tokenizer:
    """A ``T5Tokenizer`` (Unigram, ``<pad>``/``</s>``/``<unk>`` = 0/1/2, 100 ``<extra_id_*>``) over
    single characters instead of 32,000 sentencepiece pieces; ``tokenizer.json`` +
    ``tokenizer_config.json`` as ``save_pretrained`` writes them. The real repos also ship
    ``spiece.model``, which transformers 5 does not read when ``tokenizer.json`` is present."""

    model_max_length: int = 512

    def write(self, writer: RepoWriter, folder: str) -> None:
        from transformers import T5Tokenizer as Tokenizer

        characters = string.ascii_letters + string.digits + string.punctuation
        vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
        vocab += [(char, -5.0) for char in characters]
        vocab += [("▁" + char, -4.0) for char in string.ascii_letters]
        vocab += [(f"<extra_id_{i}>", 0.0) for i in range(99, -1, -1)]
        if len(vocab) > T5_VOCAB_SIZE:
            raise RuntimeError(f"T5 vocabulary has {len(vocab)} ids, the tiny encoder {T5_VOCAB_SIZE}")
        _save_tokenizer(writer, folder, Tokenizer(vocab=vocab, extra_ids=100, model_max_length=self.model_max_length))


LLAMA_VOCAB_SIZE = 384
"""Rows of the tiny OmniGen embedding: 3 specials + 256 byte-fallback ids + 1 + 26 + 94 pieces + pad."""
LLAMA_PAD_ID = 380
"""``<|endoftext|>``, the last id (32000 in Phi-3's vocabulary): OmniGen's ``pad_token_id``."""


@dataclass
class LlamaTokenizer:
    """A ``LlamaTokenizer`` (BPE with byte fallback, ``<unk>``/``<s>``/``</s>`` = 0/1/2, BOS added,
    ``<|endoftext|>`` as pad, as Phi-3's) over single characters instead of 32,000 pieces."""

    model_max_length: int = 4096

    def write(self, writer: RepoWriter, folder: str) -> None:
        from transformers import LlamaTokenizer as Tokenizer

        vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
        vocab.update({f"<0x{byte:02X}>": 3 + byte for byte in range(256)})
        for piece in ["▁", *("▁" + c for c in string.ascii_lowercase), *(string.ascii_letters + string.digits + string.punctuation)]:
            vocab.setdefault(piece, len(vocab))
        tokenizer = Tokenizer(vocab=vocab, merges=[], model_max_length=self.model_max_length, add_bos_token=True, legacy=False)
        tokenizer.add_special_tokens({"pad_token": "<|endoftext|>"})
        if len(tokenizer) > LLAMA_VOCAB_SIZE or tokenizer.pad_token_id != LLAMA_PAD_ID:
            raise RuntimeError(f"Llama tokenizer: {len(tokenizer)} ids, pad {tokenizer.pad_token_id}; expected pad {LLAMA_PAD_ID}")
        _save_tokenizer(writer, folder, tokenizer)
