"""Lag (documents waiting per twin and stage, the oldest's age) and source-to-vector latency, on the
real embedded Postgres: the domain query, the embeddings asset's metadata, the freshness-style
check, the serving /metrics series and `twin lag`."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from assets.lag import build_pipeline_lag_check
from orchestration.cli import main
from resources import EmbeddingModelResource, PostgresResource
from serving.app import create_app
from tests.conftest import Pipeline, asset_metadata
from tests.serving_support import serving_config, serving_settings
from tests.test_feature_pipeline import article, write_jsonl
from twin.chunking import ChunkingPolicy
from twin.database import Database
from twin.embedding import Embedder
from twin.errors import TwinError
from twin.lag import LAG_CHECK, TwinLag, over_limit, pipeline_lag
from twin.settings import Settings
from twin.sources.jsonl import import_jsonl

TWIN = "ada-byte"
DOCUMENTS = 3


def lag_of(database_url: str, embedder: Embedder) -> TwinLag:
    with Database(database_url).connect() as conn:
        lags = pipeline_lag(conn, embedder.model_id, ChunkingPolicy(max_tokens=embedder.max_tokens).signature)
    assert [lag.twin for lag in lags] == [TWIN]
    return lags[0]


@pytest.fixture
def imported(pipeline: Pipeline, tmp_path: Path) -> Pipeline:
    """Three documents of one twin imported, their arrival moved two hours back, nothing processed."""
    source = write_jsonl(tmp_path / "ada.jsonl", [article(f"https://example.com/{i}", f"Topic {i}")
                                                  for i in range(DOCUMENTS)])
    Database(pipeline.database_url).migrate()
    with Database(pipeline.database_url).connect() as conn:
        import_jsonl(conn, source, max_document_bytes=1_000_000)
        conn.execute("UPDATE raw_documents SET updated_at = now() - interval '2 hours'")
    return pipeline


def test_imported_documents_wait_at_cleaning_with_their_age(imported: Pipeline, embedder: Embedder) -> None:
    lag = lag_of(imported.database_url, embedder)
    assert lag.stages["clean"].waiting == DOCUMENTS
    assert 7190 < lag.stages["clean"].oldest_seconds < 7300
    assert lag.stages["chunk"].waiting == lag.stages["embed"].waiting == 0
    assert lag.latency.documents == 0 and lag.latency.p50_seconds is None
    assert over_limit([lag], 3600) == [lag] and over_limit([lag], 8000) == []


def test_after_a_run_nothing_waits_and_latency_is_arrival_to_vectors(
    imported: Pipeline, embedder: Embedder
) -> None:
    result = imported.run(TWIN)
    metadata = asset_metadata(result, "features/embeddings")
    assert metadata["waiting_clean"] == metadata["waiting_chunk"] == metadata["waiting_embed"] == 0
    assert metadata["oldest_waiting_embed_seconds"] == -1.0
    assert metadata["latency_documents"] == DOCUMENTS
    # the documents arrived two hours ago (moved back) and were embedded just now
    assert 7190 < metadata["latency_p50_seconds"] <= metadata["latency_p95_seconds"] < 7500
    lag = lag_of(imported.database_url, embedder)
    assert lag.waiting == 0 and lag.oldest_seconds is None and lag.latency.documents == DOCUMENTS


def test_each_stage_counts_its_own_waiting_documents(imported: Pipeline, embedder: Embedder) -> None:
    assert imported.run(TWIN).success
    with Database(imported.database_url).connect() as conn:
        first, second, third = [row[0] for row in conn.execute("SELECT id FROM raw_documents ORDER BY id")]
        conn.execute("UPDATE raw_documents SET content = content || ' edit', content_hash = 'edited', "
                     "updated_at = now() - interval '10 minutes' WHERE id = %s", (first,))
        conn.execute("DELETE FROM chunks WHERE document_id = %s", (second,))
        conn.execute("UPDATE cleaned_documents SET cleaned_at = now() - interval '20 minutes' "
                     "WHERE document_id = %s", (second,))
        chunks_of_third = conn.execute(
            """UPDATE chunks SET embedding = NULL, chunked_at = now() - interval '30 minutes'
               WHERE document_id = %s RETURNING 1""", (third,)).fetchall()
    lag = lag_of(imported.database_url, embedder)
    assert {stage: lag.stages[stage].waiting for stage in ("clean", "chunk", "embed")} == {
        "clean": 1, "chunk": 1, "embed": 1}
    assert 590 < lag.stages["clean"].oldest_seconds < 700
    assert 1190 < lag.stages["chunk"].oldest_seconds < 1300
    assert 1790 < lag.stages["embed"].oldest_seconds < 1900 and lag.oldest_seconds == lag.stages["embed"].oldest_seconds
    assert lag.stages["embed"].chunks == len(chunks_of_third) > 0
    # no document is complete now: one is stale, one has no chunks, one lacks vectors
    assert lag.latency.documents == 0
    assert imported.run(TWIN).success
    after = lag_of(imported.database_url, embedder)
    assert after.waiting == 0 and after.latency.documents == DOCUMENTS


def run_lag_check(pipeline: Pipeline, limit_seconds: float) -> dg.AssetCheckEvaluation:
    check = build_pipeline_lag_check(limit_seconds)
    result = dg.materialize(
        [dg.AssetSpec(["features", "embeddings"]), check], instance=pipeline.instance,
        selection=dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey(["features", "embeddings"]), LAG_CHECK)),
        resources={"postgres": PostgresResource(twin_home=str(pipeline.twin_home), database_url=pipeline.database_url),
                   "embedding_model": EmbeddingModelResource()},
    )
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_the_lag_check_fails_a_twin_over_the_limit_and_passes_once_processed(imported: Pipeline) -> None:
    late = run_lag_check(imported, limit_seconds=3600)
    assert not late.passed and late.severity == dg.AssetCheckSeverity.ERROR
    assert late.metadata["late_twins"].value == TWIN and late.metadata["waiting_documents"].value == DOCUMENTS
    assert TWIN in late.description and "runbook" in late.description
    assert run_lag_check(imported, limit_seconds=8000).passed  # two hours old is within 8000 s
    assert imported.run(TWIN).success
    done = run_lag_check(imported, limit_seconds=3600)
    assert done.passed and done.metadata["twins_over_limit"].value == 0
    assert TWIN in done.metadata["lag"].value  # the per-twin markdown table


def test_the_limit_comes_from_twin_lag_limit_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_LAG_LIMIT_SECONDS", "120")
    assert Settings.from_env().lag_limit_seconds == 120.0
    monkeypatch.setenv("TWIN_LAG_LIMIT_SECONDS", "soon")
    with pytest.raises(TwinError, match="TWIN_LAG_LIMIT_SECONDS"):
        Settings.from_env()


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_serving_metrics_export_lag_and_latency(imported: Pipeline, twin_home: Path) -> None:
    settings = serving_settings(twin_home, imported.database_url)
    with TestClient(create_app(settings, serving_config(), role="rag")) as client:
        before = metric_samples(client.get("/metrics").text)
        assert before[("twin_pipeline_up", ())] == 1
        assert before[("twin_pipeline_waiting_documents", (("stage", "clean"), ("twin", TWIN)))] == DOCUMENTS
        assert 7190 < before[("twin_pipeline_oldest_waiting_seconds", (("stage", "clean"), ("twin", TWIN)))] < 7300
        assert before[("twin_pipeline_lag_limit_seconds", ())] == settings.lag_limit_seconds
        assert imported.run(TWIN).success
        after = metric_samples(client.get("/metrics").text)
    assert after[("twin_pipeline_waiting_documents", (("stage", "clean"), ("twin", TWIN)))] == 0
    assert after[("twin_pipeline_latency_documents", (("twin", TWIN),))] == DOCUMENTS
    p50 = after[("twin_pipeline_source_to_vector_seconds", (("quantile", "0.5"), ("twin", TWIN)))]
    p95 = after[("twin_pipeline_source_to_vector_seconds", (("quantile", "0.95"), ("twin", TWIN)))]
    assert 7190 < p50 <= p95 < 7500


def test_metrics_say_down_when_the_database_is(twin_home: Path) -> None:
    settings = serving_settings(twin_home, "postgresql://nobody@/none?host=/nonexistent")
    with TestClient(create_app(settings, serving_config(), role="rag")) as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    samples = metric_samples(response.text)
    assert samples[("twin_pipeline_up", ())] == 0
    assert not any(name.startswith("twin_pipeline_waiting") for name, _ in samples)


def test_twin_lag_prints_and_exits_1_over_the_limit(
    imported: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", imported.database_url)
    assert main(["lag", "--json"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["twin"] == TWIN and row["waiting_clean"] == DOCUMENTS and row["over_limit"] is True
    monkeypatch.setenv("TWIN_LAG_LIMIT_SECONDS", "9000")
    assert main(["lag"]) == 0
    assert "OVER LIMIT" not in capsys.readouterr().out
