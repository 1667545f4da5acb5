"""Deliveries by the real notifier worker: signed (verified with `standardwebhooks`), a 4xx is final,
5xx / 429 / dead receivers are retried on the configured schedule, the SSRF guard holds at delivery."""

from __future__ import annotations

import re

from services.queue import enqueue_webhook
from services.schemas import GenerationRequest, Job, JobStatus
from services.webhooks import message_id
from tests.conftest import TEST_WEBHOOK_SECRET
from tests.webhook_receiver import WebhookReceiver, closed_port_url


def finished_job(url: str, job_id: str = "job-1", status: JobStatus = JobStatus.succeeded) -> Job:
    request = GenerationRequest(prompt="a photo of the Zorblat X1", webhook_url=url)
    return Job(id=job_id, status=status, model="tiny-sd", prompt=request.prompt, request=request,
               request_hash="digest", worker="host:1", seeds=[1])


def test_a_finished_job_is_delivered_signed(start_notifier):
    with start_notifier() as notifier, WebhookReceiver() as hook:
        assert enqueue_webhook(finished_job(hook.url, status=JobStatus.failed), notifier.settings)
        [delivery] = hook.wait()
        notifier.wait_log(r"\(generation\.failed of job job-1\) to 127\.0\.0\.1 delivered \(204\) on try 1")
    event = delivery.verified(TEST_WEBHOOK_SECRET)
    assert event["type"] == "generation.failed"
    assert event["data"]["id"] == "job-1" and "worker" not in event["data"] and "request_hash" not in event["data"]
    assert delivery.headers["webhook-id"] == message_id(finished_job(hook.url, status=JobStatus.failed))
    assert "token=" not in notifier.log_text(), "the receiver's URL path and query stay out of the log"


def test_the_probe_answers_while_the_notifier_runs(start_notifier):
    import subprocess
    import sys

    with start_notifier() as notifier:
        notifier.wait_log(r"ready\.")
        probe = subprocess.run([sys.executable, "-m", "services.notifier", "--probe"], env=notifier.process_env,
                               capture_output=True, text=True, timeout=60)
        assert probe.returncode == 0, probe.stdout + probe.stderr
    probe = subprocess.run([sys.executable, "-m", "services.notifier", "--probe", "--probe-timeout-s", "1"],
                           env=notifier.process_env, capture_output=True, text=True, timeout=60)
    assert probe.returncode == 1 and "no answer" in probe.stdout


def test_a_4xx_answer_is_final(start_notifier):
    with start_notifier() as notifier, WebhookReceiver(statuses=(404, 204)) as hook:
        enqueue_webhook(finished_job(hook.url), notifier.settings)
        notifier.wait_log(r"of job job-1\) .* HTTP 404 \(final, not retried\)")
        assert len(hook.received) == 1
    assert "retrying" not in notifier.log_text()


def test_5xx_is_retried_on_schedule_then_given_up(start_notifier):
    with start_notifier(webhook_retry_delays_s="[1, 2]") as notifier, WebhookReceiver(statuses=(503,)) as hook:
        enqueue_webhook(finished_job(hook.url), notifier.settings)
        notifier.wait_log(r"giving up after 3 tries")
        deliveries = hook.received[:]
    assert len(deliveries) == 3  # the first try and one per configured delay
    assert [int(d) for d in re.findall(r"retrying in (\d+)s", notifier.log_text())] == [1, 2]
    assert {d.headers["webhook-id"] for d in deliveries} == {message_id(finished_job(""))}  # one message, deduplicable
    for delivery in deliveries:  # each try is signed afresh with its own timestamp
        delivery.verified(TEST_WEBHOOK_SECRET)


def test_429_then_success_is_delivered_once_more(start_notifier):
    with start_notifier() as notifier, WebhookReceiver(statuses=(429, 500, 200)) as hook:
        enqueue_webhook(finished_job(hook.url), notifier.settings)
        hook.wait(3)
        notifier.wait_log(r"delivered \(200\) on try 3")
    assert "retrying in 1s" in notifier.log_text()


def test_a_dead_receiver_is_retried_and_does_not_hold_other_deliveries(start_notifier):
    with start_notifier(webhook_timeout_s="10") as notifier, WebhookReceiver(hold=True) as hung, WebhookReceiver() as healthy:
        enqueue_webhook(finished_job(closed_port_url(), job_id="dead"), notifier.settings)
        enqueue_webhook(finished_job(hung.url, job_id="hung"), notifier.settings)
        hung.wait_held()
        enqueue_webhook(finished_job(healthy.url, job_id="next"), notifier.settings)
        healthy.wait()
        assert hung.waiting == 1, "delivered while the notifier still waits on the hung receiver"
        notifier.wait_log(r"of job dead\) .*ConnectError; giving up after 3 tries")
        notifier.wait_log(r"of job hung\) .*Timeout.*retrying in 1s")


def test_the_ssrf_guard_holds_at_delivery(start_notifier):
    """A loopback target that got into the queue (an old message, a DNS change) is refused by the notifier."""
    with start_notifier(webhook_allow_private="false") as notifier, WebhookReceiver() as hook:
        enqueue_webhook(finished_job(hook.url), notifier.settings)
        notifier.wait_log(r"of job job-1\) to 127\.0\.0\.1 not delivered: webhook_url must use https \(final")
        assert hook.received == []
