-- Per twin, category and publication month: documents, words, chunks, tokens, embedded chunks.
with chunk_totals as (
    select
        c.document_id,
        count(*) as chunks,
        sum(c.token_count) as tokens,
        count(*) filter (where e.is_embedded) as embedded_chunks
    from {{ ref('stg_chunks') }} c
    join {{ ref('stg_chunk_embeddings') }} e using (chunk_id)
    group by c.document_id
)
select
    d.twin || '/' || d.category || '/' || coalesce(to_char(d.published_month, 'YYYY-MM'), 'undated')
        as stat_id,
    d.twin,
    d.category,
    d.published_month,
    count(*) as documents,
    sum(d.words) as words,
    coalesce(sum(t.chunks), 0) as chunks,
    coalesce(sum(t.tokens), 0) as tokens,
    coalesce(sum(t.embedded_chunks), 0) as embedded_chunks
from {{ ref('stg_cleaned_documents') }} d
left join chunk_totals t using (document_id)
group by d.twin, d.category, d.published_month
