"""The platform's PostgreSQL (+ pgvector): external when database_url is set, embedded otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import psycopg

from twin.database import Database


class PostgresResource(dg.ConfigurableResource):
    """The run's `Database`; the schema is migrated before the first connection an asset gets."""

    twin_home: str
    database_url: str | None = None

    def database(self) -> Database:
        """Migrated (once per process and URL): the assets are an entry point like the CLI."""
        database = Database(self.database_url, home=Path(self.twin_home))
        database.ensure_schema()
        return database

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = self.database().connect()
        try:
            yield conn
        finally:
            conn.close()
