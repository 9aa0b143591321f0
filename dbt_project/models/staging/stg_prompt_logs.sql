-- No prompt, prompt variables, answer or error text: analysts see what was asked and how it went.
select
    request_id,
    created_at,
    created_at::date as request_date,
    endpoint,
    coalesce(twin, '(none)') as twin,
    query,
    status,
    model_name,
    model_version,
    model_alias,
    backend,
    retrieved_chunk_ids,
    cardinality(retrieved_chunk_ids) as retrieved_chunks,
    (select max(score) from unnest(retrieval_scores) as score) as top_score,
    prompt_tokens,
    completion_tokens,
    retrieval_ms,
    generation_ms,
    total_ms
from {{ source('platform', 'prompt_logs') }}
