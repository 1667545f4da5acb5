"""``python -m retriever_service``: the retriever (open_clip encoder + Qdrant) over HTTP."""

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
    args = parser.parse_args(argv)
    uvicorn.run("retriever_service.app:app", host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
