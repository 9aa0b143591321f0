"""Platform configuration, read from environment variables; every value has a laptop default."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from twin.errors import TwinError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MAX_DOCUMENT_BYTES = 1_000_000
DEFAULT_LAG_LIMIT_SECONDS = 3600.0  # the oldest document waiting in the feature pipeline


@dataclass(frozen=True)
class Settings:
    """Where state lives and which models and databases the platform uses."""

    home: Path
    database_url: str | None
    embedding_model: str
    max_document_bytes: int
    mlflow_tracking_uri: str
    artifacts_uri: str
    base_model: str | None
    training_python: str
    lag_limit_seconds: float = DEFAULT_LAG_LIMIT_SECONDS

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("TWIN_HOME") or Path.cwd() / ".twin").expanduser().resolve()
        return cls(
            home=home,
            database_url=os.environ.get("DATABASE_URL") or None,
            embedding_model=os.environ.get("TWIN_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            max_document_bytes=int(
                os.environ.get("TWIN_MAX_DOCUMENT_BYTES") or DEFAULT_MAX_DOCUMENT_BYTES
            ),
            mlflow_tracking_uri=os.environ.get("MLFLOW_TRACKING_URI")
            or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            artifacts_uri=os.environ.get("TWIN_ARTIFACTS_URI") or str(home / "artifacts"),
            base_model=os.environ.get("TWIN_BASE_MODEL") or None,
            training_python=str(_training_python(os.environ.get("TWIN_TRAINING_PYTHON"))),
            lag_limit_seconds=_positive_seconds("TWIN_LAG_LIMIT_SECONDS", DEFAULT_LAG_LIMIT_SECONDS),
        )

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        """Where the embedded MLflow store keeps run artifacts (models, datasets, reports)."""
        return self.home / "mlflow" / "artifacts"

    @property
    def models_dir(self) -> Path:
        """Models the platform makes locally: the base model folder, adapters, merged models."""
        return self.home / "models"


def _positive_seconds(name: str, default: float) -> float:
    text = os.environ.get(name) or ""
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise TwinError(f"{name}={text!r} is not a positive number of seconds.",
                        f"set {name} to seconds, e.g. {name}={int(default)}, or unset it.")
    return value


def _training_python(given: str | None) -> Path:
    """The Axolotl environment's Python as an absolute path, whatever the working directory: a
    relative TWIN_TRAINING_PYTHON is taken from the folder it was set in, and the default is the
    `.venv-train` that `make` creates in the checkout, else next to the running environment."""
    if given:
        return Path(given).expanduser().absolute()  # not resolve(): a venv's python is a symlink
    candidates = [Path(__file__).resolve().parent.parent / ".venv-train",
                  Path(sys.prefix).absolute().parent / ".venv-train"]
    for folder in candidates:
        if (folder / "bin" / "python").exists():
            return folder / "bin" / "python"
    return candidates[0] / "bin" / "python"
