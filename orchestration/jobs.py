"""Jobs: named selections of assets that sensors, schedules and the CLI launch."""

import dagster as dg

from assets.features import chunks, cleaned_documents, embeddings
from assets.lag import EMBEDDINGS, LAG_CHECK
from assets.raw import raw_documents

build_features_job = dg.define_asset_job(
    "build_features_job",
    # the lag check looks at every twin at once: it runs on its own schedule, not per partition
    selection=dg.AssetSelection.assets(raw_documents, cleaned_documents, chunks, embeddings)
    - dg.AssetSelection.checks(dg.AssetCheckKey(EMBEDDINGS, LAG_CHECK)),
    description="Raw documents -> cleaned documents -> chunks -> embeddings for one twin.",
)

train_twin_job = dg.define_asset_job(
    "train_twin_job",
    selection=dg.AssetSelection.keys(
        ["datasets", "instruct"], ["models", "twin_adapter"], ["evaluation", "twin_eval"], ["models", "champion"]),
    description="Dataset version -> LoRA fine-tune (Axolotl via Pipes) -> evaluation -> promotion, for one twin.",
)

check_pipeline_lag_job = dg.define_asset_job(
    "check_pipeline_lag_job",
    selection=dg.AssetSelection.checks(dg.AssetCheckKey(EMBEDDINGS, LAG_CHECK)),
    description="Evaluates pipeline_lag_within_limit: documents waiting longer than TWIN_LAG_LIMIT_SECONDS.",
)
