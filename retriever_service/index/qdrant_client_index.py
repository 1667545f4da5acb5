"""The same index interface over qdrant-client: a Qdrant server by URL (production), or
qdrant-client's local mode (``:memory:`` / a path; a slow pure-Python stand-in used in tests).

Aliases are Qdrant's own, switched in one ``update_collection_aliases`` call (atomic on the server).
The client is created lazily, in the process that uses it (never across a fork), over REST.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qdrant_client import QdrantClient, models

from .base import INDEXED_FIELDS, CollectionMissing, IndexedPoint, InvalidFilter, ScoredHit, describe_filter_value, next_version_name

VECTOR = "retrieval"


def to_filter(conditions: dict[str, Any] | None) -> models.Filter | None:
    """Equality conditions as a Qdrant Filter; InvalidFilter for values Qdrant cannot match."""
    if not conditions:
        return None
    must: list[models.Condition] = []
    for key, value in conditions.items():
        try:
            if isinstance(value, (list, tuple)):
                must.append(models.FieldCondition(key=key, match=models.MatchAny(any=list(value))))
            else:
                must.append(models.FieldCondition(key=key, match=models.MatchValue(value=value)))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise InvalidFilter(f"{key!r}: {describe_filter_value(value)} cannot be matched") from exc
    return models.Filter(must=must)


class QdrantClientIndex:
    def __init__(self, alias: str, client: QdrantClient | None = None, **client_kwargs: Any) -> None:
        """`client`: an existing client (several index objects over one Qdrant, as replicas are)."""
        self.alias = alias
        self._client_kwargs = client_kwargs
        self._client: QdrantClient | None = client

    @classmethod
    def remote(cls, url: str, alias: str, api_key: str | None = None) -> QdrantClientIndex:
        return cls(alias, url=url, api_key=api_key, prefer_grpc=False, timeout=10)

    @classmethod
    def local(cls, path: Path | str, alias: str) -> QdrantClientIndex:
        location = str(path)
        if location == ":memory:":
            return cls(alias, location=":memory:")
        Path(location).mkdir(parents=True, exist_ok=True)
        return cls(alias, path=location)

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            self._client = QdrantClient(**self._client_kwargs)
        return self._client

    # --- collections and alias -----------------------------------------------------------
    def collections(self) -> list[str]:
        return sorted(c.name for c in self.client.get_collections().collections)

    def current_collection(self) -> str | None:
        for alias in self.client.get_aliases().aliases:
            if alias.alias_name == self.alias:
                return alias.collection_name
        return None

    def create_collection(self, name: str, dim: int) -> None:
        self.client.create_collection(
            name,
            vectors_config={VECTOR: models.VectorParams(size=dim, distance=models.Distance.COSINE)},
        )
        for field in INDEXED_FIELDS:
            self.client.create_payload_index(name, field, models.PayloadSchemaType.KEYWORD)

    def switch_alias(self, collection: str) -> str | None:
        if not self.client.collection_exists(collection):
            raise CollectionMissing(collection)
        previous = self.current_collection()
        actions: list[Any] = []
        if previous is not None:
            actions.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=self.alias)))
        actions.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=self.alias)
            )
        )
        self.client.update_collection_aliases(change_aliases_operations=actions)
        return previous

    def ensure(self, dim: int) -> str:
        current = self.current_collection()
        if current is None:
            current = next_version_name(self.alias, self.collections())
            self.create_collection(current, dim)
            self.switch_alias(current)
        return current

    def drop_collection(self, name: str) -> None:
        if name == self.current_collection():
            raise ValueError(f"{name} is behind alias {self.alias}; switch the alias first")
        self.client.delete_collection(name)

    def dimension(self) -> int | None:
        current = self.current_collection()
        if current is None:
            return None
        vectors = self.client.get_collection(current).config.params.vectors
        return vectors[VECTOR].size

    def collection_metadata(self, name: str) -> dict[str, Any]:
        """Qdrant's own collection metadata (server >= 1.16; qdrant-client's local mode too)."""
        if not self.client.collection_exists(name):
            raise CollectionMissing(name)
        return dict(self.client.get_collection(name).config.metadata or {})

    def update_collection_metadata(self, name: str, values: dict[str, Any]) -> None:
        if not self.client.collection_exists(name):
            raise CollectionMissing(name)
        self.client.update_collection(name, metadata=values)

    def _target(self) -> str:
        current = self.current_collection()
        if current is None:
            raise CollectionMissing(self.alias)
        return current

    # --- points --------------------------------------------------------------------------
    def upsert(self, points: list[IndexedPoint], collection: str | None = None) -> None:
        self.client.upsert(
            collection or self._target(),
            points=[models.PointStruct(id=p.id, vector={VECTOR: list(p.vector)}, payload=p.payload) for p in points],
            wait=True,
        )

    def search(
        self, vector: list[float], top_k: int, filter: dict[str, Any] | None = None
    ) -> list[ScoredHit]:
        if self.current_collection() is None:
            return []
        response = self.client.query_points(
            self.alias,
            query=list(vector),
            using=VECTOR,
            limit=top_k,
            query_filter=to_filter(filter),
            with_payload=True,
        )
        return [ScoredHit(id=str(p.id), score=float(p.score), payload=dict(p.payload or {})) for p in response.points]

    def get(self, point_id: str) -> dict[str, Any] | None:
        if self.current_collection() is None:
            return None
        records = self.client.retrieve(self.alias, ids=[point_id], with_payload=True)
        return dict(records[0].payload or {}) if records else None

    def delete(self, point_id: str) -> bool:
        if self.get(point_id) is None:
            return False
        self.client.delete(self.alias, points_selector=models.PointIdsList(points=[point_id]), wait=True)
        return True

    def find(self, filter: dict[str, Any], limit: int = 1) -> list[str]:
        if self.current_collection() is None:
            return []
        records, _ = self.client.scroll(self.alias, scroll_filter=to_filter(filter), limit=limit, with_payload=False)
        return [str(r.id) for r in records]

    def count(self) -> int:
        if self.current_collection() is None:
            return 0
        return self.client.count(self.alias, exact=True).count

    def scroll(
        self, batch_size: int = 256, with_vectors: bool = False, collection: str | None = None
    ) -> Iterator[IndexedPoint]:
        if collection is not None and not self.client.collection_exists(collection):
            raise CollectionMissing(collection)
        if collection is None and self.current_collection() is None:
            return
        offset = None
        while True:
            records, offset = self.client.scroll(
                collection or self.alias, offset=offset, limit=batch_size, with_payload=True, with_vectors=with_vectors
            )
            for r in records:
                vector = r.vector[VECTOR] if with_vectors and r.vector else []
                yield IndexedPoint(id=str(r.id), vector=list(vector), payload=dict(r.payload or {}))
            if offset is None:
                return

    def optimize(self) -> bool:
        """A Qdrant server (and the local mode) optimizes on its own."""
        return False

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
