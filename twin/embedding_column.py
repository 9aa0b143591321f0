"""The chunks.embedding vector(n) column: its dimension, and resizing it for another model."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from twin.database import quote_literal
from twin.errors import TwinError
from twin.maintenance import VECTOR_INDEX_SQL


def embedding_column_dimension(conn: psycopg.Connection) -> int:
    """The dimension `n` of the chunks.embedding vector(n) column."""
    row = conn.execute(
        """SELECT atttypmod FROM pg_attribute
           WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'"""
    ).fetchone()
    assert row is not None, "chunks.embedding is missing: migrations did not run"
    return int(row[0])


def set_embedding_column_dimension(conn: psycopg.Connection, dimension: int) -> None:
    """Change chunks.embedding to vector(dimension); existing vectors are dropped (re-embed after)."""
    with conn.transaction():
        views = _views_on_embedding(conn)  # analyst and dbt views: Postgres refuses to retype under them
        for view in reversed(views):
            conn.execute(f"DROP VIEW {view.name}")
        conn.execute("DROP INDEX IF EXISTS chunks_embedding_hnsw")
        conn.execute(
            f"ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({int(dimension)}) USING NULL"
        )
        conn.execute("UPDATE chunks SET embedding_model = NULL, embedded_at = NULL")
        conn.execute(VECTOR_INDEX_SQL)
        for view in views:
            view.recreate(conn)


@dataclass(frozen=True)
class _SavedView:
    """A view over chunks.embedding, kept to be re-created (with its comment, owner and grants)."""

    name: str  # quoted schema.name
    definition: str
    comment: str | None
    owner: str
    grants: list[tuple[str, str]]  # (grantee or PUBLIC, privilege)

    def recreate(self, conn: psycopg.Connection) -> None:
        conn.execute(f"CREATE VIEW {self.name} AS {self.definition}")
        if self.comment is not None:
            conn.execute(f"COMMENT ON VIEW {self.name} IS {quote_literal(self.comment)}")
        if conn.execute("SELECT current_user").fetchone()[0] != self.owner:
            conn.execute(f'ALTER VIEW {self.name} OWNER TO "{self.owner}"')
        for grantee, privilege in self.grants:
            conn.execute(f"GRANT {privilege} ON {self.name} TO {grantee}")


def _views_on_embedding(conn: psycopg.Connection) -> list[_SavedView]:
    """Every view that reads chunks.embedding, directly or through another view, in creation order."""
    rows = conn.execute(
        """WITH RECURSIVE dependents(oid, depth) AS (
               SELECT r.ev_class, 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
               WHERE d.refobjid = 'chunks'::regclass AND r.ev_class <> 'chunks'::regclass
                 AND d.refobjsubid = (SELECT attnum FROM pg_attribute
                                      WHERE attrelid = 'chunks'::regclass AND attname = 'embedding')
               UNION
               SELECT r.ev_class, dependents.depth + 1 FROM dependents
               JOIN pg_depend d ON d.refobjid = dependents.oid
               JOIN pg_rewrite r ON r.oid = d.objid
               WHERE r.ev_class <> dependents.oid AND dependents.depth < 20)
           SELECT c.oid, format('%I.%I', n.nspname, c.relname), c.relkind, pg_get_viewdef(c.oid),
                  obj_description(c.oid, 'pg_class'), pg_get_userbyid(c.relowner), max(depth)
           FROM dependents JOIN pg_class c ON c.oid = dependents.oid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           GROUP BY c.oid, n.nspname, c.relname ORDER BY max(depth), 2"""
    ).fetchall()
    views = []
    for oid, name, kind, definition, comment, owner, _ in rows:
        if kind != "v":
            raise TwinError(
                f"{name} (a materialized view) reads chunks.embedding, so its type cannot change.",
                f"drop {name}, run the command again, then re-create it.",
            )
        grants = conn.execute(
            """SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE format('%%I', pg_get_userbyid(a.grantee)) END,
                      a.privilege_type
               FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s AND a.grantee <> c.relowner""",
            (oid,),
        ).fetchall()
        views.append(_SavedView(name, definition, comment, owner, grants))
    return views
