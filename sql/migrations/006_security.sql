-- Security and integrity (issue 10): which API key asked, the previous version of every replaced or
-- deleted raw document, and limits on the read-only analyst role.

-- prompt_logs: the API key's id (a hash, never the key itself; NULL when the server has no keys).
ALTER TABLE prompt_logs ADD COLUMN api_key_id text;
CREATE INDEX prompt_logs_api_key ON prompt_logs (api_key_id, created_at) WHERE api_key_id IS NOT NULL;

-- Nothing stored is lost: a raw document's previous version is kept here whenever its content
-- changes or it is deleted (by a prune, `twin` commands or SQL), by a trigger, whoever writes.
CREATE TABLE raw_document_history (
    history_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id   bigint NOT NULL,           -- raw_documents.id of the version kept
    twin          text NOT NULL,
    category      text NOT NULL,
    platform      text NOT NULL,
    url           text NOT NULL,
    title         text NOT NULL,
    author        text NOT NULL,
    content       text NOT NULL,
    published_at  date,
    content_hash  text NOT NULL,
    source        text NOT NULL,
    imported_at   timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    operation     text NOT NULL CHECK (operation IN ('update', 'delete')),
    replaced_by_source text,                 -- the source of the new version (NULL for a delete)
    replaced_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX raw_document_history_document ON raw_document_history (twin, url, replaced_at);
COMMENT ON TABLE raw_document_history IS
    'Previous versions of raw documents (content changed or deleted); newest last per (twin, url).';

CREATE FUNCTION keep_raw_document_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.content_hash IS NOT DISTINCT FROM OLD.content_hash
       AND NEW.title IS NOT DISTINCT FROM OLD.title THEN
        RETURN NEW;
    END IF;
    INSERT INTO raw_document_history (document_id, twin, category, platform, url, title, author, content,
                                      published_at, content_hash, source, imported_at, updated_at,
                                      operation, replaced_by_source)
    VALUES (OLD.id, OLD.twin, OLD.category, OLD.platform, OLD.url, OLD.title, OLD.author, OLD.content,
            OLD.published_at, OLD.content_hash, OLD.source, OLD.imported_at, OLD.updated_at,
            lower(TG_OP), CASE WHEN TG_OP = 'UPDATE' THEN NEW.source END);
    RETURN CASE WHEN TG_OP = 'UPDATE' THEN NEW ELSE OLD END;
END
$$;

CREATE TRIGGER raw_documents_keep_version
    BEFORE UPDATE OR DELETE ON raw_documents
    FOR EACH ROW EXECUTE FUNCTION keep_raw_document_version();

-- The analyst role: defaults that stop a forgotten session or a runaway query from holding
-- the platform up, a bound on temporary files, and a connection limit that leaves the platform
-- room. `twin analyst-url` re-applies them from TWIN_ANALYST_* (docs/analysts.md). temp_file_limit
-- is a superuser setting the analyst cannot raise; the others are defaults its session may change.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'twin_analyst') THEN
        RETURN;
    END IF;
    BEGIN
        ALTER ROLE twin_analyst CONNECTION LIMIT 4;
        ALTER ROLE twin_analyst SET statement_timeout = '60s';
        ALTER ROLE twin_analyst SET idle_in_transaction_session_timeout = '60s';
        ALTER ROLE twin_analyst SET lock_timeout = '5s';
        ALTER ROLE twin_analyst SET work_mem = '64MB';
        ALTER ROLE twin_analyst SET temp_file_limit = '1GB';
    EXCEPTION WHEN OTHERS THEN  -- the platform's user is no superuser: the DBA sets these
        RAISE NOTICE 'limits of twin_analyst not set: % (see docs/analysts.md)', SQLERRM;
    END;
END
$$;
