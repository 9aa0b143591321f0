select
    id as promotion_id,
    registered_model || ':' || version as model_version_id,
    registered_model,
    version,
    twin,
    previous_version,
    promoted_at
from {{ source('platform', 'promotions') }}
