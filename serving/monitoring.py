"""Prompt monitoring: every request becomes a `prompt_logs` row (for analysts, in Postgres) and an
MLflow trace (experiment `twin-serving`), written by one background thread so that answering
never waits on either store."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field

from twin.database import Database
from twin.settings import Settings

log = logging.getLogger("twin.serving.monitoring")
TRACE_EXPERIMENT = "twin-serving"


@dataclass
class PromptLog:
    request_id: str
    endpoint: str
    query: str
    prompt_template: str
    prompt_variables: dict[str, object]
    prompt: str
    twin: str | None = None
    answer: str | None = None
    status: str = "ok"  # ok | error | cancelled
    error: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    model_alias: str | None = None
    backend: str | None = None
    retrieved_chunk_ids: list[str] = field(default_factory=list)
    retrieval_scores: list[float] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    retrieval_ms: float | None = None
    generation_ms: float | None = None
    total_ms: float | None = None
    api_key_id: str | None = None  # which API key asked (its hash id, never the key)
    grounding: float | None = None  # share of answer sentences supported by a cited chunk (retrieval answers)
    started_ns: int = field(default_factory=time.time_ns)


class Monitor:
    """Queues PromptLogs; a daemon thread writes them to Postgres and MLflow."""

    def __init__(self, settings: Settings, database_url: str | None, traces: bool = True) -> None:
        self.settings = settings
        self.database_url = database_url
        self.traces = traces
        self._queue: queue.Queue[PromptLog | None] = queue.Queue(maxsize=10_000)
        self._experiment_id: str | None = None
        self._thread = threading.Thread(target=self._run, name="twin-prompt-monitor", daemon=True)
        self._thread.start()

    def record(self, entry: PromptLog) -> None:
        try:
            self._queue.put_nowait(entry)
        except queue.Full:  # monitoring must never block or fail a request
            log.warning("prompt log queue full; dropped %s", entry.request_id)

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything recorded so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.traces and self._experiment_id is not None:
            import mlflow

            mlflow.flush_trace_async_logging()  # MLflow exports spans from its own queue

    def close(self) -> None:
        self.flush()
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        database: Database | None = None  # a pool of one, for this thread
        while True:
            entry = self._queue.get()
            try:
                if entry is None:
                    if database is not None:
                        database.close()
                    return
                if self.database_url:
                    try:
                        if database is None or database.url != self.database_url:
                            database = Database(self.database_url, pool_size=1)
                        with database.connection() as conn:
                            write_prompt_log(conn, entry)
                    except Exception as error:  # noqa: BLE001 - the database may be down
                        log.warning("prompt log %s not written to Postgres: %s", entry.request_id, error)
                        if database is not None:
                            database.close()  # a broken connection is not reused
                if self.traces:
                    try:
                        self._trace(entry)
                    except Exception as error:  # noqa: BLE001 - the tracking store may be down
                        log.warning("trace for %s not written to MLflow: %s", entry.request_id, error)
            finally:
                self._queue.task_done()

    def _trace(self, entry: PromptLog) -> None:
        import mlflow

        if mlflow.get_tracking_uri() != self.settings.mlflow_tracking_uri:
            self._experiment_id = None  # another component of this process pointed MLflow elsewhere
        if self._experiment_id is None:
            from training.registry import TRACES_EXPERIMENT, configure_mlflow, experiment_id

            self._experiment_id = experiment_id(configure_mlflow(self.settings), self.settings, TRACE_EXPERIMENT,
                                                TRACES_EXPERIMENT)
        start = entry.started_ns
        end = start + int((entry.total_ms or 0) * 1e6)
        root = mlflow.start_span_no_context(
            name=entry.endpoint, span_type="CHAIN", experiment_id=self._experiment_id, start_time_ns=start,
            inputs={"query": entry.query, "twin": entry.twin},
            tags={"request_id": entry.request_id, "twin": entry.twin or "", "status": entry.status},
            attributes={"model_name": entry.model_name or "", "model_version": entry.model_version or "",
                        "model_alias": entry.model_alias or "", "backend": entry.backend or "",
                        "prompt_template": entry.prompt_template})
        cursor = start
        if entry.retrieval_ms is not None:
            span = mlflow.start_span_no_context(
                name="retrieval", span_type="RETRIEVER", parent_span=root, start_time_ns=cursor,
                inputs={"query": entry.query})
            cursor += int(entry.retrieval_ms * 1e6)
            span.set_outputs([{"chunk_id": chunk_id, "score": score} for chunk_id, score
                              in zip(entry.retrieved_chunk_ids, entry.retrieval_scores, strict=False)])
            span.end(end_time_ns=cursor)
        span = mlflow.start_span_no_context(
            name="generation", span_type="LLM", parent_span=root, start_time_ns=cursor,
            inputs={"prompt": entry.prompt, "variables": entry.prompt_variables},
            attributes={"prompt_tokens": entry.prompt_tokens or 0, "completion_tokens": entry.completion_tokens or 0,
                        "grounding": entry.grounding if entry.grounding is not None else -1.0})
        span.set_outputs({"answer": entry.answer})
        span.end(end_time_ns=cursor + int((entry.generation_ms or 0) * 1e6))
        if entry.status != "ok":
            root.set_status("ERROR")
        root.set_outputs({"answer": entry.answer, "error": entry.error})
        root.end(end_time_ns=max(end, cursor))


def write_prompt_log(conn, entry: PromptLog) -> None:  # conn: psycopg.Connection
    """One prompt_logs row. Postgres text and jsonb cannot hold NUL, so NUL is written as `\\x00`
    (a question containing it is still logged, not dropped)."""
    row = {name: _without_nul(value) for name, value in asdict(entry).items()}
    row.pop("started_ns")
    row["prompt_variables"] = json.dumps(row["prompt_variables"], ensure_ascii=False, default=str)
    columns = ", ".join(row)
    values = ", ".join(f"%({name})s::uuid[]" if name == "retrieved_chunk_ids" else f"%({name})s"
                       for name in row)
    conn.execute(
        f"INSERT INTO prompt_logs ({columns}) VALUES ({values}) ON CONFLICT (request_id) DO NOTHING",
        row)


def _without_nul(value: object) -> object:
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value
