"""One fine-tuning run, before and after the Axolotl process: the MLflow run, its inputs, the
Axolotl YAML and environment, then (only after the process succeeded) the artifacts, the
registered model version with alias `challenger`, and the `model_versions` row.

A run that dies midway leaves its MLflow run FAILED (or KILLED when it was stopped: Terminate, a
run timeout) with the reason in its `failure_reason` tag, and no model version: registration is
the last step, and a failure inside it deletes the version it made.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg

from training.axolotl_config import TrainingProfile, axolotl_config, write_config
from training.dataset_versions import DatasetVersion
from training.registry import CHALLENGER, configure_mlflow, ensure_experiment, registered_model_name
from twin.errors import TwinError
from twin.persona import persona_system
from twin.settings import Settings

PIPES_SCRIPT = Path(__file__).with_name("pipes_axolotl.py")
PYFUNC_MODEL = Path(__file__).with_name("pyfunc_model.py")
MODEL_ARTIFACT = "model"  # the run's artifact folder holding the pyfunc model (weights in artifacts/model)
TRAINING_ENV = {
    "AXOLOTL_DO_NOT_TRACK": "1", "DO_NOT_TRACK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_DISABLED": "true",
}


@dataclass(frozen=True)
class TrainingRun:
    twin: str
    run_id: str
    profile: TrainingProfile
    base_model: str
    dataset: DatasetVersion
    config_path: Path
    output_dir: Path  # the adapter
    merged_dir: Path
    env: dict[str, str]

    def pipes_extras(self) -> dict[str, str]:
        return {"config_path": str(self.config_path), "output_dir": str(self.output_dir),
                "merged_dir": str(self.merged_dir), "base_model": self.base_model}


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: int
    run_id: str
    source: str


def training_signature(profile: TrainingProfile, base_model: str) -> str:
    """What decides whether a dataset version was already trained with these settings."""
    return json.dumps({"profile": profile.params(), "base_model": base_model}, sort_keys=True)


def already_trained(conn: psycopg.Connection, twin: str, dataset_fingerprint: str, profile: TrainingProfile, base_model: str) -> int | None:
    """The version already trained on this dataset with these settings, if any (then: nothing to do)."""
    row = conn.execute(
        """SELECT version FROM model_versions WHERE twin = %s AND dataset_fingerprint = %s
               AND training_signature = %s ORDER BY version DESC LIMIT 1""",
        (twin, dataset_fingerprint, training_signature(profile, base_model)),
    ).fetchone()
    return row[0] if row else None


def start_training_run(settings: Settings, twin: str, dataset: DatasetVersion, profile: TrainingProfile, base_model: str) -> TrainingRun:
    import mlflow
    import pandas as pd

    client = configure_mlflow(settings)
    experiment_id = ensure_experiment(client, settings, twin)
    run = client.create_run(experiment_id, run_name=f"{twin}-{dataset.short}-{profile.name}",
                            tags={"twin": twin, "dataset_fingerprint": dataset.fingerprint, "profile": profile.name})
    run_id = run.info.run_id
    with mlflow.start_run(run_id=run_id):
        mlflow.log_params({"base_model": base_model, "dataset_fingerprint": dataset.fingerprint,
                           "dataset_uri": dataset.uri, "train_rows": dataset.train_rows,
                           **{f"profile.{k}": v for k, v in profile.params().items()}})
        frame = pd.read_parquet(dataset.local_dir / "train.parquet", columns=["instruction", "output", "document_id"])
        with warnings.catch_warnings():  # schema hints about integer columns; the source is a local folder
            warnings.simplefilter("ignore", UserWarning)
            source = mlflow.data.from_pandas(frame, source=dataset.uri, name=f"{twin}-instruct-{dataset.short}",
                                             digest=dataset.short)
            mlflow.log_input(source, context="training")
    mlflow.end_run()
    folder = settings.models_dir / "runs" / run_id
    config = axolotl_config(
        profile=profile, base_model=base_model, train_file=dataset.local_dir / "train.parquet",
        output_dir=folder / "adapter", prepared_dir=folder / "prepared",
        mlflow_tracking_uri=settings.mlflow_tracking_uri, mlflow_experiment=client.get_experiment(experiment_id).name,
        run_name=run.info.run_name,
    )
    config_path = write_config(config, folder / "axolotl.yml")
    client.log_artifact(run_id, str(config_path), "config")
    env = {**TRAINING_ENV, "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri, "MLFLOW_RUN_ID": run_id}
    return TrainingRun(twin, run_id, profile, base_model, dataset, config_path, folder / "adapter", folder / "merged", env)


FAILURE_REASON_TAG = "failure_reason"
MLFLOW_TAG_LIMIT = 5000  # characters MLflow keeps in a tag value


def fail_training_run(settings: Settings, run: TrainingRun, reason: str, status: str = "FAILED") -> str:
    """Drop the run's half-written files and end the MLflow run FAILED or KILLED with its reason;
    nothing was registered. Called after the training process tree is gone, so nothing ends it
    later. Returns what the caller's error should add ("" when MLflow recorded the end): when MLflow
    is down too, the original error must not be lost to a second one."""
    shutil.rmtree(run.merged_dir, ignore_errors=True)
    shutil.rmtree(run.merged_dir.with_name(run.merged_dir.name + ".partial"), ignore_errors=True)
    try:
        client = configure_mlflow(settings)
        client.set_tag(run.run_id, FAILURE_REASON_TAG, reason[:MLFLOW_TAG_LIMIT])
        client.set_terminated(run.run_id, status=status)
    except TwinError as error:
        return (f" MLflow could not record the failure either ({error.message}); its run {run.run_id} stays "
                f"RUNNING until you end it (`mlflow runs delete --run-id {run.run_id}` once MLflow is back) "
                "and train again.")
    return ""


def save_pyfunc_model(path: Path, merged_dir: Path, author: str) -> Path:
    """The merged checkpoint as an MLflow pyfunc model (training/pyfunc_model.py) with a signature
    and an input example, so MLflow's own tools load and serve it."""
    import mlflow
    import pandas as pd
    import torch
    import transformers
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    shutil.rmtree(path, ignore_errors=True)
    signature = ModelSignature(inputs=Schema([ColSpec("string", "question")]), outputs=Schema([ColSpec("string")]),
                               params=ParamSchema([ParamSpec("max_new_tokens", "long", 128)]))
    example = pd.DataFrame({"question": [f"What do you write about, {author}?"]})
    mlflow.pyfunc.save_model(
        path=str(path), python_model=str(PYFUNC_MODEL), artifacts={"model": str(merged_dir)},
        signature=signature, input_example=(example, {"max_new_tokens": 32}),
        model_config={"system_prompt": persona_system(author)},
        pip_requirements=[f"mlflow=={mlflow.__version__}", f"torch=={torch.__version__.split('+')[0]}",
                          f"transformers=={transformers.__version__}", "pandas"])
    return path


def register_trained_model(settings: Settings, conn: psycopg.Connection, run: TrainingRun, metrics: dict[str, float]) -> RegisteredVersion:
    """Log the adapter and merged model, register a version with alias `challenger`, record it."""
    from mlflow.exceptions import MlflowException

    client = configure_mlflow(settings)
    name = registered_model_name(run.twin)
    for key, value in metrics.items():
        client.log_metric(run.run_id, key, float(value))
    client.log_artifacts(run.run_id, str(run.output_dir), "adapter")
    row = conn.execute("SELECT name FROM twins WHERE slug = %s", (run.twin,)).fetchone()
    model_dir = save_pyfunc_model(run.config_path.parent / "mlflow_model", run.merged_dir, row[0] if row else run.twin)
    client.log_artifacts(run.run_id, str(model_dir), MODEL_ARTIFACT)
    source = f"{client.get_run(run.run_id).info.artifact_uri}/{MODEL_ARTIFACT}"
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"LoRA fine-tunes of {run.base_model} on {run.twin}'s writing.")
    version = client.create_model_version(
        name, source=source, run_id=run.run_id,
        tags={"dataset_fingerprint": run.dataset.fingerprint, "profile": run.profile.name, "base_model": run.base_model},
    )
    try:
        client.set_registered_model_alias(name, CHALLENGER, version.version)
        with conn.transaction():
            conn.execute(
                """INSERT INTO model_versions (registered_model, version, twin, mlflow_run_id, dataset_fingerprint,
                       base_model, profile, training_signature, train_steps, train_loss, train_seconds, model_uri)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (name, int(version.version), run.twin, run.run_id, run.dataset.fingerprint, run.base_model,
                 run.profile.name, training_signature(run.profile, run.base_model), int(metrics.get("train_steps", 0)),
                 metrics.get("train_loss"), float(metrics.get("train_seconds", 0.0)), f"models:/{name}/{version.version}"),
            )
    except Exception:
        client.delete_model_version(name, version.version)
        raise
    client.set_terminated(run.run_id, status="FINISHED")
    shutil.rmtree(run.merged_dir, ignore_errors=True)  # the registry's copy is the one that is served
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.rmtree(run.config_path.parent / "prepared", ignore_errors=True)
    return RegisteredVersion(name, int(version.version), run.run_id, source)
