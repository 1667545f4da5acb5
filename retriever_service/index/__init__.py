"""Vector index factory: a remote Qdrant by URL, or Qdrant's engine embedded in-process."""

from __future__ import annotations

from services.settings import Settings

from .base import CollectionMissing, IndexedPoint, InvalidFilter, ScoredHit, VectorIndex, next_version_name


def open_index(settings: Settings) -> VectorIndex:
    if settings.qdrant_url:
        from .qdrant_client_index import QdrantClientIndex

        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClientIndex.remote(settings.qdrant_url, settings.collection_alias, api_key=key)
    if settings.qdrant_engine == "local":
        from .qdrant_client_index import QdrantClientIndex

        return QdrantClientIndex.local(settings.qdrant_root, settings.collection_alias)
    from .edge_index import EdgeIndex

    return EdgeIndex(settings.qdrant_root, settings.collection_alias, hnsw_ef=settings.hnsw_ef)


__all__ = [
    "CollectionMissing",
    "IndexedPoint",
    "InvalidFilter",
    "ScoredHit",
    "VectorIndex",
    "next_version_name",
    "open_index",
]
