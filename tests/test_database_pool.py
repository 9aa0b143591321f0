"""Database's connection pool across a server that ended its sessions (a restart, an admin's
pg_terminate_backend): the next block gets a working connection, not the dead pooled one."""

from __future__ import annotations

import psycopg

from twin.database import Database


def test_a_pooled_connection_the_server_ended_is_replaced_not_handed_out(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with database.connection() as conn:
        pid = conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:  # what a Postgres restart does to every session
        assert admin.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,)).fetchone()[0]
    try:
        with database.connection() as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1
            assert conn.info.backend_pid != pid
    finally:
        database.close()
