"""Fine-tuning's external systems: the MLflow store, the artifact store, the base model and the
process that trains (a local subprocess in the Axolotl environment, or an ECS GPU task)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from training.artifacts import ArtifactStore
from training.ecs import EcsTrainingTarget
from training.finetune import PIPES_SCRIPT, TrainingRun
from training.processes import popen_group, stop_group
from twin.errors import TwinError
from twin.settings import Settings


class TrainingResource(dg.ConfigurableResource):
    """Unset fields take the platform's defaults for `twin_home` (Settings.from_env)."""

    twin_home: str
    mlflow_tracking_uri: str | None = None
    artifacts_uri: str | None = None
    base_model: str | None = None
    training_python: str | None = None
    target: str = "local"  # "local" (PipesSubprocessClient) or "ecs" (PipesECSClient)

    def settings(self) -> Settings:
        overrides = {name: value for name, value in (
            ("mlflow_tracking_uri", self.mlflow_tracking_uri), ("artifacts_uri", self.artifacts_uri),
            ("base_model", self.base_model), ("training_python", self.training_python)) if value}
        return dataclasses.replace(Settings.from_env(home=Path(self.twin_home)), **overrides)

    def artifact_store(self, s3: S3Resource) -> ArtifactStore:
        """The dataset store; its S3 client (from the `s3` resource) only when the URI is s3://."""
        settings = self.settings()
        client = s3.get_client() if settings.artifacts_uri.startswith("s3://") else None
        return ArtifactStore(settings.artifacts_uri, settings.home / "artifacts-cache", client)

    def launch(self, context: dg.AssetExecutionContext, run: TrainingRun) -> dg.MaterializeResult:
        """Run training/pipes_axolotl.py through Dagster Pipes; metrics stream back as it trains."""
        if self.target == "ecs":
            from dagster_aws.pipes import PipesECSClient

            target = EcsTrainingTarget.from_settings(self.settings())
            invocation = PipesECSClient().run(
                context=context, run_task_params=target.run_task_params(run.env), extras=run.pipes_extras())
        else:
            python = self.settings().training_python
            if not Path(python).is_file():
                raise TwinError(
                    f"The training environment's Python {python} does not exist.",
                    "Run `make demo` (it creates .venv-train with Axolotl), or set TWIN_TRAINING_PYTHON.",
                )
            invocation = run_pipes_process_group(context, [python, str(PIPES_SCRIPT)], run.env, run.pipes_extras())
        return invocation.get_materialize_result()


class TrainingProcessFailed(Exception):
    """The training process exited non-zero; `reason` is what it reported (or its exit code)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def run_pipes_process_group(context: dg.AssetExecutionContext, command: list[str], env: dict[str, str],
                            extras: dict[str, str]) -> dg.PipesClientCompletedInvocation:
    """PipesSubprocessClient's job, with the process in a group of its own: Terminate in the UI,
    a `dagster/max_runtime` timeout or Ctrl-C kills the whole tree (the Pipes script and the
    Axolotl process it started), and it returns only once every process of the group is gone."""
    with dg.open_pipes_session(context=context, context_injector=dg.PipesTempFileContextInjector(),
                               message_reader=dg.PipesTempFileMessageReader(), extras=extras) as session:
        process = popen_group(command, env={**os.environ, **env, **session.get_bootstrap_env_vars()})
        try:
            code = process.wait()
        except BaseException:  # DagsterExecutionInterruptedError (Terminate, max_runtime), KeyboardInterrupt
            context.log.warning(f"Run interrupted: stopping the training process group {process.pid}.")
            stop_group(process, log=context.log.info)
            raise
        if code != 0:
            reported = [m["failure"] for m in session.get_custom_messages() if isinstance(m, dict) and "failure" in m]
            raise TrainingProcessFailed(reported[-1] if reported else f"the training process exited with code {code}")
    return dg.PipesClientCompletedInvocation(session)
