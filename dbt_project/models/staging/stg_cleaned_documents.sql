select
    document_id,
    twin,
    category,
    platform,
    url,
    title,
    published_at,
    date_trunc('month', published_at)::date as published_month,
    coalesce(array_length(regexp_split_to_array(trim(content), '\s+'), 1), 0) as words,
    length(content) as characters,
    cleaned_at
from {{ source('platform', 'cleaned_documents') }}
