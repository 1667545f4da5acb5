"""Self-reflective contrastive training of a retriever per generator (``realrag train-retriever``).

Imports are lazy: ``realrag.training.cli`` must stay importable without torch (the
gateway image registers the CLI subcommands but has no ML stack).
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "TrainConfig": ".config",
    "PipelineResult": ".pipeline",
    "run": ".pipeline",
    "run_pipeline": ".pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(name)
