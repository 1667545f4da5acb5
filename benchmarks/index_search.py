"""Vector index engines compared in one run: qdrant-edge (embedded default) against qdrant-client's
local mode (the baseline stand-in), on the same random unit vectors, through our VectorIndex API.

    python benchmarks/index_search.py --points 20000 --queries 200

Prints a table, writes benchmarks/results/index_search.json; ratios are edge / baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retriever_service.index import IndexedPoint  # noqa: E402
from retriever_service.index.edge_index import EdgeIndex  # noqa: E402
from retriever_service.index.qdrant_client_index import QdrantClientIndex  # noqa: E402


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def measure(index, vectors: np.ndarray, queries: np.ndarray, objects: int, top_k: int) -> dict:
    index.ensure(vectors.shape[1])
    started = time.perf_counter()
    for start in range(0, len(vectors), 1000):
        index.upsert(
            [
                IndexedPoint(id=str(uuid.UUID(int=i + 1)), vector=vectors[i].tolist(), payload={"object_id": f"o{i % objects}"})
                for i in range(start, min(start + 1000, len(vectors)))
            ]
        )
    upsert_s = time.perf_counter() - started

    def latencies(filtered: bool) -> list[float]:
        out = []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            index.search(q.tolist(), top_k, {"object_id": f"o{i % objects}"} if filtered else None)
            out.append((time.perf_counter() - t) * 1000)
        return out

    plain, filtered = latencies(False), latencies(True)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :top_k]
    recall = np.mean(
        [
            len({int(uuid.UUID(h.id)) - 1 for h in index.search(q.tolist(), top_k)} & set(truth[i].tolist())) / top_k
            for i, q in enumerate(queries[:50])
        ]
    )
    return {
        "upsert_s": upsert_s,
        "query_p50_ms": statistics.median(plain),
        "query_p95_ms": float(np.percentile(plain, 95)),
        "filtered_p50_ms": statistics.median(filtered),
        "recall_at_k": float(recall),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "index_search.json")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    vectors = unit_vectors(rng, args.points, args.dim)
    queries = unit_vectors(rng, args.queries, args.dim)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        engines = {
            "qdrant-client local (baseline)": QdrantClientIndex.local(":memory:", "bench"),
            "qdrant-edge (default)": EdgeIndex(Path(tmp), "bench"),
        }
        for name, index in engines.items():
            results[name] = measure(index, vectors, queries, args.objects, args.top_k)
            index.close()
    base, edge = results["qdrant-client local (baseline)"], results["qdrant-edge (default)"]
    ratios = {k: edge[k] / base[k] for k in ("upsert_s", "query_p50_ms", "filtered_p50_ms")}

    table = Table(title=f"{args.points} × {args.dim}-d, top-{args.top_k}, {args.queries} queries")
    for column in ("engine", "upsert s", "query p50 ms", "query p95 ms", "filtered p50 ms", f"recall@{args.top_k}"):
        table.add_column(column, justify="right")
    for name, r in results.items():
        table.add_row(
            name,
            f"{r['upsert_s']:.2f}",
            f"{r['query_p50_ms']:.2f}",
            f"{r['query_p95_ms']:.2f}",
            f"{r['filtered_p50_ms']:.2f}",
            f"{r['recall_at_k']:.2f}",
        )
    table.add_row(
        "ratio edge/baseline", f"{ratios['upsert_s']:.2f}", f"{ratios['query_p50_ms']:.3f}", "", f"{ratios['filtered_p50_ms']:.3f}", ""
    )
    Console(width=140).print(table)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "index_search",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "python " + " ".join(sys.argv),
                "config": {k: v for k, v in vars(args).items() if k != "output"},
                "results": results,
                "ratios_edge_over_baseline": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
