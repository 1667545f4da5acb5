"""Container health check for the HTTP services (the images have no curl).

    python http_probe.py --port-env REALRAG_GATEWAY_PORT --default-port 8000 /readyz

Exits 0 when GET http://127.0.0.1:PORT/PATH answers 2xx within the timeout, 1 otherwise. The port
comes from the same REALRAG_* variable that the service binds to, so a changed port cannot leave the
health check probing the old one. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.error
import urllib.request


def probe(url: str, timeout_s: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 (loopback only)
            return 200 <= response.status < 300, f"{url} -> {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} -> {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return False, f"{url} -> {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="e.g. /healthz or /readyz")
    parser.add_argument("--port-env", required=True, help="variable holding the port")
    parser.add_argument("--default-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)
    port = int(os.environ.get(args.port_env) or args.default_port)
    path = args.path if args.path.startswith("/") else "/" + args.path
    ok, detail = probe(f"http://{args.host}:{port}{path}", args.timeout)
    print(detail, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
