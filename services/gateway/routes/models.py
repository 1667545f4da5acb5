"""/v1/models: what this deployment serves."""

from __future__ import annotations

from fastapi import APIRouter

from services.registry import load_registry

from ..deps import Authenticated, SettingsDep
from ..openapi import ModelList, ok, responses

router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authenticated], responses=responses(401))


@router.get("", summary="The models this deployment serves", response_model=None, responses={200: ok(ModelList, "the models")})
def list_models(settings: SettingsDep) -> dict:
    data = [
        {
            "id": spec.key,
            "object": "model",
            "family": spec.family,
            "description": spec.description,
            "max_references": spec.max_references,
            "defaults": {
                "steps": spec.default_steps,
                "guidance": spec.default_guidance,
                "ip_scale": spec.default_ip_scale,
                "width": spec.default_width,
                "height": spec.default_height,
            },
            "retrievers": ["zero-shot", *sorted(spec.retrievers)],
            "default_retriever": spec.default_retriever,
            "default": spec.key == settings.default_model,
        }
        for spec in load_registry(settings).values()
    ]
    return {"object": "list", "data": data}
