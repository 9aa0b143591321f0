"""Operations: liveness, readiness, Prometheus metrics, and the chat page."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api.runtime import RuntimeDep
from twin.errors import TwinError

STATIC = Path(__file__).resolve().parents[2] / "static"

router = APIRouter()
page = APIRouter()  # the chat page: only on roles with retrieval


@router.get("/healthz")
async def healthz(runtime: RuntimeDep) -> dict[str, str]:
    return {"status": "ok", "role": runtime.role}


@router.get("/readyz")
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    body: dict[str, object] = {"role": runtime.role, "loaded_models": runtime.models.loaded(),
                               "queue": runtime.gate.inside}
    if runtime.with_database:
        try:
            await asyncio.to_thread(runtime.service.ping)
            runtime.monitor.database_url = runtime.service.database_url()
        except TwinError as error:
            return JSONResponse({**body, "status": "unavailable", "error": error.message, "fix": error.fix},
                                status_code=503)
    return JSONResponse({**body, "status": "ready"})


@router.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:  # in a thread: the pipeline lag collector reads the database
    body = await asyncio.to_thread(generate_latest, runtime.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@page.get("/", include_in_schema=False)
async def chat_page() -> FileResponse:
    return FileResponse(STATIC / "index.html")
