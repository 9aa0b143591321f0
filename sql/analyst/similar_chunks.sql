-- "More like this" without Python: analyst.similar_chunks(chunk_id, k) returns the k most similar
-- chunks of other documents.
-- psql variables: chunk_id (uuid), k (number of rows).
SELECT chunk_id,
       twin,
       category,
       title,
       round(similarity::numeric, 4) AS similarity
FROM analyst.similar_chunks(:'chunk_id', :k);
