"""Where images live: corpus photos and generated outputs, addressed by a relative key.

The local store is a directory shared by gateway, retriever and worker (a volume in compose, a
ReadWriteMany PVC in Kubernetes); it is the only store so far.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from services.files import atomic_write_bytes


class InvalidKey(ValueError):
    pass


def clean_key(key: str) -> str:
    path = PurePosixPath(key)
    if path.is_absolute() or not path.parts or any(part in ("..", "") for part in path.parts):
        raise InvalidKey(f"invalid artifact key: {key!r}")
    return str(path)


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / clean_key(key)

    def put(self, key: str, data: bytes) -> str:
        atomic_write_bytes(self.path(key), data)
        return clean_key(key)

    def get(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
