"""`twin serve`, `ui` and `mlflow-ui`: the long-running processes a command hands over to."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from orchestration.cli.common import REPO_ROOT
from twin.settings import Settings

Role = Literal["all", "model", "rag"]

# `dagster dev` is superseded by `dg dev`, which wants a `dg` project layout this repository does
# not have; Dagster's documented way to hide a lifecycle warning is a warnings filter on it.
DEV_HINT_FILTER = "ignore:Function `dev_command` is superseded:FutureWarning"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000, role: Role = "all") -> int:
    from serving.server import serve as run_server

    run_server(settings, host, port, role)
    return 0


def mlflow_ui(settings: Settings, port: int = 5000) -> int:
    from serving.monitoring import TRACE_EXPERIMENT
    from training.registry import EXPERIMENT_PREFIX, configure_mlflow, ensure_experiment

    client = configure_mlflow(settings)
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
               "--host", "127.0.0.1", "--port", str(port)]
    print(f"MLflow UI on {url} (store {settings.mlflow_tracking_uri}); Ctrl-C stops it")
    experiments = [e for e in client.search_experiments() if e.name.startswith(EXPERIMENT_PREFIX)
                   and e.name != TRACE_EXPERIMENT]
    for experiment in experiments:  # tags the older ones too, so each opens on its runs table
        ensure_experiment(client, settings, experiment.name.removeprefix(EXPERIMENT_PREFIX))
        print(f"  {experiment.name} runs: {url}/#/experiments/{experiment.experiment_id}/runs")
    print(f"  registered models: {url}/#/models")
    os.execvp(command[0], command)
    return 0


def ui_command(settings: Settings, port: str) -> tuple[list[str], dict[str, str]]:
    """The `dagster dev` command line and environment: absolute paths everywhere, so the code
    server and run workers (other processes, another working directory) find the same TWIN_HOME
    and training environment as this command did."""
    from orchestration.runs import prepare_dagster_home

    home = prepare_dagster_home(settings)
    workspace = REPO_ROOT / "workspace.yaml"
    env = {**os.environ, "TWIN_HOME": str(settings.home), "DAGSTER_HOME": str(home),
           "TWIN_TRAINING_PYTHON": settings.training_python,
           # dagster-dbt parses the dbt project on each load under `dagster dev`, with the `dbt` on PATH
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return [sys.executable, "-W", DEV_HINT_FILTER, "-m", "dagster", "dev", "-w", str(workspace), "-p", port], env


def ui(settings: Settings, port: str = "3000") -> int:
    python = Path(settings.training_python)
    if not python.exists():
        print(f"warning: the training environment's Python {python} does not exist; training runs will fail "
              "(run `make demo`, or set TWIN_TRAINING_PYTHON)", file=sys.stderr)
    command, env = ui_command(settings, port)
    os.execve(command[0], command, env)
