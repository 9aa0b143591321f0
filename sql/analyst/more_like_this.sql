-- "More like this" for a whole document: the documents whose chunks lie nearest to the centroid
-- (mean vector) of its chunks, best chunk similarity first.
-- psql variables: url (the document's url), k (number of documents).
SET hnsw.ef_search = 150;
SET hnsw.iterative_scan = relaxed_order;

WITH source AS (
    SELECT document_id, avg(embedding) AS centroid
    FROM analyst.chunks
    WHERE url = :'url' AND embedding IS NOT NULL
    GROUP BY document_id
),
nearest AS MATERIALIZED (
    SELECT document_id, 1 - (embedding <=> (SELECT centroid FROM source)) AS similarity
    FROM analyst.chunks
    WHERE embedding IS NOT NULL
      AND document_id <> (SELECT document_id FROM source)
    ORDER BY embedding <=> (SELECT centroid FROM source)
    LIMIT 100
)
SELECT d.twin,
       d.category,
       d.title,
       d.url,
       round(max(n.similarity)::numeric, 4) AS similarity,
       count(*) AS near_chunks
FROM nearest n
JOIN analyst.documents d USING (document_id)
GROUP BY d.document_id, d.twin, d.category, d.title, d.url
ORDER BY max(n.similarity) DESC, d.url
LIMIT :k;
