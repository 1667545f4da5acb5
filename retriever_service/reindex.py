"""Deploy a trained retriever: re-embed the corpus when its image tower changed, switch the alias.

``realrag index --retriever CKPT``:

1. validates the checkpoint against the deployed base encoder (settings.encoder_model/pretrained);
2. compares the checkpoint's image space with the one the current collection was embedded in (the
   ``encoder`` payload field). A text-tower-only checkpoint (the default recipe) shares the base
   image space: nothing to rebuild. Otherwise it
3. builds ``<alias>-v<N+1>``: scrolls the current collection, reloads each image from the artifact
   store, embeds it with the checkpoint's image tower, upserts it with the same id and payload,
   then copies whatever was ingested meanwhile (one catch-up pass);
4. records which checkpoint built it in the new collection's own metadata in the index (shared
   state: every retriever replica reads it on ingest, see ``deployment_record``), then
5. switches the alias atomically and copies what reached the old collection in the meantime.
   Searches keep answering from the old collection during the rebuild and from the new one after
   the switch; the old collection stays for rollback (``realrag index --rollback``).

Optionally it registers the checkpoint for its generator in the user models file
(``REALRAG_MODELS_FILE``): ``[models.<key>.retrievers] reflective = "<path>"``.
"""

from __future__ import annotations

import json
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.settings import Settings

from .checkpoints import CheckpointError, load_retriever_weights, read_card, resolve_weights_path
from .index import IndexedPoint, VectorIndex, next_version_name, open_index

ProgressHook = Callable[[str, int], None]


class ReindexError(RuntimeError):
    """The corpus cannot be re-indexed as asked; the message says why."""


@dataclass
class ReindexResult:
    checkpoint: str
    image_space: str
    collection: str
    previous: str | None
    rebuilt: bool
    points: int = 0
    caught_up: int = 0
    seconds: float = 0.0
    registered: dict[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- image spaces ---------------------------------------------------------------------------------


def image_space(card: dict[str, Any]) -> str:
    """What a collection's vectors depend on: the base encoder id, or the trained image tower."""
    if "image" in card["towers"]:
        return f"retriever-image:{card['image_tower_sha256'][:16]}"
    return card["base_encoder"]["id"]


def collection_image_space(index: VectorIndex) -> str | None:
    """The recorded space of the collection behind the alias, else its first point's `encoder` field."""
    current = index.current_collection()
    record = deployment_record(index, current) if current else None
    if record and record.get("image_space"):
        return str(record["image_space"])
    for point in index.scroll(batch_size=1):
        return point.payload.get("encoder")
    return None


def load_checkpoint_encoder(settings: Settings, checkpoint: str | Path, device: str | None = None):
    """The deployed base encoder with the checkpoint's towers loaded (validated: refuses a mismatch)."""
    from .encoder import ClipEncoder

    encoder = ClipEncoder(
        settings.encoder_model,
        settings.encoder_pretrained,
        device=device or settings.encoder_device,
        batch_size=settings.encoder_batch_size,
    )
    load_retriever_weights(encoder.model, checkpoint, base_encoder_id=encoder.id)
    encoder.text_tower = str(resolve_weights_path(checkpoint))
    return encoder


# --- deployments record: shared state, stored with the collection in the index ------------------------
#
# Which checkpoint built a collection (and so which image tower ingest must use for it) is recorded in
# the collection's own metadata in Qdrant, written *before* the alias switches to it. Every replica
# reads it through the index it already shares: no per-pod file, no second store to keep in step, and
# a rollback points the alias at a collection that carries its own record.

DEPLOYMENT_KEY = "realrag_deployment"


def deployment_record(index: VectorIndex, collection: str) -> dict[str, Any] | None:
    """What `realrag index` recorded when it built `collection` (None: ingested with the base encoder)."""
    record = index.collection_metadata(collection).get(DEPLOYMENT_KEY)
    return dict(record) if isinstance(record, dict) else None


def image_tower_for_collection(index: VectorIndex, collection: str) -> str | None:
    """The checkpoint whose image tower embedded `collection`, or None for the base encoder.

    Whoever ingests into a rebuilt collection must embed with this tower, not the base one.
    """
    record = deployment_record(index, collection)
    return record.get("image_tower") if record else None


def record_deployment(index: VectorIndex, collection: str, entry: dict[str, Any]) -> None:
    index.update_collection_metadata(collection, {DEPLOYMENT_KEY: json.loads(json.dumps(entry, default=str))})


def legacy_deployments_path(settings: Settings) -> Path:
    """Where releases before the shared record kept it: a file under the (per-pod) data dir."""
    return settings.data_dir / "retrievers" / "collections.json"


def migrate_legacy_deployments(settings: Settings, index: VectorIndex) -> list[str]:
    """Copy records from the old per-process file into the index, for collections that have none.

    Returns the collections migrated. The file is left in place (an older release may still read it)."""
    path = legacy_deployments_path(settings)
    if not path.is_file():
        return []
    existing = set(index.collections())
    migrated = []
    for collection, entry in json.loads(path.read_text("utf-8")).items():
        if collection in existing and deployment_record(index, collection) is None:
            record_deployment(index, collection, entry)
            migrated.append(collection)
    return migrated


# --- the rebuild --------------------------------------------------------------------------------


def _batched(points: Iterable[IndexedPoint], size: int) -> Iterator[list[IndexedPoint]]:
    batch: list[IndexedPoint] = []
    for point in points:
        batch.append(point)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def explain_engine_errors(settings: Settings) -> Iterator[None]:
    """Turn the embedded engine's lock error into advice (the shard opens lazily, on first use)."""
    try:
        yield
    except Exception as exc:  # the engines raise their own types; the message is what matters
        if "WouldBlock" in str(exc) or "already accessed by another instance" in str(exc):
            raise ReindexError(
                f"the index at {settings.qdrant_root} is held by another process (a running retriever "
                "service?). The embedded engine has one owner: stop it, or run Qdrant as a server "
                "(REALRAG_QDRANT_URL) to re-index while serving."
            ) from exc
        raise


def _copy(index: VectorIndex, target: str, points: list[IndexedPoint], encoder, store, space: str) -> None:
    import io

    from PIL import Image

    from services.artifacts import ArtifactNotFound

    images = []
    for point in points:
        uri = point.payload.get("image_uri")
        if not uri:
            raise ReindexError(f"point {point.id} has no image_uri; cannot re-embed it")
        try:
            data = store.get(uri)
        except ArtifactNotFound as exc:
            raise ReindexError(f"point {point.id}: image {uri} is missing from the artifact store ({store.location(uri)})") from exc
        with Image.open(io.BytesIO(data)) as image:
            images.append(image.convert("RGB"))
    vectors = encoder.encode_images(images)
    index.upsert(
        [
            IndexedPoint(id=p.id, vector=v.tolist(), payload={**p.payload, "encoder": space})
            for p, v in zip(points, vectors, strict=True)
        ],
        collection=target,
    )


def reindex(
    settings: Settings,
    checkpoint: str | Path,
    index: VectorIndex | None = None,
    force: bool = False,
    batch_size: int = 64,
    hook: ProgressHook | None = None,
) -> ReindexResult:
    """Deploy `checkpoint`'s image space behind the alias (see the module docstring)."""
    from services.artifacts import artifact_store

    from .progress import progress

    started = time.perf_counter()
    weights = resolve_weights_path(checkpoint)
    card = read_card(weights)
    encoder = load_checkpoint_encoder(settings, weights)
    space = image_space(card)
    index = index or open_index(settings)
    with explain_engine_errors(settings):
        current = index.current_collection()
        if current is None:
            raise ReindexError(
                f"alias {index.alias!r} points at no collection: ingest the corpus first (realrag ingest)"
            )
        dim = index.dimension()
        current_space = collection_image_space(index)
    if dim not in (None, encoder.dim):
        raise ReindexError(f"collection {current} holds {dim}-d vectors; the checkpoint makes {encoder.dim}-d")
    if current_space == space and not force:
        return ReindexResult(str(weights), space, current, None, rebuilt=False, seconds=time.perf_counter() - started)

    store = artifact_store(settings)
    target = next_version_name(index.alias, index.collections())
    index.create_collection(target, encoder.dim)
    copied: set[str] = set()
    try:
        total = index.count()
        bar = progress(total=total, desc=f"re-index {current} → {target}", unit="img")
        for batch in _batched(index.scroll(batch_size=batch_size), batch_size):
            _copy(index, target, batch, encoder, store, space)
            copied.update(p.id for p in batch)
            bar.update(len(batch))
            if hook:
                hook("reindex", len(copied))
        bar.close()
        # points ingested into the old collection while we copied
        late = [p for p in index.scroll(batch_size=batch_size) if p.id not in copied]
        for batch in _batched(late, batch_size):
            _copy(index, target, batch, encoder, store, space)
            copied.update(p.id for p in batch)
        # recorded before the switch: whoever resolves the alias to `target` finds its record
        record_deployment(
            index,
            target,
            {
                "checkpoint": str(weights),
                "image_space": space,
                "image_tower": str(weights) if "image" in card["towers"] else None,
                "previous": current,
                "points": len(copied),
                "at": time.time(),
            },
        )
    except BaseException:
        index.drop_collection(target)
        raise
    previous = index.switch_alias(target)
    # points that reached the old collection after the catch-up, before the switch (an ingest that
    # resolved the alias just before it moved); ingest re-checks the alias after writing for the rest
    after = [p for p in index.scroll(batch_size=batch_size, collection=current) if p.id not in copied]
    for batch in _batched(after, batch_size):
        _copy(index, target, batch, encoder, store, space)
        copied.update(p.id for p in batch)
    return ReindexResult(
        str(weights), space, target, previous, rebuilt=True, points=len(copied), caught_up=len(late) + len(after),
        seconds=time.perf_counter() - started,
    )


def rollback(settings: Settings, index: VectorIndex | None = None) -> tuple[str, str]:
    """Point the alias at the newest collection older than the current one; return (from, to)."""
    index = index or open_index(settings)
    current = index.current_collection()
    if current is None:
        raise ReindexError(f"alias {index.alias!r} points at no collection")

    def version(name: str) -> int:
        tail = name.rsplit("-v", 1)[-1]
        return int(tail) if name.startswith(f"{index.alias}-v") and tail.isdigit() else -1

    older = sorted((c for c in index.collections() if 0 <= version(c) < version(current)), key=version)
    if not older:
        raise ReindexError(f"no collection older than {current} to roll back to")
    with explain_engine_errors(settings):
        index.switch_alias(older[-1])
    return current, older[-1]


# --- registering a checkpoint for its generator -----------------------------------------------------


def _toml_key(key: str) -> str:
    return key if key and all(c.isalnum() or c in "-_" for c in key) else json.dumps(key, ensure_ascii=False)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + items + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_models_toml(models: dict[str, dict[str, Any]]) -> str:
    lines = [
        "# RealRAG user model registry (REALRAG_MODELS_FILE). Entries add to or replace the packaged",
        "# services/models.toml. Written by `realrag index --register`.",
        "",
    ]
    for key, body in models.items():
        lines.append(f"[models.{_toml_key(key)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in body.items() if v is not None]
        lines.append("")
    return "\n".join(lines)


def register_retriever(
    models_file: Path, model_key: str, checkpoint: str | Path, kind: str | None = None
) -> dict[str, str]:
    """Name `checkpoint` as `model_key`'s retriever of `kind` (default: the card's kind)."""
    from services import registry
    from services.files import atomic_write_text

    weights = resolve_weights_path(checkpoint).resolve()
    card = read_card(weights)
    trained_for = (card.get("generator") or {}).get("key")
    if trained_for != model_key:
        raise CheckpointError(
            f"{weights} was trained for generator {trained_for!r}, not {model_key!r}: reflective negatives "
            "depend on the generator, so a retriever serves only the model it was trained for"
        )
    kind = kind or card.get("kind")
    if kind not in ("reflective", "standard"):
        raise CheckpointError(f"retriever kind must be 'reflective' or 'standard', got {kind!r}")
    models_file = Path(models_file)
    models: dict[str, dict[str, Any]] = {}
    if models_file.is_file():
        with models_file.open("rb") as fh:
            models = tomllib.load(fh).get("models", {})
    if model_key not in models:  # start from the packaged entry
        with registry.PACKAGED_MODELS.open("rb") as fh:
            packaged = tomllib.load(fh).get("models", {})
        if model_key not in packaged:
            raise CheckpointError(f"unknown model key {model_key!r}: not in {registry.PACKAGED_MODELS} or {models_file}")
        spec = registry.ModelSpec(key=model_key, **packaged[model_key])
        models[model_key] = spec.model_dump(exclude={"key"}, exclude_defaults=True)
    models[model_key].setdefault("retrievers", {})[kind] = str(weights)
    atomic_write_text(models_file, dump_models_toml(models))
    registry._load.cache_clear()
    return {"model": model_key, "kind": kind, "checkpoint": str(weights), "models_file": str(models_file)}
