"""What SQL analysts need from Python: dbt's connection settings, vector literals, the analyst login."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from twin.errors import TwinError

ANALYST_ROLE = "twin_analyst"
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"  # also its profiles.yml


def dbt_executable() -> Path:
    """The dbt of this Python environment (the asset and `twin dbt` run the same one)."""
    return Path(sys.executable).with_name("dbt")


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst session may take from the platform's database (TWIN_ANALYST_*)."""

    connection_limit: int = 4
    statement_timeout: str = "60s"
    idle_in_transaction_timeout: str = "60s"
    lock_timeout: str = "5s"
    work_mem: str = "64MB"
    temp_file_limit: str = "1GB"

    @classmethod
    def from_env(cls) -> AnalystLimits:
        env = os.environ
        return cls(
            connection_limit=int(env.get("TWIN_ANALYST_CONNECTION_LIMIT") or cls.connection_limit),
            statement_timeout=env.get("TWIN_ANALYST_STATEMENT_TIMEOUT") or cls.statement_timeout,
            idle_in_transaction_timeout=env.get("TWIN_ANALYST_IDLE_TIMEOUT") or cls.idle_in_transaction_timeout,
            lock_timeout=env.get("TWIN_ANALYST_LOCK_TIMEOUT") or cls.lock_timeout,
            work_mem=env.get("TWIN_ANALYST_WORK_MEM") or cls.work_mem,
            temp_file_limit=env.get("TWIN_ANALYST_TEMP_FILE_LIMIT") or cls.temp_file_limit,
        )

    def apply(self, conn: psycopg.Connection) -> None:
        role = sql.Identifier(ANALYST_ROLE)
        conn.execute(sql.SQL("ALTER ROLE {} CONNECTION LIMIT {}").format(role, sql.Literal(self.connection_limit)))
        for name, value in (("statement_timeout", self.statement_timeout),
                            ("idle_in_transaction_session_timeout", self.idle_in_transaction_timeout),
                            ("lock_timeout", self.lock_timeout), ("work_mem", self.work_mem),
                            ("temp_file_limit", self.temp_file_limit)):
            try:
                conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(role, sql.Identifier(name), sql.Literal(value)))
            except psycopg.errors.InvalidParameterValue as error:
                raise TwinError(f"{value!r} is not a valid {name} for the analyst: {error}",
                                "correct the TWIN_ANALYST_* variable (e.g. 60s, 64MB).") from error


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


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, e.g. `[0.1,-0.2]`, accepted by `'...'::vector` in psql."""
    return "[" + ",".join(f"{value:.8g}" for value in vector) + "]"


def enable_analyst_login(conn: psycopg.Connection, password: str | None, embedded_home: Path | None,
                         limits: AnalystLimits | None = None) -> str:
    """Let twin_analyst log in with a password, within `limits`; returns the password.

    On an external database the password is TWIN_ANALYST_PASSWORD (required). On the embedded
    server (`embedded_home` = TWIN_HOME) it is TWIN_ANALYST_PASSWORD when set, else one generated
    and kept under TWIN_HOME (mode 0600): every login there needs a password (SCRAM).
    """
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (ANALYST_ROLE,)).fetchone()
    if exists is None:
        raise TwinError(
            f"The role {ANALYST_ROLE} does not exist (the platform's user may not create roles).",
            f"ask the DBA to run CREATE ROLE {ANALYST_ROLE} NOLOGIN, then re-run the grants at the "
            "end of sql/migrations/005_analyst_role.sql.",
        )
    if not password and embedded_home is None:
        raise TwinError(
            "TWIN_ANALYST_PASSWORD is not set, and an external database needs a password for the analyst.",
            "export TWIN_ANALYST_PASSWORD=... and run the command again.",
        )
    if not password:
        from twin.database import embedded_password

        password = embedded_password(embedded_home, ANALYST_ROLE)  # type: ignore[arg-type]
    conn.execute("SET password_encryption = 'scram-sha-256'")
    conn.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(ANALYST_ROLE), sql.Literal(password)))
    (limits or AnalystLimits.from_env()).apply(conn)
    return password


def analyst_url(url: str, password: str | None = None) -> str:
    """The platform URL with the analyst as user, and `password` when given (without one, psql
    asks, or reads PGPASSWORD)."""
    parts = conninfo_to_dict(url)
    parts.pop("password", None)
    parts["user"] = ANALYST_ROLE
    host = str(parts.pop("host", "") or "")
    port = parts.pop("port", None)
    dbname = parts.pop("dbname", "postgres")
    netloc = ANALYST_ROLE + (f":{quote(password, safe='')}" if password else "") + "@"
    query = []
    if host.startswith("/"):
        query.append(f"host={host}")
    else:
        netloc += host + (f":{port}" if port else "")
    parts.pop("user")
    query += [f"{key}={value}" for key, value in parts.items()]
    return f"postgresql://{netloc}/{dbname}" + (f"?{'&'.join(query)}" if query else "")
