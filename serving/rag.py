"""The RAG service without HTTP: resolve the twin, retrieve, build the prompt, generate, log.

`answer_question` is the plain entry point (CLI `twin ask`, the demo); the FastAPI app uses the
same `RagService` steps so both answer identically.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from serving import citations, prompts
from serving.backends.base import Message
from serving.config import ServingConfig
from serving.context import PackedContext, Source, pack_context
from serving.models import LoadedModel, ModelManager, ModelUnavailable
from serving.monitoring import Monitor, PromptLog
from training.registry import ServingModel, twin_of_model
from twin.database import Database
from twin.documents import twin_slug
from twin.embedding import load_embedder
from twin.errors import TwinError
from twin.grounding import GroundedAnswer
from twin.query import OutOfScope, QueryFilters, scoped_filters
from twin.raw_store import list_twins
from twin.retrieval import RetrievedChunk, search
from twin.self_query import self_query_for
from twin.settings import Settings

TWINS_TTL_S = 10.0


class UnknownTwin(TwinError):
    """The request names a twin that does not exist (404)."""


class DatabaseUnavailable(TwinError):
    """PostgreSQL cannot be reached (503)."""


@dataclass
class Retrieval:
    filters: QueryFilters
    notes: tuple[str, ...]  # what self-query saw and did not use (a shared name, a vague date)
    queries: list[str]
    candidates: list[RetrievedChunk]  # best first; the relevant ones may become the context
    context: PackedContext
    ms: float

    @property
    def found_nothing(self) -> bool:
        """No chunk passed the relevance threshold: the answer says so instead of guessing."""
        return not self.context.chunks


@dataclass
class PreparedRequest:
    request_id: str
    endpoint: str
    twin: str | None
    question: str
    messages: list[Message]
    loaded: LoadedModel
    retrieval: Retrieval | None
    log: PromptLog
    started: float = field(default_factory=time.perf_counter)
    grounded: GroundedAnswer | None = None  # set by RagService.finish for a retrieval answer
    fixed_answer: str | None = None  # the answer when retrieval found nothing relevant (no generation)

    @property
    def sources(self) -> list[Source]:
        return self.retrieval.context.sources if self.retrieval else []


def answered_by(twin: str | None, author: str, model: ServingModel) -> str:
    """Who answers, in one line: the twin and its model version, or why it is the base model."""
    if twin is None:
        return (f"no twin: none was chosen and the question names no author, so the base model {model.name} "
                "answers from every author's writing")
    if model.version is None:
        return f"{author} ({twin}), with the base model {model.name}: this twin has no fine-tuned champion yet"
    alias = f" ({model.alias})" if model.alias else ""
    return f"{author} ({twin}), with {model.name} v{model.version}{alias}"


@dataclass(frozen=True)
class RagAnswer:
    answer: str
    sources: list[Source]
    twin: str | None
    model_name: str
    model_version: str | None
    backend: str
    request_id: str
    answered_by: str
    grounded: GroundedAnswer | None = None

    def as_json(self) -> dict[str, object]:
        return {"answer": self.answer, "sources": [source.as_json() for source in self.sources],
                "twin": self.twin, "model": self.model_name, "model_version": self.model_version,
                "answered_by": self.answered_by,
                "backend": self.backend, "request_id": self.request_id,
                "citations": self.grounded.as_json() if self.grounded else None}


class RagService:
    def __init__(self, settings: Settings, config: ServingConfig, models: ModelManager,
                 monitor: Monitor | None, with_database: bool = True) -> None:
        self.settings = settings
        self.config = config
        self.models = models
        self.monitor = monitor
        self.with_database = with_database
        self.database = Database.from_settings(settings)
        self._twins: tuple[tuple[tuple[str, str], ...], float] | None = None

    # --- database -------------------------------------------------------------------------
    def database_url(self) -> str:
        return self.database.url

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; an unreachable or failing database is DatabaseUnavailable (503)."""
        connected = False
        try:
            self.database.ensure_schema()  # the serving entry point: a fresh database is migrated first
            with self.database.connection() as conn:
                connected = True
                yield conn
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(f"PostgreSQL failed during the request: {error}",
                                      "check that the database is up (GET /readyz).") from error
        except TwinError as error:
            if connected:  # the request's own error (an unknown twin, a refused scope)
                raise
            raise DatabaseUnavailable(error.message, error.fix) from error

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    def twins(self) -> tuple[tuple[str, str], ...]:
        """(slug, name) of every twin, re-read at most every few seconds."""
        cached = self._twins
        if cached is not None and time.monotonic() - cached[1] < TWINS_TTL_S:
            return cached[0]
        with self.connection() as conn:
            rows = tuple(list_twins(conn))
        self._twins = (rows, time.monotonic())
        return rows

    def resolve_twin(self, name: str | None) -> str | None:
        """The slug of a twin given by slug, name or registered model name (`twin-<slug>`)."""
        if name is None or name == "":
            return None
        if not self.with_database:
            return name
        known = dict(self.twins())
        for candidate in (name, twin_of_model(name), twin_slug(name)):
            if candidate in known:
                return candidate
        raise UnknownTwin(f"Unknown twin {name!r}; known twins: {', '.join(known) or 'none yet'}.",
                          "pick one of GET /v1/models, or import their writing first (twin import PATH).")

    def answered_by(self, prepared: PreparedRequest) -> str:
        return answered_by(prepared.twin, self.author_name(prepared.twin), prepared.loaded.model)

    def author_name(self, twin: str | None) -> str:
        if twin is None:
            return "the author"
        if not self.with_database:
            return twin
        return dict(self.twins()).get(twin, twin)

    # --- retrieval ------------------------------------------------------------------------
    def retrieve(self, question: str, filters: QueryFilters, notes: tuple[str, ...], k: int,
                 loaded: LoadedModel, expand: int | None = None) -> Retrieval:
        """twin/retrieval.py's hybrid search with the request's filters; the chunks that pass the
        relevance threshold and fit the budget become the context."""
        started = time.perf_counter()
        expansions = self.expand_query(question, loaded, expand)
        embedder = load_embedder(self.settings.embedding_model)
        with self.connection() as conn:
            result = search(conn, embedder, question, k=k, filters=filters, self_query=False,
                            expansions=expansions, candidates=max(4 * k, 20),
                            reranker=self.config.reranker_model)
        context = pack_context(result.relevant, k=k, token_budget=self.config.context_token_budget,
                               count_tokens=loaded.backend.count_tokens)
        return Retrieval(filters, notes, result.queries, result.chunks, context,
                         (time.perf_counter() - started) * 1000)

    def filters_for(self, question: str, twin: str | None, category: str | None,
                    scope: frozenset[str] | None) -> tuple[QueryFilters, tuple[str, ...]]:
        """The request's filters: its own, else the ones self-query finds in the question, always
        within `scope` (self-query may narrow a key's twins, never widen them)."""
        found = self_query_for(self.twins()).parse(question)
        return scoped_filters(found.filters, twin, category, scope), found.notes

    def expand_query(self, question: str, loaded: LoadedModel, expand: int | None) -> list[str]:
        """n rewrites of the question by the LLM (off unless configured or asked for)."""
        n = self.config.query_expansion if expand is None else expand
        if n <= 0:
            return []
        text = "".join(loaded.backend.stream(prompts.expansion_messages(question, n), max_tokens=24 * n,
                                             temperature=0.0, cancel=threading.Event()))
        variants = [line.strip(" -*0123456789.").strip() for line in text.splitlines()]
        return [variant for variant in variants if len(variant) > 3 and variant != question][:n]

    # --- requests -------------------------------------------------------------------------
    def prepare(self, *, endpoint: str, question: str, twin: str | None, category: str | None = None,
                k: int | None = None, retrieval: bool = True, history: list[Message] | None = None,
                raw_messages: list[Message] | None = None, expand: int | None = None,
                scope: frozenset[str] | None = None, api_key_id: str | None = None) -> PreparedRequest:
        """Everything up to generation: model, retrieval, messages and the prompt log entry.

        `scope` is the set of twins the caller's key may read (None: every twin); it is enforced
        here, where the data is read, whatever twin the request named or self-query found.
        """
        if scope is not None and twin is not None and twin not in scope:
            raise OutOfScope(twin)
        filters: QueryFilters | None = None
        notes: tuple[str, ...] = ()
        if retrieval and self.with_database:
            filters, notes = self.filters_for(question, twin, category, scope)  # "what does Maya say..."
            twin = filters.twin
        loaded = self.models.get(twin)
        k = k or self.config.retrieval_k
        author = self.author_name(twin)
        found: Retrieval | None = None
        if filters is not None:
            found = self.retrieve(question, filters, notes, k, loaded, expand)
            messages = prompts.rag_messages(author, found.context.text, question, history)
            template, variables = prompts.RAG_SYSTEM, {"author": author, "context": found.context.text,
                                                       "question": question}
        else:
            messages = prompts.plain_messages(author, raw_messages or [{"role": "user", "content": question}])
            template, variables = prompts.PLAIN_SYSTEM, {"author": author, "question": question}
        prompt = loaded.backend.render_prompt(messages)
        request_id = f"req-{uuid.uuid4().hex}"
        chunks = found.context.chunks if found else []
        entry = PromptLog(
            request_id=request_id, endpoint=endpoint, query=question,
            prompt_template=f"{prompts.TEMPLATE_NAME}: {template}", prompt_variables=variables,
            prompt=prompt, twin=twin, model_name=loaded.model.name, model_version=loaded.model.version,
            model_alias=loaded.model.alias, backend=loaded.backend.name,
            retrieved_chunk_ids=[chunk.chunk_id for chunk in chunks],
            retrieval_scores=[chunk.similarity for chunk in chunks],
            prompt_tokens=loaded.backend.count_tokens(prompt),
            retrieval_ms=round(found.ms, 2) if found else None, api_key_id=api_key_id)
        fixed_answer = None
        if found is not None:
            entry.prompt_variables["filters"] = found.filters.describe()  # with scope, when a key limited it
            if found.notes:
                entry.prompt_variables["filters"]["notes"] = list(found.notes)
            entry.prompt_variables["queries"] = found.queries  # the question and its expansions
            if found.found_nothing:
                fixed_answer = nothing_found(author if twin else None)
        return PreparedRequest(request_id, endpoint, twin, question, messages, loaded, found, entry,
                               fixed_answer=fixed_answer)

    def finish(self, prepared: PreparedRequest, answer: str, status: str, error: str | None,
               generation_ms: float, max_tokens: int | None = None) -> str:
        """Log the request; returns the answer as served: ended at a sentence when generation hit
        `max_tokens`, cited inline per sentence when it was answered from retrieved chunks."""
        entry = prepared.log
        entry.completion_tokens = prepared.loaded.backend.count_tokens(answer) if answer else 0
        if status == "ok":
            answer = citations.finished_text(answer, max_tokens is not None and entry.completion_tokens >= max_tokens)
            if prepared.retrieval is not None and prepared.fixed_answer is None:
                prepared.grounded = citations.cite(answer, prepared.retrieval.context,
                                                   load_embedder(self.settings.embedding_model))
                answer, entry.grounding = prepared.grounded.text, round(prepared.grounded.grounding, 4)
        entry.answer = answer
        entry.status = status
        entry.error = error
        entry.generation_ms = round(generation_ms, 2)
        entry.total_ms = round((time.perf_counter() - prepared.started) * 1000, 2)
        if self.monitor is not None:
            self.monitor.record(entry)
        return answer

    def close(self) -> None:
        self.database.close()


def nothing_found(author: str | None) -> str:
    """The answer to an off-topic question: no chunk passed the relevance threshold."""
    whose = f"{author}'s writing" if author else "the twins' writing"
    return (f"I found nothing in {whose} on that, so I will not answer it from nothing. "
            "Ask about something the author has written on.")


def answer_question(
    settings: Settings,
    question: str,
    twin: str | None = None,
    *,
    category: str | None = None,
    k: int | None = None,
    max_tokens: int | None = None,
    config: ServingConfig | None = None,
) -> RagAnswer:
    """Answer `question` in the twin's voice with numbered, cited sources (no HTTP server)."""
    config = config or ServingConfig.from_settings(settings)
    if not question.strip():
        raise TwinError("The question is empty.", 'ask something, e.g. twin ask "How do I fix table bloat?"')
    models = ModelManager(settings, config)
    monitor = Monitor(settings, Database.from_settings(settings).url)
    service = RagService(settings, config, models, monitor)
    try:
        slug = service.resolve_twin(twin)
        try:
            prepared = service.prepare(endpoint="cli:ask", question=question, twin=slug, category=category, k=k)
        except ModelUnavailable as error:
            raise error.error from error
        started = time.perf_counter()
        limit = max_tokens or config.default_max_tokens
        answer = prepared.fixed_answer or "".join(prepared.loaded.backend.stream(
            prepared.messages, max_tokens=limit, temperature=0.0, cancel=threading.Event())).strip()
        answer = service.finish(prepared, answer, "ok", None, (time.perf_counter() - started) * 1000, limit)
        model = prepared.loaded.model
        return RagAnswer(answer, prepared.sources, prepared.twin, model.name, model.version,
                         prepared.loaded.backend.name, prepared.request_id, service.answered_by(prepared), prepared.grounded)
    finally:
        monitor.close()
        service.close()
        models.close()
