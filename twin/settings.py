"""Platform configuration: the one reader of the platform's environment variables (README's
"Configuration" table lists them). Every value has a laptop default; entry points (Dagster's
Definitions, the CLI, the serving app) build Settings once and pass it down."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from twin.api_keys import ApiKey, parse_api_keys
from twin.errors import TwinError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_MAX_DOCUMENT_BYTES = 1_000_000
DEFAULT_LAG_LIMIT_SECONDS = 3600.0  # the oldest document waiting in the feature pipeline
DEFAULT_RECRAWL_CRON = "0 3 * * 1"  # Mondays 03:00
DEFAULT_LAG_CHECK_CRON = "*/15 * * * *"
DEFAULT_EXL2_BITS = 4.5
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"  # `twin mlflow-ui`'s default address
DEFAULT_K8S_EXECUTOR_CONFIG = Path("/etc/twin/executor.yaml")
BACKENDS = ("auto", "exllamav2", "transformers", "remote")


@dataclass(frozen=True)
class ServingSettings:
    """What the serving API reads (serving/config.py's ServingConfig adds the rules that use it)."""

    backend: str = "auto"
    model_endpoint: str | None = None  # OpenAI-compatible base URL of a `--role model` service
    model_api_key: str | None = None
    api_keys: tuple[ApiKey, ...] = ()
    max_question_chars: int = 4000
    max_request_bytes: int = 1_000_000  # a request body past this is refused with 413, unread
    max_tokens_limit: int = 1024
    default_max_tokens: int = 256
    generation_timeout_s: float = 120.0
    max_concurrent_generations: int = 2
    max_queued_requests: int = 8
    context_token_budget: int = 1200
    retrieval_k: int = 5
    query_expansion: int = 0  # extra query variants written by the LLM (0: off)
    reranker_model: str | None = None
    model_check_ttl_s: float = 30.0
    max_loaded_models: int = 2
    exl2_bits: float = DEFAULT_EXL2_BITS  # also the build the models/exl2 asset makes
    exl2_draft_model: str | None = None
    exl2_ngram_draft: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServingSettings:
        backend = (env.get("TWIN_GENERATION_BACKEND") or cls.backend).strip().lower()
        if backend not in BACKENDS:
            raise TwinError(
                f"TWIN_GENERATION_BACKEND={backend!r} is not a backend.",
                f"set it to one of {', '.join(BACKENDS)} (or unset it for auto).",
            )
        return cls(
            backend=backend,
            model_endpoint=(env.get("TWIN_MODEL_ENDPOINT") or "").rstrip("/") or None,
            model_api_key=env.get("TWIN_MODEL_API_KEY") or None,
            api_keys=parse_api_keys(env.get("TWIN_API_KEYS") or ""),
            max_question_chars=_int(env, "TWIN_MAX_QUESTION_CHARS", cls.max_question_chars),
            max_request_bytes=_int(env, "TWIN_MAX_REQUEST_BYTES", cls.max_request_bytes),
            max_tokens_limit=_int(env, "TWIN_MAX_TOKENS_LIMIT", cls.max_tokens_limit),
            default_max_tokens=_int(env, "TWIN_DEFAULT_MAX_TOKENS", cls.default_max_tokens),
            generation_timeout_s=_float(env, "TWIN_GENERATION_TIMEOUT", cls.generation_timeout_s),
            max_concurrent_generations=_int(env, "TWIN_MAX_CONCURRENT_GENERATIONS", cls.max_concurrent_generations),
            max_queued_requests=_int(env, "TWIN_MAX_QUEUED_REQUESTS", cls.max_queued_requests),
            context_token_budget=_int(env, "TWIN_CONTEXT_TOKENS", cls.context_token_budget),
            retrieval_k=_int(env, "TWIN_RETRIEVAL_K", cls.retrieval_k),
            query_expansion=_int(env, "TWIN_QUERY_EXPANSION", cls.query_expansion),
            reranker_model=env.get("TWIN_RERANKER_MODEL") or None,
            model_check_ttl_s=_float(env, "TWIN_MODEL_CHECK_SECONDS", cls.model_check_ttl_s),
            max_loaded_models=_int(env, "TWIN_MAX_LOADED_MODELS", cls.max_loaded_models),
            exl2_bits=_float(env, "TWIN_EXL2_BITS", cls.exl2_bits),
            exl2_draft_model=env.get("TWIN_EXL2_DRAFT_MODEL") or None,
            exl2_ngram_draft=(env.get("TWIN_EXL2_NGRAM_DRAFT") or "").lower() in ("1", "true", "yes"),
        )


@dataclass(frozen=True)
class EcsSettings:
    """TWIN_ECS_*, for `TWIN_TRAINING_TARGET=ecs` (training/ecs.py says what each one is). Unset
    values are None or empty: EcsTrainingTarget holds the defaults and says which are required."""

    cluster: str | None = None
    task_definition: str | None = None
    container: str | None = None
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    script: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EcsSettings:
        return cls(
            cluster=env.get("TWIN_ECS_CLUSTER") or None,
            task_definition=env.get("TWIN_ECS_TASK_DEFINITION") or None,
            container=env.get("TWIN_ECS_CONTAINER") or None,
            subnets=_split(env.get("TWIN_ECS_SUBNETS")),
            security_groups=_split(env.get("TWIN_ECS_SECURITY_GROUPS")),
            script=env.get("TWIN_ECS_SCRIPT") or None,
        )


@dataclass(frozen=True)
class AnalystLimits:
    """What one analyst session may take from the platform's database (TWIN_ANALYST_*; applied
    to the role by twin/analyst.py)."""

    connection_limit: int = 4
    statement_timeout: str = "60s"
    idle_in_transaction_timeout: str = "60s"
    lock_timeout: str = "5s"
    work_mem: str = "64MB"
    temp_file_limit: str = "1GB"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AnalystLimits:
        return cls(
            connection_limit=_int(env, "TWIN_ANALYST_CONNECTION_LIMIT", cls.connection_limit),
            statement_timeout=env.get("TWIN_ANALYST_STATEMENT_TIMEOUT") or cls.statement_timeout,
            idle_in_transaction_timeout=env.get("TWIN_ANALYST_IDLE_TIMEOUT") or cls.idle_in_transaction_timeout,
            lock_timeout=env.get("TWIN_ANALYST_LOCK_TIMEOUT") or cls.lock_timeout,
            work_mem=env.get("TWIN_ANALYST_WORK_MEM") or cls.work_mem,
            temp_file_limit=env.get("TWIN_ANALYST_TEMP_FILE_LIMIT") or cls.temp_file_limit,
        )


@dataclass(frozen=True)
class Settings:
    """Where state lives, which models, databases and services the platform uses, and how it runs."""

    home: Path
    database_url: str | None
    embedding_model: str
    max_document_bytes: int
    mlflow_tracking_uri: str
    artifacts_uri: str
    base_model: str | None
    training_python: str
    lag_limit_seconds: float = DEFAULT_LAG_LIMIT_SECONDS
    profiles_path: Path = field(default_factory=lambda: _profiles_path(None))
    recrawl_cron: str = DEFAULT_RECRAWL_CRON
    lag_check_cron: str = DEFAULT_LAG_CHECK_CRON
    continuous_training: bool = False  # TWIN_CONTINUOUS_TRAINING=on starts its sensor running
    s3_endpoint_url: str | None = None
    training_target: str = "local"  # or "ecs"
    executor: str = ""  # "" or "multiprocess": Dagster's default; "k8s": a pod per step
    k8s_executor_config: Path = DEFAULT_K8S_EXECUTOR_CONFIG
    mlflow_ui_url: str = DEFAULT_MLFLOW_UI_URL
    analyst_password: str | None = None
    analyst_limits: AnalystLimits = field(default_factory=AnalystLimits)
    serving: ServingSettings = field(default_factory=ServingSettings)
    ecs: EcsSettings = field(default_factory=EcsSettings)

    @classmethod
    def from_env(cls, home: Path | None = None) -> Settings:
        """`home`: a TWIN_HOME other than the environment's (a resource's own); the values derived
        from it (the MLflow store, the artifacts folder) follow it unless set explicitly."""
        env = os.environ
        home = home or Path(env.get("TWIN_HOME") or Path.cwd() / ".twin").expanduser().resolve()
        return cls(
            home=home,
            database_url=env.get("DATABASE_URL") or None,
            embedding_model=env.get("TWIN_EMBEDDING_MODEL") or DEFAULT_EMBEDDING_MODEL,
            max_document_bytes=_int(env, "TWIN_MAX_DOCUMENT_BYTES", DEFAULT_MAX_DOCUMENT_BYTES),
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or default_mlflow_tracking_uri(home),
            artifacts_uri=env.get("TWIN_ARTIFACTS_URI") or str(home / "artifacts"),
            base_model=env.get("TWIN_BASE_MODEL") or None,
            training_python=str(_training_python(env.get("TWIN_TRAINING_PYTHON"))),
            lag_limit_seconds=_positive_seconds(env, "TWIN_LAG_LIMIT_SECONDS", DEFAULT_LAG_LIMIT_SECONDS),
            profiles_path=_profiles_path(env.get("TWIN_PROFILES")),
            recrawl_cron=env.get("TWIN_RECRAWL_CRON") or DEFAULT_RECRAWL_CRON,
            lag_check_cron=env.get("TWIN_LAG_CHECK_CRON") or DEFAULT_LAG_CHECK_CRON,
            continuous_training=(env.get("TWIN_CONTINUOUS_TRAINING") or "off").lower() == "on",
            s3_endpoint_url=env.get("TWIN_S3_ENDPOINT_URL") or None,
            training_target=env.get("TWIN_TRAINING_TARGET") or "local",
            executor=(env.get("TWIN_EXECUTOR") or "").strip().lower(),
            k8s_executor_config=Path(env.get("TWIN_K8S_EXECUTOR_CONFIG") or DEFAULT_K8S_EXECUTOR_CONFIG),
            mlflow_ui_url=(env.get("TWIN_MLFLOW_UI_URL") or DEFAULT_MLFLOW_UI_URL).rstrip("/"),
            analyst_password=env.get("TWIN_ANALYST_PASSWORD") or None,
            analyst_limits=AnalystLimits.from_env(env),
            serving=ServingSettings.from_env(env),
            ecs=EcsSettings.from_env(env),
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


def default_mlflow_tracking_uri(home: Path) -> str:
    """The embedded MLflow store under TWIN_HOME (when MLFLOW_TRACKING_URI names no server)."""
    return f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"


def _profiles_path(given: str | None) -> Path:
    return Path(given or Path.cwd() / "twins.yaml").expanduser().resolve()


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(env, name, default, int, "a whole number"))


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    return float(_number(env, name, default, float, "a number"))


def _number(env: Mapping[str, str], name: str, default: float, parse: Callable[[str], float], what: str) -> float:
    """`name` parsed by `parse` (its default when unset); a bad value names the variable and a fix."""
    value = env.get(name)
    if not value:
        return default
    try:
        return parse(value)
    except ValueError:
        raise TwinError(f"{name}={value!r} is not {what}.", f"set {name} to e.g. {default}.") from None


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name) or ""
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


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


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
