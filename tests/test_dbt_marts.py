"""The dbt project: built through its Dagster assets against the embedded Postgres, marts checked
against figures computed from the platform's own tables."""

import json
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest
from dagster_dbt import DbtProject

from assets.marts import DBT_PROJECT_DIR, prepare_manifest
from orchestration.cli import main
from orchestration.definitions import defs
from tests.analyst_rows import MODEL, UNANSWERED_QUERY, build_marts
from tests.conftest import create_database
from twin.database import Database

SESSION_STARTED = time.time()  # older target folders are from runs before the cleanup existed

MARTS = {"twin_content_stats", "document_chunk_coverage", "chunk_length_distribution", "dataset_history",
         "model_history", "traffic_daily", "cited_documents", "unanswered_queries"}


@pytest.fixture(scope="module")
def marts(analytics_database: str, twin_home: Path) -> psycopg.Connection:
    result = build_marts(analytics_database, str(twin_home))
    assert isinstance(result, dg.ExecuteInProcessResult)
    assert result.success
    connection = Database(analytics_database).connect()
    yield connection
    connection.close()


def _rows(conn: psycopg.Connection, query: str, *params: object) -> list[tuple]:
    return conn.execute(query, params).fetchall()


def test_dbt_build_materializes_every_model_and_passes_every_dbt_test(
    marts: psycopg.Connection, analytics_database: str, twin_home: Path
) -> None:
    result = build_marts(analytics_database, str(twin_home))
    materialized = {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}
    assert {f"marts/{name}" for name in MARTS} <= materialized
    assert "staging/stg_prompt_logs" in materialized
    target = DBT_PROJECT_DIR / "target"
    left = [path for path in target.iterdir() if path.is_dir() and (path / "run_results.json").exists()
            and path.stat().st_mtime >= SESSION_STARTED]
    assert not left, f"a run's dbt target folder was left behind: {left}"
    manifest = json.loads(Path(prepare_manifest()).read_text())
    dbt_tests = [node for node in manifest["nodes"].values() if node["resource_type"] == "test"]
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == len(dbt_tests) > 60
    assert [evaluation.check_name for evaluation in evaluations if not evaluation.passed] == []
    for name in MARTS:  # every mart is non-empty on the sample corpus plus the inserted rows
        assert _rows(marts, f"SELECT count(*) FROM analytics.{name}")[0][0] > 0, name


def test_content_stats_count_the_documents_words_and_chunks_of_each_twin(marts: psycopg.Connection) -> None:
    expected_words: dict[tuple[str, str], int] = {}
    for twin, category, content in _rows(marts, "SELECT twin, category, content FROM cleaned_documents"):
        expected_words[(twin, category)] = expected_words.get((twin, category), 0) + len(content.split())
    expected = {
        (twin, category): (documents, chunks)
        for twin, category, documents, chunks in _rows(marts, """
            SELECT d.twin, d.category, count(DISTINCT d.document_id), count(c.chunk_id)
            FROM cleaned_documents d LEFT JOIN chunks c USING (document_id) GROUP BY 1, 2""")
    }
    actual = {
        (twin, category): (documents, chunks, words, embedded)
        for twin, category, documents, chunks, words, embedded in _rows(marts, """
            SELECT twin, category, sum(documents), sum(chunks), sum(words), sum(embedded_chunks)
            FROM analytics.twin_content_stats GROUP BY 1, 2""")
    }
    assert set(actual) == set(expected) and len(expected) == 9  # 3 twins x 3 categories
    for key, (documents, chunks) in expected.items():
        assert actual[key] == (documents, chunks, expected_words[key], chunks), key
    months = _rows(marts, "SELECT count(DISTINCT published_month) FROM analytics.twin_content_stats")[0][0]
    assert months > 3


def test_coverage_finds_the_uncleaned_document_and_the_length_distribution_adds_up(
    marts: psycopg.Connection,
) -> None:
    coverage = dict(_rows(marts, "SELECT coverage, count(*) FROM analytics.document_chunk_coverage GROUP BY 1"))
    raw = _rows(marts, "SELECT count(*) FROM raw_documents")[0][0]
    cleaned = _rows(marts, "SELECT count(*) FROM cleaned_documents")[0][0]
    assert coverage == {"embedded": cleaned, "not_cleaned": raw - cleaned}
    assert raw - cleaned == 1
    assert _rows(marts, "SELECT url FROM analytics.document_chunk_coverage WHERE coverage = 'not_cleaned'") == [
        ("https://www.linkedin.com/posts/mayalindqvist_draft",)]
    total, share_sums = _rows(marts, """
        SELECT sum(chunks), array_agg(DISTINCT share_sum) FROM (
            SELECT twin, category, sum(chunks) AS chunks, round(sum(share), 2) AS share_sum
            FROM analytics.chunk_length_distribution GROUP BY 1, 2) per_category""")[0]
    assert total == _rows(marts, "SELECT count(*) FROM chunks")[0][0]
    assert [float(value) for value in share_sums] == [1.0]
    longest = _rows(marts, "SELECT max(token_count) FROM chunks")[0][0]
    assert _rows(marts, "SELECT max(bucket_end) FROM analytics.chunk_length_distribution")[0][0] == longest // 32 * 32 + 31


def test_dataset_and_model_history(marts: psycopg.Connection) -> None:
    datasets = _rows(marts, """SELECT kind, fingerprint, version_number, linked_documents, total_rows
                              FROM analytics.dataset_history ORDER BY kind, version_number""")
    linked = dict(_rows(marts, "SELECT fingerprint, count(*) FROM dataset_documents GROUP BY 1"))
    assert [(kind, fingerprint, number) for kind, fingerprint, number, _, _ in datasets] == [
        ("instruct", "i1", 1), ("instruct", "i2", 2), ("preference", "p1", 1)]
    assert {fingerprint: documents for _, fingerprint, _, documents, _ in datasets} == linked
    models = {row[0]: row[1:] for row in _rows(marts, """
        SELECT version, dataset_rows, perplexity, evaluated_against, evaluation_promoted, promotions, is_champion
        FROM analytics.model_history WHERE registered_model = %s""", MODEL)}
    i1_rows = _rows(marts, "SELECT train_rows + test_rows FROM dataset_versions WHERE fingerprint = 'i1'")[0][0]
    assert models[1] == (i1_rows, 21.4, "base", True, 1, True)
    assert models[2][2:] == ("champion v1", False, 0, False)


def test_traffic_citations_and_unanswered_queries(marts: psycopg.Connection) -> None:
    daily = {(str(day), requests, errors): median for day, requests, errors, median in _rows(marts, """
        SELECT request_date, requests, error_requests, p50_total_ms FROM analytics.traffic_daily""")}
    expected = {(str(day), requests, errors): median for day, requests, errors, median in _rows(marts, """
        SELECT created_at::date, count(*), count(*) FILTER (WHERE status = 'error'),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY total_ms)
        FROM prompt_logs GROUP BY 1""")}
    assert daily == expected and len(daily) == 2
    top_document = _rows(marts, """
        SELECT c.document_id FROM prompt_logs l, unnest(l.retrieved_chunk_ids) AS cited(chunk_id)
        JOIN chunks c USING (chunk_id) WHERE l.status = 'ok'
        GROUP BY 1 ORDER BY count(*) DESC LIMIT 1""")[0][0]
    assert _rows(marts, "SELECT document_id FROM analytics.cited_documents WHERE citation_rank = 1") == [
        (top_document,)]
    unanswered = _rows(marts, "SELECT query, requests, best_score FROM analytics.unanswered_queries")
    assert unanswered == [(UNANSWERED_QUERY.lower(), 2, 0.2106)]


def test_the_marts_relevance_threshold_is_the_one_retrieval_uses() -> None:
    import yaml

    from twin.retrieval import RELEVANCE_THRESHOLD

    project = yaml.safe_load((Path(__file__).resolve().parents[1] / "dbt_project" / "dbt_project.yml").read_text())
    assert project["vars"]["relevance_threshold"] == RELEVANCE_THRESHOLD


def test_staging_hides_prompts_and_answers(marts: psycopg.Connection) -> None:
    columns = {row[0] for row in _rows(marts, """
        SELECT column_name FROM information_schema.columns
        WHERE table_schema = 'staging' AND table_name = 'stg_prompt_logs'""")}
    assert "query" in columns and not columns & {"prompt", "answer", "prompt_variables", "error"}


def test_a_failing_dbt_test_fails_twin_dbt(server_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = create_database(server_url)
    Database(url).migrate()
    with Database(url).connect() as conn:  # a cleaned document of an unknown category and without its raw document
        conn.execute("INSERT INTO twins (slug, name) VALUES ('ana', 'Ana')")
        conn.execute("""INSERT INTO cleaned_documents (document_id, twin, category, platform, url, title, author,
                            content, content_hash, raw_hash, cleaner)
                        VALUES (999999, 'ana', 'podcast', 'x', 'https://x', 't', 'Ana', 'words', 'h', 'h', 'c')""")
    monkeypatch.setenv("DATABASE_URL", url)
    status = main(["dbt", "build", "--select", "stg_cleaned_documents", "stg_raw_documents", "--quiet"])
    assert status != 0
    with Database(url).connect() as conn:  # the view was built; its accepted_values and relationships tests failed
        assert conn.execute("SELECT count(*) FROM staging.stg_cleaned_documents WHERE category = 'podcast'"
                            ).fetchone()[0] == 1


def test_definitions_load_the_dbt_assets_with_upstream_keys_checks_and_automation() -> None:
    definitions = defs()
    graph = definitions.resolve_asset_graph()
    parents = {key: {parent.to_user_string() for parent in graph.get(dg.AssetKey.from_user_string(key)).parent_keys}
               for key in ("staging/stg_raw_documents", "staging/stg_cleaned_documents", "staging/stg_chunks",
                           "staging/stg_chunk_embeddings", "staging/stg_dataset_versions",
                           "staging/stg_model_versions", "staging/stg_evaluations", "staging/stg_promotions",
                           "staging/stg_prompt_logs")}
    assert parents == {
        "staging/stg_raw_documents": {"raw/documents"},
        "staging/stg_cleaned_documents": {"features/cleaned_documents"},
        "staging/stg_chunks": {"features/chunks"},
        "staging/stg_chunk_embeddings": {"features/embeddings"},
        "staging/stg_dataset_versions": {"datasets/instruct", "datasets/preference"},
        "staging/stg_model_versions": {"models/twin_adapter"},
        "staging/stg_evaluations": {"evaluation/twin_eval"},
        "staging/stg_promotions": {"models/champion"},
        "staging/stg_prompt_logs": {"serving/prompt_logs"},
    }
    for name in MARTS:
        node = graph.get(dg.AssetKey(["marts", name]))
        assert node.automation_condition is not None and node.partitions_def is None, name
    checks = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys}
    assert ("marts/twin_content_stats", "unique_twin_content_stats_stat_id") in checks
    sensor = definitions.resolve_sensor_def("marts_automation_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_a_missing_manifest_is_prepared_on_load(tmp_path: Path) -> None:
    project_dir = tmp_path / "dbt_project"
    shutil.copytree(DBT_PROJECT_DIR, project_dir, ignore=shutil.ignore_patterns("target", "logs"))
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    manifest = prepare_manifest(project)
    assert manifest.exists()
    nodes = json.loads(manifest.read_text())["nodes"]
    assert {node["name"] for node in nodes.values() if node["resource_type"] == "model"} >= MARTS


def test_marts_rebuild_after_their_upstream_assets_change_and_traffic_marts_hourly() -> None:
    definitions = defs()
    dbt_keys = [key for key in definitions.resolve_all_asset_keys() if key.path[0] in ("staging", "marts")]

    def requested(result: dg.AutomationResult) -> set[str]:  # type: ignore[name-defined]
        return {key.to_user_string() for key in dbt_keys if result.get_num_requested(key)}

    start = datetime(2026, 11, 23, 10, 5, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("twins", ["maya-lindqvist"])
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, evaluation_time=start)
        assert requested(result) == set()  # the sensor's first tick only takes stock
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=result.cursor,
                                                   evaluation_time=start + timedelta(seconds=10))
        # a fresh install: every model in one run, once, so no later subset misses a staging view
        assert requested(result) == {key.to_user_string() for key in dbt_keys}
        for key in dbt_keys:
            instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=result.cursor,
                                                   evaluation_time=start + timedelta(seconds=20))
        assert requested(result) == set()
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=dg.AssetKey(["features", "chunks"]), partition="maya-lindqvist"))
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=result.cursor,
                                                   evaluation_time=start + timedelta(minutes=1))
        assert requested(result) == {"staging/stg_chunks", "marts/twin_content_stats", "marts/document_chunk_coverage",
                                     "marts/chunk_length_distribution", "marts/cited_documents"}
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=result.cursor,
                                                   evaluation_time=start + timedelta(minutes=2))
        assert requested(result) == set()  # requested once, not on every tick
        result = dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=result.cursor,
                                                   evaluation_time=start + timedelta(hours=1))
        assert requested(result) == {"marts/traffic_daily", "marts/cited_documents", "marts/unanswered_queries"}
