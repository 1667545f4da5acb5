"""Where images live: corpus photos and generated outputs, addressed by a relative key.

Keys look like ``corpus/<id>.png`` or ``outputs/<job>/<i>.png``. Two stores implement one
interface, picked by ``REALRAG_ARTIFACT_STORE``; every caller gets its store from
``artifact_store(settings)`` and never builds one itself:

- ``local`` (the default; embedded dev stack, compose volume, Kubernetes ReadWriteMany PVC): a
  directory shared by gateway, retriever and worker. Only this store has file paths
  (``LocalArtifactStore.path``); the gateway serves its files itself.
- ``s3`` (services/artifacts_s3.py, boto3): a bucket of any S3-compatible service (AWS S3, MinIO,
  GCS's XML interoperability API, Cloudflare R2). Clients download straight from the bucket with
  presigned URLs (``direct_url``).

Every store behaves the same way (tests/services/test_artifacts.py runs one contract against both):
``put`` overwrites, ``get`` of a missing key raises ``ArtifactNotFound``, ``delete`` of a missing
key is a no-op, and a key with ``..``, a leading ``/`` or an empty name is ``InvalidKey`` everywhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, ClassVar

from services.files import atomic_write_bytes

if TYPE_CHECKING:
    from services.settings import Settings


class InvalidKey(ValueError):
    pass


class ArtifactNotFound(FileNotFoundError):
    """No artifact under that key (a FileNotFoundError, as the local store always raised)."""


class ArtifactStoreError(RuntimeError):
    """The store itself failed (unreachable, access denied, no such bucket): not the caller's fault."""


def clean_key(key: str) -> str:
    if not isinstance(key, str) or "\x00" in key or "\\" in key:
        raise InvalidKey(f"invalid artifact key: {key!r}")
    path = PurePosixPath(key)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise InvalidKey(f"invalid artifact key: {key!r}")
    return str(path)


class ArtifactStore(ABC):
    kind: ClassVar[str]

    @abstractmethod
    def put(self, key: str, data: bytes) -> str:
        """Store ``data`` under ``key`` (replacing what was there); returns the clean key."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The bytes under ``key``; ``ArtifactNotFound`` when there are none."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error."""

    @abstractmethod
    def location(self, key: str) -> str:
        """Where ``key`` lives, for messages and logs (a file path, ``s3://bucket/key``)."""

    def direct_url(self, key: str) -> str | None:
        """A URL that downloads ``key`` without the gateway (time-limited), or None when the gateway
        must serve it (the local store)."""
        return None


class LocalArtifactStore(ArtifactStore):
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key``: local-only (code that needs this cannot run on object storage)."""
        return self.root / clean_key(key)

    def put(self, key: str, data: bytes) -> str:
        atomic_write_bytes(self.path(key), data)
        return clean_key(key)

    def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise ArtifactNotFound(f"no artifact {clean_key(key)!r} in {self.root}") from exc

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        path = self.path(key)
        if path.is_file():
            path.unlink(missing_ok=True)

    def location(self, key: str) -> str:
        return str(self.path(key))


def artifact_store(settings: Settings) -> ArtifactStore:
    """The store the settings name. S3 stores (and their boto3 clients) are cached per configuration."""
    if settings.artifact_store == "s3":
        from services.artifacts_s3 import s3_store  # boto3 is imported only where it is used

        return s3_store(settings)
    return LocalArtifactStore(settings.artifact_root)


def direct_url(settings: Settings, key: str) -> str | None:
    """A presigned download URL when the store has one (s3), else None (the gateway serves the key)."""
    if settings.artifact_store == "local":
        return None  # no store object: building one creates directories
    return artifact_store(settings).direct_url(key)
