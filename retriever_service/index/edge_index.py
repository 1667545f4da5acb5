"""Qdrant's engine in-process (qdrant-edge): one shard directory per collection.

Edge shards have no aliases, so the alias is a small JSON file replaced atomically (write, then rename) plus
an in-process pointer swapped under a lock: searches already running finish on the old shard, new
ones see the new shard. One process owns a shard directory at a time (the retriever service).
Collection metadata lives beside each shard in ``realrag.json`` (read from the file on every call, so
it needs no open shard). Updates are durable through the shard's write-ahead log (a killed process loses nothing, tested);
segments are flushed on close, since a flush per upsert costs ~200 ms.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    MatchAny,
    MatchValue,
    PayloadSchemaType,
    Point,
    Query,
    QueryRequest,
    ScrollRequest,
    SearchParams,
    UpdateOperation,
)

from services.files import atomic_write_text

from .base import INDEXED_FIELDS, CollectionMissing, IndexedPoint, InvalidFilter, ScoredHit, describe_filter_value, next_version_name

VECTOR = "retrieval"


def to_filter(conditions: dict[str, Any] | None) -> Filter | None:
    """Equality conditions as an edge Filter; InvalidFilter for what the engine refuses (a float, a
    nested object, a key that is no JSON path, text that is not valid Unicode)."""
    if not conditions:
        return None
    must: list[Any] = []
    for key, value in conditions.items():
        try:
            if isinstance(value, (list, tuple)):
                must.append(FieldCondition(key=key, match=MatchAny(any=list(value))))
            else:
                must.append(FieldCondition(key=key, match=MatchValue(value=value)))
        except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
            raise InvalidFilter(f"{key!r}: {describe_filter_value(value)} cannot be matched") from exc
    return Filter(must=must)


class EdgeIndex:
    def __init__(self, root: Path, alias: str, hnsw_ef: int = 128) -> None:
        self.root = Path(root)
        self.alias = alias
        self.hnsw_ef = hnsw_ef
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._shards: dict[str, EdgeShard] = {}
        self._dims: dict[str, int] = {}

    # --- collections and alias -----------------------------------------------------------
    @property
    def _alias_file(self) -> Path:
        return self.root / "aliases.json"

    def _aliases(self) -> dict[str, str]:
        if not self._alias_file.exists():
            return {}
        return json.loads(self._alias_file.read_text())

    def _shard_dir(self, name: str) -> Path:
        return self.root / "collections" / name

    def _info_file(self, name: str) -> Path:
        return self._shard_dir(name) / "realrag.json"

    def _shard(self, name: str) -> EdgeShard:
        with self._lock:
            if name not in self._shards:
                path = self._shard_dir(name)
                if not path.exists():
                    raise CollectionMissing(name)
                self._shards[name] = EdgeShard.load(str(path))
                self._dims[name] = json.loads(self._info_file(name).read_text())["dim"]
            return self._shards[name]

    def collections(self) -> list[str]:
        return sorted(p.name for p in (self.root / "collections").iterdir() if p.is_dir())

    def current_collection(self) -> str | None:
        return self._aliases().get(self.alias)

    def create_collection(self, name: str, dim: int) -> None:
        with self._lock:
            path = self._shard_dir(name)
            config = EdgeConfig(vectors={VECTOR: EdgeVectorParams(size=dim, distance=Distance.Cosine)})
            shard = EdgeShard.create(str(path), config)
            for field in INDEXED_FIELDS:
                shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
            atomic_write_text(self._info_file(name), json.dumps({"dim": dim}))
            self._shards[name] = shard
            self._dims[name] = dim

    def switch_alias(self, collection: str) -> str | None:
        self._shard(collection)  # refuse to point at something that does not open
        with self._lock:
            aliases = self._aliases()
            previous = aliases.get(self.alias)
            aliases[self.alias] = collection
            atomic_write_text(self._alias_file, json.dumps(aliases))
            return previous

    def ensure(self, dim: int) -> str:
        with self._lock:
            current = self.current_collection()
            if current is None:
                current = next_version_name(self.alias, self.collections())
                self.create_collection(current, dim)
                self.switch_alias(current)
            return current

    def drop_collection(self, name: str) -> None:
        with self._lock:
            if name == self.current_collection():
                raise ValueError(f"{name} is behind alias {self.alias}; switch the alias first")
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shutil.rmtree(self._shard_dir(name), ignore_errors=True)

    def dimension(self) -> int | None:
        current = self.current_collection()
        if current is None:
            return None
        self._shard(current)
        return self._dims[current]

    def collection_metadata(self, name: str) -> dict[str, Any]:
        info = self._info_file(name)
        if not info.is_file():
            raise CollectionMissing(name)
        return dict(json.loads(info.read_text()).get("metadata") or {})

    def update_collection_metadata(self, name: str, values: dict[str, Any]) -> None:
        with self._lock:
            info = self._info_file(name)
            if not info.is_file():
                raise CollectionMissing(name)
            data = json.loads(info.read_text())
            data["metadata"] = {**(data.get("metadata") or {}), **json.loads(json.dumps(values))}
            atomic_write_text(info, json.dumps(data))

    def _current(self) -> EdgeShard:
        current = self.current_collection()
        if current is None:
            raise CollectionMissing(self.alias)
        return self._shard(current)

    # --- points --------------------------------------------------------------------------
    def upsert(self, points: list[IndexedPoint], collection: str | None = None) -> None:
        shard = self._shard(collection) if collection else self._current()
        shard.update(
            UpdateOperation.upsert_points(
                [Point(id=p.id, vector={VECTOR: list(p.vector)}, payload=p.payload) for p in points]
            )
        )

    def search(
        self, vector: list[float], top_k: int, filter: dict[str, Any] | None = None
    ) -> list[ScoredHit]:
        try:
            shard = self._current()
        except CollectionMissing:
            return []
        hits = shard.query(
            QueryRequest(
                limit=top_k,
                query=Query.Nearest(list(vector), using=VECTOR),
                filter=to_filter(filter),
                with_payload=True,
                # exact below Qdrant's full-scan threshold and on segments not optimized yet, HNSW beyond
                params=SearchParams(hnsw_ef=self.hnsw_ef),
            )
        )
        return [ScoredHit(id=str(h.id), score=float(h.score), payload=dict(h.payload or {})) for h in hits]

    def get(self, point_id: str) -> dict[str, Any] | None:
        try:
            records = self._current().retrieve([point_id], with_payload=True, with_vector=False)
        except CollectionMissing:
            return None
        return dict(records[0].payload or {}) if records else None

    def delete(self, point_id: str) -> bool:
        if self.get(point_id) is None:
            return False
        shard = self._current()
        shard.update(UpdateOperation.delete_points([point_id]))
        return True

    def find(self, filter: dict[str, Any], limit: int = 1) -> list[str]:
        try:
            records, _ = self._current().scroll(
                ScrollRequest(limit=limit, filter=to_filter(filter), with_payload=False)
            )
        except CollectionMissing:
            return []
        return [str(r.id) for r in records]

    def count(self) -> int:
        try:
            return self._current().count(CountRequest(exact=True))
        except CollectionMissing:
            return 0

    def scroll(
        self, batch_size: int = 256, with_vectors: bool = False, collection: str | None = None
    ) -> Iterator[IndexedPoint]:
        if collection is not None:
            shard = self._shard(collection)
        else:
            try:
                shard = self._current()
            except CollectionMissing:
                return
        offset = None
        while True:
            records, offset = shard.scroll(
                ScrollRequest(offset=offset, limit=batch_size, with_payload=True, with_vector=with_vectors)
            )
            for r in records:
                # our collections hold one dense named vector
                vector = cast(list[float], r.vector[VECTOR]) if with_vectors and isinstance(r.vector, dict) else []
                yield IndexedPoint(id=str(r.id), vector=list(vector), payload=dict(r.payload or {}))
            if offset is None:
                return

    def optimize(self) -> bool:
        """Run the shard's optimizers (HNSW build, merges) now, blocking; True if anything changed.

        Searches keep answering meanwhile (on the unoptimized segments until the new ones are swapped in)."""
        try:
            shard = self._current()
        except CollectionMissing:
            return False
        return bool(shard.optimize())

    def close(self) -> None:
        with self._lock:
            for shard in self._shards.values():
                shard.flush()
                shard.close()
            self._shards.clear()
