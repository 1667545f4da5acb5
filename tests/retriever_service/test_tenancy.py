"""Corpus ownership in the retriever (#10): ids per owner, and the backfill of points from before."""

from __future__ import annotations

from retriever_service.index import IndexedPoint
from retriever_service.index.edge_index import EdgeIndex
from retriever_service.service import stable_id
from retriever_service.tenancy import MARKER, backfill_tenants


def test_ids_derive_from_owner_and_pixels():
    digest = "ab" * 32
    assert stable_id(digest) == stable_id(digest, "shared"), "shared images keep the ids of before"
    assert len({stable_id(digest), stable_id(digest, "a"), stable_id(digest, "b")}) == 3
    assert stable_id(digest, "a") == stable_id(digest, "a")


def test_points_without_an_owner_become_shared_once(tmp_path):
    index = EdgeIndex(tmp_path, "corpus")
    collection = index.ensure(4)
    legacy = IndexedPoint(stable_id("cd" * 32), [1.0, 0.0, 0.0, 0.0], {"content_hash": "cd" * 32, "image_uri": "corpus/x.png"})
    owned = IndexedPoint(stable_id("ef" * 32, "a"), [0.0, 1.0, 0.0, 0.0], {"content_hash": "ef" * 32, "tenant": "a"})
    index.upsert([legacy, owned])
    assert index.find({"tenant": ["shared"]}) == []
    assert backfill_tenants(index) == 1
    assert index.get(legacy.id) == {**legacy.payload, "tenant": "shared"}
    assert index.get(owned.id)["tenant"] == "a"
    assert [h.id for h in index.search([1.0, 0.0, 0.0, 0.0], 5, {"tenant": ["shared", "b"]})] == [legacy.id]
    assert index.collection_metadata(collection)[MARKER] is True
    index.upsert([IndexedPoint(stable_id("01" * 32), [0.0, 0.0, 1.0, 0.0], {"content_hash": "01" * 32})])
    assert backfill_tenants(index) == 0, "once per collection"
    index.close()
