"""The freshness-style check of the feature pipeline: no twin's oldest waiting document may be
older than TWIN_LAG_LIMIT_SECONDS. Evaluated on a schedule, so a stalled pipeline (no runs at
all) fails it too; the numbers come from twin/lag.py."""

from __future__ import annotations

import dagster as dg

from resources import EmbeddingModelResource, PostgresResource
from twin.lag import STAGES, TwinLag, over_limit, pipeline_lag

EMBEDDINGS = dg.AssetKey(["features", "embeddings"])
LAG_CHECK = "pipeline_lag_within_limit"


def lag_table(lags: list[TwinLag]) -> dg.MetadataValue:
    """A markdown table: per twin, waiting documents and the oldest's age per stage, latency."""
    lines = ["| twin | " + " | ".join(f"{stage} waiting (oldest s)" for stage in STAGES)
             + " | source-to-vector p50 / p95 s (documents) |", "|---|" + "---|" * (len(STAGES) + 1)]
    for lag in lags:
        cells = [f"{lag.stages[stage].waiting} ({_seconds(lag.stages[stage].oldest_seconds)})" for stage in STAGES]
        latency = lag.latency
        cells.append(f"{_seconds(latency.p50_seconds)} / {_seconds(latency.p95_seconds)} ({latency.documents})")
        lines.append(f"| {lag.twin} | " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def build_pipeline_lag_check(limit_seconds: float) -> dg.AssetChecksDefinition:
    """The check with its limit (Settings.lag_limit_seconds, from TWIN_LAG_LIMIT_SECONDS)."""

    @dg.asset_check(
        asset=EMBEDDINGS,
        name=LAG_CHECK,
        description=f"Fails when any twin's oldest document waiting to be cleaned, chunked or embedded "
                    f"is older than {limit_seconds:g} s (TWIN_LAG_LIMIT_SECONDS).",
    )
    def pipeline_lag_within_limit(
        postgres: PostgresResource, embedding_model: EmbeddingModelResource
    ) -> dg.AssetCheckResult:
        policy = embedding_model.chunking_policy()
        with postgres.connection() as conn:
            lags = pipeline_lag(conn, embedding_model.embedder().model_id, policy.signature)
        late = over_limit(lags, limit_seconds)
        oldest = max((lag.oldest_seconds or 0.0 for lag in lags), default=0.0)
        return dg.AssetCheckResult(
            passed=not late,
            severity=dg.AssetCheckSeverity.ERROR,
            description=("; ".join(f"{lag.twin}: oldest waiting {lag.oldest_seconds:.0f} s" for lag in late)
                         + f" (limit {limit_seconds:g} s): run the features job for these twins "
                           "(docs/runbook.md#the-pipeline-is-behind)") if late else None,
            metadata={"limit_seconds": limit_seconds, "twins": len(lags), "twins_over_limit": len(late),
                      "late_twins": ", ".join(lag.twin for lag in late),
                      "oldest_waiting_seconds": round(oldest, 3),
                      "waiting_documents": sum(lag.waiting for lag in lags), "lag": lag_table(lags)},
        )

    return pipeline_lag_within_limit


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
