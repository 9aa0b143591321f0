-- Requests per day, twin and endpoint with outcome counts and latency percentiles (ms).
select
    request_date || '/' || twin || '/' || endpoint as traffic_id,
    request_date,
    twin,
    endpoint,
    count(*) as requests,
    count(*) filter (where status = 'ok') as ok_requests,
    count(*) filter (where status = 'error') as error_requests,
    count(*) filter (where status = 'cancelled') as cancelled_requests,
    percentile_cont(0.5) within group (order by total_ms) as p50_total_ms,
    percentile_cont(0.95) within group (order by total_ms) as p95_total_ms,
    percentile_cont(0.99) within group (order by total_ms) as p99_total_ms,
    avg(retrieval_ms) as mean_retrieval_ms,
    avg(generation_ms) as mean_generation_ms,
    sum(prompt_tokens) as prompt_tokens,
    sum(completion_tokens) as completion_tokens
from {{ ref('stg_prompt_logs') }}
group by request_date, twin, endpoint
