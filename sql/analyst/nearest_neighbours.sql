-- Nearest neighbours of one chunk by cosine similarity (the chunk itself excluded), HNSW index.
-- psql variables: chunk_id (uuid), k (number of rows).
SET hnsw.ef_search = 150;

SELECT chunk_id,
       twin,
       category,
       title,
       position,
       round((1 - (embedding <=> (SELECT embedding FROM analyst.chunks WHERE chunk_id = :'chunk_id')))::numeric, 4)
           AS similarity,
       left(regexp_replace(text, '\s+', ' ', 'g'), 60) AS text
FROM analyst.chunks
WHERE embedding IS NOT NULL
  AND chunk_id <> :'chunk_id'
ORDER BY embedding <=> (SELECT embedding FROM analyst.chunks WHERE chunk_id = :'chunk_id')
LIMIT :k;
