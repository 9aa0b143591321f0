"""The platform's Definitions, built lazily: the environment is read when Dagster loads it."""

from __future__ import annotations

import os

import dagster as dg

from assets.features import chunks, cleaned_documents, embeddings
from assets.raw import raw_documents
from resources import EmbeddingModelResource, PostgresResource
from twin.settings import Settings

build_features_job = dg.define_asset_job(
    "build_features_job",
    selection=dg.AssetSelection.assets(raw_documents, cleaned_documents, chunks, embeddings),
    description="Raw documents -> cleaned documents -> chunks -> embeddings for one twin.",
)


def build_definitions(settings: Settings) -> dg.Definitions:
    """Definitions for the given settings (the embedded database unless DATABASE_URL is set)."""
    database_url = dg.EnvVar("DATABASE_URL") if os.environ.get("DATABASE_URL") else None
    return dg.Definitions(
        assets=[raw_documents, cleaned_documents, chunks, embeddings],
        jobs=[build_features_job],
        resources={
            "postgres": PostgresResource(twin_home=str(settings.home), database_url=database_url),
            "embedding_model": EmbeddingModelResource(model=settings.embedding_model),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
