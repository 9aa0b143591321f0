"""`twin db-url`, `analyst-url`, `dbt`, `db-stop` and `embedding-dim`: the database itself."""

from __future__ import annotations

from orchestration.cli.common import platform_database
from twin.database import embedded_postgres_dir, stop_embedded_postgres
from twin.embedding_column import set_embedding_column_dimension
from twin.errors import TwinError
from twin.settings import Settings

HNSW_MAX_DIMENSIONS = 2_000


def db_url(settings: Settings) -> int:
    """A URL psql accepts; the schema is migrated first, so psql sees it."""
    print(platform_database(settings).url)
    return 0


def analyst_url(settings: Settings) -> int:
    from twin.analyst import analyst_url as url_for_analyst
    from twin.analyst import enable_analyst_login

    database = platform_database(settings)
    given = settings.analyst_password
    with database.connect() as conn:
        password = enable_analyst_login(conn, given, None if settings.database_url else settings.home,
                                        settings.analyst_limits)
    # a password of your own stays out of the printed URL; the embedded server's generated one is in it
    print(url_for_analyst(database.url, None if given else password))
    return 0


def dbt(settings: Settings, dbt_args: list[str]) -> int:
    """dbt on dbt_project/; migrated first, so the analytics schema and the analyst role exist."""
    from twin.dbt import run_dbt

    url = platform_database(settings).url  # this process holds the embedded server while dbt runs
    return run_dbt(dbt_args or ["build"], url).returncode


def db_stop(settings: Settings) -> int:
    if settings.database_url:
        raise TwinError("DATABASE_URL is set: the platform does not manage that server.",
                        "stop it with its own tools, or unset DATABASE_URL.")
    stopped = stop_embedded_postgres(embedded_postgres_dir(settings.home))
    print("stopped" if stopped else "not running")
    return 0


def embedding_dim(settings: Settings, dimension: int) -> int:
    if not 1 <= dimension <= HNSW_MAX_DIMENSIONS:
        raise TwinError(
            f"Dimension {dimension} is out of range: pgvector's HNSW index over vector(n) takes at most "
            f"{HNSW_MAX_DIMENSIONS:,} dimensions.",
            f"use a model of at most {HNSW_MAX_DIMENSIONS:,} dimensions (or one that can truncate its "
            "embeddings, e.g. Matryoshka models, to 1024).")
    with platform_database(settings).connect() as conn:
        set_embedding_column_dimension(conn, dimension)
    print(f"chunks.embedding is now vector({dimension}); run `twin materialize` to re-embed")
    return 0
