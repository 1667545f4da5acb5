"""The baseline of benchmarks/load.py: bare FastAPI + pydantic with the gateway's and the retriever's
request bodies, no Redis, no encoder, no index. ``uvicorn benchmarks.bare_app:app``."""

from __future__ import annotations

import uuid

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field


class Retrieval(BaseModel):
    enabled: bool = True
    top_k: int | None = Field(None, ge=0, le=8)


class Generation(BaseModel):
    prompt: str = Field(min_length=1, max_length=2000)
    model: str | None = None
    width: int | None = Field(None, ge=64, le=2048)
    height: int | None = Field(None, ge=64, le=2048)
    steps: int | None = Field(None, ge=1, le=150)
    retrieval: Retrieval = Field(default_factory=Retrieval)


class Search(BaseModel):
    query: str = Field(min_length=1, max_length=2000)
    top_k: int = Field(5, ge=1, le=100)


app = FastAPI()


@app.post("/v1/generations", status_code=202)
async def create(body: Generation) -> dict:
    return {"id": str(uuid.uuid4()), "status": "queued", "model": body.model, "prompt": body.prompt}


@app.get("/v1/generations/{job_id}")
async def read(job_id: str) -> dict:
    if len(job_id) != 36:
        raise HTTPException(404)
    return {"id": job_id, "status": "queued", "model": "tiny-sd", "prompt": "a stored job"}


@app.post("/v1/search")
async def search(body: Search) -> dict:
    return {"hits": [], "took_ms": 0.0}
