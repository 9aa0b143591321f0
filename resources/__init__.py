"""Dagster resources: each external system the assets talk to, configured in one place."""

from resources.embedding import EmbeddingModelResource
from resources.postgres import PostgresResource
from resources.profiles import ProfilesResource
from resources.training import TrainingResource

__all__ = ["EmbeddingModelResource", "PostgresResource", "ProfilesResource", "TrainingResource"]
