"""``python -m services.gateway``: the HTTP gateway. Imports the floor only, never torch."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

import uvicorn

from services.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description="RealRAG HTTP gateway")
    parser.add_argument("--host", default=settings.gateway_host)
    parser.add_argument("--port", type=int, default=settings.gateway_port)
    parser.add_argument("--workers", type=int, default=settings.gateway_workers, help="uvicorn worker processes")
    args = parser.parse_args(argv)
    metrics_dir = None
    if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # every worker writes its metrics here (inherited before prometheus_client is imported there);
        # /metrics aggregates them (metrics.exposition). Fresh per run: stale files would add up.
        metrics_dir = tempfile.mkdtemp(prefix="realrag-gateway-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        uvicorn.run(
            "services.gateway.app:app",
            host=args.host,
            port=args.port,
            workers=args.workers,
            loop="uvloop",
            http="httptools",
            log_level="info",
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
