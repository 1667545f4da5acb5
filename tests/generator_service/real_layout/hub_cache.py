"""Write repositories into a Hugging Face hub cache, laid out as ``snapshot_download`` leaves them.

``models--{org}--{name}/blobs/<etag>`` holds the content, ``snapshots/<commit>/<path>`` are relative
symlinks to the blobs, ``refs/main`` names the commit and ``trees/<commit>.json`` is the file listing
huggingface_hub >= 1.x caches on a download (diffusers reads it offline to pick variants and skip
passed components). Weights are written with safetensors in the dtype the real file has, optionally
sharded with the ``*.safetensors.index.json`` that ``save_pretrained`` writes.

Only the writer lives here; what each real repository holds is in ``repos.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from huggingface_hub._tree_cache import TreeCacheEntry, write_tree_cache
from safetensors.torch import save as safetensors_bytes

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".pt", ".pth")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def commit_for(repo_id: str) -> str:
    """A stable, well-formed 40-hex commit id per repo (the real ones are unknowable offline)."""
    return hashlib.sha1(f"{repo_id}@realrag-real-layout".encode()).hexdigest()


def shard_name(filename: str, index: int, total: int) -> str:
    """``diffusion_pytorch_model.safetensors`` -> ``diffusion_pytorch_model-00001-of-00003.safetensors``."""
    stem, suffix = filename.rsplit(".", 1)
    return f"{stem}-{index:05d}-of-{total:05d}.{suffix}"


class RepoWriter:
    """Collects the files of one repo, then writes them into the cache in one go (``finish``)."""

    def __init__(self, cache_dir: Path, repo_id: str):
        self.cache_dir = cache_dir
        self.repo_id = repo_id
        self.files: dict[str, bytes] = {}

    # -- plain files --------------------------------------------------------------------------

    def bytes(self, path: str, data: bytes) -> None:
        if path in self.files:
            raise ValueError(f"{self.repo_id}: {path} written twice")
        self.files[path] = data

    def json(self, path: str, body: Mapping[str, Any]) -> None:
        self.bytes(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode())

    def text(self, path: str, body: str) -> None:
        self.bytes(path, body.encode())

    # -- weights -------------------------------------------------------------------------------

    def safetensors(self, path: str, tensors: Mapping[str, torch.Tensor], dtype: torch.dtype, shards: int = 1) -> None:
        """Floating tensors cast to ``dtype`` (what the real file holds); ``shards > 1`` splits the keys
        into that many files named as ``save_pretrained`` names them, plus the index JSON."""
        cast = {
            name: (value.to(dtype) if value.is_floating_point() else value).contiguous()
            for name, value in tensors.items()
        }
        if shards == 1:
            self.bytes(path, safetensors_bytes(cast, metadata={"format": "pt"}))
            return
        names = list(cast)
        total_size = sum(t.numel() * t.element_size() for t in cast.values())
        per_shard = total_size / shards
        groups: list[list[str]] = [[] for _ in range(shards)]
        running = 0
        for name in names:  # in order, each shard about total/shards bytes, none empty
            index = min(int(running // per_shard), shards - 1)
            groups[index].append(name)
            running += cast[name].numel() * cast[name].element_size()
        for index in range(shards):
            if not groups[index]:  # move one key forward so no shard is empty
                donor = next(i for i in range(shards) if len(groups[i]) > 1)
                groups[index].append(groups[donor].pop())
        weight_map = {}
        for index, group in enumerate(groups, start=1):
            name = shard_name(path.rsplit("/", 1)[-1], index, shards)
            folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
            self.bytes(folder + name, safetensors_bytes({k: cast[k] for k in group}, metadata={"format": "pt"}))
            weight_map.update({k: name for k in group})
        self.json(f"{path}.index.json", {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))})

    def torch_pickle(self, path: str, state: Any) -> None:
        """A ``torch.save`` file (``.bin``), as older adapter repos ship them."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.bytes(path, buffer.getvalue())

    # -- cache layout ---------------------------------------------------------------------------

    def finish(self) -> Path:
        """Write blobs, snapshot symlinks, ``refs/main`` and the tree listing; return the snapshot."""
        org, name = self.repo_id.split("/")
        storage = self.cache_dir / f"models--{org}--{name}"
        commit = commit_for(self.repo_id)
        snapshot = storage / "snapshots" / commit
        entries: dict[str, TreeCacheEntry] = {}
        for path, data in sorted(self.files.items()):
            lfs = path.endswith(LFS_SUFFIXES)
            sha256 = hashlib.sha256(data).hexdigest()
            etag = sha256 if lfs else git_blob_sha1(data)
            blob = storage / "blobs" / etag
            blob.parent.mkdir(parents=True, exist_ok=True)
            if not blob.exists():
                blob.write_bytes(data)
            link = snapshot / path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
            entries[path] = TreeCacheEntry(
                size=len(data),
                blob_id=git_blob_sha1(data),
                lfs_sha256=sha256 if lfs else None,
                lfs_size=len(data) if lfs else None,
            )
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / "main").write_text(commit)
        write_tree_cache(str(storage), commit, entries)
        return snapshot
