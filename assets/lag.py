"""The freshness-style check of the feature pipeline: no twin's oldest waiting document may be
older than TWIN_LAG_LIMIT_SECONDS. Evaluated on a schedule, so a stalled pipeline (no runs at
all) fails it too; the numbers come from twin/lag.py."""

from __future__ import annotations

import dagster as dg

from assets.checks import check_result
from resources import EmbeddingModelResource, PostgresResource
from twin.lag import STAGES, TwinLag, check_lag, lag_check_spec, pipeline_lag

EMBEDDINGS = dg.AssetKey(["features", "embeddings"])


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
    spec = lag_check_spec(limit_seconds)

    @dg.asset_check(asset=EMBEDDINGS, name=spec.name, description=spec.description)
    def pipeline_lag_within_limit(
        postgres: PostgresResource, embedding_model: EmbeddingModelResource
    ) -> dg.AssetCheckResult:
        policy = embedding_model.chunking_policy()
        with postgres.connection() as conn:
            lags = pipeline_lag(conn, embedding_model.embedder().model_id, policy.signature)
        return check_result(check_lag(lags, limit_seconds), metadata={"lag": lag_table(lags)})

    return pipeline_lag_within_limit


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
