"""``python -m services.notifier``: a Celery worker consuming the webhooks queue only (no GPU, no ML).

``python -m services.notifier --probe``: the container probe; exit 0 when this host's notifier
answers a Celery ping through the broker (its consumer is connected), else 1.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys

from services.settings import get_settings

log = logging.getLogger("services.notifier")
NODE_NAME = "notifier@%h"


def probe(timeout_s: float) -> int:
    from .celery_app import app

    node = NODE_NAME.replace("%h", socket.gethostname())
    replies = app.control.ping(destination=[node], timeout=timeout_s)
    answered = any(node in reply for reply in replies)
    print(f"{node}: {'answers' if answered else 'no answer'}")
    return 0 if answered else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.notifier", description="RealRAG webhook notifier")
    parser.add_argument("--concurrency", type=int, default=4, help="deliveries in flight (prefork children)")
    parser.add_argument("--loglevel", default="INFO")
    parser.add_argument("--probe", action="store_true", help="container probe: does this host's notifier answer a ping?")
    parser.add_argument("--probe-timeout-s", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.probe:
        return probe(args.probe_timeout_s)

    from .celery_app import app

    settings = get_settings()
    if settings.webhook_secret is None:
        logging.basicConfig()
        log.warning("REALRAG_WEBHOOK_SECRET is unset: webhooks are sent UNSIGNED")
    worker_argv = ["worker", "--pool", "prefork", "--concurrency", str(args.concurrency), "--queues", settings.webhook_queue,
                   "--loglevel", args.loglevel, "--hostname", NODE_NAME, "--without-mingle", "--without-gossip"]
    app.worker_main(worker_argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
