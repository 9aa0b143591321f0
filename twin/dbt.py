"""The one way to launch dbt on dbt_project/: this environment's dbt executable, the project
folder (it holds profiles.yml too) and the variables dbt runs with. Dagster's dbt assets
(assets/marts.py), `twin dbt` and `make dbt-manifest` (`python -m twin.dbt parse`) all use it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
DBT_EXECUTABLE = Path(sys.executable).with_name("dbt")  # this environment's, whether or not it is on PATH


def dbt_environment(url: str | None = None) -> dict[str, str]:
    """What dbt runs with: no usage statistics sent (it runs offline), and for a platform database
    URL the TWIN_DBT_* variables dbt_project/profiles.yml reads (for the embedded server the host
    is the socket folder from the URL)."""
    variables = {"DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if url is None:
        return variables
    parts = conninfo_to_dict(url)
    return {
        "TWIN_DBT_HOST": str(parts.get("host") or "localhost"),
        "TWIN_DBT_PORT": str(parts.get("port") or "5432"),
        "TWIN_DBT_USER": str(parts.get("user") or "postgres"),
        "TWIN_DBT_PASSWORD": str(parts.get("password") or ""),
        "TWIN_DBT_DBNAME": str(parts.get("dbname") or "postgres"),
        **variables,
    }


def dbt_command(args: Sequence[str], project_dir: Path = DBT_PROJECT_DIR) -> list[str]:
    return [str(DBT_EXECUTABLE), *args, "--project-dir", str(project_dir), "--profiles-dir", str(project_dir)]


def run_dbt(args: Sequence[str], url: str | None = None, project_dir: Path = DBT_PROJECT_DIR,
            capture: bool = False) -> subprocess.CompletedProcess[str]:
    """dbt `args` on the project, connected to the database at `url` (None: no connection, e.g. parse)."""
    return subprocess.run(dbt_command(args, project_dir), env={**os.environ, **dbt_environment(url)},
                          capture_output=capture, text=True)


@contextmanager
def dbt_connection_env(url: str) -> Iterator[None]:
    """dbt_environment(url) in os.environ for the duration, for launchers that copy os.environ
    when they start dbt (dagster-dbt's DbtCliResource takes no environment of its own)."""
    variables = dbt_environment(url)
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


if __name__ == "__main__":  # `make dbt-manifest`
    raise SystemExit(run_dbt(sys.argv[1:]).returncode)
