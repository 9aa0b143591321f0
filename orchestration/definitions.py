"""The platform's Definitions, built lazily: the environment is read when Dagster loads it."""

from __future__ import annotations

import os

import dagster as dg
from dagster_aws.s3 import S3Resource

from assets.datasets import instruct_dataset, preference_dataset
from assets.features import chunks, cleaned_documents, embeddings
from assets.raw import raw_documents
from assets.serving import exl2_model, prompt_logs
from assets.training import champion, twin_adapter, twin_eval
from orchestration.automation import (
    DEFAULT_RECRAWL_CRON, build_continuous_training_sensor, build_recrawl_schedule, source_change_sensor,
)
from orchestration.jobs import build_features_job, build_marts_job, train_twin_job
from resources import EmbeddingModelResource, PostgresResource, ProfilesResource, TrainingResource
from resources.serving import Exl2Resource, exl2_bits_from_env
from twin.profiles import profiles_path
from twin.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for the given settings (the embedded database unless DATABASE_URL is set)."""
    database_url = dg.EnvVar("DATABASE_URL") if os.environ.get("DATABASE_URL") else None
    from assets.marts import analytics_marts, dbt_resource, external_upstream_specs, marts_automation_sensor

    assets = [raw_documents, cleaned_documents, chunks, embeddings,
              instruct_dataset, preference_dataset, twin_adapter, twin_eval, champion]
    assets += [exl2_model, prompt_logs]  # models/exl2: in no job or automation (CUDA hosts)
    return dg.Definitions(
        assets=[*assets, analytics_marts, *external_upstream_specs(assets)],
        jobs=[build_features_job, train_twin_job, build_marts_job],
        sensors=[source_change_sensor, marts_automation_sensor,
                 build_continuous_training_sensor(os.environ.get("TWIN_CONTINUOUS_TRAINING", "off").lower() == "on")],
        schedules=[build_recrawl_schedule(os.environ.get("TWIN_RECRAWL_CRON") or DEFAULT_RECRAWL_CRON)],
        resources={
            "postgres": PostgresResource(twin_home=str(settings.home), database_url=database_url),
            "embedding_model": EmbeddingModelResource(model=settings.embedding_model),
            "profiles": ProfilesResource(path=str(profiles_path())),
            "s3": S3Resource(endpoint_url=os.environ.get("TWIN_S3_ENDPOINT_URL") or None),
            "dbt": dbt_resource(),
            "exl2": Exl2Resource(twin_home=str(settings.home), bits=exl2_bits_from_env()),
            "exl2_pipes": dg.PipesSubprocessClient(),
            "training": TrainingResource(
                twin_home=str(settings.home), target=os.environ.get("TWIN_TRAINING_TARGET") or "local"),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
