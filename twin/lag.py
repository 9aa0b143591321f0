"""Lag and latency of the feature pipeline: work waiting per twin and stage, and how long a
document takes from its arrival to its vectors. Read by Dagster metadata and checks, the serving
`/metrics` endpoint and `twin lag`.

A document waits at a stage when the stage's pending rule (twin/features/pending.py, the same rule the
steps use) holds for it; its age counts from when its input was written: the raw document's
`updated_at` (its current content's arrival) for `clean`, the cleaned row's `cleaned_at` for
`chunk`, the chunk rows' `chunked_at` for `embed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from twin import cleaning
from twin.checks import Check, CheckSpec
from twin.features.pending import UNCHUNKED, UNCLEANED, UNEMBEDDED

STAGES = ("clean", "chunk", "embed")
LAG_CHECK = "pipeline_lag_within_limit"  # the check on features/embeddings that check_lag evaluates
LATENCY_WINDOW_SECONDS = 7 * 24 * 3600  # latency of the documents that arrived in the last week

_WAITING_SQL = f"""
WITH waiting AS (
    SELECT r.twin, 'clean' AS stage, 0 AS chunks, r.updated_at AS since
    FROM raw_documents r LEFT JOIN cleaned_documents c ON c.document_id = r.id
    WHERE {UNCLEANED}
  UNION ALL
    SELECT c.twin, 'chunk', 0, c.cleaned_at FROM cleaned_documents c WHERE {UNCHUNKED}
  UNION ALL
    SELECT twin, 'embed', count(*), min(chunked_at) FROM chunks WHERE {UNEMBEDDED}
    GROUP BY twin, document_id
)
SELECT twin, stage, count(*), sum(chunks), extract(epoch FROM now() - min(since))
FROM waiting GROUP BY twin, stage
"""

# Per document whose current content arrived in the window and has all its vectors from `model`:
# seconds from the raw document's updated_at (= imported_at until its content changes) to the
# last of its chunks' embedded_at.
_LATENCY_SQL = f"""
WITH done AS (
    SELECT r.twin, extract(epoch FROM max(k.embedded_at) - r.updated_at) AS seconds
    FROM raw_documents r
    JOIN cleaned_documents c ON c.document_id = r.id AND c.raw_hash = r.content_hash
    JOIN chunks k ON k.document_id = r.id AND k.document_hash = c.content_hash AND k.chunker = %(chunker)s
    WHERE r.updated_at >= now() - make_interval(secs => %(window)s)
      AND NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.document_id = r.id AND {UNEMBEDDED})
    GROUP BY r.twin, r.id, r.updated_at
)
SELECT twin, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds), max(seconds)
FROM done WHERE seconds >= 0 GROUP BY twin
"""


@dataclass(frozen=True)
class StageLag:
    """Documents of one twin waiting at one stage, and the age of the oldest (None: nothing waits)."""

    waiting: int = 0
    oldest_seconds: float | None = None
    chunks: int = 0  # for `embed`: the chunks without a vector from the current model


@dataclass(frozen=True)
class Latency:
    """Source-to-vector seconds over the documents that arrived in the window and are embedded."""

    documents: int = 0
    p50_seconds: float | None = None
    p95_seconds: float | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class TwinLag:
    twin: str
    stages: dict[str, StageLag] = field(default_factory=dict)
    latency: Latency = field(default_factory=Latency)

    @property
    def waiting(self) -> int:
        return sum(stage.waiting for stage in self.stages.values())

    @property
    def oldest_seconds(self) -> float | None:
        ages = [stage.oldest_seconds for stage in self.stages.values() if stage.oldest_seconds is not None]
        return max(ages) if ages else None

    def as_metadata(self) -> dict[str, float | int]:
        """Flat numbers for Dagster metadata (-1: nothing waits / nothing measured)."""
        values: dict[str, float | int] = {}
        for name in STAGES:
            stage = self.stages[name]
            values[f"waiting_{name}"] = stage.waiting
            values[f"oldest_waiting_{name}_seconds"] = _rounded(stage.oldest_seconds)
        values["waiting_embed_chunks"] = self.stages["embed"].chunks
        values["latency_documents"] = self.latency.documents
        values["latency_p50_seconds"] = _rounded(self.latency.p50_seconds)
        values["latency_p95_seconds"] = _rounded(self.latency.p95_seconds)
        return values


def pipeline_lag(
    conn: psycopg.Connection, model_id: str, chunker: str, twin: str | None = None,
    window_seconds: float = LATENCY_WINDOW_SECONDS,
) -> list[TwinLag]:
    """Lag and latency of every twin (or of `twin`), judged against the embedding model `model_id`
    and the chunker signature `chunker` the pipeline runs with now."""
    params = {"version": cleaning.CLEANER_VERSION, "chunker": chunker, "model": model_id, "window": window_seconds}
    twins = [row[0] for row in conn.execute(
        "SELECT slug FROM twins WHERE slug = coalesce(%s, slug) ORDER BY slug", (twin,))]
    stages: dict[str, dict[str, StageLag]] = {slug: {name: StageLag() for name in STAGES} for slug in twins}
    for slug, stage, documents, chunks, oldest in conn.execute(_WAITING_SQL, params):
        if slug in stages:
            stages[slug][stage] = StageLag(
                waiting=int(documents), oldest_seconds=max(0.0, float(oldest)),
                chunks=int(chunks))
    latency = {
        slug: Latency(int(documents), float(p50), float(p95), float(worst))
        for slug, documents, p50, p95, worst in conn.execute(_LATENCY_SQL, params)
    }
    return [TwinLag(slug, stages[slug], latency.get(slug, Latency())) for slug in twins]


def over_limit(lags: list[TwinLag], limit_seconds: float) -> list[TwinLag]:
    """The twins whose oldest waiting document is older than `limit_seconds`."""
    return [lag for lag in lags if lag.oldest_seconds is not None and lag.oldest_seconds > limit_seconds]


def lag_check_spec(limit_seconds: float) -> CheckSpec:
    """The lag check with its limit (Settings.lag_limit_seconds, from TWIN_LAG_LIMIT_SECONDS)."""
    return CheckSpec(LAG_CHECK, f"Fails when any twin's oldest document waiting to be cleaned, chunked or embedded "
                                f"is older than {limit_seconds:g} s (TWIN_LAG_LIMIT_SECONDS).")


def check_lag(lags: list[TwinLag], limit_seconds: float) -> Check:
    """Passes when no twin's oldest waiting document is older than `limit_seconds`; a failure
    names the late twins and the runbook section that helps."""
    late = over_limit(lags, limit_seconds)
    oldest = max((lag.oldest_seconds or 0.0 for lag in lags), default=0.0)
    summary = ("; ".join(f"{lag.twin}: oldest waiting {lag.oldest_seconds:.0f} s" for lag in late)
               + f" (limit {limit_seconds:g} s): run the features job for these twins "
                 "(docs/runbook.md#the-pipeline-is-behind)") if late else None
    return lag_check_spec(limit_seconds).result(not late, {
        "limit_seconds": limit_seconds, "twins": len(lags), "twins_over_limit": len(late),
        "late_twins": ", ".join(lag.twin for lag in late), "oldest_waiting_seconds": round(oldest, 3),
        "waiting_documents": sum(lag.waiting for lag in lags)}, summary=summary)


def _rounded(seconds: float | None) -> float:
    return -1.0 if seconds is None else round(seconds, 3)
