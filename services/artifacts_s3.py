"""The S3 artefact store (``REALRAG_ARTIFACT_STORE=s3``): one bucket (and key prefix) of any
S3-compatible service, through boto3.

- AWS S3: set the bucket and region; credentials come from boto3's standard chain (``AWS_*``
  variables, IRSA / EKS Pod Identity web-identity tokens, instance profiles) unless
  ``REALRAG_S3_ACCESS_KEY_ID`` / ``REALRAG_S3_SECRET_ACCESS_KEY`` are set.
- MinIO, Cloudflare R2, GCS (XML interoperability API with HMAC keys): also set
  ``REALRAG_S3_ENDPOINT_URL`` and usually ``REALRAG_S3_ADDRESSING_STYLE=path``.

Presigned URLs are signed for ``REALRAG_S3_PUBLIC_ENDPOINT_URL`` when set (the address clients
reach, e.g. ``http://localhost:9000`` when the services talk to ``http://minio:9000``): the host is
part of the signature, so a URL cannot be rewritten afterwards. Presigning is local computation (no
request); a URL stays valid for ``REALRAG_S3_PRESIGN_TTL_S`` seconds, or until the temporary
credentials that signed it expire, whichever comes first.

boto3 1.36+ adds CRC checksums to every upload by default, which several S3-compatible services
reject; checksums are sent only where an operation requires them.
"""

from __future__ import annotations

import functools
import mimetypes
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.artifacts import ArtifactNotFound, ArtifactStore, ArtifactStoreError, InvalidKey, clean_key
from services.settings import Settings

NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    public_endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    presign_ttl_s: int = 3600
    timeout_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Config:
        secret = settings.s3_secret_access_key
        return cls(
            bucket=settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            public_endpoint_url=settings.s3_public_endpoint_url,
            region=settings.s3_region,
            addressing_style=settings.s3_addressing_style,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret else None,
            presign_ttl_s=settings.s3_presign_ttl_s,
            timeout_s=settings.s3_timeout_s,
        )

    def client(self, endpoint_url: str | None) -> Any:
        session = boto3.session.Session(
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            region_name=self.region,
        )
        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": self.addressing_style},
            connect_timeout=self.timeout_s,
            read_timeout=self.timeout_s,
            retries={"mode": "standard", "max_attempts": 3},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return session.client("s3", endpoint_url=endpoint_url, config=config)


def normalise_prefix(prefix: str) -> str:
    """'' or 'a/b/' (a clean key path with one trailing slash)."""
    stripped = prefix.strip("/")
    if not stripped:
        return ""
    try:
        return clean_key(stripped) + "/"
    except InvalidKey as exc:
        raise ValueError(f"invalid S3 key prefix {prefix!r}") from exc


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ArtifactStore(ArtifactStore):
    kind = "s3"

    def __init__(self, config: S3Config) -> None:
        if not config.bucket:
            raise ValueError("the S3 artefact store needs a bucket (REALRAG_S3_BUCKET)")
        self.config = config
        self.bucket = config.bucket
        self.prefix = normalise_prefix(config.prefix)
        self.client = config.client(config.endpoint_url)
        public = config.public_endpoint_url
        self.presign_client = config.client(public) if public and public != config.endpoint_url else self.client

    def object_key(self, key: str) -> str:
        return self.prefix + clean_key(key)

    def _failed(self, action: str, key: str, exc: Exception) -> ArtifactStoreError:
        detail = _error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__
        return ArtifactStoreError(f"S3 {action} of {self.location(key)} failed ({detail}): {exc}")

    def put(self, key: str, data: bytes) -> str:
        clean = clean_key(key)
        content_type = mimetypes.guess_type(clean)[0] or "application/octet-stream"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.prefix + clean, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise self._failed("upload", clean, exc) from exc
        return clean

    def get(self, key: str) -> bytes:
        object_key = self.object_key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
            return response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in NOT_FOUND_CODES:
                raise ArtifactNotFound(f"no artifact {clean_key(key)!r} in {self.location('')}") from exc
            raise self._failed("download", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("download", key, exc) from exc

    def exists(self, key: str) -> bool:
        object_key = self.object_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in NOT_FOUND_CODES:
                return False
            raise self._failed("lookup", key, exc) from exc
        except BotoCoreError as exc:
            raise self._failed("lookup", key, exc) from exc
        return True

    def delete(self, key: str) -> None:
        object_key = self.object_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=object_key)  # S3 answers 204 for a missing key too
        except (ClientError, BotoCoreError) as exc:
            raise self._failed("delete", key, exc) from exc

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{clean_key(key) if key else ''}"

    def direct_url(self, key: str) -> str:
        return self.presign_client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=self.config.presign_ttl_s,
        )


@functools.lru_cache(maxsize=8)
def _store(config: S3Config) -> S3ArtifactStore:
    return S3ArtifactStore(config)


def s3_store(settings: Settings) -> S3ArtifactStore:
    """One store (two boto3 clients at most) per configuration, shared by every thread (clients are thread-safe)."""
    return _store(S3Config.from_settings(settings))
