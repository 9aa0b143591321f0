"""Jobs: named selections of assets that sensors, schedules and the CLI launch."""

import dagster as dg

from assets.features import chunks, cleaned_documents, embeddings
from assets.raw import raw_documents

build_features_job = dg.define_asset_job(
    "build_features_job",
    selection=dg.AssetSelection.assets(raw_documents, cleaned_documents, chunks, embeddings),
    description="Raw documents -> cleaned documents -> chunks -> embeddings for one twin.",
)

train_twin_job = dg.define_asset_job(
    "train_twin_job",
    selection=dg.AssetSelection.keys(
        ["datasets", "instruct"], ["models", "twin_adapter"], ["evaluation", "twin_eval"], ["models", "champion"]),
    description="Dataset version -> LoRA fine-tune (Axolotl via Pipes) -> evaluation -> promotion, for one twin.",
)
