"""What SQL analysts need from Python: dbt's connection settings, query vectors, the analyst login."""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from twin.cleaning import clean_prose
from twin.embedding import Embedder
from twin.errors import TwinError

ANALYST_ROLE = "twin_analyst"


def dbt_environment(url: str) -> dict[str, str]:
    """TWIN_DBT_* variables for dbt_project/profiles.yml from a platform database URL.

    For the embedded server the host is the socket folder from the URL.
    """
    parts = conninfo_to_dict(url)
    return {
        "TWIN_DBT_HOST": str(parts.get("host") or "localhost"),
        "TWIN_DBT_PORT": str(parts.get("port") or "5432"),
        "TWIN_DBT_USER": str(parts.get("user") or "postgres"),
        "TWIN_DBT_PASSWORD": str(parts.get("password") or ""),
        "TWIN_DBT_DBNAME": str(parts.get("dbname") or "postgres"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def query_embedding(embedder: Embedder, text: str) -> list[float]:
    """The vector `twin search` would use for `text`: same cleaning, same model."""
    cleaned = clean_prose(text)
    if not cleaned:
        raise TwinError("The text to embed is empty.", 'pass some words, e.g. twin embed "postgres bloat".')
    return [float(value) for value in embedder.encode([cleaned])[0]]


def vector_literal(vector: list[float]) -> str:
    """pgvector's text form, e.g. `[0.1,-0.2]`, accepted by `'...'::vector` in psql."""
    return "[" + ",".join(f"{value:.8g}" for value in vector) + "]"


def enable_analyst_login(conn: psycopg.Connection, password: str | None, embedded: bool) -> None:
    """Let twin_analyst log in: with `password`, or without one on the embedded server only.

    The embedded server listens on a Unix socket of this machine only, with trust authentication.
    """
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ANALYST_ROLE,)).fetchone()
    if exists is None:
        raise TwinError(
            f"The role {ANALYST_ROLE} does not exist (the platform's user may not create roles).",
            f"ask the DBA to run CREATE ROLE {ANALYST_ROLE} NOLOGIN, then re-run the grants at the "
            "end of sql/migrations/005_analyst_role.sql.",
        )
    if password:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(ANALYST_ROLE), sql.Literal(password)))
    elif embedded:
        conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD NULL").format(sql.Identifier(ANALYST_ROLE)))
    else:
        raise TwinError(
            "TWIN_ANALYST_PASSWORD is not set, and an external database needs a password for the analyst.",
            "export TWIN_ANALYST_PASSWORD=... and run the command again.",
        )


def analyst_url(url: str) -> str:
    """The platform URL with the analyst as user and no password (psql asks, or reads PGPASSWORD)."""
    parts = conninfo_to_dict(url)
    parts.pop("password", None)
    parts["user"] = ANALYST_ROLE
    host = str(parts.pop("host", "") or "")
    port = parts.pop("port", None)
    dbname = parts.pop("dbname", "postgres")
    netloc = f"{ANALYST_ROLE}@"
    query = []
    if host.startswith("/"):
        query.append(f"host={host}")
    else:
        netloc += host + (f":{port}" if port else "")
    parts.pop("user")
    query += [f"{key}={value}" for key, value in parts.items()]
    return f"postgresql://{netloc}/{dbname}" + (f"?{'&'.join(query)}" if query else "")
