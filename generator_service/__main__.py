"""``python -m generator_service worker|probe``: the Celery GPU worker and its container probes."""

from __future__ import annotations

import argparse
import sys

from services.settings import get_settings


def run_worker(args: argparse.Namespace) -> int:
    from generator_service.celery_app import app

    settings = get_settings()
    argv = ["worker", "--pool", args.pool, "--concurrency", str(args.concurrency), "--queues", settings.queue_name,
            "--loglevel", args.loglevel,
            # mingle syncs revoked task ids between workers (we cancel through the job store) and
            # costs a second on every broker reconnection, in the way of job recovery
            "--without-mingle"]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv)
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from generator_service.heartbeat import check

    settings = get_settings()
    device = None if settings.device in ("", "auto") else settings.device
    ok, reason = check(settings.heartbeat_path, liveness=args.liveness, max_age_s=args.max_age_s,
                       need_model=settings.worker_preload, device=device)
    print(reason)
    return 0 if ok else 1


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    parser.add_argument("--hostname")
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=run_worker)


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--liveness", action="store_true", help="the worker consumed from the broker recently")
    mode.add_argument("--readiness", action="store_true", help="consuming and, when preloading, the served models loaded on REALRAG_DEVICE")
    parser.add_argument("--max-age-s", type=float, default=120.0)
    parser.set_defaults(func=run_probe)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m generator_service", description="RealRAG generator worker")
    sub = parser.add_subparsers(dest="command", required=True)
    add_worker_arguments(sub.add_parser("worker", help="run a Celery generator worker (one per GPU)"))
    add_probe_arguments(sub.add_parser("probe", help="container probe of this worker"))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
