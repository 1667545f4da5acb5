"""schemathesis against the real stack: gateway, retriever and a Celery worker as processes (realrag
serve's Stack), the machine's Redis, API keys on. Every operation of /openapi.json gets schema-valid
and schema-breaking requests (schemathesis's examples, coverage and fuzzing phases), from a fixed
seed so a run is repeatable; every answer must be

- never a 5xx (`not_a_server_error`),
- a status the document lists for that operation (`status_code_conformance`), with the documented
  content type (`content_type_conformance`), body schema (`response_schema_conformance`) and headers,
- 405 with `Allow` for a method the path does not serve, `Allow` naming what it serves
  (`unsupported_method`, `allow_header_conformance`),
- a 4xx for a request that breaks the schema (`negative_data_rejection`), a 401 without the key
  where the document asks for one (`ignored_auth`).

The limits are small (64x64 images, 4 steps, a queue of 8) so that the jobs schemathesis gets
accepted are quick for the worker, and the OpenAI route waits 1 s before its documented 504. The
schema carries those limits (they are settings), so the generated requests respect them.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections import Counter

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, settings

from services.tenants import hash_key
from tests.conftest import TEST_REDIS, TINY_CLIP

pytestmark = pytest.mark.slow  # starts the stack

SEED = 20_251_111
MAX_EXAMPLES = 50  # fuzzing cases per operation, on top of the examples and coverage phases
MIN_CASES = 1_000
API_KEY = "fuzz-key"
REDIS_URL = f"redis://{TEST_REDIS}/12"  # a database of its own; every key the run makes is deleted
# the settings that shape the document (limits, auth): the stack runs with them, the schema is built with them
FUZZ_SETTINGS = {
    # one admin tenant (corpus writes need it), with room for the whole run in its rate and in-flight limits
    "REALRAG_TENANTS": json.dumps(
        [{"name": "fuzz", "key_sha256": hash_key(API_KEY), "role": "admin", "requests_per_minute": 1_000_000, "max_jobs_in_flight": 1_000}]
    ),
    "REALRAG_MAX_SIZE": "64",
    "REALRAG_MAX_STEPS": "4",
    "REALRAG_MAX_N": "2",
    "REALRAG_MAX_QUEUE_DEPTH": "4",
    "REALRAG_SYNC_WAIT_TIMEOUT_S": "60",
    "REALRAG_MAX_BODY_BYTES": str(256 * 1024),
    "REALRAG_MAX_UPLOAD_BYTES": str(256 * 1024),
}
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    "unsupported_method",
    "allow_header_conformance",
    "negative_data_rejection",
    "ignored_auth",
]
CALLS: Counter[tuple[str, int]] = Counter()  # (operation, status) -> requests sent


def gateway_document() -> dict:
    """The gateway's /openapi.json under FUZZ_SETTINGS, built in-process. schemathesis needs the
    document when pytest collects the tests, before any fixture has started the stack
    (`schemathesis.pytest.from_fixture` does not work with pytest 9); `fuzz_stack` checks that the
    running gateway serves this very document."""
    from services.gateway.app import app
    from services.settings import Settings

    with pytest.MonkeyPatch.context() as env:
        for name, value in FUZZ_SETTINGS.items():
            env.setenv(name, value)
        fuzz_settings = Settings()
    previous = getattr(app.state, "settings", None)
    app.state.settings, app.openapi_schema = fuzz_settings, None
    try:
        return copy.deepcopy(app.openapi())
    finally:
        app.state.settings, app.openapi_schema = previous, None


DOCUMENT = gateway_document()


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory):
    from realrag.stack import Stack, free_port
    from services.settings import Settings

    env = {
        **FUZZ_SETTINGS,
        "REALRAG_DATA_DIR": str(tmp_path_factory.mktemp("schemathesis")),
        "REALRAG_REDIS_URL": REDIS_URL,
        "REALRAG_EMBEDDED_REDIS": "never",
        "REALRAG_QUEUE_NAME": f"realrag.fuzz.{uuid.uuid4().hex[:8]}",
        "REALRAG_GATEWAY_PORT": str(free_port()),
        "REALRAG_RETRIEVER_PORT": str(free_port()),
        "REALRAG_ENCODER_MODEL": TINY_CLIP,
        "REALRAG_ENCODER_DEVICE": "cpu",
        "REALRAG_DEVICE": "cpu",
        "REALRAG_DEFAULT_MODEL": "tiny-sd",
    }
    client = redis.Redis.from_url(REDIS_URL)
    before = set(client.keys("*"))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        stack_settings = Settings()
        with Stack(stack_settings, stack_settings.data_dir / "logs").start() as running:
            served = httpx.get(f"{running.gateway_url}/openapi.json", timeout=30).json()
            assert served == DOCUMENT, "the stack serves the document the cases were generated from"
            yield running.gateway_url
    finally:
        os.environ.clear()
        os.environ.update(saved)
        created = set(client.keys("*")) - before
        if created:
            client.delete(*created)
        client.close()


schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "auth": {"openapi": {"bearerAuth": {"bearer": API_KEY}}},
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES},
            "request-timeout": 30,
        }
    ),
)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_gets_a_server_error_or_an_undocumented_answer(case, fuzz_stack):
    checks = [getattr(schemathesis.checks, name) for name in CHECKS]
    response = case.call(base_url=fuzz_stack)
    CALLS[(case.operation.label, response.status_code)] += 1
    case.validate_response(response, checks=checks)


def test_the_run_covered_every_operation_with_enough_cases():
    operations = {result.ok().label for result in schema.get_all_operations()}
    fuzzed = {label for label, _ in CALLS}
    total = sum(CALLS.values())
    by_status = Counter()
    for (_, status), count in CALLS.items():
        by_status[status] += count
    print(f"\nschemathesis: {total} requests over {len(fuzzed)} operations; statuses {dict(sorted(by_status.items()))}")
    for label in sorted(operations):
        statuses = {status: count for (op, status), count in sorted(CALLS.items()) if op == label}
        print(f"  {label}: {sum(statuses.values())} {statuses}")
    assert fuzzed == operations, f"not fuzzed: {operations - fuzzed}"
    assert total >= MIN_CASES
    assert not [s for s in by_status if s >= 500]
