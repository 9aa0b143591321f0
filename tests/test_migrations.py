import psycopg

from twin.database import Database, migrate, migration_files


def test_migrations_apply_once_and_are_recorded(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as raw:
        first = migrate(raw)
        second = migrate(raw)
        recorded = [row[0] for row in raw.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert first == [version for version, _, _ in migration_files()]
    assert second == []
    assert recorded == first


def test_migrate_builds_a_fresh_database_and_creates_the_indexes(conn: psycopg.Connection) -> None:
    tables = {row[0] for row in conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"twins", "raw_documents", "cleaned_documents", "chunks", "imports",
            "import_rejections", "schema_migrations"} <= tables
    indexes = {row[0]: row[1] for row in conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'chunks'")}
    assert "USING hnsw (embedding vector_cosine_ops) WITH (m='24', ef_construction='128')" in indexes["chunks_embedding_hnsw"]
    assert "USING gin (search_vector)" in indexes["chunks_search_vector"]
    dimension = conn.execute(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"
    ).fetchone()[0]
    assert dimension == 384


def test_migrating_again_keeps_data(database_url: str) -> None:
    assert Database(database_url).migrate() == [version for version, _, _ in migration_files()]
    with Database(database_url).connect() as first:
        first.execute("INSERT INTO twins (slug, name) VALUES ('ada-lovelace', 'Ada Lovelace')")
    with Database(database_url).connect() as second:
        migrate(second)
        assert second.execute("SELECT name FROM twins").fetchall() == [("Ada Lovelace",)]
