"""``python -m services.gateway``: the HTTP gateway. Imports the floor only, never torch."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from services.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description="RealRAG HTTP gateway")
    parser.add_argument("--host", default=settings.gateway_host)
    parser.add_argument("--port", type=int, default=settings.gateway_port)
    args = parser.parse_args(argv)
    uvicorn.run("services.gateway.app:app", host=args.host, port=args.port, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
