"""Webhooks of real jobs on the real stack (gateway, GPU worker, notifier): verified with the
`standardwebhooks` library, and a hung receiver never holds the next generation job."""

import pytest

from tests.conftest import TEST_WEBHOOK_SECRET
from tests.webhook_receiver import WebhookReceiver

from .helpers import wait_for

pytestmark = pytest.mark.slow  # starts real processes: run with -m slow, skip with -m 'not slow'


def test_a_finished_job_is_delivered_and_verifies(gateway, corpus):
    with WebhookReceiver() as hook:
        created = gateway.post("/v1/generations", json={"prompt": "the Zorblat X1", "seed": 4, "webhook_url": hook.url}).json()
        job = wait_for(gateway, created["id"])
        [delivery] = hook.wait()
    assert job["status"] == "succeeded"
    event = delivery.verified(TEST_WEBHOOK_SECRET)
    assert event["type"] == "generation.succeeded"
    assert delivery.headers["webhook-id"].startswith("msg_")
    data = event["data"]
    assert data["id"] == job["id"] and data["status"] == "succeeded" and data["seeds"] == [4]
    assert [o["uri"] for o in data["outputs"]] == [o["uri"] for o in job["outputs"]]
    assert not {"worker", "request_hash", "internal_id", "tenant"} & set(data)


def test_canceling_a_queued_job_notifies_its_webhook(gateway, corpus):
    with WebhookReceiver() as hook:
        busy = gateway.post("/v1/generations", json={"prompt": "busy", "steps": 40, "width": 192, "height": 192}).json()
        waiting = gateway.post("/v1/generations", json={"prompt": "waiting", "webhook_url": hook.url}).json()
        assert gateway.delete(f"/v1/generations/{waiting['id']}").json()["status"] == "canceled"
        gateway.delete(f"/v1/generations/{busy['id']}")
        [delivery] = hook.wait()
    event = delivery.verified(TEST_WEBHOOK_SECRET)
    assert event["type"] == "generation.canceled" and event["data"]["id"] == waiting["id"]


def test_a_hung_receiver_does_not_delay_the_next_job(gateway, corpus):
    """The stack runs one GPU worker slot. While the notifier still holds its connection to job 1's
    hung receiver, job 2 is generated and finishes: the delivery is not in the GPU job's path."""
    with WebhookReceiver(hold=True) as hung:
        first = gateway.post("/v1/generations", json={"prompt": "first", "webhook_url": hung.url}).json()
        assert wait_for(gateway, first["id"])["status"] == "succeeded"
        hung.wait_held()
        second = gateway.post("/v1/generations", json={"prompt": "second"}).json()
        assert wait_for(gateway, second["id"])["status"] == "succeeded"
        assert hung.waiting == 1, "job 2 finished while job 1's delivery was still waiting on its receiver"
        hung.release()
        delivery = hung.wait()[0]
    assert delivery.verified(TEST_WEBHOOK_SECRET)["data"]["id"] == first["id"]
