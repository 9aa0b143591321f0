-- Queries whose retrieval found no good hit: nothing retrieved, or the best cosine similarity
-- below var('good_hit_similarity'). Grouped by twin and normalised query text.
with weak as (
    select
        twin,
        lower(regexp_replace(trim(query), '\s+', ' ', 'g')) as normalized_query,
        query,
        created_at,
        top_similarity
    from {{ ref('stg_prompt_logs') }}
    where status = 'ok'
      and (top_similarity is null or top_similarity < {{ var('good_hit_similarity') }})
)
select
    md5(twin || '|' || normalized_query) as query_id,
    twin,
    normalized_query as query,
    count(*) as requests,
    max(top_similarity) as best_similarity,
    min(created_at) as first_asked_at,
    max(created_at) as last_asked_at
from weak
group by twin, normalized_query
