import time

import httpx

from tests.conftest import TEST_REDIS

TERMINAL = {"succeeded", "failed", "canceled"}


def wait_for(client: httpx.Client, job_id: str, until=lambda job: job["status"] in TERMINAL, timeout: float = 180.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/generations/{job_id}").json()
        if until(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} stuck: {job['status']} {job.get('progress')}")
        time.sleep(0.1)


# the multi-tenant stack of tests/e2e/conftest.py
TENANT_KEYS = {"a": "e2e-key-of-a", "b": "e2e-key-of-b", "ops": "e2e-key-of-ops", "slow": "e2e-key-of-slow"}
TENANT_REDIS_URL = f"redis://{TEST_REDIS}/4"
RETRIEVER_TOKEN = "e2e-retriever-token"
RETRIEVER_ADMIN_TOKEN = "e2e-retriever-admin-token"
METRICS_TOKEN = "e2e-metrics-token"
