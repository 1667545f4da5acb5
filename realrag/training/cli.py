"""`realrag train-retriever` and `realrag index` (also: ``python -m realrag.training ...``).

Torch-free at import time: realrag/cli.py registers these parsers in every image.

Every TrainConfig field is a flag (``--samples-per-prompt 2``, ``--train-image-tower``,
``--template "a photo of a {label}"`` repeatable); ``--config FILE`` (TOML, JSON or YAML) gives the
base values and flags override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any

from .config import TrainConfig

# flag name differs from the field name (singular for repeatable flags)
RENAMED = {"templates": "template", "held_out_objects": "held-out-object", "eval_top_k": "eval-top-k"}


def _field_kind(annotation) -> tuple[str, tuple | None]:
    """('bool' | 'list' | 'scalar', literal choices or None) of a field annotation."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _field_kind(args[0])
    if annotation is bool:
        return "bool", None
    if origin is list:
        return "list", None
    if origin is typing.Literal:
        return "scalar", tuple(typing.get_args(annotation))
    return "scalar", None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    for name, field in TrainConfig.model_fields.items():
        flag = "--" + RENAMED.get(name, name).replace("_", "-")
        kind, choices = _field_kind(field.annotation)
        help_text = (field.description or "").replace("%", "%%")
        if kind == "bool":
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif kind == "list":
            parser.add_argument(flag, dest=name, action="append", default=None, help=f"{help_text} (repeatable)")
        else:
            parser.add_argument(flag, dest=name, choices=choices, default=None, help=help_text)


def load_config_file(path: Path) -> dict[str, Any]:
    text = path.read_text("utf-8")
    if path.suffix == ".toml":
        import tomllib

        data = tomllib.loads(text)
    elif path.suffix == ".json":
        data = json.loads(text)
    elif path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        raise SystemExit(f"--config must be .toml, .json or .yaml: {path}")
    data = data.get("train_retriever", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise SystemExit(f"{path}: expected a table of TrainConfig fields")
    return data


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = load_config_file(Path(args.config)) if args.config else {}
    for name in TrainConfig.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(values)
    except ValidationError as exc:
        raise SystemExit(f"invalid train-retriever configuration:\n{exc}") from None


def _logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("realrag.train")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def cmd_train_retriever(args: argparse.Namespace) -> int:
    _logging()
    config = config_from_args(args)
    from .pipeline import run_pipeline

    try:
        result = run_pipeline(config, until=args.until)
    except ValueError as exc:  # DataError, unknown model key, bad option combination: say it plainly
        print(f"realrag train-retriever: {exc}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {"work_dir": str(config.work_dir), "data": result.dataset.summary()}
    if result.report is not None:
        summary["metrics"] = {
            arm: metrics.get("held_out") or metrics.get("train") for arm, metrics in result.report["arms"].items()
        }
    if result.export_dir is not None:
        summary["export_dir"] = str(result.export_dir)
        summary["checkpoint"] = str(result.weights)
        summary["report"] = str(result.export_dir / "report.md")
    summary["throughput"] = [t.as_dict() for t in result.timings]
    print(json.dumps(summary, indent=2, default=str))
    return 0


def add_train_retriever_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train-retriever",
        help="train, evaluate and export a reflective retriever for one generator",
        description="Stages: data → sample → mine → train → evaluate → export; each cached under --work-dir.",
    )
    parser.add_argument("--config", help="TOML/JSON/YAML file of TrainConfig fields (flags override)")
    parser.add_argument(
        "--until", default="export", choices=["data", "sample", "mine", "train", "evaluate", "export"],
        help="stop after this stage",
    )
    _add_config_flags(parser)
    parser.set_defaults(func=cmd_train_retriever)
    return parser


def cmd_index(args: argparse.Namespace, settings=None, index=None, hook=None) -> int:
    """`settings`/`index`/`hook` let a process that already owns the index (the retriever service,
    tests) run the command in-process; the CLI opens the index from the settings."""
    from retriever_service.checkpoints import CheckpointError
    from retriever_service.reindex import ReindexError, register_retriever, reindex, rollback
    from services.settings import get_settings

    settings = settings or get_settings()
    try:
        if args.rollback:
            before, after = rollback(settings, index=index)
            print(json.dumps({"rolled_back_from": before, "collection": after}))
            return 0
        if not args.retriever:
            raise SystemExit("realrag index: --retriever CKPT (or --rollback) is required")
        result = reindex(settings, args.retriever, index=index, force=args.force, batch_size=args.batch_size, hook=hook)
        if args.register:
            models_file = args.models_file or settings.models_file
            if not models_file:
                raise SystemExit("--register needs --models-file or REALRAG_MODELS_FILE")
            result.registered = register_retriever(Path(models_file), args.register, args.retriever, args.kind)
    except (CheckpointError, ReindexError) as exc:
        print(f"realrag index: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def add_index_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "index",
        help="deploy a retriever checkpoint: re-embed the corpus if its image tower changed, switch the alias",
    )
    parser.add_argument("--retriever", metavar="CKPT", help="retriever.safetensors (or its directory)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the image space is unchanged")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--register", metavar="MODEL_KEY", help="also name the checkpoint in the models file")
    parser.add_argument("--kind", choices=["reflective", "standard"], help="default: the card's kind")
    parser.add_argument("--models-file", help="default: REALRAG_MODELS_FILE")
    parser.add_argument("--rollback", action="store_true", help="point the alias back at the previous collection")
    parser.set_defaults(func=cmd_index)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m realrag.training")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_train_retriever_parser(subparsers)
    add_index_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0
