select
    chunk_id,
    document_id,
    twin,
    category,
    position,
    token_count,
    length(text) as characters
from {{ source('platform', 'chunks') }}
