"""Load benchmark: the gateway and the retriever under `wrk`, against a bare FastAPI + pydantic app
(benchmarks/bare_app.py) measured in the same run, alternating A/B.

    python benchmarks/load.py            # ~4 min on 2 cores: 10 s per run, 2 rounds, 100k vectors
    python benchmarks/load.py --quick    # smoke: ~1 min, 2 s runs, 2k vectors

It starts everything it measures (a redis-server unless --redis-url, the bare app, the retriever with the
tiny encoder, the gateway via `python -m services.gateway`; no generator worker: jobs just queue, the
queue is emptied between runs) and drives each with `wrk -t1 -c<connections>`:

- gateway POST /v1/generations (retrieval on and off) and GET /v1/generations/{id} vs the bare app,
- retriever POST /v1/search (top_k 5) over 1k ingested images and over N random vectors (HNSW built
  offline with `optimize`) vs the bare app's /v1/search,
- retriever ingest: distinct PNGs over HTTP (wrk, multipart) and in-process (`Retriever.ingest_many`).

Prints a table and writes benchmarks/results/load.json (or --output).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from realrag.stack import free_port  # noqa: E402

WRK = ROOT / "benchmarks" / "wrk"
TINY_CLIP = str(ROOT / "retriever_service" / "configs" / "tiny-clip.json")
PROMPT = "a photo of the Quenta Sprite by the sea"
GENERATION = {"prompt": PROMPT, "model": "tiny-sd", "width": 64, "height": 64, "steps": 4}
BODIES = {
    "retrieval_on": {**GENERATION, "retrieval": {"top_k": 1}},
    "retrieval_off": {**GENERATION, "retrieval": {"enabled": False}},
    "search": {"query": PROMPT, "top_k": 5},
}
BOUNDARY = "realragbenchboundary"


# --- processes ---------------------------------------------------------------------------
def base_env(data_dir: Path, redis_url: str, queue: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REALRAG_")}
    env.update(
        {
            "REALRAG_ENV_FILE": "",
            "REALRAG_DATA_DIR": str(data_dir),
            "REALRAG_ENCODER_MODEL": TINY_CLIP,
            "REALRAG_REDIS_URL": redis_url,
            "REALRAG_QUEUE_NAME": queue,
            "REALRAG_SERVED_MODELS": '["tiny-sd"]',
            "REALRAG_DEFAULT_MODEL": "tiny-sd",
            # nothing consumes the queue: POST throughput is measured, not admission control
            "REALRAG_MAX_QUEUE_DEPTH": str(10**9),
            "REALRAG_DEFAULT_REQUESTS_PER_MINUTE": str(10**9),
            "REALRAG_DEFAULT_MAX_JOBS_IN_FLIGHT": str(10**9),
            "OMP_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


@contextmanager
def process(name: str, argv: list[str], env: dict[str, str], health_url: str, logs: Path, timeout: float = 120):
    log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited ({proc.returncode}); see {logs / f'{name}.log'}")
            try:
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {health_url} in {timeout:.0f} s")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def uvicorn_argv(app: str, port: int, workers: int) -> list[str]:
    """The bare app under the same server as the gateway (uvloop, httptools, access log on, as many workers)."""
    return [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--workers", str(workers),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "info"]


# --- wrk -----------------------------------------------------------------------------------
def wrk(url: str, script: str, seconds: float, connections: int, env: dict[str, str] | None = None) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(WRK / script), url]
    out = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=seconds + 120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stderr[-1000:]} {out.stdout[-1000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds_run = raw["duration_us"] / 1e6
    return {
        "rps": raw["requests"] / seconds_run,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "requests": raw["requests"],
        "errors": raw["socket_errors"] + raw["status_errors"],
        "seconds": seconds_run,
    }


def wrk_uploads(url: str, connections: int, env: dict[str, str], points_url: str, count: int, stall_s: float = 15) -> dict:
    """multipart_files.lua: `count` distinct uploads, timed by the index's point count (polled) from
    wrk's start to the last new point; wrk is interrupted then (SIGINT makes it report)."""
    before = httpx.get(points_url, timeout=10).json()["points"]
    argv = ["wrk", "-t1", f"-c{connections}", "-d600s", "--timeout", "30s", "-s", str(WRK / "multipart_files.lua"), url]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env})
    points, last_change = before, started
    while points - before < count and proc.poll() is None and time.perf_counter() - last_change < stall_s:
        time.sleep(0.05)
        now_points = httpx.get(points_url, timeout=10).json()["points"]
        if now_points != points:
            points, last_change = now_points, time.perf_counter()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    line = next((x for x in stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {stderr[-1000:]} {stdout[-1000:]}")
    raw = json.loads(line.removeprefix("WRK_JSON "))
    return {
        "images": count,
        "created": points - before,
        "images_per_s": (points - before) / max(last_change - started, 1e-9),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": raw["socket_errors"] + raw["status_errors"],
    }


def merge(runs: list[dict]) -> dict:
    """Rounds of one case: the median of each figure, errors summed."""
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "rounds": [round(r["rps"], 1) for r in runs],
    }


def ab(cases: dict[str, tuple[str, str, dict]], rounds: int, seconds: float, connections: int, before=None) -> dict:
    """Each case name → (url, script, env); all cases run once per round, in order (A/B alternated)."""
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (url, script, env) in cases.items():
            if before:
                before(name)
            runs[name].append(wrk(url, script, seconds, connections, env))
    return {name: merge(r) for name, r in runs.items()}


# --- data ----------------------------------------------------------------------------------
def distinct_pngs(count: int, seed: int = 0) -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def write_multipart_bodies(pngs: list[bytes], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for i, png in enumerate(pngs, start=1):
        head = (
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\nbench\r\n"
            f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{i}.png\"\r\n"
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        (directory / f"{i}.bin").write_bytes(head + png + f"\r\n--{BOUNDARY}--\r\n".encode())


def build_vector_index(data_dir: Path, points: int, env: dict[str, str]) -> dict:
    """`points` random unit vectors written straight into the embedded index the retriever will open,
    then optimized (HNSW); returns the timings and HNSW's recall@5 against exact search."""
    from retriever_service.index import IndexedPoint
    from retriever_service.service import Retriever
    from services.settings import Settings

    settings = Settings(data_dir=data_dir, encoder_model=TINY_CLIP, redis_url=env["REALRAG_REDIS_URL"])
    retriever = Retriever(settings)
    dim = retriever.encoder.dim
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((points, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    for start in range(0, points, 5000):
        retriever.index.upsert(
            [
                IndexedPoint(
                    id=str(uuid.UUID(int=i + 1)),
                    vector=vectors[i].tolist(),
                    payload={"image_uri": f"corpus/{i}.png", "content_hash": f"{i:064x}", "caption": f"vector {i}"},
                )
                for i in range(start, min(start + 5000, points))
            ]
        )
    upsert_s = time.perf_counter() - started
    started = time.perf_counter()
    retriever.optimize_index()
    optimize_s = time.perf_counter() - started
    queries = retriever.encoder.encode_text([f"{PROMPT} {i}" for i in range(50)])
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :5]
    recall = [
        len({uuid.UUID(h.id).int - 1 for h in retriever.index.search(q.tolist(), 5)} & set(truth[i].tolist())) / 5
        for i, q in enumerate(queries)
    ]
    retriever.close()
    return {"points": points, "upsert_s": upsert_s, "optimize_s": optimize_s, "hnsw_recall_at_5": float(np.mean(recall))}


def direct_ingest(data_dir: Path, env: dict[str, str], pngs: list[bytes], batch: int) -> dict:
    """In-process (`realrag ingest --direct`'s path): decode, hash, store, encode and upsert in batches."""
    from retriever_service.encoder import set_torch_threads
    from retriever_service.service import Retriever
    from services.settings import Settings

    set_torch_threads(1)
    settings = Settings(data_dir=data_dir, encoder_model=TINY_CLIP, redis_url=env["REALRAG_REDIS_URL"])
    started = time.perf_counter()
    retriever = Retriever(settings)
    startup_s = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(pngs), batch):
        for result in retriever.ingest_many([(png, {"label": "bench"}) for png in pngs[start : start + batch]]):
            if isinstance(result, Exception):
                raise result
    seconds = time.perf_counter() - started
    retriever.close()
    return {"images": len(pngs), "images_per_s": len(pngs) / seconds, "startup_s": startup_s, "batch": batch}


# --- the run -------------------------------------------------------------------------------
@contextmanager
def redis_server(url: str | None, logs: Path):
    if url:
        yield url
        return
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no", "--logfile", str(logs / "redis.log")]
    proc = subprocess.Popen(argv, cwd=logs)
    try:
        time.sleep(0.5)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def run(args: argparse.Namespace) -> dict:
    import redis

    seconds, rounds, points = (2, 1, 2_000) if args.quick else (args.seconds, args.rounds, args.points)
    ingest_n = 200 if args.quick else args.ingest_images
    work = Path(tempfile.mkdtemp(prefix="realrag-load-"))
    logs = work / "logs"
    logs.mkdir()
    py = sys.executable
    results: dict[str, dict] = {}
    extra: dict[str, dict] = {}
    queue = f"realrag.load.{os.getpid()}"
    try:
        with ExitStack() as stack:
            redis_url = stack.enter_context(redis_server(args.redis_url, logs))
            env = base_env(work / "stack", redis_url, queue)
            store = redis.Redis.from_url(redis_url)
            bare_port, retriever_port, gateway_port = free_port(), free_port(), free_port()
            bare = f"http://127.0.0.1:{bare_port}"
            retriever = f"http://127.0.0.1:{retriever_port}"
            gateway = f"http://127.0.0.1:{gateway_port}"
            env["REALRAG_RETRIEVER_URL"] = retriever
            bare_argv = uvicorn_argv("benchmarks.bare_app:app", bare_port, args.gateway_workers)
            stack.enter_context(process("bare", bare_argv, env, f"{bare}/docs", logs))
            retriever_proc = ExitStack()
            retriever_proc.enter_context(
                process("retriever-1k", [py, "-m", "retriever_service", "--port", str(retriever_port)], env, f"{retriever}/healthz", logs)
            )
            bodies = work / "bodies"
            bodies.mkdir()
            for name, body in BODIES.items():
                (bodies / f"{name}.json").write_text(json.dumps(body))

            def body(name: str) -> dict[str, str]:
                return {"WRK_BODY_FILE": str(bodies / f"{name}.json")}

            # ingest over HTTP: distinct PNGs, once each; they are the 1k index searched below
            pngs = distinct_pngs(ingest_n + (64 if args.quick else 1000), seed=0)
            write_multipart_bodies(pngs[:ingest_n], work / "uploads")
            upload = {"WRK_BODY_DIR": str(work / "uploads"), "WRK_BODY_COUNT": str(ingest_n), "WRK_BOUNDARY": BOUNDARY}
            extra["ingest_http"] = wrk_uploads(f"{retriever}/v1/images", args.connections, upload, f"{retriever}/readyz", ingest_n)
            points_1k = httpx.get(f"{retriever}/readyz", timeout=10).json()["points"]

            stack.enter_context(
                process("gateway", [py, "-m", "services.gateway", "--port", str(gateway_port), "--workers", str(args.gateway_workers)],
                        env, f"{gateway}/healthz", logs)
            )
            job = httpx.post(f"{gateway}/v1/generations", json=BODIES["retrieval_off"], timeout=30)
            job.raise_for_status()
            bare_job = httpx.post(f"{bare}/v1/generations", json=BODIES["retrieval_off"], timeout=30).json()

            def empty_queue(_: str) -> None:
                store.delete(queue)

            gateway_cases = {
                "bare POST /v1/generations": (f"{bare}/v1/generations", "json_post.lua", body("retrieval_on")),
                "gateway POST /v1/generations (retrieval on)": (f"{gateway}/v1/generations", "json_post.lua", body("retrieval_on")),
                "gateway POST /v1/generations (retrieval off)": (f"{gateway}/v1/generations", "json_post.lua", body("retrieval_off")),
                "bare GET /v1/generations/{id}": (f"{bare}/v1/generations/{bare_job['id']}", "get.lua", {}),
                "gateway GET /v1/generations/{id}": (f"{gateway}/v1/generations/{job.json()['id']}", "get.lua", {}),
                "bare POST /v1/search": (f"{bare}/v1/search", "json_post.lua", body("search")),
                f"retriever POST /v1/search ({points_1k} images)": (f"{retriever}/v1/search", "json_post.lua", body("search")),
            }
            results.update(ab(gateway_cases, rounds, seconds, args.connections, before=empty_queue))
            store.delete(queue)
            retriever_proc.close()

            # N random vectors, HNSW built offline, served by a fresh retriever
            env_n = {**env, "REALRAG_DATA_DIR": str(work / f"vectors-{points}")}
            extra["vector_index"] = build_vector_index(work / f"vectors-{points}", points, env_n)
            serve_n = [py, "-m", "retriever_service", "--port", str(retriever_port)]
            with process("retriever-n", serve_n, env_n, f"{retriever}/healthz", logs):
                search_n = ab(
                    {
                        "bare POST /v1/search (again)": (f"{bare}/v1/search", "json_post.lua", body("search")),
                        f"retriever POST /v1/search ({points} vectors)": (f"{retriever}/v1/search", "json_post.lua", body("search")),
                    },
                    rounds, seconds, args.connections,
                )
                results.update(search_n)
            extra["ingest_direct"] = direct_ingest(work / "direct", env, pngs[ingest_n:] if len(pngs) > ingest_n else pngs, 32)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return report(results, extra, args, seconds, rounds)


def report(results: dict[str, dict], extra: dict[str, dict], args: argparse.Namespace, seconds: float, rounds: int) -> dict:
    def baseline(name: str) -> str | None:
        if name.startswith("bare"):
            return None
        if "GET" in name:
            return "bare GET /v1/generations/{id}"
        if "/v1/search" in name:
            return "bare POST /v1/search (again)" if "vectors" in name else "bare POST /v1/search"
        return "bare POST /v1/generations"

    for name, row in results.items():
        base = baseline(name)
        if base:
            row["baseline"] = base
            row["rps_ratio"] = row["rps"] / results[base]["rps"]
            row["p99_ratio"] = row["p99_ms"] / results[base]["p99_ms"]
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average": list(os.getloadavg())},
        "wrk": {"threads": 1, "connections": args.connections, "seconds": seconds, "rounds": rounds},
        "gateway_workers": args.gateway_workers,
        "results": results,
        **extra,
    }


def print_table(data: dict) -> None:
    console = Console(width=150)
    table = Table(title=f"load (wrk -t1 -c{data['wrk']['connections']}, {data['wrk']['seconds']} s × {data['wrk']['rounds']}, medians)")
    for col in ("case", "req/s", "p50 ms", "p99 ms", "× bare req/s", "p99 / bare", "errors"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, row in data["results"].items():
        table.add_row(
            name, f"{row['rps']:.0f}", f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}",
            f"{row['rps_ratio']:.2f}" if "rps_ratio" in row else "", f"{row['p99_ratio']:.1f}" if "p99_ratio" in row else "",
            str(row["errors"]),
        )
    console.print(table)
    console.print(f"ingest over HTTP: {data['ingest_http']['images_per_s']:.0f} images/s ({data['ingest_http']['images']} images)")
    direct = data["ingest_direct"]
    console.print(f"ingest direct: {direct['images_per_s']:.0f} images/s (start-up {direct['startup_s']:.1f} s, batch {direct['batch']})")
    v = data["vector_index"]
    console.print(f"vector index: {v['points']} points, upsert {v['upsert_s']:.1f} s, optimize {v['optimize_s']:.1f} s, "
                  f"HNSW recall@5 {v['hnsw_recall_at_5']:.2f}")
    console.print(f"load average at the end: {data['machine']['load_average']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 2 s runs, one round, 2k vectors, 200 uploads")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--ingest-images", type=int, default=1_000)
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--redis-url", help="use this Redis (e.g. redis://127.0.0.1:6404/15); default: start a redis-server")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "load.json")
    args = parser.parse_args()
    data = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
