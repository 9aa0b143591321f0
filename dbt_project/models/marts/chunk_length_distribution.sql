-- Chunks per twin, category and 32-token length bucket, with the share of that twin's category.
with bucketed as (
    select
        twin,
        category,
        (token_count / 32) * 32 as bucket_start
    from {{ ref('stg_chunks') }}
)
select
    twin || '/' || category || '/' || bucket_start as bucket_id,
    twin,
    category,
    bucket_start,
    bucket_start + 31 as bucket_end,
    count(*) as chunks,
    round(count(*)::numeric / sum(count(*)) over (partition by twin, category), 4) as share
from bucketed
group by twin, category, bucket_start
