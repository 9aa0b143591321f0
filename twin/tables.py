"""What a twin's rows in a pipeline table look like: count, columns and first rows, for the
metadata assets report (assets/metadata.py renders them)."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

PREVIEW_ROWS = 5

# The first rows a table asset shows, per table: the newest or most readable first.
_PREVIEWS = {
    "raw_documents": """SELECT category, title, published_at, url FROM raw_documents WHERE twin = %s
                        ORDER BY published_at DESC NULLS LAST, url""",
    "cleaned_documents": """SELECT category, title, length(content) AS characters, left(content, 120) AS text
                            FROM cleaned_documents WHERE twin = %s ORDER BY cleaned_at DESC, document_id""",
    "chunks": """SELECT category, title, position, token_count, text FROM chunks WHERE twin = %s
                 ORDER BY document_id, position""",
}


@dataclass(frozen=True)
class Rows:
    columns: list[str]
    rows: list[tuple]


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    comment: str | None


def preview_rows(conn: psycopg.Connection, table: str, twin: str, limit: int = PREVIEW_ROWS) -> Rows:
    """The first `limit` rows of the twin in `table`, in the order its preview shows them."""
    cursor = conn.execute(_PREVIEWS[table], (twin,))
    return Rows([column.name for column in cursor.description or []], cursor.fetchmany(limit))


def row_count(conn: psycopg.Connection, table: str, twin: str) -> int:
    if table not in _PREVIEWS:
        raise ValueError(f"{table!r} is not a pipeline table")  # the name goes into the SQL text
    return int(conn.execute(f"SELECT count(*) FROM {table} WHERE twin = %s", (twin,)).fetchone()[0])


def table_columns(conn: psycopg.Connection, table: str) -> list[Column]:
    """The table's columns as the database has them, with their comments."""
    rows = conn.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, col_description(a.attrelid, a.attnum)
           FROM pg_attribute a WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
           ORDER BY a.attnum""",
        (f"public.{table}",),
    ).fetchall()
    return [Column(*row) for row in rows]
