-- Documents whose chunks were retrieved for answers, most cited first.
with citations as (
    select l.request_id, l.created_at, cited.chunk_id
    from {{ ref('stg_prompt_logs') }} l
    cross join lateral unnest(l.retrieved_chunk_ids) as cited(chunk_id)
    where l.status = 'ok'
)
select
    c.document_id,
    d.twin,
    d.category,
    d.title,
    d.url,
    count(*) as citations,
    count(distinct citations.request_id) as requests,
    min(citations.created_at) as first_cited_at,
    max(citations.created_at) as last_cited_at,
    rank() over (order by count(*) desc) as citation_rank
from citations
join {{ ref('stg_chunks') }} c using (chunk_id)
join {{ ref('stg_cleaned_documents') }} d using (document_id)
group by c.document_id, d.twin, d.category, d.title, d.url
