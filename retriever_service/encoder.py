"""open_clip dual encoder: text queries and corpus images into one L2-normalised space."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import open_clip
import open_clip.model
import torch
from open_clip.transformer import text_global_pool
from PIL import Image


def resolve_device(device: str = "auto") -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _register_config(model_name: str) -> str:
    """Accept an open_clip model name or a path to a model-config JSON (registered on the fly)."""
    path = Path(model_name)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"open_clip model config not found: {path}")
        open_clip.add_model_config(path)
        return path.stem
    return model_name


class ClipEncoder:
    """Batched open_clip encoder; the same instance serves text and image towers."""

    def __init__(
        self,
        model_name: str = "ViT-B-32",
        pretrained: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        text_tower: str | None = None,
    ) -> None:
        self._lock = threading.Lock()  # torch modules are not safe to call from many threads
        self.model_name = _register_config(model_name)
        self.pretrained = pretrained or None
        self.device = resolve_device(device)
        self.batch_size = batch_size
        if self.pretrained is None:
            torch.manual_seed(0)  # the same random model in every process (tests, demo)
        model, _, preprocess = open_clip.create_model_and_transforms(
            self.model_name, pretrained=self.pretrained, device=self.device
        )
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        self.text_tower: str | None = None
        if text_tower:
            self.load_text_tower(text_tower)
        self.dim = int(self._embed_dim())

    def _embed_dim(self) -> int:
        with torch.no_grad():
            return self.encode_text(["probe"]).shape[1]

    def load_text_tower(self, path: str) -> None:
        """Load a fine-tuned retriever checkpoint (safetensors state dict; image tower untouched)."""
        from retriever_service.checkpoints import load_retriever_weights

        load_retriever_weights(self.model, path, base_encoder_id=self.id)
        self.text_tower = str(path)

    @property
    def id(self) -> str:
        """Identity of the *image* space: what a collection's vectors depend on."""
        return f"{self.model_name}:{self.pretrained or 'random-init'}"

    @property
    def text_id(self) -> str:
        return self.text_tower or self.id

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size]).to(self.device)
            with self._lock:
                feats = self._text_features(tokens)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's text tower run on the tokens up to the batch's last end-of-text token, not all 77.

        With CLIP's causal mask and end-of-text pooling, what follows that token never reaches the
        pooled feature: same features (up to float rounding) at a fraction of the cost for short
        prompts. Other text towers (custom, non-causal, other pooling) run as they are."""
        model = self.model
        if not (
            isinstance(model, open_clip.model.CLIP)
            and model.text_pool_type == "argmax"
            and isinstance(model.attn_mask, torch.Tensor)
            and tokens.shape[1] == model.positional_embedding.shape[0]
        ):
            return model.encode_text(tokens)
        length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the highest id
        tokens = tokens[:, :length]
        cast_dtype = model.transformer.get_cast_dtype()
        x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
        x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
        x = text_global_pool(x, tokens, "argmax")
        if isinstance(model.text_projection, torch.nn.Linear):
            return model.text_projection(x)
        return x @ model.text_projection if model.text_projection is not None else x

    @torch.no_grad()
    def encode_images(self, images: list[Image.Image]) -> np.ndarray:
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.stack(
                [self.preprocess(im.convert("RGB")) for im in images[start : start + self.batch_size]]
            ).to(self.device)
            with self._lock:
                feats = self.model.encode_image(batch)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)


def set_torch_threads(threads: int) -> None:
    """Torch intra-op threads for this process (0: leave torch's default, one per core)."""
    if threads > 0:
        torch.set_num_threads(threads)
