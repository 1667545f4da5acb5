"""One vector-index interface, two Qdrant engines behind it (embedded edge shard, or qdrant-client).

The retriever always reads and writes through an alias (``settings.collection_alias``); the concrete
collection behind it is versioned (``<alias>-v<N>``) so a re-index builds a new one and switches the
alias atomically, keeping the previous collection for rollback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# Payload fields the service filters on; both engines index them as keywords.
# `tenant` (the image's owner, #10) is in every search's filter the gateway sends.
INDEXED_FIELDS = ("object_id", "label", "content_hash", "source", "license", "tenant")


@dataclass
class IndexedPoint:
    id: str
    vector: list[float]
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScoredHit:
    id: str
    score: float
    payload: dict[str, Any]


class CollectionMissing(LookupError):
    """The alias points at no collection yet (nothing ingested)."""


class InvalidFilter(ValueError):
    """A payload filter the engine cannot express (the caller's error: a 4xx, never a crash)."""


class VectorIndex(Protocol):
    alias: str

    def ensure(self, dim: int) -> str:
        """Create the first versioned collection and the alias if absent; return the collection."""
        ...

    def create_collection(self, name: str, dim: int) -> None: ...

    def switch_alias(self, collection: str) -> str | None:
        """Point the alias at `collection` atomically; return the collection it pointed at.

        Raises CollectionMissing (alias unchanged) when `collection` does not exist."""
        ...

    def current_collection(self) -> str | None: ...

    def collections(self) -> list[str]: ...

    def drop_collection(self, name: str) -> None: ...

    def dimension(self) -> int | None: ...

    def collection_metadata(self, name: str) -> dict[str, Any]:
        """The metadata stored with collection `name` ({} when none): shared state that every process
        reading this index sees (what a re-index recorded about how the collection was built).

        Raises CollectionMissing when `name` does not exist."""
        ...

    def update_collection_metadata(self, name: str, values: dict[str, Any]) -> None:
        """Merge `values` (JSON-able) into `name`'s metadata, top-level keys replaced.

        Raises CollectionMissing when `name` does not exist."""
        ...

    def upsert(self, points: list[IndexedPoint], collection: str | None = None) -> None: ...

    def search(
        self, vector: list[float], top_k: int, filter: dict[str, Any] | None = None
    ) -> list[ScoredHit]: ...

    def get(self, point_id: str) -> dict[str, Any] | None: ...

    def delete(self, point_id: str) -> bool: ...

    def find(self, filter: dict[str, Any], limit: int = 1) -> list[str]:
        """Ids of points whose payload matches the equality filter."""
        ...

    def count(self) -> int: ...

    def scroll(
        self, batch_size: int = 256, with_vectors: bool = False, collection: str | None = None
    ) -> Iterator[IndexedPoint]:
        """Every point of the collection behind the alias (or of `collection`)."""
        ...

    def optimize(self) -> bool:
        """Build search structures (HNSW) for what was written, blocking; True if anything changed."""
        ...

    def close(self) -> None: ...


def describe_filter_value(value: Any) -> str:
    """A filter value named by its type, for error messages (the value itself may be huge or unprintable)."""
    if isinstance(value, (list, tuple)):
        kinds = sorted({type(v).__name__ for v in value})
        return f"a list of {', '.join(kinds) or 'nothing'}"
    return f"a {type(value).__name__}"


def next_version_name(alias: str, existing: list[str]) -> str:
    versions = [
        int(name.rsplit("-v", 1)[1])
        for name in existing
        if name.startswith(f"{alias}-v") and name.rsplit("-v", 1)[1].isdigit()
    ]
    return f"{alias}-v{max(versions, default=0) + 1}"
