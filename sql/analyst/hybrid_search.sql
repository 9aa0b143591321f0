-- Hybrid search: keyword (full-text, any of the words, ranked by ts_rank_cd) and vector rankings
-- fused with reciprocal rank fusion: score = sum over both lists of 1 / (60 + rank), so a chunk
-- found by one list only still counts, and one found by both rises.
-- psql variables: query_text (words), query_embedding (`twin embed` of the same words),
-- k (number of rows).
SET hnsw.ef_search = 100;

WITH semantic AS (
    SELECT chunk_id, row_number() OVER (ORDER BY distance, chunk_id) AS rank
    FROM (
        SELECT chunk_id, embedding <=> :'query_embedding' AS distance
        FROM analyst.chunks
        WHERE embedding IS NOT NULL
        ORDER BY embedding <=> :'query_embedding'
        LIMIT 40
    ) nearest
),
keyword AS (
    SELECT chunk_id, row_number() OVER (ORDER BY score DESC, chunk_id) AS rank
    FROM (
        SELECT chunk_id, ts_rank_cd(search_vector, query) AS score
        FROM analyst.chunks,
             to_tsquery('english', replace(plainto_tsquery('english', :'query_text')::text, ' & ', ' | ')) AS query
        WHERE search_vector @@ query
        ORDER BY score DESC, chunk_id
        LIMIT 40
    ) matching
),
fused AS (
    SELECT chunk_id,
           coalesce(1.0 / (60 + semantic.rank), 0) + coalesce(1.0 / (60 + keyword.rank), 0) AS rrf_score,
           semantic.rank AS semantic_rank,
           keyword.rank AS keyword_rank
    FROM semantic FULL JOIN keyword USING (chunk_id)
)
SELECT f.chunk_id,
       c.twin,
       c.title,
       round(f.rrf_score, 5) AS rrf_score,
       f.semantic_rank,
       f.keyword_rank
FROM fused f
JOIN analyst.chunks c USING (chunk_id)
ORDER BY f.rrf_score DESC, f.chunk_id
LIMIT :k;
