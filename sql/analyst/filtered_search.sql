-- Semantic search within one twin and one category. Iterative index scans (pgvector >= 0.8) keep
-- returning rows until k pass the filter; relaxed order is re-sorted by the outer query.
-- psql variables: query_embedding (a vector literal), twin (slug), category (article, post or
-- repository), k (number of rows).
SET hnsw.ef_search = 150;
SET hnsw.iterative_scan = relaxed_order;

WITH hits AS MATERIALIZED (
    SELECT twin, category, title, url, embedding <=> :'query_embedding' AS distance
    FROM analyst.chunks
    WHERE embedding IS NOT NULL
      AND twin = :'twin'
      AND category = :'category'
    ORDER BY embedding <=> :'query_embedding'
    LIMIT :k
)
SELECT twin, category, title, url, round((1 - distance)::numeric, 4) AS similarity
FROM hits
ORDER BY distance;
