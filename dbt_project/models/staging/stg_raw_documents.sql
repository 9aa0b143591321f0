select
    id as document_id,
    twin,
    category,
    platform,
    url,
    published_at,
    imported_at,
    updated_at
from {{ source('platform', 'raw_documents') }}
