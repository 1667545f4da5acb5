"""Corpus ownership (#10): every point carries a `tenant` payload field, "shared" or its owner.

Points written before that field existed belong to the shared corpus: `backfill_tenants` marks them
once per collection (a flag in the collection's metadata), at retriever start-up, so that the
gateway's tenant filter finds them.
"""

from __future__ import annotations

import logging

from services.schemas import SHARED_CORPUS

from .index import CollectionMissing, IndexedPoint, VectorIndex

log = logging.getLogger(__name__)
MARKER = "tenant_payload"
BATCH = 256


def backfill_tenants(index: VectorIndex) -> int:
    """Give the points of the collection behind the alias without a `tenant` the shared owner;
    returns how many were updated."""
    collection = index.current_collection()
    if collection is None:
        return 0
    try:
        if index.collection_metadata(collection).get(MARKER):
            return 0
    except CollectionMissing:
        return 0
    pending: list[IndexedPoint] = []
    updated = 0
    for point in index.scroll(batch_size=BATCH, with_vectors=True, collection=collection):
        if "tenant" not in point.payload:
            pending.append(IndexedPoint(point.id, point.vector, {**point.payload, "tenant": SHARED_CORPUS}))
        if len(pending) >= BATCH:
            index.upsert(pending, collection=collection)
            updated, pending = updated + len(pending), []
    if pending:
        index.upsert(pending, collection=collection)
        updated += len(pending)
    index.update_collection_metadata(collection, {MARKER: True})
    if updated:
        log.info("marked %d corpus images of %s as the shared corpus's", updated, collection)
    return updated
