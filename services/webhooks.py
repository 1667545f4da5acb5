"""Signed job webhooks (Standard Webhooks headers), with an SSRF guard on the target."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import time
import uuid
from urllib.parse import urlsplit

import httpx
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)


class WebhookRejected(ValueError):
    pass


def check_target(url: str, allow_private: bool) -> None:
    """Refuse non-http(s) URLs and, unless allowed, hosts that resolve to private addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise WebhookRejected("webhook_url must be an absolute http(s) URL")
    if allow_private:
        return
    if parts.scheme != "https":
        raise WebhookRejected("webhook_url must use https")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise WebhookRejected(f"webhook host does not resolve: {parts.hostname}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise WebhookRejected("webhook_url resolves to a non-public address")


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@retry(
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=0.5, max=5),
    retry=retry_if_exception_type(httpx.HTTPError),
    reraise=True,
)
def _post(url: str, body: bytes, headers: dict[str, str]) -> None:
    response = httpx.post(url, content=body, headers=headers, timeout=5.0, follow_redirects=False)
    if response.status_code >= 300:
        raise httpx.HTTPStatusError("webhook not accepted", request=response.request, response=response)


def deliver(url: str, event: str, payload: dict, secret: str | None, allow_private: bool) -> bool:
    """POST the event; returns False (logged) when every attempt failed. Never raises."""
    try:
        check_target(url, allow_private)
        body = json.dumps({"type": event, "data": payload}, separators=(",", ":")).encode()
        message_id = f"msg_{uuid.uuid4().hex}"
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "webhook-id": message_id, "webhook-timestamp": str(timestamp)}
        if secret:
            headers["webhook-signature"] = sign(secret, message_id, timestamp, body)
        _post(url, body, headers)
        return True
    except Exception as exc:  # a receiver's failure must never fail the job
        log.warning("webhook to %s failed: %s", urlsplit(url).hostname, exc)
        return False


def notify_job(job, settings) -> bool:
    """Send `generation.<status>` for a finished job to its webhook_url, if it has one."""
    url = job.request.webhook_url
    if not url or not job.status.terminal:
        return False
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    # the same public view as the gateway's: no worker host:pid, no request digest
    payload = job.model_dump(mode="json", exclude={"request_hash", "worker"})
    return deliver(url, f"generation.{job.status.value}", payload, secret, settings.webhook_allow_private)
