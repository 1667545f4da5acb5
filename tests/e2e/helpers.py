import time

import httpx

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
