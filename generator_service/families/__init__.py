"""One self-contained module per generator family, each with ``load(spec, device) -> Generator``."""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from services.registry import ModelSpec

FAMILY_MODULES: dict[str, str] = {
    "sd": "generator_service.families.stable_diffusion",
    "sdxl": "generator_service.families.stable_diffusion_xl",
    "sd3": "generator_service.families.stable_diffusion_3",
    "flux": "generator_service.families.flux",
    "omnigen": "generator_service.families.omnigen",
    "world": "generator_service.families.world",
}


def family_module(spec: ModelSpec) -> ModuleType:
    """Import the family module lazily (it imports torch and diffusers)."""
    return import_module(FAMILY_MODULES[spec.family])
