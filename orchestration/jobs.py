"""Jobs: named selections of assets that sensors, schedules, the CLI and the UI's Jobs page launch.
Each says what it costs, so the cheap path is the obvious one; models/exl2 (CUDA only) is in none."""

import dagster as dg

from assets.features import chunks, cleaned_documents, embeddings
from assets.lag import EMBEDDINGS
from assets.raw import raw_documents
from twin.lag import LAG_CHECK

build_features_job = dg.define_asset_job(
    "build_features_job",
    # the lag check looks at every twin at once: it runs on its own schedule, not per partition
    selection=dg.AssetSelection.assets(raw_documents, cleaned_documents, chunks, embeddings)
    - dg.AssetSelection.checks(dg.AssetCheckKey(EMBEDDINGS, LAG_CHECK)),
    description="Cheap, the everyday path: raw documents -> cleaned documents -> chunks -> embeddings for one "
                "twin (seconds when little changed; only new or changed documents are processed).",
)

train_twin_job = dg.define_asset_job(
    "train_twin_job",
    selection=dg.AssetSelection.keys(
        ["datasets", "instruct"], ["models", "twin_adapter"], ["evaluation", "twin_eval"], ["models", "champion"]),
    description="Expensive: dataset version -> LoRA fine-tune (Axolotl via Pipes) -> evaluation -> promotion, for "
                "one twin; with the cpu-demo profile, 294 s of Axolotl steps plus the evaluation on an idle 2-core CPU. "
                "Terminate stops the training process tree; a `dagster/max_runtime` tag bounds it.",
)

build_marts_job = dg.define_asset_job(
    "build_marts_job",
    selection=dg.AssetSelection.groups("analytics"),
    description="Cheap: every dbt staging view and mart (schema analytics), with their dbt tests as checks.",
)

check_pipeline_lag_job = dg.define_asset_job(
    "check_pipeline_lag_job",
    selection=dg.AssetSelection.checks(dg.AssetCheckKey(EMBEDDINGS, LAG_CHECK)),
    description="Evaluates pipeline_lag_within_limit: documents waiting longer than TWIN_LAG_LIMIT_SECONDS.",
)
