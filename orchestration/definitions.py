"""The platform's Definitions, built lazily: the environment is read (Settings) when Dagster loads it."""

from __future__ import annotations

import dagster as dg
import yaml
from dagster_aws.s3 import S3Resource

from assets.datasets import instruct_dataset, preference_dataset
from assets.features import chunks, cleaned_documents, embeddings
from assets.lag import build_pipeline_lag_check
from assets.raw import raw_documents
from assets.serving import exl2_model, prompt_logs
from assets.training import champion, twin_adapter, twin_eval
from orchestration.automation import (
    build_continuous_training_sensor,
    build_lag_check_schedule,
    build_recrawl_schedule,
    source_change_sensor,
)
from orchestration.jobs import build_features_job, build_marts_job, check_pipeline_lag_job, train_twin_job
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource, TrainingResource
from resources.serving import Exl2Resource
from serving.quantization import check_bits
from twin.errors import TwinError
from twin.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for the given settings (the embedded database unless DATABASE_URL is set)."""
    database_url = dg.EnvVar("DATABASE_URL") if settings.database_url else None  # a secret: read at run time
    from assets.marts import analytics_marts, dbt_resource, marts_automation_sensor

    check_bits(settings.serving.exl2_bits)  # the build the asset makes is the one serving looks for
    assets = [raw_documents, cleaned_documents, chunks, embeddings,
              instruct_dataset, preference_dataset, twin_adapter, twin_eval, champion]
    assets += [exl2_model, prompt_logs]  # models/exl2: in no job or automation (CUDA hosts)
    return dg.Definitions(
        assets=[*assets, analytics_marts],
        asset_checks=[build_pipeline_lag_check(settings.lag_limit_seconds)],
        jobs=[build_features_job, train_twin_job, build_marts_job, check_pipeline_lag_job],
        sensors=[source_change_sensor, marts_automation_sensor,
                 build_continuous_training_sensor(settings.continuous_training)],
        executor=build_executor(settings),
        schedules=[build_recrawl_schedule(settings.recrawl_cron), build_lag_check_schedule(settings.lag_check_cron)],
        resources={
            "postgres": PostgresResource(twin_home=str(settings.home), database_url=database_url),
            "embedding_model": EmbeddingModelResource(model=settings.embedding_model),
            "profiles": ProfilesResource(path=str(settings.profiles_path),
                                         max_document_bytes=settings.max_document_bytes),
            "s3": S3Resource(endpoint_url=settings.s3_endpoint_url),
            "dbt": dbt_resource(),
            "exl2": Exl2Resource(twin_home=str(settings.home), bits=settings.serving.exl2_bits),
            "exl2_pipes": dg.PipesSubprocessClient(),
            "training": TrainingResource(twin_home=str(settings.home), target=settings.training_target),
        },
    )


def build_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """`TWIN_EXECUTOR=k8s`: every step in its own pod (dagster-k8s' k8s_job_executor) configured by
    the YAML file at TWIN_K8S_EXECUTOR_CONFIG (deploy/k8s/executor.yaml: max_concurrent, the
    training step on the GPU node pool). Unset: Dagster's default executor (multiprocess)."""
    kind = settings.executor
    if kind in ("", "multiprocess"):
        return None
    if kind != "k8s":
        raise TwinError(f"TWIN_EXECUTOR={kind!r} is not an executor.", "use k8s, or unset it.")
    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as error:
        raise TwinError("TWIN_EXECUTOR=k8s needs dagster-k8s.", "pip install '.[k8s]' in the image.") from error
    path = settings.k8s_executor_config
    if not path.is_file():
        raise TwinError(f"No executor configuration at {path}.", "set TWIN_K8S_EXECUTOR_CONFIG (deploy/k8s/executor.yaml).")
    return k8s_job_executor.configured(yaml.safe_load(path.read_text(encoding="utf-8")), name="k8s_job_executor")


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
