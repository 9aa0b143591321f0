-- Analysts: a read-only role, documented views of documents and chunks (schema `analyst`), the
-- schema the dbt marts are built in (`analytics`), and similar_chunks() for "more like this".
-- Roles are cluster-wide and this runs once per database: creating the role tolerates an existing
-- one (another database, or a concurrent migration), and the grants are per database.
-- The role starts NOLOGIN; `twin analyst-url` enables login (with TWIN_ANALYST_PASSWORD if set).

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twin_analyst') THEN
        CREATE ROLE twin_analyst NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created by a migration of another database at the same moment
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'twin_analyst was not created (no CREATEROLE): ask the DBA to run '
                     '"CREATE ROLE twin_analyst NOLOGIN" and apply sql/migrations/005_analyst_role.sql again';
END
$$;

CREATE SCHEMA analyst;
COMMENT ON SCHEMA analyst IS 'Read-only views for SQL analysts (see docs/analysts.md).';
CREATE SCHEMA IF NOT EXISTS analytics;
COMMENT ON SCHEMA analytics IS 'dbt marts (dbt_project/), rebuilt by Dagster after their inputs change.';

-- Published writing only: no import paths, hashes, source credentials or pipeline internals.
CREATE VIEW analyst.documents AS
SELECT document_id, twin, category, platform, url, title, author, published_at, content,
       array_length(regexp_split_to_array(trim(content), '\s+'), 1) AS words,
       cleaned_at
FROM cleaned_documents;
COMMENT ON VIEW analyst.documents IS 'One row per cleaned document (the text fine-tuning reads).';

CREATE VIEW analyst.chunks AS
SELECT chunk_id, document_id, twin, position, text, token_count, url, title, author, category,
       published_at, embedding, embedding_model, search_vector
FROM chunks;
COMMENT ON VIEW analyst.chunks IS
    'One row per chunk: text, attribution, embedding vector(384) (HNSW cosine) and search_vector (GIN).';

-- The k chunks of other documents nearest to one chunk, by cosine similarity (HNSW index).
CREATE FUNCTION analyst.similar_chunks(p_chunk_id uuid, k integer DEFAULT 5)
RETURNS TABLE (chunk_id uuid, document_id bigint, twin text, category text, title text, url text,
               similarity double precision, text text)
LANGUAGE plpgsql STABLE
SET hnsw.ef_search = 100
AS $$
DECLARE
    query_vector vector;
    source_document bigint;
BEGIN
    SELECT c.embedding, c.document_id INTO query_vector, source_document
    FROM analyst.chunks c WHERE c.chunk_id = p_chunk_id;
    IF query_vector IS NULL THEN
        RAISE EXCEPTION 'chunk % does not exist or has no embedding yet', p_chunk_id
            USING HINT = 'pick a chunk_id from analyst.chunks WHERE embedding IS NOT NULL';
    END IF;
    RETURN QUERY
    SELECT c.chunk_id, c.document_id, c.twin, c.category, c.title, c.url,
           1 - (c.embedding <=> query_vector), c.text
    FROM analyst.chunks c
    WHERE c.embedding IS NOT NULL AND c.document_id <> source_document
    ORDER BY c.embedding <=> query_vector
    LIMIT k;
END
$$;
COMMENT ON FUNCTION analyst.similar_chunks(uuid, integer) IS
    'The k chunks of other documents most similar to p_chunk_id (cosine similarity, 1 = same direction).';

-- Grants, only where the role exists (see the NOTICE above).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twin_analyst') THEN
        RETURN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO twin_analyst', current_database());
    GRANT USAGE ON SCHEMA analyst, analytics TO twin_analyst;
    GRANT SELECT ON ALL TABLES IN SCHEMA analyst TO twin_analyst;
    GRANT EXECUTE ON FUNCTION analyst.similar_chunks(uuid, integer) TO twin_analyst;
    -- marts are dropped and re-created by dbt: whatever this (platform) role creates there is readable
    ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO twin_analyst;
    BEGIN
        ALTER ROLE twin_analyst SET search_path = analyst, analytics, public;
    EXCEPTION WHEN OTHERS THEN  -- a role the DBA owns, or another database setting it right now
        RAISE NOTICE 'search_path of twin_analyst not set: %', SQLERRM;
    END;
END
$$;
