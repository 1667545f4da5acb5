"""Job webhooks (Standard Webhooks): the message, its signature, one delivery attempt, the SSRF guard.

The GPU worker and the gateway only enqueue a message (services.queue.enqueue_webhook); the
notifier (services/notifier) delivers it and retries with backoff. Every attempt re-checks the target
(its DNS may have changed since the job was accepted) and signs afresh (receivers refuse timestamps
older than a few minutes), while the message id stays the same so receivers can deduplicate.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import json
import logging
import socket
from datetime import UTC, datetime
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel
from standardwebhooks.webhooks import Webhook

from services.schemas import PRIVATE_JOB_FIELDS, Job
from services.settings import Settings

log = logging.getLogger(__name__)

# client errors worth another try (RFC 9110: timeout, conflict, rate limited); any other 4xx is final
RETRYABLE_CLIENT_ERRORS = frozenset({408, 409, 429})


class WebhookRejected(ValueError):
    pass


def check_target(url: str, allow_private: bool) -> None:
    """Refuse non-http(s) URLs and, unless allowed, plain http and hosts that resolve to non-public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookRejected("webhook_url must be an absolute http(s) URL")
    if allow_private:
        return
    if parts.scheme != "https":
        raise WebhookRejected("webhook_url must use https")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise WebhookRejected(f"webhook host does not resolve: {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookRejected("webhook_url resolves to a non-public address")


class WebhookMessage(BaseModel):
    """One event for one receiver; the notifier task's argument (JSON)."""

    id: str
    url: str
    type: str
    data: dict

    def body(self) -> bytes:
        return json.dumps({"type": self.type, "data": self.data}, separators=(",", ":")).encode()


def job_message(job: Job) -> WebhookMessage | None:
    """`generation.<status>` for a finished job with a webhook_url; None otherwise. The data is the
    public job view (no private fields)."""
    url = job.request.webhook_url
    if not url or not job.status.terminal:
        return None
    data = job.model_dump(mode="json", exclude=set(PRIVATE_JOB_FIELDS))
    return WebhookMessage(id=message_id(job), url=url, type=f"generation.{job.status.value}", data=data)


def message_id(job: Job) -> str:
    """Stable for a job's terminal state (a retry, a redelivered task or a duplicate enqueue is the
    same message to the receiver), unique across tenants (whose client-chosen job ids may be equal),
    and revealing neither the internal id nor the tenant."""
    digest = hashlib.sha256(f"{job.internal_id}:{job.status.value}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def signed_headers(secret: str | None, message_id: str, timestamp: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; `secret` is "whsec_<base64 key>" (None: unsigned)."""
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
    }
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(message_id, timestamp, body.decode())
    return headers


class Outcome(enum.Enum):
    delivered = "delivered"
    retry = "retry"  # 5xx, 408/409/429, timeout, connection error
    final = "final"  # another 4xx, a redirect, or a target the guard refuses: retrying cannot help


def attempt(message: WebhookMessage, settings: Settings, client: httpx.Client | None = None) -> tuple[Outcome, str]:
    """One signed POST of `message`; returns the outcome and a short reason for the log."""
    try:
        check_target(message.url, settings.webhook_allow_private)
    except WebhookRejected as exc:
        return Outcome.final, str(exc)
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    body = message.body()
    headers = signed_headers(secret, message.id, datetime.now(UTC), body)
    own_client = client is None
    client = client or httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False)
    try:
        with client.stream("POST", message.url, content=body, headers=headers) as response:
            status = response.status_code  # the body is never read: a receiver cannot make us download
    except httpx.HTTPError as exc:  # timeouts, refused or reset connections, bad responses
        return Outcome.retry, type(exc).__name__
    finally:
        if own_client:
            client.close()
    if 200 <= status < 300:
        return Outcome.delivered, str(status)
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        return Outcome.retry, f"HTTP {status}"
    return Outcome.final, f"HTTP {status}"


def host_of(url: str) -> str:
    """For logs: the receiver's host, never its path or query (they may carry tokens)."""
    return urlsplit(url).hostname or "?"
