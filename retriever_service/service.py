"""The retriever as a library: ingest real images, search them by text, one alias-backed index."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from services.artifacts import artifact_store
from services.images import decode_image, to_png
from services.registry import get_spec
from services.schemas import SHARED_CORPUS, CorpusImage, IngestResponse, RetrieverInfo, SearchHit, SearchRequest, SearchResponse
from services.settings import Settings

from .checkpoints import CheckpointError
from .encoder import ClipEncoder
from .index import IndexedPoint, VectorIndex, open_index
from .reindex import deployment_record, migrate_legacy_deployments
from .tenancy import backfill_tenants

ID_NAMESPACE = uuid.UUID("6f1c1a52-8a55-4d0e-9b7c-2f1e0b3a9d11")
PAYLOAD_KEYS = ("caption", "object_id", "label", "source", "license")


class UnknownRetriever(LookupError):
    pass


class DeployedTowerUnavailable(RuntimeError):
    """The collection behind the alias was built with an image tower this process cannot load."""


def stable_id(content_hash: str, tenant: str = SHARED_CORPUS) -> str:
    """The same pixels of one owner get the same id in every deployment. The shared corpus keeps the
    content-only ids of before; a private image's id includes its tenant, so that an id never tells
    whether another tenant holds the same pixels (#10)."""
    return str(uuid.uuid5(ID_NAMESPACE, content_hash if tenant == SHARED_CORPUS else f"{tenant}/{content_hash}"))


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
        tenant=payload.get("tenant") or SHARED_CORPUS,
    )


@dataclass
class _Prepared:
    """An upload decoded and hashed, waiting for the batch's dedup check, encoding and upsert."""

    point_id: str
    digest: str
    image: Image.Image
    png: bytes
    payload: dict[str, Any]


R = TypeVar("R")


def _single(results: list[R | Exception]) -> R:
    if isinstance(results[0], Exception):
        raise results[0]
    return results[0]


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
        backfill_tenants(self.index)  # points from before #10 belong to the shared corpus
        self._towers: dict[str, ClipEncoder] = {}
        self._towers_lock = threading.Lock()
        self._ingest_lock = threading.Lock()  # dedup check + upsert must not interleave

    # --- ingest --------------------------------------------------------------------------
    def ingest(self, data: bytes, **fields: Any) -> IngestResponse:
        """Untrusted bytes (uploads): decoded under the upload limits, then `ingest_image`."""
        return _single(self.ingest_many([(data, fields)]))

    def ingest_image(self, image: Image.Image, **fields: Any) -> IngestResponse:
        return _single(self.ingest_many([(image, fields)]))

    def ingest_many(self, items: list[tuple[bytes | Image.Image, dict[str, Any]]]) -> list[IngestResponse | Exception]:
        """Several uploads at once: decoded and hashed one by one (a bad one fails alone), then one
        duplicate lookup, one image-encoder pass and one upsert for the new ones."""
        prepared: list[_Prepared | Exception] = []
        for source, fields in items:
            try:
                image = source if isinstance(source, Image.Image) else decode_image(
                    source, self.settings.max_upload_bytes, self.settings.max_upload_pixels
                )
                png = to_png(image)
                digest = hashlib.sha256(png).hexdigest()
                payload = self._payload(image, digest, **fields)
                prepared.append(_Prepared(stable_id(digest, payload["tenant"]), digest, image, png, payload))
            except Exception as exc:  # ImageRejected, or a field the payload refuses
                prepared.append(exc)
        valid = [p for p in prepared if isinstance(p, _Prepared)]
        results: dict[str, IngestResponse] = {}
        if valid:
            with self._ingest_lock:  # dedup check + upsert must not interleave
                results = self._ingest_prepared(valid)
        out: list[IngestResponse | Exception] = []
        seen: set[str] = set()
        for p in prepared:
            if isinstance(p, Exception):
                out.append(p)
                continue
            result = results[p.point_id]
            # the same pixels twice in one batch: the second reads as a duplicate, as if sent after the first
            out.append(result.model_copy(update={"duplicate": True}) if p.point_id in seen else result)
            seen.add(p.point_id)
        return out

    def _payload(self, image: Image.Image, digest: str, caption: str | None = None, object_id: str | None = None,
                 label: str | None = None, source: str | None = None, license: str | None = None,
                 metadata: dict[str, Any] | None = None, tenant: str | None = None) -> dict[str, Any]:
        return {
            "tenant": tenant or SHARED_CORPUS,
            "caption": caption,
            "object_id": object_id,
            "label": label,
            "source": source,
            "license": license,
            "content_hash": digest,
            "width": image.width,
            "height": image.height,
            "metadata": metadata or {},
        }

    def _ingest_prepared(self, batch: list[_Prepared]) -> dict[str, IngestResponse]:
        """By point id (owner + pixels): the existing point (duplicate), else a new point. Keyed by point id."""
        results: dict[str, IngestResponse] = {}
        ids = {p.point_id for p in batch}
        digests = sorted({p.digest for p in batch})
        owners = sorted({p.payload["tenant"] for p in batch})
        for point_id in self.index.find({"content_hash": digests, "tenant": owners}, limit=len(digests) * len(owners)):
            if point_id in ids:
                payload = self.index.get(point_id) or {}
                results[point_id] = IngestResponse(**point_to_corpus_image(point_id, payload).model_dump(), duplicate=True)
        new: dict[str, _Prepared] = {}
        for p in batch:
            if p.point_id not in results:
                new.setdefault(p.point_id, p)  # the same pixels twice in one batch: one point
        if not new:
            return results
        self.image_encoder()  # a tower this process cannot load fails here, before the store holds the files
        now = time.time()
        for p in new.values():
            p.payload.update(image_uri=self.store.put(f"corpus/{p.point_id}.png", p.png), created_at=now)
        written = self._write_in_collection_space(list(new.values()))
        for point_id, p in new.items():
            results[point_id] = IngestResponse(**point_to_corpus_image(p.point_id, written[p.point_id]).model_dump(), duplicate=False)
        return results

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

    def _write_in_collection_space(self, points: list[_Prepared]) -> dict[str, dict[str, Any]]:
        """Embed and upsert into the collection behind the alias, in that collection's space.

        The alias is resolved once, the points written into that very collection, and the alias read
        again: if a re-index switched it meanwhile, the points are embedded again for the new collection
        (whose copy pass may have missed them). Returns each point's payload last written."""
        written: set[str] = set()
        payloads: dict[str, dict[str, Any]] = {}
        collection = self.index.current_collection() or self.index.ensure(self.encoder.dim)
        while collection not in written and len(written) < 3:
            encoder, space = self.image_encoder(collection)
            vectors = encoder.encode_images([p.image for p in points])
            indexed = []
            for p, vector in zip(points, vectors, strict=True):
                payloads[p.point_id] = {**p.payload, "encoder": space}
                indexed.append(IndexedPoint(id=p.point_id, vector=vector.tolist(), payload=payloads[p.point_id]))
            self.index.upsert(indexed, collection=collection)
            written.add(collection)
            collection = self.index.current_collection() or collection
        return payloads

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
        return _single(self.search_many([request]))

    def search_many(self, requests: list[SearchRequest]) -> list[SearchResponse | Exception]:
        """Concurrent searches together: one text-encoder pass per encoder, then one index query each
        (a bad retriever name or filter fails its own request only)."""
        started = time.perf_counter()
        results: list[SearchResponse | Exception | None] = [None] * len(requests)
        groups: dict[int, tuple[ClipEncoder, list[tuple[int, RetrieverInfo]]]] = {}
        for i, request in enumerate(requests):
            try:
                encoder, info = self.text_encoder(request.retriever, request.model)
            except Exception as exc:  # UnknownRetriever, an unknown model (KeyError), a checkpoint that fails
                results[i] = exc
                continue
            groups.setdefault(id(encoder), (encoder, []))[1].append((i, info))
        collection = self.index.current_collection()
        for encoder, members in groups.values():
            vectors = encoder.encode_text([requests[i].query for i, _ in members])
            for (i, info), vector in zip(members, vectors, strict=True):
                request = requests[i]
                try:
                    hits = self.index.search(vector.tolist(), request.top_k, request.filter)
                except Exception as exc:  # InvalidFilter
                    results[i] = exc
                    continue
                info.collection = collection
                results[i] = SearchResponse(
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
        return [r if r is not None else RuntimeError("search not run") for r in results]

    def optimize_index(self) -> bool:
        """Build the index's search structures (HNSW) for what was written; True if anything changed."""
        return self.index.optimize()

    def close(self) -> None:
        self.index.close()
