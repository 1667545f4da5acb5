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

from .checkpoints import CheckpointError
from .encoder import ClipEncoder
from .index import IndexedPoint, VectorIndex, open_index
from .reindex import deployment_record, migrate_legacy_deployments

ID_NAMESPACE = uuid.UUID("6f1c1a52-8a55-4d0e-9b7c-2f1e0b3a9d11")
PAYLOAD_KEYS = ("caption", "object_id", "label", "source", "license")


class UnknownRetriever(LookupError):
    pass


class DeployedTowerUnavailable(RuntimeError):
    """The collection behind the alias was built with an image tower this process cannot load."""


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
        migrate_legacy_deployments(settings, self.index)  # records kept in a data-dir file before
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
            self.image_encoder()  # a tower this process cannot load fails here, before the store holds the file
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
            }
            payload = self._write_in_collection_space(point_id, image, payload)
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

    def image_encoder(self, collection: str | None = None) -> tuple[ClipEncoder, str]:
        """The encoder and image-space id for `collection` (default: the one behind the alias).

        Ingest must embed in the space of the collection it writes to: after `realrag index` deployed
        a checkpoint with a trained image tower, that tower, not the base one. The record is read from
        the index on every call (one metadata read; the CLIP forward pass costs far more), so a
        re-index run by another replica or a one-off job is seen by the next ingest here."""
        collection = collection or self.index.current_collection()
        record = deployment_record(self.index, collection) if collection else None
        tower = record.get("image_tower") if record else None
        try:
            encoder = self._checkpoint_encoder(tower) if tower else self.encoder
        except (CheckpointError, OSError) as exc:
            raise DeployedTowerUnavailable(
                f"collection {collection} was built by `realrag index` with the image tower of {tower}, which this "
                f"retriever cannot load ({exc}); put retriever checkpoints where every replica reads them "
                "(the model-cache volume)"
            ) from exc
        space = (record or {}).get("image_space") or encoder.id
        return encoder, str(space)

    def _write_in_collection_space(self, point_id: str, image: Image.Image, payload: dict[str, Any]) -> dict[str, Any]:
        """Embed and upsert into the collection behind the alias, in that collection's space.

        The alias is resolved once, the point written into that very collection, and the alias read
        again: if a re-index switched it meanwhile, the point is embedded again for the new collection
        (whose copy pass may have missed it). Returns the payload last written."""
        written: set[str] = set()
        collection = self.index.current_collection() or self.index.ensure(self.encoder.dim)
        while collection not in written and len(written) < 3:
            encoder, space = self.image_encoder(collection)
            payload = {**payload, "encoder": space}
            vector = encoder.encode_images([image])[0]
            self.index.upsert([IndexedPoint(id=point_id, vector=vector.tolist(), payload=payload)], collection=collection)
            written.add(collection)
            collection = self.index.current_collection() or collection
        return payload

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
