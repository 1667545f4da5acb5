"""A real S3-protocol server for the artefact-store tests: moto's standalone server.

moto's ``ThreadedMotoServer`` is moto's HTTP server (the same one as the ``moto_server`` command),
started on a free loopback port from a thread. boto3 reaches it over HTTP through an endpoint URL,
exactly as it reaches MinIO or R2; nothing is patched in-process (no ``mock_aws``). It stands in for
MinIO because no MinIO binary or container can be fetched on the machines that run the tests, and
moto is a pinned dev dependency that implements the S3 REST protocol (SigV4, presigned URLs,
NoSuchKey/NoSuchBucket errors, multipart) well enough for a contract test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

S3_REGION = "us-east-1"
S3_ACCESS_KEY = "realrag-test-access-key"
S3_SECRET_KEY = "realrag-test-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=S3_REGION,
                            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY)

    def new_bucket(self) -> str:
        name = f"realrag-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def settings(self, bucket: str, **extra: str) -> dict[str, str]:
        """REALRAG_* settings (lower-case names) of an S3 artefact store in `bucket` on this server."""
        return {
            "artifact_store": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint_url,
            "s3_region": S3_REGION,
            "s3_addressing_style": "path",
            "s3_access_key_id": S3_ACCESS_KEY,
            "s3_secret_access_key": S3_SECRET_KEY,
            **extra,
        }

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never wait for an instance-metadata endpoint
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield S3Server(f"http://{host}:{port}")
        finally:
            server.stop()
