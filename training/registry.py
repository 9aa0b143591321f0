"""The MLflow model registry: one registered model per twin, aliases `challenger` and `champion`.

Serving asks `resolve_serving_model` which folder to load; until a twin has a champion it gets
the base model.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from twin.base_model import base_model_location
from twin.errors import TwinError
from twin.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"
EXPERIMENT_PREFIX = "twin-"
MODEL_PREFIX = "twin-"  # each twin's registered model is `twin-<slug>`


def registered_model_name(twin: str) -> str:
    return f"{MODEL_PREFIX}{twin}"


def twin_of_model(name: str) -> str:
    """The twin slug in a registered model name (`twin-<slug>` -> `<slug>`); other names unchanged."""
    return name.removeprefix(MODEL_PREFIX)


def experiment_name(twin: str) -> str:
    return f"{EXPERIMENT_PREFIX}{twin}"


def configure_mlflow(settings: Settings):  # -> mlflow.MlflowClient (mlflow imported lazily)
    """Point MLflow at the configured store and check that it answers.

    The embedded default is a sqlite database under TWIN_HOME with local artifacts."""
    import mlflow
    from mlflow import MlflowClient

    uri = settings.mlflow_tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        client.search_experiments(max_results=1)
    except Exception as error:  # a network error, a locked or corrupt sqlite file, a bad URI
        raise TwinError(
            f"The MLflow tracking store at {uri} is not available ({type(error).__name__}: {error}).",
            "Start the MLflow server MLFLOW_TRACKING_URI points at, or unset MLFLOW_TRACKING_URI "
            "to use the embedded store under TWIN_HOME.",
        ) from error
    return client


# What MLflow's UI opens an experiment on: the runs table for training, traces for serving.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_EXPERIMENT = "custom_model_development"
TRACES_EXPERIMENT = "genai_development"


def ensure_experiment(client, settings: Settings, twin: str) -> str:
    """The twin's experiment id."""
    return experiment_id(client, settings, experiment_name(twin))


def experiment_id(client, settings: Settings, name: str, kind: str = TRAINING_EXPERIMENT) -> str:
    """An experiment's id, created when missing; with the embedded store its artifacts go under
    TWIN_HOME/mlflow/artifacts (MLflow's own default is ./mlruns in the working directory)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # made before the kind was set
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, kind)
        return experiment.experiment_id
    location = None
    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        location = str(settings.mlflow_artifacts_dir / name.removeprefix(EXPERIMENT_PREFIX))
    return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: kind})


def mlflow_ui_url(settings: Settings) -> str:
    """Where a browser finds the MLflow UI: the tracking server itself, or `twin mlflow-ui`."""
    uri = settings.mlflow_tracking_uri
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return settings.mlflow_ui_url


def run_url(settings: Settings, experiment: str, run_id: str) -> str:
    return f"{mlflow_ui_url(settings)}/#/experiments/{experiment}/runs/{run_id}"


def run_link(settings: Settings, run_id: str) -> str:
    """The MLflow UI page of a run (its experiment looked up in the tracking store)."""
    return run_url(settings, configure_mlflow(settings).get_run(run_id).info.experiment_id, run_id)


def model_version_url(settings: Settings, name: str, version: int | str) -> str:
    return f"{mlflow_ui_url(settings)}/#/models/{name}/versions/{version}"


def alias_version(client, twin: str, alias: str):  # -> ModelVersion | None
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(registered_model_name(twin), alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


@dataclass(frozen=True)
class ServingModel:
    """A model folder to load, and what to call it in responses and prompt logs."""

    path: str
    name: str
    version: str | None  # the registry version; None for the base model
    alias: str | None  # "champion"; None for the base model


def resolve_serving_model(settings: Settings, twin: str | None) -> ServingModel:
    """The twin's champion (its merged model folder), or the base model when it has none."""
    if twin:
        client = configure_mlflow(settings)
        version = alias_version(client, twin, CHAMPION)
        if version is not None:
            path = local_model_folder(settings, version.source, registered_model_name(twin), str(version.version))
            return ServingModel(str(path), registered_model_name(twin), str(version.version), CHAMPION)
    base = base_model_location(settings)
    return ServingModel(base, Path(base).name, None, None)


def local_model_folder(settings: Settings, source: str, name: str, version: str) -> Path:
    """A local folder for a model version's files: the artifact folder itself when the store is
    local, otherwise a copy downloaded once into TWIN_HOME/models/registry."""
    parts = urlsplit(source)
    if parts.scheme in ("", "file"):
        folder = checkpoint_folder(Path(parts.path if parts.scheme else source))
        if not (folder / "config.json").is_file():
            raise TwinError(
                f"Model {name} version {version} points at {folder}, which holds no model.",
                "Its artifacts were deleted; train again (`twin train`) or move the alias to another version.",
            )
        return folder
    import mlflow

    target = settings.models_dir / "registry" / name / f"v{version}"
    if (checkpoint_folder(target) / "config.json").is_file():
        return checkpoint_folder(target)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(partial)))
    target.parent.mkdir(parents=True, exist_ok=True)
    downloaded.rename(target)
    shutil.rmtree(partial, ignore_errors=True)
    return checkpoint_folder(target)


def checkpoint_folder(folder: Path) -> Path:
    """The Hugging Face checkpoint of a model version: the pyfunc model's `artifacts/model`
    named in its MLmodel (training/pyfunc_model.py), or the folder itself (versions registered as a plain checkpoint)."""
    import yaml

    if not (folder / "MLmodel").is_file():
        return folder
    flavor = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))["flavors"]["python_function"]
    return folder / flavor["artifacts"]["model"]["path"]


@dataclass(frozen=True)
class Rollback:
    registered_model: str
    from_version: int
    to_version: int | None  # None: no champion left, serving answers with the base model


def rollback_champion(client, conn, twin: str, to_version: int | None = None) -> Rollback:  # noqa: ANN001
    """Move `champion` back to the version it replaced (or to `to_version`), recorded in
    `promotions` as kind 'rollback'. Serving picks the alias up within TWIN_MODEL_CHECK_SECONDS."""
    name = registered_model_name(twin)
    current = alias_version(client, twin, CHAMPION)
    if current is None:
        raise TwinError(f"{name} has no champion to roll back.", f"see `twin models --twin {twin}`.")
    current_version = int(current.version)
    if to_version is None:
        row = conn.execute(
            """SELECT previous_version FROM promotions WHERE registered_model = %s AND version = %s
               AND kind = 'promotion' ORDER BY id DESC LIMIT 1""", (name, current_version)).fetchone()
        if row is None:
            raise TwinError(f"{name} v{current_version} has no recorded promotion to undo.",
                            f"name the version: `twin rollback --twin {twin} --to N`.")
        to_version = row[0]
    if to_version == current_version:
        raise TwinError(f"{name} v{to_version} is already the champion.", "name another version with --to.")
    with conn.transaction():
        if to_version is None:
            client.delete_registered_model_alias(name, CHAMPION)
        else:
            _require_version(client, name, to_version, twin)
            conn.execute(
                "INSERT INTO promotions (registered_model, version, twin, previous_version, kind) "
                "VALUES (%s, %s, %s, %s, 'rollback')", (name, to_version, twin, current_version))
            client.set_registered_model_alias(name, CHAMPION, str(to_version))
    return Rollback(name, current_version, to_version)


def _require_version(client, name: str, version: int, twin: str) -> None:  # noqa: ANN001
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, str(version))
    except MlflowException as error:
        raise TwinError(f"{name} has no version {version} in the MLflow registry.",
                        f"pick one of `twin models --twin {twin}`.") from error
