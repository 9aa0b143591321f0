"""The platform's PostgreSQL (+ pgvector): external when database_url is set, embedded otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from twin.database import connect, resolve_database_url


class PostgresResource(dg.ConfigurableResource):
    """Connections with the schema migrated and pgvector registered."""

    twin_home: str
    database_url: str | None = None

    def url(self) -> str:
        return resolve_database_url(self.database_url, Path(self.twin_home))

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = connect(self.url())
        try:
            yield conn
        finally:
            conn.close()
