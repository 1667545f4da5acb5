"""The retriever as a library: ingest real images, search them by text, one alias-backed index."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from typing import Any

from PIL import Image

from services.artifacts import artifact_store
from services.images import decode_image, to_png
from services.registry import get_spec
from services.schemas import CorpusImage, IngestResponse, RetrieverInfo, SearchHit, SearchRequest, SearchResponse
from services.settings import Settings

from .encoder import ClipEncoder
from .index import IndexedPoint, VectorIndex, open_index

ID_NAMESPACE = uuid.UUID("6f1c1a52-8a55-4d0e-9b7c-2f1e0b3a9d11")
PAYLOAD_KEYS = ("caption", "object_id", "label", "source", "license")


class UnknownRetriever(LookupError):
    pass


def stable_id(content_hash: str) -> str:
    """The same pixels always get the same id, in every deployment."""
    return str(uuid.uuid5(ID_NAMESPACE, content_hash))


def point_to_corpus_image(point_id: str, payload: dict[str, Any]) -> CorpusImage:
    return CorpusImage(
        id=point_id,
        caption=payload.get("caption"),
        object_id=payload.get("object_id"),
        label=payload.get("label"),
        image_uri=payload["image_uri"],
        content_hash=payload["content_hash"],
        width=payload.get("width", 0),
        height=payload.get("height", 0),
        metadata=payload.get("metadata", {}),
        created_at=payload.get("created_at"),
    )


class Retriever:
    def __init__(self, settings: Settings, encoder: ClipEncoder | None = None, index: VectorIndex | None = None):
        self.settings = settings
        self.encoder = encoder or ClipEncoder(
            settings.encoder_model,
            settings.encoder_pretrained,
            device=settings.encoder_device,
            batch_size=settings.encoder_batch_size,
        )
        self.index = index or open_index(settings)
        self.store = artifact_store(settings)
        self.collection = self.index.ensure(self.encoder.dim)
        self._towers: dict[str, ClipEncoder] = {}
        self._towers_lock = threading.Lock()
        self._ingest_lock = threading.Lock()  # dedup check + upsert must not interleave

    # --- ingest --------------------------------------------------------------------------
    def ingest(self, data: bytes, **fields: Any) -> IngestResponse:
        """Untrusted bytes (uploads): decoded under the upload limits, then `ingest_image`."""
        image = decode_image(data, self.settings.max_upload_bytes, self.settings.max_upload_pixels)
        return self.ingest_image(image, **fields)

    def ingest_image(
        self,
        image: Image.Image,
        caption: str | None = None,
        object_id: str | None = None,
        label: str | None = None,
        source: str | None = None,
        license: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> IngestResponse:
        png = to_png(image)
        digest = hashlib.sha256(png).hexdigest()
        point_id = stable_id(digest)
        with self._ingest_lock:
            existing = self.index.find({"content_hash": digest})
            if existing:
                payload = self.index.get(existing[0]) or {}
                return IngestResponse(**point_to_corpus_image(existing[0], payload).model_dump(), duplicate=True)
            key = self.store.put(f"corpus/{point_id}.png", png)
            payload = {
                "caption": caption,
                "object_id": object_id,
                "label": label,
                "source": source,
                "license": license,
                "image_uri": key,
                "content_hash": digest,
                "width": image.width,
                "height": image.height,
                "metadata": metadata or {},
                "created_at": time.time(),
                "encoder": self.encoder.id,
            }
            vector = self.image_encoder().encode_images([image])[0]
            self.index.upsert([IndexedPoint(id=point_id, vector=vector.tolist(), payload=payload)])
        return IngestResponse(**point_to_corpus_image(point_id, payload).model_dump(), duplicate=False)

    def get(self, point_id: str) -> CorpusImage | None:
        payload = self.index.get(point_id)
        return point_to_corpus_image(point_id, payload) if payload else None

    def delete(self, point_id: str) -> bool:
        payload = self.index.get(point_id)
        if payload is None:
            return False
        self.index.delete(point_id)
        self.store.delete(payload["image_uri"])
        return True

    # --- encoders ------------------------------------------------------------------------
    def _checkpoint_encoder(self, checkpoint: str) -> ClipEncoder:
        """The base encoder with a retriever checkpoint's towers loaded (cached per checkpoint)."""
        with self._towers_lock:
            if checkpoint not in self._towers:
                self._towers[checkpoint] = ClipEncoder(
                    self.settings.encoder_model,
                    self.settings.encoder_pretrained,
                    device=self.settings.encoder_device,
                    batch_size=self.settings.encoder_batch_size,
                    text_tower=checkpoint,
                )
            return self._towers[checkpoint]

    def image_encoder(self) -> ClipEncoder:
        """Ingest must embed in the space of the collection behind the alias: after `realrag index`
        deployed a checkpoint with a trained image tower, that tower, not the base one."""
        from .reindex import image_tower_for_collection

        collection = self.index.current_collection()
        tower = image_tower_for_collection(self.settings, collection) if collection else None
        return self._checkpoint_encoder(tower) if tower else self.encoder

    # --- search --------------------------------------------------------------------------
    def text_encoder(self, kind: str | None, model: str | None) -> tuple[ClipEncoder, RetrieverInfo]:
        """The zero-shot base encoder, or the text tower trained for `model` (kind standard/reflective)."""
        if model and kind is None:
            kind = get_spec(model, self.settings).default_retriever
        if kind in (None, "zero-shot"):
            return self.encoder, RetrieverInfo(kind="zero-shot", collection=self.collection)
        if not model:
            raise UnknownRetriever(f"retriever {kind!r} needs a model key")
        checkpoint = get_spec(model, self.settings).retrievers.get(kind)
        if checkpoint is None:
            raise UnknownRetriever(f"model {model!r} has no {kind!r} retriever configured")
        return self._checkpoint_encoder(checkpoint), RetrieverInfo(
            kind=kind, checkpoint=checkpoint, collection=self.collection
        )

    def search(self, request: SearchRequest) -> SearchResponse:
        started = time.perf_counter()
        encoder, info = self.text_encoder(request.retriever, request.model)
        query = encoder.encode_text([request.query])[0]
        hits = self.index.search(query.tolist(), request.top_k, request.filter)
        info.collection = self.index.current_collection()
        return SearchResponse(
            hits=[
                SearchHit(
                    id=h.id,
                    score=h.score,
                    caption=h.payload.get("caption"),
                    object_id=h.payload.get("object_id"),
                    label=h.payload.get("label"),
                    image_uri=h.payload["image_uri"],
                    metadata=h.payload.get("metadata", {}),
                )
                for h in hits
            ],
            retriever=info,
            took_ms=(time.perf_counter() - started) * 1000,
        )

    def close(self) -> None:
        self.index.close()
