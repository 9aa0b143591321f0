"""The serving process's parts, built once per app (the composition root), and the admission of a
request to the generation queue."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serving.api.errors import ApiError, call
from serving.config import ROLES, ServingConfig
from serving.gate import AdmissionGate, QueueFull, QueueTimeout
from serving.metrics import Metrics, PipelineLagCollector
from serving.models import ModelManager
from serving.monitoring import Monitor
from serving.rag import PreparedRequest, RagService
from twin.chunking import ChunkingPolicy
from twin.embedding import load_embedder
from twin.errors import TwinError
from twin.lag import TwinLag, pipeline_lag
from twin.settings import Settings

log = logging.getLogger("twin.serving")


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


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(runtime_of)]


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


async def admit_and_prepare(runtime: Runtime,
                            prepare: Callable[[], PreparedRequest]) -> tuple[PreparedRequest, Ticket]:
    """A place in the queue (429 when it is full, 504 when no slot frees in time), then `prepare`
    (retrieval and prompt) in a worker thread; the ticket is released if either fails."""
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
        prepared = await call(prepare)
    except BaseException:
        ticket.release()
        raise
    if prepared.retrieval is not None:
        runtime.metrics.retrieval_seconds.observe(prepared.retrieval.ms / 1000)
    if runtime.with_database and runtime.monitor.database_url is None:
        runtime.monitor.database_url = runtime.service.database_url()  # the database came back
    return prepared, ticket
