-- Prompt monitoring: one row per request the serving API answered (or failed to answer).
CREATE TABLE prompt_logs (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         text NOT NULL UNIQUE,
    created_at         timestamptz NOT NULL DEFAULT now(),
    endpoint           text NOT NULL,                -- '/v1/rag', '/v1/chat/completions'
    twin               text,
    query              text NOT NULL,
    prompt_template    text NOT NULL,
    prompt_variables   jsonb NOT NULL,
    prompt             text NOT NULL,
    answer             text,
    status             text NOT NULL CHECK (status IN ('ok', 'error', 'cancelled')),
    error              text,
    model_name         text,
    model_version      text,
    model_alias        text,
    backend            text,
    retrieved_chunk_ids uuid[] NOT NULL DEFAULT '{}',
    retrieval_scores   double precision[] NOT NULL DEFAULT '{}',
    prompt_tokens      integer,
    completion_tokens  integer,
    retrieval_ms       double precision,
    generation_ms      double precision,
    total_ms           double precision
);
CREATE INDEX prompt_logs_created_at ON prompt_logs (created_at);
CREATE INDEX prompt_logs_twin ON prompt_logs (twin, created_at);
