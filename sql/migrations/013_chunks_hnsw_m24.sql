-- Issue 13: the chunk vectors' HNSW index is built with m 24 and ef_construction 128 (pgvector's
-- defaults are 16 and 64). Measured by bench/retrieval.py on 1M chunks x 384 (docs/benchmarks.md,
-- Retrieval (b)): recall@10 against exact search at ef_search 100 is 0.95-0.957 (two builds) with
-- these settings and 0.867 with the defaults (at 100k: 0.98 and 0.9517). The index is the same size,
-- and building it takes about three times as long (1,018-1,075 s against 372 s at 1M on 2 cores).
-- Applying this to a large existing table rebuilds the index inside the migration, and searches wait
-- for it: see docs/runbook.md, "Clear and rebuild the vector index".
DROP INDEX chunks_embedding_hnsw;
CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 24, ef_construction = 128);
