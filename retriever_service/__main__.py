"""``python -m retriever_service``: the retriever (open_clip + Qdrant) over HTTP."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from services.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m retriever_service", description="RealRAG retriever service")
    parser.add_argument("--host", default=settings.retriever_host)
    parser.add_argument("--port", type=int, default=settings.retriever_port)
    parser.add_argument("--workers", type=int, default=settings.retriever_workers, help="processes (>1 needs REALRAG_QDRANT_URL)")
    args = parser.parse_args(argv)
    if args.workers > 1 and not settings.qdrant_url:
        # the embedded engine's shard directory has one owner process; replicas share a Qdrant server
        parser.error("--workers > 1 needs a Qdrant server (REALRAG_QDRANT_URL): the embedded index has one owner process")
    uvicorn.run(
        "retriever_service.app:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        log_level="info",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
