"""Webhook messages, signatures and single delivery attempts: verified with the `standardwebhooks`
library (what receivers run), posted to a real HTTP receiver on loopback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from services.schemas import GenerationRequest, Job, JobStatus
from services.settings import Settings
from services.webhooks import Outcome, WebhookRejected, attempt, check_target, job_message, signed_headers
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.webhook_receiver import WebhookReceiver, closed_port_url


def finished_job(url: str | None, status: JobStatus = JobStatus.succeeded) -> Job:
    request = GenerationRequest(prompt="a <b>bold</b> prompt", webhook_url=url)
    return Job(id="job-1", internal_id="internal-1", tenant="a", status=status, model="tiny-sd", prompt=request.prompt,
               request=request, request_hash="digest", worker="host:123", seeds=[7])


def settings(**values) -> Settings:
    return Settings(**{"webhook_secret": TEST_WEBHOOK_SECRET, "webhook_allow_private": True, "webhook_timeout_s": 2, **values})


@pytest.mark.parametrize(
    "url",
    ["http://example.com/x", "https://127.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/latest",
     "https://[::1]/x", "file:///etc/passwd", "https:///nohost", "https://localhost/x"],
)
def test_private_or_odd_targets_are_refused(url):
    with pytest.raises(WebhookRejected):
        check_target(url, allow_private=False)


def test_loopback_allowed_only_when_configured():
    check_target("http://127.0.0.1:9/hook", allow_private=True)


def test_signed_headers_verify_with_the_standard_webhooks_library():
    body = b'{"type":"generation.succeeded","data":{"id":"x"}}'
    headers = signed_headers(TEST_WEBHOOK_SECRET, "job-1:succeeded", datetime.now(UTC), body)
    assert Webhook(TEST_WEBHOOK_SECRET).verify(body, headers) == json.loads(body)
    with pytest.raises(WebhookVerificationError):
        Webhook(TEST_WEBHOOK_SECRET).verify(body.replace(b"x", b"y"), headers)
    other = "whsec_" + "b3RoZXIgc2VjcmV0IGtleSBvZiAzMiBieXRlcyEhISE="
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(body, headers)


def test_the_secret_must_be_a_standard_webhooks_secret():
    for bad in ("test-webhook-secret", "whsec_not base64!", "whsec_c2hvcnQ="):
        with pytest.raises(ValueError, match="Standard Webhooks secret"):
            Settings(webhook_secret=bad)


def test_message_is_the_public_view_with_a_stable_id():
    job = finished_job("https://hooks.example.com/x")
    message = job_message(job)
    assert message is not None
    assert message.type == "generation.succeeded" and message.id.startswith("msg_")
    assert message.id == job_message(job.model_copy(update={"version": 9})).id  # a redelivery is the same message
    assert message.id != job_message(job.model_copy(update={"status": JobStatus.failed})).id
    other_tenants = job.model_copy(update={"tenant": "b", "internal_id": "another-internal-id"})  # same client id
    assert message.id != job_message(other_tenants).id
    assert "job-1" not in message.id and "internal" not in message.id
    assert not {"worker", "request_hash", "internal_id", "tenant"} & set(message.data)
    assert message.data["prompt"] == "a <b>bold</b> prompt"
    assert job_message(finished_job(None)) is None
    assert job_message(finished_job("https://hooks.example.com/x", JobStatus.generating)) is None


def test_a_delivery_is_signed_and_verifiable_by_the_receiver():
    message = job_message(finished_job("placeholder"))
    with WebhookReceiver() as hook:
        message = message.model_copy(update={"url": hook.url})
        assert attempt(message, settings())[0] is Outcome.delivered
        [delivery] = hook.wait()
    event = delivery.verified(TEST_WEBHOOK_SECRET)
    assert event["type"] == "generation.succeeded" and event["data"]["id"] == "job-1"
    assert delivery.headers["webhook-id"] == message.id


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(200, Outcome.delivered), (400, Outcome.final), (401, Outcome.final), (404, Outcome.final), (410, Outcome.final),
     (302, Outcome.final), (408, Outcome.retry), (409, Outcome.retry), (429, Outcome.retry), (500, Outcome.retry),
     (503, Outcome.retry)],
)
def test_answers_are_classified(status, outcome):
    with WebhookReceiver(statuses=(status,)) as hook:
        message = job_message(finished_job(hook.url))
        assert attempt(message, settings())[0] is outcome


def test_a_dead_receiver_is_retried():
    message = job_message(finished_job(closed_port_url()))
    assert attempt(message, settings())[0] is Outcome.retry


def test_a_hung_receiver_times_out_and_is_retried():
    with WebhookReceiver(hold=True) as hook:
        message = job_message(finished_job(hook.url))
        outcome, reason = attempt(message, settings(webhook_timeout_s=0.5))
    assert outcome is Outcome.retry and "Timeout" in reason


def test_the_guard_is_rechecked_at_delivery():
    """A private target accepted earlier (or whose DNS changed) is refused when delivering, for good."""
    with WebhookReceiver() as hook:
        message = job_message(finished_job(hook.url))
        outcome, reason = attempt(message, settings().model_copy(update={"webhook_allow_private": False}))
        assert outcome is Outcome.final and "https" in reason
        assert hook.received == []
