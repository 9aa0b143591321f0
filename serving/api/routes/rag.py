"""`POST /v1/rag`: a question answered in the twin's voice with its numbered sources and citations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from serving.api.errors import call
from serving.api.guard import caller, check_key
from serving.api.runtime import RuntimeDep, admit_and_prepare
from serving.api.schemas import RagRequest, check_question, max_tokens
from serving.api.streaming import GenerationTimeout, Outcome, complete, generate, sse, usage
from serving.rag import PreparedRequest
from twin.errors import TwinError

router = APIRouter()


@router.post("/v1/rag", response_model=None)
async def rag(body: RagRequest, request: Request, runtime: RuntimeDep) -> Response:
    key = check_key(runtime, request, None)
    limit = max_tokens(runtime.config, body.max_tokens)
    question = check_question(runtime.config, body.query, "query")
    twin = await call(runtime.service.resolve_twin, body.twin)
    check_key(runtime, request, twin, key)
    prepared, ticket = await admit_and_prepare(runtime, partial(
        runtime.service.prepare, endpoint="/v1/rag", question=question, twin=twin, category=body.category,
        k=body.k, retrieval=True, expand=body.expand, **caller(runtime, key)))
    head = {"request_id": prepared.request_id, "twin": prepared.twin,
            "filters": prepared.log.prompt_variables.get("filters"),
            "model": prepared.loaded.model.name, "model_version": prepared.loaded.model.version,
            "model_alias": prepared.loaded.model.alias, "answered_by": runtime.service.answered_by(prepared),
            "backend": prepared.loaded.backend.name,
            "sources": [s.as_json() for s in prepared.sources]}
    if body.stream:
        async def events() -> AsyncIterator[str]:
            yield sse({"type": "sources", **head})
            outcome = Outcome()
            try:
                async for piece in generate(runtime, prepared, ticket, limit, body.temperature, outcome):
                    yield sse({"type": "token", "text": piece})
            except (GenerationTimeout, TwinError):
                yield sse({"type": "error", "message": outcome.error})
            else:
                yield sse({"type": "done", "answer": outcome.text, "citations": citations(prepared)})

        return StreamingResponse(events(), media_type="text/event-stream",
                                 background=BackgroundTask(ticket.release),
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": prepared.request_id})
    outcome = await complete(runtime, prepared, ticket, limit, body.temperature, request)
    return JSONResponse({**head, "answer": outcome.text, "citations": citations(prepared),
                         "usage": usage(prepared, outcome)})


def citations(prepared: PreparedRequest) -> dict[str, object] | None:
    """Per-sentence citations and the grounding figure of a retrieval answer."""
    return prepared.grounded.as_json() if prepared.grounded is not None else None
