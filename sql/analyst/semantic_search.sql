-- Semantic search: chunks nearest to a query vector made by `twin embed "TEXT"` (the same
-- cleaning and model as the pipeline and `twin search`).
-- psql variables: query_embedding (a vector literal), k (number of rows).
SET hnsw.ef_search = 150;

SELECT twin,
       category,
       title,
       position,
       round((1 - (embedding <=> :'query_embedding'))::numeric, 4) AS similarity,
       left(regexp_replace(text, '\s+', ' ', 'g'), 50) AS text
FROM analyst.chunks
WHERE embedding IS NOT NULL
ORDER BY embedding <=> :'query_embedding'
LIMIT :k;
