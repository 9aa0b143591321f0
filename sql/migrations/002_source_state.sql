-- State kept by sources between runs.

-- HTTP validators per crawled URL, so unchanged pages are not downloaded again.
CREATE TABLE http_cache (
    url            text PRIMARY KEY,
    etag           text,
    last_modified  text,
    status         integer,
    content_hash   text,
    fetched_at     timestamptz NOT NULL DEFAULT now()
);

-- A cursor per incremental source (a MongoDB collection's high-water mark, an S3 listing, ...).
CREATE TABLE source_state (
    source      text PRIMARY KEY,
    cursor      text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
