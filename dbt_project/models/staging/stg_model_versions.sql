select
    registered_model || ':' || version as model_version_id,
    registered_model,
    version,
    twin,
    mlflow_run_id,
    dataset_fingerprint,
    base_model,
    profile,
    train_steps,
    train_loss,
    train_seconds,
    created_at
from {{ source('platform', 'model_versions') }}
