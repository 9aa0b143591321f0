"""Conditional GET state: the validators and content hash of each crawled URL (table `http_cache`)."""

from __future__ import annotations

import psycopg

from twin.sources.fetcher import Validators


class HttpCache:
    """Validators per crawled URL, plus the hash of what the page produced (table `http_cache`)."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self._conn = conn

    def validators(self, url: str, twin: str) -> Validators | None:
        """Stored validators, but only while `twin` still holds the document this URL produced.

        A crawl whose batch was never stored (or a page that was rejected) is then fetched in full
        again instead of being skipped as "not modified".
        """
        row = self._conn.execute(
            """SELECT c.etag, c.last_modified FROM http_cache c
               WHERE c.url = %s AND (c.etag IS NOT NULL OR c.last_modified IS NOT NULL)
                 AND EXISTS (SELECT 1 FROM raw_documents r
                             WHERE r.twin = %s AND r.content_hash = c.content_hash)""",
            (url, twin),
        ).fetchone()
        return None if row is None else Validators(etag=row[0], last_modified=row[1])

    def record(self, url: str, status: int, *, etag: str | None = None, last_modified: str | None = None,
               content_hash: str | None = None) -> None:
        self._conn.execute(
            """INSERT INTO http_cache (url, etag, last_modified, status, content_hash, fetched_at)
               VALUES (%s, %s, %s, %s, %s, now())
               ON CONFLICT (url) DO UPDATE SET etag = EXCLUDED.etag, last_modified = EXCLUDED.last_modified,
                   status = EXCLUDED.status, content_hash = EXCLUDED.content_hash, fetched_at = now()""",
            (url, etag, last_modified, status, content_hash),
        )

    def record_not_modified(self, url: str) -> None:
        self._conn.execute("UPDATE http_cache SET status = 304, fetched_at = now() WHERE url = %s", (url,))
