"""The serving API (FastAPI): OpenAI-compatible chat completions, /v1/rag with cited sources,
health, readiness, Prometheus metrics and the chat page. No Dagster import.

Roles: `all` (model + RAG in one process), `model` (only generation: chat completions without
retrieval, for a GPU host) and `rag` (retrieval + prompts, generating through TWIN_MODEL_ENDPOINT).
This module only assembles the app; the parts are in `serving/api/`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from serving.api.errors import install_error_handlers
from serving.api.guard import RequestGuard
from serving.api.routes import openai, ops, rag
from serving.api.routes.ops import STATIC
from serving.api.runtime import Runtime
from serving.config import ServingConfig
from twin.settings import Settings


def create_app(settings: Settings | None = None, config: ServingConfig | None = None, role: str = "all") -> FastAPI:
    settings = settings or Settings.from_env()
    runtime = Runtime(settings, config or ServingConfig.from_settings(settings), role)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.start)
        yield
        await asyncio.to_thread(runtime.close)

    app = FastAPI(title="LLM Twin serving", version="1", lifespan=lifespan)
    app.state.runtime = runtime
    install_error_handlers(app)
    app.add_middleware(RequestGuard, runtime=runtime)
    app.include_router(ops.router)
    app.include_router(openai.router)
    if role != "model":  # the model role has no database: no retrieval, no chat page
        app.include_router(rag.router)
        app.include_router(ops.page)
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
