-- One row per imported document: how far it got (cleaned, chunked, embedded).
with chunk_totals as (
    select
        c.document_id,
        count(*) as chunks,
        count(*) filter (where e.is_embedded) as embedded_chunks,
        min(c.token_count) as min_tokens,
        max(c.token_count) as max_tokens
    from {{ ref('stg_chunks') }} c
    join {{ ref('stg_chunk_embeddings') }} e using (chunk_id)
    group by c.document_id
)
select
    r.document_id,
    r.twin,
    r.category,
    r.url,
    d.title,
    d.words,
    coalesce(t.chunks, 0) as chunks,
    coalesce(t.embedded_chunks, 0) as embedded_chunks,
    t.min_tokens,
    t.max_tokens,
    case
        when d.document_id is null then 'not_cleaned'
        when t.chunks is null then 'no_chunks'
        when t.embedded_chunks = 0 then 'not_embedded'
        when t.embedded_chunks < t.chunks then 'partly_embedded'
        else 'embedded'
    end as coverage
from {{ ref('stg_raw_documents') }} r
left join {{ ref('stg_cleaned_documents') }} d using (document_id)
left join chunk_totals t using (document_id)
