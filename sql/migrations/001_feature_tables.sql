-- Twins, raw documents, cleaned documents and chunks with pgvector embeddings.
-- One twin = one author = one Dagster partition (twins.slug is the partition key).

CREATE TABLE twins (
    slug        text PRIMARY KEY CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per import (a JSONL file, later a crawl or an export archive).
CREATE TABLE imports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source       text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    accepted     integer NOT NULL DEFAULT 0,
    updated      integer NOT NULL DEFAULT 0,
    unchanged    integer NOT NULL DEFAULT 0,
    rejected     integer NOT NULL DEFAULT 0,
    deleted      integer NOT NULL DEFAULT 0
);

-- Input that was refused, kept verbatim for inspection.
CREATE TABLE import_rejections (
    import_id    bigint NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    line_number  integer NOT NULL,
    reason       text NOT NULL,
    line         text NOT NULL,
    PRIMARY KEY (import_id, line_number)
);

CREATE TABLE raw_documents (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    twin          text NOT NULL REFERENCES twins (slug),
    category      text NOT NULL CHECK (category IN ('article', 'post', 'repository')),
    platform      text NOT NULL,
    url           text NOT NULL,
    title         text NOT NULL DEFAULT '',
    author        text NOT NULL,
    content       text NOT NULL,
    published_at  date,
    content_hash  text NOT NULL,
    source        text NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (twin, url)
);

-- The cleaned snapshot that fine-tuning reads; document_id is the raw document's id.
CREATE TABLE cleaned_documents (
    document_id   bigint PRIMARY KEY,
    twin          text NOT NULL REFERENCES twins (slug),
    category      text NOT NULL,
    platform      text NOT NULL,
    url           text NOT NULL,
    title         text NOT NULL,
    author        text NOT NULL,
    published_at  date,
    content       text NOT NULL CHECK (content <> ''),
    content_hash  text NOT NULL,
    raw_hash      text NOT NULL,
    cleaner       text NOT NULL,
    cleaned_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cleaned_documents_twin ON cleaned_documents (twin);

CREATE TABLE chunks (
    chunk_id         uuid PRIMARY KEY,
    document_id      bigint NOT NULL REFERENCES cleaned_documents (document_id) ON DELETE CASCADE,
    twin             text NOT NULL,
    position         integer NOT NULL,
    text             text NOT NULL,
    token_count      integer NOT NULL,
    document_hash    text NOT NULL,
    chunker          text NOT NULL,
    -- source attribution, copied so every chunk answers "where does this come from?"
    url              text NOT NULL,
    title            text NOT NULL,
    author           text NOT NULL,
    category         text NOT NULL,
    published_at     date,
    embedding        vector(384),
    embedding_model  text,
    embedded_at      timestamptz,
    search_vector    tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED,
    UNIQUE (document_id, position)
);
CREATE INDEX chunks_twin ON chunks (twin);
CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_search_vector ON chunks USING gin (search_vector);
