"""The serving API (FastAPI): OpenAI-compatible chat completions, /v1/rag with cited sources,
health, readiness, Prometheus metrics and the chat page. No Dagster import.

Roles: `all` (model + RAG in one process), `model` (only generation: chat completions without
retrieval, for a GPU host) and `rag` (retrieval + prompts, generating through TWIN_MODEL_ENDPOINT).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException

from serving.backends.base import PromptTooLong
from serving.config import ROLES, ServingConfig
from serving.gate import AdmissionGate, QueueFull, QueueTimeout
from serving.metrics import Metrics, PipelineLagCollector
from serving.models import ModelManager, ModelUnavailable
from serving.monitoring import Monitor
from serving.rag import DatabaseUnavailable, OutOfScope, PreparedRequest, RagService, UnknownTwin
from twin.chunking import ChunkingPolicy
from twin.embedding import load_embedder
from twin.errors import TwinError
from twin.lag import TwinLag, pipeline_lag
from twin.settings import Settings

log = logging.getLogger("twin.serving")
STATIC = Path(__file__).resolve().parent / "static"
Category = Literal["article", "post", "repository"]
_END = object()


class ApiError(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error",
                 param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart] = Field(description="text, or OpenAI's array of text parts")

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI fields this server does not implement: a request using them is refused (400, naming the
# field) rather than answered as if they had been honoured.
UNSUPPORTED = {"tools": None, "tool_choice": None, "functions": None, "function_call": None,
               "logprobs": False, "top_logprobs": None, "n": 1, "response_format": {"type": "text"},
               "logit_bias": None, "audio": None, "modalities": None, "prediction": None}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str = Field(description="the twin (slug or name); GET /v1/models lists them")
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = Field(None, description="up to 4 sequences that end the answer")
    seed: int | None = None
    retrieval: bool = Field(True, description="ground the answer in the twin's writing")
    k: int | None = Field(None, ge=1, le=20)
    category: Category | None = None


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"  # the openai client asks for base64


class RagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    twin: str | None = None
    category: Category | None = None
    k: int | None = Field(None, ge=1, le=20)
    max_tokens: int | None = None
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    stream: bool = False
    expand: int | None = Field(None, ge=0, le=5, description="query variants written by the LLM")


@dataclass
class Ticket:
    """A request's place in the generation queue; released exactly once."""

    gate: AdmissionGate
    metrics: Metrics
    had_turn: bool = False
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.gate.leave(self.had_turn)
            self.metrics.queue_depth.set(self.gate.inside)


@dataclass
class Outcome:
    pieces: list[str] = field(default_factory=list)
    status: str = "ok"
    error: str | None = None
    stopped: bool = False  # ended by a stop sequence
    served: str | None = None  # the answer as served (RagService.finish): sentence-ended, cited

    @property
    def text(self) -> str:
        return self.served if self.served is not None else "".join(self.pieces).strip()


class GenerationTimeout(Exception):
    pass


class Runtime:
    def __init__(self, settings: Settings, config: ServingConfig, role: str) -> None:
        if role not in ROLES:
            raise TwinError(f"Unknown role {role!r}.", f"use one of {', '.join(ROLES)}.")
        self.settings, self.config, self.role = settings, config, role
        self.metrics = Metrics()
        self.models = ModelManager(settings, config)
        self.with_database = role != "model"
        self.monitor = Monitor(settings, None, traces=True)
        self.service = RagService(settings, config, self.models, self.monitor, with_database=self.with_database)
        self.gate = AdmissionGate(config.max_concurrent_generations, config.max_queued_requests)
        self.executor = ThreadPoolExecutor(max_workers=config.max_concurrent_generations + 2,
                                           thread_name_prefix="twin-generation")
        if self.with_database:  # the model role has no database, so no pipeline to report on
            self.metrics.registry.register(PipelineLagCollector(self.pipeline_lag, settings.lag_limit_seconds))

    def pipeline_lag(self) -> list[TwinLag]:
        """Lag and latency against the embedding model (and its chunker) this service queries with."""
        embedder = load_embedder(self.settings.embedding_model)
        with self.service.connection() as conn:
            return pipeline_lag(conn, embedder.model_id, ChunkingPolicy(max_tokens=embedder.max_tokens).signature)

    def start(self) -> None:
        if self.with_database:
            try:
                self.monitor.database_url = self.service.database_url()
            except TwinError as error:  # readyz says 503 until the database is back
                log.warning("database not available at start: %s", error.message)

    def close(self) -> None:
        self.monitor.close()
        self.service.close()
        self.models.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


def create_app(settings: Settings | None = None, config: ServingConfig | None = None, role: str = "all") -> FastAPI:
    runtime = Runtime(settings or Settings.from_env(), config or ServingConfig.from_env(), role)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(runtime.start)
        yield
        await asyncio.to_thread(runtime.close)

    app = FastAPI(title="LLM Twin serving", version="1", lifespan=lifespan)
    app.state.runtime = runtime

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        runtime.metrics.rejected.labels(str(error.status)).inc()
        return _error(error.status, error.message, error.kind, error.param)

    @app.exception_handler(_BodyTooLarge)
    async def body_too_large(request: Request, error: _BodyTooLarge) -> JSONResponse:
        runtime.metrics.rejected.labels("413").inc()
        limit = runtime.config.max_request_bytes
        return _error(413, f"The request body is over {limit:,} bytes (TWIN_MAX_REQUEST_BYTES).")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = error.errors()
        runtime.metrics.rejected.labels("400" if any(p.get("type") == "json_invalid" for p in problems)
                                        else "422").inc()
        if any(problem.get("type") == "json_invalid" for problem in problems):
            return _error(400, "The request body is not valid JSON.", param=None)
        first = problems[0] if problems else {}
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or "body"
        message = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())[1:]) or 'body'}: {problem.get('msg')}"
            for problem in problems[:5])
        return _error(422, message, param=where)

    app.add_middleware(RequestGuard, runtime=runtime)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "role": runtime.role}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
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

    @app.get("/metrics")
    async def metrics() -> Response:  # in a thread: the pipeline lag collector reads the database
        body = await asyncio.to_thread(generate_latest, runtime.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, object]:
        key = _check_key(runtime, request, None)
        rows = await _call(runtime, _model_rows, runtime)
        allowed = [row for row in rows if runtime.config.key_allows(key, str(row["id"])) == 200]
        return {"object": "list", "data": allowed}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str, request: Request) -> dict[str, object]:
        key = _check_key(runtime, request, None)
        rows = await _call(runtime, _model_rows, runtime)
        found = next((row for row in rows if row["id"] == model_id), None)
        if found is None or runtime.config.key_allows(key, str(found["id"])) != 200:
            raise ApiError(404, f"The model {model_id!r} does not exist (GET /v1/models lists them).",
                           "not_found_error", "model")
        return found

    @app.post("/v1/embeddings")
    async def create_embeddings(body: EmbeddingRequest, request: Request) -> dict[str, object]:
        _check_key(runtime, request, None)
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not texts or len(texts) > 256:
            raise ApiError(400, f"input must hold 1 to 256 texts (got {len(texts)}).", param="input")
        model_id = runtime.settings.embedding_model
        if body.model not in (None, "", model_id, model_id.rsplit("/", 1)[-1]):
            raise ApiError(400, f"This server embeds with {model_id!r} only (the model of its vector store).",
                           param="model")
        vectors = await _call(runtime, _embed_queries, runtime, texts)
        tokens = sum(len(text.split()) for text in texts)
        return {"object": "list", "model": model_id,
                "data": [{"object": "embedding", "index": index,
                          "embedding": vector if body.encoding_format == "float" else _base64_floats(vector)}
                         for index, vector in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        key = _check_key(runtime, request, None)
        _refuse_unsupported(await request.json())
        stops = _stop_sequences(body.stop)
        max_tokens = _max_tokens(runtime.config, body.max_completion_tokens or body.max_tokens)
        last = body.messages[-1]
        if last.role != "user":
            raise ApiError(422, "The last message must be the user's (role 'user').", param="messages")
        question = _check_question(runtime.config, last.text, "messages[-1].content")
        twin = await _call(runtime, runtime.service.resolve_twin, None if body.model == "base" else body.model)
        _check_key(runtime, request, twin, key)
        retrieval = body.retrieval and runtime.with_database
        history = [{"role": m.role, "content": m.text} for m in body.messages[:-1] if m.role != "system"]
        raw = [{"role": m.role, "content": m.text} for m in body.messages]
        prepared, ticket = await _admit_and_prepare(runtime, dict(
            endpoint="/v1/chat/completions", question=question, twin=twin, category=body.category, k=body.k,
            retrieval=retrieval, history=history, raw_messages=raw, **_caller(runtime, key)))
        created = int(time.time())
        model_id = twin or "base"
        extra = {"sources": [s.as_json() for s in prepared.sources], "twin": prepared.twin,
                 "model_version": prepared.loaded.model.version, "model_alias": prepared.loaded.model.alias,
                 "answered_by": runtime.service.answered_by(prepared), "backend": prepared.loaded.backend.name}
        if body.stream:
            async def events() -> AsyncIterator[str]:
                head = {"id": prepared.request_id, "object": "chat.completion.chunk", "created": created,
                        "model": model_id, **extra,
                        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                     "finish_reason": None}]}
                yield _sse(head)
                outcome = Outcome()
                try:
                    async for piece in _generate(runtime, prepared, ticket, max_tokens, body.temperature,
                                                 outcome, request, None, stops, body.seed):
                        yield _sse({"id": prepared.request_id, "object": "chat.completion.chunk",
                                    "created": created, "model": model_id,
                                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
                except GenerationTimeout:
                    yield _sse({"error": {"message": outcome.error, "type": "timeout"}})
                except TwinError as error:
                    yield _sse({"error": {"message": error.message, "type": "generation_error"}})
                else:
                    yield _sse({"id": prepared.request_id, "object": "chat.completion.chunk", "created": created,
                                "model": model_id,
                                "choices": [{"index": 0, "delta": {},
                                             "finish_reason": _finish_reason(prepared, outcome, max_tokens)}]})
                    if body.stream_options is not None and body.stream_options.include_usage:
                        yield _sse({"id": prepared.request_id, "object": "chat.completion.chunk",
                                    "created": created, "model": model_id, "choices": [],
                                    "usage": _usage(prepared, outcome)})
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream",
                                     background=BackgroundTask(ticket.release),
                                     headers={"Cache-Control": "no-cache", "X-Request-Id": prepared.request_id})
        outcome = await _complete(runtime, prepared, ticket, max_tokens, body.temperature, request, stops, body.seed)
        reason = _finish_reason(prepared, outcome, max_tokens)
        return JSONResponse({
            "id": prepared.request_id, "object": "chat.completion", "created": created, "model": model_id,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": outcome.text},
                         "finish_reason": reason}],
            "usage": _usage(prepared, outcome), **extra})

    if role != "model":
        @app.post("/v1/rag", response_model=None)
        async def rag(body: RagRequest, request: Request) -> Response:
            key = _check_key(runtime, request, None)
            max_tokens = _max_tokens(runtime.config, body.max_tokens)
            question = _check_question(runtime.config, body.query, "query")
            twin = await _call(runtime, runtime.service.resolve_twin, body.twin)
            _check_key(runtime, request, twin, key)
            prepared, ticket = await _admit_and_prepare(runtime, dict(
                endpoint="/v1/rag", question=question, twin=twin, category=body.category, k=body.k,
                retrieval=True, expand=body.expand, **_caller(runtime, key)))
            head = {"request_id": prepared.request_id, "twin": prepared.twin,
                    "filters": prepared.log.prompt_variables.get("filters"),
                    "model": prepared.loaded.model.name, "model_version": prepared.loaded.model.version,
                    "model_alias": prepared.loaded.model.alias, "answered_by": runtime.service.answered_by(prepared),
                    "backend": prepared.loaded.backend.name,
                    "sources": [s.as_json() for s in prepared.sources]}
            if body.stream:
                async def events() -> AsyncIterator[str]:
                    yield _sse({"type": "sources", **head})
                    outcome = Outcome()
                    try:
                        async for piece in _generate(runtime, prepared, ticket, max_tokens, body.temperature,
                                                     outcome, request):
                            yield _sse({"type": "token", "text": piece})
                    except (GenerationTimeout, TwinError):
                        yield _sse({"type": "error", "message": outcome.error})
                    else:
                        yield _sse({"type": "done", "answer": outcome.text, "citations": _citations(prepared)})

                return StreamingResponse(events(), media_type="text/event-stream",
                                         background=BackgroundTask(ticket.release),
                                         headers={"Cache-Control": "no-cache", "X-Request-Id": prepared.request_id})
            outcome = await _complete(runtime, prepared, ticket, max_tokens, body.temperature, request)
            return JSONResponse({**head, "answer": outcome.text, "citations": _citations(prepared),
                                 "usage": _usage(prepared, outcome)})

        @app.get("/", include_in_schema=False)
        async def chat_page() -> FileResponse:
            return FileResponse(STATIC / "index.html")

        app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


# --- request steps ------------------------------------------------------------------------------

class RequestGuard:
    """ASGI middleware, outermost: request timing for /metrics, then, before any body is read,
    the API key (401 for a missing or unknown one) and the body size (413 past
    TWIN_MAX_REQUEST_BYTES, by Content-Length or while reading). A plain ASGI middleware, unlike
    @app.middleware("http"), lets handlers see the client's disconnect."""

    def __init__(self, app, runtime: Runtime) -> None:  # type: ignore[no-untyped-def]
        self.app, self.runtime = app, runtime

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_observed(message) -> None:  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await self._refuse(scope, send_observed, *refusal)
                return
            await self.app(scope, self._capped(receive), send_observed)
        except _BodyTooLarge:
            await self._refuse(scope, send_observed, *self._too_large())
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            if endpoint != "/metrics":
                self.runtime.metrics.request_seconds.labels(endpoint, str(status["code"])).observe(
                    time.perf_counter() - started)

    def _refusal(self, scope) -> tuple[int, str, str] | None:  # type: ignore[no-untyped-def]
        config = self.runtime.config
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if config.api_keys and scope["path"].startswith("/v1/"):
            if config.find_key(_key_from_headers(headers)) is None:
                return (401, "Missing or unknown API key: send `Authorization: Bearer KEY` (or X-API-Key).",
                        "authentication_error")
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > config.max_request_bytes:
            return self._too_large()
        return None

    def _too_large(self) -> tuple[int, str, str]:
        limit = self.runtime.config.max_request_bytes
        return (413, f"The request body is over {limit:,} bytes (TWIN_MAX_REQUEST_BYTES).",
                "invalid_request_error")

    def _capped(self, receive):  # type: ignore[no-untyped-def]
        limit = self.runtime.config.max_request_bytes
        seen = {"bytes": 0}

        async def capped_receive():  # type: ignore[no-untyped-def]
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > limit:
                    raise _BodyTooLarge
            return message

        return capped_receive

    async def _refuse(self, scope, send, status: int, message: str, kind: str) -> None:  # type: ignore[no-untyped-def]
        self.runtime.metrics.rejected.labels(str(status)).inc()
        response = _error(status, message, kind)
        if status == 413:
            response.headers["Connection"] = "close"
        await response(scope, _no_body, send)


class _BodyTooLarge(HTTPException):
    """Raised while the body is read (FastAPI passes HTTPExceptions through unchanged)."""

    def __init__(self) -> None:
        super().__init__(status_code=413)


async def _no_body() -> dict[str, object]:
    return {"type": "http.request", "body": b"", "more_body": False}


def _key_from_headers(headers: dict[str, str]) -> str | None:
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return headers.get("x-api-key") or None


def _error(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": status}},
                        status_code=status)


def _sse(payload: dict[str, object]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, default=str)}\n\n"


def _request_key(request: Request) -> str | None:
    return _key_from_headers({name.lower(): value for name, value in request.headers.items()})


def _check_key(runtime: Runtime, request: Request, twin: str | None, key: str | None = None) -> str | None:
    key = key if key is not None else _request_key(request)
    verdict = runtime.config.key_allows(key, twin)
    if verdict == 401:
        raise ApiError(401, "Missing or unknown API key: send `Authorization: Bearer KEY` (or X-API-Key).",
                       "authentication_error")
    if verdict == 403:
        raise ApiError(403, f"This API key is not allowed to use twin {twin!r}.", "permission_error")
    return key


def _refuse_unsupported(raw: dict[str, object]) -> None:
    for name, harmless in UNSUPPORTED.items():
        value = raw.get(name)
        if value is not None and value != harmless and not (name == "tools" and value == []):
            raise ApiError(400, f"`{name}` is not supported by this server (got {json.dumps(value)[:80]}); "
                                "remove it from the request.", param=name)


def _stop_sequences(stop: str | list[str] | None) -> tuple[str, ...]:
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    if len(stops) > 4 or any(not item for item in stops):
        raise ApiError(400, "stop takes at most 4 non-empty sequences.", param="stop")
    return stops


def _embed_queries(runtime: Runtime, texts: list[str]) -> list[list[float]]:
    """The same query encoder as search (clean_prose, then the platform's embedding model)."""
    from twin.embedding import load_embedder
    from twin.retrieval import encode_queries

    vectors = encode_queries(load_embedder(runtime.settings.embedding_model), texts)
    return [[float(value) for value in vector] for vector in vectors]


def _base64_floats(vector: list[float]) -> str:
    """OpenAI's base64 encoding: little-endian float32."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()


class StopScanner:
    """Cuts streamed text at the first stop sequence, holding back a tail that could begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops, self.pending, self.stopped = stops, "", False
        self.hold = max((len(stop) for stop in stops), default=1) - 1

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.pending += piece
        hits = [index for index in (self.pending.find(stop) for stop in self.stops) if index >= 0]
        if hits:
            self.stopped = True
            out, self.pending = self.pending[: min(hits)], ""
            return out
        cut = max(0, len(self.pending) - self.hold)
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def _max_tokens(config: ServingConfig, requested: int | None) -> int:
    value = config.default_max_tokens if requested is None else requested
    if not 1 <= value <= config.max_tokens_limit:
        raise ApiError(422, f"max_tokens must be between 1 and {config.max_tokens_limit} (got {value}).",
                       param="max_tokens")
    return min(value, config.max_tokens_limit)


def _check_question(config: ServingConfig, text: str, param: str) -> str:
    question = text.strip()
    if not question:
        raise ApiError(422, "The question is empty.", param=param)
    if len(question) > config.max_question_chars:
        raise ApiError(422, f"The question is {len(question)} characters long; the limit is "
                            f"{config.max_question_chars} (TWIN_MAX_QUESTION_CHARS).", param=param)
    return question


async def _call(runtime: Runtime, function, *args):  # type: ignore[no-untyped-def]
    """Run blocking domain code off the event loop, mapping its errors to HTTP statuses."""
    try:
        return await asyncio.to_thread(function, *args)
    except UnknownTwin as error:
        raise ApiError(404, f"{error.message} {error.fix}", "not_found_error", "model") from error
    except OutOfScope as error:
        raise ApiError(403, error.message, "permission_error") from error
    except DatabaseUnavailable as error:
        raise ApiError(503, f"The database is unavailable: {error.message} Fix: {error.fix}",
                       "service_unavailable") from error
    except ModelUnavailable as error:
        raise ApiError(503, f"No model is available: {error.error.message} Fix: {error.error.fix}",
                       "service_unavailable") from error
    except TwinError as error:
        raise ApiError(400, f"{error.message} {error.fix}".strip()) from error


def _model_rows(runtime: Runtime) -> list[dict[str, object]]:
    if runtime.with_database:
        return [{"id": slug, "object": "model", "created": 0, "owned_by": "llm-twin", "name": name}
                for slug, name in runtime.service.twins()]
    rows: list[dict[str, object]] = [{"id": "base", "object": "model", "created": 0, "owned_by": "llm-twin"}]
    try:
        from training.registry import configure_mlflow

        client = configure_mlflow(runtime.settings)
        for model in client.search_registered_models(filter_string="name LIKE 'twin-%'"):
            rows.append({"id": model.name.removeprefix("twin-"), "object": "model", "created": 0,
                         "owned_by": "llm-twin"})
    except TwinError as error:
        log.warning("model registry unavailable: %s", error.message)
    return rows


def _caller(runtime: Runtime, key: str | None) -> dict[str, object]:
    """What RagService.prepare needs to know of the caller: the twins its key may read, its id."""
    entry = runtime.config.find_key(key)
    return {"scope": runtime.config.scope_of(key), "api_key_id": entry.id if entry else None}


async def _admit_and_prepare(runtime: Runtime, arguments: dict[str, object]) -> tuple[PreparedRequest, Ticket]:
    try:
        runtime.gate.admit()
    except QueueFull:
        raise ApiError(429, f"The generation queue is full ({runtime.gate.limit} requests running or "
                            "waiting); retry shortly.", "rate_limit_error") from None
    ticket = Ticket(runtime.gate, runtime.metrics)
    runtime.metrics.queue_depth.set(runtime.gate.inside)
    try:
        try:
            await runtime.gate.wait_turn(runtime.config.generation_timeout_s)
        except QueueTimeout:
            raise ApiError(504, f"No generation slot freed within {runtime.config.generation_timeout_s:g} s.",
                           "timeout") from None
        ticket.had_turn = True
        prepared = await _call(runtime, lambda: runtime.service.prepare(**arguments))  # type: ignore[arg-type]
    except BaseException:
        ticket.release()
        raise
    if prepared.retrieval is not None:
        runtime.metrics.retrieval_seconds.observe(prepared.retrieval.ms / 1000)
    if runtime.with_database and runtime.monitor.database_url is None:
        runtime.monitor.database_url = runtime.service.database_url()  # the database came back
    return prepared, ticket


async def _generate(runtime: Runtime, prepared: PreparedRequest, ticket: Ticket, max_tokens: int,
                    temperature: float, outcome: Outcome, request: Request,
                    cancel: threading.Event | None = None, stops: tuple[str, ...] = (),
                    seed: int | None = None) -> AsyncIterator[str]:
    """Generation in a worker thread, streamed to the event loop; stops on disconnect, deadline or
    a stop sequence (cut from the text, as OpenAI does)."""
    scanner = StopScanner(stops)
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[object] = asyncio.Queue()
    cancel = cancel or threading.Event()
    backend = prepared.loaded.backend

    def put(item: object) -> None:
        try:
            loop.call_soon_threadsafe(pieces.put_nowait, item)
        except RuntimeError:  # the loop is gone (shutdown)
            cancel.set()

    def produce() -> None:
        try:
            if prepared.fixed_answer is not None:  # retrieval found nothing relevant: say so, generate nothing
                put(prepared.fixed_answer)
                put(_END)
                return
            for piece in backend.stream(prepared.messages, max_tokens=max_tokens, temperature=temperature,
                                        cancel=cancel, seed=seed):
                put(piece)
            put(_END)
        except BaseException as error:  # handed to the consumer
            put(error)

    started = time.perf_counter()
    deadline = loop.time() + runtime.config.generation_timeout_s
    loop.run_in_executor(runtime.executor, produce)
    try:
        while True:
            try:
                item = await asyncio.wait_for(pieces.get(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                outcome.status = "error"
                outcome.error = f"Generation timed out after {runtime.config.generation_timeout_s:g} s " \
                                "(TWIN_GENERATION_TIMEOUT)."
                raise GenerationTimeout from None
            if item is _END:
                tail = scanner.flush()
                if tail:
                    outcome.pieces.append(tail)
                    yield tail
                break
            if isinstance(item, TwinError):
                outcome.status, outcome.error = "error", f"{item.message} {item.fix}".strip()
                raise item
            if isinstance(item, BaseException):
                outcome.status, outcome.error = "error", f"{type(item).__name__}: {item}"
                raise TwinError(f"Generation failed: {outcome.error}", "see the service log.") from item
            text = scanner.feed(str(item))
            if text:
                outcome.pieces.append(text)
                yield text
            if scanner.stopped:
                outcome.stopped = True
                break
    except (asyncio.CancelledError, GeneratorExit):
        outcome.status, outcome.error = "cancelled", "the client disconnected"
        raise
    finally:
        cancel.set()
        ticket.release()
        elapsed = time.perf_counter() - started
        outcome.served = runtime.service.finish(prepared, outcome.text, outcome.status, outcome.error, elapsed * 1000,
                                                max_tokens)
        if prepared.grounded is not None:
            runtime.metrics.answer_grounding.observe(prepared.grounded.grounding)
        tokens = prepared.log.completion_tokens or 0
        runtime.metrics.generated_tokens.labels(backend.name).inc(tokens)
        if tokens and elapsed > 0:
            runtime.metrics.tokens_per_second.labels(backend.name).observe(tokens / elapsed)


async def _complete(runtime: Runtime, prepared: PreparedRequest, ticket: Ticket, max_tokens: int,
                    temperature: float, request: Request, stops: tuple[str, ...] = (),
                    seed: int | None = None) -> Outcome:
    outcome = Outcome()
    cancel = threading.Event()
    stream = _generate(runtime, prepared, ticket, max_tokens, temperature, outcome, request, cancel, stops, seed)

    async def watch_disconnect() -> None:
        """A client that leaves a non-streaming request stops its generation and frees its slot."""
        while (await request.receive())["type"] != "http.disconnect":
            pass
        outcome.status, outcome.error = "cancelled", "the client disconnected"
        cancel.set()

    watcher = asyncio.create_task(watch_disconnect())
    try:
        async for _ in stream:
            if cancel.is_set():
                break
    except GenerationTimeout:
        raise ApiError(504, str(outcome.error), "timeout") from None
    except PromptTooLong as error:
        raise ApiError(400, f"{error.message} Fix: {error.fix}", param="max_tokens") from error
    except TwinError as error:
        raise ApiError(502, f"{error.message} Fix: {error.fix}", "generation_error") from error
    finally:
        watcher.cancel()
        await stream.aclose()
    return outcome


def _finish_reason(prepared: PreparedRequest, outcome: Outcome, max_tokens: int) -> str:
    if outcome.stopped:
        return "stop"
    return "length" if _completion_tokens(prepared, outcome) >= max_tokens else "stop"
def _citations(prepared: PreparedRequest) -> dict[str, object] | None:
    """Per-sentence citations and the grounding figure of a retrieval answer."""
    return prepared.grounded.as_json() if prepared.grounded is not None else None


def _completion_tokens(prepared: PreparedRequest, outcome: Outcome) -> int:
    return prepared.log.completion_tokens or prepared.loaded.backend.count_tokens(outcome.text)


def _usage(prepared: PreparedRequest, outcome: Outcome) -> dict[str, int]:
    prompt = prepared.log.prompt_tokens or 0
    completion = _completion_tokens(prepared, outcome)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
