"""The OpenAI-compatible routes: models, embeddings and chat completions (with or without retrieval)."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import AsyncIterator
from functools import partial

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask

from serving.api.errors import ApiError, call
from serving.api.guard import caller, check_key
from serving.api.runtime import Runtime, RuntimeDep, admit_and_prepare
from serving.api.schemas import ChatRequest, EmbeddingRequest, check_question, max_tokens, refuse_unsupported, stop_sequences
from serving.api.streaming import GenerationTimeout, Outcome, complete, completion_tokens, generate, sse, usage
from serving.rag import PreparedRequest
from twin.errors import TwinError

log = logging.getLogger("twin.serving")
router = APIRouter()


@router.get("/v1/models")
async def list_models(request: Request, runtime: RuntimeDep) -> dict[str, object]:
    key = check_key(runtime, request, None)
    rows = await call(model_rows, runtime)
    allowed = [row for row in rows if runtime.config.key_allows(key, str(row["id"])) == 200]
    return {"object": "list", "data": allowed}


@router.get("/v1/models/{model_id}")
async def get_model(model_id: str, request: Request, runtime: RuntimeDep) -> dict[str, object]:
    key = check_key(runtime, request, None)
    rows = await call(model_rows, runtime)
    found = next((row for row in rows if row["id"] == model_id), None)
    if found is None or runtime.config.key_allows(key, str(found["id"])) != 200:
        raise ApiError(404, f"The model {model_id!r} does not exist (GET /v1/models lists them).",
                       "not_found_error", "model")
    return found


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, request: Request, runtime: RuntimeDep) -> dict[str, object]:
    check_key(runtime, request, None)
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or len(texts) > 256:
        raise ApiError(400, f"input must hold 1 to 256 texts (got {len(texts)}).", param="input")
    model_id = runtime.settings.embedding_model
    if body.model not in (None, "", model_id, model_id.rsplit("/", 1)[-1]):
        raise ApiError(400, f"This server embeds with {model_id!r} only (the model of its vector store).",
                       param="model")
    vectors = await call(embed_queries, runtime, texts)
    tokens = sum(len(text.split()) for text in texts)
    return {"object": "list", "model": model_id,
            "data": [{"object": "embedding", "index": index,
                      "embedding": vector if body.encoding_format == "float" else base64_floats(vector)}
                     for index, vector in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, request: Request, runtime: RuntimeDep) -> Response:
    key = check_key(runtime, request, None)
    refuse_unsupported(await request.json())
    stops = stop_sequences(body.stop)
    limit = max_tokens(runtime.config, body.max_completion_tokens or body.max_tokens)
    last = body.messages[-1]
    if last.role != "user":
        raise ApiError(422, "The last message must be the user's (role 'user').", param="messages")
    question = check_question(runtime.config, last.text, "messages[-1].content")
    twin = await call(runtime.service.resolve_twin, None if body.model == "base" else body.model)
    check_key(runtime, request, twin, key)
    history = [{"role": m.role, "content": m.text} for m in body.messages[:-1] if m.role != "system"]
    raw = [{"role": m.role, "content": m.text} for m in body.messages]
    prepared, ticket = await admit_and_prepare(runtime, partial(
        runtime.service.prepare, endpoint="/v1/chat/completions", question=question, twin=twin,
        category=body.category, k=body.k, retrieval=body.retrieval and runtime.with_database,
        history=history, raw_messages=raw, **caller(runtime, key)))
    created = int(time.time())
    model_id = twin or "base"
    extra = {"sources": [s.as_json() for s in prepared.sources], "twin": prepared.twin,
             "model_version": prepared.loaded.model.version, "model_alias": prepared.loaded.model.alias,
             "answered_by": runtime.service.answered_by(prepared), "backend": prepared.loaded.backend.name}
    if body.stream:
        def chunk(**fields: object) -> str:
            return sse({"id": prepared.request_id, "object": "chat.completion.chunk", "created": created,
                        "model": model_id, **fields})

        async def events() -> AsyncIterator[str]:
            yield chunk(**extra, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""},
                                           "finish_reason": None}])
            outcome = Outcome()
            try:
                async for piece in generate(runtime, prepared, ticket, limit, body.temperature, outcome,
                                            None, stops, body.seed):
                    yield chunk(choices=[{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            except GenerationTimeout:
                yield sse({"error": {"message": outcome.error, "type": "timeout"}})
            except TwinError as error:
                yield sse({"error": {"message": error.message, "type": "generation_error"}})
            else:
                yield chunk(choices=[{"index": 0, "delta": {},
                                      "finish_reason": finish_reason(prepared, outcome, limit)}])
                if body.stream_options is not None and body.stream_options.include_usage:
                    yield chunk(choices=[], usage=usage(prepared, outcome))
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 background=BackgroundTask(ticket.release),
                                 headers={"Cache-Control": "no-cache", "X-Request-Id": prepared.request_id})
    outcome = await complete(runtime, prepared, ticket, limit, body.temperature, request, stops, body.seed)
    return JSONResponse({
        "id": prepared.request_id, "object": "chat.completion", "created": created, "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.text},
                     "finish_reason": finish_reason(prepared, outcome, limit)}],
        "usage": usage(prepared, outcome), **extra})


def finish_reason(prepared: PreparedRequest, outcome: Outcome, max_tokens: int) -> str:
    if outcome.stopped:
        return "stop"
    return "length" if completion_tokens(prepared, outcome) >= max_tokens else "stop"


def model_rows(runtime: Runtime) -> list[dict[str, object]]:
    """The twins (from the database), or, on a model host without one, the registry's models."""
    if runtime.with_database:
        return [{"id": slug, "object": "model", "created": 0, "owned_by": "llm-twin", "name": name}
                for slug, name in runtime.service.twins()]
    rows: list[dict[str, object]] = [{"id": "base", "object": "model", "created": 0, "owned_by": "llm-twin"}]
    try:
        from training.registry import MODEL_PREFIX, configure_mlflow, twin_of_model

        client = configure_mlflow(runtime.settings)
        for model in client.search_registered_models(filter_string=f"name LIKE '{MODEL_PREFIX}%'"):
            rows.append({"id": twin_of_model(model.name), "object": "model", "created": 0,
                         "owned_by": "llm-twin"})
    except TwinError as error:
        log.warning("model registry unavailable: %s", error.message)
    return rows


def embed_queries(runtime: Runtime, texts: list[str]) -> list[list[float]]:
    """The same query encoder as search (clean_prose, then the platform's embedding model)."""
    from twin.embedding import load_embedder
    from twin.retrieval import encode_queries

    vectors = encode_queries(load_embedder(runtime.settings.embedding_model), texts)
    return [[float(value) for value in vector] for vector in vectors]


def base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
