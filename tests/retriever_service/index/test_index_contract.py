"""One contract, both engines: the embedded edge shard and qdrant-client (the URL code path)."""

import threading
import uuid

import numpy as np
import pytest

from retriever_service.index import CollectionMissing, IndexedPoint
from retriever_service.index.edge_index import EdgeIndex
from retriever_service.index.qdrant_client_index import QdrantClientIndex

DIM = 8


@pytest.fixture(params=["edge", "qdrant-client"])
def index(request, tmp_path):
    if request.param == "edge":
        idx = EdgeIndex(tmp_path / "edge", "imgs")
    else:
        idx = QdrantClientIndex.local(":memory:", "imgs")
    yield idx
    idx.close()


def unit(v):
    v = np.asarray(v, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()


def point(vec, **payload):
    return IndexedPoint(id=str(uuid.uuid4()), vector=unit(vec), payload=payload)


def basis(i):
    v = np.zeros(DIM)
    v[i] = 1.0
    v[(i + 1) % DIM] = 0.1
    return v


def test_empty_index_answers_without_a_collection(index):
    assert index.current_collection() is None
    assert index.search(unit(np.ones(DIM)), 3) == []
    assert index.count() == 0
    assert index.get(str(uuid.uuid4())) is None


def test_ensure_creates_a_versioned_collection_behind_the_alias(index):
    name = index.ensure(DIM)
    assert name == "imgs-v1"
    assert index.current_collection() == "imgs-v1"
    assert index.ensure(DIM) == "imgs-v1"
    assert index.dimension() == DIM


def test_search_ranks_by_cosine_and_filters_on_payload(index):
    index.ensure(DIM)
    pts = [point(basis(i), object_id=f"obj{i % 2}", label=f"L{i}") for i in range(6)]
    index.upsert(pts)
    assert index.count() == 6
    hits = index.search(unit(basis(3)), 2)
    assert hits[0].id == pts[3].id
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload["label"] == "L3"
    filtered = index.search(unit(basis(3)), 6, filter={"object_id": "obj0"})
    assert {h.payload["object_id"] for h in filtered} == {"obj0"}
    assert len(filtered) == 3
    any_of = index.search(unit(basis(3)), 6, filter={"label": ["L1", "L2"]})
    assert {h.payload["label"] for h in any_of} == {"L1", "L2"}


def test_get_find_delete(index):
    index.ensure(DIM)
    p = point(basis(0), content_hash="abc", object_id="x")
    index.upsert([p])
    assert index.get(p.id)["content_hash"] == "abc"
    assert index.find({"content_hash": "abc"}) == [p.id]
    assert index.find({"content_hash": "nope"}) == []
    assert index.delete(p.id) is True
    assert index.delete(p.id) is False
    assert index.get(p.id) is None


def test_scroll_returns_every_point_with_vectors(index):
    index.ensure(DIM)
    pts = [point(basis(i % DIM), n=i) for i in range(23)]
    index.upsert(pts)
    seen = list(index.scroll(batch_size=5, with_vectors=True))
    assert sorted(p.id for p in seen) == sorted(p.id for p in pts)
    assert all(len(p.vector) == DIM for p in seen)


def test_alias_switch_keeps_old_collection_for_rollback(index):
    index.ensure(DIM)
    old = point(basis(0), gen="old")
    index.upsert([old])
    index.create_collection("imgs-v2", DIM)
    new = point(basis(0), gen="new")
    index.upsert([new], collection="imgs-v2")
    assert index.search(unit(basis(0)), 1)[0].payload["gen"] == "old"
    assert index.switch_alias("imgs-v2") == "imgs-v1"
    assert index.search(unit(basis(0)), 1)[0].payload["gen"] == "new"
    assert set(index.collections()) >= {"imgs-v1", "imgs-v2"}
    with pytest.raises(ValueError):
        index.drop_collection("imgs-v2")
    index.switch_alias("imgs-v1")  # rollback
    assert index.search(unit(basis(0)), 1)[0].payload["gen"] == "old"


def test_alias_switch_is_atomic_under_concurrent_searches(index):
    index.ensure(DIM)
    index.upsert([point(basis(0), gen="v1")])
    index.create_collection("imgs-v2", DIM)
    index.upsert([point(basis(0), gen="v2")], collection="imgs-v2")
    results, errors, stop = [], [], threading.Event()

    def searcher():
        while not stop.is_set():
            try:
                hits = index.search(unit(basis(0)), 1)
                results.append(hits[0].payload["gen"] if hits else None)
            except Exception as exc:  # noqa: BLE001 - any error is a failed contract
                errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for target in ["imgs-v2", "imgs-v1", "imgs-v2"]:
        index.switch_alias(target)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert None not in results
    assert set(results) <= {"v1", "v2"}
    assert index.search(unit(basis(0)), 1)[0].payload["gen"] == "v2"


def test_switch_to_a_missing_collection_is_refused(index):
    index.ensure(DIM)
    with pytest.raises(CollectionMissing):
        index.switch_alias("does-not-exist")
    assert index.current_collection() == "imgs-v1"


def test_edge_index_reopens_from_disk(tmp_path):
    idx = EdgeIndex(tmp_path / "edge", "imgs")
    idx.ensure(DIM)
    p = point(basis(2), label="persisted")
    idx.upsert([p])
    idx.close()
    again = EdgeIndex(tmp_path / "edge", "imgs")
    assert again.get(p.id)["label"] == "persisted"
    assert again.dimension() == DIM
    again.close()


def test_upsert_without_collection_raises(index):
    with pytest.raises(CollectionMissing):
        index.upsert([point(basis(0))])


def test_edge_index_survives_a_killed_process_without_flush(tmp_path):
    import subprocess
    import sys

    code = f"""
import os, uuid
from pathlib import Path
from retriever_service.index import IndexedPoint
from retriever_service.index.edge_index import EdgeIndex
idx = EdgeIndex(Path({str(tmp_path / 'edge')!r}), "imgs")
idx.ensure({DIM})
idx.upsert([IndexedPoint(id=str(uuid.UUID(int=i + 1)), vector=[1.0] + [0.0] * {DIM - 1}, payload={{"n": i}}) for i in range(7)])
os._exit(0)  # no flush, no close
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    again = EdgeIndex(tmp_path / "edge", "imgs")
    assert again.count() == 7
    again.close()


# ---- collection metadata: shared state stored with the collection --------------------------------


def another_view(index, tmp_path):
    """A second index object over the same storage, as a second replica holds: for qdrant-client the
    same Qdrant (one client here, since local mode has one owner); for edge the same directory."""
    if isinstance(index, EdgeIndex):
        return EdgeIndex(index.root, index.alias)
    return QdrantClientIndex(index.alias, client=index.client)


def test_collection_metadata_is_kept_per_collection_and_merged(index):
    index.ensure(DIM)
    assert index.collection_metadata("imgs-v1") == {}
    index.update_collection_metadata("imgs-v1", {"deployment": {"tower": "a", "n": 1}})
    index.update_collection_metadata("imgs-v1", {"note": "kept"})
    assert index.collection_metadata("imgs-v1") == {"deployment": {"tower": "a", "n": 1}, "note": "kept"}
    index.update_collection_metadata("imgs-v1", {"deployment": {"tower": "b"}})  # a top-level key is replaced
    assert index.collection_metadata("imgs-v1")["deployment"] == {"tower": "b"}
    index.create_collection("imgs-v2", DIM)
    assert index.collection_metadata("imgs-v2") == {}
    index.update_collection_metadata("imgs-v2", {"deployment": {"tower": "c"}})
    index.switch_alias("imgs-v2")  # the alias moves; each collection keeps its own record
    assert index.collection_metadata("imgs-v1")["deployment"] == {"tower": "b"}
    assert index.collection_metadata("imgs-v2")["deployment"] == {"tower": "c"}


def test_collection_metadata_of_a_missing_collection_raises(index):
    index.ensure(DIM)
    with pytest.raises(CollectionMissing):
        index.collection_metadata("imgs-v9")
    with pytest.raises(CollectionMissing):
        index.update_collection_metadata("imgs-v9", {"a": 1})
    assert "imgs-v9" not in index.collections()


def test_collection_metadata_is_seen_by_another_index_object_at_once(index, tmp_path):
    index.ensure(DIM)
    other = another_view(index, tmp_path)
    assert other.collection_metadata("imgs-v1") == {}
    index.create_collection("imgs-v2", DIM)
    index.update_collection_metadata("imgs-v2", {"deployment": {"image_tower": "/ckpt/retriever.safetensors"}})
    index.switch_alias("imgs-v2")
    assert other.current_collection() == "imgs-v2"
    assert other.collection_metadata("imgs-v2") == {"deployment": {"image_tower": "/ckpt/retriever.safetensors"}}


@pytest.mark.parametrize("engine", ["edge", "qdrant-client"])
def test_collection_metadata_survives_a_reopen(engine, tmp_path):
    def open_index():
        if engine == "edge":
            return EdgeIndex(tmp_path / "edge", "imgs")
        return QdrantClientIndex.local(tmp_path / "local", "imgs")

    idx = open_index()
    idx.ensure(DIM)
    idx.update_collection_metadata("imgs-v1", {"deployment": {"image_space": "retriever-image:abc"}})
    idx.close()
    again = open_index()
    assert again.collection_metadata("imgs-v1") == {"deployment": {"image_space": "retriever-image:abc"}}
    assert again.dimension() == DIM
    again.close()


def test_scroll_reads_a_named_collection_behind_no_alias(index):
    index.ensure(DIM)
    index.upsert([point(basis(0), gen="v1")])
    index.create_collection("imgs-v2", DIM)
    index.upsert([point(basis(1), gen="v2"), point(basis(2), gen="v2")], collection="imgs-v2")
    assert [p.payload["gen"] for p in index.scroll()] == ["v1"]
    assert sorted(p.payload["gen"] for p in index.scroll(collection="imgs-v2")) == ["v2", "v2"]
    with pytest.raises(CollectionMissing):
        list(index.scroll(collection="imgs-v9"))
