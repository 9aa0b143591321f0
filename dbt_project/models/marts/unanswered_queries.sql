-- Queries retrieval found nothing relevant for: nothing retrieved, or the best logged similarity
-- below var('relevance_threshold') (the off-topic questions the service answered "I found nothing
-- in ...'s writing on that"). Grouped by twin and normalised query text.
with weak as (
    select
        twin,
        lower(regexp_replace(trim(query), '\s+', ' ', 'g')) as normalized_query,
        query,
        created_at,
        top_score
    from {{ ref('stg_prompt_logs') }}
    where status = 'ok'
      and (top_score is null or top_score < {{ var('relevance_threshold') }})
)
select
    md5(twin || '|' || normalized_query) as query_id,
    twin,
    normalized_query as query,
    count(*) as requests,
    max(top_score) as best_score,
    min(created_at) as first_asked_at,
    max(created_at) as last_asked_at
from weak
group by twin, normalized_query
