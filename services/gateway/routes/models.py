"""/v1/models: the models this deployment serves (REALRAG_SERVED_MODELS), and whether a worker holds
each one loaded (workers record that in Redis with a TTL: services.registry.record_loaded)."""

from __future__ import annotations

import logging

import redis
from fastapi import APIRouter

from services.registry import get_spec, loaded_workers, served_model_keys

from ..deps import Authenticated, JobsDep, SettingsDep
from ..openapi import ModelList, ok, responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/models", tags=["models"], dependencies=[Authenticated], responses=responses(401))


@router.get("", summary="The models this deployment serves", response_model=None, responses={200: ok(ModelList, "the models")})
def list_models(settings: SettingsDep, jobs: JobsDep) -> dict:
    data = []
    for key in served_model_keys(settings):
        spec = get_spec(key, settings)
        try:
            workers: dict[str, str] | None = loaded_workers(jobs.redis, settings.queue_name, key)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.warning("cannot read loaded models from Redis: %s", exc)
            workers = None
        data.append({
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
            "dtype": spec.dtype,
            "loaded": None if workers is None else bool(workers),
            "loaded_on": sorted(set(workers.values())) if workers else [],
        })
    return {"object": "list", "data": data}
