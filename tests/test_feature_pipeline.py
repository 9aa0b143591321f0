import json
import shutil
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Pipeline, asset_metadata
from twin.database import Database
from twin.embedding import resolve_model_location
from twin.embedding_column import set_embedding_column_dimension
from twin.settings import DEFAULT_EMBEDDING_MODEL
from twin.sources.jsonl import import_jsonl

MAX_BYTES = 1_000_000
PARAGRAPH = ("Kelp forests collapse into urchin barrens when the predators that keep urchins in check "
             "disappear. Divers count urchins per square metre along fixed transects every spring. ")


def article(url: str, topic: str, author: str = "Ada Byte") -> dict[str, str]:
    content = "\n\n".join(f"## {topic} part {i}\n\n{PARAGRAPH * 4}{topic} detail {i}." for i in range(3))
    return {"author": author, "category": "article", "platform": "blog", "url": url, "title": topic,
            "content": content, "published_at": "2024-01-02"}


def write_jsonl(path: Path, records: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def chunk_state(conn: psycopg.Connection) -> dict[str, tuple]:
    """chunk_id -> (url, embedded_at) for every chunk."""
    return {str(row[0]): (row[1], row[2]) for row in conn.execute(
        "SELECT chunk_id, url, embedded_at FROM chunks")}


def test_full_graph_on_the_sample_corpus(sample_database: str) -> None:
    with Database(sample_database).connect() as conn:
        per_twin = conn.execute(
            """SELECT twin, count(*), count(*) FILTER (WHERE embedding IS NULL),
                      count(DISTINCT document_id), count(DISTINCT category)
               FROM chunks GROUP BY twin ORDER BY twin""").fetchall()
        cleaned = conn.execute("SELECT count(*) FROM cleaned_documents").fetchone()[0]
        unattributed = conn.execute(
            """SELECT count(*) FROM chunks WHERE url = '' OR title = '' OR author = ''
               OR category NOT IN ('article', 'post', 'repository')""").fetchone()[0]
        undated = conn.execute("SELECT count(*) FROM chunks WHERE published_at IS NULL").fetchone()[0]
        over_window = conn.execute("SELECT max(token_count) FROM chunks").fetchone()[0]
    assert [row[0] for row in per_twin] == ["maya-lindqvist", "priya-raman", "tomas-herrera"]
    for twin, total, missing, documents, categories in per_twin:
        assert total > 150 and missing == 0 and documents == 34 and categories == 3, twin
    assert cleaned == 102 and unattributed == 0 and undated == 0 and over_window <= 254


def test_rerun_embeds_nothing_edit_replaces_only_that_document_delete_removes_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    docs = [article(f"https://example.com/{i}", f"Topic {i}") for i in range(3)]
    source = write_jsonl(tmp_path / "ada.jsonl", docs)
    Database(pipeline.database_url).migrate()
    with Database(pipeline.database_url).connect() as conn:
        import_jsonl(conn, source, max_document_bytes=MAX_BYTES)
        first = pipeline.run("ada-byte")
        assert asset_metadata(first, "features/embeddings")["embedded"] > 0
        before = chunk_state(conn)
        # how many rows a twin has, and what the table holds, as Dagster's table metadata
        chunk_count = len(before)
        assert asset_metadata(first, "raw/documents")["dagster/row_count"] == 3
        assert asset_metadata(first, "features/cleaned_documents")["dagster/row_count"] == 3
        assert asset_metadata(first, "features/chunks")["dagster/row_count"] == chunk_count >= 3
        assert asset_metadata(first, "features/embeddings")["dagster/row_count"] == chunk_count
        schema = asset_metadata(first, "features/chunks")["dagster/column_schema"]
        columns = {column.name: column.type for column in schema.columns}
        assert columns["embedding"] == "vector(384)" and columns["text"] == "text" and "search_vector" not in columns
        assert "content" in {c.name for c in asset_metadata(first, "features/cleaned_documents")["dagster/column_schema"].columns}

        rerun = pipeline.run("ada-byte")
        assert asset_metadata(rerun, "features/cleaned_documents")["unchanged"] == 3
        assert asset_metadata(rerun, "features/chunks")["chunks_written"] == 0
        assert asset_metadata(rerun, "features/embeddings")["embedded"] == 0
        assert chunk_state(conn) == before

        docs[1]["content"] += "\n\n## A new closing section\n\nSea otters came back in 2023."
        import_jsonl(conn, write_jsonl(source, docs), max_document_bytes=MAX_BYTES)
        edited = pipeline.run("ada-byte")
        after = chunk_state(conn)
        untouched = {k: v for k, v in before.items() if v[0] != "https://example.com/1"}
        assert {k: v for k, v in after.items() if v[0] != "https://example.com/1"} == untouched
        old_ids = {k for k, v in before.items() if v[0] == "https://example.com/1"}
        new_ids = {k for k, v in after.items() if v[0] == "https://example.com/1"}
        assert new_ids - old_ids  # the new section made new chunks
        stale = conn.execute(
            """SELECT count(*) FROM chunks k JOIN cleaned_documents c USING (document_id)
               WHERE k.document_hash <> c.content_hash""").fetchone()[0]
        assert stale == 0  # no chunk of the old version is left behind
        assert asset_metadata(edited, "features/cleaned_documents")["changed"] == 1
        chunk_meta = asset_metadata(edited, "features/chunks")
        assert chunk_meta["changed"] == 1 and chunk_meta["unchanged"] == 2
        # unchanged paragraphs keep their vectors: only the new text is embedded
        assert 0 < asset_metadata(edited, "features/embeddings")["embedded"] < len(new_ids)
        assert conn.execute("SELECT count(*) FROM chunks WHERE embedding IS NULL").fetchone()[0] == 0

        import_jsonl(conn, write_jsonl(source, [docs[0], docs[2]]), max_document_bytes=MAX_BYTES, prune=True)
        deleted = pipeline.run("ada-byte")
        assert asset_metadata(deleted, "features/cleaned_documents")["deleted"] == 1
        remaining_urls = {row[0] for row in conn.execute("SELECT DISTINCT url FROM chunks")}
        assert remaining_urls == {"https://example.com/0", "https://example.com/2"}
        assert conn.execute("SELECT count(*) FROM cleaned_documents").fetchone()[0] == 2


def test_backfilling_one_new_twin_leaves_the_others_untouched(pipeline: Pipeline, tmp_path: Path) -> None:
    Database(pipeline.database_url).migrate()
    with Database(pipeline.database_url).connect() as conn:
        import_jsonl(conn, write_jsonl(tmp_path / "a.jsonl", [article("https://example.com/a", "Kelp")]),
                     max_document_bytes=MAX_BYTES)
        pipeline.run("ada-byte")
        before = chunk_state(conn)
        newcomer = [article("https://example.com/b", "Reefs", author="Bea Coral")]
        import_jsonl(conn, write_jsonl(tmp_path / "b.jsonl", newcomer), max_document_bytes=MAX_BYTES)
        result = pipeline.run("bea-coral")
        assert asset_metadata(result, "features/embeddings")["embedded"] > 0
        after = chunk_state(conn)
        assert {k: v for k, v in after.items() if v[0] == "https://example.com/a"} == before
        assert {row[0] for row in conn.execute("SELECT DISTINCT twin FROM chunks")} == {"ada-byte", "bea-coral"}
        assert pipeline.instance.get_dynamic_partitions("twins") == ["ada-byte", "bea-coral"]


def test_the_raw_asset_imports_configured_paths_for_its_own_twin_only(pipeline: Pipeline, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "both.jsonl", [article("https://example.com/a", "Kelp"),
                                                   article("https://example.com/b", "Reefs", author="Bea Coral")])
    result = pipeline.run("bea-coral", import_paths=[str(source)])
    raw = asset_metadata(result, "raw/documents")
    assert (raw["import_accepted"], raw["documents"], raw["articles"]) == (1, 1, 1)
    assert "Reefs" in raw["preview"]
    with Database(pipeline.database_url).connect() as conn:
        assert conn.execute("SELECT DISTINCT twin FROM chunks").fetchall() == [("bea-coral",)]


def test_changing_the_embedding_model_re_embeds_every_chunk(pipeline: Pipeline, tmp_path: Path) -> None:
    other_model = tmp_path / "minilm-copy"  # a second model id with the same dimension
    shutil.copytree(resolve_model_location(DEFAULT_EMBEDDING_MODEL), other_model)
    Database(pipeline.database_url).migrate()
    with Database(pipeline.database_url).connect() as conn:
        import_jsonl(conn, write_jsonl(tmp_path / "a.jsonl", [article("https://example.com/a", "Kelp")]),
                     max_document_bytes=MAX_BYTES)
        pipeline.run("ada-byte")
        total = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
        result = pipeline.run("ada-byte", model=str(other_model))
        meta = asset_metadata(result, "features/embeddings")
        assert (meta["changed"], meta["unchanged"], meta["model"]) == (total, 0, str(other_model))
        assert conn.execute("SELECT DISTINCT embedding_model FROM chunks").fetchall() == [(str(other_model),)]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real 768-d sentence-transformers model: MiniLM plus a Dense projection, saved to disk."""
    from sentence_transformers import SentenceTransformer, models

    base = SentenceTransformer(resolve_model_location(DEFAULT_EMBEDDING_MODEL), device="cpu")
    dense = models.Dense(in_features=384, out_features=768)
    path = tmp_path_factory.mktemp("wide") / "minilm-768"
    SentenceTransformer(modules=[*base, dense], device="cpu").save(str(path))
    return str(path)


def test_a_768d_model_against_the_384d_column_is_refused_and_writes_nothing(
    pipeline: Pipeline, tmp_path: Path, wide_model: str
) -> None:
    Database(pipeline.database_url).migrate()
    with Database(pipeline.database_url).connect() as conn:
        import_jsonl(conn, write_jsonl(tmp_path / "a.jsonl", [article("https://example.com/a", "Kelp")]),
                     max_document_bytes=MAX_BYTES)
        result = pipeline.run("ada-byte", model=wide_model, raise_on_error=False)
        assert not result.success
        failure = result.get_step_failure_events()[0].step_failure_data.error
        while failure.cause is not None:
            failure = failure.cause
        assert "makes 768-d vectors but chunks.embedding is vector(384)" in failure.message
        assert conn.execute("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL").fetchone()[0] == 0

        conn.execute("CREATE VIEW public.embedded_chunks AS SELECT chunk_id FROM analyst.chunks WHERE embedding IS NOT NULL")
        conn.execute("COMMENT ON VIEW public.embedded_chunks IS 'a view over a view over the column'")
        analyst_could_read = conn.execute("SELECT has_table_privilege('twin_analyst', 'analyst.chunks', 'SELECT')").fetchone()[0]

        set_embedding_column_dimension(conn, 768)  # the documented fix: resize, then re-run
        index = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw'").fetchone()[0]
        assert "WITH (m='24', ef_construction='128')" in index  # rebuilt as migration 013 builds it
        assert pipeline.run("ada-byte", model=wide_model).success
        assert conn.execute("SELECT DISTINCT vector_dims(embedding) FROM chunks").fetchall() == [(768,)]
        # views over the column (the analyst views, dbt's, anyone's) come back with comments and grants
        assert conn.execute("SELECT vector_dims(embedding) FROM analyst.chunks LIMIT 1").fetchone() == (768,)
        assert conn.execute("SELECT count(*) FROM public.embedded_chunks").fetchone()[0] > 0
        assert conn.execute("SELECT obj_description('public.embedded_chunks'::regclass)").fetchone()[0].startswith("a view")
        assert conn.execute("SELECT has_table_privilege('twin_analyst', 'analyst.chunks', 'SELECT')").fetchone()[0] == analyst_could_read
